"""solve, sweep and the K-Means comparison on the bundled data (and on a cluster)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evplanner.data import load_stations, load_vehicles
from evplanner.demand import demand_points, synthesize_demand
from evplanner.errors import InputError
from evplanner.metrics import coverage
from evplanner.planning import (
    SITE_COLUMNS,
    Scenario,
    compare_kmeans,
    dask_client,
    load_demand,
    load_existing,
    solve,
    suggest_new_sites,
    sweep,
)


@pytest.fixture(scope="module")
def demand():
    return load_demand(Scenario())


@pytest.fixture(scope="module")
def plan(demand):
    return solve(Scenario(new_sites=6, seed=1), demand=demand)


def test_plan_site_table_and_coverage_agree(plan, demand):
    sites = plan.sites
    assert tuple(sites.columns) == SITE_COLUMNS
    assert sites["site_id"].tolist() == [f"N{i}" for i in range(1, 7)]
    assert (sites["kind"] == "new").all()
    # Every vehicle is served by exactly one site.
    assert sites["vehicles_served"].sum() == pytest.approx(demand.vehicles.sum())
    assert sites["demand_points"].sum() == demand.n_points
    assert sites["share_of_demand"].sum() == pytest.approx(1.0)
    # The coverage is that of the sites in the table, recomputed independently.
    again = coverage(
        demand.X, demand.weight, sites[["x_m", "y_m"]].to_numpy(), n_new_sites=6
    )
    assert again.objective_m == pytest.approx(plan.coverage.objective_m, rel=1e-12)
    assert plan.demand["distance_m"].max() == plan.coverage.max_distance_m
    assert plan.crs.to_epsg() == 32610 and plan.mode == "in memory"


def test_same_scenario_same_plan(plan, demand):
    again = solve(Scenario(new_sites=6, seed=1), demand=demand)
    pd.testing.assert_frame_equal(again.sites, plan.sites)
    assert again.metrics()["coverage"] == plan.metrics()["coverage"]


def test_existing_sites_are_held_fixed_and_today_is_measured(demand):
    stations, _ = load_stations()
    plan = solve(Scenario(new_sites=4, existing="public"), demand=demand)
    existing = plan.sites[plan.sites["kind"] == "existing"]
    assert len(existing) == len(stations) == plan.n_existing_sites
    np.testing.assert_array_equal(existing["lon"], stations["lon"])
    ids = ("E" + stations["station_id"].astype(str)).tolist()
    assert existing["site_id"].tolist() == ids
    assert plan.today is not None and plan.today.n_new_sites == 0
    assert plan.coverage.objective_m <= plan.today.objective_m
    assert plan.coverage.coverage_share >= plan.today.coverage_share
    assert plan.existing_report is not None
    assert plan.existing_report.rows_kept == len(stations)


def test_radius_change_reuses_the_sites(plan, demand):
    wider = solve(plan.scenario.replace(radius_m=20_000.0), demand=demand,
                  previous=plan)  # fmt: skip
    np.testing.assert_array_equal(wider.new_sites_m, plan.new_sites_m)
    assert wider.n_iter == 0 and wider.timings["fit"] < plan.timings["fit"] + 1
    assert wider.coverage.coverage_share > plan.coverage.coverage_share
    refit = solve(plan.scenario.replace(new_sites=7), demand=demand, previous=plan)
    assert refit.n_iter > 0 and refit.n_new_sites == 7


def test_kmeans_cannot_hold_stations_and_says_so(demand):
    plan = solve(Scenario(new_sites=3, algorithm="kmeans", existing="dc_fast"),
                 demand=demand)  # fmt: skip
    assert any("K-Means cannot hold existing stations fixed" in n for n in plan.notes)
    assert plan.n_existing_sites > 0


@pytest.mark.parametrize(("scenario", "field", "phrase"), [
    (Scenario(new_sites=2000), "new_sites", "fewer than the 2,000 new sites"),
    (Scenario(counties=["Nowhere"]), "counties", "no vehicle has ['Nowhere']"),
    (Scenario(counties=["Garfield"], ev_types=["PHEV"], model_years=(1990, 1991)),
     None, "no demand left"),
    (Scenario(existing="upload:abc"), "existing", "no uploaded station list"),
    (Scenario(demand=["/nonexistent/file.csv"]), None, "file not found"),
])  # fmt: skip
def test_bad_scenarios_raise_input_errors(scenario, field, phrase):
    with pytest.raises(InputError) as caught:
        solve(scenario)
    assert caught.value.field == field and phrase in str(caught.value)


def test_existing_from_a_file_keeps_its_load_report(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("name,lon,lat\nA,-122.3,47.6\nB,-117.4,47.7\n")
    sites = load_existing(Scenario(existing=str(path)))
    assert len(sites) == 2 and sites.source == str(path)
    assert sites.report.rows_read == 2 and sites.report.rows_kept == 2


def test_sweep_falls_with_more_sites_and_reports_progress(demand):
    seen = []
    table = sweep(Scenario(seed=3), [8, 2, 4, 4], demand=demand,
                  progress=lambda done, total, plan: seen.append(
                      (done, total, plan.n_new_sites)))  # fmt: skip
    assert table["new_sites"].tolist() == [2, 4, 8]
    assert table["objective_m"].is_monotonic_decreasing
    assert seen == [(1, 3, 2), (2, 3, 4), (3, 3, 8)]
    assert 2 <= suggest_new_sites(table) <= 8
    with pytest.raises(InputError, match="new_sites"):
        sweep(Scenario(), [0, 3], demand=demand)


def test_kmedians_wins_its_own_objective_against_kmeans(demand):
    comparison = compare_kmeans(Scenario(new_sites=5), demand=demand)
    clean = comparison.table[comparison.table["case"] == "clean"]
    objective = dict(zip(clean["method"], clean["objective_m"], strict=True))
    assert objective["kmedians"] <= objective["kmeans"]
    assert len(comparison.sites_lonlat("kmeans")) == 5
    assert comparison.to_dict()["new_sites"] == 5


@pytest.mark.slow
@pytest.mark.cluster
def test_a_local_cluster_gives_the_in_memory_plan(tmp_path):
    vehicles, _ = load_vehicles()
    path = tmp_path / "demand.parquet"
    synthesize_demand(demand_points(vehicles), 40_000, seed=2, path=path,
                      chunk_rows=10_000)  # fmt: skip
    scenario = Scenario(new_sites=8, demand=[str(path)], seed=5, existing="dc_fast")
    memory = solve(scenario)
    with dask_client(workers=2) as client:
        chunked = solve(scenario, client=client, blocksize="200kB")
    assert chunked.n_partitions >= 4 and chunked.demand is None
    assert chunked.mode.startswith("Dask cluster at")
    np.testing.assert_allclose(chunked.new_sites_m, memory.new_sites_m, rtol=1e-12)
    assert chunked.coverage.objective_m == pytest.approx(
        memory.coverage.objective_m, rel=1e-12
    )
    numeric = ["demand_served", "vehicles_served", "demand_points", "max_distance_m"]
    pd.testing.assert_frame_equal(
        chunked.sites[numeric], memory.sites[numeric], rtol=1e-12
    )
    assert chunked.today.coverage_share == pytest.approx(memory.today.coverage_share)


def _conditional_cost(X, w, others_dist, site_m):
    """Total weighted distance with one site at each of ``site_m`` (shape (g, 2)).

    ``others_dist`` (n,) is each point's distance to the rest of the network.
    """
    cost = np.zeros(len(site_m))
    for x, weight, other in zip(X, w, others_dist, strict=True):
        cost += weight * np.minimum(other, np.abs(site_m - x).sum(axis=1))
    return cost


def test_new_sites_with_todays_stations_gather_demand_or_are_optimal_alone(demand):
    """With today's 2,473 stations fixed, new sites serve several tracts.

    A new site that serves a single tract must be the right answer, not the
    ZIP-centroid artefact: no position within 5 km (100 m grid) serves the
    demand better with the rest of the network where it is.
    """
    from evplanner._kernels import assign_l1

    scenario = Scenario(new_sites=10, existing="public")
    plan = solve(scenario, demand=demand)
    new = plan.sites[plan.sites["kind"] == "new"]
    assert (new["demand_points"] > 1).sum() >= 8
    X, w = plan.demand[["x_m", "y_m"]].to_numpy(), plan.demand["weight"].to_numpy()
    network = np.vstack([plan.new_sites_m, load_existing(scenario).metres(plan.crs)])
    offsets = np.arange(-5_000.0, 5_001.0, 100.0)
    grid = np.stack(np.meshgrid(offsets, offsets), axis=-1).reshape(-1, 2)
    for j in np.flatnonzero(new["demand_points"].to_numpy() == 1):
        site = plan.new_sites_m[j]
        others = assign_l1(X, np.delete(network, j, axis=0))[1]
        # Only points that the site could take within the scanned window matter.
        near = np.abs(X - site).sum(axis=1) <= others + 10_000.0
        cost = _conditional_cost(X[near], w[near], others[near], site + grid)
        here = _conditional_cost(X[near], w[near], others[near], site[None, :])[0]
        assert here <= cost.min() * (1 + 1e-12), (new.iloc[j]["site_id"], here)


@pytest.mark.slow
@pytest.mark.cluster
def test_a_file_of_one_row_group_is_spread_over_the_cluster(cluster_client, tmp_path):
    import collections

    import pyarrow.parquet as pq
    from distributed import Future

    from evplanner.data import MIN_PARTITION_ROWS
    from evplanner.planning.inputs import PARTITIONS_PER_THREAD

    vehicles, _ = load_vehicles()
    threads = sum(cluster_client.nthreads().values())
    n = PARTITIONS_PER_THREAD * threads * MIN_PARTITION_ROWS
    path = tmp_path / "demand.parquet"
    # One row group, as `evplanner synth` writes up to a million points: dask's
    # own reader made it one partition, so one worker did all the work.
    synthesize_demand(demand_points(vehicles), n, seed=3, path=path, chunk_rows=n)
    assert pq.ParquetFile(path).metadata.num_row_groups == 1
    scenario = Scenario(new_sites=7, demand=[str(path)], seed=4)

    demand = load_demand(scenario, client=cluster_client)
    assert demand.n_partitions == PARTITIONS_PER_THREAD * threads
    assert demand.X.chunks[0] == (MIN_PARTITION_ROWS,) * demand.n_partitions
    # Every worker holds its share, each chunk's points with its weights.
    homes = [
        [cluster_client.who_has(f)[f.key] for f in array.dask.values()
         if isinstance(f, Future)]
        for array in (demand.X, demand.weight)
    ]  # fmt: skip
    assert homes[0] == homes[1]
    per_worker = collections.Counter(home for (home,) in homes[0])
    assert sorted(per_worker.values()) == [PARTITIONS_PER_THREAD] * threads

    memory = solve(scenario)
    chunked = solve(scenario, client=cluster_client, demand=demand)
    assert chunked.n_partitions == demand.n_partitions
    np.testing.assert_array_equal(chunked.new_sites_m, memory.new_sites_m)
    assert chunked.coverage.objective_m == pytest.approx(
        memory.coverage.objective_m, rel=1e-12
    )
