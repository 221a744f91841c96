"""Choosing sites among candidate locations: discrete p-median and max coverage.

Both models open ``k`` of ``m`` candidate sites (existing sites stay open) by a
greedy construction followed by a swap local search, the fast interchange of
Whitaker (1983) in the form of Resende and Werneck (2003). For the current open
sites every demand point knows its nearest and second-nearest open site; from
those, one pass over the points gives

* ``gain[c]``: what opening candidate ``c`` would gain,
* ``loss[j]``: what closing open site ``j`` would lose,
* ``extra[c, j]``: the part of ``loss[j]`` that ``c`` would win back,

and the best swap maximises ``gain[c] - loss[j] + extra[c, j]``. All three are
sums over points, so each chunk of points returns its share and the shares add
up (chunk -> combine -> aggregate). Costs and weights are rounded to whole
quanta (a power-of-two fraction of the largest possible total, see
:func:`evplanner._discrete_kernels.quantum_inverse`) and summed as integers:
the totals, hence every decision, are identical for NumPy input and for any
chunking of Dask input. A point only touches the candidates closer than its
second-nearest open site (p-median) or within the radius (coverage), found on a
grid over the candidates; no demand x candidate matrix is ever formed. For
coverage in memory, the (point, candidate) pairs within the radius are stored
once when they fit a memory budget and the search steps run on them in numba
(:class:`_CoverageIncidence`), with the same gains and tie-breaks as the
passes, hence the same sites.

The evaluation of a set of open sites is one function
(``_Problem.evaluate``: objective plus swap gains); a capacitated variant
would replace it, using the uncapacitated gains to rank the swaps it checks.

Public names here are for :mod:`evplanner.kmedians` and
:mod:`evplanner.max_coverage`; users call those.
"""

from __future__ import annotations

import logging
import numbers
from dataclasses import dataclass

import dask
import dask.array as da
import numpy as np

from evplanner import _discrete_kernels as dk
from evplanner import _kernels as kern
from evplanner._chunked import tree_reduce
from evplanner._validation import check_summary
from evplanner.errors import InputError

__all__ = [
    "DiscreteResult",
    "check_candidates",
    "check_fixed",
    "check_n_sites",
    "coverage_search",
    "pmedian_search",
    "site_labels",
]

logger = logging.getLogger(__name__)

#: Demand rows the p-median greedy start runs on when there are more (a
#: chunk-invariant sample drawn from n and the seed).
GREEDY_SAMPLE_SIZE = 20_000
#: Rounds of iterated local search per p-median run: swaps alone stopped 0.6%
#: above the optimum on a 2,000 x 500 benchmark instance; ten rounds of shake
#: and swap reached it (benchmarks/README.md, "Sites among candidates").
PMEDIAN_ROUNDS = 10
#: Memory for the (point, candidate) pairs within the coverage radius, bytes:
#: in-memory coverage stores them when they fit (one grid lookup instead of
#: one per pass); beyond it, and for Dask input, the pass-based search runs.
#: Both open the same sites.
COVERAGE_PAIRS_BYTES = 512 * 2**20


# ---------------------------------------------------------------------------
# Validation of the candidate sites
# ---------------------------------------------------------------------------


def check_candidates(
    candidates, n_features: int, n_sites: int, name: str = "n_clusters"
) -> np.ndarray:
    """Candidate sites as a finite C-contiguous float64 array, or ValueError.

    Parameters
    ----------
    candidates : array-like, shape (m, n_features)
    n_features : int
        Columns of the demand array.
    n_sites : int
        Sites to choose among them (at most ``m``).
    name : str
        The parameter holding ``n_sites``, for the message.

    Returns
    -------
    np.ndarray, shape (m, n_features), float64
    """
    if hasattr(candidates, "compute"):
        candidates = candidates.compute()
    try:
        C = np.asarray(candidates, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"candidates must be numbers of shape (n_candidates, {n_features}): {exc}"
        ) from None
    if C.ndim != 2 or C.shape[1] != n_features:
        raise ValueError(
            "candidates must have shape (n_candidates, n_features) with "
            f"n_features={n_features} (the columns of X), got shape {C.shape}"
        )
    if C.shape[0] == 0:
        raise ValueError("candidates must hold at least one site, got 0 rows")
    bad = ~np.isfinite(C).all(axis=1)
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        raise InputError(
            "candidates must contain only finite coordinates (no NaN or inf), "
            f"got {C[r].tolist()} at candidate index {r}"
        )
    if n_sites > C.shape[0]:
        raise ValueError(
            f"{name}={n_sites} exceeds the number of candidates "
            f"({C.shape[0]}); expected {name} <= {C.shape[0]}"
        )
    return np.ascontiguousarray(C)


