"""Scenario in, plan out: :func:`solve`, and :func:`sweep` over the number of sites.

The CLI and the web app both call these; they only differ in where the inputs come
from (files read now, or data the app keeps in memory) and what they do with the
plan.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from evplanner.errors import InputError
from evplanner.metrics import coverage
from evplanner.planning.inputs import (
    Demand,
    ExistingSites,
    load_demand,
    load_existing,
)
from evplanner.planning.plan import Plan, site_table
from evplanner.planning.scenario import Scenario

__all__ = ["SWEEP_COLUMNS", "solve", "sweep"]

logger = logging.getLogger(__name__)

#: Columns of the table :func:`sweep` returns.
SWEEP_COLUMNS = ("new_sites", "objective_m", "mean_distance_m", "median_distance_m",
                 "p90_distance_m", "max_distance_m", "coverage_share", "radius_m",
                 "n_iter", "fit_seconds")  # fmt: skip

#: K-Means restarts (scikit-learn), for the comparison algorithm.
KMEANS_N_INIT = 4


def _fit(scenario: Scenario, demand: Demand, existing_m: np.ndarray):
    """The new sites (metres, shape (k, 2)), Lloyd iterations and notes."""
    k = scenario.new_sites
    notes: list[str] = []
    if scenario.algorithm == "kmeans":
        if demand.is_dask:
            raise InputError("K-Means runs in memory only; use kmedians on a cluster",
                             field="algorithm")  # fmt: skip
        from sklearn.cluster import KMeans

        if k > demand.n_points:
            raise _too_many(k, demand.n_points)
        model = KMeans(
            n_clusters=k, random_state=scenario.seed, n_init=KMEANS_N_INIT
        ).fit(demand.X, sample_weight=demand.weight)
        if len(existing_m):
            notes.append(
                "K-Means cannot hold existing stations fixed: it placed the "
                "new sites ignoring them; coverage counts both."
            )
        return np.asarray(model.cluster_centers_, "float64"), int(model.n_iter_), notes
    from evplanner.kmedians import k_medians

    if k > demand.n_points:
        raise _too_many(k, demand.n_points)
    try:
        result = k_medians(
            demand.X, k, sample_weight=demand.weight,
            fixed_centers=existing_m if len(existing_m) else None,
            random_state=scenario.seed, max_iter=scenario.max_iter,
        )  # fmt: skip
    except InputError:
        raise
    except ValueError as err:
        if "exceeds the number of distinct points" in str(err):
            raise InputError(str(err).replace("n_clusters", "new sites"),
                             field="new_sites") from None  # fmt: skip
        raise
    return result.centers, int(result.n_iter), notes


def _too_many(k: int, n_points: int) -> InputError:
    return InputError(
        f"the demand has {n_points:,} location(s), fewer than the {k:,} new sites "
        "asked for: lower the number of sites or widen the filters",
        field="new_sites",
    )


def solve(
    scenario: Scenario,
    *,
    client=None,
    demand: Demand | None = None,
    existing: ExistingSites | None = None,
    previous: Plan | None = None,
    blocksize: str | int = "64MB",
) -> Plan:
    """Place the scenario's new sites and measure the network they make.

    Parameters
    ----------
    scenario : Scenario
    client : distributed.Client, optional
        Read and solve on this Dask cluster (same answer as in memory).
    demand : Demand, optional
        The scenario's demand, already loaded (:func:`load_demand`).
    existing : ExistingSites, optional
        Its existing sites, already loaded (:func:`load_existing`).
    previous : Plan, optional
        An earlier plan: when it differs only in the coverage radius, its sites are
        reused and only the metrics are recomputed.
    blocksize : str or int
        Partition size when reading on a cluster.

    Returns
    -------
    Plan

    Raises
    ------
    InputError
        Bad inputs (files, filters that leave no demand, more new sites than demand
        locations), naming the file or the scenario field.
    """
    start = time.perf_counter()
    if demand is None:
        demand = load_demand(scenario, client=client, blocksize=blocksize)
    if existing is None:
        existing = load_existing(scenario)
    existing_m = existing.metres(demand.crs)
    loaded = time.perf_counter()
    reuse = (previous is not None and previous.scenario.sites_key == scenario.sites_key
             and previous.crs == demand.crs)  # fmt: skip
    if reuse:
        new_m, n_iter, notes = previous.new_sites_m, 0, list(previous.notes)
    else:
        new_m, n_iter, notes = _fit(scenario, demand, existing_m)
    fitted = time.perf_counter()
    k = len(new_m)
    sites_m = np.vstack([new_m, existing_m]) if len(existing_m) else new_m
    cover = coverage(
        demand.X,
        demand.weight,
        sites_m,
        n_new_sites=k,
        vehicles=demand.vehicles,
        radius_m=scenario.radius_m,
    )
    today = None
    if len(existing_m):
        today = coverage(
            demand.X,
            demand.weight,
            existing_m,
            n_new_sites=0,
            vehicles=demand.vehicles,
            radius_m=scenario.radius_m,
        )
    residents = None
    if demand.population is not None and cover.labels is not None:
        residents = np.bincount(cover.labels, weights=demand.population,
                                minlength=cover.n_sites)  # fmt: skip
    sites = site_table(cover, new_m, existing.stations, demand.crs, residents)
    points = None
    if not demand.is_dask:
        points = pd.DataFrame({
            "lon": demand.lon, "lat": demand.lat, "x_m": demand.X[:, 0],
            "y_m": demand.X[:, 1], "weight": demand.weight,
            "vehicles": demand.vehicles, "site": cover.labels,
            "distance_m": cover.distance_m,
        })  # fmt: skip
    done = time.perf_counter()
    plan = Plan(
        scenario=scenario, sites=sites, coverage=cover, today=today, crs=demand.crs,
        demand_source=demand.source, existing_source=existing.source,
        demand_report=demand.report, existing_report=existing.report,
        aggregated=demand.aggregated, n_iter=n_iter, new_sites_m=new_m,
        timings={"load": loaded - start, "fit": fitted - loaded,
                 "metrics": done - fitted, "total": done - start},
        mode=_mode(client), n_partitions=demand.n_partitions, notes=tuple(notes),
        created_utc=datetime.now(UTC).isoformat(timespec="seconds"), demand=points,
    )  # fmt: skip
    logger.info("solved: %s (%.2f s)", plan.summary(), done - start)
    return plan


def _mode(client) -> str:
    if client is None:
        return "in memory"
    workers = len(client.nthreads())
    return f"Dask cluster at {client.scheduler.address} ({workers} workers)"


def sweep(
    scenario: Scenario,
    new_sites: Sequence[int],
    *,
    client=None,
    demand: Demand | None = None,
    existing: ExistingSites | None = None,
    progress: Callable[[int, int, Plan], None] | None = None,
    blocksize: str | int = "64MB",
) -> pd.DataFrame:
    """Objective and coverage for each number of new sites (to choose it: the elbow).

    Parameters
    ----------
    scenario : Scenario
        Everything but the number of new sites.
    new_sites : sequence of int
        Numbers of new sites to plan for (each >= 1; duplicates are dropped).
    client, demand, existing, blocksize
        As in :func:`solve`; the demand and existing sites are loaded once.
    progress : callable, optional
        Called as ``progress(done, total, plan)`` after each plan.

    Returns
    -------
    pandas.DataFrame
        One row per number of new sites, ascending: :data:`SWEEP_COLUMNS`.
    """
    counts = sorted({int(k) for k in new_sites})
    if not counts:
        raise InputError("expected at least one number of new sites",
                         field="new_sites")  # fmt: skip
    for k in counts:
        scenario.replace(new_sites=k)  # validates each before any work
    if demand is None:
        demand = load_demand(scenario, client=client, blocksize=blocksize)
    if existing is None:
        existing = load_existing(scenario)
    rows = []
    for done, k in enumerate(counts, start=1):
        plan = solve(scenario.replace(new_sites=k), client=client, demand=demand,
                     existing=existing)  # fmt: skip
        c = plan.coverage
        rows.append({
            "new_sites": k, "objective_m": c.objective_m,
            "mean_distance_m": c.mean_distance_m,
            "median_distance_m": c.median_distance_m,
            "p90_distance_m": c.p90_distance_m, "max_distance_m": c.max_distance_m,
            "coverage_share": c.coverage_share, "radius_m": c.radius_m,
            "n_iter": plan.n_iter, "fit_seconds": plan.timings["fit"],
        })  # fmt: skip
        if progress is not None:
            progress(done, len(counts), plan)
    return pd.DataFrame(rows, columns=list(SWEEP_COLUMNS))
