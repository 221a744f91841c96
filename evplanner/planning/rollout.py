"""A staged rollout: new sites year by year on each year's forecast demand.

Year ``y`` places ``per_year`` new sites on the demand forecast for ``y``, with
today's existing sites and every earlier year's new sites held fixed, so a later
year never moves an earlier year's site. The result is a :class:`Rollout`: one plan
per year, and one site table with the year each site is built.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from evplanner._json import json_ready
from evplanner.data import STATION_COLUMNS, load_vehicles
from evplanner.errors import InputError
from evplanner.planning.inputs import (
    CandidateSites,
    ExistingSites,
    expand_inputs,
    load_candidates,
    load_demand,
    load_existing,
)
from evplanner.planning.plan import SITE_COLUMNS, Plan
from evplanner.planning.scenario import Scenario
from evplanner.planning.solve import solve

__all__ = ["ROLLOUT_SCHEMA", "Rollout", "rollout"]

logger = logging.getLogger(__name__)

#: Version tag of :meth:`Rollout.metrics`.
ROLLOUT_SCHEMA = "evplanner.rollout/1"
#: Most years one rollout may plan.
MAX_YEARS = 30
#: Station id prefix of a site planned in an earlier year of the rollout.
_PLANNED = "planned:"


@dataclass(frozen=True)
class Rollout:
    """New sites year by year, each year on its own forecast demand.

    Attributes
    ----------
    scenario : Scenario
        The question (``new_sites`` per year; ``year`` is set per plan).
    years : tuple of int
    plans : tuple of Plan
        One per year: today's sites and all earlier years' sites held fixed.
    sites : pandas.DataFrame
        :data:`~evplanner.planning.SITE_COLUMNS` plus ``year`` (the year a new site
        is built; empty for today's sites), with the loads of the last year.
    created_utc : str
    """

    scenario: Scenario
    years: tuple[int, ...]
    plans: tuple[Plan, ...] = field(repr=False)
    sites: pd.DataFrame = field(repr=False)
    created_utc: str = ""

    def per_year(self) -> pd.DataFrame:
        """One row per year: ``year``, ``new_sites`` (that year), ``sites_built``
        (all years so far), ``total_vehicles``, ``objective_m``,
        ``mean_distance_m``, ``coverage_share``, ``today_coverage_share`` (today's
        sites alone on that year's demand)."""
        rows = []
        for year, plan in zip(self.years, self.plans, strict=True):
            c, today = plan.coverage, plan.today
            rows.append({
                "year": year, "new_sites": c.n_new_sites,
                "sites_built": int((self.sites["year"] <= year).sum()),
                "total_vehicles": c.total_vehicles, "objective_m": c.objective_m,
                "mean_distance_m": c.mean_distance_m,
                "coverage_share": c.coverage_share,
                "today_coverage_share": None if today is None
                else _today_share(plan),
            })  # fmt: skip
        return pd.DataFrame(rows)

    def metrics(self) -> dict[str, Any]:
        """Plain JSON (schema :data:`ROLLOUT_SCHEMA`): ``scenario``, ``years``
        (each year's row of :meth:`per_year` and its coverage curve),
        ``load_report`` (of the first year), ``notes`` and ``run``."""
        from evplanner import __version__

        years = []
        for record, plan in zip(self.per_year().to_dict(orient="records"),
                                self.plans, strict=True):  # fmt: skip
            record["coverage_curve"] = plan.coverage.to_dict()["coverage_curve"]
            years.append(record)
        first = self.plans[0]
        return json_ready({
            "schema": ROLLOUT_SCHEMA,
            "scenario": self.scenario.to_dict(),
            "years": years,
            "radius_m": self.scenario.radius_m,
            "crs": first.crs.to_string(),
            "load_report": first.metrics()["load_report"],
            "notes": sorted({n for plan in self.plans for n in plan.notes}),
            "run": {"created_utc": self.created_utc, "evplanner_version": __version__,
                    "seconds": sum(p.timings["total"] for p in self.plans)},
        })  # fmt: skip


def _today_share(plan: Plan) -> float:
    """Coverage by the sites that existed before the rollout, on this year's demand.

    ``plan.today`` holds today's sites and earlier years' sites: this is the
    share of the original network only, recomputed from the plan's demand when it
    is in memory (it always is: forecasts run in memory).
    """
    from evplanner.metrics import coverage

    original = plan.sites[
        (plan.sites["kind"] == "existing")
        & ~plan.sites["station_id"].str.startswith(_PLANNED)
    ]
    if plan.demand is None or original.empty:
        return float("nan")
    d = plan.demand
    c = coverage(d[["x_m", "y_m"]].to_numpy(), d["weight"].to_numpy(),
                 original[["x_m", "y_m"]].to_numpy(), n_new_sites=0,
                 radius_m=plan.scenario.radius_m)  # fmt: skip
    return c.coverage_share


def _as_existing(plan: Plan, year: int) -> pd.DataFrame:
    """A year's new sites as station rows, to hold them fixed in later years."""
    new = plan.sites[plan.sites["kind"] == "new"]
    rows = pd.DataFrame({c: pd.Series([pd.NA] * len(new), dtype="object")
                         for c in STATION_COLUMNS})  # fmt: skip
    rows["station_id"] = [f"{_PLANNED}{year}-{sid}" for sid in new["site_id"]]
    rows["name"] = [f"new site {year} {sid}" for sid in new["site_id"]]
    rows["lon"] = new["lon"].to_numpy()
    rows["lat"] = new["lat"].to_numpy()
    # Built as sized: its ports, split between Level 2 and DC fast in the ratio
    # model's mix (the queue model counts all ports alike), so a later year does
    # not see last year's sites as overloaded stations without ports.
    ports = new["ports"].to_numpy("int64")
    s = plan.scenario
    dc_share = s.vehicles_per_l2_port / (s.vehicles_per_l2_port
                                         + s.vehicles_per_dc_port)  # fmt: skip
    dc = np.rint(ports * dc_share).astype("int64")
    rows["level1_ports"] = 0
    rows["level2_ports"] = ports - dc
    rows["dc_fast_ports"] = dc
    return rows


def rollout(
    scenario: Scenario,
    years: Sequence[int],
    *,
    vehicles=None,
    existing: ExistingSites | None = None,
    candidates: CandidateSites | None = None,
    progress: Callable[[int, int, Plan], None] | None = None,
) -> Rollout:
    """Plan ``scenario.new_sites`` new sites for each of ``years``, in order.

    Parameters
    ----------
    scenario : Scenario
        Demand, filters, existing sites, radius, seed; ``new_sites`` is the number
        per year. Its ``year`` is ignored (each plan takes its own).
    years : sequence of int
        Years to plan, ascending, distinct (at most :data:`MAX_YEARS`).
    vehicles : (pandas.DataFrame, LoadReport), optional
        The vehicles already loaded (the app's store); read once otherwise.
    existing : ExistingSites, optional
        Today's sites, already loaded.
    candidates : CandidateSites, optional
        The scenario's candidate sites, already loaded (the same every year).
    progress : callable, optional
        ``progress(done, total, plan)`` after each year.

    Returns
    -------
    Rollout

    Raises
    ------
    InputError
        Years not ascending or too many, or a scenario a forecast cannot serve.

    Examples
    --------
    >>> r = rollout(Scenario(new_sites=2, counties=["Whitman"]), [2024, 2026])
    >>> r.sites.loc[r.sites["kind"] == "new", "year"].tolist()
    [2024, 2024, 2026, 2026]
    """
    years = [int(y) for y in years]
    if not years or len(years) > MAX_YEARS or years != sorted(set(years)):
        raise InputError(f"expected 1 to {MAX_YEARS} distinct years in ascending "
                         f"order, got {years[:10]}", field="year")  # fmt: skip
    for year in years:
        scenario.replace(year=year)  # validates every year before any work
    if vehicles is None:
        paths = expand_inputs(scenario.demand)
        if len(paths) != 1:
            raise InputError("a rollout reads one vehicle file", field="demand")
        vehicles = load_vehicles(paths[0], keep_out_of_area=scenario.keep_out_of_area)
    if existing is None:
        existing = load_existing(scenario)
    if candidates is None:
        candidates = load_candidates(scenario)
    fixed = existing.stations
    plans = []
    for done, year in enumerate(years, start=1):
        s_year = scenario.replace(year=year)
        demand = load_demand(s_year, vehicles=vehicles)
        held = ExistingSites(fixed.reset_index(drop=True), existing.report,
                             existing.source)  # fmt: skip
        plan = solve(s_year, demand=demand, existing=held, candidates=candidates)
        plans.append(plan)
        fixed = pd.concat([fixed, _as_existing(plan, year)], ignore_index=True)
        logger.info("rollout %d: %s", year, plan.summary())
        if progress is not None:
            progress(done, len(years), plan)
    return Rollout(
        scenario,
        tuple(years),
        tuple(plans),
        _rollout_sites(plans, years),
        datetime.now(UTC).isoformat(timespec="seconds"),
    )


def _rollout_sites(plans, years) -> pd.DataFrame:
    """The last plan's sites with the year each new site is built.

    Earlier years' sites are stations in the last plan; their name and
    candidate id (blank off candidates) come from the plan that placed them.
    """
    last, last_year = plans[-1], years[-1]
    placed = {}
    for plan, y in zip(plans, years, strict=True):
        new = plan.sites[plan.sites["kind"] == "new"]
        keys = [f"{y}-{sid}" for sid in new["site_id"]]  # the tags held below
        placed.update(zip(keys, zip(new["name"], new["candidate_id"], strict=True),
                          strict=True))  # fmt: skip
    sites = last.sites.copy()
    year = pd.array([pd.NA] * len(sites), dtype="Int64")
    planned = sites["station_id"].str.startswith(_PLANNED)
    tags = sites.loc[planned, "station_id"].str.removeprefix(_PLANNED)
    year[planned.to_numpy()] = tags.str.split("-").str[0].astype(int).to_numpy()
    new = (sites["kind"] == "new").to_numpy()
    year[new] = last_year
    sites.loc[planned, "site_id"] = tags.to_numpy()
    sites.loc[planned, ["kind", "station_id"]] = ["new", ""]
    sites.loc[planned, "name"] = [placed[t][0] for t in tags]
    sites.loc[planned, "candidate_id"] = [placed[t][1] for t in tags]
    sites.loc[new, "site_id"] = [
        f"{last_year}-{sid}" for sid in sites.loc[new, "site_id"]
    ]
    sites["year"] = year
    # New sites first, by year, then today's sites.
    order = sites["kind"].map({"new": 0, "existing": 1})
    sites = sites.assign(_o=order).sort_values(["_o", "year"], kind="stable")
    return sites.drop(columns="_o").reset_index(drop=True)[[*SITE_COLUMNS, "year"]]