def check_fixed(fixed_centers, n_features: int) -> np.ndarray:
    """Existing sites as a finite float64 array of shape (n_fixed, n_features)."""
    if fixed_centers is None:
        return np.empty((0, n_features), dtype=np.float64)
    F = np.asarray(fixed_centers, dtype=np.float64)
    if F.ndim != 2 or F.shape[1] != n_features:
        raise ValueError(
            "fixed_centers must have shape (n_fixed, n_features) with "
            f"n_features={n_features}, got shape {F.shape}"
        )
    bad = ~np.isfinite(F).all(axis=1)
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"fixed_centers must be finite, got {F[r].tolist()} at row {r}"
        )
    return np.ascontiguousarray(F)


# ---------------------------------------------------------------------------
# Engines: one block in memory, or Dask chunks reduced in a tree
# ---------------------------------------------------------------------------


class _NumpyEngine:
    def __init__(self, X, w):
        self.X, self.w = X, w
        self.n = X.shape[0]

    def constant(self, value):
        return value

    def map_reduce(self, fn, combine, *args):
        return fn(self.X, self.w, *args)

    def sample(self, idx):
        if idx is None:
            return self.X, self.w
        return self.X[idx], self.w[idx]


class _DaskEngine:
    def __init__(self, X, w):
        # Every pass reads the points: keep them in (worker) memory.
        X, w = dask.persist(X, w)
        self.X, self.w = X, w
        self.n = X.shape[0]
        self._xb = list(X.to_delayed().ravel())
        self._wb = list(w.to_delayed().ravel())

    def constant(self, value):
        # Sent to the workers once, not embedded in every pass's graph.
        (out,) = dask.persist(dask.delayed(value, traverse=False))
        return out

    def map_reduce(self, fn, combine, *args):
        parts = [
            dask.delayed(fn)(xb, wb, *args)
            for xb, wb in zip(self._xb, self._wb, strict=True)
        ]
        (out,) = dask.compute(tree_reduce(parts, combine))
        return out

    def sample(self, idx):
        if idx is None:
            return dask.compute(self.X, self.w)
        return dask.compute(self.X[idx], self.w[idx])


def _engine(X, w):
    return _DaskEngine(X, w) if isinstance(X, da.Array) else _NumpyEngine(X, w)


# ---------------------------------------------------------------------------
# Per-block work (pure) and its combination
# ---------------------------------------------------------------------------


def _block_summary(X, w):
    n = X.shape[0]
    out = {
        "n": n,
        "bad_x": None,
        "bad_w": None,
        "wsum": 0.0,
        "wmax": 0.0,
        "lo": np.full(X.shape[1], np.inf),
        "hi": np.full(X.shape[1], -np.inf),
    }
    finite = np.isfinite(X).all(axis=1)
    if not finite.all():
        r = int(np.flatnonzero(~finite)[0])
        out["bad_x"] = (r, X[r].tolist())
    wbad = ~(np.isfinite(w) & (w >= 0))
    if wbad.any():
        r = int(np.flatnonzero(wbad)[0])
        out["bad_w"] = (r, float(w[r]))
    if n and out["bad_x"] is None and out["bad_w"] is None:
        out["wsum"] = float(w.sum())
        out["wmax"] = float(w.max())
        out["lo"], out["hi"] = X.min(axis=0), X.max(axis=0)
    return out


