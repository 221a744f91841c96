"""Numba kernels for the L1 (Manhattan) K-Medians core.

The kernels here are pure functions of NumPy arrays: they never see Dask,
never validate (the public entry points do that once) and never allocate an
``n x k`` distance matrix (except :func:`l1_distances`, which is the
``transform`` output). Each one is compiled on first use and cached on disk
(``cache=True``) so that later processes skip the compile.

Determinism matters more than the last few percent of speed here: the NumPy
and the Dask paths of :mod:`evplanner.kmedians` must agree, so ties always
go to the lowest index and sums always run in row order.
"""

from __future__ import annotations

import threading
import types

import numba
import numpy as np

__all__ = [
    "assign2_l1",
    "assign_bounded",
    "assign_l1",
    "cluster_histograms",
    "cluster_lower_medians",
    "l1_distances",
    "swap_costs",
    "target_stats",
    "weighted_lower_median",
]


# The parallel kernels already use every core, and numba's "workqueue"
# threading layer (its fallback when neither OpenMP nor TBB is installed)
# aborts the process if two Python threads launch parallel kernels at once,
# as Dask's threaded scheduler or a threaded web server would. So parallel
# launches take turns; each one still runs on all cores.
_PARALLEL_LOCK = threading.Lock()

#: Inputs with fewer rows than this run the single-threaded compilation of a
#: kernel. Waking a thread team costs more than such a kernel's whole work
#: (a default fit on 300 points: 1.08 s with 2 busy threads, 0.03 s on one),
#: and the serial variants need not take the launch lock, so small Dask
#: chunks and concurrent small fits still run side by side.
SERIAL_MAX_ROWS = 50_000


class _Kernel:
    """One kernel compiled twice: parallel (``prange`` over threads) and serial.

    Both compilations come from the same Python source, so they compute the
    same thing in the same order per row (or per candidate): results are
    bit-identical whichever runs. The serial copy gets its own qualified
    name because numba's on-disk cache is keyed by name, not by flags.
    """

    def __init__(self, py_func):
        self.parallel = numba.njit(parallel=True, cache=True)(py_func)
        twin = types.FunctionType(
            py_func.__code__,
            py_func.__globals__,
            py_func.__name__ + "_serial",
            py_func.__defaults__,
            py_func.__closure__,
        )
        twin.__qualname__ = py_func.__qualname__ + "_serial"
        self.serial = numba.njit(cache=True)(twin)

    def __call__(self, n_rows, *args):
        """Run on ``args``; ``n_rows`` (the input's rows) picks the variant."""
        if n_rows < SERIAL_MAX_ROWS:
            return self.serial(*args)
        with _PARALLEL_LOCK:
            return self.parallel(*args)


# ---------------------------------------------------------------------------
# Assignment
# ---------------------------------------------------------------------------


@numba.njit(cache=True, inline="always")
def _l1_capped(X, i, centers, j, cap):
    # Stops summing once the distance exceeds `cap`: the caller only needs to
    # know that this centre cannot win.
    s = 0.0
    for c in range(X.shape[1]):
        s += abs(X[i, c] - centers[j, c])
        if s > cap:
            return s
    return s


@numba.njit(cache=True, inline="always")
def _search(
    X, i, centers, order, key, axis, best, best_j, second, track_second, want_bound
):
    # Centres are sorted along `axis`; |x_axis - c_axis| is a lower bound of
    # the L1 distance. Scan right, then left, from the point's own position
    # and stop each scan once that gap exceeds the pruning radius (the best
    # distance, or the second best when it is tracked). Every centre that can
    # beat (best, lowest index) is examined, so the result is exact. One
    # direction at a time keeps the branches predictable.
    #
    # `second` is the exact second-best distance when `track_second`; with
    # only `want_bound` it is a lower bound of the distance to every centre
    # but the best, at the cost of the plain search: the smallest (possibly
    # capped, hence too small) distance of the other centres examined, and
    # the gap at which each scan stopped (every centre further out is at
    # least that far).
    keep2 = track_second or want_bound
    k = key.shape[0]
    xa = X[i, axis]
    lo = 0
    hi = k
    while lo < hi:
        mid = (lo + hi) >> 1
        if key[mid] < xa:
            lo = mid + 1
        else:
            hi = mid
    for step in (1, -1):
        pos = lo if step == 1 else lo - 1
        while 0 <= pos < k:
            radius = second if track_second else best
            gap = key[pos] - xa if step == 1 else xa - key[pos]
            if gap > radius:
                if want_bound and not track_second and gap < second:
                    second = gap
                break
            j = order[pos]
            s = _l1_capped(X, i, centers, j, radius)
            if s < best or (s == best and j < best_j):
                if keep2 and j != best_j and best < second:
                    second = best
                best = s
                best_j = j
            elif keep2 and s < second and j != best_j:
                second = s
            pos += step
    return best, best_j, second


def _sorted_axis(centers):
    # Sort along the coordinate where the centres spread most: that prunes most.
    spread = centers.max(axis=0) - centers.min(axis=0)
    axis = int(np.argmax(spread))
    order = np.argsort(centers[:, axis], kind="stable").astype(np.int64)
    key = np.ascontiguousarray(centers[order, axis])
    return order, key, axis


# ---------------------------------------------------------------------------
# Cell filtering: a grid over the points, a shortlist of sites per cell
# ---------------------------------------------------------------------------

#: The grid search (below) runs when the points have two coordinates, there
#: are at least GRID_MIN_SITES centres and GRID_MIN_ROWS points, and every
#: coordinate is below GRID_MAX_ABS in magnitude (so that no cell bound can
#: overflow); otherwise the sorted-axis search (:func:`_search`) runs. With
#: few centres the sorted-axis scan is already short, and on few points the
#: grid's fixed cost per call (edges, shortlists) is not paid back. Single-
#: thread CPU time, sorted axis / grid, on the bundled demand (2026-12-02):
#: k = 32: 0.8x at n = 20,000, 1.4x at 50,000, 1.6x at 100,000-200,000;
#: k = 100: 1.2x, 1.6x, 1.9x, 2.2x; n = 1M: 2.5x (k = 100), 3.6x (k = 2,500).
GRID_MIN_SITES = 32
GRID_MIN_ROWS = 50_000
GRID_MAX_ABS = 1e150
#: Target number of cells per centre: cells much smaller than a Voronoi
#: region mostly lie inside one region, so their shortlists are short (on the
#: benchmark's 1M points, k = 100: ~5 centres per point against ~16 with 4
#: cells per centre; 2-2.5x faster than the sorted axis, measured 2026-12-02).
GRID_CELLS_PER_SITE = 32
#: Least average number of points per cell: each cell costs a shortlist
#: build, which must be paid back by the points it serves (this bound sets
#: the cell count for many centres: k = 2,500 on 1M points, 15,625 cells).
GRID_ROWS_PER_CELL = 64
#: Rows (strided) from which the cell edges are taken as quantiles.
GRID_SAMPLE = 4096
#: Relative slack on a cell's pruning radius: the distances and the cell
#: bounds are computed with the same monotone roundings, so no site that can
#: win is ever dropped; the slack is a second guard that can only add sites.
GRID_SLACK = 1e-12


