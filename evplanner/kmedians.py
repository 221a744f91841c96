"""Weighted K-Medians in L1 (Manhattan) distance, in memory or Dask-chunked.

Choose ``k`` station sites that minimise the total weighted L1 distance from
demand points to their nearest site (the rectilinear p-median objective),

.. math::

    \\min_{c_1..c_k} \\sum_i w_i \\min_j \\lVert x_i - c_j \\rVert_1,

with a Lloyd-style loop (assign each point to its nearest centre, move each
centre to the per-coordinate weighted median of its points, which is exactly
optimal for L1) followed by a local search that swaps centres for demand
points while that lowers the objective (Teitz-Bart vertex substitution).

The module reads top to bottom as: input validation, initialisation, the two
engines (NumPy in memory; Dask chunk -> combine -> aggregate), the median
update, the local search, the driver (:func:`k_medians`) and the estimator
(:class:`KMedians`). The numba kernels live in :mod:`evplanner._kernels`.
"""

from __future__ import annotations

import logging
import numbers
from dataclasses import dataclass
from typing import NamedTuple

import dask
import dask.array as da
import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from evplanner import _capacitated as cap
from evplanner import _discrete
from evplanner import _kernels as kern
from evplanner._chunked import combine_many, compute_and_keep, tree_levels, tree_reduce
from evplanner._validation import as_points, as_weights, check_summary, is_dask

__all__ = ["KMedians", "KMediansResult", "k_medians"]

logger = logging.getLogger(__name__)

#: Rows used to initialise when there are more (a chunk-invariant sample).
INIT_SAMPLE_SIZE = 20_000
#: Histogram bins per cluster and coordinate in the chunked median step.
_N_BINS = 1024
#: Most (value, weight) pairs one refinement pass gathers to the client.
_GATHER_BUDGET = 2_000_000
#: Least effective rows per centre for a run to work on its sample (Kish's
#: effective size (sum w)^2 / sum w^2: the sample's rows when the weights are
#: equal, a handful when a few rows carry most of the weight).
_SAMPLE_ROWS_PER_CENTRE = 50
#: Centres whose best swap is retried with Lloyd when no plain swap helps.
_N_SWAP_TRIALS = 3
#: Rows per block when counting distinct points in memory.
_DISTINCT_BLOCK = 4096
#: Most distinct demand locations the capacitated search accepts.
_MAX_DISTINCT = 500_000
#: Relocation moves refused in a row after which the capacitated search stops.
_N_RELOCATIONS = 30


# ---------------------------------------------------------------------------
# Input validation (once, at the entry point)
# ---------------------------------------------------------------------------


def _check_params(n_clusters, init, n_init, max_iter, tol, n_swap_candidates):
    if not isinstance(n_clusters, numbers.Integral) or isinstance(n_clusters, bool):
        raise ValueError(
            f"n_clusters must be an integer >= 1, got {n_clusters!r} "
            f"({type(n_clusters).__name__})"
        )
    if n_clusters < 1:
        raise ValueError(f"n_clusters must be an integer >= 1, got {n_clusters}")
    if isinstance(init, str):
        if init not in ("k-medians++", "random"):
            raise ValueError(
                "init must be 'k-medians++', 'random' or an array of shape "
                f"(n_clusters, n_features), got {init!r}"
            )
    if not (
        n_init == "auto"
        or (
            isinstance(n_init, numbers.Integral)
            and not isinstance(n_init, bool)
            and n_init >= 1
        )
    ):
        raise ValueError(f"n_init must be 'auto' or an integer >= 1, got {n_init!r}")
    if not isinstance(max_iter, numbers.Integral) or max_iter < 1:
        raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}")
    if not isinstance(tol, numbers.Real) or not np.isfinite(tol) or tol < 0:
        raise ValueError(f"tol must be a finite number >= 0, got {tol!r}")
    if not isinstance(n_swap_candidates, numbers.Integral) or n_swap_candidates < 1:
        raise ValueError(
            f"n_swap_candidates must be an integer >= 1, got {n_swap_candidates!r}"
        )


def _to_fixed(fixed_centers, n_features):
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


def _to_init(init, n_clusters, n_features):
    if isinstance(init, str):
        return init
    C = np.asarray(init, dtype=np.float64)
    if C.shape != (n_clusters, n_features):
        raise ValueError(
            "init array must have shape (n_clusters, n_features) = "
            f"({n_clusters}, {n_features}), got {C.shape}"
        )
    if not np.isfinite(C).all():
        raise ValueError("init array must be finite, got NaN or inf")
    return np.ascontiguousarray(C)


def _distinct_rows(X, w, limit):
    """Sorted distinct rows with positive weight, or None if more than `limit`."""
    pos = X[w > 0]
    seen = np.empty((0, X.shape[1]), dtype=np.float64)
    # Block by block, so that the usual case (many distinct points) stops early.
    for s in range(0, pos.shape[0], _DISTINCT_BLOCK):
        seen = np.unique(np.vstack([seen, pos[s : s + _DISTINCT_BLOCK]]), axis=0)
        if seen.shape[0] > limit:
            return None
    return seen


def _summary(X, w, offset, limit):
    """Validity, bounding box, weight total and distinct rows of one block."""
    n, d = X.shape
    out = {"n": n, "wsum": 0.0, "bad_x": None, "bad_w": None}
    finite = np.isfinite(X).all(axis=1)
    if not finite.all():
        r = int(np.flatnonzero(~finite)[0])
        out["bad_x"] = (offset + r, X[r].tolist())
    wbad = ~(np.isfinite(w) & (w >= 0))
    if wbad.any():
        r = int(np.flatnonzero(wbad)[0])
        out["bad_w"] = (offset + r, float(w[r]))
    if out["bad_x"] is None and out["bad_w"] is None:
        out["wsum"] = float(w.sum())
        out["lo"] = X.min(axis=0) if n else np.full(d, np.inf)
        out["hi"] = X.max(axis=0) if n else np.full(d, -np.inf)
        out["distinct"] = _distinct_rows(X, w, limit)
    return out


def _combine_summary(a, b, limit):
    out = {"n": a["n"] + b["n"], "wsum": a["wsum"] + b["wsum"]}
    for key in ("bad_x", "bad_w"):
        hits = [s[key] for s in (a, b) if s[key] is not None]
        out[key] = min(hits, key=lambda h: h[0]) if hits else None
    if out["bad_x"] is None and out["bad_w"] is None:
        out["lo"] = np.minimum(a["lo"], b["lo"])
        out["hi"] = np.maximum(a["hi"], b["hi"])
        if a["distinct"] is None or b["distinct"] is None:
            out["distinct"] = None
        else:
            u = np.unique(np.vstack([a["distinct"], b["distinct"]]), axis=0)
            out["distinct"] = u if u.shape[0] <= limit else None
    return out


# ---------------------------------------------------------------------------
# Initialisation (on a chunk-invariant sample, so both engines agree)
# ---------------------------------------------------------------------------


def _sample_index(n, rng):
    # Depends only on n and the seed, never on the chunking.
    if n <= INIT_SAMPLE_SIZE:
        return None
    return np.sort(rng.choice(n, size=INIT_SAMPLE_SIZE, replace=False))


def _sample_represents(ws, k):
    """Whether a sample of weights ``ws`` is rich enough to place ``k`` centres."""
    total, square = float(np.sum(ws)), float(np.dot(ws, ws))
    return square > 0 and total * total >= _SAMPLE_ROWS_PER_CENTRE * k * square


def _draw(p, u):
    """Inverse-CDF draw(s): first index whose cumulative weight exceeds u * total.

    One uniform per draw and row order kept, so a point of weight 3 is drawn
    exactly when one of three repeated copies of it would be.
    """
    cum = np.cumsum(p)
    idx = np.searchsorted(cum, u * cum[-1], side="right")
    return np.minimum(idx, p.shape[0] - 1)


def _fallback_p(Xs, ws, chosen):
    # All remaining demand already sits on a centre: take any point that is
    # not yet a new centre (weighted if possible) so the centres stay distinct.
    if chosen.shape[0]:
        free = kern.assign_l1(Xs, chosen)[1] > 0
    else:
        free = np.ones(Xs.shape[0], dtype=bool)
    p = ws * free
    if not p.sum() > 0:
        p = free.astype(np.float64)
    if not p.sum() > 0:
        p = np.ones(Xs.shape[0])
    return p