def _combine_summary(a, b):
    out = {
        "n": a["n"] + b["n"],
        "wsum": a["wsum"] + b["wsum"],
        "wmax": max(a["wmax"], b["wmax"]),
        "lo": np.minimum(a["lo"], b["lo"]),
        "hi": np.maximum(a["hi"], b["hi"]),
    }
    for key in ("bad_x", "bad_w"):
        # Rows are counted from the block's start: shift b's past a's rows.
        hits = [a[key]] if a[key] is not None else []
        if b[key] is not None:
            hits.append((a["n"] + b[key][0], b[key][1]))
        out[key] = hits[0] if hits else None
    return out


def _summary(eng):
    s = eng.map_reduce(_block_summary, _combine_summary)
    check_summary(s)
    return s


def _nearest_two(X, sites, k):
    if sites.shape[0] == 0:
        n = X.shape[0]
        return (np.full(n, k, dtype=np.int64), np.full(n, np.inf), np.full(n, np.inf))
    return kern.assign2_l1(X, sites)


def _block_pmedian(X, w, sites, k, qinv, sentinel, with_pairs, grid):
    lab1, d1, d2 = _nearest_two(X, sites, k)
    obj, gain, loss, keys, vals = dk.pmedian_block(
        X, w, qinv, sentinel, lab1, d1, d2, k, with_pairs, grid
    )
    value = float(np.dot(w, d1)) if sites.shape[0] else np.inf
    return {
        "obj": obj,
        "value": value,
        "gain": gain,
        "loss": loss,
        "keys": keys,
        "vals": vals,
    }


def _block_coverage(X, w, sites, k, qinv, radius, with_pairs, grid):
    lab1, d1, d2 = _nearest_two(X, sites, k)
    wq = np.rint(w * qinv).astype(np.int64)
    obj, gain, loss, keys, vals = dk.coverage_block(
        X, wq, radius, lab1, d1, d2, k, with_pairs, grid
    )
    value = float(w[d1 <= radius].sum())
    return {
        "obj": obj,
        "value": value,
        "gain": gain,
        "loss": loss,
        "keys": keys,
        "vals": vals,
    }


def _combine(a, b):
    return {
        "obj": a["obj"] + b["obj"],
        "value": a["value"] + b["value"],
        "gain": a["gain"] + b["gain"],
        "loss": a["loss"] + b["loss"],
        "keys": np.concatenate([a["keys"], b["keys"]]),
        "vals": np.concatenate([a["vals"], b["vals"]]),
    }


def _block_labels(X, sites):
    return kern.assign_l1(X, sites)[0]


# ---------------------------------------------------------------------------
# The search (shared by both models)
# ---------------------------------------------------------------------------


@dataclass
class _Totals:
    """Objective and swap gains of one set of open sites (all in quanta)."""

    obj: int
    value: float  # the objective in the units of the model (float sum)
    gain: np.ndarray  # (m,)
    loss: np.ndarray  # (k,)
    keys: np.ndarray  # distinct c * k + j
    extra: np.ndarray  # their summed corrections


