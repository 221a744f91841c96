"""Sites on real places: candidate sets, both objectives, snapping, bad input."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from shapely.geometry import LineString, Point

from evplanner.cli import main
from evplanner.data import load_candidates as read_candidates
from evplanner.errors import InputError
from evplanner.planning import Scenario, load_demand, solve
from evplanner.planning.inputs import load_candidates

SPOKANE = dict(counties=["Spokane"], existing="dc_fast")


@pytest.fixture(scope="module")
def demand():
    return load_demand(Scenario(counties=["Spokane"]))


def _members(plan, candidates) -> bool:
    chosen = plan.sites.loc[plan.sites["kind"] == "new", ["lon", "lat"]].to_numpy()
    table = candidates.sites[["lon", "lat"]].to_numpy()
    return all(np.abs(table - row).sum(axis=1).min() < 1e-6 for row in chosen)


@pytest.mark.parametrize("objective", ["median", "coverage"])
@pytest.mark.parametrize("kind", ["tracts", "stations"])
def test_chosen_sites_are_candidates(demand, kind, objective):
    scenario = Scenario(new_sites=4, candidates=kind, objective=objective, **SPOKANE)
    plan = solve(scenario, demand=demand)
    candidates = load_candidates(scenario)
    assert _members(plan, candidates)
    ids = plan.sites.loc[plan.sites["kind"] == "new", "candidate_id"]
    assert set(ids) <= set(candidates.sites["candidate_id"].astype(str))
    assert plan.candidates["objective"] == objective
    assert plan.metrics()["candidates"]["n_candidates"] == len(candidates)


def test_coverage_objective_covers_at_least_as_much(demand):
    base = Scenario(new_sites=4, candidates="tracts", radius_m=3000.0, **SPOKANE)
    median = solve(base, demand=demand)
    cover = solve(base.replace(objective="coverage"), demand=demand)
    assert cover.coverage.coverage_share >= median.coverage.coverage_share - 1e-12
    assert median.coverage.objective_m <= cover.coverage.objective_m + 1e-6


def test_snap_cost_is_reported_against_the_discrete_choice():
    # ZIP demand: the free medians sit on ZIP centroids, the candidates are tracts.
    scenario = Scenario(new_sites=5, candidates="tracts", demand_at="zip",
                        counties=["King"])  # fmt: skip
    plan = solve(scenario)
    summary = plan.candidates
    assert summary["free_objective_m"] > 0 and summary["snapped_duplicates"] >= 0
    assert summary["snapped_objective_m"] >= summary["discrete_objective_m"] * (
        1 - 1e-6
    )  # the local search is at least as good as snapping here
    assert summary["snap_cost_share"] == pytest.approx(
        summary["snapped_objective_m"] / summary["discrete_objective_m"] - 1
    )
    snapped = solve(scenario.replace(snap=True))
    assert snapped.coverage.objective_m == pytest.approx(
        summary["snapped_objective_m"], rel=1e-9
    )
    assert any("snap" in note for note in plan.notes)


def test_candidate_files_csv_geojson_geoparquet(tmp_path, demand):
    points = [(-117.42, 47.66), (-117.35, 47.70), (-117.25, 47.65), (-117.55, 47.60)]
    frame = gpd.GeoDataFrame(
        {"name": ["A", "B", "C", "D"], "max_ports": [8, 4, 6, 2]},
        geometry=[Point(p) for p in points],
        crs=4326,
    )
    # The same places in a projected CRS: converted to lon/lat on reading.
    frame.to_crs(32611).to_file(tmp_path / "c.geojson", driver="GeoJSON")
    frame.to_parquet(tmp_path / "c.parquet")
    pd.DataFrame({"name": frame["name"], "lon": [p[0] for p in points],
                  "lat": [p[1] for p in points]}).to_csv(tmp_path / "c.csv",
                                                        index=False)  # fmt: skip
    chosen = []
    for name in ("c.csv", "c.geojson", "c.parquet"):
        plan = solve(Scenario(new_sites=2, candidates=str(tmp_path / name),
                              counties=["Spokane"]), demand=demand)  # fmt: skip
        new = plan.sites[plan.sites["kind"] == "new"]
        chosen.append(sorted(np.round(new["lon"].to_numpy(), 6)))
        # Each new site carries its candidate's name, looked up by place.
        by_lon = dict(zip(np.round([p[0] for p in points], 6), frame["name"],
                          strict=True))  # fmt: skip
        assert new["name"].tolist() == [by_lon[x] for x in np.round(new["lon"], 6)]
    assert chosen[0] == chosen[1] == chosen[2]
    sites, _ = read_candidates(tmp_path / "c.geojson")
    assert sites["max_ports"].tolist() == [8, 4, 6, 2]


def test_bad_candidate_input_gets_a_clear_error(tmp_path, demand):
    def err(path):
        with pytest.raises(InputError) as caught:
            solve(Scenario(new_sites=3, candidates=str(path), counties=["Spokane"]),
                  demand=demand)  # fmt: skip
        return str(caught.value)

    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert "empty.csv" in err(empty) and "empty" in err(empty)
    few = tmp_path / "few.csv"
    few.write_text("lon,lat\n-117.4,47.6\n-117.3,47.7\n")
    assert "2 candidate sites, fewer than the 3 new sites" in err(few)
    nan = tmp_path / "nan.csv"
    nan.write_text("lon,lat\n-117.4,nan\nx,47.7\n")
    assert "no usable candidate rows" in err(nan) and "nan.csv" in err(nan)
    no_crs = gpd.GeoDataFrame(geometry=[Point(-117.4, 47.6)] * 4)
    no_crs.to_parquet(tmp_path / "nocrs.parquet")
    assert "no CRS" in err(tmp_path / "nocrs.parquet")
    lines = gpd.GeoDataFrame(geometry=[LineString([(0, 0), (1, 1)])], crs=4326)
    lines.to_file(tmp_path / "lines.geojson", driver="GeoJSON")
    assert "expected Point geometries" in err(tmp_path / "lines.geojson")
    # Metres written as if they were degrees: out of range, every row reported.
    metres = tmp_path / "metres.csv"
    metres.write_text("lon,lat\n470000,5270000\n")
    assert "coordinates out of range" in err(metres)


def test_scenario_rules_for_candidates():
    with pytest.raises(InputError, match="candidates: expected a candidate set"):
        Scenario(objective="coverage")
    with pytest.raises(InputError, match="snap"):
        Scenario(snap=True)
    with pytest.raises(InputError, match="algorithm"):
        Scenario(candidates="tracts", algorithm="kmeans")


def test_cli_candidates_and_objective(tmp_path, capsys):
    code = main(["solve", "--k", "3", "--county", "Spokane", "--candidates", "tracts",
                 "--objective", "coverage", "--radius-km", "3", "--quiet",
                 "--out", str(tmp_path / "s.csv"), "--metrics",
                 str(tmp_path / "m.json")])  # fmt: skip
    _, err = capsys.readouterr()
    assert code == 0, err
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["candidates"]["objective"] == "coverage"
    sites = pd.read_csv(tmp_path / "s.csv", dtype={"candidate_id": "string"})
    assert sites["candidate_id"].str.fullmatch(r"53063\d{6}").all()  # Spokane tracts
    assert main(["solve", "--k", "3", "--objective", "coverage",
                 "--out", str(tmp_path / "x.csv")]) == 2  # fmt: skip
    assert "--candidates: expected a candidate set" in capsys.readouterr()[1]
