"""Sizing in the plan: ports, load per port, overloaded stations, sized new sites.

Uncapacitated plans size every site by the vehicles its nearest-site demand brings;
capacity-aware plans (``capacitated=True``) by the flows of the capacitated
K-Medians core.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from evplanner.data import DEFAULT_STATION_PORTS, PORTS_ASSUMED
from evplanner.errors import InputError
from evplanner.planning import Scenario, load_existing, report_html, solve
from evplanner.planning.plan import ADD_PORTS, BUILD_NEW_SITE, SITE_COLUMNS
from evplanner.planning.writers import metrics_json
from evplanner.sizing import SizingModel, mix_vehicles_per_port

SIZING_COLUMNS = (
    "load_vehicles", "ports", "capacity_vehicles", "ports_needed", "ports_to_add",
    "vehicles_per_port", "overloaded", "action",
)  # fmt: skip


@pytest.fixture(scope="module")
def king_plan():
    """Five new sites in King County with today's public stations held fixed."""
    return solve(Scenario(new_sites=5, counties=["King"], existing="public"))


def _check_sizing(plan):
    """What every plan's sizing must satisfy, whatever the model."""
    sites = plan.sites
    k = plan.n_new_sites
    new, existing = sites.iloc[:k], sites.iloc[k:]
    stations = load_existing(plan.scenario).stations
    model = plan.scenario.sizing_model
    # Existing sites keep their ports; new sites get the ports their load needs.
    assert (
        existing["ports"].tolist()
        == (
            stations["level1_ports"]
            + stations["level2_ports"]
            + stations["dc_fast_ports"]
        ).tolist()
    )
    assert (new["ports"] >= 1).all() and (new["ports"] == new["ports_needed"]).all()
    assert (new["capacity_vehicles"] >= new["load_vehicles"] - 1e-9).all()
    assert (new["action"] == BUILD_NEW_SITE).all() and not new["overloaded"].any()
    # Overloaded exactly where the load exceeds the capacity; the ports to add
    # cover the excess.
    over = existing["load_vehicles"] > existing["capacity_vehicles"] * (1 + 1e-9)
    assert existing["overloaded"].tolist() == over.tolist()
    assert ((existing["ports_to_add"] > 0) == over).all()
    assert (existing["action"] == np.where(over, ADD_PORTS, "")).all()
    assert (existing["ports_needed"] == existing["ports"]
            + existing["ports_to_add"]).all()  # fmt: skip
    grown = model.capacity_vehicles(
        0, existing["ports"] + existing["ports_to_add"], 0
    ) if model.method == "queue" else (
        existing["capacity_vehicles"] + existing["ports_to_add"]
        * mix_vehicles_per_port(model.vehicles_per_l2_port,
                                model.vehicles_per_dc_port)
    )  # fmt: skip
    assert (np.asarray(grown) >= existing["load_vehicles"] - 1e-6).all()
    per = sites["load_vehicles"] / sites["ports"]
    both = per.notna() & sites["vehicles_per_port"].notna()
    np.testing.assert_allclose(sites["vehicles_per_port"][both], per[both])
    # The metrics agree with the table.
    s = plan.metrics()["sizing"]
    assert s["n_overloaded"] == int(existing["overloaded"].sum())
    assert s["ports_to_add"] == int(existing["ports_to_add"].sum())
    assert s["new_site_ports_needed"] == int(new["ports"].sum())
    assert s["existing_ports"] == int(existing["ports"].sum())
    assert s["load_vehicles"] == pytest.approx(sites["load_vehicles"].sum())
    cap = model.site_capacity_vehicles(plan.scenario.new_site_ports)
    assert s["new_site_capacity_vehicles"] == pytest.approx(cap)
    assert s["suggested_extra_sites"] == math.ceil(
        s["unserved_vehicles"] / cap - 1e-9
    ) or (s["unserved_vehicles"] == 0 and s["suggested_extra_sites"] == 0)
    return s


