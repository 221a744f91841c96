"""Scenario in, plan out: :func:`solve`, and :func:`sweep` over the number of sites.

The CLI and the web app both call these; they only differ in where the inputs come
from (files read now, or data the app keeps in memory) and what they do with the
plan.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from evplanner.errors import InputError
from evplanner.metrics import coverage
from evplanner.planning.inputs import (
    CandidateSites,
    Demand,
    ExistingSites,
    load_candidates,
    load_demand,
    load_existing,
)
from evplanner.planning.plan import Plan, site_table, size_sites
from evplanner.planning.scenario import Scenario

__all__ = ["SWEEP_COLUMNS", "solve", "sweep"]

logger = logging.getLogger(__name__)

#: Columns of the table :func:`sweep` returns.
SWEEP_COLUMNS = ("new_sites", "objective_m", "mean_distance_m", "median_distance_m",
                 "p90_distance_m", "max_distance_m", "coverage_share", "radius_m",
                 "n_iter", "fit_seconds", "new_site_ports_needed", "n_overloaded",
                 "ports_to_add", "unserved_vehicles",
                 "suggested_extra_sites")  # fmt: skip

#: K-Means restarts (scikit-learn), for the comparison algorithm.
KMEANS_N_INIT = 4


@dataclass
class _Fit:
    """What a fit found: the new sites (metres, (k, 2)) and how it got there."""

    centers_m: np.ndarray
    n_iter: int
    notes: list[str] = field(default_factory=list)
    chosen: np.ndarray | None = None  # candidate rows of the new sites
    candidates: dict | None = None  # the candidate summary of the plan
    capacitated: dict | None = None  # loads and objective of a capacitated fit


def _fit(scenario: Scenario, demand: Demand, existing_m: np.ndarray,
         candidates: CandidateSites | None) -> _Fit:  # fmt: skip
    """The new sites: K-Means, K-Medians, or among candidates (either objective)."""
    k = scenario.new_sites
    if k > demand.n_points:
        raise _too_many(k, demand.n_points)
    fixed = existing_m if len(existing_m) else None
    if scenario.algorithm == "kmeans":
        if demand.is_dask:
            raise InputError("K-Means runs in memory only; use kmedians on a cluster",
                             field="algorithm")  # fmt: skip
        from sklearn.cluster import KMeans

        model = KMeans(
            n_clusters=k, random_state=scenario.seed, n_init=KMEANS_N_INIT
        ).fit(demand.X, sample_weight=demand.weight)
        notes = []
        if fixed is not None:
            notes.append(
                "K-Means cannot hold existing stations fixed: it placed the "
                "new sites ignoring them; coverage counts both."
            )
        return _Fit(np.asarray(model.cluster_centers_, "float64"),
                    int(model.n_iter_), notes)  # fmt: skip
    if candidates is None:
        free = _k_medians(scenario, demand, fixed)
        return _Fit(free.centers, int(free.n_iter))
    return _fit_candidates(scenario, demand, fixed, candidates)


def _k_medians(scenario: Scenario, demand: Demand, fixed, candidates_m=None):
    from evplanner.kmedians import k_medians

    try:
        return k_medians(
            demand.X, scenario.new_sites, sample_weight=demand.weight,
            fixed_centers=fixed, random_state=scenario.seed,
            max_iter=scenario.max_iter, candidates=candidates_m,
        )  # fmt: skip
    except InputError:
        raise
    except ValueError as err:
        if "exceeds the number of distinct points" in str(err):
            raise InputError(str(err).replace("n_clusters", "new sites"),
                             field="new_sites") from None  # fmt: skip
        if candidates_m is not None and "candidates" in str(err):
            raise InputError(str(err), field="candidates") from None
        raise


def _fit_candidates(scenario: Scenario, demand: Demand, fixed,
                    candidates: CandidateSites) -> _Fit:  # fmt: skip
    """New sites chosen among candidates; for the median objective also the free
    solution moved to its nearest candidates ("snap"), to report what that costs."""
    from evplanner._kernels import assign_l1

    C = _candidate_metres(scenario, demand, candidates)
    summary = {
        "source": candidates.source,
        "n_candidates": len(candidates),
        "objective": scenario.objective,
        "snap": scenario.snap,
    }
    if scenario.objective == "coverage":
        from evplanner.max_coverage import MaxCoverage

        model = MaxCoverage(
            n_sites=scenario.new_sites, radius=scenario.radius_m, candidates=C,
            fixed_centers=fixed, max_iter=scenario.max_iter,
            random_state=scenario.seed,
        ).fit(demand.X, sample_weight=demand.weight)  # fmt: skip
        chosen = np.asarray(model.center_indices_)
        return _Fit(C[chosen], int(model.n_iter_), chosen=chosen, candidates=summary)
    discrete = _k_medians(scenario, demand, fixed, C)
    free = _k_medians(scenario, demand, fixed)
    # Each freely placed site moved to its nearest candidate (two may share one).
    snapped, _ = assign_l1(np.ascontiguousarray(free.centers), C)
    sites_m = C[snapped] if fixed is None else np.vstack([C[snapped], fixed])
    snapped_objective = coverage(
        demand.X, demand.weight, sites_m, n_new_sites=len(snapped)
    ).objective_m
    summary.update({
        "discrete_objective_m": discrete.inertia,
        "snapped_objective_m": snapped_objective,
        "free_objective_m": free.inertia,
        "snap_cost_share": snapped_objective / discrete.inertia - 1.0,
        "snapped_duplicates": int(len(snapped) - len(np.unique(snapped))),
    })  # fmt: skip
    notes = [
        f"Moving the freely placed sites to their nearest candidates (snap) gives an "
        f"objective {100 * summary['snap_cost_share']:+.1f}% against choosing among "
        f"the candidates."
    ]
    if scenario.snap:
        return _Fit(C[snapped], int(free.n_iter), notes, chosen=snapped,
                    candidates=summary)  # fmt: skip
    chosen = np.asarray(discrete.center_indices)
    return _Fit(discrete.centers, int(discrete.n_iter), notes, chosen=chosen,
                candidates=summary)  # fmt: skip


# --------------------------------------------------------------------------------------
# Capacity-aware siting
# --------------------------------------------------------------------------------------


def _capacities(scenario: Scenario, existing: ExistingSites, total_vehicles: float):
    """Capacity of one new site and of each existing one (vehicles), the stated
    total, and the new sites' capacity the solver is given.

    When the demand exceeds the stated capacity the problem has no feasible
    assignment; the rule (documented in :func:`size_sites`) lets the new sites grow
    evenly until it has, and reports the excess as unserved.
    """
    model = scenario.sizing_model
    k = scenario.new_sites
    new_cap = model.site_capacity_vehicles(scenario.new_site_ports)
    st = existing.stations
    fixed_cap = np.asarray(model.capacity_vehicles(
        st["level1_ports"].to_numpy("int64"), st["level2_ports"].to_numpy("int64"),
        st["dc_fast_ports"].to_numpy("int64"),
    ), dtype="float64") if len(st) else np.zeros(0)  # fmt: skip
    stated = float(fixed_cap.sum() + k * new_cap)
    solver_cap = new_cap
    if total_vehicles > stated:
        # A little headroom so rounding never makes the relaxed problem infeasible.
        solver_cap = (total_vehicles - fixed_cap.sum()) / k * (1 + 1e-6)
    return new_cap, fixed_cap, stated, solver_cap


def _fit_capacitated(
    scenario: Scenario,
    demand: Demand,
    existing: ExistingSites,
    fixed,
    candidates: CandidateSites | None = None,
) -> _Fit:
    """New sites placed with capacities: ``KMedians(capacity=, fixed_capacity=)``.

    Its fitted ``site_loads_`` (new sites, then fixed ones) size the sites,
    ``flows_`` give the served demand, ``inertia_`` the capacitated objective.
    With candidates, as :func:`_fit_candidates` does without capacities: the
    sites chosen among the candidates (``candidates=``), and the free
    capacity-aware sites moved to their nearest candidates ("snap"), whose
    objective is the exact transport to the moved sites with the same
    capacities; the plan keeps the one the scenario asks for and reports both.
    """
    total = float(np.sum(demand.weight))
    _, fixed_cap, stated, solver_cap = _capacities(scenario, existing, total)
    if candidates is None:
        model = _capacitated_k_medians(scenario, demand, fixed, fixed_cap, solver_cap)
        return _Fit(np.asarray(model.cluster_centers_, "float64"),
                    int(model.n_iter_), capacitated=_capacitated_info(
                        np.asarray(model.site_loads_, "float64"),
                        float(np.asarray(model.flows_.sum())),
                        float(model.inertia_), stated))  # fmt: skip
    from evplanner import _capacitated as cap
    from evplanner._kernels import assign_l1

    C = _candidate_metres(scenario, demand, candidates)
    summary = {
        "source": candidates.source,
        "n_candidates": len(candidates),
        "objective": scenario.objective,
        "snap": scenario.snap,
    }
    discrete = _capacitated_k_medians(scenario, demand, fixed, fixed_cap, solver_cap,
                                      candidates_m=C)  # fmt: skip
    free = _capacitated_k_medians(scenario, demand, fixed, fixed_cap, solver_cap)
    snapped, _ = assign_l1(np.ascontiguousarray(free.cluster_centers_), C)
    # The moved sites keep the capacities: the exact transport says what the
    # move costs (two sites on one candidate add their capacities there).
    U, W = _aggregate(demand)
    k = scenario.new_sites
    caps = np.concatenate([np.full(k, solver_cap), fixed_cap])
    S = C[snapped] if fixed is None else np.vstack([C[snapped], fixed])
    moved = cap.transport(U, W, S, caps)
    summary.update({
        "discrete_objective_m": float(discrete.inertia_),
        "snapped_objective_m": moved.objective,
        "free_objective_m": float(free.inertia_),
        "snap_cost_share": moved.objective / float(discrete.inertia_) - 1.0,
        "snapped_duplicates": int(len(snapped) - len(np.unique(snapped))),
    })  # fmt: skip
    notes = [
        f"Moving the freely placed capacity-aware sites to their nearest candidates "
        f"(snap) gives an objective {100 * summary['snap_cost_share']:+.1f}% against "
        f"choosing among the candidates with capacities."
    ]
    if scenario.snap:
        loads = np.bincount(moved.cols, weights=moved.flow, minlength=len(caps))
        info = _capacitated_info(loads, float(moved.flow.sum()), moved.objective,
                                 stated)  # fmt: skip
        return _Fit(C[snapped], int(free.n_iter_), notes, chosen=snapped,
                    candidates=summary, capacitated=info)  # fmt: skip
    info = _capacitated_info(np.asarray(discrete.site_loads_, "float64"),
                             float(np.asarray(discrete.flows_.sum())),
                             float(discrete.inertia_), stated)  # fmt: skip
    return _Fit(np.asarray(discrete.cluster_centers_, "float64"),
                int(discrete.n_iter_), notes,
                chosen=np.asarray(discrete.center_indices_),
                candidates=summary, capacitated=info)  # fmt: skip


def _candidate_metres(scenario: Scenario, demand: Demand,
                      candidates: CandidateSites) -> np.ndarray:  # fmt: skip
    """The candidates in the demand's CRS; fewer than the new sites is an error."""
    if len(candidates) < scenario.new_sites:
        raise InputError(f"{len(candidates):,} candidate sites, fewer than the "
                         f"{scenario.new_sites:,} new sites asked for",
                         field="candidates")  # fmt: skip
    return candidates.metres(demand.crs)


