"""Choosing the method and the number of sites: K-Medians against K-Means, the elbow.

:func:`compare_kmeans` fits both methods on a scenario's demand, with and without
far outliers, and judges them by the L1 access they give the demand;
:func:`suggest_new_sites` reads an elbow off a :func:`~evplanner.planning.sweep`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyproj

from evplanner._json import json_ready
from evplanner.errors import InputError
from evplanner.metrics import coverage, weighted_quantile
from evplanner.planning.inputs import Demand, load_demand
from evplanner.planning.scenario import Scenario
from evplanner.projection import to_lonlat

__all__ = ["KMeansComparison", "compare_kmeans", "make_outliers", "suggest_new_sites"]

logger = logging.getLogger(__name__)

#: Restarts of both methods in the comparison.
COMPARISON_N_INIT = 4


def make_outliers(
    X: np.ndarray,
    weight: np.ndarray,
    n_outliers: int = 5,
    *,
    weight_share: float = 0.002,
    distance_factor: float = 1.0,
    random_state: int | None = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Far demand outliers around a point set, for robustness checks.

    Parameters
    ----------
    X : numpy.ndarray, shape (n, 2)
        Demand points, metres.
    weight : numpy.ndarray, shape (n,)
        Their demand weights.
    n_outliers : int
        Number of outliers.
    weight_share : float
        Total outlier weight as a share of the demand weight (split equally). The
        default 0.2 % is about the share of out-of-state registrations (338 of
        150,475 located vehicles) in the Washington DOL file.
    distance_factor : float
        Each outlier lies at L1 distance ``(1 + distance_factor) * extent`` from the
        weighted (per-coordinate) median of the demand, in a random direction, where
        ``extent`` is the largest L1 distance of a demand point from that median.
    random_state : int or None
        Seed of the directions.

    Returns
    -------
    outliers_m : numpy.ndarray, shape (n_outliers, 2)
    outlier_weight : numpy.ndarray, shape (n_outliers,)

    Examples
    --------
    >>> X = np.array([[0.0, 0.0], [10.0, 0.0]])
    >>> pts, w = make_outliers(X, np.array([1.0, 1.0]), 2, weight_share=0.5)
    >>> np.abs(pts).sum(axis=1).round(6).tolist(), w.tolist()
    ([20.0, 20.0], [0.5, 0.5])
    """
    if int(n_outliers) < 1:
        raise ValueError(f"n_outliers: expected >= 1, got {n_outliers!r}")
    if not weight_share > 0:
        raise ValueError(f"weight_share: expected > 0, got {weight_share!r}")
    if not distance_factor > 0:
        raise ValueError(f"distance_factor: expected > 0, got {distance_factor!r}")
    centre = np.array([weighted_quantile(X[:, j], 0.5, weight) for j in range(2)])
    extent = float(np.abs(X - centre).sum(axis=1).max()) or 1.0
    rng = np.random.default_rng(random_state)
    angle = rng.uniform(0.0, 2.0 * np.pi, int(n_outliers))
    direction = np.column_stack([np.cos(angle), np.sin(angle)])
    # Unit L1 length, so that the L1 distance is exactly as stated.
    direction /= np.abs(direction).sum(axis=1, keepdims=True)
    outliers = centre + (1.0 + distance_factor) * extent * direction
    return outliers, np.full(int(n_outliers), weight_share * weight.sum() / n_outliers)