# --------------------------------------------------------------------------- plans


def test_site_table_has_the_sizing_columns(king_plan):
    assert tuple(king_plan.sites.columns) == SITE_COLUMNS
    assert set(SIZING_COLUMNS) <= set(SITE_COLUMNS)


def test_uncapacitated_plan_sizes_by_nearest_site(king_plan):
    s = _check_sizing(king_plan)
    sites = king_plan.sites
    # Nearest-site assignment: the load is the vehicles served.
    np.testing.assert_array_equal(sites["load_vehicles"], sites["vehicles_served"])
    # King County with today's stations: some are overloaded and need ports.
    assert s["n_overloaded"] > 10 and s["ports_to_add"] > s["n_overloaded"]
    # Unserved = the vehicles above capacity at the overloaded stations.
    e = sites[sites["kind"] == "existing"]
    excess = (e["load_vehicles"] - e["capacity_vehicles"]).clip(lower=0).sum()
    assert s["unserved_vehicles"] == pytest.approx(excess)
    assert s["suggested_extra_sites"] > 0 and not s["capacitated"]
    assert "NREL/TP-5400-85654" in s["model"]["source"]


def test_queue_model_sizes_differently(king_plan):
    queue = solve(king_plan.scenario.replace(sizing="queue"), previous=king_plan)
    s = _check_sizing(queue)
    assert s["model"]["method"] == "queue"
    # The same sites and loads, other ports.
    np.testing.assert_array_equal(queue.sites["load_vehicles"],
                                  king_plan.sites["load_vehicles"])  # fmt: skip
    assert not queue.sites["ports_needed"].equals(king_plan.sites["ports_needed"])
    # A stricter waiting target never needs fewer ports.
    strict = solve(queue.scenario.replace(max_wait_probability=0.05),
                   previous=queue)  # fmt: skip
    assert (strict.sites["ports_needed"] >= queue.sites["ports_needed"]).all()
    assert (strict.sites["ports_needed"] > queue.sites["ports_needed"]).any()


def test_more_vehicles_per_port_means_fewer_overloaded(king_plan):
    loose = solve(king_plan.scenario.replace(vehicles_per_l2_port=66.0,
                                             vehicles_per_dc_port=362.0),
                  previous=king_plan)  # fmt: skip
    s0, s1 = king_plan.sizing, _check_sizing(loose)
    assert s1["n_overloaded"] < s0["n_overloaded"]
    assert s1["new_site_ports_needed"] < s0["new_site_ports_needed"]


def test_metrics_json_and_report_carry_the_sizing(king_plan):
    metrics = json.loads(metrics_json(king_plan))
    s = metrics["sizing"]
    assert s["n_overloaded"] == king_plan.sizing["n_overloaded"] > 0
    html = report_html(king_plan)
    assert "Sizing: ports and capacity" in html
    assert 'id="overloaded"' in html and 'id="sized-new-sites"' in html
    worst = king_plan.sites.sort_values(["ports_to_add", "load_vehicles"],
                                        ascending=False).iloc[0]  # fmt: skip
    assert f"<td>{worst['site_id']}</td>" in html
    assert "NREL/TP-5400-85654" in html and "Fact of the Week #1334" in html
    for site_id in king_plan.sites["site_id"][: king_plan.n_new_sites]:
        assert f"<td>{site_id}</td>" in html


