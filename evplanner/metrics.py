"""Coverage and accessibility metrics for a network of charging sites.

Every function here is pure: arrays in, arrays/dataclasses/DataFrames out, no I/O.
Distances are in metres and every statistic is weighted by demand (the ``weight`` of
each demand point, e.g. the number of registered EVs at that location).

Two distance models are supported:

``"l1"`` (default)
    Manhattan distance ``|dx| + |dy|`` between points given in a projected CRS in
    metres (``x_m``, ``y_m``), the same distance that K-Medians minimises. It is a
    reasonable proxy for travel on a street grid.
``"great_circle"``
    Haversine distance on a sphere of radius :data:`EARTH_RADIUS_M`, between points
    given as ``lon``, ``lat`` in degrees (the straight-line "as the crow flies"
    distance).

Each demand point is served by its nearest site under the chosen distance. Sites are
the new sites (``sites``) followed by the existing ones (``fixed_sites``); the site
id of a site is its row in that concatenation.

Sections: validation, weighted statistics, assignment, coverage metrics, per-site
table, baseline comparison, sweep over k, comparison with K-Means.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from evplanner._kernels import assign_l1

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_RADII_M",
    "DEFAULT_RADIUS_M",
    "EARTH_RADIUS_M",
    "METRICS",
    "CoverageMetrics",
    "KMeansComparison",
    "NetworkComparison",
    "assign_to_sites",
    "baseline_metrics",
    "compare_kmeans",
    "compare_networks",
    "coverage_metrics",
    "haversine_m",
    "make_outliers",
    "site_table",
    "suggest_k",
    "sweep_k",
    "weighted_quantile",
]

#: Mean Earth radius (IUGG, metres) used for great-circle distances.
EARTH_RADIUS_M = 6_371_008.8

#: Default coverage radius: 5 km, roughly a 5-10 minute drive in a town.
DEFAULT_RADIUS_M = 5_000.0

#: Default radii of the coverage-vs-radius curve, metres.
DEFAULT_RADII_M = (
    500.0,
    1_000.0,
    2_000.0,
    3_000.0,
    5_000.0,
    8_000.0,
    10_000.0,
    15_000.0,
    20_000.0,
    30_000.0,
    50_000.0,
)

#: Supported distance models.
METRICS = ("l1", "great_circle")

# Rows per block of the great-circle assignment: its temporaries are a few arrays
# of this many rows (about 100 MiB), whatever the number of sites.
_BLOCK_ROWS = 1_000_000


# --------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------


def _check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    return metric


def _as_coords(values: Any, name: str, *, allow_empty: bool = False) -> np.ndarray:
    """Return ``values`` as a C-contiguous float64 array of shape (n, 2)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 1 and arr.size == 0:
        arr = arr.reshape(0, 2)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(
            f"{name} must have shape (n, 2) (x_m, y_m or lon, lat), got {arr.shape}"
        )
    if arr.shape[0] == 0 and not allow_empty:
        raise ValueError(f"{name} must contain at least one point, got 0 rows")
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name} must be finite; row {row} is {arr[row].tolist()} "
            f"({int(bad.sum())} non-finite rows)"
        )
    return np.ascontiguousarray(arr)


def _check_lonlat(arr: np.ndarray, name: str) -> None:
    # Projected metres passed by mistake would give meaningless distances silently.
    bad = (np.abs(arr[:, 0]) > 360.0) | (np.abs(arr[:, 1]) > 90.0)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name} must be lon, lat in degrees for metric='great_circle'; row {row} "
            f"is {arr[row].tolist()} (projected metres?)"
        )


def _as_weights(sample_weight: Any, n: int, name: str = "sample_weight") -> np.ndarray:
    """Return demand weights as float64 (n,), validated: finite, >= 0, sum > 0."""
    if sample_weight is None:
        return np.ones(n, dtype=np.float64)
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {w.shape}")
    bad = ~np.isfinite(w) | (w < 0)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name} must be finite and >= 0; row {row} is {float(w[row])!r} "
            f"({int(bad.sum())} bad values)"
        )
    if not w.sum() > 0:
        raise ValueError(f"{name} must have a positive sum, got {float(w.sum())!r}")
    return w


def _as_radii(radii_m: Any) -> np.ndarray:
    radii = np.asarray(DEFAULT_RADII_M if radii_m is None else radii_m, float)
    radii = np.atleast_1d(radii)
    if radii.ndim != 1 or radii.size == 0:
        raise ValueError(f"radii_m must be a non-empty 1-D sequence, got {radii_m!r}")
    if not (np.isfinite(radii).all() and (radii >= 0).all()):
        raise ValueError(f"radii_m must be finite and >= 0, got {radii.tolist()}")
    return np.unique(radii)


def _check_radius(radius_m: float) -> float:
    radius = float(radius_m)
    if not (math.isfinite(radius) and radius >= 0):
        raise ValueError(f"radius_m must be finite and >= 0, got {radius_m!r}")
    return radius


# --------------------------------------------------------------------------------------
# Weighted statistics
# --------------------------------------------------------------------------------------


