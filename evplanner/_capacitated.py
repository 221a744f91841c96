"""Capacitated weighted K-Medians in L1: the maths behind ``KMedians(capacity=...)``.

Every new site serves at most ``capacity`` demand weight, existing (fixed) site
``j`` at most ``fixed_capacity[j]``, and a demand point's weight may split across
sites. The problem

.. math::

    \\min_{c, f} \\sum_{i,j} f_{ij} \\lVert x_i - c_j \\rVert_1
    \\quad \\text{s.t.} \\quad \\sum_j f_{ij} = w_i,\\;
    \\sum_i f_{ij} \\le u_j,\\; f \\ge 0

is solved by alternating two exact steps, each of which cannot raise the
objective:

* **assignment** (sites fixed): a transportation problem, solved exactly as a
  sparse linear programme by HiGHS over a restricted set of arcs (each point's
  nearest sites by distance plus capacity price), widened until every left-out
  arc has a non-negative reduced cost, which proves the restricted optimum
  optimal for all arcs (:func:`transport`);
* **location** (flows fixed): each new site moves to the per-coordinate weighted
  lower median of the points it receives flow from, the exact minimiser of its
  L1 cost (:func:`flow_medians`);

then relocation moves (close the new site that is cheapest to close, open one at
the demand point that is dearest to serve, re-alternate; keep it if the
objective falls), judged by the exact assignment (:func:`capacitated_search`).

The model only depends on the demand *locations* and their total weight, so the
core works on distinct locations (:func:`aggregate_points`); the estimator maps
the flows back to the input rows in proportion to their weights. The module
reads top to bottom: validation, aggregation, transport, location update,
search.
"""

from __future__ import annotations

import logging
import numbers
import os
import sys
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from evplanner import _kernels as kern

__all__ = [
    "CapacitatedResult",
    "Transport",
    "aggregate_points",
    "capacitated_search",
    "check_capacities",
    "flow_best_candidates",
    "flow_medians",
    "overflow_seeds",
    "overflow_start",
    "overflow_weights",
    "row_flows",
    "transport",
    "TransportSolver",
]

logger = logging.getLogger(__name__)

#: Arcs per point in the first restricted transport problem.
N_NEAR = 8
#: Arcs per point to the new sites added each time they move.
N_NEAR_MOVED = 3
#: Most point-to-fixed-site distances kept in memory (8 bytes each).
_FIXED_CACHE_ENTRIES = 16_000_000
#: Arcs added per point and round for points with a negative reduced cost.
N_ADD = 8
#: Rows per block when computing distances to every site.
_BLOCK = 2048
#: Relative reduced-cost tolerance (of the largest distance) when proving optimality.
_RC_TOL = 1e-9
#: Demand locations whose opening gain the relocation moves estimate per trial.
_N_CANDS = 50
#: Relative capacity slack accepted as "not exceeded" after the LP solve.
CAPACITY_RTOL = 1e-6
_HIGHS = {
    "primal_feasibility_tolerance": 1e-10,
    "dual_feasibility_tolerance": 1e-10,
    "solver": "simplex",
}


# ---------------------------------------------------------------------------
# Validation (once, at the estimator's boundary)
# ---------------------------------------------------------------------------


def check_capacities(capacity, fixed_capacity, n_clusters, n_fixed, total_weight):
    """Per-site capacities ``(n_clusters + n_fixed,)``, new sites first.

    Parameters
    ----------
    capacity : float or None
        Most demand weight each new site serves; None: unlimited.
    fixed_capacity : array-like, shape (n_fixed,), or None
        Most demand weight each fixed site serves (``np.inf``: unlimited); None:
        all unlimited.
    n_clusters, n_fixed : int
    total_weight : float
        Total demand weight, compared with the total capacity.

    Returns
    -------
    np.ndarray, shape (n_clusters + n_fixed,), float64
        May hold ``np.inf``.

    Raises
    ------
    ValueError
        Negative or NaN capacities, a ``fixed_capacity`` whose shape does not
        match ``fixed_centers``, or a total capacity below the total demand.
    """
    if capacity is None:
        cap_new = np.inf
    else:
        if not isinstance(capacity, numbers.Real) or isinstance(capacity, bool):
            raise ValueError(
                f"capacity must be a number >= 0 or None, got {capacity!r} "
                f"({type(capacity).__name__})"
            )
        cap_new = float(capacity)
        if np.isnan(cap_new) or cap_new < 0:
            raise ValueError(f"capacity must be a number >= 0 or None, got {capacity}")
    if fixed_capacity is None:
        cap_fixed = np.full(n_fixed, np.inf)
    else:
        cap_fixed = np.asarray(fixed_capacity, dtype=np.float64)
        if cap_fixed.ndim == 0 and n_fixed:
            cap_fixed = np.full(n_fixed, float(cap_fixed))
        if cap_fixed.shape != (n_fixed,):
            raise ValueError(
                "fixed_capacity must have shape (n_fixed,) matching fixed_centers "
                f"(n_fixed={n_fixed}), got shape {cap_fixed.shape}"
            )
        bad = np.isnan(cap_fixed) | (cap_fixed < 0)
        if bad.any():
            r = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"fixed_capacity must be >= 0 (np.inf for unlimited), got "
                f"{cap_fixed[r]} at index {r}"
            )
    caps = np.concatenate([np.full(n_clusters, cap_new), cap_fixed])
    total = float(caps.sum())
    if total < total_weight * (1 - 1e-12):
        raise ValueError(
            f"total capacity {total:,.6g} (n_clusters={n_clusters} x capacity="
            f"{cap_new:,.6g} + fixed {float(cap_fixed.sum()):,.6g}) is below the "
            f"total demand weight {total_weight:,.6g}: raise capacity, "
            "fixed_capacity or n_clusters"
        )
    return caps