def test_station_file_keeps_its_ports(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("name,lon,lat,level2_ports,dc_fast_ports\n"
                    "A,-117.42,47.66,4,2\nB,-117.40,47.65,,\n")  # fmt: skip
    scenario = Scenario(new_sites=2, counties=["Spokane"], existing=str(path))
    existing = load_existing(scenario)
    assert existing.stations["level2_ports"].tolist() == [4, 2]
    assert existing.report.assumed == {PORTS_ASSUMED: 1}
    plan = solve(scenario, existing=existing)
    e = plan.sites[plan.sites["kind"] == "existing"]
    assert e["ports"].tolist() == [6, sum(DEFAULT_STATION_PORTS.values())]
    assert e["capacity_vehicles"].tolist() == pytest.approx(
        SizingModel().capacity_vehicles(0, [4, 2], [2, 0]).tolist()
    )
    assert plan.metrics()["load_report"]["existing"]["assumed"] == {PORTS_ASSUMED: 1}
    _check_sizing(plan)


def test_plan_without_existing_sites_sizes_new_ones():
    plan = solve(Scenario(new_sites=3, counties=["Whitman"]))
    s = _check_sizing(plan)
    assert s["n_overloaded"] == 0 and s["unserved_vehicles"] == 0
    assert s["existing_vehicles_per_port"]["median"] is None
    assert (plan.sites["action"] == BUILD_NEW_SITE).all()


# ---------------------------------------------------------------------- capacitated


def test_capacitated_plan_respects_capacities():
    scenario = Scenario(new_sites=4, counties=["Whitman"], existing="public",
                        capacitated=True, new_site_ports=40)  # fmt: skip
    plan = solve(scenario)
    s = _check_sizing(plan)
    sites = plan.sites
    assert s["capacitated"] and s["served_vehicles"] == pytest.approx(
        plan.coverage.total_vehicles
    )
    assert sites["load_vehicles"].sum() == pytest.approx(plan.coverage.total_vehicles)
    # No station above its capacity, none to expand; the new sites within theirs.
    e = sites[sites["kind"] == "existing"]
    assert (e["load_vehicles"] <= e["capacity_vehicles"] * (1 + 1e-6)).all()
    assert s["n_overloaded"] == 0 and s["unserved_vehicles"] == 0
    new = sites[sites["kind"] == "new"]
    cap = scenario.sizing_model.site_capacity_vehicles(40)
    assert (new["load_vehicles"] <= cap * (1 + 1e-6)).all()
    assert (new["ports"] <= 40).all()
    assert s["mean_distance_m"] >= plan.coverage.mean_distance_m - 1e-6


def test_capacitated_plan_is_reused_when_only_the_radius_changes():
    scenario = Scenario(new_sites=3, counties=["Whitman"], existing="public",
                        capacitated=True, new_site_ports=20)  # fmt: skip
    plan = solve(scenario)
    again = solve(scenario.replace(radius_m=2_000.0), previous=plan)
    assert again.n_iter == 0  # not refitted
    assert again.sizing["capacitated"]
    pd.testing.assert_frame_equal(again.sites[list(SIZING_COLUMNS)],
                                  plan.sites[list(SIZING_COLUMNS)])  # fmt: skip
    for name in ("objective_m", "served_vehicles", "unserved_vehicles"):
        assert again.sizing[name] == plan.sizing[name]
    # Other capacities are another plan.
    other = solve(scenario.replace(new_site_ports=30), previous=plan)
    assert other.n_iter > 0


def test_capacitated_shortfall_is_reported_not_raised():
    # One port per new site and no existing sites: far too little capacity.
    scenario = Scenario(new_sites=2, counties=["Whitman"], capacitated=True,
                        new_site_ports=1)  # fmt: skip
    plan = solve(scenario)
    s = plan.sizing
    total = plan.coverage.total_vehicles
    cap = scenario.sizing_model.site_capacity_vehicles(1)
    assert s["stated_capacity_vehicles"] == pytest.approx(2 * cap)
    assert s["unserved_vehicles"] == pytest.approx(total - 2 * cap)
    assert s["suggested_extra_sites"] == math.ceil((total - 2 * cap) / cap)
    assert s["served_vehicles"] == pytest.approx(total)
    assert (plan.sites["ports"] > 1).all()  # grown to carry the demand


def test_capacitated_shortfall_with_stations_keeps_them_within_capacity(tmp_path):
    path = tmp_path / "two.csv"
    path.write_text("name,lon,lat,level2_ports\nA,-117.18,46.73,1\n"
                    "B,-117.04,46.73,2\n")  # fmt: skip
    scenario = Scenario(new_sites=1, counties=["Whitman"], existing=str(path),
                        capacitated=True, new_site_ports=1)  # fmt: skip
    plan = solve(scenario)
    s = _check_sizing(plan)
    e = plan.sites[plan.sites["kind"] == "existing"]
    assert e["capacity_vehicles"].tolist() == [16.5, 33.0]
    # The stations are full, not over: the new site carries the rest (the relaxed
    # new site has 1e-6 relative headroom, so the stations may keep a sliver).
    assert (e["load_vehicles"] <= e["capacity_vehicles"] * (1 + 1e-6)).all()
    np.testing.assert_allclose(e["load_vehicles"], e["capacity_vehicles"], rtol=1e-4)
    total = plan.coverage.total_vehicles
    stated = 16.5 + 33.0 + scenario.sizing_model.site_capacity_vehicles(1)
    assert s["unserved_vehicles"] == pytest.approx(total - stated)
    assert s["n_overloaded"] == 0 and s["suggested_extra_sites"] > 0


def _two_stations(tmp_path):
    """Two small stations in Pullman (16.5 and 33 vehicles): capacities that bind."""
    path = tmp_path / "two.csv"
    path.write_text("name,lon,lat,level2_ports\nA,-117.18,46.73,1\n"
                    "B,-117.04,46.73,2\n")  # fmt: skip
    return str(path)


def _on_candidates(plan, candidates) -> np.ndarray:
    """Row of ``candidates`` at each new site (asserting there is one)."""
    new = plan.sites.loc[plan.sites["kind"] == "new", ["lon", "lat"]].to_numpy()
    table = candidates.sites[["lon", "lat"]].to_numpy()
    gap = np.abs(table[None, :, :] - new[:, None, :]).sum(axis=2)
    assert (gap.min(axis=1) < 1e-6).all(), "a new site is not a candidate"
    return gap.argmin(axis=1)


@pytest.mark.parametrize("snap", [False, True])
def test_capacitated_siting_among_candidates(tmp_path, snap):
    from evplanner.planning.inputs import load_candidates

    # Candidates a little off the tract centres (the demand locations), so the
    # free sites, the chosen candidates and the moved ones differ.
    tracts = load_candidates(Scenario(counties=["Whitman"], candidates="tracts"))
    off = tracts.sites.iloc[::2]
    path = tmp_path / "cands.csv"
    pd.DataFrame({"name": off["candidate_id"].astype(str) + "-east",
                  "lon": off["lon"] + 0.004, "lat": off["lat"] - 0.003}
                 ).to_csv(path, index=False)  # fmt: skip
    scenario = Scenario(new_sites=3, counties=["Whitman"],
                        existing=_two_stations(tmp_path), capacitated=True,
                        new_site_ports=3, candidates=str(path),
                        snap=snap)  # fmt: skip
    plan = solve(scenario)
    candidates = load_candidates(scenario)
    s = _check_sizing(plan)
    sites = plan.sites
    new, e = sites[sites["kind"] == "new"], sites[sites["kind"] == "existing"]
    total = plan.coverage.total_vehicles
    cap = scenario.sizing_model.site_capacity_vehicles(3)
    # Enough capacity in all (2 x 24.75 + 3 x 83.7 > 262 vehicles): every
    # vehicle served, no site above its capacity, and the capacities bind.
    assert s["unserved_vehicles"] == 0 and s["served_vehicles"] == pytest.approx(total)
    assert sites["load_vehicles"].sum() == pytest.approx(total)
    assert (e["load_vehicles"] <= e["capacity_vehicles"] * (1 + 1e-6)).all()
    assert (new["load_vehicles"] <= cap * (1 + 1e-6)).all()
    assert s["n_overloaded"] == 0 and (new["ports"] <= 3).all()
    full = sites["load_vehicles"] >= sites["capacity_vehicles"] * (1 - 1e-6)
    assert full.sum() >= 2
    # The new sites are candidates, named by the candidate id, as without
    # capacities; the summary has the same fields as the uncapacitated one.
    rows = _on_candidates(plan, candidates)
    ids = candidates.sites["candidate_id"].astype(str).to_numpy()
    assert new["candidate_id"].tolist() == ids[rows].tolist()
    assert new["candidate_id"].tolist() == ids[plan.chosen_candidates].tolist()
    summary = plan.candidates
    uncapacitated = solve(scenario.replace(capacitated=False)).candidates
    assert set(summary) == set(uncapacitated)
    assert summary["snap"] is snap and summary["n_candidates"] == len(candidates)
    kept = summary["snapped_objective_m" if snap else "discrete_objective_m"]
    assert s["objective_m"] == pytest.approx(kept, rel=1e-9)
    assert summary["snap_cost_share"] == pytest.approx(
        summary["snapped_objective_m"] / summary["discrete_objective_m"] - 1.0
    )
    # Capacities cost distance: the capacity-aware objective (flows x L1) is
    # at least the nearest-site one of the same sites.
    assert s["objective_m"] >= plan.coverage.objective_m - 1e-6


def test_cli_capacitated_with_candidates(tmp_path, capsys):
    from evplanner.cli import main

    sites_csv, metrics = tmp_path / "s.csv", tmp_path / "m.json"
    code = main(["solve", "--k", "3", "--county", "Whitman", "--candidates",
                 "tracts", "--capacitated", "--new-site-ports", "3", "--existing",
                 _two_stations(tmp_path), "--quiet", "--out", str(sites_csv),
                 "--metrics", str(metrics)])  # fmt: skip
    _, err = capsys.readouterr()
    assert code == 0, err
    m = json.loads(metrics.read_text())
    assert m["sizing"]["capacitated"] and m["sizing"]["unserved_vehicles"] == 0
    assert m["candidates"]["objective"] == "median"
    sites = pd.read_csv(sites_csv, dtype={"candidate_id": "string"})
    new = sites[sites["kind"] == "new"]
    assert len(new) == 3
    assert new["candidate_id"].str.fullmatch(r"53075\d{6}").all()  # Whitman tracts
    assert (sites["load_vehicles"] <= sites["capacity_vehicles"] * (1 + 1e-6)).all()


@pytest.mark.slow
@pytest.mark.cluster
def test_capacitated_candidates_on_a_local_cluster_gives_the_in_memory_plan(tmp_path):
    from evplanner.data import load_vehicles
    from evplanner.demand import demand_points, synthesize_demand
    from evplanner.planning import dask_client

    vehicles, _ = load_vehicles()
    path = tmp_path / "demand.parquet"
    synthesize_demand(demand_points(vehicles), 3_000, seed=2, path=path,
                      chunk_rows=1_000)  # fmt: skip
    scenario = Scenario(new_sites=4, demand=[str(path)], seed=5, existing="dc_fast",
                        candidates="tracts", capacitated=True,
                        new_site_ports=2)  # fmt: skip
    memory = solve(scenario)
    with dask_client(workers=2) as client:
        chunked = solve(scenario, client=client, blocksize="20kB")
    assert chunked.n_partitions >= 2
    np.testing.assert_array_equal(chunked.chosen_candidates, memory.chosen_candidates)
    for name in ("discrete_objective_m", "snapped_objective_m", "free_objective_m"):
        assert chunked.candidates[name] == pytest.approx(memory.candidates[name],
                                                         rel=1e-9), name  # fmt: skip
    np.testing.assert_allclose(
        chunked.sites["load_vehicles"],
        memory.sites["load_vehicles"],
        rtol=1e-9,
        atol=1e-9,
    )
    new = memory.sites[memory.sites["kind"] == "new"]
    cap = scenario.sizing_model.site_capacity_vehicles(2)
    assert (new["load_vehicles"] <= cap * (1 + 1e-6)).all()


# --------------------------------------------------------------------------- scenario


@pytest.mark.parametrize(
    ("changes", "field", "expected"),
    [
        ({"sizing": "fifo"}, "sizing", "one of ('ratio', 'queue')"),
        ({"vehicles_per_l2_port": 0}, "vehicles_per_l2_port", "a finite number > 0"),
        ({"vehicles_per_dc_port": math.inf}, "vehicles_per_dc_port", "finite"),
        ({"sessions_per_vehicle_day": "x"}, "sessions_per_vehicle_day", "> 0"),
        ({"session_hours": -1}, "session_hours", "a finite number > 0"),
        ({"hours_per_day": 30}, "hours_per_day", "hours from 0 to 24"),
        ({"max_wait_probability": 1.0}, "max_wait_probability", "> 0 and < 1"),
        ({"max_wait_probability": None}, "max_wait_probability", "a queue target"),
        ({"max_mean_wait_hours": 0.5}, "max_wait_probability", "None with a mean"),
        ({"new_site_ports": 0}, "new_site_ports", "an integer between 1 and 1000"),
        ({"new_site_ports": 2.5}, "new_site_ports", "an integer"),
        ({"capacitated": True, "weighting": "range"}, "capacitated", "vehicles"),
        ({"capacitated": True, "algorithm": "kmeans"}, "capacitated", "K-Means"),
        (
            {"capacitated": True, "candidates": "tracts", "objective": "coverage"},
            "capacitated",
            "coverage",
        ),
    ],
)
def test_sizing_fields_are_validated(changes, field, expected):
    with pytest.raises(InputError) as info:
        Scenario(**changes)
    assert info.value.field == field and expected in info.value.message


def test_sizing_fields_in_the_scenario():
    s = Scenario(max_mean_wait_hours=0.25, max_wait_probability=None, sizing="queue")
    assert s.sizing_model.max_mean_wait_hours == 0.25
    assert s.to_dict()["sizing"] == "queue"
    # The sizing model moves sites only when siting is capacity-aware.
    base = Scenario()
    assert base.replace(vehicles_per_l2_port=50.0).sites_key == base.sites_key
    cap = base.replace(capacitated=True)
    assert cap.sites_key != base.sites_key
    assert cap.replace(new_site_ports=20).sites_key != cap.sites_key


def test_site_table_round_trips_as_csv(king_plan, tmp_path):
    from evplanner.planning import write_plan

    write_plan(king_plan, sites=tmp_path / "s.csv")
    back = pd.read_csv(tmp_path / "s.csv", keep_default_na=False,
                       na_values=[""], dtype={"action": str})  # fmt: skip
    assert back["overloaded"].dtype == bool
    assert set(back["action"].fillna("")) <= {ADD_PORTS, BUILD_NEW_SITE, ""}
    assert back["ports"].dtype.kind == "i"


def test_sweep_reports_the_sizing_of_each_plan(king_plan):
    from evplanner.planning import sweep

    table = sweep(king_plan.scenario, [5])
    row = table.iloc[0]
    for name in ("new_site_ports_needed", "n_overloaded", "ports_to_add",
                 "unserved_vehicles", "suggested_extra_sites"):  # fmt: skip
        assert row[name] == pytest.approx(king_plan.sizing[name]), name


def test_rollout_holds_earlier_sites_with_their_ports():
    from evplanner.planning.rollout import rollout

    r = rollout(Scenario(new_sites=2, counties=["Whitman"]), [2024, 2026])
    first, second = r.plans
    built = first.sites[first.sites["kind"] == "new"]
    held = second.sites[second.sites["station_id"].str.startswith("planned:")]
    # Held with the ports they were sized with in their year, not as bare points.
    assert held["ports"].tolist() == built["ports"].tolist()
    assert (held["capacity_vehicles"] > 0).all()