def _init_kmedianspp(Xs, ws, k, fixed, rng):
    """Greedy k-medians++: D^1 sampling with 2 + log(k) trials per centre.

    Each new centre is drawn with probability proportional to ``w_i D_i`` (the
    weighted L1 distance to the nearest centre so far, fixed centres included);
    of the trials, the one that lowers the objective most is kept.
    """
    n, d = Xs.shape
    n_trials = 2 + int(np.log(k))
    centers = np.empty((k, d))
    D = kern.assign_l1(Xs, fixed)[1] if fixed.shape[0] else None
    for i in range(k):
        p = ws if D is None else ws * D
        if not p.sum() > 0:
            p = _fallback_p(Xs, ws, centers[:i])
        if D is None:
            best = int(_draw(p, rng.random(1))[0])
            D = kern.l1_distances(Xs, Xs[best : best + 1])[:, 0]
        else:
            idx = _draw(p, rng.random(n_trials))
            dc = np.minimum(D[:, None], kern.l1_distances(Xs, Xs[idx]))
            t = int(np.argmin(ws @ dc))
            best = int(idx[t])
            D = dc[:, t]
        centers[i] = Xs[best]
    return centers


def _init_random(Xs, ws, k, rng):
    """k distinct points drawn with probability proportional to weight."""
    d = Xs.shape[1]
    centers = np.empty((k, d))
    p = ws.copy()
    for i in range(k):
        if not p.sum() > 0:
            p = _fallback_p(Xs, ws, centers[:i])
        best = int(_draw(p, rng.random(1))[0])
        centers[i] = Xs[best]
        p = p * (Xs != Xs[best]).any(axis=1)
    return centers


# ---------------------------------------------------------------------------
# Assignment and partial statistics per block (pure kernels)
# ---------------------------------------------------------------------------


def _top_costs(X, cost, offset, r):
    """The r most costly rows, ties to the lowest global row index."""
    n = cost.shape[0]
    if n > r:
        thr = np.partition(cost, n - r)[n - r]
        above = np.flatnonzero(cost > thr)
        at = np.flatnonzero(cost == thr)[: r - above.shape[0]]
        idx = np.concatenate([above, at])
    else:
        idx = np.arange(n)
    return _sort_top(X[idx], cost[idx], idx.astype(np.int64) + offset, r)


def _sort_top(X, cost, gidx, r):
    o = np.lexsort((gidx, -cost))[:r]
    return X[o], cost[o], gidx[o]


def _merge_top(a, b, r):
    return _sort_top(
        np.vstack([a[0], b[0]]),
        np.concatenate([a[1], b[1]]),
        np.concatenate([a[2], b[2]]),
        r,
    )


#: Rows from which the assignment policy below samples; smaller inputs always
#: carry exact bounds (the policy's own sample would cost as much as it saves).
_POLICY_MIN_ROWS = 20_000
#: Rows the policy samples (strided, so the sample is spread over the input).
_POLICY_SAMPLE = 2048
#: Least sampled fraction of points kept by their bound for the bounded
#: assignment to pay off; below, one distance per point is wasted.
_BOUND_MIN_KEPT = 0.05
#: Least sampled fraction of points whose margin (second minus nearest
#: distance) exceeds the current move, for exact second distances to pay off
#: in the next assignment (they cost ~1.4-2x a plain search).
_EXACT_MIN_MARGIN = 0.3