# ---------------------------------------------------------------------------
# Aggregation of identical demand locations
# ---------------------------------------------------------------------------


def aggregate_points(X, w):
    """Distinct locations with positive weight and their summed weights.

    Parameters
    ----------
    X : np.ndarray, shape (n, d)
    w : np.ndarray, shape (n,), >= 0

    Returns
    -------
    U : np.ndarray, shape (n_distinct, d)
        Distinct rows of ``X[w > 0]``, sorted lexicographically (``np.unique``).
    W : np.ndarray, shape (n_distinct,)
        Summed weight per distinct row.
    inverse : np.ndarray, shape (n,), int64
        Row of ``U`` for each row of ``X``; -1 for zero-weight rows.
    """
    pos = w > 0
    U, inv = np.unique(X[pos], axis=0, return_inverse=True)
    inv = inv.ravel()
    W = np.bincount(inv, weights=w[pos], minlength=U.shape[0])
    inverse = np.full(X.shape[0], -1, dtype=np.int64)
    inverse[pos] = inv
    return U, W, inverse


def merge_aggregates(a, b):
    """Merge two ``(U, W)`` aggregates (additive: the chunked reduction's combine)."""
    U, inv = np.unique(np.vstack([a[0], b[0]]), axis=0, return_inverse=True)
    W = np.bincount(inv.ravel(), weights=np.concatenate([a[1], b[1]]),
                    minlength=U.shape[0])  # fmt: skip
    return U, W


def locate_rows(X, U):
    """Row of the lexsorted distinct set ``U`` holding each row of ``X`` (or -1).

    Parameters
    ----------
    X : np.ndarray, shape (n, d)
    U : np.ndarray, shape (m, d), sorted as by ``np.unique(axis=0)``

    Returns
    -------
    np.ndarray, shape (n,), int64
    """
    dt = np.dtype([(f"c{c}", np.float64) for c in range(X.shape[1])])
    ku = np.ascontiguousarray(U).view(dt).ravel()
    kx = np.ascontiguousarray(X, dtype=np.float64).view(dt).ravel()
    pos = np.searchsorted(ku, kx)
    pos = np.minimum(pos, max(ku.shape[0] - 1, 0))
    found = ku.shape[0] > 0
    hit = (ku[pos] == kx) if found else np.zeros(X.shape[0], dtype=bool)
    return np.where(hit, pos, -1).astype(np.int64)


def row_flows(flows_u, inverse, w, W):
    """Flows of the input rows from the flows of their distinct locations.

    Each row gets its location's flows in proportion ``w_r / W_{inverse_r}``, so
    rows at one location split the same way and every row sums to its weight.

    Parameters
    ----------
    flows_u : scipy.sparse.csr_matrix, shape (n_distinct, n_sites)
    inverse : np.ndarray, shape (n,), int64 (-1: zero weight, no flow)
    w : np.ndarray, shape (n,)
    W : np.ndarray, shape (n_distinct,)

    Returns
    -------
    scipy.sparse.csr_matrix, shape (n, n_sites)
    """
    n = inverse.shape[0]
    live = inverse >= 0
    idx = np.flatnonzero(live)
    share = w[idx] / W[inverse[idx]]
    pick = sp.csr_matrix((share, (idx, inverse[idx])), shape=(n, flows_u.shape[0]))
    return (pick @ flows_u).tocsr()


# ---------------------------------------------------------------------------
# Assignment: the transportation problem
# ---------------------------------------------------------------------------


class Transport(NamedTuple):
    """An optimal transport of demand to sites.

    Attributes
    ----------
    rows, cols : np.ndarray, int64, shape (n_arcs,)
        Point and site of each arc carrying flow.
    flow : np.ndarray, shape (n_arcs,)
        Weight sent along the arc (> 0).
    objective : float
        ``sum flow * L1 distance``, in the units of the coordinates times weight.
    point_costs : np.ndarray, shape (n_points,)
        Dual of each point's demand row: the marginal cost of one more unit of
        weight at that point (distance plus its site's price).
    prices : np.ndarray, shape (n_sites,), >= 0
        Dual of each capacity: how much one more unit of capacity at the site
        would save (0 for sites with spare capacity or no limit).
    n_rounds : int
        Restricted LPs solved until optimality was proven.
    """

    rows: np.ndarray
    cols: np.ndarray
    flow: np.ndarray
    objective: float
    point_costs: np.ndarray
    prices: np.ndarray
    n_rounds: int