def _capacitated_k_medians(scenario: Scenario, demand: Demand, fixed, fixed_cap,
                           solver_cap: float, candidates_m=None):  # fmt: skip
    """The fitted ``KMedians`` with the scenario's capacities (and candidates)."""
    from evplanner.kmedians import KMedians

    params = {"capacity": solver_cap}
    if fixed is not None:
        params.update(fixed_centers=fixed, fixed_capacity=fixed_cap)
    if candidates_m is not None:
        params["candidates"] = candidates_m
    try:
        return KMedians(
            n_clusters=scenario.new_sites, random_state=scenario.seed,
            max_iter=scenario.max_iter, **params,
        ).fit(demand.X, sample_weight=demand.weight)  # fmt: skip
    except ValueError as err:
        if candidates_m is not None and "candidates" in str(err):
            raise InputError(str(err), field="candidates") from None
        raise


def _capacitated_info(
    loads: np.ndarray, served: float, objective_m: float, stated: float
) -> dict:
    """What the plan's sizing takes from a capacitated fit."""
    return {
        "loads": loads,
        "stated_capacity_vehicles": stated,
        "served_vehicles": served,
        "objective_m": objective_m,
    }


def _aggregate(demand: Demand) -> tuple[np.ndarray, np.ndarray]:
    """Distinct demand locations ``(n, 2)`` and their summed weights ``(n,)``.

    On Dask, chunk by chunk and merged (the client holds only the distinct
    locations, as the capacitated core does).
    """
    from evplanner import _capacitated as cap

    if not demand.is_dask:
        U, W, _ = cap.aggregate_points(np.asarray(demand.X), np.asarray(demand.weight))
        return U, W
    import dask

    def part(x, w):
        return cap.aggregate_points(x, w)[:2]

    parts = [dask.delayed(part)(x, w) for x, w in zip(
        demand.X.to_delayed().ravel(), demand.weight.to_delayed().ravel(),
        strict=True)]  # fmt: skip
    out = dask.compute(*parts)
    agg = out[0]
    for other in out[1:]:
        agg = cap.merge_aggregates(agg, other)
    return agg


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
    candidates: CandidateSites | None = None,
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
    candidates : CandidateSites, optional
        Its candidate sites, already loaded (:func:`load_candidates`).
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
    if candidates is None:
        candidates = load_candidates(scenario)
    existing_m = existing.metres(demand.crs)
    loaded = time.perf_counter()
    reuse = (previous is not None and previous.scenario.sites_key == scenario.sites_key
             and previous.crs == demand.crs)  # fmt: skip
    if reuse:
        # The same sites (and, capacity-aware, the same capacities: they are in
        # the sites key, so the same flows and loads).
        capacitated = None
        if scenario.capacitated:
            capacitated = {
                "loads": previous.sites["load_vehicles"].to_numpy("float64"),
                **{name: previous.sizing[name] for name in (
                    "stated_capacity_vehicles", "served_vehicles", "objective_m")},
            }  # fmt: skip
        fit = _Fit(previous.new_sites_m, 0, list(previous.notes),
                   previous.chosen_candidates, previous.candidates,
                   capacitated)  # fmt: skip
    elif scenario.capacitated:
        if scenario.new_sites > demand.n_points:
            raise _too_many(scenario.new_sites, demand.n_points)
        fit = _fit_capacitated(scenario, demand, existing,
                               existing_m if len(existing_m) else None,
                               candidates)  # fmt: skip
    else:
        fit = _fit(scenario, demand, existing_m, candidates)
    new_m, n_iter, notes = fit.centers_m, fit.n_iter, fit.notes
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
    # Sized by the vehicles each site serves: its nearest-site demand, or the
    # capacitated flows (weight is vehicles there: the scenario requires it).
    loads = (cover.site_vehicles if fit.capacitated is None
             else fit.capacitated["loads"])  # fmt: skip
    sized, sizing = size_sites(loads, k, existing.stations, scenario,
                               capacitated=fit.capacitated)  # fmt: skip
    for column in sized.columns:
        sites[column] = sized[column].to_numpy()
    if fit.chosen is not None:
        # A new site at a candidate is that place: its id and its name.
        chosen = candidates.sites.iloc[fit.chosen]
        sites.loc[: k - 1, "candidate_id"] = (
            chosen["candidate_id"].astype(str).to_numpy()
        )
        sites.loc[: k - 1, "name"] = (
            chosen["name"].astype("string").fillna("").to_numpy(object)
        )
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
        candidates=fit.candidates, chosen_candidates=fit.chosen, sizing=sizing,
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
    candidates: CandidateSites | None = None,
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
    client, demand, existing, candidates, blocksize
        As in :func:`solve`; the demand, existing and candidate sites are loaded
        once.
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
    if candidates is None:
        candidates = load_candidates(scenario)
    rows = []
    for done, k in enumerate(counts, start=1):
        plan = solve(scenario.replace(new_sites=k), client=client, demand=demand,
                     existing=existing, candidates=candidates)  # fmt: skip
        c = plan.coverage
        rows.append({
            "new_sites": k, "objective_m": c.objective_m,
            "mean_distance_m": c.mean_distance_m,
            "median_distance_m": c.median_distance_m,
            "p90_distance_m": c.p90_distance_m, "max_distance_m": c.max_distance_m,
            "coverage_share": c.coverage_share, "radius_m": c.radius_m,
            "n_iter": plan.n_iter, "fit_seconds": plan.timings["fit"],
            **{name: plan.sizing[name] for name in SWEEP_COLUMNS[10:]},
        })  # fmt: skip
        if progress is not None:
            progress(done, len(counts), plan)
    return pd.DataFrame(rows, columns=list(SWEEP_COLUMNS))