class _Problem:
    """One model on one engine: what a pass computes and how moves are ranked.

    ``sign`` is +1 when the objective is maximised (coverage) and -1 when it
    is minimised (p-median); ``gain - loss + extra`` is always the improvement.
    """

    def __init__(self, eng, block_fn, params, cand, fixed, rank, sign):
        self.eng = eng
        self.block_fn = block_fn
        self.params = params
        self.cand = cand
        self.fixed = fixed
        self.grid = eng.constant(dk.build_grid(cand))
        self.rank = rank
        self.sign = sign
        self.passes = 0

    def sites(self, open_idx):
        return np.vstack([self.cand[np.asarray(open_idx, dtype=np.int64)], self.fixed])

    def evaluate(self, open_idx, with_pairs=True):
        """One pass over the points for the open candidates ``open_idx``."""
        k = len(open_idx)
        r = self.eng.map_reduce(
            self.block_fn,
            _combine,
            self.sites(open_idx),
            k,
            *self.params,
            with_pairs,
            self.grid,
        )
        self.passes += 1
        if isinstance(self.eng, _NumpyEngine):
            # One block: each pair comes out once already.
            keys, extra = r["keys"], r["vals"]
        else:
            keys, inv = np.unique(r["keys"], return_inverse=True)
            extra = np.zeros(keys.shape[0], dtype=np.int64)
            np.add.at(extra, inv, r["vals"])
        return _Totals(r["obj"], r["value"], r["gain"], r["loss"], keys, extra)

    def _closed(self, open_idx):
        closed = np.ones(self.cand.shape[0], dtype=bool)
        closed[np.asarray(open_idx, dtype=np.int64)] = False
        return closed

    def best_open(self, tot, open_idx):
        """Closed candidate with the largest opening gain (ties: by rank)."""
        closed = np.flatnonzero(self._closed(open_idx))
        o = np.lexsort((self.rank[closed], -tot.gain[closed]))
        return int(closed[o[0]])

    def best_swap(self, tot, open_idx):
        """(improvement, candidate in, slot out) of the best swap, or None."""
        k = len(open_idx)
        closed = self._closed(open_idx)
        cs = np.flatnonzero(closed)
        if k == 0 or cs.shape[0] == 0:
            return None
        # Pairs without a correction: the best is the smallest loss.
        j0 = int(np.argmin(tot.loss))
        c_all = np.concatenate([cs, tot.keys // k])
        j_all = np.concatenate([np.full(cs.shape[0], j0), tot.keys % k])
        imp = np.concatenate(
            [
                tot.gain[cs] - tot.loss[j0],
                tot.gain[tot.keys // k] - tot.loss[tot.keys % k] + tot.extra,
            ]
        )
        keep = closed[c_all]
        c_all, j_all, imp = c_all[keep], j_all[keep], imp[keep]
        o = np.lexsort((j_all, self.rank[c_all], -imp))[0]
        return int(imp[o]), int(c_all[o]), int(j_all[o])

    # The three steps of the iterated local search (see _perturbed_search),
    # each a sequence of passes here.

    def opening_gains(self, open_idx):
        """Gain of opening each candidate with ``open_idx`` open, shape (m,)."""
        return self.evaluate(open_idx, with_pairs=False).gain

    def greedy(self, open_idx, k):
        return _greedy(self, open_idx, k)

    def swap_search(self, open_idx, max_iter, history):
        return _swap_search(self, open_idx, max_iter, lambda t: 0, history)


@dataclass
class _Value:
    """Objective of one set of open sites: in quanta, and as a float."""

    obj: int
    value: float


class _CoverageIncidence:
    """Coverage in memory on the stored (point, candidate) pairs within the radius.

    The same steps as :class:`_Problem` (``opening_gains``, ``greedy``,
    ``swap_search``) with the same integer gains and tie-breaks, so the search
    opens the same sites; each step is one numba call over the pairs instead
    of passes that look the pairs up again on the grid.
    """

    sign = +1

    def __init__(self, inc, X, w, wq, m, rank):
        rows, ptr, idx, fixed_covered = inc
        self.ptr, self.idx = ptr, idx
        # Candidate -> points, for the greedy's incremental gain updates.
        point = np.repeat(np.arange(rows.shape[0], dtype=np.int64), np.diff(ptr))
        order = np.argsort(idx, kind="stable")
        self.cidx = point[order]
        self.cptr = np.zeros(m + 1, dtype=np.int64)
        np.cumsum(np.bincount(idx, minlength=m), out=self.cptr[1:])
        self.wq = np.ascontiguousarray(wq[rows])
        self.w = np.ascontiguousarray(w[rows])
        # Points covered by a fixed site count whatever is open.
        base = fixed_covered & (wq > 0)
        self.base_q = int(wq[base].sum())
        self.base_w = float(w[base].sum())
        self.m = m
        self.rank = np.ascontiguousarray(rank, dtype=np.int64)
        self.passes = 2  # counting the pairs, then storing them

    @classmethod
    def build(cls, X, w, k, qinv, radius, cand, fixed, rank, max_bytes):
        """The stored problem, or None when its pairs would exceed ``max_bytes``."""
        m = cand.shape[0]
        # Pairs are held twice (by point and by candidate), int64 each; the
        # swap search adds an (m, k) table and a few arrays per point.
        max_pairs = (max_bytes - 8 * (m * k + 4 * X.shape[0])) // 16
        if max_pairs <= 0:
            return None
        wq = np.rint(w * qinv).astype(np.int64)
        inc = dk.coverage_incidence(
            X, wq, radius, fixed, dk.build_grid(cand), max_pairs
        )
        if inc is None:
            return None
        return cls(inc, X, w, wq, m, rank)

    def _slots(self, open_idx):
        slot = np.full(self.m, -1, dtype=np.int64)
        opened = np.asarray(open_idx, dtype=np.int64)
        slot[opened] = np.arange(opened.shape[0])
        return slot, opened

    def opening_gains(self, open_idx):
        slot, _ = self._slots(open_idx)
        gain = np.empty(self.m, dtype=np.int64)
        dk._inc_opening_gains(self.ptr, self.idx, self.wq, slot, gain)
        return gain

    def greedy(self, open_idx, k):
        slot, start = self._slots(open_idx)
        opened = np.full(k, -1, dtype=np.int64)
        opened[: start.shape[0]] = start
        dk._inc_greedy(
            self.ptr,
            self.idx,
            self.cptr,
            self.cidx,
            self.wq,
            slot,
            self.rank,
            opened,
            start.shape[0],
        )
        return opened.tolist()

    def swap_search(self, open_idx, max_iter, history):
        slot, opened = self._slots(open_idx)
        opened = opened.copy()
        obj = np.empty(max_iter + 1, dtype=np.int64)
        val = np.empty(max_iter + 1, dtype=np.float64)
        n_swaps, nh = dk._inc_swap_search(
            self.ptr,
            self.idx,
            self.wq,
            self.w,
            self.base_q,
            self.base_w,
            slot,
            opened,
            self.rank,
            max_iter,
            obj,
            val,
        )
        history.extend(val[:nh].tolist())
        return opened.tolist(), _Value(int(obj[nh - 1]), float(val[nh - 1])), n_swaps


def _greedy(prob, open_idx, k, exclude=()):
    """Add the candidate of largest gain until ``k`` are open.

    ``exclude``: candidates not to reopen (unless nothing else is left).
    """
    open_idx = list(open_idx)
    while len(open_idx) < k:
        tot = prob.evaluate(open_idx, with_pairs=False)
        banned = [c for c in exclude if c not in open_idx]
        if prob.cand.shape[0] - len(open_idx) - len(banned) < 1:
            banned = []
        open_idx.append(prob.best_open(tot, open_idx + banned))
    return open_idx


def _swap_search(prob, open_idx, max_iter, min_gain, history):
    """Best-improvement swaps while one improves by more than ``min_gain``.

    Returns the open candidates, the totals of the final set and the number
    of swaps made.
    """
    open_idx = list(open_idx)
    n_swaps = 0
    while True:
        tot = prob.evaluate(open_idx)
        history.append(tot.value)
        if n_swaps >= max_iter:
            break
        move = prob.best_swap(tot, open_idx)
        if move is None or move[0] <= min_gain(tot):
            break
        imp, c, j = move
        logger.debug(
            "swap %d: open candidate %d for %d (gain %d quanta)",
            n_swaps + 1,
            c,
            open_idx[j],
            imp,
        )
        open_idx[j] = c
        n_swaps += 1
    return open_idx, tot, n_swaps


def _shake(prob, open_idx, k, closed_now, rng):
    """Reopen sites up to ``k``, drawn without replacement ~ their opening gain.

    One evaluation: the draws are made together from the gains with
    ``open_idx`` open (the sites just closed excluded), a cheap kick rather
    than a careful choice; the swap search that follows does the careful part.
    """
    p = np.maximum(prob.opening_gains(open_idx), 0).astype(np.float64)
    p[np.asarray(list(open_idx) + list(closed_now), dtype=np.int64)] = 0.0
    need = k - len(open_idx)
    drawn = []
    if np.count_nonzero(p) >= need:
        drawn = rng.choice(p.shape[0], size=need, replace=False, p=p / p.sum()).tolist()
    open_idx = list(open_idx) + [int(c) for c in drawn]
    return prob.greedy(open_idx, k)


def _perturbed_search(prob, open_idx, tot, n_swaps, rounds, rng, max_iter, history):
    """Iterated local search: shake the local optimum, search again, keep gains.

    Each round closes a random number (1 to half) of the open candidates,
    reopens as many at random (:func:`_shake`) and runs the swap search; the
    result replaces the current one if it is at least as good (in quanta:
    moving across plateaus of equal value, common in coverage, is what lets
    later rounds escape). The draws come from ``rng`` on the client, so every
    engine and chunking shakes alike; ``prob`` is a :class:`_Problem` or a
    :class:`_CoverageIncidence`, whose steps decide alike.
    """
    k = len(open_idx)
    better = (lambda a, b: a >= b) if prob.sign > 0 else (lambda a, b: a <= b)
    for r in range(rounds):
        n_out = int(rng.integers(1, max(1, k // 2) + 1))
        out = set(rng.choice(k, size=n_out, replace=False).tolist())
        kept = [c for j, c in enumerate(open_idx) if j not in out]
        trial = _shake(prob, kept, k, [open_idx[j] for j in out], rng)
        trial, t_tot, t_swaps = prob.swap_search(trial, max_iter, [])
        if better(t_tot.obj, tot.obj):
            logger.debug("round %d: %.6g -> %.6g", r, tot.value, t_tot.value)
            open_idx, tot = trial, t_tot
            n_swaps += t_swaps
            history.append(tot.value)
    return open_idx, tot, n_swaps


@dataclass
class DiscreteResult:
    """What the discrete searches return.

    Attributes
    ----------
    center_indices : np.ndarray, shape (k,), int64
        Chosen candidates, ascending.
    objective : float
        Weighted L1 cost (p-median) or covered weight (coverage), fixed sites
        included.
    n_iter : int
        Swaps made (best run).
    history : np.ndarray
        Objective after the start and after each swap (best run).
    n_passes : int
        Passes over the demand points, all runs.
    """

    center_indices: np.ndarray
    objective: float
    n_iter: int
    history: np.ndarray
    n_passes: int


def _joint_extent(s, cand, fixed):
    """Largest L1 distance between a demand point and any site (a bound)."""
    lo = np.minimum(s["lo"], cand.min(axis=0))
    hi = np.maximum(s["hi"], cand.max(axis=0))
    if fixed.shape[0]:
        lo = np.minimum(lo, fixed.min(axis=0))
        hi = np.maximum(hi, fixed.max(axis=0))
    return float(np.sum(hi - lo))


# ---------------------------------------------------------------------------
# p-median over candidates
# ---------------------------------------------------------------------------


def _draw(p, u):
    cum = np.cumsum(p)
    return np.minimum(np.searchsorted(cum, u * cum[-1], side="right"), p.shape[0] - 1)


def _start_sites(init, run, Xs, ws, k, cand, fixed, grid_local, rng):
    """Partial start for one run: candidate indices, completed greedily later."""
    if isinstance(init, np.ndarray):
        snapped = dk.nearest_candidate(init, grid_local)
        return list(dict.fromkeys(snapped.tolist()))
    if init == "k-medians++" and run == 0:
        return []
    chosen = []
    D = kern.assign_l1(Xs, fixed)[1] if fixed.shape[0] else None
    for _ in range(k):
        p = ws if (init == "random" or D is None) else ws * D
        if not p.sum() > 0:
            break
        i = int(_draw(p, rng.random(1))[0])
        c = int(dk.nearest_candidate(Xs[i : i + 1], grid_local)[0])
        if c not in chosen:
            chosen.append(c)
        dc = np.abs(Xs - cand[c]).sum(axis=1)
        D = dc if D is None else np.minimum(D, dc)
    return chosen


def pmedian_search(
    X,
    w,
    k,
    cand,
    fixed,
    *,
    init="k-medians++",
    n_init=1,
    max_iter=300,
    tol=1e-4,
    local_search=True,
    n_rounds=PMEDIAN_ROUNDS,
    random_state=None,
):
    """Discrete weighted L1 p-median: ``k`` of the candidate sites, fixed ones open.

    Parameters
    ----------
    X : np.ndarray or dask.array.Array, shape (n, d), float64
        Demand points (validated types; values are checked here).
    w : np.ndarray or dask.array.Array, shape (n,), float64
    k : int
        Sites to open, ``1 <= k <= m``.
    cand : np.ndarray, shape (m, d), float64
        Candidate sites (from :func:`check_candidates`).
    fixed : np.ndarray, shape (f, d), float64
        Existing sites, always open.
    init : {"k-medians++", "random"} or np.ndarray, shape (k, d)
        "k-medians++": the first run starts greedy (largest saving first, on
        a sample of at most ``GREEDY_SAMPLE_SIZE`` points; with more points,
        the swap search first runs on that sample too), later runs from
        D^1-sampled demand points snapped to their nearest candidates;
        "random": weighted demand points snapped likewise; an array: its
        rows snapped to their nearest candidates. Starts short of ``k``
        distinct candidates are completed greedily.
    n_init : int
        Runs; the lowest objective wins.
    max_iter : int
        Cap on swaps per run.
    tol : float
        A swap must lower the objective by more than ``tol`` times it.
    local_search : bool
        False: the start only.
    n_rounds : int
        Rounds of iterated local search after each run's first local optimum
        (:func:`_perturbed_search`), on the sample when the points are more
        than ``GREEDY_SAMPLE_SIZE`` (before the passes over all points), else
        on all points. ``0``: swaps only.
    random_state : int, RandomState or None

    Returns
    -------
    DiscreteResult
    """
    from sklearn.utils import check_random_state

    eng = _engine(X, w)
    s = _summary(eng)
    n = s["n"]
    extent = _joint_extent(s, cand, fixed)
    qinv = dk.quantum_inverse(s["wmax"] * extent, n)
    sentinel = int(np.ceil(s["wmax"] * extent * qinv)) + 2
    rank = np.arange(cand.shape[0])
    prob = _Problem(eng, _block_pmedian, (qinv, sentinel), cand, fixed, rank, -1)
    grid_local = dk.build_grid(cand)
    seeds = check_random_state(random_state).randint(
        np.iinfo(np.int32).max, size=n_init
    )
    best = None
    for run, seed in enumerate(seeds):
        rng = np.random.default_rng(seed)
        idx = (
            None
            if n <= GREEDY_SAMPLE_SIZE
            else np.sort(rng.choice(n, size=GREEDY_SAMPLE_SIZE, replace=False))
        )
        Xs, ws = eng.sample(idx)
        start = _start_sites(init, run, Xs, ws, k, cand, fixed, grid_local, rng)[:k]
        min_gain = lambda t: max(0.0, tol * t.obj)  # noqa: E731
        if len(start) < k or (local_search and idx is not None):
            # On the sample, in memory: complete greedily and, if the sample
            # is not all the points, swap to its local optimum, so that the
            # (costly) passes over all points have few swaps left to make.
            eng_s = _NumpyEngine(np.ascontiguousarray(Xs), np.ascontiguousarray(ws))
            s_s = _summary(eng_s)
            q_s = dk.quantum_inverse(s_s["wmax"] * extent, s_s["n"])
            sen_s = int(np.ceil(s_s["wmax"] * extent * q_s)) + 2
            local = _Problem(eng_s, _block_pmedian, (q_s, sen_s), cand, fixed, rank, -1)
            start = _greedy(local, start, k)
            if local_search and idx is not None:
                start, s_tot, _ = _swap_search(local, start, max_iter, min_gain, [])
                start = _perturbed_search(
                    local, start, s_tot, 0, n_rounds, rng, max_iter, []
                )[0]
        history = []
        if local_search:
            open_idx, tot, n_swaps = _swap_search(
                prob, start, max_iter, min_gain, history
            )
            if idx is None:
                open_idx, tot, n_swaps = _perturbed_search(
                    prob, open_idx, tot, n_swaps, n_rounds, rng, max_iter, history
                )
        else:
            open_idx, n_swaps = start, 0
            tot = prob.evaluate(open_idx, with_pairs=False)
            history.append(tot.value)
        logger.info("run %d: objective %.6g after %d swaps", run, tot.value, n_swaps)
        if best is None or tot.obj < best[1].obj:
            best = (open_idx, tot, n_swaps, history)
    open_idx, tot, n_swaps, history = best
    return DiscreteResult(
        np.sort(np.asarray(open_idx, dtype=np.int64)),
        float(tot.value),
        int(n_swaps),
        np.asarray(history),
        prob.passes,
    )


# ---------------------------------------------------------------------------
# Maximal coverage
# ---------------------------------------------------------------------------


def coverage_search(
    X, w, k, radius, cand, fixed, *, max_iter=300, n_rounds=30, random_state=None
):
    """Maximal covering location: ``k`` candidates maximising covered weight.

    A point is covered when an open site (fixed ones included) lies within
    L1 distance ``radius`` of it. Greedy (largest uncovered weight first) on
    all points, then best-improvement swaps while one covers more, then
    rounds of iterated local search.

    Parameters
    ----------
    X, w, k, cand, fixed
        As in :func:`pmedian_search`.
    radius : float
        Coverage radius, units of ``X``, ``>= 0``.
    max_iter : int
        Cap on swaps per local search.
    n_rounds : int
        Rounds of iterated local search after the first local optimum (see
        :func:`_perturbed_search`).
    random_state : int, RandomState or None
        Orders the candidates for ties (equal gains): coverage problems have
        many, and a seeded order keeps the choice reproducible. Also draws
        the sites each round closes.

    Returns
    -------
    DiscreteResult
        ``objective`` is the covered weight.
    total_weight : float
    """
    from sklearn.utils import check_random_state

    eng = _engine(X, w)
    s = _summary(eng)
    qinv = dk.quantum_inverse(s["wmax"], s["n"])
    rs = check_random_state(random_state)
    rank = rs.permutation(cand.shape[0])
    rng = np.random.default_rng(rs.randint(np.iinfo(np.int32).max))
    prob = None
    if isinstance(eng, _NumpyEngine):
        prob = _CoverageIncidence.build(
            X, w, k, qinv, float(radius), cand, fixed, rank, COVERAGE_PAIRS_BYTES
        )
    if prob is None:
        prob = _Problem(
            eng, _block_coverage, (qinv, float(radius)), cand, fixed, rank, +1
        )
    start = prob.greedy([], k)
    history = []
    open_idx, tot, n_swaps = prob.swap_search(start, max_iter, history)
    open_idx, tot, n_swaps = _perturbed_search(
        prob, open_idx, tot, n_swaps, n_rounds, rng, max_iter, history
    )
    logger.info("coverage: %.6g of %.6g after %d swaps", tot.value, s["wsum"], n_swaps)
    res = DiscreteResult(
        np.sort(np.asarray(open_idx, dtype=np.int64)),
        float(tot.value),
        int(n_swaps),
        np.asarray(history),
        prob.passes,
    )
    return res, float(s["wsum"])


def site_labels(X, sites):
    """Nearest site per point (L1, ties to the lowest index); lazy for Dask.

    Parameters
    ----------
    X : np.ndarray or dask.array.Array, shape (n, d)
    sites : np.ndarray, shape (s, d)

    Returns
    -------
    np.ndarray or dask.array.Array, shape (n,), int64
    """
    if isinstance(X, da.Array):
        return X.map_blocks(_block_labels, sites, dtype=np.int64, drop_axis=1)
    return _block_labels(X, sites)


def check_n_sites(n_sites, name="n_sites"):
    """``n_sites`` must be an integer >= 1."""
    if (
        not isinstance(n_sites, numbers.Integral)
        or isinstance(n_sites, bool)
        or n_sites < 1
    ):
        raise ValueError(f"{name} must be an integer >= 1, got {n_sites!r}")
    return int(n_sites)
