"""Coverage and access metrics of demand served by its nearest site (L1, metres).

Everything here is a pure function of arrays. Distances are Manhattan (L1) distances
between points in a projected CRS in metres, the distance K-Medians minimises; every
statistic is weighted by demand (the ``weight`` of each demand point, for example the
vehicles registered there).

One function computes coverage, for NumPy and Dask alike: :func:`coverage_partials`
summarises one block of demand points in O(sites + radii + bins) numbers, the
partials of several blocks add up (:func:`combine_coverage`), and :func:`coverage`
runs it on a NumPy array (one block) or on each chunk of a Dask array (a tree
reduction, computed once) and turns the sums into a :class:`Coverage`. Both paths
give the same numbers (sums in a different order agree to rounding).

Sites are the new sites followed by the existing ones; a site's id is its row in
that order.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from evplanner._json import json_ready
from evplanner._kernels import assign_l1

logger = logging.getLogger(__name__)

__all__ = [
    "CURVE_RADII_M",
    "DEFAULT_RADIUS_M",
    "HISTOGRAM_BIN_M",
    "Coverage",
    "combine_coverage",
    "compare_networks",
    "coverage",
    "coverage_partials",
    "weighted_quantile",
]

#: Default coverage radius: 5 km, roughly a 5-10 minute drive in a town.
DEFAULT_RADIUS_M = 5_000.0

#: Radii of the coverage-vs-radius curve, metres (the plan's own radius is added).
CURVE_RADII_M = (
    500.0, 1_000.0, 2_000.0, 3_000.0, 5_000.0, 7_500.0, 10_000.0, 15_000.0,
    20_000.0, 30_000.0, 50_000.0, 75_000.0, 100_000.0,
)  # fmt: skip

#: Width of the distance histogram's bins, metres; quantiles of the distance are
#: read off it to this resolution.
HISTOGRAM_BIN_M = 100.0
#: Bins of the distance histogram; the last one also holds everything farther.
HISTOGRAM_BINS = 2_000


# --------------------------------------------------------------------------------------
# Weighted statistics
# --------------------------------------------------------------------------------------


def weighted_quantile(
    values: Any, q: float | Sequence[float] | np.ndarray, sample_weight: Any = None
) -> float | np.ndarray:
    """Weighted quantile by the inverted empirical CDF.

    The ``q`` quantile is the smallest value ``v`` with ``W(x <= v) >= q * W``; for
    ``q = 0.5`` that is the lower weighted median, the value K-Medians moves a centre
    to. Zero-weight values are ignored.

    Parameters
    ----------
    values : array_like, shape (n,)
    q : float or array_like in [0, 1]
    sample_weight : array_like, shape (n,), optional
        Non-negative weights with a positive sum (default all ones).

    Returns
    -------
    float or numpy.ndarray
        One value per ``q``.

    Examples
    --------
    >>> weighted_quantile([1.0, 2.0, 3.0, 4.0], 0.5)
    2.0
    >>> weighted_quantile([1.0, 2.0, 3.0], 0.5, sample_weight=[1.0, 1.0, 5.0])
    3.0
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"values must be a non-empty 1-D array, got shape {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError("values must be finite")
    w = (np.ones_like(v) if sample_weight is None
         else np.asarray(sample_weight, dtype=np.float64))  # fmt: skip
    if w.shape != v.shape:
        raise ValueError(f"sample_weight must have shape {v.shape}, got {w.shape}")
    if not (np.isfinite(w).all() and (w >= 0).all() and w.sum() > 0):
        raise ValueError("sample_weight must be finite, >= 0 and have a positive sum")
    qs = np.asarray(q, dtype=np.float64)
    if not ((qs >= 0) & (qs <= 1)).all():
        raise ValueError(f"q must be in [0, 1], got {q!r}")
    keep = w > 0
    order = np.argsort(v[keep], kind="stable")
    v_sorted, cum = v[keep][order], np.cumsum(w[keep][order])
    # The tolerance absorbs rounding in the cumulative sum, so that a target landing
    # exactly on a step (the median of an even count of unit weights) picks the
    # lower value, as the definition says.
    target = qs * cum[-1] - 1e-12 * cum[-1]
    idx = np.minimum(np.searchsorted(cum, target, side="left"), v_sorted.size - 1)
    out = v_sorted[idx]
    return float(out) if qs.ndim == 0 else out


