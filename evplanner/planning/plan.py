"""The answer to a scenario: a :class:`Plan` (sites, coverage, load report, timings).

The site table has one schema for every caller (:data:`SITE_COLUMNS`), and
:meth:`Plan.metrics` one documented JSON schema (:data:`METRICS_SCHEMA`); the
writers in :mod:`evplanner.planning.writers` and the report in
:mod:`evplanner.planning.report` turn a plan into files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyproj

from evplanner._json import json_ready
from evplanner.data import LoadReport
from evplanner.metrics import Coverage, compare_networks
from evplanner.planning.scenario import Scenario
from evplanner.projection import to_lonlat, to_metres

__all__ = [
    "METRICS_SCHEMA",
    "SITE_COLUMNS",
    "WEIGHT_UNITS",
    "Plan",
    "site_table",
    "size_sites",
]

#: Version tag of the metrics JSON written by :meth:`Plan.metrics`.
METRICS_SCHEMA = "evplanner.plan/1"

#: Columns of the site table, in order (units in the names; lon/lat in degrees).
SITE_COLUMNS = (
    "site_id",  # "N01".."Nk" for new sites, "E<station id>" for existing ones
    "kind",  # "new" or "existing"
    "name",  # station name; a new site's candidate name ("" off candidates)
    "station_id",  # AFDC (or the file's) station id; empty for new sites
    "candidate_id",  # the candidate a new site was placed at (with candidates)
    "lon",
    "lat",
    "x_m",  # metres in the plan's projected CRS
    "y_m",
    "demand_served",  # demand weight assigned (unit: metrics["demand"]["weight_unit"])
    "vehicles_served",
    "share_of_demand",  # of the total demand weight, 0..1
    "demand_points",  # demand locations assigned
    "mean_distance_m",  # weighted mean L1 distance of the assigned demand
    "max_distance_m",
    "residents_served",  # 2020 residents of the assigned demand (tract demand)
    "evs_per_1000_residents",  # vehicles served per 1,000 residents served
    # Sizing (evplanner.sizing; the plan's metrics["sizing"] holds the model):
    "load_vehicles",  # vehicles the site is sized for (nearest site, or the
    # capacitated flows when capacity-aware)
    "ports",  # existing: its ports (all types); new: the ports it needs
    "capacity_vehicles",  # vehicles its ports serve under the sizing model
    "ports_needed",  # ports it needs for load_vehicles (existing: ports + ports_to_add)
    "ports_to_add",  # existing: ports to add so capacity covers the load; new: 0
    "vehicles_per_port",  # load per port: load_vehicles / ports
    "overloaded",  # existing: load_vehicles above capacity_vehicles
    "action",  # "add ports", "build new site" or ""
)

#: The site table's sizing actions.
ADD_PORTS, BUILD_NEW_SITE = "add ports", "build new site"

#: What one unit of demand weight is, per weighting.
WEIGHT_UNITS = {
    "vehicles": "vehicles",
    "bev": "battery-electric vehicles",
    "range": "miles of electric range",
    "residents": "residents (2020 census)",
}


def site_table(
    coverage: Coverage,
    new_sites_m: np.ndarray,
    existing: pd.DataFrame,
    crs: pyproj.CRS,
    residents: np.ndarray | None = None,
) -> pd.DataFrame:
    """One row per site, new ones first: where it is, what it serves, how far.

    Parameters
    ----------
    coverage : Coverage
        Coverage of the demand by the new sites followed by the existing ones.
    new_sites_m : numpy.ndarray, shape (k, 2)
        The new sites, metres in ``crs``.
    existing : pandas.DataFrame, shape (m,)
        The existing sites' rows (``station_id``, ``name``, ``lon``, ``lat``).
    crs : pyproj.CRS
    residents : numpy.ndarray, shape (k + m,), optional
        Residents served by each site (when the demand knows its residents).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`SITE_COLUMNS` (the residents' columns NaN when unknown).
    """
    k, m = len(new_sites_m), len(existing)
    width = len(str(k))
    lon_new, lat_new = to_lonlat(new_sites_m[:, 0], new_sites_m[:, 1], crs)
    # Existing sites keep their own coordinates (a round trip through metres would
    # move them by micrometres).
    lon = np.concatenate([lon_new, existing["lon"].to_numpy("float64")])
    lat = np.concatenate([lat_new, existing["lat"].to_numpy("float64")])
    x_e, y_e = to_metres(existing["lon"], existing["lat"], crs) if m else ([], [])
    station_ids = existing["station_id"].astype("string").fillna("").tolist()
    served = np.full(k + m, np.nan) if residents is None else residents
    with np.errstate(divide="ignore", invalid="ignore"):
        per_1000 = np.where(served > 0, 1000 * coverage.site_vehicles / served,
                            np.nan)  # fmt: skip
    names = existing["name"].astype("string").fillna("").tolist()
    return pd.DataFrame({
        "site_id": [f"N{i + 1:0{width}d}" for i in range(k)]
        + [f"E{sid}" for sid in station_ids],
        "kind": ["new"] * k + ["existing"] * m,
        "name": [""] * k + names,
        "station_id": [""] * k + station_ids,
        "candidate_id": [""] * (k + m),
        "lon": lon,
        "lat": lat,
        "x_m": np.concatenate([new_sites_m[:, 0], x_e]),
        "y_m": np.concatenate([new_sites_m[:, 1], y_e]),
        "demand_served": coverage.site_weight,
        "vehicles_served": coverage.site_vehicles,
        "share_of_demand": coverage.site_share,
        "demand_points": coverage.site_n_points,
        "mean_distance_m": coverage.site_mean_distance_m,
        "max_distance_m": coverage.site_max_distance_m,
        "residents_served": served,
        "evs_per_1000_residents": per_1000,
    })  # fmt: skip


def size_sites(
    load_vehicles: np.ndarray,
    n_new_sites: int,
    existing: pd.DataFrame,
    scenario: Scenario,
    *,
    capacitated: dict | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Ports, capacity and load per port of every site, and the plan's shortfall.

    Parameters
    ----------
    load_vehicles : numpy.ndarray, shape (k + m,)
        Vehicles each site serves: new sites first, then the existing ones.
    n_new_sites : int
        ``k``.
    existing : pandas.DataFrame, shape (m,)
        The existing sites' rows, with their port counts.
    scenario : Scenario
        The sizing model (``scenario.sizing_model``) and ``new_site_ports``.
    capacitated : dict, optional
        Capacity-aware plans: ``stated_capacity_vehicles`` (the capacity of the
        existing sites plus ``k`` new sites of ``new_site_ports``),
        ``objective_m`` and ``served_vehicles`` of the capacitated assignment.

    Returns
    -------
    columns : pandas.DataFrame, shape (k + m,)
        The sizing columns of :data:`SITE_COLUMNS`.
    summary : dict
        ``metrics()["sizing"]`` (see :meth:`Plan.metrics`).

    Notes
    -----
    New sites get the ports their load needs (at least one). An existing site is
    overloaded when its load exceeds its capacity; ``ports_to_add`` is then what
    covers the excess. *Unserved vehicles* are, with nearest-site assignment, the
    vehicles above capacity at overloaded existing sites (the new sites are sized
    to their load); with capacity-aware siting, the demand above the stated
    capacity of existing plus new sites (the solver then lets the new sites grow
    to carry it, and their ``ports`` show the size that takes). The suggested extra
    sites are the unserved vehicles over the capacity of one new site of
    ``new_site_ports`` ports, rounded up.
    """
    from evplanner.sizing import overloaded, suggested_extra_sites, vehicles_per_port

    model = scenario.sizing_model
    k, m = int(n_new_sites), len(existing)
    load = np.asarray(load_vehicles, dtype="float64")
    by_type = {c: existing[c].to_numpy("int64") if m else np.zeros(0, "int64")
               for c in ("level1_ports", "level2_ports", "dc_fast_ports")}  # fmt: skip
    ports_e = sum(by_type.values())
    cap_e = np.asarray(model.capacity_vehicles(**by_type), dtype="float64")
    add_e = np.asarray(model.ports_to_add(load[k:], **by_type), dtype="int64")
    over_e = overloaded(load[k:], cap_e)
    ports_n = np.maximum(np.asarray(model.ports_needed(load[:k]), "int64"), 1)
    cap_n = np.array([model.site_capacity_vehicles(int(p)) for p in ports_n])
    ports = np.concatenate([ports_n, ports_e]).astype("int64")
    to_add = np.concatenate([np.zeros(k, "int64"), add_e])
    over = np.concatenate([np.zeros(k, bool), over_e])
    columns = pd.DataFrame({
        "load_vehicles": load,
        "ports": ports,
        "capacity_vehicles": np.concatenate([cap_n, cap_e]),
        "ports_needed": ports + to_add,
        "ports_to_add": to_add,
        "vehicles_per_port": vehicles_per_port(load, ports),
        "overloaded": over,
        "action": [BUILD_NEW_SITE] * k + [ADD_PORTS if o else "" for o in over_e],
    })  # fmt: skip
    site_capacity = model.site_capacity_vehicles(scenario.new_site_ports)
    overflow = float(np.maximum(load[k:] - cap_e, 0.0).sum())
    total = float(load.sum())
    if capacitated is None:
        unserved = overflow
        rule = (
            "Nearest-site assignment: each demand point uses its nearest site. New "
            "sites are sized to their load; the vehicles above an existing station's "
            "capacity are unserved until ports are added there (ports_to_add) or "
            f"extra sites of {scenario.new_site_ports} ports are built."
        )
    else:
        unserved = max(total - capacitated["stated_capacity_vehicles"], 0.0)
        rule = (
            "Capacity-aware siting: no site serves more than its capacity. When the "
            "demand exceeds the capacity of the existing stations plus the new sites "
            f"of {scenario.new_site_ports} ports, the excess is unserved at that "
            "size; the new sites are then allowed to grow to carry it (their ports "
            "show the size that takes), or extra sites can be built."
        )
    loaded = (load[k:] > 0) & (ports_e > 0)
    per_port = load[k:][loaded] / ports_e[loaded]
    summary = {
        "model": model.to_dict(),
        "description": model.describe(),
        "capacitated": capacitated is not None,
        "new_site_ports": scenario.new_site_ports,
        "new_site_capacity_vehicles": site_capacity,
        "load_vehicles": total,
        "existing_ports": int(ports_e.sum()),
        "existing_capacity_vehicles": float(cap_e.sum()),
        "existing_with_load": int((load[k:] > 0).sum()),
        "existing_vehicles_per_port": {
            "median": float(np.median(per_port)) if len(per_port) else None,
            "p90": float(np.quantile(per_port, 0.9)) if len(per_port) else None,
            "max": float(per_port.max()) if len(per_port) else None,
        },
        "n_overloaded": int(over_e.sum()),
        "ports_to_add": int(add_e.sum()),
        "overflow_vehicles": overflow,
        "new_site_ports_needed": int(ports_n.sum()),
        "unserved_vehicles": unserved,
        "suggested_extra_sites": suggested_extra_sites(unserved, site_capacity),
        "rule": rule,
    }
    if capacitated is not None:
        summary.update({
            "stated_capacity_vehicles": capacitated["stated_capacity_vehicles"],
            "served_vehicles": capacitated["served_vehicles"],
            "objective_m": capacitated["objective_m"],
            "mean_distance_m": capacitated["objective_m"] / total if total else None,
        })  # fmt: skip
    return columns, summary


@dataclass(frozen=True)
class Plan:
    """Where the new sites go, and how well the network serves the demand.

    Attributes
    ----------
    scenario : Scenario
        The question.
    sites : pandas.DataFrame
        New sites, then existing ones: columns :data:`SITE_COLUMNS`.
    coverage : Coverage
        Coverage by existing + new sites.
    today : Coverage or None
        Coverage by the existing sites alone (None without existing sites).
    crs : pyproj.CRS
        The projected CRS of the distances.
    demand_source, existing_source : str
        Where the demand and the existing sites came from.
    demand_report, existing_report : LoadReport or None
        What reading them kept and dropped.
    aggregated : bool
        Whether the demand was aggregated to distinct locations (vehicle files).
    n_iter : int
        Lloyd iterations of the fit (0 when the sites were reused).
    new_sites_m : numpy.ndarray, shape (k, 2)
        The new sites, metres in ``crs``.
    timings : dict of str to float
        Seconds spent loading, fitting, measuring and in all.
    mode : str
        ``"in memory"`` or the Dask cluster it ran on.
    n_partitions : int
        Row chunks of the demand (1 in memory).
    notes : tuple of str
        What the planner should know about this plan.
    created_utc : str
        ISO 8601 time the plan was made.
    demand : pandas.DataFrame or None
        In-memory plans only: one row per demand point, ``lon``, ``lat``, ``x_m``,
        ``y_m``, ``weight``, ``vehicles``, ``site`` (its row in ``sites``) and
        ``distance_m`` (L1 to that site). None when the demand lived on a cluster.
    candidates : dict or None
        With candidate sites: ``source``, ``n_candidates``, ``objective``,
        ``snap`` and, for the median objective, ``discrete_objective_m`` (chosen
        among the candidates), ``free_objective_m`` (sites anywhere),
        ``snapped_objective_m`` (the free sites moved to their nearest candidates),
        ``snap_cost_share`` and ``snapped_duplicates``.
    chosen_candidates : numpy.ndarray or None
        Rows of the candidate table the new sites are at.
    sizing : dict or None
        The sizing summary (:func:`size_sites`; ``metrics()["sizing"]``).
    """

    scenario: Scenario
    sites: pd.DataFrame = field(repr=False)
    coverage: Coverage = field(repr=False)
    today: Coverage | None = field(repr=False)
    crs: pyproj.CRS
    demand_source: str
    existing_source: str
    demand_report: LoadReport | None = field(repr=False)
    existing_report: LoadReport | None = field(repr=False)
    aggregated: bool
    n_iter: int
    new_sites_m: np.ndarray = field(repr=False)
    timings: dict[str, float] = field(repr=False)
    mode: str = "in memory"
    n_partitions: int = 1
    notes: tuple[str, ...] = ()
    created_utc: str = ""
    demand: pd.DataFrame | None = field(default=None, repr=False)
    candidates: dict | None = field(default=None, repr=False)
    chosen_candidates: np.ndarray | None = field(default=None, repr=False)
    sizing: dict | None = field(default=None, repr=False)

    @property
    def n_new_sites(self) -> int:
        return self.coverage.n_new_sites

    @property
    def n_existing_sites(self) -> int:
        return self.coverage.n_existing_sites

    @property
    def weight_unit(self) -> str:
        """What one unit of demand weight is."""
        return WEIGHT_UNITS[self.scenario.weighting]

    def metrics(self) -> dict[str, Any]:
        """The plan's numbers as plain JSON values (schema :data:`METRICS_SCHEMA`).

        Returns
        -------
        dict
            ``schema``; ``scenario`` (every field); ``demand`` (``source``, ``crs``,
            ``n_points``, ``aggregated``, ``total_weight``, ``total_vehicles``,
            ``weight_unit``); ``existing`` (``source``, ``n_sites``); ``coverage``
            (existing + new sites: :meth:`evplanner.metrics.Coverage.to_dict`);
            ``today`` (existing sites alone, or null); ``change`` (``baseline``,
            ``improved``, ``change`` per measure, or null); ``fit``
            (``algorithm``, ``n_iter``, ``objective_m``); ``load_report``
            (``demand``, ``existing``: :meth:`evplanner.data.LoadReport.to_dict`
            or null); ``notes``; and ``run`` (``mode``, ``n_partitions``,
            ``seconds``, ``created_utc``, ``evplanner_version``): the only part
            that differs between two runs of the same scenario. ``sizing``:
            ``model`` (the sizing parameters and, for the ratio model, their
            ``source``), ``description``, ``capacitated``, ``new_site_ports``,
            ``new_site_capacity_vehicles``, ``load_vehicles``, ``existing_ports``,
            ``existing_capacity_vehicles``, ``existing_with_load``,
            ``existing_vehicles_per_port`` (``median``, ``p90``, ``max`` over the
            existing sites with load), ``n_overloaded``, ``ports_to_add``,
            ``overflow_vehicles``, ``new_site_ports_needed``,
            ``unserved_vehicles``, ``suggested_extra_sites``, ``rule``; with
            capacity-aware siting also ``stated_capacity_vehicles``,
            ``served_vehicles``, ``objective_m`` and ``mean_distance_m`` of the
            capacitated assignment.
        """
        from evplanner import __version__

        c = self.coverage
        change = None
        if self.today is not None:
            table = compare_networks(self.today, c)
            change = {name: table.loc[name, ["baseline", "improved", "change"]]
                      .to_dict() for name in table.index}  # fmt: skip
        out = {
            "schema": METRICS_SCHEMA,
            "scenario": self.scenario.to_dict(),
            "demand": {
                "source": self.demand_source,
                "crs": self.crs.to_string(),
                "n_points": c.n_points,
                "aggregated": self.aggregated,
                "total_weight": c.total_weight,
                "total_vehicles": c.total_vehicles,
                "weight_unit": self.weight_unit,
            },
            "existing": {"source": self.existing_source,
                         "n_sites": self.n_existing_sites},
            "coverage": c.to_dict(),
            "today": None if self.today is None else self.today.to_dict(),
            "change": change,
            "fit": {"algorithm": self.scenario.algorithm, "n_iter": self.n_iter,
                    "objective_m": c.objective_m},
            "candidates": self.candidates,
            "sizing": self.sizing,
            "load_report": {
                "demand": None if self.demand_report is None
                else self.demand_report.to_dict(),
                "existing": None if self.existing_report is None
                else self.existing_report.to_dict(),
            },
            "notes": list(self.notes),
            "run": {"mode": self.mode, "n_partitions": self.n_partitions,
                    "seconds": dict(self.timings), "created_utc": self.created_utc,
                    "evplanner_version": __version__},
        }  # fmt: skip
        return json_ready(out)

    def summary(self) -> str:
        """One line: sites, objective, mean distance, coverage."""
        c = self.coverage
        existing = f" + {c.n_existing_sites:,} existing" if c.n_existing_sites else ""
        return (
            f"{c.n_new_sites} new sites{existing}: objective {c.objective_m:,.0f} m, "
            f"mean distance {c.mean_distance_m:,.0f} m, {100 * c.coverage_share:.1f}% "
            f"of demand within {c.radius_m / 1000:g} km"
        )