def _sorted_cumulative(
    values: np.ndarray, weight: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Sort the positive-weight values; return them and their cumulative weights."""
    keep = weight > 0
    v = values[keep]
    w = weight[keep]
    order = np.argsort(v, kind="stable")
    return v[order], np.cumsum(w[order])


def _quantile_sorted(
    v_sorted: np.ndarray, cum_w: np.ndarray, q: np.ndarray
) -> np.ndarray:
    # Smallest value whose cumulative weight reaches q * total. The tolerance absorbs
    # rounding in the cumulative sum so that a target landing exactly on a step (for
    # example the median of an even number of unit weights) picks the lower value,
    # as the definition says.
    total = cum_w[-1]
    target = q * total - 1e-12 * total
    idx = np.searchsorted(cum_w, target, side="left")
    return v_sorted[np.minimum(idx, v_sorted.size - 1)]


def _share_within_sorted(
    v_sorted: np.ndarray, cum_w: np.ndarray, radii: np.ndarray
) -> np.ndarray:
    idx = np.searchsorted(v_sorted, radii, side="right")
    within = np.where(idx > 0, cum_w[np.maximum(idx - 1, 0)], 0.0)
    return within / cum_w[-1]


def weighted_quantile(
    values: Any, q: float | Sequence[float] | np.ndarray, sample_weight: Any = None
) -> float | np.ndarray:
    """Weighted quantile by the inverted empirical CDF.

    Parameters
    ----------
    values : array_like, shape (n,)
        Finite values (for example distances in metres).
    q : float or array_like
        Quantile level(s) in [0, 1].
    sample_weight : array_like, shape (n,), optional
        Non-negative weights with a positive sum; ``None`` means all ones.

    Returns
    -------
    float or numpy.ndarray
        ``Q(q) = min{v : W(v) >= q * W_total}``, where ``W(v)`` is the total weight of
        values ``<= v``. A float for scalar ``q``, else an array shaped like ``q``.

    Notes
    -----
    This is NumPy's ``method="inverted_cdf"``: with integer weights it equals
    ``np.quantile(np.repeat(values, weights), q, method="inverted_cdf")``. The result is
    always one of the values (no interpolation), so the median of an even number of
    equally weighted values is the lower middle value. Zero-weight values are ignored,
    so ``q=0`` gives the smallest and ``q=1`` the largest value of positive weight.
    Cost: one sort, O(n log n). Every quantile in :mod:`evplanner.metrics` uses this
    definition.

    Examples
    --------
    >>> weighted_quantile([1.0, 2.0, 3.0, 4.0], 0.5)
    2.0
    >>> weighted_quantile([1.0, 2.0, 3.0], 0.5, sample_weight=[1, 1, 5])
    3.0
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"values must be a non-empty 1-D array, got shape {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError("values must be finite")
    w = _as_weights(sample_weight, v.size)
    q_arr = np.asarray(q, dtype=np.float64)
    if not (np.isfinite(q_arr).all() and (q_arr >= 0).all() and (q_arr <= 1).all()):
        raise ValueError(f"q must be in [0, 1], got {q!r}")
    v_sorted, cum_w = _sorted_cumulative(v, w)
    out = _quantile_sorted(v_sorted, cum_w, q_arr)
    return float(out) if out.ndim == 0 else out


# --------------------------------------------------------------------------------------
# Assignment of demand to the nearest site
# --------------------------------------------------------------------------------------


def haversine_m(lon1: Any, lat1: Any, lon2: Any, lat2: Any) -> np.ndarray:
    """Great-circle distance in metres between points given in degrees.

    Parameters
    ----------
    lon1, lat1, lon2, lat2 : array_like
        Longitudes and latitudes in degrees (broadcast against each other).

    Returns
    -------
    numpy.ndarray
        Distance in metres on a sphere of radius :data:`EARTH_RADIUS_M`.

    Notes
    -----
    ``d = 2 R asin(sqrt(sin^2(dlat/2) + cos(lat1) cos(lat2) sin^2(dlon/2)))``, which is
    well conditioned for small distances. The spherical model is within about 0.5 % of
    the ellipsoidal (geodesic) distance.

    Examples
    --------
    >>> round(float(haversine_m(0.0, 0.0, 0.0, 1.0)))  # one degree of latitude
    111195
    """
    lon1, lat1, lon2, lat2 = (
        np.radians(np.asarray(a, dtype=np.float64)) for a in (lon1, lat1, lon2, lat2)
    )
    h = (
        np.sin((lat2 - lat1) / 2) ** 2
        + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


def _unit_vectors(lonlat: np.ndarray) -> np.ndarray:
    lon = np.radians(lonlat[:, 0])
    lat = np.radians(lonlat[:, 1])
    cos_lat = np.cos(lat)
    return np.column_stack([cos_lat * np.cos(lon), cos_lat * np.sin(lon), np.sin(lat)])


def _assign_great_circle(
    points: np.ndarray, sites: np.ndarray, block_rows: int
) -> tuple[np.ndarray, np.ndarray]:
    # The great-circle distance grows with the straight (chord) distance between
    # unit vectors on the sphere, so the nearest site in 3-D Euclidean distance is
    # the nearest site on the sphere. A k-d tree over the sites' unit vectors finds
    # it exactly in O(log k) per point (about 35 times faster than a blocked
    # n x k dot product at n = 1e6, k = 2,500) and needs no n x k matrix; rows are
    # queried in blocks so the temporaries stay O(block_rows). The reported
    # distance is then computed with the haversine formula for the chosen site.
    from scipy.spatial import cKDTree

    n = points.shape[0]
    tree = cKDTree(_unit_vectors(sites))
    labels = np.empty(n, dtype=np.int64)
    for start in range(0, n, block_rows):
        stop = min(start + block_rows, n)
        _, nearest = tree.query(_unit_vectors(points[start:stop]), workers=-1)
        labels[start:stop] = nearest
    chosen = sites[labels]
    dist = haversine_m(points[:, 0], points[:, 1], chosen[:, 0], chosen[:, 1])
    return labels, dist


def assign_to_sites(
    points: Any,
    sites: Any,
    *,
    metric: str = "l1",
    block_rows: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Assign each demand point to its nearest site.

    Parameters
    ----------
    points : array_like, shape (n, 2)
        Demand points: ``x_m, y_m`` (projected metres) for ``metric="l1"``, ``lon, lat``
        (degrees) for ``metric="great_circle"``.
    sites : array_like, shape (k, 2)
        Sites in the same coordinates, ``k >= 1``.
    metric : {"l1", "great_circle"}
        Distance model (see the module docstring).
    block_rows : int, optional
        Rows per block of the great-circle assignment (default 1,000,000), which
        bounds its temporary memory. Not used by ``"l1"``, whose compiled kernel
        needs O(n) memory anyway.

    Returns
    -------
    labels : numpy.ndarray of int64, shape (n,)
        Row of ``sites`` nearest to each point (ties go to the lowest row for
        ``"l1"``, to any of the tied sites for ``"great_circle"``).
    distance_m : numpy.ndarray of float64, shape (n,)
        Distance from each point to its site, metres.

    Examples
    --------
    >>> points_m = [[0.0, 0.0], [10.0, 5.0]]
    >>> labels, dist = assign_to_sites(points_m, [[0.0, 1.0], [9.0, 9.0]])
    >>> labels.tolist(), dist.tolist()
    ([0, 1], [1.0, 5.0])
    """
    _check_metric(metric)
    pts = _as_coords(points, "points")
    sts = _as_coords(sites, "sites")
    if block_rows is not None and int(block_rows) < 1:
        raise ValueError(f"block_rows must be >= 1, got {block_rows!r}")
    if metric == "l1":
        labels, dist = assign_l1(pts, sts)
        return np.asarray(labels, dtype=np.int64), np.asarray(dist, dtype=np.float64)
    _check_lonlat(pts, "points")
    _check_lonlat(sts, "sites")
    return _assign_great_circle(
        pts, sts, _BLOCK_ROWS if block_rows is None else int(block_rows)
    )


# --------------------------------------------------------------------------------------
# Coverage metrics
# --------------------------------------------------------------------------------------


def _py(value: Any) -> Any:
    """Convert NumPy scalars to plain Python (JSON) values; NaN becomes None."""
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, (np.bool_,)):
        return bool(value)
    return value


@dataclass(frozen=True, eq=False)
class CoverageMetrics:
    """Accessibility of weighted demand to a set of sites.

    Build it with :func:`coverage_metrics` (or :func:`baseline_metrics`); use
    :meth:`from_assignment` when the assignment is already known.

    Attributes
    ----------
    metric : str
        ``"l1"`` or ``"great_circle"``.
    distance_m : numpy.ndarray, shape (n,)
        Distance from each demand point to its site, metres.
    labels : numpy.ndarray of int64, shape (n,)
        Site id (row of ``sites``) serving each point.
    weight : numpy.ndarray, shape (n,)
        Demand weight of each point.
    sites : numpy.ndarray, shape (n_sites, 2)
        Site coordinates (``x_m, y_m`` for ``"l1"``, ``lon, lat`` for
        ``"great_circle"``): new sites first, then fixed (existing) sites.
    is_fixed : numpy.ndarray of bool, shape (n_sites,)
        True for existing (fixed) sites.
    radius_m : float
        Main coverage radius, metres.
    radii_m : numpy.ndarray, shape (r,)
        Radii of the coverage curve, ascending, metres.
    total_weight : float
        Sum of the weights (``W``).
    objective_m : float
        ``sum(w * d)``: the weighted sum of distances (the p-median objective), in
        metre-weight units (vehicle-metres when weights count vehicles).
    mean_distance_m, median_distance_m, p90_distance_m, max_distance_m : float
        Weighted mean ``objective_m / W`` and weighted quantiles 0.5, 0.9 and 1 of the
        distance (see :func:`weighted_quantile`; the max is over positive weights).
    coverage_share : float
        Share of demand weight with ``d <= radius_m``, in [0, 1].
    coverage_curve : numpy.ndarray, shape (r,)
        Share of demand weight with ``d <= radii_m[i]``; non-decreasing.
    site_weight : numpy.ndarray, shape (n_sites,)
        Demand weight served by each site (its load); sums to ``total_weight``.
    site_share : numpy.ndarray, shape (n_sites,)
        ``site_weight / total_weight``.
    site_n_points : numpy.ndarray of int64, shape (n_sites,)
        Number of demand rows assigned to each site.
    site_mean_distance_m, site_max_distance_m : numpy.ndarray, shape (n_sites,)
        Weighted mean and maximum distance of each site's demand (NaN for a site
        with no demand weight).
    load_max_over_mean : float
        Load imbalance ``max(site_weight) / mean(site_weight)`` over all sites, where
        ``mean = W / n_sites``; 1 is perfectly balanced, ``n_sites`` is all demand on
        one site.
    load_cv : float
        Coefficient of variation of the loads, ``std(site_weight) / mean`` (population
        standard deviation); 0 is perfectly balanced.

    Notes
    -----
    Zero-weight points are kept (they have a site and a distance) but contribute to no
    weighted statistic, including the maxima.
    """

    metric: str
    distance_m: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)
    weight: np.ndarray = field(repr=False)
    sites: np.ndarray = field(repr=False)
    is_fixed: np.ndarray = field(repr=False)
    radius_m: float
    radii_m: np.ndarray = field(repr=False)
    total_weight: float = field(init=False)
    objective_m: float = field(init=False)
    mean_distance_m: float = field(init=False)
    median_distance_m: float = field(init=False)
    p90_distance_m: float = field(init=False)
    max_distance_m: float = field(init=False)
    coverage_share: float = field(init=False)
    coverage_curve: np.ndarray = field(init=False, repr=False)
    site_weight: np.ndarray = field(init=False, repr=False)
    site_share: np.ndarray = field(init=False, repr=False)
    site_n_points: np.ndarray = field(init=False, repr=False)
    site_mean_distance_m: np.ndarray = field(init=False, repr=False)
    site_max_distance_m: np.ndarray = field(init=False, repr=False)
    load_max_over_mean: float = field(init=False)
    load_cv: float = field(init=False)

    def __post_init__(self) -> None:
        d, w, labels = self.distance_m, self.weight, self.labels
        n_sites = self.sites.shape[0]
        v_sorted, cum_w = _sorted_cumulative(d, w)
        total = float(cum_w[-1])
        objective = float(np.dot(w, d))
        median, p90, dmax = _quantile_sorted(v_sorted, cum_w, np.array([0.5, 0.9, 1.0]))
        curve = _share_within_sorted(v_sorted, cum_w, self.radii_m)
        main = _share_within_sorted(v_sorted, cum_w, np.array([self.radius_m]))[0]

        site_weight = np.bincount(labels, weights=w, minlength=n_sites)
        site_wd = np.bincount(labels, weights=w * d, minlength=n_sites)
        site_n = np.bincount(labels, minlength=n_sites).astype(np.int64)
        site_max = np.full(n_sites, -np.inf)
        pos = w > 0
        np.maximum.at(site_max, labels[pos], d[pos])
        served = site_weight > 0
        site_mean = np.full(n_sites, np.nan)
        site_mean[served] = site_wd[served] / site_weight[served]
        site_max[~served] = np.nan
        mean_load = total / n_sites

        values = {
            "total_weight": total,
            "objective_m": objective,
            "mean_distance_m": objective / total,
            "median_distance_m": float(median),
            "p90_distance_m": float(p90),
            "max_distance_m": float(dmax),
            "coverage_share": float(main),
            "coverage_curve": curve,
            "site_weight": site_weight,
            "site_share": site_weight / total,
            "site_n_points": site_n,
            "site_mean_distance_m": site_mean,
            "site_max_distance_m": site_max,
            "load_max_over_mean": float(site_weight.max() / mean_load),
            "load_cv": float(site_weight.std() / mean_load),
        }
        for name, value in values.items():
            # frozen dataclass: derived fields are set once, here
            object.__setattr__(self, name, value)

    @classmethod
    def from_assignment(
        cls,
        distance_m: Any,
        labels: Any,
        sites: Any,
        *,
        sample_weight: Any = None,
        is_fixed: Any = None,
        radius_m: float = DEFAULT_RADIUS_M,
        radii_m: Any = None,
        metric: str = "l1",
    ) -> CoverageMetrics:
        """Build metrics from a known assignment (for example a fitted model's labels).

        Parameters
        ----------
        distance_m : array_like, shape (n,)
            Distance of each point to its site, metres (finite, >= 0).
        labels : array_like of int, shape (n,)
            Site id of each point, in ``[0, n_sites)``.
        sites : array_like, shape (n_sites, 2)
            Site coordinates.
        sample_weight : array_like, shape (n,), optional
            Demand weights (default all ones).
        is_fixed : array_like of bool, shape (n_sites,), optional
            Which sites are existing ones (default none).
        radius_m, radii_m, metric
            As in :func:`coverage_metrics`.

        Returns
        -------
        CoverageMetrics
        """
        _check_metric(metric)
        sts = _as_coords(sites, "sites")
        d = np.asarray(distance_m, dtype=np.float64)
        if d.ndim != 1 or d.size == 0:
            raise ValueError(f"distance_m must be a non-empty 1-D array, got {d.shape}")
        if not (np.isfinite(d).all() and (d >= 0).all()):
            raise ValueError("distance_m must be finite and >= 0")
        lab = np.asarray(labels)
        if lab.shape != d.shape or not np.issubdtype(lab.dtype, np.integer):
            raise ValueError(
                f"labels must be integers of shape {d.shape}, "
                f"got {lab.dtype} {lab.shape}"
            )
        if lab.min() < 0 or lab.max() >= sts.shape[0]:
            raise ValueError(
                f"labels must be in [0, {sts.shape[0]}), got range "
                f"[{lab.min()}, {lab.max()}]"
            )
        fixed = (
            np.zeros(sts.shape[0], dtype=bool)
            if is_fixed is None
            else np.asarray(is_fixed, dtype=bool)
        )
        if fixed.shape != (sts.shape[0],):
            raise ValueError(
                f"is_fixed must have shape ({sts.shape[0]},), got {fixed.shape}"
            )
        return cls(
            metric=metric,
            distance_m=d,
            labels=lab.astype(np.int64, copy=False),
            weight=_as_weights(sample_weight, d.size),
            sites=sts,
            is_fixed=fixed,
            radius_m=_check_radius(radius_m),
            radii_m=_as_radii(radii_m),
        )

    @property
    def n_points(self) -> int:
        """Number of demand points (rows)."""
        return int(self.distance_m.size)

    @property
    def n_sites(self) -> int:
        """Number of sites, new and fixed."""
        return int(self.sites.shape[0])

    @property
    def n_fixed_sites(self) -> int:
        """Number of existing (fixed) sites."""
        return int(self.is_fixed.sum())

    @property
    def n_new_sites(self) -> int:
        """Number of new sites."""
        return self.n_sites - self.n_fixed_sites

    @property
    def n_empty_sites(self) -> int:
        """Number of sites that serve no demand weight."""
        return int((self.site_weight == 0).sum())

    def coverage_at(self, radius_m: float | Sequence[float]) -> float | np.ndarray:
        """Share of demand weight within ``radius_m`` (scalar or sequence) metres."""
        radii = np.asarray(radius_m, dtype=np.float64)
        v_sorted, cum_w = _sorted_cumulative(self.distance_m, self.weight)
        out = _share_within_sorted(v_sorted, cum_w, np.atleast_1d(radii))
        return float(out[0]) if radii.ndim == 0 else out

    def to_dict(self, *, include_sites: bool = False) -> dict[str, Any]:
        """Summary as plain JSON-serialisable Python values.

        Parameters
        ----------
        include_sites : bool
            Also include ``"sites"``: the records of :func:`site_table` (without
            lon/lat columns), one per site.

        Returns
        -------
        dict
            Keys: ``metric``, ``n_points``, ``n_sites``, ``n_new_sites``,
            ``n_fixed_sites``, ``n_empty_sites``, ``total_weight``, ``objective_m``,
            ``mean_distance_m``, ``median_distance_m``, ``p90_distance_m``,
            ``max_distance_m``, ``radius_m``, ``coverage_share``, ``coverage_curve``
            (list of ``{"radius_m", "share"}``), ``max_site_weight``,
            ``max_site_share``, ``load_max_over_mean``, ``load_cv`` (and ``sites``).
            Non-finite floats become ``None``.
        """
        out: dict[str, Any] = {
            "metric": self.metric,
            "n_points": self.n_points,
            "n_sites": self.n_sites,
            "n_new_sites": self.n_new_sites,
            "n_fixed_sites": self.n_fixed_sites,
            "n_empty_sites": self.n_empty_sites,
            "total_weight": self.total_weight,
            "objective_m": self.objective_m,
            "mean_distance_m": self.mean_distance_m,
            "median_distance_m": self.median_distance_m,
            "p90_distance_m": self.p90_distance_m,
            "max_distance_m": self.max_distance_m,
            "radius_m": self.radius_m,
            "coverage_share": self.coverage_share,
            "coverage_curve": [
                {"radius_m": _py(r), "share": _py(s)}
                for r, s in zip(self.radii_m, self.coverage_curve, strict=True)
            ],
            "max_site_weight": self.site_weight.max(),
            "max_site_share": self.site_share.max(),
            "load_max_over_mean": self.load_max_over_mean,
            "load_cv": self.load_cv,
        }
        out = {key: _py(value) for key, value in out.items()}
        if include_sites:
            table = site_table(self)
            out["sites"] = [
                {key: _py(value) for key, value in record.items()}
                for record in table.to_dict(orient="records")
            ]
        return out

    def summary_frame(self) -> pd.DataFrame:
        """The coverage curve as a DataFrame with columns ``radius_m``, ``share``."""
        return pd.DataFrame({"radius_m": self.radii_m, "share": self.coverage_curve})


def coverage_metrics(
    points: Any,
    sites: Any,
    *,
    sample_weight: Any = None,
    fixed_sites: Any = None,
    radius_m: float = DEFAULT_RADIUS_M,
    radii_m: Any = None,
    metric: str = "l1",
    block_rows: int | None = None,
) -> CoverageMetrics:
    """Coverage and accessibility of weighted demand served by the nearest site.

    Parameters
    ----------
    points : array_like, shape (n, 2)
        Demand points: ``x_m, y_m`` in a projected CRS (metres) for ``metric="l1"``,
        ``lon, lat`` in degrees for ``metric="great_circle"``.
    sites : array_like, shape (k, 2) or None
        New sites in the same coordinates (``None`` or an empty array: none).
    sample_weight : array_like, shape (n,), optional
        Demand weight of each point (for example vehicles); default all ones.
    fixed_sites : array_like, shape (m, 2), optional
        Existing sites (for example today's public stations), same coordinates.
        At least one new or fixed site is required.
    radius_m : float
        Main coverage radius in metres (default :data:`DEFAULT_RADIUS_M`).
    radii_m : sequence of float, optional
        Radii of the coverage curve in metres (default :data:`DEFAULT_RADII_M`).
    metric : {"l1", "great_circle"}
        Distance model (default L1, the distance K-Medians minimises).
    block_rows : int, optional
        Block size of the great-circle assignment (see :func:`assign_to_sites`).

    Returns
    -------
    CoverageMetrics
        Sites are numbered new first (ids ``0..k-1``), then fixed (``k..k+m-1``).

    Examples
    --------
    >>> m = coverage_metrics(
    ...     [[0.0, 0.0], [3.0, 4.0], [10.0, 0.0]], [[0.0, 0.0], [10.0, 1.0]],
    ...     sample_weight=[2.0, 1.0, 1.0], radius_m=5.0, radii_m=[1.0, 7.0],
    ... )
    >>> m.labels.tolist(), m.distance_m.tolist()
    ([0, 0, 1], [0.0, 7.0, 1.0])
    >>> m.objective_m, m.mean_distance_m, m.coverage_share
    (8.0, 2.0, 0.75)
    """
    _check_metric(metric)
    pts = _as_coords(points, "points")
    new = _as_coords(
        np.empty((0, 2)) if sites is None else sites, "sites", allow_empty=True
    )
    old = _as_coords(
        np.empty((0, 2)) if fixed_sites is None else fixed_sites,
        "fixed_sites",
        allow_empty=True,
    )
    all_sites = np.concatenate([new, old])
    if all_sites.shape[0] == 0:
        raise ValueError("at least one site is needed: sites and fixed_sites are empty")
    weight = _as_weights(sample_weight, pts.shape[0])
    radius = _check_radius(radius_m)
    radii = _as_radii(radii_m)
    labels, dist = assign_to_sites(pts, all_sites, metric=metric, block_rows=block_rows)
    is_fixed = np.zeros(all_sites.shape[0], dtype=bool)
    is_fixed[new.shape[0] :] = True
    metrics = CoverageMetrics(
        metric=metric,
        distance_m=dist,
        labels=labels,
        weight=weight,
        sites=all_sites,
        is_fixed=is_fixed,
        radius_m=radius,
        radii_m=radii,
    )
    logger.debug(
        "coverage: %d points, %d new + %d fixed sites, mean %.0f m, %.1f%% within %g m",
        pts.shape[0],
        new.shape[0],
        old.shape[0],
        metrics.mean_distance_m,
        100 * metrics.coverage_share,
        radius,
    )
    return metrics


def baseline_metrics(
    points: Any,
    existing_sites: Any,
    *,
    sample_weight: Any = None,
    radius_m: float = DEFAULT_RADIUS_M,
    radii_m: Any = None,
    metric: str = "l1",
    block_rows: int | None = None,
) -> CoverageMetrics:
    """Metrics of the existing network alone (k = 0 new sites): the baseline.

    Same parameters as :func:`coverage_metrics`, with ``existing_sites`` as the fixed
    sites and no new ones. Compare with a network that adds new sites through
    :func:`compare_networks`.

    Returns
    -------
    CoverageMetrics
        All sites fixed.

    Examples
    --------
    >>> points_m = [[0.0, 0.0], [3.0, 4.0], [10.0, 0.0]]
    >>> base = baseline_metrics(points_m, [[10.0, 1.0]], radius_m=5.0)
    >>> base.distance_m.tolist(), base.coverage_share
    ([11.0, 10.0, 1.0], 0.3333333333333333)
    """
    return coverage_metrics(
        points,
        None,
        sample_weight=sample_weight,
        fixed_sites=existing_sites,
        radius_m=radius_m,
        radii_m=radii_m,
        metric=metric,
        block_rows=block_rows,
    )


# --------------------------------------------------------------------------------------
# Per-site table
# --------------------------------------------------------------------------------------


def site_table(metrics: CoverageMetrics, *, crs: Any = None) -> pd.DataFrame:
    """One row per site: where it is, how much demand it serves and how far.

    Parameters
    ----------
    metrics : CoverageMetrics
        Result of :func:`coverage_metrics`.
    crs : pyproj.CRS or str, optional
        Projected CRS of the site coordinates. For ``"l1"`` metrics it adds ``lon`` and
        ``lat`` columns; for ``"great_circle"`` metrics (sites already in lon/lat) it
        adds ``x_m`` and ``y_m``.

    Returns
    -------
    pandas.DataFrame
        Columns ``site_id`` (int), ``x_m``, ``y_m`` (L1) and/or ``lon``, ``lat``,
        ``fixed`` (bool: existing site), ``weight`` (demand served, e.g. vehicles),
        ``share`` (of total demand), ``n_points``, ``mean_distance_m`` and
        ``max_distance_m`` (NaN for a site serving no demand).
    """
    data: dict[str, Any] = {"site_id": np.arange(metrics.n_sites, dtype=np.int64)}
    a, b = metrics.sites[:, 0], metrics.sites[:, 1]
    if metrics.metric == "l1":
        data["x_m"], data["y_m"] = a, b
        if crs is not None:
            from evplanner.projection import to_lonlat

            data["lon"], data["lat"] = to_lonlat(a, b, crs)
    else:
        data["lon"], data["lat"] = a, b
        if crs is not None:
            from evplanner.projection import to_metres

            data["x_m"], data["y_m"] = to_metres(a, b, crs)
    data.update(
        {
            "fixed": metrics.is_fixed,
            "weight": metrics.site_weight,
            "share": metrics.site_share,
            "n_points": metrics.site_n_points,
            "mean_distance_m": metrics.site_mean_distance_m,
            "max_distance_m": metrics.site_max_distance_m,
        }
    )
    return pd.DataFrame(data)


# --------------------------------------------------------------------------------------
# Baseline versus baseline + new sites
# --------------------------------------------------------------------------------------

_COMPARED = (
    "objective_m",
    "mean_distance_m",
    "median_distance_m",
    "p90_distance_m",
    "max_distance_m",
    "coverage_share",
)


@dataclass(frozen=True)
class NetworkComparison:
    """Baseline network versus the network with new sites, on the same demand.

    Attributes
    ----------
    baseline, improved : CoverageMetrics
        Metrics of the existing network and of existing + new sites.
    table : pandas.DataFrame
        Index: ``objective_m``, ``mean_distance_m``, ``median_distance_m``,
        ``p90_distance_m``, ``max_distance_m``, ``coverage_share``; columns
        ``baseline``, ``improved``, ``change`` (improved - baseline) and
        ``relative_change`` (change / baseline, NaN when the baseline is 0).
    """

    baseline: CoverageMetrics
    improved: CoverageMetrics
    table: pd.DataFrame

    @property
    def mean_distance_reduction_m(self) -> float:
        """Drop of the weighted mean distance, metres (positive = better)."""
        return self.baseline.mean_distance_m - self.improved.mean_distance_m

    @property
    def objective_reduction_share(self) -> float:
        """Relative drop of the objective, in [0, 1] (positive = better)."""
        return 1.0 - self.improved.objective_m / self.baseline.objective_m

    @property
    def coverage_share_gain(self) -> float:
        """Gain in the share of demand within ``radius_m`` (share points)."""
        return self.improved.coverage_share - self.baseline.coverage_share

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary.

        Returns
        -------
        dict
            ``radius_m``, ``n_new_sites``, ``mean_distance_reduction_m``,
            ``objective_reduction_share``, ``coverage_share_gain``, and ``baseline``,
            ``improved``, ``change``, ``relative_change``: each a dict keyed by
            ``objective_m``, ``mean_distance_m``, ``median_distance_m``,
            ``p90_distance_m``, ``max_distance_m``, ``coverage_share``.
        """
        out: dict[str, Any] = {
            "radius_m": _py(self.baseline.radius_m),
            "n_new_sites": self.improved.n_sites - self.baseline.n_sites,
            "mean_distance_reduction_m": _py(self.mean_distance_reduction_m),
            "objective_reduction_share": _py(self.objective_reduction_share),
            "coverage_share_gain": _py(self.coverage_share_gain),
        }
        for column in self.table.columns:
            out[column] = {k: _py(v) for k, v in self.table[column].items()}
        return out


def compare_networks(
    baseline: CoverageMetrics, improved: CoverageMetrics
) -> NetworkComparison:
    """Compare the existing network with existing + new sites on the same demand.

    Parameters
    ----------
    baseline : CoverageMetrics
        Usually from :func:`baseline_metrics`.
    improved : CoverageMetrics
        Usually from :func:`coverage_metrics` with the same points, weights, metric
        and radius, the new sites and ``fixed_sites`` = the existing ones.

    Returns
    -------
    NetworkComparison

    Raises
    ------
    ValueError
        If the two were computed on different demand, metric or radius.

    Notes
    -----
    When ``improved`` contains every baseline site, each point's nearest site can only
    get closer, so every distance statistic falls or stays and coverage rises or stays.

    Examples
    --------
    >>> points_m, existing = [[0.0, 0.0], [3.0, 4.0], [10.0, 0.0]], [[10.0, 1.0]]
    >>> base = baseline_metrics(points_m, existing, radius_m=5.0)
    >>> new = coverage_metrics(
    ...     points_m, [[0.0, 0.0]], fixed_sites=existing, radius_m=5.0
    ... )
    >>> cmp = compare_networks(base, new)
    >>> round(cmp.mean_distance_reduction_m, 3), round(cmp.coverage_share_gain, 3)
    (4.667, 0.333)
    >>> cmp.table.loc["objective_m"].tolist()
    [22.0, 8.0, -14.0, -0.6363636363636364]
    """
    if baseline.metric != improved.metric:
        raise ValueError(
            f"metric differs: baseline {baseline.metric!r}, "
            f"improved {improved.metric!r}"
        )
    if baseline.n_points != improved.n_points or not np.array_equal(
        baseline.weight, improved.weight
    ):
        raise ValueError(
            "baseline and improved must be computed on the same demand points and "
            f"weights (n_points {baseline.n_points} vs {improved.n_points})"
        )
    if baseline.radius_m != improved.radius_m:
        raise ValueError(
            f"radius_m differs: baseline {baseline.radius_m}, "
            f"improved {improved.radius_m}"
        )
    before = np.array([getattr(baseline, name) for name in _COMPARED])
    after = np.array([getattr(improved, name) for name in _COMPARED])
    change = after - before
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = np.where(
            before != 0, change / np.where(before != 0, before, 1), np.nan
        )
    table = pd.DataFrame(
        {
            "baseline": before,
            "improved": after,
            "change": change,
            "relative_change": relative,
        },
        index=pd.Index(_COMPARED, name="metric"),
    )
    return NetworkComparison(baseline=baseline, improved=improved, table=table)


# --------------------------------------------------------------------------------------
# Sweep over k
# --------------------------------------------------------------------------------------


def sweep_k(
    points_m: Any,
    ks: Sequence[int],
    *,
    sample_weight: Any = None,
    fixed_sites_m: Any = None,
    radius_m: float = DEFAULT_RADIUS_M,
    random_state: int | None = 0,
    **kmedians_params: Any,
) -> pd.DataFrame:
    """Fit K-Medians for each number of new sites and tabulate objective and coverage.

    Parameters
    ----------
    points_m : array_like, shape (n, 2)
        Demand points in projected metres (``x_m, y_m``).
    ks : sequence of int
        Numbers of new sites to try. ``0`` is allowed when ``fixed_sites_m`` is given
        (the baseline).
    sample_weight : array_like, shape (n,), optional
        Demand weights.
    fixed_sites_m : array_like, shape (m, 2), optional
        Existing sites, kept fixed and counted in the assignment.
    radius_m : float
        Coverage radius, metres.
    random_state : int or None
        Seed passed to every fit, so that rows differ only by k.
    **kmedians_params
        Further :class:`evplanner.kmedians.KMedians` parameters (``n_init``,
        ``max_iter``, ``tol``, ...).

    Returns
    -------
    pandas.DataFrame
        One row per k (ascending): ``k`` (new sites), ``n_sites`` (new + fixed),
        ``objective_m``, ``mean_distance_m``, ``median_distance_m``,
        ``p90_distance_m``, ``max_distance_m``, ``coverage_share``,
        ``load_max_over_mean``, ``load_cv``, ``objective_drop`` (relative drop of the
        objective from the previous row, NaN on the first), ``n_iter`` (0 for k = 0)
        and ``fit_seconds``. The objective is recomputed by nearest-site assignment,
        so it is comparable across rows.
    """
    from evplanner.kmedians import KMedians

    pts = _as_coords(points_m, "points_m")
    weight = _as_weights(sample_weight, pts.shape[0])
    fixed = (
        None
        if fixed_sites_m is None
        else _as_coords(fixed_sites_m, "fixed_sites_m", allow_empty=True)
    )
    n_fixed = 0 if fixed is None else fixed.shape[0]
    k_values = sorted({int(k) for k in ks})
    if not k_values:
        raise ValueError("ks must contain at least one value")
    if k_values[0] < 0 or (k_values[0] == 0 and n_fixed == 0):
        raise ValueError(
            f"ks must be >= 1 (or >= 0 with fixed sites), got {list(ks)!r}"
        )
    rows = []
    previous = math.nan
    for k in k_values:
        start = time.perf_counter()
        if k == 0:
            centers, n_iter = np.empty((0, 2)), 0
        else:
            params = dict(kmedians_params)
            if fixed is not None and n_fixed:
                params["fixed_centers"] = fixed
            model = KMedians(n_clusters=k, random_state=random_state, **params)
            model.fit(pts, sample_weight=weight)
            # cluster_centers_ holds the new (moving) centres only
            centers = np.asarray(model.cluster_centers_, dtype=np.float64)
            n_iter = int(model.n_iter_)
        seconds = time.perf_counter() - start
        m = coverage_metrics(
            pts,
            centers,
            sample_weight=weight,
            fixed_sites=fixed,
            radius_m=radius_m,
            radii_m=[radius_m],
        )
        rows.append(
            {
                "k": k,
                "n_sites": m.n_sites,
                "objective_m": m.objective_m,
                "mean_distance_m": m.mean_distance_m,
                "median_distance_m": m.median_distance_m,
                "p90_distance_m": m.p90_distance_m,
                "max_distance_m": m.max_distance_m,
                "coverage_share": m.coverage_share,
                "load_max_over_mean": m.load_max_over_mean,
                "load_cv": m.load_cv,
                "objective_drop": (
                    1.0 - m.objective_m / previous if previous > 0 else math.nan
                ),
                "n_iter": n_iter,
                "fit_seconds": seconds,
            }
        )
        previous = m.objective_m
        logger.info(
            "sweep k=%d: objective %.4g, coverage %.3f (%.2f s)",
            k,
            m.objective_m,
            m.coverage_share,
            seconds,
        )
    return pd.DataFrame(rows)


def suggest_k(sweep: pd.DataFrame, column: str = "objective_m") -> int:
    """Elbow of a sweep: the k farthest below the chord of the log-objective curve.

    Parameters
    ----------
    sweep : pandas.DataFrame
        Output of :func:`sweep_k` (columns ``k`` and ``column``), at least 3 rows.
    column : str
        Decreasing, positive quantity to find the elbow of.

    Returns
    -------
    int
        The suggested k.

    Notes
    -----
    With ``y = log(objective)`` (so that equal relative drops count equally, like
    the ``objective_drop`` column), both axes are scaled to [0, 1] and a chord joins
    the first and the last point; the elbow is the point farthest below the chord
    (the "kneedle" rule). On the raw objective the chord rule favours too small a k
    whenever the tail still falls steadily. If some value is not positive the raw
    values are used. It is a heuristic starting point, not an optimum: planners
    should also read coverage and cost.

    Examples
    --------
    >>> sweep = pd.DataFrame({"k": [1, 2, 3, 4, 5], "objective_m": [10, 4, 3, 2.5, 2]})
    >>> suggest_k(sweep)
    2
    """
    if len(sweep) < 3:
        raise ValueError(f"suggest_k needs at least 3 rows, got {len(sweep)}")
    ordered = sweep.sort_values("k")
    k = ordered["k"].to_numpy(dtype=np.float64)
    y = ordered[column].to_numpy(dtype=np.float64)
    if (y > 0).all():
        y = np.log(y)
    k_span = k[-1] - k[0]
    y_span = y[0] - y[-1]
    if not (k_span > 0 and y_span > 0):
        return int(k[0])
    kn = (k - k[0]) / k_span
    yn = (y - y[-1]) / y_span
    below_chord = (1.0 - kn) - yn
    return int(k[int(np.argmax(below_chord))])


# --------------------------------------------------------------------------------------
# Comparison with K-Means (robustness to outliers)
# --------------------------------------------------------------------------------------


def make_outliers(
    points_m: Any,
    n_outliers: int = 5,
    *,
    sample_weight: Any = None,
    weight_share: float = 0.002,
    distance_factor: float = 1.0,
    random_state: int | None = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Far demand outliers around a point set, for robustness checks.

    Parameters
    ----------
    points_m : array_like, shape (n, 2)
        Demand points, metres.
    n_outliers : int
        Number of outliers.
    sample_weight : array_like, shape (n,), optional
        Demand weights of ``points_m``.
    weight_share : float
        Total outlier weight as a share of the demand weight (split equally). The
        default 0.2 % is about the share of out-of-state registrations (338 of
        150,475 located vehicles) in the Washington DOL file.
    distance_factor : float
        Each outlier lies at L1 distance ``(1 + distance_factor) * extent`` from the
        weighted (per-coordinate) median of the demand, in a random direction, where
        ``extent`` is the largest L1 distance of a demand point from that median: so
        ``distance_factor * extent`` beyond the farthest demand.
    random_state : int or None
        Seed of the directions.

    Returns
    -------
    outliers_m : numpy.ndarray, shape (n_outliers, 2)
    outlier_weight : numpy.ndarray, shape (n_outliers,)
    """
    pts = _as_coords(points_m, "points_m")
    weight = _as_weights(sample_weight, pts.shape[0])
    if int(n_outliers) < 1:
        raise ValueError(f"n_outliers must be >= 1, got {n_outliers!r}")
    if not weight_share > 0:
        raise ValueError(f"weight_share must be > 0, got {weight_share!r}")
    if not distance_factor > 0:
        raise ValueError(f"distance_factor must be > 0, got {distance_factor!r}")
    centre = np.array(
        [weighted_quantile(pts[:, j], 0.5, weight) for j in range(2)], dtype=np.float64
    )
    extent = float(np.abs(pts - centre).sum(axis=1).max()) or 1.0
    rng = np.random.default_rng(random_state)
    angle = rng.uniform(0.0, 2.0 * np.pi, int(n_outliers))
    direction = np.column_stack([np.cos(angle), np.sin(angle)])
    # scale each direction to unit L1 length so the L1 distance is exactly as stated
    direction /= np.abs(direction).sum(axis=1, keepdims=True)
    outliers = centre + (1.0 + distance_factor) * extent * direction
    outlier_weight = np.full(
        int(n_outliers), weight_share * weight.sum() / int(n_outliers)
    )
    return outliers, outlier_weight


def _matched_shift_m(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """L1 shift of each centre under the pairing that minimises the total shift."""
    from scipy.optimize import linear_sum_assignment

    cost = np.abs(before[:, None, :] - after[None, :, :]).sum(axis=2)
    rows, cols = linear_sum_assignment(cost)
    return cost[rows, cols]


@dataclass(frozen=True)
class KMeansComparison:
    """K-Medians versus scikit-learn K-Means, judged by L1 access to demand.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per (``method`` in {"kmedians", "kmeans"}, ``scenario`` in {"clean",
        "outliers"}): ``objective_m`` (weighted L1 objective on the original demand
        only), ``mean_distance_m``, ``p90_distance_m``, ``coverage_share`` (all on the
        original demand), ``objective_all_m`` (objective on the demand including the
        outliers), ``shift_mean_m`` and ``shift_max_m`` (L1 movement of the centres
        from the clean fit, centres paired to minimise the total movement; 0 for
        "clean"), ``n_centers_on_outliers`` (centres whose nearest demand point is
        an outlier) and ``fit_seconds``.
    centers : dict
        ``(method, scenario) -> ndarray (k, 2)`` fitted centres, metres.
    outliers_m : numpy.ndarray, shape (n_outliers, 2)
    outlier_weight : numpy.ndarray, shape (n_outliers,)
    n_clusters : int
    radius_m : float
    """

    table: pd.DataFrame
    centers: dict[tuple[str, str], np.ndarray]
    outliers_m: np.ndarray
    outlier_weight: np.ndarray
    n_clusters: int
    radius_m: float

    def row(self, method: str, scenario: str) -> pd.Series:
        """The table row for ``method`` and ``scenario``."""
        t = self.table
        return t[(t["method"] == method) & (t["scenario"] == scenario)].iloc[0]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form: parameters and the table as a list of records."""
        return {
            "n_clusters": self.n_clusters,
            "radius_m": _py(self.radius_m),
            "n_outliers": int(self.outliers_m.shape[0]),
            "outlier_weight": _py(self.outlier_weight.sum()),
            "rows": [
                {key: _py(value) for key, value in record.items()}
                for record in self.table.to_dict(orient="records")
            ],
        }


def compare_kmeans(
    points_m: Any,
    n_clusters: int,
    *,
    sample_weight: Any = None,
    outliers_m: Any = None,
    outlier_weight: Any = None,
    radius_m: float = DEFAULT_RADIUS_M,
    n_init: int = 10,
    random_state: int | None = 0,
) -> KMeansComparison:
    """Compare K-Medians with K-Means on the same demand, with and without outliers.

    Both methods are fitted on the demand ("clean") and on the demand plus far
    outliers ("outliers"), with the same ``n_init`` and seed. Every fit is judged by
    the weighted L1 objective and the coverage it gives the original demand (the
    outliers are a disturbance, not demand to plan for), and by how far its centres
    move when the outliers are added.

    Parameters
    ----------
    points_m : array_like, shape (n, 2)
        Demand points in projected metres.
    n_clusters : int
        Number of sites k.
    sample_weight : array_like, shape (n,), optional
        Demand weights.
    outliers_m : array_like, shape (o, 2), optional
        Outlier points; default :func:`make_outliers` with its defaults.
    outlier_weight : array_like, shape (o,), optional
        Their weights (default: from :func:`make_outliers`, or 1 each when
        ``outliers_m`` is given).
    radius_m : float
        Coverage radius, metres.
    n_init : int
        Restarts of both methods.
    random_state : int or None
        Seed of both methods (and of the default outliers).

    Returns
    -------
    KMeansComparison

    Notes
    -----
    K-Means minimises squared Euclidean distance, so its centres are weighted means:
    a far point pulls a mean in proportion to its distance, while a weighted median
    does not move once the point is on one side. That is the robustness the original
    project claimed for K-Medians; this function measures it instead of assuming it.

    What it showed on seeded test instances (5 Gaussian blobs of 200 weighted points,
    5 km spread, k = 5, 5 outliers with 1 % of the weight): with the outliers one
    extent beyond the demand, K-Medians centres moved about 0.1 km and K-Means
    centres 1-50 km (sometimes one went to the outliers); at 2-8 extents K-Means
    always sent 1-3 centres to the outliers and K-Medians none. K-Medians is not
    immune: at 16 extents the linear L1 cost of serving the outliers from the demand
    also justified a centre of its own in 3 of 4 instances. Coverage within a radius
    is not systematically better for either method.

    On the bundled Washington demand (537 locations) with the default outliers
    (about 1,000 km out), K-Medians sent no centre to them for k <= 10 and K-Means
    3 at k = 10; at k = 20 it was 1 against 4, and at k = 40 K-Medians sent 4 and
    K-Means 4-5 with a similar loss of objective: with many sites the marginal site
    is worth little, so even the L1 objective pays for serving far demand. With the
    real out-of-state registrations as outliers (k = 10) it was 1 centre against 4
    and +8 % against +42 % L1 objective on the Washington demand.
    """
    from sklearn.cluster import KMeans

    from evplanner.kmedians import KMedians

    pts = _as_coords(points_m, "points_m")
    weight = _as_weights(sample_weight, pts.shape[0])
    if outliers_m is None:
        out_pts, out_w = make_outliers(
            pts, sample_weight=weight, random_state=random_state
        )
        if outlier_weight is not None:
            out_w = _as_weights(outlier_weight, out_pts.shape[0], "outlier_weight")
    else:
        out_pts = _as_coords(outliers_m, "outliers_m")
        out_w = _as_weights(outlier_weight, out_pts.shape[0], "outlier_weight")
    all_pts = np.concatenate([pts, out_pts])
    all_w = np.concatenate([weight, out_w])
    is_outlier = np.zeros(all_pts.shape[0], dtype=bool)
    is_outlier[pts.shape[0] :] = True

    makers = {
        "kmedians": lambda: KMedians(
            n_clusters=n_clusters, n_init=n_init, random_state=random_state
        ),
        "kmeans": lambda: KMeans(
            n_clusters=n_clusters, n_init=n_init, random_state=random_state
        ),
    }
    data = {"clean": (pts, weight), "outliers": (all_pts, all_w)}
    centers: dict[tuple[str, str], np.ndarray] = {}
    rows = []
    for method, make in makers.items():
        for scenario, (X, w) in data.items():
            start = time.perf_counter()
            model = make().fit(X, sample_weight=w)
            seconds = time.perf_counter() - start
            c = np.asarray(model.cluster_centers_, dtype=np.float64)
            centers[(method, scenario)] = c
            on_demand = coverage_metrics(
                pts, c, sample_weight=weight, radius_m=radius_m, radii_m=[radius_m]
            )
            on_all = coverage_metrics(
                all_pts, c, sample_weight=all_w, radius_m=radius_m, radii_m=[radius_m]
            )
            shift = _matched_shift_m(centers[(method, "clean")], c)
            # a centre "sits on" the outliers when its nearest demand point is one
            nearest, _ = assign_to_sites(c, all_pts)
            rows.append(
                {
                    "method": method,
                    "scenario": scenario,
                    "objective_m": on_demand.objective_m,
                    "mean_distance_m": on_demand.mean_distance_m,
                    "p90_distance_m": on_demand.p90_distance_m,
                    "coverage_share": on_demand.coverage_share,
                    "objective_all_m": on_all.objective_m,
                    "shift_mean_m": float(shift.mean()),
                    "shift_max_m": float(shift.max()),
                    "n_centers_on_outliers": int(is_outlier[nearest].sum()),
                    "fit_seconds": seconds,
                }
            )
            logger.info(
                "%s/%s: L1 objective %.4g, mean shift %.0f m",
                method,
                scenario,
                on_demand.objective_m,
                shift.mean(),
            )
    return KMeansComparison(
        table=pd.DataFrame(rows),
        centers=centers,
        outliers_m=out_pts,
        outlier_weight=out_w,
        n_clusters=int(n_clusters),
        radius_m=_check_radius(radius_m),
    )