# --------------------------------------------------------------------------------------
# Chunk-additive coverage
# --------------------------------------------------------------------------------------


def coverage_partials(
    X: np.ndarray,
    weight: np.ndarray,
    sites_m: np.ndarray,
    radii_m: np.ndarray,
    vehicles: np.ndarray | None = None,
) -> dict[str, Any]:
    """Coverage sums of one block of demand points (all sizes O(sites + radii)).

    Parameters
    ----------
    X : numpy.ndarray, shape (n, 2)
        Demand points, metres.
    weight : numpy.ndarray, shape (n,)
        Demand weight of each point.
    sites_m : numpy.ndarray, shape (s, 2)
        Sites, metres (new, then existing).
    radii_m : numpy.ndarray, shape (r,)
        Radii at which the covered weight is summed, ascending.
    vehicles : numpy.ndarray, shape (n,), optional
        Vehicles at each point (default: the weight).

    Returns
    -------
    dict
        ``n``, ``total_weight``, ``total_vehicles``, ``objective_m`` (sum of weight x
        distance), ``max_distance_m`` (over positive weights; -inf when none),
        ``covered`` (r,), ``histogram`` (:data:`HISTOGRAM_BINS`,), and per site (s,):
        ``site_weight``, ``site_vehicles``, ``site_weight_m``, ``site_n``,
        ``site_max_m``. Add blocks with :func:`combine_coverage`.
    """
    X = np.ascontiguousarray(X, dtype=np.float64)
    w = np.asarray(weight, dtype=np.float64)
    v = w if vehicles is None else np.asarray(vehicles, dtype=np.float64)
    s = sites_m.shape[0]
    labels, dist = assign_l1(X, np.ascontiguousarray(sites_m, dtype=np.float64))
    pos = w > 0
    site_max = np.full(s, -np.inf)
    np.maximum.at(site_max, labels[pos], dist[pos])
    # Covered weight at each radius from one sort of the block's distances.
    order = np.argsort(dist, kind="stable")
    cum = np.concatenate([[0.0], np.cumsum(w[order])])
    covered = cum[np.searchsorted(dist[order], radii_m, side="right")]
    bins = np.minimum((dist / HISTOGRAM_BIN_M).astype(np.int64), HISTOGRAM_BINS - 1)
    return {
        "n": int(X.shape[0]),
        "total_weight": float(w.sum()),
        "total_vehicles": float(v.sum()),
        "objective_m": float(np.dot(w, dist)),
        "max_distance_m": float(dist[pos].max()) if pos.any() else -math.inf,
        "covered": covered,
        "histogram": np.bincount(bins, weights=w, minlength=HISTOGRAM_BINS),
        "site_weight": np.bincount(labels, weights=w, minlength=s),
        "site_vehicles": np.bincount(labels, weights=v, minlength=s),
        "site_weight_m": np.bincount(labels, weights=w * dist, minlength=s),
        "site_n": np.bincount(labels, minlength=s).astype(np.int64),
        "site_max_m": site_max,
    }


_MAXIMA = ("max_distance_m", "site_max_m")