def _priced_nearest(blocks, prices, n_arcs):
    """Each point's ``n_arcs`` sites of least distance + price: (rows, cols).

    ``blocks`` yields ``(first_row, distances)`` with distances of shape
    ``(rows, m)`` to every site, block after block.
    """
    rows, cols = [], []
    for s, dist in blocks:
        key = dist + prices
        m = key.shape[1]
        a = min(n_arcs, m)
        if a < m:
            idx = np.argpartition(key, a - 1, axis=1)[:, :a]
        else:
            idx = np.broadcast_to(np.arange(m), key.shape)
        rows.append(np.repeat(np.arange(s, s + key.shape[0]), a))
        cols.append(idx.ravel())
    return np.concatenate(rows), np.concatenate(cols)


def _violations(blocks, prices, point_costs, tol, n_add):
    """Arcs with a negative reduced cost ``d_ij + p_j - u_i < -tol``, most first.

    At most ``n_add`` per point; empty when the duals prove optimality.
    ``blocks`` yields ``(first_row, parts)``: the distances of a block of points
    to consecutive groups of sites, as a list of arrays (new sites, then fixed
    ones), so that cached parts need no copying.
    """
    rows, cols = [], []
    for s, parts in blocks:
        lo = 0
        keys = []
        for dist in parts:
            keys.append(dist + prices[lo : lo + dist.shape[1]])
            lo += dist.shape[1]
        u = point_costs[s : s + keys[0].shape[0]]
        rmin = np.min([key.min(axis=1) for key in keys if key.shape[1]], axis=0)
        bad = np.flatnonzero(rmin - u < -tol)
        if bad.shape[0] == 0:
            continue
        red = np.hstack([key[bad] for key in keys]) - u[bad, None]
        m = red.shape[1]
        a = min(n_add, m)
        idx = np.argpartition(red, a - 1, axis=1)[:, :a] if a < m else (
            np.broadcast_to(np.arange(m), red.shape))  # fmt: skip
        keep = np.take_along_axis(red, idx, axis=1) < -tol
        rows.append(np.repeat(bad + s, a)[keep.ravel()])
        cols.append(idx.ravel()[keep.ravel()])
    if not rows:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(rows), np.concatenate(cols)


def _quiet_highs():
    """A silent ``highspy.Highs`` with the tolerances of :data:`_HIGHS`.

    The HiGHS constructor prints a banner on the C-level stdout once per
    process, before any option can silence it; a library must not write to its
    caller's stdout (the CLI may be writing JSON there), so file descriptor 1
    points to /dev/null for the construction only.
    """
    import highspy

    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
            h = highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    h.setOptionValue("output_flag", False)
    for key, value in _HIGHS.items():
        h.setOptionValue(key, value)
    return h