def _axis_edges(v, lo, hi, nb):
    # Cell edges at quantiles of the sampled coordinate, so that dense areas
    # get small cells; the outer edges are the exact extent of the points.
    q = np.quantile(v, np.linspace(0.0, 1.0, nb + 1)[1:-1])
    e = np.unique(np.concatenate([[lo], q, [hi]]))
    if e.shape[0] == 1:
        e = np.array([lo, hi])
    # A uniform lookup table: lut[s] is the bin of the start of slot s, so a
    # value in slot s lies in a bin between lut[s] and lut[s + 1] (usually
    # the same one), which the kernel narrows down by bisection.
    m = min(64 * (e.shape[0] - 1), 1 << 16)
    width = hi - lo
    inv = m / width if width > 0 else 0.0
    slots = lo + np.arange(m + 1) * (width / m)
    lut = np.clip(np.searchsorted(e, slots, side="right") - 1, 0, e.shape[0] - 2)
    return e, lut.astype(np.int64), float(inv)


@numba.njit(cache=True)
def _extent(X):
    # Per-coordinate min and max in one pass over the rows (NumPy's reduction
    # along axis 0 of a C-ordered (n, 2) array is several times slower).
    lo = X[0].copy()
    hi = X[0].copy()
    for i in range(X.shape[0]):
        for c in range(X.shape[1]):
            v = X[i, c]
            if v < lo[c]:
                lo[c] = v
            elif v > hi[c]:
                hi[c] = v
    return lo, hi