def combine_coverage(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Sum of the :func:`coverage_partials` of two blocks (maxima by maximum)."""
    return {
        key: np.maximum(a[key], b[key]) if key in _MAXIMA else a[key] + b[key]
        for key in a
    }


@dataclass(frozen=True)
class Coverage:
    """How well a set of sites serves the demand, each point by its nearest site.

    Build it with :func:`coverage`.

    Attributes
    ----------
    n_points : int
        Demand points (rows).
    n_new_sites, n_existing_sites : int
        Sites are the new ones (ids ``0..n_new_sites-1``), then the existing ones.
    radius_m : float
        Coverage radius, metres.
    total_weight, total_vehicles : float
        Sum of the demand weight, and of the vehicles, of all points.
    objective_m : float
        ``sum(w * d)``: the p-median objective, in weight-metres (vehicle-metres
        when the weight counts vehicles).
    mean_distance_m : float
        ``objective_m / total_weight``.
    median_distance_m, p90_distance_m : float
        Weighted quantiles of the distance, read off the distance histogram: the
        upper edge of the :data:`HISTOGRAM_BIN_M`-wide bin holding the quantile.
    max_distance_m : float
        Largest distance of a point with positive weight.
    coverage_share : float
        Share of the weight within ``radius_m`` of its site, in [0, 1].
    radii_m, coverage_curve : numpy.ndarray, shape (r,)
        Share of the weight within each radius (non-decreasing).
    histogram_weight : numpy.ndarray, shape (HISTOGRAM_BINS,)
        Weight at each distance, in bins of :data:`HISTOGRAM_BIN_M` metres (the last
        bin also holds everything farther).
    site_weight, site_vehicles : numpy.ndarray, shape (n_sites,)
        Demand weight and vehicles served by each site (its load).
    site_n_points : numpy.ndarray of int64, shape (n_sites,)
    site_mean_distance_m, site_max_distance_m : numpy.ndarray, shape (n_sites,)
        Weighted mean and largest distance of each site's demand (NaN for a site
        serving no weight).
    labels, distance_m : numpy.ndarray, shape (n_points,), or None
        Each point's site and distance, kept for in-memory demand only (None for
        Dask demand, whose points never come to the client).
    """

    n_points: int
    n_new_sites: int
    n_existing_sites: int
    radius_m: float
    total_weight: float
    total_vehicles: float
    objective_m: float
    max_distance_m: float
    radii_m: np.ndarray = field(repr=False)
    coverage_curve: np.ndarray = field(repr=False)
    histogram_weight: np.ndarray = field(repr=False)
    site_weight: np.ndarray = field(repr=False)
    site_vehicles: np.ndarray = field(repr=False)
    site_n_points: np.ndarray = field(repr=False)
    site_weight_m: np.ndarray = field(repr=False)
    site_max_m: np.ndarray = field(repr=False)
    labels: np.ndarray | None = field(default=None, repr=False)
    distance_m: np.ndarray | None = field(default=None, repr=False)

    @property
    def n_sites(self) -> int:
        """New and existing sites."""
        return self.n_new_sites + self.n_existing_sites

    @property
    def mean_distance_m(self) -> float:
        """Weighted mean distance to the nearest site, metres."""
        return self.objective_m / self.total_weight

    @property
    def coverage_share(self) -> float:
        """Share of the demand weight within ``radius_m``."""
        return float(self.coverage_curve[np.searchsorted(self.radii_m,
                                                         self.radius_m)])  # fmt: skip

    def distance_quantile_m(self, q: float) -> float:
        """Weighted ``q`` quantile of the distance, to :data:`HISTOGRAM_BIN_M`."""
        cum = np.cumsum(self.histogram_weight)
        b = int(np.searchsorted(cum, q * cum[-1] * (1 - 1e-12), side="left"))
        return min((b + 1) * HISTOGRAM_BIN_M, self.max_distance_m)

    @property
    def median_distance_m(self) -> float:
        return self.distance_quantile_m(0.5)

    @property
    def p90_distance_m(self) -> float:
        return self.distance_quantile_m(0.9)

    @property
    def site_share(self) -> np.ndarray:
        """Share of the demand weight served by each site."""
        return self.site_weight / self.total_weight

    @property
    def site_mean_distance_m(self) -> np.ndarray:
        served = self.site_weight > 0
        out = np.full(self.n_sites, np.nan)
        out[served] = self.site_weight_m[served] / self.site_weight[served]
        return out

    @property
    def site_max_distance_m(self) -> np.ndarray:
        return np.where(self.site_weight > 0, self.site_max_m, np.nan)

    @property
    def n_empty_sites(self) -> int:
        """Sites serving no demand weight."""
        return int((self.site_weight == 0).sum())

    @property
    def load_max_over_mean(self) -> float:
        """Largest site load over the mean load (1 = perfectly balanced)."""
        return float(self.site_weight.max() / (self.total_weight / self.n_sites))

    @property
    def load_cv(self) -> float:
        """Coefficient of variation of the site loads (0 = perfectly balanced)."""
        return float(self.site_weight.std() / (self.total_weight / self.n_sites))

    def coverage_at(self, radius_m: float) -> float:
        """Share of the weight within ``radius_m`` (one of ``radii_m``)."""
        idx = int(np.searchsorted(self.radii_m, radius_m))
        if idx >= self.radii_m.size or self.radii_m[idx] != radius_m:
            raise ValueError(f"radius_m={radius_m} is not one of {self.radii_m}")
        return float(self.coverage_curve[idx])

    def to_dict(self) -> dict[str, Any]:
        """Summary as plain JSON values (non-finite floats become None).

        Keys: ``n_points``, ``n_new_sites``, ``n_existing_sites``,
        ``n_empty_sites``, ``total_weight``, ``total_vehicles``, ``objective_m``,
        ``mean_distance_m``, ``median_distance_m``, ``p90_distance_m``,
        ``max_distance_m``, ``radius_m``, ``coverage_share``, ``coverage_curve``
        (list of ``{"radius_m", "share"}``), ``load_max_over_mean``, ``load_cv``.
        """
        out = {
            "n_points": self.n_points,
            "n_new_sites": self.n_new_sites,
            "n_existing_sites": self.n_existing_sites,
            "n_empty_sites": self.n_empty_sites,
            "total_weight": self.total_weight,
            "total_vehicles": self.total_vehicles,
            "objective_m": self.objective_m,
            "mean_distance_m": self.mean_distance_m,
            "median_distance_m": self.median_distance_m,
            "p90_distance_m": self.p90_distance_m,
            "max_distance_m": self.max_distance_m,
            "radius_m": self.radius_m,
            "coverage_share": self.coverage_share,
            "coverage_curve": [
                {"radius_m": float(r), "share": float(s)}
                for r, s in zip(self.radii_m, self.coverage_curve, strict=True)
            ],
            "load_max_over_mean": self.load_max_over_mean,
            "load_cv": self.load_cv,
        }
        return json_ready(out)


def _radii(radius_m: float, radii_m: Sequence[float] | None) -> np.ndarray:
    base = CURVE_RADII_M if radii_m is None else radii_m
    return np.unique(np.asarray([*base, radius_m], dtype=np.float64))


def coverage(
    X,
    weight,
    sites_m: np.ndarray,
    *,
    n_new_sites: int,
    vehicles=None,
    radius_m: float = DEFAULT_RADIUS_M,
    radii_m: Sequence[float] | None = None,
) -> Coverage:
    """Coverage of the demand by its nearest site, on NumPy or Dask arrays.

    Parameters
    ----------
    X : numpy.ndarray or dask.array.Array, shape (n, 2)
        Demand points, metres (a Dask array chunked by rows).
    weight : numpy.ndarray or dask.array.Array, shape (n,)
        Demand weight of each point (finite, >= 0, positive sum: validated where the
        demand was loaded).
    sites_m : numpy.ndarray, shape (s, 2)
        New sites first, then existing ones, metres; at least one.
    n_new_sites : int
        How many of ``sites_m`` are new (the rest are existing).
    vehicles : array like ``weight``, optional
        Vehicles at each point (default: the weight).
    radius_m : float
        Coverage radius, metres.
    radii_m : sequence of float, optional
        Radii of the coverage curve (default :data:`CURVE_RADII_M`); ``radius_m`` is
        always added.

    Returns
    -------
    Coverage

    Examples
    --------
    >>> c = coverage(np.array([[0.0, 0.0], [3.0, 4.0], [10.0, 0.0]]),
    ...              np.array([2.0, 1.0, 1.0]), np.array([[0.0, 0.0], [10.0, 1.0]]),
    ...              n_new_sites=1, radius_m=5.0, radii_m=[1.0, 7.0])
    >>> c.labels.tolist(), c.distance_m.tolist()
    ([0, 0, 1], [0.0, 7.0, 1.0])
    >>> c.objective_m, c.mean_distance_m, c.coverage_share
    (8.0, 2.0, 0.75)
    """
    import dask
    import dask.array as da

    from evplanner._chunked import tree_reduce

    sites_m = np.ascontiguousarray(sites_m, dtype=np.float64)
    if sites_m.ndim != 2 or sites_m.shape[0] == 0:
        raise ValueError(f"sites_m: expected shape (s >= 1, 2), got {sites_m.shape}")
    if not (math.isfinite(radius_m) and radius_m >= 0):
        raise ValueError(f"radius_m: expected a finite distance >= 0, got {radius_m!r}")
    radii = _radii(radius_m, radii_m)
    labels = distance = None
    if isinstance(X, da.Array):
        v = weight if vehicles is None else vehicles
        parts = [
            dask.delayed(coverage_partials)(xb, wb, sites_m, radii, vb)
            for xb, wb, vb in zip(X.to_delayed().ravel(), weight.to_delayed().ravel(),
                                  v.to_delayed().ravel(), strict=True)
        ]  # fmt: skip
        (s,) = dask.compute(tree_reduce(parts, combine_coverage))
    else:
        X = np.ascontiguousarray(X, dtype=np.float64)
        s = coverage_partials(X, weight, sites_m, radii, vehicles)
        labels, distance = assign_l1(X, sites_m)
    total = s["total_weight"]
    result = Coverage(
        n_points=s["n"],
        n_new_sites=int(n_new_sites),
        n_existing_sites=int(sites_m.shape[0] - n_new_sites),
        radius_m=float(radius_m),
        total_weight=total,
        total_vehicles=s["total_vehicles"],
        objective_m=s["objective_m"],
        max_distance_m=s["max_distance_m"],
        radii_m=radii,
        # Sums in another order can exceed the total by rounding: a share is <= 1.
        coverage_curve=np.minimum(s["covered"] / total, 1.0),
        histogram_weight=s["histogram"],
        site_weight=s["site_weight"],
        site_vehicles=s["site_vehicles"],
        site_n_points=s["site_n"],
        site_weight_m=s["site_weight_m"],
        site_max_m=s["site_max_m"],
        labels=labels,
        distance_m=distance,
    )
    logger.debug(
        "coverage: %d points, %d new + %d existing sites, mean %.0f m, %.1f%% "
        "within %g m", result.n_points, result.n_new_sites, result.n_existing_sites,
        result.mean_distance_m, 100 * result.coverage_share, radius_m,
    )  # fmt: skip
    return result


# --------------------------------------------------------------------------------------
# Today's network versus today's network plus new sites
# --------------------------------------------------------------------------------------

_COMPARED = ("objective_m", "mean_distance_m", "median_distance_m", "p90_distance_m",
             "max_distance_m", "coverage_share")  # fmt: skip


def compare_networks(baseline: Coverage, improved: Coverage) -> pd.DataFrame:
    """Existing network against existing + new sites, on the same demand.

    Parameters
    ----------
    baseline : Coverage
        The existing sites alone.
    improved : Coverage
        The same demand with the new sites added.

    Returns
    -------
    pandas.DataFrame
        Index ``objective_m``, ``mean_distance_m``, ``median_distance_m``,
        ``p90_distance_m``, ``max_distance_m``, ``coverage_share``; columns
        ``baseline``, ``improved``, ``change`` and ``relative_change`` (NaN where
        the baseline is 0).

    Raises
    ------
    ValueError
        If the two were computed on different demand or radius.
    """
    if (baseline.n_points, baseline.total_weight, baseline.radius_m) != (
        improved.n_points,
        improved.total_weight,
        improved.radius_m,
    ):
        raise ValueError(
            "baseline and improved must be computed on the same demand and radius "
            f"(n_points {baseline.n_points} vs {improved.n_points}, radius_m "
            f"{baseline.radius_m} vs {improved.radius_m})"
        )
    before = np.array([getattr(baseline, name) for name in _COMPARED])
    after = np.array([getattr(improved, name) for name in _COMPARED])
    change = after - before
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = np.where(before != 0, change / before, np.nan)
    return pd.DataFrame(
        {"baseline": before, "improved": after, "change": change,
         "relative_change": relative},
        index=pd.Index(_COMPARED, name="metric"),
    )  # fmt: skip