class TransportSolver:
    """Exact transport of fixed demand to sites of which the new ones move.

    One HiGHS linear programme is kept for the whole search and warm-started:
    moving the new sites changes the costs of their arcs (the previous basis
    stays primal feasible, so the simplex continues from it) and adds arcs;
    it never starts over.

    Parameters
    ----------
    U : np.ndarray, shape (n, d)
        Demand locations.
    W : np.ndarray, shape (n,), > 0
        Demand weight per location.
    fixed : np.ndarray, shape (n_fixed, d)
        Fixed sites.
    caps : np.ndarray, shape (k + n_fixed,)
        Capacity per site, new sites first (``np.inf``: unlimited);
        ``caps.sum() >= W.sum()``.
    k : int
        Number of new sites.

    Notes
    -----
    Column generation on a sparse LP. Variables: one per arc (point, site) in
    the restricted set, plus one artificial arc per point to nowhere (cost
    ``big``, no capacity) that keeps every restricted problem feasible. Rows:
    ``sum_j f_ij = w_i`` per point, ``sum_i f_ij <= u_j`` per site with a finite
    capacity. Each solve first adds each point's ``N_NEAR`` sites of least
    ``d_ij + p_j`` (prices of the last solve); after each HiGHS run, the duals
    ``u_i`` (points) and ``p_j >= 0`` (capacities) price every left-out arc, and
    arcs with ``d_ij + p_j - u_i < 0`` (up to ``N_ADD`` per point) join. When
    none is left, the restricted optimum is optimal for the full problem (LP
    duality), provided no artificial arc carries flow; if one does, ``big`` was
    below some augmenting path's cost and is raised. Costs are distances divided
    by the L1 extent of the bounding box of points and fixed sites (new sites
    lie inside it), so every real arc costs at most 1. Memory: the arcs ever
    added (about ``n * N_NEAR`` plus the moves' new ones) and one ``2048 x m``
    distance block.
    """

    def __init__(self, U, W, fixed, caps, k):
        self.U, self.W, self.fixed, self.caps, self.k = U, W, fixed, caps, k
        n, m = U.shape[0], caps.shape[0]
        pts = np.vstack([U, fixed])
        self.scale = float((pts.max(axis=0) - pts.min(axis=0)).sum()) or 1.0
        limited = np.isfinite(caps)
        self.limited = limited
        self.site_row = np.full(m, -1, dtype=np.int64)
        self.site_row[limited] = n + np.arange(int(limited.sum()))
        self.rows = np.empty(0, np.int64)
        self.cols = np.empty(0, np.int64)
        self.keys = np.empty(0, np.int64)
        self.prices = np.zeros(m)
        self.big = 4.0 * (m + 1)
        h = _quiet_highs()
        inf = np.inf
        n_lim = int(limited.sum())
        zeros = np.zeros(n + n_lim + 1, dtype=np.int32)
        h.addRows(n + n_lim, np.concatenate([W, np.full(n_lim, -inf)]),
                  np.concatenate([W, caps[limited]]), 0, zeros[:-1],
                  np.empty(0, np.int32), np.empty(0))  # fmt: skip
        h.addCols(n, np.full(n, self.big), np.zeros(n), np.full(n, inf), n,
                  np.arange(n, dtype=np.int32), np.arange(n, dtype=np.int32),
                  np.ones(n))  # fmt: skip
        self.h = h
        # Distances to the fixed sites never change: keep them when small.
        nf = fixed.shape[0]
        self.d_fixed = (kern.l1_distances(U, fixed)
                        if 0 < n * nf <= _FIXED_CACHE_ENTRIES else None)  # fmt: skip

    def _blocks(self, S, only_new=False, split=False):
        """``(first_row, distances)`` per block of points, to all sites or new ones.

        With ``split`` the distances are a list ``[to new sites, to fixed
        sites]`` (the latter a view of the cache when there is one).
        """
        U, k = self.U, self.k
        for s in range(0, U.shape[0], _BLOCK):
            Ub = U[s : s + _BLOCK]
            if only_new:
                yield s, kern.l1_distances(Ub, S[:k])
                continue
            new = kern.l1_distances(Ub, S[:k])
            if self.d_fixed is None:
                old = kern.l1_distances(Ub, S[k:])
            else:
                old = self.d_fixed[s : s + _BLOCK]
            yield s, [new, old] if split else np.hstack([new, old])

    def _add_arcs(self, rows, cols, S):
        m = self.caps.shape[0]
        key = np.unique(rows * m + cols)
        key = key[~np.isin(key, self.keys, assume_unique=True)]
        if key.shape[0] == 0:
            return
        rows, cols = key // m, key % m
        cost = np.abs(self.U[rows] - S[cols]).sum(axis=1) / self.scale
        cap_row = self.site_row[cols]
        nnz_per = 1 + (cap_row >= 0)
        starts = np.concatenate([[0], np.cumsum(nnz_per)[:-1]]).astype(np.int32)
        idx = np.empty(int(nnz_per.sum()), dtype=np.int32)
        idx[starts] = rows
        two = np.flatnonzero(cap_row >= 0)
        idx[starts[two] + 1] = cap_row[two]
        a = key.shape[0]
        self.h.addCols(a, cost, np.zeros(a), np.full(a, np.inf), idx.shape[0],
                       starts, idx, np.ones(idx.shape[0]))  # fmt: skip
        self.rows = np.concatenate([self.rows, rows])
        self.cols = np.concatenate([self.cols, cols])
        self.keys = np.sort(np.concatenate([self.keys, key]))
        # Column order is the order added: keep the arrays in that order and
        # the keys sorted separately for the membership test.

    def solve(self, centers):
        """Optimal flows for the new sites at ``centers`` (shape ``(k, d)``).

        Returns
        -------
        Transport
        """
        U, W, k, h = self.U, self.W, self.k, self.h
        n = U.shape[0]
        S = np.vstack([centers, self.fixed])
        movable = np.flatnonzero(self.cols < k)
        if movable.shape[0]:
            cost = (np.abs(U[self.rows[movable]] - S[self.cols[movable]]).sum(axis=1)
                    / self.scale)  # fmt: skip
            h.changeColsCost(movable.shape[0], (n + movable).astype(np.int32), cost)
        if self.rows.shape[0] == 0:
            self._add_arcs(*_priced_nearest(self._blocks(S), self.prices, N_NEAR), S)
        elif k:
            # The fixed sites' arcs are in already; the moved sites need theirs.
            near = _priced_nearest(self._blocks(S, only_new=True), self.prices[:k],
                                   N_NEAR_MOVED)  # fmt: skip
            self._add_arcs(*near, S)
        tol = _RC_TOL * self.scale
        n_rounds = 0
        while True:
            n_rounds += 1
            if n_rounds > 500:
                raise RuntimeError("transport did not converge in 500 rounds")
            h.run()
            status = h.getModelStatus()
            if str(status) != "HighsModelStatus.kOptimal":
                # The warm start can leave the simplex numerically stuck
                # (status unknown); the same LP from a fresh start solves.
                logger.debug("transport LP %s after a warm start: cold start", status)
                h.clearSolver()
                h.run()
                status = h.getModelStatus()
            if str(status) != "HighsModelStatus.kOptimal":
                raise RuntimeError(f"HiGHS could not solve the transport LP: {status}")
            sol = h.getSolution()
            duals = np.asarray(sol.row_dual)
            u = duals[:n] * self.scale
            p = np.zeros(self.caps.shape[0])
            p[self.limited] = np.maximum(-duals[n:], 0.0) * self.scale
            self.prices = p
            add_r, add_c = _violations(self._blocks(S, split=True), p, u, tol, N_ADD)
            if add_r.shape[0]:
                self._add_arcs(add_r, add_c, S)
                continue
            x = np.asarray(sol.col_value)
            if x[:n].max(initial=0.0) <= 1e-9 * W.max():
                break
            self.big *= 16.0
            h.changeColsCost(n, np.arange(n, dtype=np.int32), np.full(n, self.big))
        f = x[n:]
        keep = f > 0
        rows, cols, f = self.rows[keep], self.cols[keep], f[keep]
        # HiGHS meets each point's row to ~1e-10; make it exact for the caller.
        rowsum = np.bincount(rows, weights=f, minlength=n)
        f = f * (W / rowsum)[rows]
        d = np.abs(U[rows] - S[cols]).sum(axis=1)
        return Transport(rows, cols, f, float(np.dot(f, d)), u, p, n_rounds)