def _grid_plan(X, centers):
    """Cell edges over ``X`` for the grid search, or None to use the sorted axis.

    Returns ``(xe, ye, xlut, ylut, xinv, yinv)``: edges along each coordinate
    (cell ``(a, b)`` is ``[xe[a], xe[a + 1]] x [ye[b], ye[b + 1]]``), lookup
    tables and their scale (see :func:`_axis_edges`).
    """
    n, d = X.shape
    k = centers.shape[0]
    if d != 2 or k < GRID_MIN_SITES or n < GRID_MIN_ROWS:
        return None
    cells = min(GRID_CELLS_PER_SITE * k, n // GRID_ROWS_PER_CELL)
    lo, hi = _extent(X)
    big = max(np.abs(lo).max(), np.abs(hi).max(), np.abs(centers).max())
    if not big < GRID_MAX_ABS:
        return None
    per_axis = max(1, int(np.sqrt(cells)))
    sample = X[:: max(1, n // GRID_SAMPLE)]
    xe, xlut, xinv = _axis_edges(sample[:, 0], lo[0], hi[0], per_axis)
    ye, ylut, yinv = _axis_edges(sample[:, 1], lo[1], hi[1], per_axis)
    # Coarse cells (about one per centre) that nest the fine ones: their
    # shortlists come from a window of the sorted centres, and each fine
    # cell then filters its coarse cell's shortlist, which holds all of its
    # own (see _grid_refine).
    r = max(1, per_axis // max(1, int(np.sqrt(k))))
    return xe, ye, xlut, ylut, xinv, yinv, _coarsen(xe, r), _coarsen(ye, r), r


def _coarsen(e, r):
    # Every r-th edge and the last: coarse bin A holds fine bins r A .. r A + r - 1.
    c = e[::r]
    if (e.shape[0] - 1) % r:
        c = np.append(c, e[-1])
    return np.ascontiguousarray(c)


@numba.njit(cache=True, inline="always")
def _bin_closed(x, e, lut, inv):
    # Bin b with e[b] <= x <= e[b + 1] for x in [e[0], e[-1]] (a value on an
    # inner edge may go either side: both cells contain it).
    nb = e.shape[0] - 1
    s = int((x - e[0]) * inv)
    if s < 0:
        s = 0
    elif s > lut.shape[0] - 2:
        s = lut.shape[0] - 2
    lo = lut[s]
    hi = lut[s + 1]
    while lo < hi:
        mid = (lo + hi + 1) >> 1
        if e[mid] <= x:
            lo = mid
        else:
            hi = mid - 1
    # The slot was computed with rounding: step to the right bin if need be.
    b = lo
    while b > 0 and x < e[b]:
        b -= 1
    while b < nb - 1 and x > e[b + 1]:
        b += 1
    return b


@numba.njit(cache=True, inline="always")
def _cell_box(xe, ye, g):
    ny = ye.shape[0] - 1
    a = g // ny
    b = g - a * ny
    return xe[a], xe[a + 1], ye[b], ye[b + 1]


@numba.njit(cache=True, inline="always")
def _mind(lo, hi, c):
    # Least |x - c| over x in [lo, hi], rounded as the distances are: every
    # rounding is monotone, so |x - c| computed for any such x is >= this.
    if c < lo:
        return lo - c
    if c > hi:
        return c - hi
    return 0.0


@numba.njit(cache=True, inline="always")
def _maxd(lo, hi, c):
    # Largest |x - c| over x in [lo, hi], rounded as the distances are.
    return max(abs(lo - c), abs(hi - c))


@_Kernel
def _grid_count(xe, ye, centers, order, key, axis, nth, radius, count, floor):
    # Per cell: the pruning radius U = nth smallest (1st or 2nd) of the
    # largest distance from the cell to each centre, then how many centres
    # have a least distance to the cell <= U (the shortlist) and the least
    # such distance among the others (`floor`, a lower bound of the distance
    # from any point of the cell to any centre off the shortlist).
    k = key.shape[0]
    other = 1 - axis
    for g in numba.prange(count.shape[0]):
        x0, x1, y0, y1 = _cell_box(xe, ye, g)
        la, ha, lb, hb = (x0, x1, y0, y1) if axis == 0 else (y0, y1, x0, x1)
        # Scan the centres sorted along `axis` outwards from the cell's
        # middle; the largest distance along `axis` alone bounds the sum.
        mid = 0.5 * (la + ha)
        lo = 0
        hi = k
        while lo < hi:
            m = (lo + hi) >> 1
            if key[m] < mid:
                lo = m + 1
            else:
                hi = m
        u1 = np.inf
        u2 = np.inf
        for step in (1, -1):
            pos = lo if step == 1 else lo - 1
            while 0 <= pos < k:
                ma = _maxd(la, ha, key[pos])
                if ma > (u2 if nth == 2 else u1):
                    break
                j = order[pos]
                s = 0.0
                s += ma
                s += _maxd(lb, hb, centers[j, other])
                if s < u1:
                    u2 = u1
                    u1 = s
                elif s < u2:
                    u2 = s
                pos += step
        u = u2 if nth == 2 else u1
        u = u + GRID_SLACK * u
        radius[g] = u
        # Shortlist: centres whose least distance to the cell is <= u. Along
        # the sorted axis that distance is monotone outside [la, ha], so the
        # window ends where it alone exceeds u.
        lo = 0
        hi = k
        while lo < hi:
            m = (lo + hi) >> 1
            if key[m] < la:
                lo = m + 1
            else:
                hi = m
        cnt = 0
        fl = np.inf
        for step in (1, -1):
            pos = lo if step == 1 else lo - 1
            while 0 <= pos < k:
                ma = _mind(la, ha, key[pos])
                if ma > u:
                    fl = min(fl, ma)
                    break
                j = order[pos]
                s = 0.0
                s += ma
                s += _mind(lb, hb, centers[j, other])
                if s <= u:
                    cnt += 1
                else:
                    fl = min(fl, s)
                pos += step
        count[g] = cnt
        floor[g] = fl


@_Kernel
def _grid_fill(xe, ye, centers, order, key, axis, radius, start, site, site_xy):
    # Same window scan as _grid_count, writing the shortlist.
    k = key.shape[0]
    other = 1 - axis
    for g in numba.prange(radius.shape[0]):
        x0, x1, y0, y1 = _cell_box(xe, ye, g)
        la, ha, lb, hb = (x0, x1, y0, y1) if axis == 0 else (y0, y1, x0, x1)
        u = radius[g]
        lo = 0
        hi = k
        while lo < hi:
            m = (lo + hi) >> 1
            if key[m] < la:
                lo = m + 1
            else:
                hi = m
        p = start[g]
        for step in (1, -1):
            pos = lo if step == 1 else lo - 1
            while 0 <= pos < k:
                ma = _mind(la, ha, key[pos])
                if ma > u:
                    break
                j = order[pos]
                s = 0.0
                s += ma
                s += _mind(lb, hb, centers[j, other])
                if s <= u:
                    site[p] = j
                    site_xy[p, 0] = centers[j, 0]
                    site_xy[p, 1] = centers[j, 1]
                    p += 1
                pos += step


@_Kernel
def _grid_refine(
    xe,
    ye,
    xc,
    yc,
    r,
    pstart,
    psite,
    pxy,
    pfloor,
    nth,
    count,
    radius,
    floor,
    start,
    site,
    site_xy,
    fill,
):
    # The fine cells' shortlists from their coarse cell's. A fine cell lies
    # inside its coarse cell, so its least distances to the centres are at
    # least, and its largest at most, the coarse ones (also as rounded): its
    # radius is reached within the coarse shortlist, and every centre it
    # keeps is on that shortlist. Run twice: count (fill False), then write.
    ny = ye.shape[0] - 1
    ncx = xc.shape[0] - 1
    ncy = yc.shape[0] - 1
    for g in numba.prange(count.shape[0]):
        a = g // ny
        b = g - a * ny
        x0 = xe[a]
        x1 = xe[a + 1]
        y0 = ye[b]
        y1 = ye[b + 1]
        P = min(a // r, ncx - 1) * ncy + min(b // r, ncy - 1)
        p0 = pstart[P]
        p1 = pstart[P + 1]
        if fill:
            u = radius[g]
        else:
            u1 = np.inf
            u2 = np.inf
            for p in range(p0, p1):
                s = 0.0
                s += _maxd(x0, x1, pxy[p, 0])
                s += _maxd(y0, y1, pxy[p, 1])
                if s < u1:
                    u2 = u1
                    u1 = s
                elif s < u2:
                    u2 = s
            u = u2 if nth == 2 else u1
            u = u + GRID_SLACK * u
            radius[g] = u
        cnt = 0
        fl = pfloor[P]
        q = start[g]
        for p in range(p0, p1):
            s = 0.0
            s += _mind(x0, x1, pxy[p, 0])
            s += _mind(y0, y1, pxy[p, 1])
            if s <= u:
                if fill:
                    site[q] = psite[p]
                    site_xy[q, 0] = pxy[p, 0]
                    site_xy[q, 1] = pxy[p, 1]
                    q += 1
                cnt += 1
            else:
                fl = min(fl, s)
        count[g] = cnt
        floor[g] = fl


@_Kernel
def _sort_shortlists(xe, ye, start, site, site_xy, max_len):
    # Each shortlist in order of distance from its cell's middle (insertion
    # sort; lists longer than max_len stay as they are): the first centre a
    # point measures is then usually its nearest, so the comparisons after
    # it go the same way and branch prediction holds. The order does not
    # change the result (ties are broken by index, not by position).
    ny = ye.shape[0] - 1
    for g in numba.prange(start.shape[0] - 1):
        p0 = start[g]
        p1 = start[g + 1]
        if p1 - p0 > max_len:
            continue
        a = g // ny
        b = g - a * ny
        mx = 0.5 * (xe[a] + xe[a + 1])
        my = 0.5 * (ye[b] + ye[b + 1])
        for p in range(p0 + 1, p1):
            j = site[p]
            cx = site_xy[p, 0]
            cy = site_xy[p, 1]
            dist = abs(cx - mx) + abs(cy - my)
            q = p
            while q > p0:
                ox = site_xy[q - 1, 0]
                oy = site_xy[q - 1, 1]
                if abs(ox - mx) + abs(oy - my) <= dist:
                    break
                site[q] = site[q - 1]
                site_xy[q, 0] = ox
                site_xy[q, 1] = oy
                q -= 1
            site[q] = j
            site_xy[q, 0] = cx
            site_xy[q, 1] = cy


def _shortlists(xe, ye, centers, order, key, axis, nth):
    # Coarse level: centre windows along the sorted axis, count then fill.
    cells = (xe.shape[0] - 1) * (ye.shape[0] - 1)
    radius = np.empty(cells)
    count = np.empty(cells, dtype=np.int64)
    floor = np.empty(cells)
    _grid_count(0, xe, ye, centers, order, key, axis, nth, radius, count, floor)
    start = np.zeros(cells + 1, dtype=np.int64)
    np.cumsum(count, out=start[1:])
    site = np.empty(start[-1], dtype=np.int64)
    site_xy = np.empty((start[-1], 2))
    _grid_fill(0, xe, ye, centers, order, key, axis, radius, start, site, site_xy)
    return start, site, site_xy, floor


def _grid_build(plan, centers, order, key, axis, nth):
    """Shortlists of ``centers`` per cell of ``plan`` (see :func:`_grid_count`).

    Returns the tuple the search kernels take: ``(xe, ye, xlut, ylut, xinv,
    yinv, start, site, site_xy, floor)``; the shortlist of cell ``g`` is
    ``site[start[g]:start[g + 1]]`` (centre indices) with their coordinates
    ``site_xy`` alongside, so that a point reads one contiguous run.

    The build runs single-threaded (the serial kernels): under load, five
    parallel launches cost more than they save (``assign_l1`` on 1M points
    with the load average at 4-5 on 2 cores, best of 15: 0.069 s against
    0.118 s for k = 100, 0.211 s against 0.221 s for k = 2,500).
    """
    xe, ye, xlut, ylut, xinv, yinv, xc, yc, r = plan
    parent = _shortlists(xc, yc, centers, order, key, axis, nth)
    if r == 1:
        _sort_shortlists(0, xe, ye, *parent[:3], 64)
        return (xe, ye, xlut, ylut, xinv, yinv, *parent)
    cells = (xe.shape[0] - 1) * (ye.shape[0] - 1)
    radius = np.empty(cells)
    count = np.empty(cells, dtype=np.int64)
    floor = np.empty(cells)
    start = np.zeros(cells + 1, dtype=np.int64)
    none = np.empty(0, dtype=np.int64)
    none_xy = np.empty((0, 2))
    args = (xe, ye, xc, yc, r, *parent, nth, count, radius, floor)
    _grid_refine(0, *args, start, none, none_xy, False)
    np.cumsum(count, out=start[1:])
    site = np.empty(start[-1], dtype=np.int64)
    site_xy = np.empty((start[-1], 2))
    _grid_refine(0, *args, start, site, site_xy, True)
    _sort_shortlists(0, xe, ye, start, site, site_xy, 64)
    return xe, ye, xlut, ylut, xinv, yinv, start, site, site_xy, floor


#: Stand-in grid for the kernels when the sorted-axis search runs.
_NO_GRID = (
    np.zeros(2),
    np.zeros(2),
    np.zeros(1, dtype=np.int64),
    np.zeros(1, dtype=np.int64),
    0.0,
    0.0,
    np.zeros(2, dtype=np.int64),
    np.zeros(0, dtype=np.int64),
    np.zeros((0, 2)),
    np.zeros(1),
)


@numba.njit(cache=True, inline="always")
def _grid_scan(X, i, g, start, site, site_xy):
    # Nearest and second-nearest distance among cell g's shortlist, distances
    # summed exactly as _l1_capped sums them (0.0 + |dx| + |dy|, in order).
    x = X[i, 0]
    y = X[i, 1]
    p0 = start[g]
    p1 = start[g + 1]
    best = 0.0
    best += abs(x - site_xy[p0, 0])
    best += abs(y - site_xy[p0, 1])
    best_j = site[p0]
    second = np.inf
    for p in range(p0 + 1, p1):
        s = 0.0
        s += abs(x - site_xy[p, 0])
        s += abs(y - site_xy[p, 1])
        j = site[p]
        if s < best or (s == best and j < best_j):
            second = best
            best = s
            best_j = j
        elif s < second:
            second = s
    return best, best_j, second


def _prepare(X, centers, nth):
    """Search structures for ``centers``: the sorted axis, and the grid if it pays.

    ``nth`` is 2 when the search needs exact second-nearest distances (the
    shortlists then hold every centre that can be first or second). Returns
    ``(order, key, axis, grid, use_grid)``.
    """
    order, key, axis = _sorted_axis(centers)
    plan = _grid_plan(X, centers)
    if plan is None:
        return order, key, axis, _NO_GRID, False
    grid = _grid_build(plan, centers, order, key, axis, nth)
    return order, key, axis, grid, True


@_Kernel
def _assign_l1(
    X,
    centers,
    order,
    key,
    axis,
    xe,
    ye,
    xlut,
    ylut,
    xinv,
    yinv,
    start,
    site,
    site_xy,
    floor,
    use_grid,
    labels,
    dist,
):
    k = key.shape[0]
    # The cell of a point (-1 outside the grid: the sorted-axis search). The
    # cell lookup is written out in each loop: as a helper function it ran
    # several times slower.
    xlo, xhi, ylo, yhi = xe[0], xe[xe.shape[0] - 1], ye[0], ye[ye.shape[0] - 1]
    ny = ye.shape[0] - 1
    for i in numba.prange(X.shape[0]):
        g = -1
        if use_grid:
            x = X[i, 0]
            y = X[i, 1]
            if x >= xlo and x <= xhi and y >= ylo and y <= yhi:
                g = _bin_closed(x, xe, xlut, xinv) * ny + _bin_closed(y, ye, ylut, yinv)
        if g >= 0:
            best, best_j, _ = _grid_scan(X, i, g, start, site, site_xy)
        else:
            best, best_j, _ = _search(
                X, i, centers, order, key, axis, np.inf, k, np.inf, False, False
            )
        labels[i] = best_j
        dist[i] = best


def assign_l1(X: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Assign every point to its nearest centre in L1 distance.

    Fused distance + argmin, parallel over rows with ``numba.prange``; memory
    is O(n), never O(n k).

    Parameters
    ----------
    X : np.ndarray, shape (n, d), float64
        Demand points (for example ``x_m, y_m`` in metres).
    centers : np.ndarray, shape (k, d), float64
        Centres (sites), ``k >= 1``.

    Returns
    -------
    labels : np.ndarray, shape (n,), int64
        Index of the nearest centre; ties go to the lowest index.
    dist : np.ndarray, shape (n,), float64
        L1 distance to that centre, in the units of ``X``.

    Notes
    -----
    Cell filtering, for two coordinates and enough points and centres (see
    ``GRID_MIN_ROWS`` and the other ``GRID_*`` constants): a grid over the
    points' extent, with edges at quantiles of the points so that dense
    areas get small cells. For each cell ``Q``, ``U = min_j max_{x in Q}
    D(x, c_j)`` bounds every point's nearest distance, so only centres with
    ``min_{x in Q} D(x, c_j) <= U`` can be nearest: that is the cell's
    shortlist, and each point scans only its cell's. Both bounds are
    computed with the same (monotone) roundings as the distances, plus a
    ``1e-12`` relative slack that can only add centres, so the shortlist
    always holds the true winner. The shortlists are built on a coarse grid
    (about one cell per centre; a window of the centres sorted along one
    coordinate) and then filtered for the fine cells nested in each coarse
    one: memory O(n + cells x shortlist), never O(n k).

    Otherwise, and for points outside the grid, the centres are sorted along
    the coordinate where they spread most; a point walks outwards from its
    own position in that order and stops once the gap along that coordinate
    (a lower bound of the L1 distance) exceeds its best distance.

    Either way the result is identical to the brute-force minimum over
    ``(distance, index)``, distances summed in coordinate order (bit for
    bit the same as :func:`l1_distances`).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0, 0.0], [9.0, 1.0]])
    >>> labels, dist = assign_l1(X, np.array([[1.0, 1.0], [10.0, 0.0]]))
    >>> labels.tolist(), dist.tolist()
    ([0, 1], [2.0, 2.0])
    """
    X = np.ascontiguousarray(X, dtype=np.float64)
    centers = np.ascontiguousarray(centers, dtype=np.float64)
    n = X.shape[0]
    labels = np.empty(n, dtype=np.int64)
    dist = np.empty(n, dtype=np.float64)
    if n:
        order, key, axis, grid, use_grid = _prepare(X, centers, 1)
        _assign_l1(n, X, centers, order, key, axis, *grid, use_grid, labels, dist)
    return labels, dist


@_Kernel
def _assign2_l1(
    X,
    centers,
    order,
    key,
    axis,
    xe,
    ye,
    xlut,
    ylut,
    xinv,
    yinv,
    start,
    site,
    site_xy,
    floor,
    use_grid,
    labels,
    dist1,
    dist2,
    exact,
):
    # Also keeps the second-best distance (the cost of a point if its own
    # centre were removed), pruning on the second best; or, not `exact`, a
    # lower bound of it found by the plain search.
    k = key.shape[0]
    # The cell of a point (-1 outside the grid: the sorted-axis search). The
    # cell lookup is written out in each loop: as a helper function it ran
    # several times slower.
    xlo, xhi, ylo, yhi = xe[0], xe[xe.shape[0] - 1], ye[0], ye[ye.shape[0] - 1]
    ny = ye.shape[0] - 1
    for i in numba.prange(X.shape[0]):
        g = -1
        if use_grid:
            x = X[i, 0]
            y = X[i, 1]
            if x >= xlo and x <= xhi and y >= ylo and y <= yhi:
                g = _bin_closed(x, xe, xlut, xinv) * ny + _bin_closed(y, ye, ylut, yinv)
        if g >= 0:
            best, best_j, second = _grid_scan(X, i, g, start, site, site_xy)
            if not exact:
                # The shortlist holds the candidates for nearest only; the
                # centres off it are at least the cell's floor away.
                second = min(second, floor[g])
        else:
            best, best_j, second = _search(
                X, i, centers, order, key, axis, np.inf, k, np.inf, exact, True
            )
        labels[i] = best_j
        dist1[i] = best
        dist2[i] = second


def assign2_l1(
    X: np.ndarray, centers: np.ndarray, *, exact: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest centre, its distance and the second-nearest distance (L1).

    Parameters
    ----------
    X : np.ndarray, shape (n, d), float64
    centers : np.ndarray, shape (k, d), float64
    exact : bool, default True
        False: ``dist2`` is only a lower bound of the second-nearest distance
        (at least ``dist1``), found by the plain search of :func:`assign_l1`
        at its cost; exact seconds cost more (sorted axis: ~1.4-2x).

    Returns
    -------
    labels : np.ndarray, shape (n,), int64
        As :func:`assign_l1`.
    dist1 : np.ndarray, shape (n,), float64
        Distance to the nearest centre.
    dist2 : np.ndarray, shape (n,), float64
        Distance to the second-nearest centre (``inf`` when ``k == 1``), or
        a lower bound of it (``exact=False``).

    Notes
    -----
    Same search as :func:`assign_l1`. With the grid, exact second distances
    use shortlists cut at the second smallest largest distance from the cell
    (every centre that can be first or second); the bound uses the nearest
    shortlists, and the least distance from the cell to the centres off it.
    The bound's value depends on the search used; only labels, ``dist1`` and
    exact ``dist2`` are defined to the bit.
    """
    X = np.ascontiguousarray(X, dtype=np.float64)
    centers = np.ascontiguousarray(centers, dtype=np.float64)
    n = X.shape[0]
    labels = np.empty(n, dtype=np.int64)
    dist1 = np.empty(n, dtype=np.float64)
    dist2 = np.empty(n, dtype=np.float64)
    if n:
        exact = bool(exact)
        order, key, axis, grid, use_grid = _prepare(X, centers, 2 if exact else 1)
        _assign2_l1(
            n,
            X,
            centers,
            order,
            key,
            axis,
            *grid,
            use_grid,
            labels,
            dist1,
            dist2,
            exact,
        )
    return labels, dist1, dist2


@_Kernel
def _l1_distances(X, centers, out):
    n, d = X.shape
    k = centers.shape[0]
    for i in numba.prange(n):
        for j in range(k):
            s = 0.0
            for c in range(d):
                s += abs(X[i, c] - centers[j, c])
            out[i, j] = s


def l1_distances(X: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Full L1 distance matrix (for ``transform``; O(n k) memory by design).

    Parameters
    ----------
    X : np.ndarray, shape (n, d), float64
    centers : np.ndarray, shape (k, d), float64

    Returns
    -------
    np.ndarray, shape (n, k), float64
        ``out[i, j] = sum_c |X[i, c] - centers[j, c]|``.
    """
    X = np.ascontiguousarray(X, dtype=np.float64)
    centers = np.ascontiguousarray(centers, dtype=np.float64)
    out = np.empty((X.shape[0], centers.shape[0]), dtype=np.float64)
    if X.shape[0] and centers.shape[0]:
        _l1_distances(X.shape[0], X, centers, out)
    return out


# ---------------------------------------------------------------------------
# Weighted medians
# ---------------------------------------------------------------------------


@numba.njit(cache=True)
def _select(vals, ws, acc, half):
    # Weighted quickselect with a three-way partition; `vals` and `ws` are
    # scratch buffers that get reordered. Invariant: the answer lies in
    # vals[lo:hi] and `acc` is the weight of all values below that range.
    lo = 0
    hi = vals.shape[0]
    while True:
        if hi - lo == 1:
            return vals[lo]
        a = vals[lo]
        b = vals[(lo + hi) >> 1]
        c = vals[hi - 1]
        # Median of three as pivot: deterministic, and fine on sorted input.
        if a < b:
            p = b if b < c else (max(a, c))
        else:
            p = a if a < c else (max(b, c))
        lt = lo
        i = lo
        gt = hi
        w_lt = 0.0
        w_eq = 0.0
        w_gt = 0.0
        while i < gt:
            v = vals[i]
            if v < p:
                vals[i] = vals[lt]
                vals[lt] = v
                wv = ws[i]
                ws[i] = ws[lt]
                ws[lt] = wv
                w_lt += wv
                lt += 1
                i += 1
            elif v > p:
                gt -= 1
                vals[i] = vals[gt]
                vals[gt] = v
                wv = ws[i]
                ws[i] = ws[gt]
                ws[gt] = wv
                w_gt += wv
            else:
                w_eq += ws[i]
                i += 1
        if acc + w_lt >= half and lt > lo:
            hi = lt
        elif acc + w_lt + w_eq >= half or gt == hi or w_gt == 0.0:
            # The last two guards only matter if rounding left the running sum
            # a hair below `half`: then the largest weighted value is the answer.
            return p
        else:
            acc += w_lt + w_eq
            lo = gt


def weighted_lower_median(
    values: np.ndarray,
    weights: np.ndarray,
    below: float = 0.0,
    half: float | None = None,
) -> float:
    """Lower weighted median: the smallest ``v`` with ``below + W(x <= v) >= half``.

    Parameters
    ----------
    values : np.ndarray, shape (n,), float64
        Values (one coordinate of the points of one cluster), ``n >= 1``.
    weights : np.ndarray, shape (n,), float64
        Non-negative weights.
    below : float, default 0.0
        Weight of points known to lie below every value in ``values`` (used by
        the chunked path, which only gathers the values in the median's bin).
    half : float, optional
        Target cumulative weight; default half the total weight of ``values``.

    Returns
    -------
    float
        One of ``values``: the lower weighted median. Every minimiser of
        ``sum_i w_i |x_i - v|`` lies between the lower and upper weighted
        medians, so this one is exactly optimal for the L1 cost. O(n) expected.

    Examples
    --------
    >>> import numpy as np
    >>> weighted_lower_median(np.array([3.0, 1.0, 2.0]), np.array([1.0, 1.0, 1.0]))
    2.0
    >>> weighted_lower_median(np.array([1.0, 2.0]), np.array([1.0, 1.0]))
    1.0
    """
    vals = np.array(values, dtype=np.float64, copy=True)
    ws = np.array(weights, dtype=np.float64, copy=True)
    if half is None:
        half = 0.5 * float(ws.sum())
    return float(_select(vals, ws, float(below), float(half)))


@numba.njit(cache=True)
def _hist_select(v, wv, half):
    # Lower weighted median of v by one histogram pass over [min, max], then
    # weighted quickselect among the values of the bin that holds it. Bin
    # index floor((x - min) * B / (max - min)) is monotone in x, so every
    # value of an earlier bin is smaller: the weight below the bin is exact.
    m = v.shape[0]
    lo = v[0]
    hi = v[0]
    for t in range(m):
        lo = min(lo, v[t])
        hi = max(hi, v[t])
    if lo == hi:
        return lo
    nb = 256 if m > 2048 else 16
    inv = nb / (hi - lo)
    hist = np.zeros(nb)
    cnt = np.zeros(nb, dtype=np.int64)
    for t in range(m):
        b = min(int((v[t] - lo) * inv), nb - 1)
        hist[b] += wv[t]
        cnt[b] += 1
    below = 0.0
    sel = -1
    last = 0
    for b in range(nb):
        if hist[b] > 0.0:
            last = b
        if below + hist[b] >= half and hist[b] > 0.0:
            sel = b
            break
        below += hist[b]
    if sel < 0:
        # Rounding left the total a hair below `half`: the last weighted bin.
        sel = last
        below = 0.0
        for b in range(sel):
            below += hist[b]
    vals = np.empty(cnt[sel])
    ws = np.empty(cnt[sel])
    f = 0
    for t in range(m):
        if min(int((v[t] - lo) * inv), nb - 1) == sel:
            vals[f] = v[t]
            ws[f] = wv[t]
            f += 1
    return _select(vals, ws, below, half)


@_Kernel
def _cluster_lower_medians(X, w, labels, n_labels, k, n_slices, out, wsum):
    n, d = X.shape
    # Counting sort by label: O(n) and stable; each movable cluster's points
    # are copied into contiguous buffers (one per coordinate) so that the
    # per-cluster work below reads memory in order. The rows are cut into
    # one slice per thread, each counted and scattered by its thread into its
    # own ranges (slice order within a label): the layout is that of a serial
    # stable sort for any number of slices, so the medians are bit-identical.
    bound = np.empty(n_slices + 1, dtype=np.int64)
    for t in range(n_slices + 1):
        bound[t] = n * t // n_slices
    counts = np.zeros((n_slices, n_labels), dtype=np.int64)
    for t in numba.prange(n_slices):
        for i in range(bound[t], bound[t + 1]):
            counts[t, labels[i]] += 1
    start = np.zeros(n_labels + 1, dtype=np.int64)
    fill = np.empty((n_slices, n_labels), dtype=np.int64)
    run = 0
    for j in range(n_labels):
        start[j] = run
        for t in range(n_slices):
            fill[t, j] = run
            run += counts[t, j]
    start[n_labels] = run
    m = start[k]
    Xs = np.empty((d, m))
    ws = np.empty(m)
    for t in numba.prange(n_slices):
        for i in range(bound[t], bound[t + 1]):
            j = labels[i]
            if j >= k:
                continue
            p = fill[t, j]
            fill[t, j] += 1
            ws[p] = w[i]
            for c in range(d):
                Xs[c, p] = X[i, c]
    for j in numba.prange(k):
        s = start[j]
        e = start[j + 1]
        tot = 0.0
        for t in range(s, e):
            tot += ws[t]
        wsum[j] = tot
        if tot <= 0.0:
            for c in range(d):
                out[j, c] = np.nan
            continue
        for c in range(d):
            out[j, c] = _hist_select(Xs[c, s:e], ws[s:e], 0.5 * tot)


def cluster_lower_medians(
    X: np.ndarray, w: np.ndarray, labels: np.ndarray, n_labels: int, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-cluster, per-coordinate lower weighted medians in O(n d) time.

    Parameters
    ----------
    X : np.ndarray, shape (n, d), float64
    w : np.ndarray, shape (n,), float64
        Non-negative weights.
    labels : np.ndarray, shape (n,), int64
        Values in ``[0, n_labels)``.
    n_labels : int
        Number of distinct labels (movable + fixed centres).
    k : int
        Medians are computed for labels ``0 .. k-1`` only (the movable centres).

    Returns
    -------
    medians : np.ndarray, shape (k, d), float64
        NaN for clusters whose total weight is zero (the caller re-seeds them).
    weight : np.ndarray, shape (k,), float64
        Total weight per cluster.
    """
    X = np.ascontiguousarray(X, dtype=np.float64)
    n = X.shape[0]
    out = np.empty((k, X.shape[1]), dtype=np.float64)
    wsum = np.zeros(k, dtype=np.float64)
    # One slice of rows per thread for the parallel sort (any count gives the
    # same result); in a kernel, get_num_threads() would defeat numba's cache.
    n_slices = min(numba.get_num_threads(), n // 4096) if n >= SERIAL_MAX_ROWS else 1
    _cluster_lower_medians(
        n,
        X,
        np.ascontiguousarray(w, dtype=np.float64),
        labels,
        n_labels,
        k,
        max(1, n_slices),  # SERIAL_MAX_ROWS may be lowered (the tests do)
        out,
        wsum,
    )
    return out, wsum


@numba.njit(cache=True, inline="always")
def _bin_of(x, edges, lo, inv, nb):
    # Arithmetic guess, then corrected against the explicit edges so that bin
    # b is exactly {x : edges[b] <= x < edges[b + 1]}, whatever the rounding.
    b = int((x - lo) * inv)
    if b < 0:
        b = 0
    elif b > nb - 1:
        b = nb - 1
    while b > 0 and x < edges[b]:
        b -= 1
    while b < nb - 1 and x >= edges[b + 1]:
        b += 1
    return b


@numba.njit(cache=True)
def _cluster_histograms(X, w, labels, k, edges, hist_w, hist_n):
    n, d = X.shape
    nb = edges.shape[1] - 1
    for c in range(d):
        lo = edges[c, 0]
        width = edges[c, nb] - lo
        inv = nb / width if width > 0 else 0.0
        for i in range(n):
            j = labels[i]
            if j >= k:
                continue
            b = _bin_of(X[i, c], edges[c], lo, inv, nb)
            hist_w[j, c, b] += w[i]
            hist_n[j, c, b] += 1


def cluster_histograms(
    X: np.ndarray, w: np.ndarray, labels: np.ndarray, k: int, edges: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-cluster weight and count histograms of every coordinate.

    Parameters
    ----------
    X : np.ndarray, shape (n, d), float64
    w : np.ndarray, shape (n,), float64
    labels : np.ndarray, shape (n,), int64
        Rows with ``label >= k`` (fixed centres) are skipped.
    k : int
        Number of movable clusters.
    edges : np.ndarray, shape (d, B + 1), float64
        Non-decreasing bin edges per coordinate; bin ``b`` of coordinate ``c``
        is ``edges[c, b] <= x < edges[c, b + 1]``. Every value must lie in
        ``[edges[c, 0], edges[c, B])``.

    Returns
    -------
    hist_w : np.ndarray, shape (k, d, B), float64
        Weight per cluster, coordinate and bin (summed in row order).
    hist_n : np.ndarray, shape (k, d, B), int64
        Number of points per cluster, coordinate and bin.
    """
    d = X.shape[1]
    nb = edges.shape[1] - 1
    hist_w = np.zeros((k, d, nb), dtype=np.float64)
    hist_n = np.zeros((k, d, nb), dtype=np.int64)
    _cluster_histograms(
        np.ascontiguousarray(X, dtype=np.float64),
        np.ascontiguousarray(w, dtype=np.float64),
        labels,
        k,
        np.ascontiguousarray(edges, dtype=np.float64),
        hist_w,
        hist_n,
    )
    return hist_w, hist_n


@numba.njit(cache=True)
def _target_scan(
    X, w, labels, lut, ta, tb, edges, inv, gather, hw, hn, hmin, hmax, gcount
):
    # One pass over the rows for all targets. Target t = lut[j, c] is cluster
    # j, coordinate c, values in [ta[t], tb[t]); gathered targets are only
    # counted here, the others are sub-binned by edges[t].
    n, d = X.shape
    k = lut.shape[0]
    nb = edges.shape[1] - 1
    for i in range(n):
        j = labels[i]
        if j >= k:
            continue
        for c in range(d):
            t = lut[j, c]
            if t < 0:
                continue
            x = X[i, c]
            if x < ta[t] or x >= tb[t]:
                continue
            if gather[t]:
                gcount[t] += 1
                continue
            b = _bin_of(x, edges[t], edges[t, 0], inv[t], nb)
            hw[t, b] += w[i]
            hn[t, b] += 1
            hmin[t, b] = min(hmin[t, b], x)
            hmax[t, b] = max(hmax[t, b], x)


@numba.njit(cache=True)
def _target_gather(X, w, labels, lut, ta, tb, gather, start, vals, ws):
    n, d = X.shape
    k = lut.shape[0]
    fill = start.copy()
    for i in range(n):
        j = labels[i]
        if j >= k:
            continue
        for c in range(d):
            t = lut[j, c]
            if t < 0 or not gather[t]:
                continue
            x = X[i, c]
            if x < ta[t] or x >= tb[t]:
                continue
            vals[fill[t]] = x
            ws[fill[t]] = w[i]
            fill[t] += 1


def target_stats(
    X: np.ndarray,
    w: np.ndarray,
    labels: np.ndarray,
    lut: np.ndarray,
    ta: np.ndarray,
    tb: np.ndarray,
    edges: np.ndarray,
    gather: np.ndarray,
) -> dict:
    """Gather, or sub-histogram, the values inside each median's target interval.

    Parameters
    ----------
    X : np.ndarray, shape (n, d), float64
    w : np.ndarray, shape (n,), float64
    labels : np.ndarray, shape (n,), int64
    lut : np.ndarray, shape (k, d), int64
        Target index of (cluster, coordinate), or -1 for none.
    ta, tb : np.ndarray, shape (t,), float64
        Target interval ``[ta, tb)``.
    edges : np.ndarray, shape (t, B + 1), float64
        Sub-bin edges per target (``edges[t, 0] == ta[t]``, last ``== tb[t]``).
    gather : np.ndarray, shape (t,), bool
        Return the (value, weight) pairs of this target instead of histograms.

    Returns
    -------
    dict
        ``values``/``weights``: per target, the gathered pairs (empty when not
        gathered); ``hist_w``, ``hist_n``, ``hist_min``, ``hist_max`` of shape
        (t, B): weight, count, smallest and largest value per sub-bin.
    """
    X = np.ascontiguousarray(X, dtype=np.float64)
    w = np.ascontiguousarray(w, dtype=np.float64)
    nt, nb1 = edges.shape
    width = edges[:, -1] - edges[:, 0]
    inv = np.where(width > 0, (nb1 - 1) / np.where(width > 0, width, 1.0), 0.0)
    hw = np.zeros((nt, nb1 - 1))
    hn = np.zeros((nt, nb1 - 1), dtype=np.int64)
    hmin = np.full((nt, nb1 - 1), np.inf)
    hmax = np.full((nt, nb1 - 1), -np.inf)
    gcount = np.zeros(nt, dtype=np.int64)
    _target_scan(
        X,
        w,
        labels,
        lut,
        ta,
        tb,
        np.ascontiguousarray(edges),
        inv,
        gather,
        hw,
        hn,
        hmin,
        hmax,
        gcount,
    )
    start = np.concatenate([[0], np.cumsum(gcount)]).astype(np.int64)
    vals = np.empty(start[-1])
    ws = np.empty(start[-1])
    if start[-1]:
        _target_gather(X, w, labels, lut, ta, tb, gather, start[:-1], vals, ws)
    return {
        "values": [vals[start[t] : start[t + 1]] for t in range(nt)],
        "weights": [ws[start[t] : start[t + 1]] for t in range(nt)],
        "hist_w": hw,
        "hist_n": hn,
        "hist_min": hmin,
        "hist_max": hmax,
    }


# ---------------------------------------------------------------------------
# Local search
# ---------------------------------------------------------------------------


@_Kernel
def _swap_costs(X, w, labels, dist1, dist2, cands, k, base, corr):
    # Parallel over candidates (not rows) so that every sum runs in row order:
    # the result is bit-identical for any thread count.
    n, d = X.shape
    m = cands.shape[0]
    for t in numba.prange(m):
        acc = 0.0
        for i in range(n):
            s = 0.0
            for c in range(d):
                s += abs(X[i, c] - cands[t, c])
            d1 = dist1[i]
            keep = min(s, d1)
            acc += w[i] * keep
            j = labels[i]
            if j < k:
                d2 = dist2[i]
                alt = min(s, d2)
                corr[t, j] += w[i] * (alt - keep)
        base[t] = acc


def swap_costs(
    X: np.ndarray,
    w: np.ndarray,
    labels: np.ndarray,
    dist1: np.ndarray,
    dist2: np.ndarray,
    cands: np.ndarray,
    k: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Objective after swapping each movable centre for each candidate site.

    Parameters
    ----------
    X : np.ndarray, shape (n, d), float64
    w : np.ndarray, shape (n,), float64
    labels, dist1, dist2 : np.ndarray, shape (n,)
        Output of :func:`assign2_l1` for the current centres.
    cands : np.ndarray, shape (m, d), float64
        Candidate sites.
    k : int
        Number of movable centres (labels ``>= k`` are fixed centres).

    Returns
    -------
    base : np.ndarray, shape (m,), float64
        ``sum_i w_i min(d1_i, D(i, cand))``: the objective with the candidate
        added and nothing removed.
    corr : np.ndarray, shape (m, k), float64
        Extra cost of then removing movable centre ``j``:
        ``sum_{i: label_i = j} w_i (min(d2_i, D) - min(d1_i, D))``.

    Notes
    -----
    The objective after swapping centre ``j`` for candidate ``t`` is
    ``base[t] + corr[t, j]`` (the FastPAM1 decomposition), so all ``m k``
    swaps cost one O(n m d) pass. Both outputs are additive over row chunks.
    """
    m = cands.shape[0]
    base = np.zeros(m, dtype=np.float64)
    corr = np.zeros((m, k), dtype=np.float64)
    if m and X.shape[0]:
        _swap_costs(
            X.shape[0],
            np.ascontiguousarray(X, dtype=np.float64),
            np.ascontiguousarray(w, dtype=np.float64),
            labels,
            dist1,
            dist2,
            np.ascontiguousarray(cands, dtype=np.float64),
            k,
            base,
            corr,
        )
    return base, corr


# ---------------------------------------------------------------------------
# Assignment with carried bounds (Hamerly-style), for the in-memory loop
# ---------------------------------------------------------------------------


@_Kernel
def _assign_bounded(
    X,
    centers,
    order,
    key,
    axis,
    xe,
    ye,
    xlut,
    ylut,
    xinv,
    yinv,
    start,
    site,
    site_xy,
    floor,
    use_grid,
    labels,
    lower,
    movers,
    m1,
    i1,
    m2,
    exact,
    new_labels,
    new_dist,
    new_lower,
    kept,
):
    k = key.shape[0]
    d = X.shape[1]
    # The cell of a point (-1 outside the grid: the sorted-axis search). The
    # cell lookup is written out in each loop: as a helper function it ran
    # several times slower.
    xlo, xhi, ylo, yhi = xe[0], xe[xe.shape[0] - 1], ye[0], ye[ye.shape[0] - 1]
    ny = ye.shape[0] - 1
    for i in numba.prange(X.shape[0]):
        a = labels[i]
        u = 0.0
        for c in range(d):
            u += abs(X[i, c] - centers[a, c])
        # Triangle inequality (L1 is a metric): no centre outside `movers`
        # moved closer than the largest move among them, so the carried lower
        # bound minus that move bounds their distances; the few centres that
        # moved most are measured exactly instead. If u is below all of it,
        # centre a is the unique nearest one and nothing is searched.
        m = m2 if a == i1 else m1
        # The slack covers rounding in the distances the bound came from
        # (~1e-16 relative each), so that "u < lb" stays a proof.
        lb = lower[i] - m - 1e-10 * (lower[i] + m + u)
        for t in range(movers.shape[0]):
            j = movers[t]
            if j == a or u >= lb:
                continue
            dj = 0.0
            for c in range(d):
                dj += abs(X[i, c] - centers[j, c])
            lb = min(lb, dj)
        if u < lb:
            new_labels[i] = a
            new_dist[i] = u
            new_lower[i] = lb
            kept[i] = True
            continue
        g = -1
        if use_grid:
            x = X[i, 0]
            y = X[i, 1]
            if x >= xlo and x <= xhi and y >= ylo and y <= yhi:
                g = _bin_closed(x, xe, xlut, xinv) * ny + _bin_closed(y, ye, ylut, yinv)
        if g >= 0:
            best, best_j, second = _grid_scan(X, i, g, start, site, site_xy)
            if not exact:
                second = min(second, floor[g])
        else:
            best, best_j, second = _search(
                X, i, centers, order, key, axis, np.inf, k, np.inf, exact, True
            )
        new_labels[i] = best_j
        new_dist[i] = best
        new_lower[i] = second
        kept[i] = False


#: Centres whose distance the bounded assignment measures exactly instead of
#: bounding: one far move (a re-seed, a swap, an outlying cluster settling)
#: would otherwise weaken every point's bound by that whole move.
N_MOVERS = 8


def assign_bounded(
    X: np.ndarray,
    centers: np.ndarray,
    old_centers: np.ndarray,
    labels: np.ndarray,
    lower: np.ndarray,
    *,
    exact: bool = True,
    n_movers: int = N_MOVERS,
    return_kept: bool = False,
):
    """Exact L1 assignment that reuses the previous one where it provably holds.

    Parameters
    ----------
    X : np.ndarray, shape (n, d), float64
    centers : np.ndarray, shape (k, d), float64
        New centres.
    old_centers : np.ndarray, shape (k, d), float64
        Centres the previous ``labels`` / ``lower`` refer to (same order).
    labels : np.ndarray, shape (n,), int64
        Previous nearest centre.
    lower : np.ndarray, shape (n,), float64
        Lower bound of the previous distance to every centre but ``labels``.
    exact : bool, default True
        Searched points get their exact second-nearest distance as the new
        bound; False: a weaker bound found at the cost of a plain search.
    n_movers : int, default N_MOVERS
        The centres that moved most are measured exactly, not bounded.
    return_kept : bool, default False
        Also return which points kept their centre without a search.

    Returns
    -------
    labels, dist, lower : np.ndarray, shape (n,)
        Identical labels and distances to :func:`assign_l1` for ``centers``
        (ties to the lowest index), and the updated lower bounds.
    kept : np.ndarray, shape (n,), bool
        Only with ``return_kept``.

    Notes
    -----
    Hamerly's bound for K-Means carried over to L1: with ``delta_j`` the L1
    move of centre ``j``, ``D(x, c_j') >= lower - max_{j != a} delta_j``. A
    point whose exact distance to its own (moved) centre stays strictly below
    that bound keeps its centre after one distance evaluation; the rest get
    a full search. The max runs over all centres but the ``n_movers`` that
    moved most, whose distances are computed instead (O(n_movers d) per
    point). Late Lloyd iterations thus cost little more than O(n d).
    """
    X = np.ascontiguousarray(X, dtype=np.float64)
    centers = np.ascontiguousarray(centers, dtype=np.float64)
    delta = np.abs(centers - old_centers).sum(axis=1)
    top = np.argsort(-delta, kind="stable")
    n_movers = min(int(n_movers), max(0, top.shape[0] - 2))
    movers = np.ascontiguousarray(top[:n_movers], dtype=np.int64)
    rest = top[n_movers:]
    m1 = float(delta[rest[0]])
    i1 = int(rest[0])
    m2 = float(delta[rest[1]]) if rest.shape[0] > 1 else 0.0
    n = X.shape[0]
    new_labels = np.empty(n, dtype=np.int64)
    new_dist = np.empty(n, dtype=np.float64)
    new_lower = np.empty(n, dtype=np.float64)
    kept = np.empty(n, dtype=np.bool_)
    if n:
        order, key, axis, grid, use_grid = _prepare(X, centers, 2 if exact else 1)
        _assign_bounded(
            n,
            X,
            centers,
            order,
            key,
            axis,
            *grid,
            use_grid,
            labels,
            lower,
            movers,
            m1,
            i1,
            m2,
            bool(exact),
            new_labels,
            new_dist,
            new_lower,
            kept,
        )
    if return_kept:
        return new_labels, new_dist, new_lower, kept
    return new_labels, new_dist, new_lower