def _assign_carrying(X, centers, prev):
    """Exact assignment of ``X`` to ``centers``, reusing ``prev`` when it pays.

    ``prev`` is ``(old_centers, labels, lower)`` from the previous call on the
    same rows, or None. Returns ``(labels, dist, lower)``: the labels and
    distances are always exactly those of :func:`evplanner._kernels.assign_l1`;
    only the work done and the tightness of the returned lower bounds (for
    the next call) depend on the choices below, which a strided sample of
    the rows makes. Large first moves make carried bounds useless, so the
    early iterations run a plain search (keeping a cheap, weaker bound),
    later ones the bounded search with exact second distances.
    """
    n = X.shape[0]
    if prev is None or prev[0].shape != centers.shape:
        if n < _POLICY_MIN_ROWS:
            return kern.assign2_l1(X, centers)
        # Nothing to reuse, and whether exact second distances will pay off
        # depends on the next moves, unknown yet: the plain search.
        return kern.assign2_l1(X, centers, exact=False)
    old, labels, lower = prev
    if n < _POLICY_MIN_ROWS:
        return kern.assign_bounded(X, centers, old, labels, lower)
    step = max(1, n // _POLICY_SAMPLE)
    Xs = X[::step]
    kept = kern.assign_bounded(
        Xs,
        centers,
        old,
        np.ascontiguousarray(labels[::step]),
        np.ascontiguousarray(lower[::step]),
        return_kept=True,
    )[3]
    _, d1, d2 = kern.assign2_l1(Xs, centers)
    # The next move is unknown; this one (beyond the centres measured
    # exactly) stands in for it.
    delta = np.sort(np.abs(centers - old).sum(axis=1))[::-1]
    move = delta[min(kern.N_MOVERS, delta.shape[0] - 1)]
    exact = bool(np.mean(d2 - d1 > move) >= _EXACT_MIN_MARGIN)
    if np.mean(kept) >= _BOUND_MIN_KEPT:
        return kern.assign_bounded(X, centers, old, labels, lower, exact=exact)
    return kern.assign2_l1(X, centers, exact=exact)


def _block_assign_stats(X, w, offset, prev, centers, k, edges, r):
    """Pass A of the chunked step: assignment, objective, histograms, top costs.

    ``prev`` is this block's state from the previous pass (centres, labels,
    lower bounds), kept in worker memory, so that the assignment can reuse
    it (:func:`evplanner._kernels.assign_bounded`); the new state is returned
    alongside the statistics.
    """
    labels, dist, lower = _assign_carrying(X, centers, prev)
    cost = w * dist
    hist_w, hist_n = kern.cluster_histograms(X, w, labels, k, edges)
    stats = {
        "obj": float(np.sum(cost)),
        "hist_w": hist_w,
        "hist_n": hist_n,
        "top": _top_costs(X, cost, offset, r),
    }
    return stats, (centers, labels, lower)


def _combine_assign_stats(a, b, r):
    return {
        "obj": a["obj"] + b["obj"],
        "hist_w": a["hist_w"] + b["hist_w"],
        "hist_n": a["hist_n"] + b["hist_n"],
        "top": _merge_top(a["top"], b["top"], r),
    }


def _block_targets(X, w, state, lut, ta, tb, sub_edges, gather):
    """Pass B: gather or sub-histogram the values inside each median's interval.

    Uses the labels pass A left in worker memory for this block.
    """
    return kern.target_stats(X, w, state[1], lut, ta, tb, sub_edges, gather)


def _combine_targets(a, b):
    return {
        "values": [
            np.concatenate(v) for v in zip(a["values"], b["values"], strict=True)
        ],
        "weights": [
            np.concatenate(v) for v in zip(a["weights"], b["weights"], strict=True)
        ],
        "hist_w": a["hist_w"] + b["hist_w"],
        "hist_n": a["hist_n"] + b["hist_n"],
        "hist_min": np.minimum(a["hist_min"], b["hist_min"]),
        "hist_max": np.maximum(a["hist_max"], b["hist_max"]),
    }


def _block_swap(X, w, centers, k, cands):
    """Objective and swap costs of one block (additive over blocks)."""
    labels, d1, d2 = kern.assign2_l1(X, centers)
    base, corr = kern.swap_costs(X, w, labels, d1, d2, cands, k)
    return {"obj": float(np.sum(w * d1)), "base": base, "corr": corr}


def _combine_swap(a, b):
    return {k: a[k] + b[k] for k in ("obj", "base", "corr")}


def _block_labels(X, centers):
    return kern.assign_l1(X, centers)[0]


# ---------------------------------------------------------------------------
# Engines: the same questions answered in memory or chunk by chunk
# ---------------------------------------------------------------------------


@dataclass
class _State:
    """Result of assigning the points to a set of centres."""

    centers: np.ndarray  # (k + n_fixed, d), the centres assigned to
    objective: float
    top: tuple  # (X (r, d), cost (r,), global row (r,)), most costly first
    extra: dict  # engine-private: labels or histograms


class _NumpyEngine:
    """All points in memory; medians by O(n) weighted selection."""

    def __init__(self, X, w, k, r):
        self.X, self.w, self.k, self.r = X, w, k, r
        self.n, self.d = X.shape
        self._bounds = None

    def summary(self, limit):
        return _summary(self.X, self.w, 0, limit)

    def sample(self, idx):
        if idx is None:
            return self.X, self.w
        return self.X[idx], self.w[idx]

    def assign(self, centers):
        # Carry Hamerly-style bounds from the previous call: the labels and
        # distances are exactly those of a full search, only cheaper.
        labels, dist, lower = _assign_carrying(self.X, centers, self._bounds)
        self._bounds = (centers.copy(), labels, lower)
        cost = self.w * dist
        return _State(
            centers,
            float(np.sum(cost)),
            _top_costs(self.X, cost, 0, self.r),
            {"labels": labels},
        )

    def medians(self, st):
        return kern.cluster_lower_medians(
            self.X, self.w, st.extra["labels"], st.centers.shape[0], self.k
        )

    def swap(self, centers, cands):
        return _block_swap(self.X, self.w, centers, self.k, cands)

    def labels(self, centers):
        return kern.assign_l1(self.X, centers)[0]

    def final_labels(self, st):
        # Every state comes from `assign`, whose labels are exactly those of
        # a full search for `st.centers` (re-seeding and swaps happen before
        # an assignment, never after): no need to search again.
        return st.extra["labels"]


class _DaskEngine:
    """Row-chunked points: chunk -> combine -> aggregate, points never gathered.

    Each Lloyd iteration is one pass (assignment, objective, per-cluster
    histograms of every coordinate) plus, usually, one more pass that gathers
    only the (value, weight) pairs inside each median's histogram bin; bins
    holding more than the gather budget are refined first. The medians are
    therefore exact, not approximations. The points are persisted once, and
    each block's labels and distance bounds stay in (worker) memory between
    passes, so later passes neither re-read the source nor re-search.
    """

    def __init__(self, X, w, k, r):
        # Every iteration reads the points two or three times: keep them in
        # (worker) memory rather than re-reading the source (e.g. Parquet).
        X, w = dask.persist(X, w)
        self.X, self.w, self.k, self.r = X, w, k, r
        self.n, self.d = X.shape
        self._xb = list(X.to_delayed().ravel())
        self._wb = list(w.to_delayed().ravel())
        self._off = np.concatenate([[0], np.cumsum(X.chunks[0])[:-1]]).astype(int)
        # Fewer bins when k d is large, so each chunk's histograms stay small.
        self.n_bins = int(min(_N_BINS, max(64, 2**22 // max(1, k * self.d))))
        self.edges = None
        self._states = None

    def _reduce(self, block_fn, combine, *args, with_offset=False, per_block=None):
        """Run ``block_fn(X_b, w_b, [offset_b], [per_block_b], *args)`` on every
        block, combine the results pairwise in a tree, compute once."""
        parts = []
        for b, (xb, wb) in enumerate(zip(self._xb, self._wb, strict=True)):
            lead = (xb, wb)
            if with_offset:
                lead += (self._off[b],)
            if per_block is not None:
                lead += (per_block[b],)
            parts.append(dask.delayed(block_fn)(*lead, *args))
        # The last combine runs here: one hop less per pass than a final task.
        return combine_many(list(dask.compute(*tree_levels(parts, combine))), combine)

    def summary(self, limit):
        s = self._reduce(
            _summary,
            lambda a, b: _combine_summary(a, b, limit),
            limit,
            with_offset=True,
        )
        if "lo" in s and s["n"]:
            # Global bins over the bounding box; the last edge is just above
            # the maximum so that bin b is exactly edges[b] <= x < edges[b+1].
            top = np.nextafter(s["hi"], np.inf)
            self.edges = np.stack(
                [
                    np.linspace(lo, hi, self.n_bins + 1)
                    for lo, hi in zip(s["lo"], top, strict=True)
                ]
            )
        return s

    def sample(self, idx):
        if idx is None:
            return dask.compute(self.X, self.w)
        return dask.compute(self.X[idx], self.w[idx])

    def assign(self, centers):
        r = self.r
        prev = self._states or [None] * len(self._xb)
        parts = [
            dask.delayed(_block_assign_stats, nout=2)(
                xb, wb, off, pb, centers, self.k, self.edges, r
            )
            for xb, wb, off, pb in zip(self._xb, self._wb, self._off, prev, strict=True)
        ]
        combine = lambda a, b: _combine_assign_stats(a, b, r)  # noqa: E731
        tops = tree_levels([p[0] for p in parts], combine)
        # One execution of the block tasks: the statistics come back to the
        # client (combined here, as in `_reduce`), the per-block labels and
        # bounds stay in (worker) memory.
        stats, states = compute_and_keep(tops, [p[1] for p in parts])
        s = combine_many(stats, combine)
        self._states = states
        return _State(centers, s["obj"], s["top"], {**s, "states": states})

    def medians(self, st):
        return _chunked_medians(self, st)

    def swap(self, centers, cands):
        return self._reduce(_block_swap, _combine_swap, centers, self.k, cands)

    def labels(self, centers):
        return self.X.map_blocks(_block_labels, centers, dtype=np.int64, drop_axis=1)

    def final_labels(self, st):
        # Lazy, like the input: the per-block labels held on the workers
        # belong to the last assignment, which need not be the best run's.
        return self.labels(st.centers)


# ---------------------------------------------------------------------------
# Median update (exact, chunked)
# ---------------------------------------------------------------------------


def _chunked_medians(eng, st):
    """Exact lower weighted medians from histograms plus targeted refinement.

    For cluster j and coordinate c, the combined histogram gives the first bin
    whose cumulative weight reaches half the cluster's weight: the lower
    weighted median lies in it, and the weight below it is known. That bin is
    a *target* ``[a, b)``: the next pass gathers its (value, weight) pairs and
    the median is selected exactly among them, or, if the bin holds more pairs
    than the gather budget, sub-bins it (keeping each sub-bin's min and max)
    and repeats on the sub-bin holding the median. Each refinement shrinks the
    interval ~B-fold, so it ends after a few passes even on repeated values.
    """
    k, d = eng.k, eng.d
    hist_w, hist_n = st.extra["hist_w"], st.extra["hist_n"]
    cum = np.cumsum(hist_w, axis=2)
    total = cum[:, :, -1]
    wsum = hist_w[:, 0, :].sum(axis=1)
    out = np.full((k, d), np.nan)
    half = 0.5 * total
    b = np.minimum((cum < half[:, :, None]).sum(axis=2), eng.n_bins - 1)
    jj, cc = np.nonzero(total > 0)
    bb = b[jj, cc]
    below = np.where(bb > 0, cum[jj, cc, np.maximum(bb - 1, 0)], 0.0)
    tgt = {
        "j": jj.astype(np.int64),
        "c": cc.astype(np.int64),
        "a": eng.edges[cc, bb],
        "b": eng.edges[cc, bb + 1],
        "below": below,
        "half": half[jj, cc],
        "count": hist_n[jj, cc, bb],
    }
    for _ in range(64):
        if tgt["j"].shape[0] == 0:
            break
        order = np.argsort(tgt["count"], kind="stable")
        fits = np.cumsum(tgt["count"][order]) <= _GATHER_BUDGET
        gather = np.zeros(tgt["j"].shape[0], dtype=bool)
        gather[order[fits]] = True
        lut = np.full((k, d), -1, dtype=np.int64)
        lut[tgt["j"], tgt["c"]] = np.arange(tgt["j"].shape[0])
        # Sub-bins only where a target is refined: when every target is
        # gathered (the usual pass) one bin each keeps the pass's messages
        # small (B bins x 4 arrays per target and block otherwise).
        n_sub = eng.n_bins if not gather.all() else 1
        sub_edges = np.stack(
            [
                np.linspace(a, bnd, n_sub + 1)
                for a, bnd in zip(tgt["a"], tgt["b"], strict=True)
            ]
        )
        res = eng._reduce(
            _block_targets,
            _combine_targets,
            lut,
            tgt["a"],
            tgt["b"],
            sub_edges,
            gather,
            per_block=st.extra["states"],
        )
        keep = []
        for t in range(tgt["j"].shape[0]):
            j, c = tgt["j"][t], tgt["c"][t]
            if gather[t]:
                vals, ws = res["values"][t], res["weights"][t]
                out[j, c] = kern.weighted_lower_median(
                    vals, ws, below=tgt["below"][t], half=tgt["half"][t]
                )
                continue
            hw, hn = res["hist_w"][t], res["hist_n"][t]
            hmin, hmax = res["hist_min"][t], res["hist_max"][t]
            csum = tgt["below"][t] + np.cumsum(hw)
            s = int((csum < tgt["half"][t]).sum())
            if s >= hw.shape[0] or hn[s] == 0:
                # Rounding left the sum a hair short: the last non-empty bin.
                s = int(np.flatnonzero(hn)[-1])
            if hmin[s] == hmax[s]:
                out[j, c] = hmin[s]
                continue
            tgt["below"][t] = csum[s - 1] if s > 0 else tgt["below"][t]
            tgt["a"][t] = hmin[s]
            tgt["b"][t] = np.nextafter(hmax[s], np.inf)
            tgt["count"][t] = hn[s]
            keep.append(t)
        tgt = {key: val[keep] for key, val in tgt.items()}
    return out, wsum


# ---------------------------------------------------------------------------
# Lloyd loop and re-seeding
# ---------------------------------------------------------------------------


def _reseed(new, empty, st, fixed):
    """Move empty (zero-weight) clusters onto the most costly points."""
    X_top, cost_top, _ = st.top
    taken = np.vstack([np.delete(new, empty, axis=0), fixed])
    for p, cost in zip(X_top, cost_top, strict=True):
        if empty.shape[0] == 0 or not cost > 0:
            break
        if taken.shape[0] and (taken == p).all(axis=1).any():
            continue
        new[empty[0]] = p
        taken = np.vstack([taken, p])
        empty = empty[1:]
    return new


def _lloyd(eng, centers, fixed, max_iter, tol, history, st=None):
    """Lloyd iterations from `centers` until the objective stalls.

    ``st``: the assignment state of ``centers`` when the caller has it.

    Returns the centres, their assignment state and the number of median
    updates. The exact objective cannot increase (each median is optimal for
    its cluster, re-assignment only lowers distances); if rounding says it
    did, the loop keeps the previous centres and stops.
    """
    if st is None:
        st = eng.assign(np.vstack([centers, fixed]))
    history.append(st.objective)
    n_iter = 0
    for _ in range(max_iter):
        med, wsum = eng.medians(st)
        new = np.where(np.isnan(med), centers, med)
        empty = np.flatnonzero(~(wsum > 0))
        if empty.shape[0]:
            new = _reseed(new, empty, st, fixed)
        n_iter += 1
        st_new = eng.assign(np.vstack([new, fixed]))
        logger.debug("iteration %d: objective %.6g", n_iter, st_new.objective)
        if st_new.objective > st.objective:
            break
        gain = st.objective - st_new.objective
        limit = tol * st.objective
        centers, st = new, st_new
        history.append(st.objective)
        if gain <= limit:
            break
    return centers, st, n_iter


# ---------------------------------------------------------------------------
# Local search (Teitz-Bart vertex substitution)
# ---------------------------------------------------------------------------


def _unique_rows_in_order(P):
    if P.shape[0] == 0:
        return P
    _, first = np.unique(P, axis=0, return_index=True)
    return P[np.sort(first)]


def _candidates(distinct, st, random_pool, centers_all, n_swap_candidates):
    """Candidate sites: all distinct demand points if few, else a sample.

    The sample is the currently most costly points (where far outliers sit)
    plus a weighted random sample of demand points; both are chunk-invariant.
    """
    if distinct is not None and distinct.shape[0] <= n_swap_candidates:
        pool = distinct
    else:
        X_top, cost_top, _ = st.top
        n_top = max(1, n_swap_candidates - random_pool.shape[0])
        top = _unique_rows_in_order(X_top[cost_top > 0])[:n_top]
        pool = _unique_rows_in_order(np.vstack([top, random_pool]))
        pool = pool[:n_swap_candidates]
    at_centre = np.zeros(pool.shape[0], dtype=bool)
    for c in centers_all:
        at_centre |= (pool == c).all(axis=1)
    return pool[~at_centre]


def _local_search(eng, centers, fixed, st, distinct, random_pool, params, history):
    """Swap movable centres for candidate sites while that lowers the objective.

    Each round evaluates every (centre, candidate) swap in one pass (see
    :func:`evplanner._kernels.swap_costs`). If the best swap lowers the
    objective by more than ``tol`` (relative) it is applied and Lloyd re-runs
    (Teitz-Bart vertex substitution). If no plain swap does, the best swap of
    each of up to ``n_swap_trials`` centres is tried *with* Lloyd
    re-optimisation, and the first that ends lower is kept: a plain swap
    judges the new site at a demand point with every other centre frozen,
    which misses moves such as splitting two merged clusters.
    """
    k = centers.shape[0]
    n_iter = 0
    min_gain = max(params["tol"], 1e-12)
    for _ in range(2 * k + 10):
        all_c = np.vstack([centers, fixed])
        cands = _candidates(
            distinct, st, random_pool, all_c, params["n_swap_candidates"]
        )
        if cands.shape[0] == 0:
            break
        res = eng.swap(all_c, cands)
        cost = res["base"][:, None] + res["corr"]
        bar = st.objective - min_gain * st.objective
        t, j = np.unravel_index(int(np.argmin(cost)), cost.shape)
        if cost[t, j] < bar:
            trial = centers.copy()
            trial[j] = cands[t]
            centers, st, it = _lloyd(
                eng, trial, fixed, params["max_iter"], params["tol"], history
            )
            n_iter += it
            continue
        # No plain swap helps: try the best swap per centre, best first, with
        # Lloyd after it; the history records only the improved end point.
        best_t = np.argmin(cost, axis=0)
        per_centre = cost[best_t, np.arange(k)]
        for j in np.argsort(per_centre, kind="stable")[: params["n_swap_trials"]]:
            trial = centers.copy()
            trial[j] = cands[best_t[j]]
            scratch = []
            new_c, new_st, it = _lloyd(
                eng, trial, fixed, params["max_iter"], params["tol"], scratch
            )
            if new_st.objective < bar:
                centers, st = new_c, new_st
                history.append(st.objective)
                n_iter += it
                break
        else:
            break
    return centers, st, n_iter


def _refine(eng, centers, fixed, st, distinct, pool, params, local_search):
    """Lloyd from ``centers`` (assigned as ``st`` if given), then the swaps.

    Returns the centres, their state, the median updates and the objective
    history.
    """
    history = []
    centers, st, n_iter = _lloyd(
        eng, centers, fixed, params["max_iter"], params["tol"], history, st
    )
    if local_search:
        centers, st, more = _local_search(
            eng, centers, fixed, st, distinct, pool, params, history
        )
        n_iter += more
    return centers, st, n_iter, history


# ---------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------


class KMediansResult(NamedTuple):
    """What :func:`k_medians` returns.

    Attributes
    ----------
    centers : np.ndarray, shape (n_clusters, n_features)
        The new (movable) centres.
    labels : np.ndarray or dask.array.Array, shape (n_samples,), int64
        Nearest centre per point; values ``>= n_clusters`` refer to
        ``fixed_centers[label - n_clusters]``. Lazy for Dask input.
    inertia : float
        Weighted sum of L1 distances to the nearest centre (fixed included).
    n_iter : int
        Lloyd median updates of the best run (all phases).
    inertia_history : np.ndarray
        Objective after every accepted step of the best run; non-increasing.
    center_indices : np.ndarray, shape (n_clusters,), int64, or None
        With ``candidates``: the rows of ``candidates`` chosen (ascending),
        so that ``centers == candidates[center_indices]``; else None.
    """

    centers: np.ndarray
    labels: np.ndarray | da.Array
    inertia: float
    n_iter: int
    inertia_history: np.ndarray
    center_indices: np.ndarray | None = None


def k_medians(
    X: np.ndarray | da.Array,
    n_clusters: int,
    *,
    sample_weight: np.ndarray | da.Array | None = None,
    fixed_centers: np.ndarray | None = None,
    init: str | np.ndarray = "k-medians++",
    n_init: int | str = "auto",
    max_iter: int = 300,
    tol: float = 1e-4,
    local_search: bool = True,
    n_swap_candidates: int = 100,
    candidates: np.ndarray | None = None,
    random_state: int | np.random.RandomState | None = None,
) -> KMediansResult:
    """Weighted K-Medians (L1 p-median heuristic) on NumPy or Dask arrays.

    Parameters
    ----------
    X : np.ndarray or dask.array.Array, shape (n_samples, n_features)
        Demand points, for example ``x_m, y_m`` in metres on a projected CRS.
        A Dask array must be chunked by rows (columns are merged).
    n_clusters : int
        Number of new sites to place, ``>= 1``.
    sample_weight : array, shape (n_samples,), optional
        Non-negative demand per point (for example vehicles); not all zero.
        For Dask ``X``, a Dask array (re-chunked to X's rows) or NumPy array.
    fixed_centers : np.ndarray, shape (n_fixed, n_features), optional
        Existing sites: they never move but serve demand, so they count in
        the assignment and the objective.
    init : {"k-medians++", "random"} or np.ndarray, shape (n_clusters, n_features)
        "k-medians++": greedy D^1 sampling (probability proportional to
        weight times L1 distance to the nearest centre so far, fixed ones
        included). "random": distinct points drawn proportionally to weight.
    n_init : int or "auto"
        Runs from different initialisations; the lowest objective wins.
        "auto" is 3 for "k-medians++" (on clustered data with far outliers a
        single run, even with the local search, can end ~5-10% above the
        optimum; three rarely do) and 10 for "random". An explicit array
        always runs once.
    max_iter : int
        Cap on Lloyd iterations per Lloyd phase (the local search restarts
        Lloyd after every accepted swap).
        With ``candidates``: cap on swaps per run.
    tol : float
        Stop Lloyd when one iteration lowers the objective by at most
        ``tol`` times the objective; swaps must gain more than that too.
    local_search : bool
        After Lloyd converges, swap centres for candidate sites while that
        lowers the objective (Teitz-Bart vertex substitution).
    n_swap_candidates : int
        Candidate sites per swap round: every distinct demand point if there
        are at most this many, else the most costly points plus a weighted
        random sample of demand points (this many in total). Not used with
        ``candidates`` (every candidate is weighed in each swap).
    candidates : np.ndarray, shape (n_candidates, n_features), optional
        Candidate sites (for example parcels or car parks, same units as
        ``X``): the new sites are then chosen among them (the discrete L1
        p-median), see *Candidate sites* below. ``n_clusters`` may not
        exceed ``n_candidates``.
    random_state : int, RandomState or None
        Seeds the initialisation and the candidate sample.

    Returns
    -------
    KMediansResult
        ``(centers, labels, inertia, n_iter, inertia_history)``.

    Raises
    ------
    ValueError
        Bad parameters, n_clusters above the number of distinct points with
        positive weight, all-zero weights, wrongly shaped init or
        fixed_centers. :class:`evplanner.errors.InputError` (a ValueError)
        for NaN/inf coordinates or negative weights, naming the row.

    Notes
    -----
    *Median.* Each coordinate of a centre is the lower weighted median of its
    points: the smallest value ``v`` with ``W(x <= v) >= W / 2``. It is one of
    the data values and exactly minimises ``sum_i w_i |x_i - v|``. Both
    engines compute this same value (the in-memory one by a histogram pass
    per cluster and a weighted quickselect inside the median's bin, O(n d);
    the chunked one from per-chunk histograms plus a targeted gather), so
    they agree to the last bit except when a cumulative weight ties ``W / 2``
    to within rounding (never for integer weights). Objectives are sums in a
    different order, equal to ~1e-15 relative.

    *Local search.* After Lloyd, each round evaluates all (centre, candidate)
    swaps exactly in one pass and applies the best if it gains more than
    ``tol``; Lloyd then re-runs. When no plain swap gains, the best swap of
    each of the 3 most promising centres is tried with Lloyd re-optimisation.

    *Large inputs.* With more than ``INIT_SAMPLE_SIZE`` rows and several runs
    or the local search, each run's Lloyd iterations and swaps work on that
    run's sample of rows (in memory, on the client); one pass over every point
    ranks the runs, and only the best is refined on every point (Lloyd, then
    the swaps again). The restarts then cost little more than one, and the
    passes over the data (each a round trip on a cluster) fall from hundreds to
    dozens. On 2M points, k = 50, a default fit went from 25.5 s to 4.3 s with
    a 0.8% lower objective (``benchmarks/README.md``). ``n_iter`` counts the
    median updates of the best run's sample phase and of its refinement;
    ``inertia_history`` holds objectives over every point only. A single run
    without the local search is plain Lloyd on every point, and so is a run
    whose sample is too thin to stand for the data: fewer than 50 effective
    rows per centre (Kish's ``(sum w)^2 / sum w^2``; 20,000 with equal
    weights, a handful when a few rows carry most of the weight).

    *Validation.* ``n_clusters`` may not exceed the number of distinct points
    with positive weight. Fixed centres do not count against that: existing
    stations need not sit on demand points, and a filtered area can have
    more stations than demand points.

    *Chunk invariance.* Initialisation, the sample phase of large inputs and
    the random swap candidates use a sample of rows drawn from ``n`` and the
    seed only (all rows when ``n <= INIT_SAMPLE_SIZE``); re-seeding and
    cost-based candidates break ties by global row index. The result
    therefore does not depend on the chunking.

    *Empty clusters* (no positive weight) move to the most costly points.

    *Candidate sites.* With ``candidates`` the centres are rows of it, the
    rest of the model unchanged (fixed centres open, weighted L1 cost). The
    first run starts greedy (each step opens the candidate that saves most,
    on a chunk-invariant sample of at most 20,000 points), further runs
    (``n_init``; "auto" is 1 here) from D^1-sampled demand points snapped to
    their nearest candidates; ``init`` arrays are snapped likewise. Then
    best-improvement swaps (one open site for one candidate) while a swap
    lowers the objective by more than ``tol`` times it, at most
    ``max_iter`` swaps, then ten rounds of iterated local search (close a
    few open sites at random, reopen by gain, swap again; keep the result if
    no worse), on the 20,000-point sample before the passes over all points
    when there are more points. Every pass over the points yields the exact gain of
    every swap from each point's nearest and second-nearest open site
    (fast interchange, Whitaker 1983, Resende and Werneck 2003), as integer
    sums that add over chunks: NumPy and Dask choose the same candidates.
    See :mod:`evplanner._discrete`.

    *Memory.* With Dask input the client only ever holds a bounded sample of
    points (at most ``INIT_SAMPLE_SIZE`` rows, for initialisation and swap
    candidates), per-cluster histograms, and the (value, weight) pairs of the
    median bins (at most ``_GATHER_BUDGET`` per pass; fuller bins are refined
    on the workers first).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0, 0.0], [1.0, 0.0], [10.0, 10.0], [11.0, 10.0]])
    >>> res = k_medians(X, 2, random_state=0)
    >>> sorted(res.centers.tolist()), res.inertia
    ([[0.0, 0.0], [10.0, 10.0]], 2.0)
    """
    _check_params(n_clusters, init, n_init, max_iter, tol, n_swap_candidates)
    X = as_points(X)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n_samples, n_features), got shape {X.shape}")
    w = as_weights(sample_weight, X)
    d = X.shape[1]
    fixed = _to_fixed(fixed_centers, d)
    init = _to_init(init, n_clusters, d)
    if candidates is not None:
        return _k_medians_candidates(
            X,
            w,
            n_clusters,
            candidates,
            fixed,
            init,
            n_init,
            max_iter,
            tol,
            local_search,
            random_state,
        )
    r = min(X.shape[0], n_clusters + n_swap_candidates)
    engine_cls = _DaskEngine if isinstance(X, da.Array) else _NumpyEngine
    eng = engine_cls(X, w, n_clusters, r)

    limit = max(n_clusters, n_swap_candidates if local_search else 0)
    s = eng.summary(limit)
    check_summary(s)
    distinct = s["distinct"]
    if distinct is not None and distinct.shape[0] < n_clusters:
        raise ValueError(
            f"n_clusters={n_clusters} exceeds the number of distinct points with "
            f"positive weight ({distinct.shape[0]}, n_samples={s['n']}); expected "
            f"n_clusters <= {distinct.shape[0]}"
        )

    if isinstance(init, np.ndarray):
        runs = 1
    elif n_init == "auto":
        runs = 10 if init == "random" else 3
    else:
        runs = int(n_init)
    seeds = check_random_state(random_state).randint(np.iinfo(np.int32).max, size=runs)
    params = {
        "max_iter": max_iter,
        "tol": tol,
        "n_swap_candidates": n_swap_candidates,
        "n_swap_trials": _N_SWAP_TRIALS,
    }
    # The sample phase pays off when there are restarts to rank or swaps to
    # search; a single plain Lloyd run keeps its exact iterations (max_iter).
    sampled = eng.n > INIT_SAMPLE_SIZE and (runs > 1 or local_search)
    best = None
    for run, seed in enumerate(seeds):
        rng = np.random.default_rng(seed)
        Xs, ws = eng.sample(_sample_index(eng.n, rng))
        if isinstance(init, np.ndarray):
            centers = init.copy()
        elif init == "random":
            centers = _init_random(Xs, ws, n_clusters, rng)
        else:
            centers = _init_kmedianspp(Xs, ws, n_clusters, fixed, rng)
        pool = Xs[_draw(ws, rng.random(n_swap_candidates // 2))]
        on_sample = sampled and _sample_represents(ws, n_clusters)
        if on_sample:
            # Many points: the run's Lloyd and swaps on its sample, then one
            # pass over every point to rank the runs; only the best is refined
            # on every point (below).
            sample_eng = _NumpyEngine(Xs, ws, n_clusters, min(r, Xs.shape[0]))
            centers, _, n_iter, _ = _refine(
                sample_eng, centers, fixed, None, distinct, pool, params, local_search
            )
            st, history = eng.assign(np.vstack([centers, fixed])), []
        else:
            centers, st, n_iter, history = _refine(
                eng, centers, fixed, None, distinct, pool, params, local_search
            )
        logger.info(
            "run %d: objective %.6g after %d iterations", run, st.objective, n_iter
        )
        if best is None or st.objective < best[1].objective:
            best = (centers, st, n_iter, history, pool, on_sample)
    centers, st, n_iter, history, pool, on_sample = best
    if on_sample:
        centers, st, more, history = _refine(
            eng, centers, fixed, st, distinct, pool, params, local_search
        )
        n_iter += more
    labels = eng.final_labels(st)
    return KMediansResult(
        centers, labels, float(st.objective), int(n_iter), np.asarray(history)
    )


def _k_medians_candidates(
    X,
    w,
    n_clusters,
    candidates,
    fixed,
    init,
    n_init,
    max_iter,
    tol,
    local_search,
    random_state,
):
    """The discrete p-median over candidate sites (see :func:`k_medians`)."""
    cand = _discrete.check_candidates(candidates, X.shape[1], n_clusters)
    if isinstance(init, np.ndarray) or n_init == "auto":
        runs = 1
    else:
        runs = int(n_init)
    res = _discrete.pmedian_search(
        X,
        w,
        n_clusters,
        cand,
        fixed,
        init=init,
        n_init=runs,
        max_iter=max_iter,
        tol=tol,
        local_search=local_search,
        random_state=random_state,
    )
    centers = cand[res.center_indices]
    labels = _discrete.site_labels(X, np.vstack([centers, fixed]))
    return KMediansResult(
        centers,
        labels,
        res.objective,
        res.n_iter,
        res.history,
        res.center_indices,
    )


# ---------------------------------------------------------------------------
# Capacitated driver (the maths is in evplanner._capacitated)
# ---------------------------------------------------------------------------


class CapacitatedFit(NamedTuple):
    """What :func:`_k_medians_capacitated` returns.

    Attributes
    ----------
    centers : np.ndarray, shape (n_clusters, n_features)
    flows : scipy.sparse.csr_matrix, shape (n_samples, n_clusters + n_fixed)
    labels : np.ndarray or dask.array.Array, shape (n_samples,), int64
    inertia : float
    n_iter : int
    inertia_history : np.ndarray
    site_loads : np.ndarray, shape (n_clusters + n_fixed,)
    prices : np.ndarray, shape (n_clusters + n_fixed,)
    center_indices : np.ndarray, shape (n_clusters,), int64, or None
        With candidates: the rows opened, ascending.
    """

    centers: np.ndarray
    flows: object
    labels: np.ndarray | da.Array
    inertia: float
    n_iter: int
    inertia_history: np.ndarray
    site_loads: np.ndarray
    prices: np.ndarray
    center_indices: np.ndarray | None = None


def _block_aggregate(X, w, offset, limit):
    """Validity summary and distinct (location, summed weight) pairs of a block."""
    s = _summary(X, w, offset, limit)
    if s["bad_x"] is None and s["bad_w"] is None:
        U, W, _ = cap.aggregate_points(X, w)
        s["agg"] = (U, W) if U.shape[0] <= _MAX_DISTINCT else None
    return s


def _combine_aggregate(a, b, limit):
    out = _combine_summary(a, b, limit)
    if "agg" in a and "agg" in b:
        agg = None
        if a["agg"] is not None and b["agg"] is not None:
            agg = cap.merge_aggregates(a["agg"], b["agg"])
        out["agg"] = (
            agg if agg is not None and agg[0].shape[0] <= _MAX_DISTINCT else None
        )
    return out


def _block_locate(X, U):
    return cap.locate_rows(X, U)


def _block_capacitated_labels(X, U, labels_u, sites):
    """Largest-share site per row; zero-weight rows (no flow): the nearest site."""
    idx = cap.locate_rows(X, U)
    out = labels_u[np.maximum(idx, 0)]
    miss = np.flatnonzero(idx < 0)
    if miss.shape[0]:
        out[miss] = kern.assign_l1(np.ascontiguousarray(X[miss]), sites)[0]
    return out


def _k_medians_capacitated(X, w, n_clusters, fixed, capacity, fixed_capacity,
                           candidates, params, random_state):  # fmt: skip
    """Capacitated K-Medians on NumPy or Dask input (see :class:`KMedians`).

    Both inputs reduce to the same distinct locations and summed weights (on
    Dask, chunk by chunk, merged in a tree), on which the in-memory search of
    :mod:`evplanner._capacitated` runs; the flows are mapped back to the rows.
    """
    cand = None
    if candidates is not None:
        cand = _discrete.check_candidates(candidates, X.shape[1], n_clusters)
    limit = n_clusters
    if isinstance(X, da.Array):
        X, w = dask.persist(X, w)
        xb = list(X.to_delayed().ravel())
        wb = list(w.to_delayed().ravel())
        off = np.concatenate([[0], np.cumsum(X.chunks[0])[:-1]]).astype(int)
        parts = [
            dask.delayed(_block_aggregate)(a, b, o, limit)
            for a, b, o in zip(xb, wb, off, strict=True)
        ]
        (s,) = dask.compute(
            tree_reduce(parts, lambda a, b: _combine_aggregate(a, b, limit))
        )
    else:
        s = _block_aggregate(X, w, 0, limit)
    check_summary(s)
    if s["agg"] is None:
        raise ValueError(
            f"capacitated K-Medians needs at most {_MAX_DISTINCT:,} distinct demand "
            f"locations (its exact transport step holds them in memory), got more "
            f"among n_samples={s['n']:,}: aggregate the demand first (for example "
            "to census tracts or block groups)"
        )
    U, W = s["agg"]
    if U.shape[0] < n_clusters:
        raise ValueError(
            f"n_clusters={n_clusters} exceeds the number of distinct points with "
            f"positive weight ({U.shape[0]}, n_samples={s['n']}); expected "
            f"n_clusters <= {U.shape[0]}"
        )
    caps = cap.check_capacities(capacity, fixed_capacity, n_clusters,
                                fixed.shape[0], float(W.sum()))  # fmt: skip
    # The start is the uncapacitated fit of the input as given (chunk-local
    # and chunk-invariant on Dask), so that unlimited capacities reproduce it.
    start = k_medians(X, n_clusters, sample_weight=w,
                      fixed_centers=fixed if fixed.shape[0] else None,
                      candidates=cand, random_state=random_state,
                      **params)  # fmt: skip
    if np.isinf(caps).all():
        # No capacity binds: the problem is the uncapacitated one, and its
        # solution stands (flows = whole points to a nearest site).
        tr = cap.TransportSolver(U, W, fixed, caps, n_clusters).solve(start.centers)
        res = cap.CapacitatedResult(start.centers, tr, start.n_iter,
                                    start.inertia_history)  # fmt: skip
    else:
        pool = None if cand is None else np.unique(cand, axis=0)
        search = dict(max_iter=params["max_iter"], tol=params["tol"],
                      n_trials=_N_RELOCATIONS if params["local_search"] else 0,
                      candidates=pool)  # fmt: skip
        res = cap.capacitated_search(U, W, start.centers, fixed, caps, **search)
        # A second start where the fixed sites overflow: the uncapacitated
        # start puts new sites where the nearest-site distance is long (rural
        # areas), and the relocation moves only partly bring them to where the
        # fixed sites are full. The better of the two searches is kept.
        seeds = cap.overflow_start(U, W, fixed, caps, n_clusters, pool)
        if seeds is not None and not np.array_equal(seeds, start.centers):
            other = cap.capacitated_search(U, W, seeds, fixed, caps, **search)
            if other.transport.objective < res.transport.objective:
                res = other
    tr = res.transport
    centers, cols, prices, indices = res.centers, tr.cols, tr.prices, None
    if cand is not None:
        # Report the opened candidates in ascending order, as without
        # capacities; the new sites' columns follow.
        uniq, first = np.unique(cand, axis=0, return_index=True)
        indices = first[cap.locate_rows(centers, uniq)].astype(np.int64)
        perm = np.argsort(indices, kind="stable")
        inv = np.empty(n_clusters, dtype=np.int64)
        inv[perm] = np.arange(n_clusters)
        centers, indices = centers[perm], indices[perm]
        cols = np.where(cols < n_clusters, inv[np.minimum(cols, n_clusters - 1)], cols)
        prices = np.concatenate([prices[:n_clusters][perm], prices[n_clusters:]])
    m = n_clusters + fixed.shape[0]
    flows_u = sp.csr_matrix((tr.flow, (tr.rows, cols)), shape=(U.shape[0], m))
    labels_u = np.asarray(flows_u.argmax(axis=1)).ravel().astype(np.int64)
    sites = np.vstack([centers, fixed])
    if isinstance(X, da.Array):
        inverse = X.map_blocks(_block_locate, U, dtype=np.int64, drop_axis=1)
        inverse, w_np = dask.compute(inverse, w)
        labels = X.map_blocks(_block_capacitated_labels, U, labels_u, sites,
                              dtype=np.int64, drop_axis=1)  # fmt: skip
    else:
        inverse, w_np = cap.locate_rows(X, U), w
        labels = _block_capacitated_labels(X, U, labels_u, sites)
    flows = cap.row_flows(flows_u, inverse, w_np, W)
    loads = np.bincount(cols, weights=tr.flow, minlength=m)
    return CapacitatedFit(centers, flows, labels, tr.objective, res.n_iter,
                          res.history, loads, prices, indices)  # fmt: skip


# ---------------------------------------------------------------------------
# Estimator
# ---------------------------------------------------------------------------


class KMedians(ClusterMixin, TransformerMixin, BaseEstimator):
    """Weighted K-Medians in L1 distance: new sites next to existing ones.

    A thin scikit-learn estimator over :func:`k_medians`; see there for the
    parameters and the method.

    Parameters
    ----------
    n_clusters : int, default 8
    init : {"k-medians++", "random"} or np.ndarray, default "k-medians++"
    n_init : int or "auto", default "auto"
    max_iter : int, default 300
    tol : float, default 1e-4
    local_search : bool, default True
    n_swap_candidates : int, default 100
    fixed_centers : np.ndarray, shape (n_fixed, n_features), optional
        Existing sites that stay where they are.
    candidates : np.ndarray, shape (n_candidates, n_features), optional
        Candidate sites: the new sites are chosen among them (discrete
        p-median; see :func:`k_medians`).
    capacity : float, optional
        Most demand weight each *new* site serves (same units as
        ``sample_weight``, e.g. vehicles). Given this or ``fixed_capacity``,
        the fit is the capacitated K-Medians of *Capacities* below.
    fixed_capacity : np.ndarray, shape (n_fixed,), optional
        Most demand weight each fixed site serves (``np.inf``: unlimited).
        Without ``capacity`` the new sites are unlimited.
    random_state : int, RandomState or None

    Attributes
    ----------
    cluster_centers_ : np.ndarray, shape (n_clusters, n_features)
        The new centres only.
    fixed_centers_ : np.ndarray, shape (n_fixed, n_features)
        The fixed centres as used (empty when there are none).
    labels_ : np.ndarray or dask.array.Array, shape (n_samples,), int64
        Nearest centre per point. Labels ``0 .. n_clusters-1`` index
        ``cluster_centers_``; a label ``l >= n_clusters`` means fixed centre
        ``fixed_centers_[l - n_clusters]``. Lazy for Dask input.
    inertia_ : float
        Weighted sum of L1 distances from each point to its nearest centre
        (fixed ones included), in the units of ``X``.
    inertia_history_ : np.ndarray
        Objective after each accepted step of the best run (non-increasing);
        above ``INIT_SAMPLE_SIZE`` rows, of its refinement on every point.
    n_iter_ : int
        Lloyd median updates of the best run, its sample phase included
        (with ``candidates``: swaps, those of accepted rounds of iterated
        local search included).
    center_indices_ : np.ndarray, shape (n_clusters,), int64, or None
        With ``candidates``: the rows of ``candidates`` opened (ascending);
        ``cluster_centers_ == candidates[center_indices_]``. Else None.
    n_features_in_ : int
    flows_ : scipy.sparse.csr_matrix, shape (n_samples, n_clusters + n_fixed)
        Capacitated fits only: the weight each point sends to each site (new
        sites first, then fixed ones, as in ``labels_``); each row sums to the
        point's weight. Built in client memory also for Dask input (about 12
        bytes per non-zero; a point splits over two or more sites only where
        capacities bind, so about ``n_samples`` non-zeros).
    site_loads_ : np.ndarray, shape (n_clusters + n_fixed,)
        Capacitated fits only: the weight each site serves (column sums of
        ``flows_``), at most its capacity (to 1e-6 relative).
    capacity_prices_ : np.ndarray, shape (n_clusters + n_fixed,)
        Capacitated fits only: the Lagrangian price of each site's capacity
        (the transport dual, in units of ``X`` per unit weight, >= 0): how
        much the objective would fall per unit of extra capacity there. 0 where
        capacity is spare. In an optimal flow a point only sends weight to
        sites minimising ``distance + price``.

    Notes
    -----
    *Capacities.* With ``capacity`` or ``fixed_capacity`` the fit minimises
    ``sum_ij f_ij |x_i - c_j|_1`` over the new sites ``c`` and the flows ``f``
    with ``sum_j f_ij = w_i`` and ``sum_i f_ij <= capacity_j``: a point's
    weight may split across sites. It starts from the uncapacitated fit of
    the input (the same as without capacities, chunked on Dask), then
    alternates an exact transportation problem (a sparse LP, HiGHS, warm
    started, proven optimal by reduced costs) with exact weighted L1 medians
    of the flows each new site receives; then, with ``local_search``,
    relocation moves (close a new site, open one at a demand point, re-
    alternate) judged by the exact transport, until 30 in a row are refused
    (see :mod:`evplanner._capacitated`). The same search also runs from a
    capacity-aware start, new sites seeded greedily where the fixed sites'
    nearest-site catchments exceed their capacity
    (:func:`evplanner._capacitated.overflow_start`), and the better of the
    two is kept (``n_iter_`` and the history are the kept one's). With
    unlimited capacities (all
    ``np.inf``) the uncapacitated fit is returned as it is. With
    ``candidates`` the new sites stay on candidates: the start is the
    uncapacitated discrete fit, the location step moves each new site to the
    free candidate that serves its flows at least cost, and moves open
    candidates near the dearest demand locations. ``labels_`` is
    then the site receiving the largest share of each point (lowest index on
    ties; the nearest site for zero-weight points), ``inertia_`` the
    flow-weighted distance, and ``predict``/``transform``/``score`` still use
    the nearest site. The capacitated search depends on the demand only
    through its distinct locations and their summed weights: NumPy input and
    Dask input (chunk by chunk, merged in a tree by
    :func:`evplanner._chunked.tree_reduce`) reduce to the same ones, and the
    same in-memory search runs on them, so both give the same result. The
    client holds the distinct locations (the LP has about 8 arcs per
    location, so this suits up to some 10^5 distinct locations, e.g. tract or
    block-group demand with any number of vehicles) and, for Dask input,
    ``flows_`` and the row-to-location index (8 bytes per row). A total
    capacity below the total weight raises ``ValueError`` naming both.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0, 0.0], [2.0, 0.0], [10.0, 0.0], [12.0, 0.0]])
    >>> km = KMedians(n_clusters=1, fixed_centers=[[11.0, 0.0]]).fit(X)
    >>> km.cluster_centers_.tolist(), km.labels_.tolist(), km.inertia_
    ([[0.0, 0.0]], [0, 0, 1, 1], 4.0)

    With capacities (the existing site serves one unit, the new one three):

    >>> km = KMedians(n_clusters=1, capacity=3.0, fixed_centers=[[11.0, 0.0]],
    ...               fixed_capacity=[1.0], random_state=0).fit(X)
    >>> km.cluster_centers_.tolist(), km.site_loads_.tolist(), km.inertia_
    ([[2.0, 0.0]], [3.0, 1.0], 11.0)
    >>> km.flows_.toarray().tolist()
    [[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]
    """

    def __init__(
        self,
        n_clusters: int = 8,
        *,
        init: str | np.ndarray = "k-medians++",
        n_init: int | str = "auto",
        max_iter: int = 300,
        tol: float = 1e-4,
        local_search: bool = True,
        n_swap_candidates: int = 100,
        fixed_centers: np.ndarray | None = None,
        candidates: np.ndarray | None = None,
        capacity: float | None = None,
        fixed_capacity: np.ndarray | None = None,
        random_state: int | np.random.RandomState | None = None,
    ):
        self.n_clusters = n_clusters
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.local_search = local_search
        self.n_swap_candidates = n_swap_candidates
        self.fixed_centers = fixed_centers
        self.candidates = candidates
        self.capacity = capacity
        self.fixed_capacity = fixed_capacity
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # The core computes in float64 whatever comes in.
        tags.transformer_tags.preserves_dtype = ["float64"]
        return tags

    def _check_X(self, X, reset):
        if is_dask(X):
            X = as_points(X)
            if reset:
                self.n_features_in_ = X.shape[1]
            elif X.shape[1] != self.n_features_in_:
                raise ValueError(
                    f"X has {X.shape[1]} features, but KMedians is expecting "
                    f"{self.n_features_in_} features as input"
                )
            return X
        X = validate_data(
            self,
            X,
            reset=reset,
            dtype=[np.float64, np.float32],
            ensure_all_finite=reset is False,
        )
        return np.ascontiguousarray(X, dtype=np.float64)

    def fit(self, X, y=None, sample_weight=None):
        """Place the new sites.

        Parameters
        ----------
        X : array-like or dask.array.Array, shape (n_samples, n_features)
            Demand points (for example metres on a projected CRS).
        y : ignored
        sample_weight : array-like or dask.array.Array, shape (n_samples,)
            Demand per point; default 1.

        Returns
        -------
        KMedians
            self.
        """
        X = self._check_X(X, reset=True)
        if self.capacity is not None or self.fixed_capacity is not None:
            return self._fit_capacitated(X, sample_weight)
        res = k_medians(
            X,
            self.n_clusters,
            sample_weight=sample_weight,
            fixed_centers=self.fixed_centers,
            init=self.init,
            n_init=self.n_init,
            max_iter=self.max_iter,
            tol=self.tol,
            local_search=self.local_search,
            n_swap_candidates=self.n_swap_candidates,
            candidates=self.candidates,
            random_state=self.random_state,
        )
        self.cluster_centers_ = res.centers
        self.fixed_centers_ = _to_fixed(self.fixed_centers, X.shape[1])
        self.labels_ = res.labels
        self.inertia_ = res.inertia
        self.inertia_history_ = res.inertia_history
        self.n_iter_ = res.n_iter
        self.center_indices_ = res.center_indices
        return self

    def _fit_capacitated(self, X, sample_weight):
        _check_params(self.n_clusters, self.init, self.n_init, self.max_iter,
                      self.tol, self.n_swap_candidates)  # fmt: skip
        w = as_weights(sample_weight, X)
        fixed = _to_fixed(self.fixed_centers, X.shape[1])
        if self.fixed_capacity is not None and self.fixed_centers is None:
            raise ValueError(
                "fixed_capacity was given without fixed_centers: expected "
                "fixed_centers of shape (n_fixed, n_features) to go with it"
            )
        params = {
            "init": _to_init(self.init, self.n_clusters, X.shape[1]),
            "n_init": self.n_init,
            "max_iter": self.max_iter,
            "tol": self.tol,
            "local_search": self.local_search,
            "n_swap_candidates": self.n_swap_candidates,
        }
        res = _k_medians_capacitated(
            X, w, self.n_clusters, fixed, self.capacity, self.fixed_capacity,
            self.candidates, params, self.random_state,
        )  # fmt: skip
        self.cluster_centers_ = res.centers
        self.fixed_centers_ = fixed
        self.labels_ = res.labels
        self.inertia_ = res.inertia
        self.inertia_history_ = res.inertia_history
        self.n_iter_ = res.n_iter
        self.center_indices_ = res.center_indices
        self.flows_ = res.flows
        self.site_loads_ = res.site_loads
        self.capacity_prices_ = res.prices
        return self

    def _all_centers(self):
        return np.vstack([self.cluster_centers_, self.fixed_centers_])

    def predict(self, X):
        """Nearest centre (L1) per point; labels as in ``labels_``.

        Parameters
        ----------
        X : array-like or dask.array.Array, shape (n_samples, n_features)

        Returns
        -------
        np.ndarray or dask.array.Array, shape (n_samples,), int64
        """
        check_is_fitted(self)
        X = self._check_X(X, reset=False)
        if isinstance(X, da.Array):
            return X.map_blocks(
                _block_labels, self._all_centers(), dtype=np.int64, drop_axis=1
            )
        return kern.assign_l1(X, self._all_centers())[0]

    def transform(self, X):
        """L1 distance from each point to each centre (new, then fixed).

        Parameters
        ----------
        X : array-like or dask.array.Array, shape (n_samples, n_features)

        Returns
        -------
        np.ndarray or dask.array.Array, shape (n_samples, n_clusters + n_fixed)
            In the units of ``X``.
        """
        check_is_fitted(self)
        X = self._check_X(X, reset=False)
        C = self._all_centers()
        if isinstance(X, da.Array):
            return X.map_blocks(
                kern.l1_distances,
                C,
                dtype=np.float64,
                chunks=(X.chunks[0], (C.shape[0],)),
            )
        return kern.l1_distances(X, C)

    def fit_predict(self, X, y=None, sample_weight=None):
        """Fit and return ``labels_``.

        Parameters
        ----------
        X : array-like or dask.array.Array, shape (n_samples, n_features)
        y : ignored
        sample_weight : array-like, shape (n_samples,), optional

        Returns
        -------
        np.ndarray or dask.array.Array, shape (n_samples,), int64
        """
        return self.fit(X, sample_weight=sample_weight).labels_

    def score(self, X, y=None, sample_weight=None):
        """Opposite of the weighted L1 objective of X under the fitted centres.

        Parameters
        ----------
        X : array-like, shape (n_samples, n_features)
        y : ignored
        sample_weight : array-like, shape (n_samples,), optional

        Returns
        -------
        float
            ``-sum_i w_i min_j |x_i - c_j|_1`` (higher is better).
        """
        check_is_fitted(self)
        X = self._check_X(X, reset=False)
        if isinstance(X, da.Array):
            X = X.compute()
        w = as_weights(sample_weight, X)
        return -float(np.sum(w * kern.assign_l1(X, self._all_centers())[1]))