def transport(U, W, S, caps):
    """Exact min-cost transport of the demand ``W`` at ``U`` to the sites ``S``.

    Parameters
    ----------
    U : np.ndarray, shape (n, d)
    W : np.ndarray, shape (n,), > 0
    S : np.ndarray, shape (m, d)
    caps : np.ndarray, shape (m,)
        Capacity per site (``np.inf``: unlimited); ``caps.sum() >= W.sum()``.

    Returns
    -------
    Transport
        See :class:`TransportSolver` for the method.
    """
    return TransportSolver(U, W, S, caps, 0).solve(np.empty((0, U.shape[1])))


# ---------------------------------------------------------------------------
# Location update: weighted L1 medians of the flows
# ---------------------------------------------------------------------------


def _lower_median(values, weights):
    """Smallest ``v`` with ``W(x <= v) >= W / 2`` (a minimiser of sum w|x - v|)."""
    o = np.argsort(values, kind="stable")
    cum = np.cumsum(weights[o])
    return values[o][int(np.searchsorted(cum, 0.5 * cum[-1]))]


def flow_medians(U, tr, centers):
    """Move each new site to the weighted lower median of the flows it receives.

    Parameters
    ----------
    U : np.ndarray, shape (n, d)
    tr : Transport
        Flows to the sites ``0 .. k-1`` (new) and ``k ..`` (fixed).
    centers : np.ndarray, shape (k, d)
        The new sites now; a site without flow stays where it is.

    Returns
    -------
    np.ndarray, shape (k, d)
        Per coordinate, the exact minimiser of ``sum_i f_ij |x_ic - c_jc|``.
    """
    k, d = centers.shape
    out = centers.copy()
    new = tr.cols < k
    rows, cols, f = tr.rows[new], tr.cols[new], tr.flow[new]
    order = np.argsort(cols, kind="stable")
    rows, cols, f = rows[order], cols[order], f[order]
    bounds = np.searchsorted(cols, np.arange(k + 1))
    for j in range(k):
        a, b = bounds[j], bounds[j + 1]
        if b > a:
            for c in range(d):
                out[j, c] = _lower_median(U[rows[a:b], c], f[a:b])
    return out


