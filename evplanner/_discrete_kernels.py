"""Numba kernels for site selection among candidate locations (p-median, coverage).

Both kernels take one block of demand points, their nearest and second-nearest
open site (from :func:`evplanner._kernels.assign2_l1`) and a uniform grid over the
candidate sites, and return the block's share of the swap gains of the fast
interchange (Whitaker 1983; Resende and Werneck 2003): the gain of opening each
candidate, the loss of closing each open site, and the sparse correction of each
(candidate, open site) pair. Every share is an **integer** number of quanta, so
blocks add up to the same totals in any order and under any chunking.

A point only contributes to candidates strictly closer than its second-nearest
open site (p-median) or within the coverage radius (coverage), which the grid
finds without an ``n x m`` distance matrix. Points are visited grouped by their
nearest open site so that the (candidate, site) corrections accumulate in one
length-``m`` buffer and leave the kernel as sorted, aggregated pairs.

The kernels are serial: the Dask engine runs one per chunk on every worker.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numba
import numpy as np

__all__ = [
    "CandidateGrid",
    "build_grid",
    "coverage_block",
    "nearest_candidate",
    "pmedian_block",
    "quantum_inverse",
]

#: Headroom bits: sums of up to n per-point costs stay below 2**61.
_QUANTUM_BITS = 60
#: Grid cells per candidate (several empty cells are cheaper to skip than many
#: candidates of a crowded cell are to measure).
_CELLS_PER_CANDIDATE = 4
_MAX_CELLS_PER_AXIS = 2048


class CandidateGrid(NamedTuple):
    """Candidates bucketed into a uniform grid over two of their coordinates.

    ``cand`` holds the candidates in bucket order (cell by cell, so that a
    scan reads memory in sequence): ``cand[start[c]:start[c + 1]]`` are those
    of cell ``c = iy * nx + ix``, and ``order[q]`` is the original index of
    ``cand[q]``; ``ix`` counts cells of side ``h`` from ``lo0`` along
    coordinate ``ax0``, ``iy`` from ``lo1`` along ``ax1`` (``ny == 1`` and
    ``ax1 == ax0`` for one-dimensional data).
    """

    cand: np.ndarray
    order: np.ndarray
    start: np.ndarray
    ax0: int
    ax1: int
    lo0: float
    lo1: float
    h: float
    nx: int
    ny: int


def build_grid(cand: np.ndarray) -> CandidateGrid:
    """Bucket candidate sites into a grid over the two widest coordinates.

    Parameters
    ----------
    cand : np.ndarray, shape (m, d), float64, finite, m >= 1

    Returns
    -------
    CandidateGrid
    """
    cand = np.ascontiguousarray(cand, dtype=np.float64)
    m, d = cand.shape
    lo = cand.min(axis=0)
    span = cand.max(axis=0) - lo
    axes = np.argsort(-span, kind="stable")
    ax0 = int(axes[0])
    ax1 = int(axes[1]) if d > 1 else ax0
    s0 = float(span[ax0])
    s1 = float(span[ax1]) if d > 1 else 0.0
    cells = max(1, _CELLS_PER_CANDIDATE * m)
    if s0 > 0 and s1 > 0:
        h = math.sqrt(s0 * s1 / cells)
    elif s0 > 0:
        h = s0 / cells
    else:
        h = 1.0
    nx = int(min(_MAX_CELLS_PER_AXIS, s0 // h + 1))
    ny = int(min(_MAX_CELLS_PER_AXIS, s1 // h + 1)) if d > 1 else 1
    # Capped axes: widen the cells so that they still cover the span.
    h = max(h, s0 / nx * (1 + 1e-12), (s1 / ny * (1 + 1e-12)) if d > 1 else 0.0)
    ix = np.minimum(((cand[:, ax0] - lo[ax0]) / h).astype(np.int64), nx - 1)
    if d > 1:
        iy = np.minimum(((cand[:, ax1] - lo[ax1]) / h).astype(np.int64), ny - 1)
    else:
        iy = np.zeros(m, dtype=np.int64)
    cell = iy * nx + ix
    order = np.argsort(cell, kind="stable").astype(np.int64)
    start = np.zeros(nx * ny + 1, dtype=np.int64)
    np.cumsum(np.bincount(cell, minlength=nx * ny), out=start[1:])
    return CandidateGrid(
        np.ascontiguousarray(cand[order]),
        order,
        start,
        ax0,
        ax1,
        float(lo[ax0]),
        float(lo[ax1]) if d > 1 else 0.0,
        float(h),
        nx,
        ny,
    )


def quantum_inverse(max_cost: float, n: int) -> float:
    """Power of two ``1/q`` such that ``n`` costs up to ``max_cost`` sum below 2**60.

    Costs are rounded to whole quanta ``q`` before they are summed: integer sums
    do not depend on their order, so chunked and in-memory totals are equal. The
    quantum depends only on ``n`` and ``max_cost`` (exact reductions: a count
    and a maximum), never on the chunking; scaling by a power of two is exact.

    Parameters
    ----------
    max_cost : float
        Upper bound of one point's cost (for example largest weight times the
        largest possible distance), >= 0.
    n : int
        Number of points.

    Returns
    -------
    float
    """
    bound = float(max_cost) * max(1, int(n))
    if not bound > 0 or not math.isfinite(bound):
        return 1.0
    return math.ldexp(1.0, _QUANTUM_BITS - math.frexp(bound)[1])


@numba.njit(cache=True, inline="always")
def _cell_span(v, radius, lo, h, nc):
    # Cells overlapping [v - radius, v + radius], one more on each side against
    # rounding at the edges; (0, -1) when none.
    a = (v - radius - lo) / h - 1.0
    b = (v + radius - lo) / h + 1.0
    if b < 0.0 or a >= nc:
        return 0, -1
    i0 = 0 if a < 0.0 else int(a)
    i1 = nc - 1 if b >= nc else int(b)
    return i0, i1


@numba.njit(cache=True, inline="always")
def _l1_capped(X, i, cand, q, cap):
    # Summed in coordinate order, like the assignment kernels, so a distance
    # equals theirs to the bit; stops once above `cap`.
    s = 0.0
    for c in range(X.shape[1]):
        s += abs(X[i, c] - cand[q, c])
        if s > cap:
            return s
    return s


@numba.njit(cache=True, inline="always")
def _cost(w, dist, qinv, sentinel):
    if dist == np.inf:
        return sentinel
    return np.int64(np.rint(w * dist * qinv))


@numba.njit(cache=True)
def _flush(acc, touched, nt, cur, k, keys, vals, nout):
    # Moves the buffered corrections of open site `cur` out as sorted pairs.
    sub = np.sort(touched[:nt])
    need = nout + nt
    if need > keys.shape[0]:
        cap = max(need, 2 * keys.shape[0])
        k2 = np.empty(cap, dtype=np.int64)
        v2 = np.empty(cap, dtype=np.int64)
        k2[:nout] = keys[:nout]
        v2[:nout] = vals[:nout]
        keys = k2
        vals = v2
    for s in range(nt):
        t = sub[s]
        keys[nout] = t * k + cur
        vals[nout] = acc[t]
        acc[t] = 0
        nout += 1
    return keys, vals, nout


@numba.njit(cache=True)
def _pmedian_block(
    X,
    w,
    qinv,
    sentinel,
    lab1,
    d1,
    d2,
    perm,
    k,
    with_pairs,
    cand,
    corder,
    cstart,
    ax0,
    ax1,
    lo0,
    lo1,
    h,
    nx,
    ny,
    gain,
    loss,
):
    m = cand.shape[0]
    acc = np.zeros(m, dtype=np.int64)
    touched = np.empty(m, dtype=np.int64)
    nt = 0
    cur = -1
    keys = np.empty(1024, dtype=np.int64)
    vals = np.empty(1024, dtype=np.int64)
    nout = 0
    obj = np.int64(0)
    for p in range(perm.shape[0]):
        i = perm[p]
        wi = w[i]
        if not wi > 0.0:
            continue
        j = lab1[i]
        mov = with_pairs and j < k
        if mov and j != cur:
            if nt:
                keys, vals, nout = _flush(acc, touched, nt, cur, k, keys, vals, nout)
            nt = 0
            cur = j
        c1 = _cost(wi, d1[i], qinv, sentinel)
        obj += c1
        if mov:
            c2 = _cost(wi, d2[i], qinv, sentinel)
            loss[j] += c2 - c1
            radius = d2[i]
        else:
            c2 = c1
            radius = d1[i]
        if not radius > 0.0:
            continue
        x0 = X[i, ax0]
        x1 = X[i, ax1]
        ia, ib = _cell_span(x0, radius, lo0, h, nx)
        ja, jb = _cell_span(x1, radius, lo1, h, ny)
        for cy in range(ja, jb + 1):
            # Cells ia..ib of a row are contiguous in the bucket order.
            row = cy * nx
            for q in range(cstart[row + ia], cstart[row + ib + 1]):
                t = corder[q]
                s = _l1_capped(X, i, cand, q, radius)
                if not s < radius:
                    continue
                a = np.int64(np.rint(wi * s * qinv))
                if a < c1:
                    gain[t] += c1 - a
                if mov and a < c2:
                    v = c2 - max(a, c1)
                    if v > 0:
                        if acc[t] == 0:
                            touched[nt] = t
                            nt += 1
                        acc[t] += v
    if nt:
        keys, vals, nout = _flush(acc, touched, nt, cur, k, keys, vals, nout)
    return obj, keys[:nout].copy(), vals[:nout].copy()


def pmedian_block(X, w, qinv, sentinel, lab1, d1, d2, k, with_pairs, grid):
    """One block's integer share of the p-median swap gains.

    Parameters
    ----------
    X : np.ndarray, shape (n, d), float64
        Demand points of the block.
    w : np.ndarray, shape (n,), float64
        Their weights (>= 0).
    qinv : float
        Inverse quantum (:func:`quantum_inverse`): a cost is
        ``rint(w_i * dist * qinv)`` whole quanta.
    sentinel : int
        Cost standing for an infinite distance (no open site, or none but
        one); larger than any finite cost.
    lab1 : np.ndarray, shape (n,), int64
        Nearest open site per point; ``0 .. k-1`` are the movable (closable)
        sites, ``>= k`` fixed ones.
    d1, d2 : np.ndarray, shape (n,), float64
        Distance to the nearest and second-nearest open site (``inf`` when
        there is none).
    k : int
        Number of movable open sites.
    with_pairs : bool
        False: only the opening gains and the objective (greedy steps).
    grid : CandidateGrid

    Returns
    -------
    objective : int
        ``sum_i cost(i, nearest)`` in quanta.
    gain : np.ndarray, shape (m,), int64
        ``sum_i max(0, cost(i, nearest) - cost(i, c))``: the saving of opening
        candidate ``c`` (zero for open ones).
    loss : np.ndarray, shape (k,), int64
        ``sum_{i: nearest = j} cost(i, second) - cost(i, nearest)``: the cost of
        closing movable site ``j``.
    keys, vals : np.ndarray, int64
        Sparse pairs ``key = c * k + j`` (sorted within each ``j``) with
        ``extra[c, j] = sum_{i: nearest = j} max(0, cost(i, second) -
        max(cost(i, c), cost(i, nearest)))``; only positive entries.

    Notes
    -----
    Swapping candidate ``c`` in for open site ``j`` lowers the objective by
    ``gain[c] - loss[j] + extra[c, j]`` quanta exactly.
    """
    X = np.ascontiguousarray(X, dtype=np.float64)
    m = grid.cand.shape[0]
    gain = np.zeros(m, dtype=np.int64)
    loss = np.zeros(max(k, 1), dtype=np.int64)
    perm = np.argsort(lab1, kind="stable").astype(np.int64)
    obj, keys, vals = _pmedian_block(
        X,
        np.ascontiguousarray(w, dtype=np.float64),
        float(qinv),
        np.int64(sentinel),
        lab1,
        d1,
        d2,
        perm,
        int(k),
        bool(with_pairs),
        grid.cand,
        grid.order,
        grid.start,
        grid.ax0,
        grid.ax1,
        grid.lo0,
        grid.lo1,
        grid.h,
        grid.nx,
        grid.ny,
        gain,
        loss,
    )
    return int(obj), gain, loss[:k], keys, vals


@numba.njit(cache=True)
def _coverage_block(
    X,
    wq,
    radius,
    lab1,
    d1,
    d2,
    perm,
    k,
    with_pairs,
    cand,
    corder,
    cstart,
    ax0,
    ax1,
    lo0,
    lo1,
    h,
    nx,
    ny,
    gain,
    loss,
):
    m = cand.shape[0]
    acc = np.zeros(m, dtype=np.int64)
    touched = np.empty(m, dtype=np.int64)
    nt = 0
    cur = -1
    keys = np.empty(1024, dtype=np.int64)
    vals = np.empty(1024, dtype=np.int64)
    nout = 0
    covered = np.int64(0)
    for p in range(perm.shape[0]):
        i = perm[p]
        wi = wq[i]
        if wi <= 0:
            continue
        j = lab1[i]
        if d1[i] <= radius:
            covered += wi
            # Only points covered by exactly one movable site matter for swaps.
            if not (with_pairs and j < k and d2[i] > radius):
                continue
            loss[j] += wi
            if j != cur:
                if nt:
                    keys, vals, nout = _flush(
                        acc, touched, nt, cur, k, keys, vals, nout
                    )
                nt = 0
                cur = j
            single = True
        else:
            single = False
        x0 = X[i, ax0]
        x1 = X[i, ax1]
        ia, ib = _cell_span(x0, radius, lo0, h, nx)
        ja, jb = _cell_span(x1, radius, lo1, h, ny)
        for cy in range(ja, jb + 1):
            # Cells ia..ib of a row are contiguous in the bucket order.
            row = cy * nx
            for q in range(cstart[row + ia], cstart[row + ib + 1]):
                t = corder[q]
                s = _l1_capped(X, i, cand, q, radius)
                if s > radius:
                    continue
                if single:
                    if acc[t] == 0:
                        touched[nt] = t
                        nt += 1
                    acc[t] += wi
                else:
                    gain[t] += wi
    if nt:
        keys, vals, nout = _flush(acc, touched, nt, cur, k, keys, vals, nout)
    return covered, keys[:nout].copy(), vals[:nout].copy()


def coverage_block(X, wq, radius, lab1, d1, d2, k, with_pairs, grid):
    """One block's integer share of the maximal-coverage swap gains.

    Parameters
    ----------
    X : np.ndarray, shape (n, d), float64
    wq : np.ndarray, shape (n,), int64
        Weights in whole quanta.
    radius : float
        Coverage radius (L1, units of X); a point at distance ``<= radius`` of
        an open site is covered.
    lab1, d1, d2, k, with_pairs, grid
        As in :func:`pmedian_block`.

    Returns
    -------
    covered : int
        Weight covered by the open sites, in quanta.
    gain : np.ndarray, shape (m,), int64
        Uncovered weight within ``radius`` of candidate ``c``.
    loss : np.ndarray, shape (k,), int64
        Weight covered by movable site ``j`` and no other open site.
    keys, vals : np.ndarray, int64
        Sparse ``extra[c, j]`` (``key = c * k + j``): the part of ``loss[j]``
        that candidate ``c`` covers too.

    Notes
    -----
    Swapping ``c`` in for ``j`` raises the covered weight by
    ``gain[c] - loss[j] + extra[c, j]`` quanta exactly.
    """
    X = np.ascontiguousarray(X, dtype=np.float64)
    m = grid.cand.shape[0]
    gain = np.zeros(m, dtype=np.int64)
    loss = np.zeros(max(k, 1), dtype=np.int64)
    perm = np.argsort(lab1, kind="stable").astype(np.int64)
    cov, keys, vals = _coverage_block(
        X,
        wq,
        float(radius),
        lab1,
        d1,
        d2,
        perm,
        int(k),
        bool(with_pairs),
        grid.cand,
        grid.order,
        grid.start,
        grid.ax0,
        grid.ax1,
        grid.lo0,
        grid.lo1,
        grid.h,
        grid.nx,
        grid.ny,
        gain,
        loss,
    )
    return int(cov), gain, loss[:k], keys, vals


@numba.njit(cache=True)
def _nearest_candidate(X, cand, corder, cstart, ax0, ax1, lo0, lo1, h, nx, ny, out):
    # Rings of cells outwards until the ring's distance exceeds the best.
    for i in range(X.shape[0]):
        best = np.inf
        best_t = cand.shape[0]
        radius = h
        while True:
            ia, ib = _cell_span(X[i, ax0], radius, lo0, h, nx)
            ja, jb = _cell_span(X[i, ax1], radius, lo1, h, ny)
            for cy in range(ja, jb + 1):
                # Cells ia..ib of a row are contiguous in the bucket order.
                row = cy * nx
                for q in range(cstart[row + ia], cstart[row + ib + 1]):
                    t = corder[q]
                    s = _l1_capped(X, i, cand, q, best)
                    if s < best or (s == best and t < best_t):
                        best = s
                        best_t = t
            whole = ia == 0 and ja == 0 and ib == nx - 1 and jb == ny - 1
            if best <= radius or whole:
                break
            radius *= 2.0
        out[i] = best_t


def nearest_candidate(X: np.ndarray, grid: CandidateGrid) -> np.ndarray:
    """Index of the nearest candidate (L1; ties to the lowest index) per row.

    Parameters
    ----------
    X : np.ndarray, shape (n, d), float64
    grid : CandidateGrid

    Returns
    -------
    np.ndarray, shape (n,), int64
    """
    X = np.ascontiguousarray(X, dtype=np.float64)
    out = np.empty(X.shape[0], dtype=np.int64)
    if X.shape[0]:
        _nearest_candidate(
            X,
            grid.cand,
            grid.order,
            grid.start,
            grid.ax0,
            grid.ax1,
            grid.lo0,
            grid.lo1,
            grid.h,
            grid.nx,
            grid.ny,
            out,
        )
    return out


# ---------------------------------------------------------------------------
# Coverage on a stored incidence (in memory, when the pairs fit a budget)
# ---------------------------------------------------------------------------
#
# The pass-based kernels above recompute, on every pass, which candidates lie
# within the radius of each point. When the (point, candidate) pairs within the
# radius fit in memory they are found once, and the coverage search runs on
# them: a swap evaluation is then O(pairs + m k) integer additions with no
# distance and no per-call overhead. The decisions (the same integer gains,
# the same tie-breaks) are those of the pass-based search, so both paths open
# the same sites.


@numba.njit(cache=True)
def _covered_by_any(X, sites, radius, out):
    # Summed in coordinate order, like the other kernels; a point at exactly
    # `radius` is covered.
    for i in range(X.shape[0]):
        for s in range(sites.shape[0]):
            d = 0.0
            for c in range(X.shape[1]):
                d += abs(X[i, c] - sites[s, c])
            if d <= radius:
                out[i] = True
                break


@numba.njit(cache=True)
def _coverage_pairs(
    X,
    rows,
    radius,
    cand,
    corder,
    cstart,
    ax0,
    ax1,
    lo0,
    lo1,
    h,
    nx,
    ny,
    max_pairs,
    fill,
    ptr,
    idx,
):
    # fill=False: ptr[p + 1] = pairs of point rows[p]; returns the total, or -1
    # once above max_pairs. fill=True: writes the candidates from ptr[p].
    total = 0
    for p in range(rows.shape[0]):
        i = rows[p]
        ia, ib = _cell_span(X[i, ax0], radius, lo0, h, nx)
        ja, jb = _cell_span(X[i, ax1], radius, lo1, h, ny)
        at = ptr[p] if fill else 0
        for cy in range(ja, jb + 1):
            row = cy * nx
            for q in range(cstart[row + ia], cstart[row + ib + 1]):
                if _l1_capped(X, i, cand, q, radius) > radius:
                    continue
                if fill:
                    idx[at] = corder[q]
                    at += 1
                else:
                    total += 1
        if not fill:
            ptr[p + 1] = total
            if total > max_pairs:
                return -1
    return total


def coverage_incidence(X, wq, radius, fixed, grid, max_pairs):
    """Pairs (point, candidate) within ``radius``, for points the search can move.

    Parameters
    ----------
    X : np.ndarray, shape (n, d), float64
    wq : np.ndarray, shape (n,), int64
        Weights in whole quanta.
    radius : float
        Coverage radius (L1, units of X), inclusive.
    fixed : np.ndarray, shape (f, d), float64
        Existing sites; the points they cover are always covered, so they
        take no part in the search and are only counted.
    grid : CandidateGrid
    max_pairs : int
        Give up (return None) beyond this many pairs.

    Returns
    -------
    rows : np.ndarray, shape (p,), int64
        Points with positive weight not covered by a fixed site.
    ptr : np.ndarray, shape (p + 1,), int64
        ``idx[ptr[r]:ptr[r + 1]]`` are the candidates (original indices)
        within ``radius`` of point ``rows[r]``.
    idx : np.ndarray, shape (ptr[-1],), int64
    fixed_covered : np.ndarray, shape (n,), bool
        Points within ``radius`` of a fixed site.

    Or None when there are more than ``max_pairs`` pairs.
    """
    X = np.ascontiguousarray(X, dtype=np.float64)
    fixed_covered = np.zeros(X.shape[0], dtype=np.bool_)
    if fixed.shape[0]:
        _covered_by_any(X, np.ascontiguousarray(fixed), float(radius), fixed_covered)
    rows = np.flatnonzero((wq > 0) & ~fixed_covered).astype(np.int64)
    ptr = np.zeros(rows.shape[0] + 1, dtype=np.int64)
    args = (
        grid.cand,
        grid.order,
        grid.start,
        grid.ax0,
        grid.ax1,
        grid.lo0,
        grid.lo1,
        grid.h,
        grid.nx,
        grid.ny,
        int(max_pairs),
    )
    idx = np.empty(0, dtype=np.int64)
    total = _coverage_pairs(X, rows, float(radius), *args, False, ptr, idx)
    if total < 0:
        return None
    idx = np.empty(total, dtype=np.int64)
    _coverage_pairs(X, rows, float(radius), *args, True, ptr, idx)
    return rows, ptr, idx, fixed_covered


@numba.njit(cache=True)
def _inc_counts(ptr, idx, slot, cnt, owner):
    # Open sites covering each point, and the slot of the last one found
    # (the only one when the count is 1).
    for p in range(cnt.shape[0]):
        c = 0
        o = -1
        for q in range(ptr[p], ptr[p + 1]):
            s = slot[idx[q]]
            if s >= 0:
                c += 1
                o = s
        cnt[p] = c
        owner[p] = o


@numba.njit(cache=True)
def _inc_gains(ptr, idx, wq, cnt, gain):
    gain[:] = 0
    for p in range(cnt.shape[0]):
        if cnt[p] == 0:
            for q in range(ptr[p], ptr[p + 1]):
                gain[idx[q]] += wq[p]


@numba.njit(cache=True)
def _inc_opening_gains(ptr, idx, wq, slot, gain):
    n = ptr.shape[0] - 1
    cnt = np.empty(n, dtype=np.int64)
    owner = np.empty(n, dtype=np.int64)
    _inc_counts(ptr, idx, slot, cnt, owner)
    _inc_gains(ptr, idx, wq, cnt, gain)


@numba.njit(cache=True)
def _inc_greedy(ptr, idx, cptr, cidx, wq, slot, rank, opened, n_open):
    # Opens the closed candidate of largest gain (ties: lowest rank) until
    # `opened` is full; gains are updated for the points newly covered only.
    n = ptr.shape[0] - 1
    m = slot.shape[0]
    cnt = np.empty(n, dtype=np.int64)
    owner = np.empty(n, dtype=np.int64)
    gain = np.empty(m, dtype=np.int64)
    _inc_counts(ptr, idx, slot, cnt, owner)
    _inc_gains(ptr, idx, wq, cnt, gain)
    while n_open < opened.shape[0]:
        best = -1
        for c in range(m):
            if slot[c] >= 0:
                continue
            if (
                best < 0
                or gain[c] > gain[best]
                or (gain[c] == gain[best] and rank[c] < rank[best])
            ):
                best = c
        opened[n_open] = best
        slot[best] = n_open
        n_open += 1
        for q in range(cptr[best], cptr[best + 1]):
            p = cidx[q]
            if cnt[p] == 0:
                for q2 in range(ptr[p], ptr[p + 1]):
                    gain[idx[q2]] -= wq[p]
            cnt[p] += 1


@numba.njit(cache=True)
def _inc_swap_search(
    ptr, idx, wq, w, base_q, base_w, slot, opened, rank, max_iter, obj_hist, val_hist
):
    # Best-improvement swaps (improvement > 0; ties: lowest rank, then lowest
    # slot), the objective recorded after each evaluation.
    n = ptr.shape[0] - 1
    m = slot.shape[0]
    k = opened.shape[0]
    cnt = np.empty(n, dtype=np.int64)
    owner = np.empty(n, dtype=np.int64)
    gain = np.empty(m, dtype=np.int64)
    loss = np.empty(k, dtype=np.int64)
    extra = np.empty(m * k, dtype=np.int64)
    n_swaps = 0
    nh = 0
    while True:
        _inc_counts(ptr, idx, slot, cnt, owner)
        _inc_gains(ptr, idx, wq, cnt, gain)
        loss[:] = 0
        extra[:] = 0
        obj = base_q
        val = base_w
        for p in range(n):
            if cnt[p] == 0:
                continue
            obj += wq[p]
            val += w[p]
            if cnt[p] == 1:
                j = owner[p]
                loss[j] += wq[p]
                for q in range(ptr[p], ptr[p + 1]):
                    extra[idx[q] * k + j] += wq[p]
        obj_hist[nh] = obj
        val_hist[nh] = val
        nh += 1
        if n_swaps >= max_iter:
            break
        bc = -1
        bj = -1
        bi = np.int64(0)
        for c in range(m):
            if slot[c] >= 0:
                continue
            for j in range(k):
                imp = gain[c] - loss[j] + extra[c * k + j]
                if (
                    bc < 0
                    or imp > bi
                    or (imp == bi and (rank[c] < rank[bc] or (c == bc and j < bj)))
                ):
                    bc = c
                    bj = j
                    bi = imp
        if bc < 0 or bi <= 0:
            break
        slot[opened[bj]] = -1
        opened[bj] = bc
        slot[bc] = bj
        n_swaps += 1
    return n_swaps, nh