def _matched_shift_m(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """L1 shift of each centre under the pairing that minimises the total shift."""
    from scipy.optimize import linear_sum_assignment

    cost = np.abs(before[:, None, :] - after[None, :, :]).sum(axis=2)
    rows, cols = linear_sum_assignment(cost)
    return cost[rows, cols]


@dataclass(frozen=True)
class KMeansComparison:
    """K-Medians against scikit-learn K-Means, judged by L1 access to demand.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per (``method`` in {"kmedians", "kmeans"}, ``case`` in {"clean",
        "outliers"}): ``objective_m``, ``mean_distance_m``, ``p90_distance_m``,
        ``coverage_share`` (all on the original demand), ``objective_all_m`` (on the
        demand with the outliers), ``shift_mean_m`` and ``shift_max_m`` (L1 movement
        of the centres from the clean fit; 0 for "clean"),
        ``n_centers_on_outliers`` (centres whose nearest demand point is an outlier)
        and ``fit_seconds``.
    centers_m : dict
        ``(method, case) -> ndarray (k, 2)``, metres in ``crs``.
    outliers_m : numpy.ndarray, shape (n_outliers, 2)
    outlier_weight : numpy.ndarray, shape (n_outliers,)
    new_sites : int
    radius_m : float
    crs : pyproj.CRS
    """

    table: pd.DataFrame
    centers_m: dict[tuple[str, str], np.ndarray]
    outliers_m: np.ndarray
    outlier_weight: np.ndarray
    new_sites: int
    radius_m: float
    crs: pyproj.CRS

    def row(self, method: str, case: str) -> pd.Series:
        """The table row for ``method`` and ``case``."""
        t = self.table
        return t[(t["method"] == method) & (t["case"] == case)].iloc[0]

    def sites_lonlat(self, method: str, case: str = "clean") -> pd.DataFrame:
        """A fit's sites as ``lon``, ``lat`` degrees."""
        c = self.centers_m[(method, case)]
        lon, lat = to_lonlat(c[:, 0], c[:, 1], self.crs)
        return pd.DataFrame({"lon": lon, "lat": lat})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: parameters and the table as records."""
        return json_ready({
            "new_sites": self.new_sites, "radius_m": self.radius_m,
            "n_outliers": int(self.outliers_m.shape[0]),
            "outlier_weight": self.outlier_weight.sum(),
            "rows": self.table.to_dict(orient="records"),
        })  # fmt: skip


def compare_kmeans(
    scenario: Scenario,
    *,
    demand: Demand | None = None,
    n_init: int = COMPARISON_N_INIT,
) -> KMeansComparison:
    """K-Medians and K-Means on the scenario's demand, with and without outliers.

    Both are fitted on the demand ("clean") and on the demand plus far outliers
    (:func:`make_outliers`), with the same restarts and seed, with no existing sites
    (K-Means cannot hold them fixed). Each fit is judged by the weighted L1 objective
    and coverage it gives the original demand, and by how far its centres move when
    the outliers are added.

    Parameters
    ----------
    scenario : Scenario
        Demand, number of new sites, radius and seed.
    demand : Demand, optional
        The scenario's demand, already loaded (in memory).
    n_init : int
        Restarts of both methods.

    Returns
    -------
    KMeansComparison

    Notes
    -----
    K-Means minimises squared Euclidean distance, so its centres are weighted means:
    a far point pulls a mean in proportion to its distance, while a weighted median
    does not move once the point is on one side. On the bundled Washington demand
    with the default outliers (about 1,000 km out), K-Medians sent no centre to them
    for k <= 10 and K-Means 3 at k = 10; with many sites the marginal site is worth
    little, so even the L1 objective pays for serving far demand (k = 40: 4 against
    4-5).
    """
    from sklearn.cluster import KMeans

    from evplanner.kmedians import KMedians

    if demand is None:
        demand = load_demand(scenario)
    if demand.is_dask:
        raise InputError("the K-Means comparison runs in memory only",
                         field="algorithm")  # fmt: skip
    k = scenario.new_sites
    if k > demand.n_points:
        raise InputError(
            f"the demand has {demand.n_points:,} location(s), fewer than "
            f"the {k:,} new sites asked for",
            field="new_sites",
        )
    X, weight, seed = demand.X, demand.weight, scenario.seed
    out_pts, out_w = make_outliers(X, weight, random_state=seed)
    all_pts, all_w = np.concatenate([X, out_pts]), np.concatenate([weight, out_w])
    is_outlier = np.r_[np.zeros(len(X), bool), np.ones(len(out_pts), bool)]
    makers = {
        "kmedians": lambda: KMedians(n_clusters=k, n_init=n_init, random_state=seed),
        "kmeans": lambda: KMeans(n_clusters=k, n_init=n_init, random_state=seed),
    }
    from evplanner._kernels import assign_l1

    centers: dict[tuple[str, str], np.ndarray] = {}
    rows = []
    for method, make in makers.items():
        for case, (pts, w) in {"clean": (X, weight),
                               "outliers": (all_pts, all_w)}.items():  # fmt: skip
            start = time.perf_counter()
            model = make().fit(pts, sample_weight=w)
            seconds = time.perf_counter() - start
            c = np.asarray(model.cluster_centers_, dtype=np.float64)
            centers[(method, case)] = c
            on_demand = coverage(
                X, weight, c, n_new_sites=k, radius_m=scenario.radius_m
            )
            on_all = coverage(
                all_pts, all_w, c, n_new_sites=k, radius_m=scenario.radius_m
            )
            shift = _matched_shift_m(centers[(method, "clean")], c)
            # A centre "sits on" the outliers when its nearest demand point is one.
            nearest, _ = assign_l1(c, all_pts)
            rows.append({
                "method": method, "case": case,
                "objective_m": on_demand.objective_m,
                "mean_distance_m": on_demand.mean_distance_m,
                "p90_distance_m": on_demand.p90_distance_m,
                "coverage_share": on_demand.coverage_share,
                "objective_all_m": on_all.objective_m,
                "shift_mean_m": float(shift.mean()), "shift_max_m": float(shift.max()),
                "n_centers_on_outliers": int(is_outlier[nearest].sum()),
                "fit_seconds": seconds,
            })  # fmt: skip
            logger.info("%s/%s: L1 objective %.4g, mean shift %.0f m", method, case,
                        on_demand.objective_m, shift.mean())  # fmt: skip
    return KMeansComparison(
        table=pd.DataFrame(rows), centers_m=centers, outliers_m=out_pts,
        outlier_weight=out_w, new_sites=k, radius_m=scenario.radius_m,
        crs=demand.crs,
    )  # fmt: skip


def suggest_new_sites(sweep: pd.DataFrame, column: str = "objective_m") -> int:
    """Elbow of a sweep: the number of sites farthest below the chord of the curve.

    Parameters
    ----------
    sweep : pandas.DataFrame
        From :func:`evplanner.planning.sweep` (columns ``new_sites`` and
        ``column``), at least 3 rows.
    column : str
        Decreasing, positive quantity to find the elbow of.

    Returns
    -------
    int

    Notes
    -----
    With ``y = log(objective)`` (so that equal relative drops count equally), both
    axes are scaled to [0, 1] and a chord joins the first and last points; the
    elbow is the point farthest below it (the "kneedle" rule). On the raw objective
    the chord rule favours too few sites whenever the tail still falls steadily.
    If some value is not positive the raw values are used. A starting point, not an
    optimum: planners should also read coverage and cost.

    Examples
    --------
    >>> sweep = pd.DataFrame({"new_sites": [1, 2, 3, 4, 5],
    ...                       "objective_m": [10, 4, 3, 2.5, 2]})
    >>> suggest_new_sites(sweep)
    2
    """
    if len(sweep) < 3:
        raise ValueError(f"suggest_new_sites needs at least 3 rows, got {len(sweep)}")
    ordered = sweep.sort_values("new_sites")
    k = ordered["new_sites"].to_numpy(dtype=np.float64)
    y = ordered[column].to_numpy(dtype=np.float64)
    if (y > 0).all():
        y = np.log(y)
    k_span, y_span = k[-1] - k[0], y[0] - y[-1]
    if not (k_span > 0 and y_span > 0):
        return int(k[0])
    below_chord = (1.0 - (k - k[0]) / k_span) - (y - y[-1]) / y_span
    return int(k[int(np.argmax(below_chord))])