def flow_best_candidates(U, tr, centers, C):
    """Move each new site to the candidate that serves its flows at least cost.

    The discrete location step: for new site ``j`` the candidate ``c`` of ``C``
    minimising ``sum_i f_ij |x_i - c|_1``, among candidates that no other new
    site holds (sites in order; a site's own candidate is always allowed, so
    no site's cost rises).

    Parameters
    ----------
    U : np.ndarray, shape (n, d)
    tr : Transport
    centers : np.ndarray, shape (k, d)
        The new sites now, each a row of ``C``.
    C : np.ndarray, shape (m, d)
        Candidate sites, lexsorted and distinct (``np.unique(axis=0)``).

    Returns
    -------
    np.ndarray, shape (k, d)
    """
    k = centers.shape[0]
    out = centers.copy()
    held = locate_rows(centers, C)
    new = tr.cols < k
    rows, cols, f = tr.rows[new], tr.cols[new], tr.flow[new]
    for j in range(k):
        on = cols == j
        if not on.any():
            continue
        cost = np.zeros(C.shape[0])
        r, fj = rows[on], f[on]
        for s in range(0, r.shape[0], _BLOCK):
            cost += fj[s : s + _BLOCK] @ kern.l1_distances(U[r[s : s + _BLOCK]], C)
        others = np.delete(held, j)
        cost[others[others >= 0]] = np.inf
        best = int(np.argmin(cost))
        if cost[best] < cost[held[j]]:
            held[j] = best
            out[j] = C[best]
    return out


# ---------------------------------------------------------------------------
# A capacity-aware start
# ---------------------------------------------------------------------------


def overflow_weights(U, W, fixed, fixed_caps):
    """Demand the fixed sites cannot hold in their nearest-site catchments.

    Each location goes to its nearest fixed site; a site whose catchment
    weight ``L_j`` exceeds its capacity ``u_j`` overflows by ``L_j - u_j``,
    shared over its catchment in proportion to weight. Without fixed sites
    all the demand overflows.

    Parameters
    ----------
    U : np.ndarray, shape (n, d)
        Distinct demand locations.
    W : np.ndarray, shape (n,), > 0
    fixed : np.ndarray, shape (n_fixed, d)
    fixed_caps : np.ndarray, shape (n_fixed,)
        May hold ``np.inf``.

    Returns
    -------
    np.ndarray, shape (n,), ``0 <= out <= W``
        Overflow weight per location (an upper bound of what the new sites
        must take from there in a nearest-first assignment).
    """
    if fixed.shape[0] == 0:
        return W.astype(np.float64, copy=True)
    nearest, _ = kern.assign_l1(np.ascontiguousarray(U), np.ascontiguousarray(fixed))
    load = np.bincount(nearest, weights=W, minlength=fixed.shape[0])
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(load > fixed_caps, (load - fixed_caps) / load, 0.0)
    return W * share[nearest]


def overflow_seeds(U, overflow, k, cap):
    """``k`` new sites placed greedily where the overflow demand is.

    Repeatedly: take the location with the most overflow left, gather the
    overflow nearest to it (L1) until ``cap`` is reached, put a site at the
    per-coordinate weighted lower median of what it gathered, and remove that
    from the overflow. When no overflow is left, the remaining sites go to the
    heaviest locations of the demand not yet a site (by ``overflow`` then
    position order: deterministic).

    Parameters
    ----------
    U : np.ndarray, shape (n, d)
        Distinct demand locations.
    overflow : np.ndarray, shape (n,), >= 0
        Weight each location should send to new sites
        (:func:`overflow_weights`).
    k : int
        Number of sites (``k <= n``).
    cap : float
        Capacity of one new site (> 0; finite).

    Returns
    -------
    np.ndarray, shape (k, d)
        Distinct rows (sites at demand locations' coordinate medians).
    """
    left = overflow.astype(np.float64, copy=True)
    scale = float(overflow.max(initial=0.0))
    out = []
    for _ in range(k):
        i = int(np.argmax(left))
        if left[i] <= 1e-12 * max(scale, 1e-300):
            break
        d = np.abs(U - U[i]).sum(axis=1)
        order = np.argsort(d, kind="stable")
        order = order[left[order] > 0]
        before = np.concatenate([[0.0], np.cumsum(left[order])[:-1]])
        take = np.minimum(left[order], np.maximum(cap - before, 0.0))
        used = take > 0
        rows, f = order[used], take[used]
        site = np.array([_lower_median(U[rows, c], f) for c in range(U.shape[1])])
        left[rows] -= f
        out.append(site)
    S = np.unique(np.asarray(out).reshape(-1, U.shape[1]), axis=0)
    if S.shape[0] < k:
        # Fill with demand locations that are not sites yet, heaviest first.
        taken = locate_rows(U, S) >= 0 if S.shape[0] else np.zeros(U.shape[0], bool)
        order = np.argsort(-overflow, kind="stable")
        extra = order[~taken[order]][: k - S.shape[0]]
        S = np.vstack([S, U[extra]])
    return S[:k]


def snap_to_free(P, C):
    """Each row of ``P`` moved to its nearest row of ``C`` not already used.

    Greedy in the order of ``P``; ``C.shape[0] >= P.shape[0]``.

    Returns
    -------
    np.ndarray, shape (P.shape[0], d): distinct rows of ``C``.
    """
    free = np.ones(C.shape[0], dtype=bool)
    out = np.empty_like(P)
    for t, p in enumerate(P):
        idx = np.flatnonzero(free)
        j = idx[int(np.argmin(np.abs(C[idx] - p).sum(axis=1)))]
        free[j] = False
        out[t] = C[j]
    return out


def overflow_start(U, W, fixed, caps, k, candidates=None):
    """A capacity-aware start: new sites where the fixed sites overflow.

    :func:`overflow_weights` of the fixed sites, then :func:`overflow_seeds`
    with the new sites' capacity (unlimited: the overflow shared evenly); with
    ``candidates`` each seed moves to its nearest unused candidate.

    Parameters
    ----------
    U : np.ndarray, shape (n, d)
    W : np.ndarray, shape (n,), > 0
    fixed : np.ndarray, shape (n_fixed, d)
    caps : np.ndarray, shape (k + n_fixed,)
    k : int
    candidates : np.ndarray, shape (m, d), optional (``m >= k``)

    Returns
    -------
    np.ndarray, shape (k, d), or None
        None when nothing overflows (the uncapacitated start already fits).
    """
    overflow = overflow_weights(U, W, fixed, caps[k:])
    total = float(overflow.sum())
    if total <= 0.0 or k == 0:
        return None
    cap_new = float(caps[:k].max())
    if not np.isfinite(cap_new):
        cap_new = total / k
    seeds = overflow_seeds(U, overflow, k, cap_new)
    if candidates is not None:
        seeds = snap_to_free(seeds, candidates)
    return seeds


# ---------------------------------------------------------------------------
# Search: alternate, then relocation moves
# ---------------------------------------------------------------------------


class CapacitatedResult(NamedTuple):
    """What :func:`capacitated_search` returns (on distinct locations).

    Attributes
    ----------
    centers : np.ndarray, shape (k, d)
    transport : Transport
        The optimal flows for ``centers`` and the fixed sites.
    n_iter : int
        Location updates (all phases).
    history : np.ndarray
        Objective after every accepted step (non-increasing).
    """

    centers: np.ndarray
    transport: Transport
    n_iter: int
    history: np.ndarray


def alternate(solver, centers, max_iter, tol, locate=flow_medians):
    """Alternate exact transport and exact median moves until the gain is small.

    Parameters
    ----------
    solver : TransportSolver
    centers : np.ndarray, shape (k, d)
    max_iter : int
    tol : float
    locate : callable
        ``locate(U, transport, centers) -> centers``: the location step
        (:func:`flow_medians`, or :func:`flow_best_candidates` bound to the
        candidates).

    Returns
    -------
    (centers, transport, n_iter, history)
        The objective is non-increasing: the old flows stay feasible for the
        moved sites, so the new optimum is at most their cost.
    """
    U = solver.U
    tr = solver.solve(centers)
    history = [tr.objective]
    n_iter = 0
    for _ in range(max_iter):
        new = locate(U, tr, centers)
        if np.array_equal(new, centers):
            break
        n_iter += 1
        tr_new = solver.solve(new)
        if tr_new.objective > tr.objective:
            break
        gain = tr.objective - tr_new.objective
        centers, tr = new, tr_new
        history.append(tr.objective)
        if gain <= tol * tr.objective:
            break
    return centers, tr, n_iter, history


def _closing_costs(U, tr, S, k):
    """Estimated cost of closing each new site: its flows re-sent at the prices.

    For every unit that site ``j`` receives from point ``i``: the cheapest other
    site by distance plus price, minus the distance it travels now (a
    first-order estimate of the LP's change; ``j``'s own price is not
    subtracted, since its capacity goes with it, so a full, dear site is
    dear to close).
    """
    cost = np.zeros(k)
    new = tr.cols < k
    rows, cols, f = tr.rows[new], tr.cols[new], tr.flow[new]
    if rows.shape[0] == 0:
        return cost
    dist = kern.l1_distances(U[rows], S)
    now = dist[np.arange(rows.shape[0]), cols]
    key = dist + tr.prices
    key[np.arange(rows.shape[0]), cols] = np.inf
    np.add.at(cost, cols, f * (key.min(axis=1) - now))
    return cost


def _opening_gains(U, W, point_costs, P, cap):
    """Estimated saving of opening a site of capacity ``cap`` at each candidate.

    At the current duals a point ``l`` would pay ``d(l, x)`` instead of ``u_l``
    at a new site ``x``: the saving is the best ``sum (u_l - d(l, x)) f_l`` over
    flows ``f_l <= W_l`` with ``sum f_l <= cap``, taken greedily (most saving
    per unit first). A first-order (Lagrangian) estimate of the LP's change.

    Parameters
    ----------
    U : np.ndarray, shape (n, d)
    W, point_costs : np.ndarray, shape (n,)
    P : np.ndarray, shape (c, d)
        Positions to evaluate as sites.
    cap : float
        Capacity of the new site (``np.inf`` allowed).

    Returns
    -------
    np.ndarray, shape (c,)
    """
    out = np.zeros(P.shape[0])
    for t, x in enumerate(P):
        save = point_costs - np.abs(U - x).sum(axis=1)
        pos = np.flatnonzero(save > 0)
        order = pos[np.argsort(-save[pos], kind="stable")]
        take = np.minimum(W[order], np.maximum(cap - np.concatenate(
            [[0.0], np.cumsum(W[order])[:-1]]), 0.0))  # fmt: skip
        out[t] = float(np.dot(save[order], take))
    return out


def _dear_positions(U, dearness, pool, free):
    """Rows of ``pool`` (among ``free``) where a move would open a site.

    The ``_N_CANDS`` demand locations of highest ``dearness`` (weight times
    marginal cost); when the pool is not the demand locations, each one's
    nearest free pool row instead (distinct, in the same order).
    """
    order = np.argsort(-dearness, kind="stable")
    if pool is U:
        return order[np.isin(order, free)][:_N_CANDS]
    out = []
    for i in order[: 4 * _N_CANDS]:
        near = int(free[np.argmin(np.abs(pool[free] - U[i]).sum(axis=1))])
        if near not in out:
            out.append(near)
        if len(out) == _N_CANDS:
            break
    return np.asarray(out, dtype=np.int64)


def capacitated_search(U, W, init, fixed, caps, *, max_iter=300, tol=1e-4,
                       n_trials=10, max_trials=100, candidates=None):  # fmt: skip
    """Capacitated K-Medians from ``init``: alternate, then relocation moves.

    Parameters
    ----------
    U : np.ndarray, shape (n, d)
        Distinct demand locations.
    W : np.ndarray, shape (n,), > 0
    init : np.ndarray, shape (k, d)
        Starting new sites (for example the uncapacitated solution).
    fixed : np.ndarray, shape (n_fixed, d)
    caps : np.ndarray, shape (k + n_fixed,)
    max_iter : int
        Cap on location updates per alternation.
    tol : float
        Relative gain below which an alternation stops and a move is refused.
    n_trials : int
        Stop the relocation moves after this many refused in a row (each
        trial is followed by an alternation).
    max_trials : int
        Stop after this many relocation moves in all.
    candidates : np.ndarray, shape (m, d), optional
        Lexsorted distinct candidate sites (``np.unique(axis=0)``): new sites
        stay on them (``init`` must be rows of it), the location step is
        :func:`flow_best_candidates` and moves open candidates (each of the
        dearest demand locations' nearest free candidate).

    Returns
    -------
    CapacitatedResult

    Notes
    -----
    A move closes the new site with the smallest estimated closing cost
    (:func:`_closing_costs`) and opens one at the demand location whose
    weight times marginal cost (the transport dual ``u_i``) is largest, among
    locations not already a site. Moves are tried best first; an accepted move
    recomputes the duals, a refused one moves to the next pair.
    """
    k = init.shape[0]
    solver = TransportSolver(U, W, fixed, caps, k)
    if candidates is None:
        pool, locate = U, flow_medians
    else:
        pool = candidates

        def locate(U_, tr_, centers_):
            return flow_best_candidates(U_, tr_, centers_, candidates)

    centers, tr, n_iter, history = alternate(solver, init.copy(), max_iter, tol,
                                             locate)  # fmt: skip
    cap_new = float(caps[:k].max()) if k else 0.0
    refused = set()
    n_refused = 0
    for _ in range(max_trials):
        if n_refused >= n_trials:
            break
        S = np.vstack([centers, fixed])
        closing = _closing_costs(U, tr, S, k)
        taken = np.zeros(pool.shape[0], dtype=bool)
        at = locate_rows(S, pool)  # the pool is lexsorted (np.unique)
        taken[at[at >= 0]] = True
        free = np.flatnonzero(~taken)
        if free.shape[0] == 0:
            break
        top = _dear_positions(U, W * tr.point_costs, pool, free)
        opening = _opening_gains(U, W, tr.point_costs, pool[top], cap_new)
        # Best estimated net gain first; pairs refused at this objective are
        # skipped, so each trial is a new pair.
        net = opening[:, None] - closing[None, :]
        tt, jj = np.unravel_index(np.argsort(-net, axis=None, kind="stable"), net.shape)
        pairs = zip(top[tt].tolist(), jj.tolist(), strict=True)
        move = next((p for p in pairs if (*p, tr.objective) not in refused), None)
        if move is None:
            break
        i, j = move
        trial = centers.copy()
        trial[j] = pool[i]
        c2, tr2, it, _ = alternate(solver, trial, max_iter, tol, locate)
        n_iter += it
        if tr2.objective < tr.objective * (1 - tol):
            logger.debug("move site %d to %s: %.6g -> %.6g", j, pool[i],
                         tr.objective, tr2.objective)  # fmt: skip
            centers, tr = c2, tr2
            history.append(tr.objective)
            n_refused = 0
        else:
            refused.add((i, j, tr.objective))
            n_refused += 1
    return CapacitatedResult(centers, tr, n_iter, np.asarray(history))
