"""Unit tests of the planner app: drive the Parameterized state directly.

No server and no browser here (see test_server.py and test_browser.py): the
state solves on its own thread exactly as in a session, and ``wait()`` blocks until
the latest request has been applied.
"""

from __future__ import annotations

import contextlib
import io
import json
import threading
import time

import numpy as np
import pandas as pd
import panel as pn
import pytest
from param.parameterized import discard_events

from evplanner.app import (
    PlannerApp,
    PlannerState,
    bundled_store,
    create_app,
    engine,
)
from evplanner.app.engine import MAX_UPLOAD_BYTES
from evplanner.app.layout import _status_html, load_report_text
from evplanner.planning import Scenario, metrics_json, sites_bytes


@pytest.fixture(scope="module")
def store():
    return bundled_store()


@pytest.fixture
def state(store):
    s = PlannerState(store=store)
    yield s
    s.close()
    pn.state.reset()


def _vehicles(store, **filters):
    v = store.vehicles[0]
    if "counties" in filters:
        v = v[v["county"].isin(filters["counties"])]
    if "ev_types" in filters:
        v = v[v["ev_type"].isin(filters["ev_types"])]
    return v


# --------------------------------------------------------------------------- solving
def test_initial_solution_uses_all_vehicles(state, store):
    sol = state.solution
    assert sol is not None
    assert sol.n_new == state.k == 7
    # Aggregation never loses a vehicle: total demand weight = vehicles kept.
    assert sol.total_weight == pytest.approx(float(store.vehicles[0]["weight"].sum()))
    assert len(sol.demand) < len(store.vehicles[0])  # aggregated to locations
    assert state.status.startswith("Solved: 7 new sites")
    assert not state.busy
    # Every demand point is assigned to one of the sites.
    assert set(sol.demand["site_id"]) <= set(sol.sites["site_id"])


def test_every_finished_job_is_counted_even_with_an_equal_status(state):
    # Two solves can end with the same status line (same sites, same time to
    # 0.01 s); the count tells them apart (the page carries it on the line).
    first = state.jobs_done
    assert first >= 1
    state.k = 8
    state.wait()
    state.k = 7
    state.wait()
    assert state.jobs_done == first + 2
    assert f'data-jobs-done="{state.jobs_done}"' in _status_html(
        state.busy, state.status, state.jobs_done
    )


def test_changing_k_resolves(state):
    first = state.solution
    state.k = 12
    sol = state.wait()
    assert sol is not first
    assert sol.n_new == 12 and (sol.sites["kind"] == "new").sum() == 12
    assert state.quick_k is None  # 12 is not a quick pick
    assert sol.plan.coverage.objective_m < first.plan.coverage.objective_m
    state.quick_k = 5
    sol5 = state.wait()
    assert state.k == 5 and sol5.n_new == 5
    assert sol5.plan.coverage.objective_m > sol.plan.coverage.objective_m


def test_county_and_type_filters_change_demand(state, store):
    state.counties = ["King"]
    sol = state.wait()
    king = _vehicles(store, counties=["King"])
    assert sol.total_weight == pytest.approx(float(king["weight"].sum()))
    # Demand sits at King's census-tract centres of population (the default).
    from evplanner.data import load_tracts

    tracts = load_tracts()
    king_lon = tracts.loc[tracts["county"] == "King", "lon"]
    assert sol.demand["lon"].between(king_lon.min(), king_lon.max()).all()
    state.ev_types = ["BEV"]
    sol_bev = state.wait()
    king_bev = _vehicles(store, counties=["King"], ev_types=["BEV"])
    assert sol_bev.total_weight == pytest.approx(float(king_bev["weight"].sum()))
    assert sol_bev.total_weight < sol.total_weight


def test_no_ev_type_says_so_and_keeps_solution(state):
    kept = state.solution
    state.ev_types = []
    state.wait()
    assert "at least one EV type" in state.message
    assert state.solution is kept


def test_weighting_bev_only_counts_bevs(state, store):
    state.weighting = "bev"
    sol = state.wait()
    bev = _vehicles(store, ev_types=["BEV"])
    assert sol.total_weight == pytest.approx(float(bev["weight"].sum()))


def test_model_year_filter(state, store):
    lo, hi = state.param.model_years.bounds
    state.model_years = (2020, hi)
    sol = state.wait()
    years = pd.to_numeric(store.vehicles[0]["model_year"], errors="coerce")
    expected = store.vehicles[0].loc[years >= 2020, "weight"].sum()
    assert sol.total_weight == pytest.approx(float(expected))


def test_existing_stations_stay_fixed(state, store):
    base = state.solution
    state.existing = "dc_fast"
    sol = state.wait()
    stations = store.stations[0]
    fixed = stations[stations["dc_fast_ports"].fillna(0) > 0]
    existing = sol.sites[sol.sites["kind"] == "existing"]
    assert sol.n_new == state.k
    assert len(existing) == len(fixed)
    np.testing.assert_array_equal(existing["lon"].to_numpy(), fixed["lon"].to_numpy())
    np.testing.assert_array_equal(existing["lat"].to_numpy(), fixed["lat"].to_numpy())
    # Today's network is reported, and adding sites never makes coverage worse.
    today = sol.plan.today
    assert today is not None
    assert sol.plan.coverage.coverage_share >= today.coverage_share
    assert sol.plan.coverage.mean_distance_m <= today.mean_distance_m
    # With hundreds of stations in place the new sites go elsewhere than without.
    assert not np.allclose(sol.plan.new_sites_m, base.plan.new_sites_m)


def test_radius_change_keeps_sites_and_updates_coverage(state):
    before = state.solution
    state.radius_km = 20.0
    after = state.wait()
    np.testing.assert_array_equal(after.plan.new_sites_m, before.plan.new_sites_m)
    assert after.plan.n_iter == 0  # not refitted
    assert after.plan.coverage.coverage_share > before.plan.coverage.coverage_share


def test_fewer_points_than_k_says_so_and_keeps_solution(state, store):
    kept = state.solution
    # Garfield is the smallest county: a handful of ZIP-code locations.
    n = store.demand(Scenario(counties=("Garfield",))).n_points
    assert 0 < n < 50
    state.k = n + 1
    state.counties = ["Garfield"]
    state.wait()
    assert "fewer than" in state.message and f"the {n + 1} new sites" in state.message
    assert state.solution is kept or state.solution.scenario.counties == ()
    state.k = n
    sol = state.wait()
    assert sol.scenario.counties == ("Garfield",) and sol.n_new == n
    assert state.message == ""


def test_newer_change_supersedes_running_solve(state, monkeypatch):
    real_solve = engine.solve
    started = []
    gate = threading.Event()

    def slow_solve(store, scenario, *args, **kwargs):
        started.append(scenario.new_sites)
        if scenario.new_sites == 3:
            gate.wait(10)  # hold the first solve until the newer requests are in
        return real_solve(store, scenario, *args, **kwargs)

    monkeypatch.setattr(engine, "solve", slow_solve)
    applied = []
    state.param.watch(lambda e: applied.append(e.new.scenario.new_sites), "solution")
    state.k = 3
    while not started:
        time.sleep(0.01)
    state.k = 4  # queued behind k=3, then cancelled by the next change
    state.k = 5
    gate.set()
    sol = state.wait()
    assert sol.scenario.new_sites == 5
    assert started == [3, 5]  # k=4 never ran
    assert applied == [5]  # the stale k=3 result was dropped
    assert state.generation == 3  # three requests after the initial solve


# --------------------------------------------------------------------------- uploads
def _upload(state, data: bytes, name: str):
    state.upload_stations(data, name)
    state.wait()


def test_valid_upload_becomes_fixed_stations(state):
    csv = b"lon,lat\n-122.33,47.61\n-117.42,47.66\n-120.51,46.60\n"
    _upload(state, csv, "my_stations.csv")
    assert state.existing == "upload"
    sol = state.solution
    existing = sol.sites[sol.sites["kind"] == "existing"]
    assert existing[["lon", "lat"]].to_numpy().tolist() == [
        [-122.33, 47.61],
        [-117.42, 47.66],
        [-120.51, 46.60],
    ]
    assert "Uploaded 3 existing stations" in state.message
    assert state.message_level == "info"


@pytest.mark.parametrize(
    "data, name, phrase",
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00binary", "map.png", "expected a .csv"),
        (b"\x00\x01\x02\xff\xfe garbage \x00", "stations.csv", "stations.csv"),
        (b"name,x_coord\nA,1\nB,2\n", "stations.csv", "lon"),
        (b"lon,lat\n-122.3,47.6\n-522.3,47.6\n", "stations.csv", "out of range"),
        (
            b"lon,lat\n" + b"-122.3,47.6\n" * (MAX_UPLOAD_BYTES // 12 + 10),
            "big.csv",
            "limit",
        ),
        (b"", "empty.csv", "empty"),
        (
            b"lon,lat\n" + b"-122.3,47.6\n" * (engine.MAX_UPLOAD_STATIONS + 1),
            "many.csv",
            f"more than the {engine.MAX_UPLOAD_STATIONS:,} stations",
        ),
    ],
)
def test_bad_upload_gives_message_and_keeps_solution(state, data, name, phrase):
    kept = state.solution
    existing = state.existing
    _upload(state, data, name)
    assert state.message.startswith("Upload rejected:")
    assert phrase in state.message
    assert "Traceback" not in state.message
    assert state.message_level == "danger"
    assert state.solution is kept
    assert state.existing == existing
    assert state.uploaded_stations is None


def test_bad_upload_keeps_previous_upload(state):
    _upload(state, b"lon,lat\n-122.33,47.61\n", "good.csv")
    good = state.solution
    _upload(state, b"lon,lat\n999,47.61\n", "bad.csv")
    assert "bad.csv" in state.message
    assert state.solution is good
    assert len(state.uploaded_stations) == 1


def test_choosing_uploaded_without_file_says_so(state):
    kept = state.solution
    state.existing = "upload"
    state.wait()
    assert "Upload a CSV" in state.message
    assert state.solution is kept


# --------------------------------------------------------------------------- extras
def test_sweep_and_comparison_on_request(state):
    assert state.sweep is None and state.comparison is None
    state.existing = "none"  # the elbow of new sites alone
    state.wait()
    state.compute_sweep = True
    state.wait(120)
    sweep = state.sweep
    counts = sweep["new_sites"].tolist()
    assert counts == sorted(counts) and counts[0] == 1
    # More sites never make the best found objective much worse (elbow shape).
    assert sweep["objective_m"].iloc[-1] < sweep["objective_m"].iloc[0] / 3
    state.run_compare = True
    state.wait(120)
    comparison, sites = state.comparison
    clean = comparison.table[comparison.table["case"] == "clean"]
    obj = dict(zip(clean["method"], clean["objective_m"], strict=True))
    # K-Medians optimises the L1 objective it is judged by.
    assert obj["kmedians"] <= obj["kmeans"]
    assert len(sites["kmedians"]) == len(sites["kmeans"]) == state.k


def test_downloads_are_the_plan_writers(state, store):
    state.existing = "dc_fast"
    sol = state.wait()
    table = pd.read_csv(io.BytesIO(sites_bytes(sol.plan, "csv")))
    assert len(table) == len(sol.sites)
    assert table["vehicles_served"].sum() == pytest.approx(sol.total_weight)
    gj = json.loads(sites_bytes(sol.plan, "geojson"))
    assert gj["type"] == "FeatureCollection" and len(gj["features"]) == len(sol.sites)
    first = gj["features"][0]
    assert first["geometry"]["coordinates"] == pytest.approx(
        [sol.sites["lon"].iloc[0], sol.sites["lat"].iloc[0]]
    )
    metrics = json.loads(metrics_json(sol.plan))
    assert metrics["coverage"]["coverage_share"] == pytest.approx(
        sol.plan.coverage.coverage_share
    )
    assert metrics["today"]["n_existing_sites"] == len(sol.sites) - state.k
    assert metrics["load_report"]["demand"]["rows_kept"] == len(store.vehicles[0])
    report = load_report_text(store)
    assert "rows read" in report and "rows dropped" in report


# --------------------------------------------------------------------------- the page
def test_selection_links_table_map_and_bars(store):
    app = PlannerApp(PlannerState(store=store))
    try:
        sol = app.state.solution
        app.table.selection = [2]
        site = sol.sites["site_id"].iloc[2]
        assert app.state.selected_site == site
        # The map rings the site's demand points and marks the site.
        ringed = len(app.map._highlight.data["x_web"])
        assert ringed == (sol.demand["site_id"] == site).sum() > 0
        marked = app.map._new.data["site_id"][app.map._new.selected.indices]
        assert list(marked) == [site]
        app._bar_tap.event(index=[0])
        new = sol.sites[sol.sites["kind"] == "new"]
        busiest = new["site_id"].iloc[int(new["vehicles"].to_numpy().argmax())]
        assert app.state.selected_site == busiest
        row = np.flatnonzero(app.table.value["site_id"].to_numpy() == busiest)
        assert app.table.selection == [int(row[0])]
        app.state.k = 3
        app.state.wait()
        assert app.table.selection == []
        assert (app.table.value["kind"] == "new").sum() == 3
        assert len(app.map._new.data["site_id"]) == 3
        # Tapping a site on the map selects it everywhere.
        tapped = app.map._new.data["site_id"][1]
        app.map._new.selected.indices = [1]
        assert app.state.selected_site == tapped
        assert app.table.value["site_id"].iloc[app.table.selection[0]] == tapped
    finally:
        app.state.close()
        pn.state.reset()


def test_create_app_builds_the_template(store):
    template = create_app(store)
    try:
        assert isinstance(template, pn.template.FastListTemplate)
        objects = template.main[0].select()
        names = {obj.name for obj in objects}
        assert {"message", "status", "indicators", "map"} <= names
        assert any(isinstance(o, pn.widgets.DataFrame) for o in objects)
    finally:
        pn.state.reset()


# --------------------------------------------------------------------------- issue 11
def test_opens_on_tract_demand_with_todays_public_stations(state, store):
    # The planner's real question: tract demand, today's public stations fixed.
    assert state.scenario() == Scenario(new_sites=7, existing="public")
    sol = state.solution
    assert len(sol.demand) == 1767  # census-tract centres, not 537 ZIP centroids
    assert (sol.sites["kind"] == "existing").sum() == len(store.stations[0])
    # "Today's network" is measured, and the page shows it.
    assert sol.plan.today is not None
    values = PlannerApp(state)._indicator_values(sol)
    assert 50 < values["baseline_pct"] <= values["covered_pct"] < 100
    # New sites are not stuck on single demand points between the stations.
    new = sol.plan.sites[sol.plan.sites["kind"] == "new"]
    assert (new["demand_points"] > 1).all()


@pytest.mark.parametrize(
    "controls, fields",
    [
        ({"demand_at": "zip"}, {"demand_at": "zip"}),
        ({"weighting": "residents"}, {"weighting": "residents"}),
        ({"residents_share": 0.4}, {"residents_share": 0.4}),
        (
            {"weighting": "range", "residents_share": 0.25},
            {"weighting": "range", "residents_share": 0.25},
        ),
        # Where the blend means nothing, its (disabled) slider counts as 0.
        (
            {"weighting": "residents", "residents_share": 0.4},
            {"weighting": "residents", "residents_share": 0.0},
        ),
        (
            {"demand_at": "zip", "residents_share": 0.4},
            {"demand_at": "zip", "residents_share": 0.0},
        ),
        ({"year": 2030}, {"year": 2030}),
        (
            {"utilities": ["PUGET SOUND ENERGY INC", "AVISTA CORP"]},
            {"utilities": ("AVISTA CORP", "PUGET SOUND ENERGY INC")},
        ),
        ({"legislative_districts": [43, 7]}, {"legislative_districts": (7, 43)}),
        ({"candidates": "tracts"}, {"candidates": "tracts"}),
        (
            {"candidates": "stations", "objective": "coverage"},
            {"candidates": "stations", "objective": "coverage"},
        ),
        ({"existing": "none"}, {"existing": "none"}),
    ],
)
def test_controls_map_onto_the_scenario(store, controls, fields):
    state = PlannerState(store=store)
    try:
        state.param.update(**controls)
        expected = Scenario(new_sites=7, existing="public").replace(**fields)
        assert state.scenario() == expected
        sol = state.wait(120)
        assert state.message == "" or state.message_level == "info", state.message
        assert sol.scenario == expected  # the solution on screen is that scenario
    finally:
        state.close()
        pn.state.reset()


def test_control_options_come_from_the_bundled_data(state, store):
    from evplanner.demand import utility_names

    utilities = state.param.utilities.objects
    assert utilities == utility_names(store.vehicles[0])
    assert "PUGET SOUND ENERGY INC" in utilities and len(utilities) > 20
    assert state.param.legislative_districts.objects == list(range(1, 50))
    years = [y for y in state.param.year.objects.values() if y is not None]
    last_model_year = store.model_year_range[1]
    assert years[0] == last_model_year + 1 and years == sorted(years)
    assert state.param.rollout_years.bounds == (years[0], years[-1])


def test_zip_demand_and_residents_weighting(state, store):
    state.demand_at = "zip"
    sol = state.wait()
    assert len(sol.demand) == 537
    assert sol.total_weight == pytest.approx(len(store.vehicles[0]))
    state.demand_at = "tract"
    state.weighting = "residents"
    sol = state.wait()
    from evplanner.data import load_tracts

    # Everyone in Washington counts: the weight is the tracts' residents.
    residents = load_tracts()["population"].sum()
    assert sol.total_weight == pytest.approx(residents)


def test_residents_blend_moves_demand_towards_people(state):
    vehicles = state.solution.demand.set_index(["lon", "lat"])["weight"]
    state.residents_share = 0.5
    blend = state.wait().demand.set_index(["lon", "lat"])["weight"]
    # Scaled to the vehicles' total, so the total stays; the split changes.
    assert blend.sum() == pytest.approx(vehicles.sum())
    common = vehicles.index.intersection(blend.index)
    assert not np.allclose(vehicles[common], blend[common])


def test_utility_and_district_filters(state, store):
    from evplanner.demand import split_utilities

    v = store.vehicles[0]
    state.utilities = ["AVISTA CORP"]
    sol = state.wait()
    served = v["utility"].map(lambda u: "AVISTA CORP" in split_utilities(u))
    assert sol.total_weight == pytest.approx(float(v.loc[served, "weight"].sum()))
    state.utilities = []
    state.legislative_districts = [3]
    sol = state.wait()
    district = pd.to_numeric(v["legislative_district"], errors="coerce") == 3
    assert sol.total_weight == pytest.approx(float(v.loc[district, "weight"].sum()))


def test_forecast_year_grows_demand_and_clashes_are_explained(state):
    today = state.solution.total_weight
    state.year = 2030
    sol = state.wait()
    assert sol.scenario.year == 2030 and sol.total_weight > today
    assert state.status.endswith("Demand forecast for 2030.")
    # A forecast counts vehicles at tract centres: ZIP demand cannot have one.
    state.demand_at = "zip"
    state.wait()
    assert "a forecast year plans for the vehicles at tract centres" in state.message
    assert state.solution is sol  # kept, not replaced


def test_staged_rollout_off_the_event_loop(state):
    app = PlannerApp(state)
    state.param.update(rollout_years=(2026, 2028), per_year=2)
    busy = []
    state.param.watch(lambda e: busy.append(e.new), "rollout_busy")
    state.run_rollout = True
    assert state.rollout_busy  # set at once; the plan arrives later
    state.wait(300)
    assert busy == [True, False] and not state.rollout_busy
    view = state.rollout
    assert view.years == (2026, 2027, 2028)
    assert view.per_year["new_sites"].tolist() == [2, 2, 2]
    assert view.per_year["sites_built"].tolist() == [2, 4, 6]
    assert state.status == "Rollout planned: 2 new sites a year, 2026-2028 (6 sites)."
    # The slider shows the last year; the map holds every site built by then.
    assert state.rollout_year == 2028
    assert (app.year_slider.start, app.year_slider.end) == (2026, 2028)
    assert (app.year_player.start, app.year_player.end) == (2026, 2028)
    assert not app.year_player.disabled
    assert len(app.rollout_map._new.data["site_id"]) == 6
    assert sorted(set(app.rollout_map._new.data["year"])) == [2026, 2027, 2028]
    colours = dict(zip(app.rollout_map._new.data["year"],
                       app.rollout_map._new.data["colour"], strict=True))  # fmt: skip
    assert len(set(colours.values())) == 3  # one colour per year
    # Moving the year shows the network as of that year.
    state.rollout_year = 2027
    assert len(app.rollout_map._new.data["site_id"]) == 4
    assert "2027: 4 new sites built" in app.rollout_map.figure.title.text
    assert "Network in 2027: 4 new sites built" in app.rollout_text.div.text
    # The per-year plot holds each year's coverage and mean distance; tapping a
    # year's point selects that year.
    plots = app.rollout_plots._source.data
    assert plots["year"].tolist() == [2026, 2027, 2028]
    np.testing.assert_allclose(plots["coverage_pct"],
                               100 * view.per_year["coverage_share"])  # fmt: skip
    app.rollout_plots._source.selected.indices = [0]
    assert state.rollout_year == 2026
    assert app.rollout_table.value["year"].tolist() == [2026, 2027, 2028]
    # Sites may go anywhere: no candidate layer.
    assert not app.rollout_map._candidate_glyph.visible
    assert len(app.rollout_map._candidates.data["x_web"]) == 0


def test_staged_rollout_on_candidates_draws_those_not_yet_opened(state):
    app = PlannerApp(state)
    state.param.update(counties=["Spokane"], candidates="tracts",
                       rollout_years=(2026, 2027), per_year=2)  # fmt: skip
    state.wait()
    state.run_rollout = True
    state.wait(300)
    view = state.rollout
    n = len(view.candidates)
    assert n > 4 and view.candidates["year"].notna().sum() == 4

    def points(data):
        return set(zip(np.round(data["x_web"], 3), np.round(data["y_web"], 3),
                       strict=True))  # fmt: skip

    # 2027: both years' sites are open; the other candidates are drawn grey.
    assert app.rollout_map._candidate_glyph.visible
    shown = points(app.rollout_map._candidates.data)
    built = points(app.rollout_map._new.data)
    assert len(shown) == n - 4 and len(built) == 4 and not built & shown
    # The new sites carry their tracts' names.
    assert set(app.rollout_map._new.data["name"]) <= set(view.candidates["name"])
    state.rollout_year = 2026
    assert len(app.rollout_map._candidates.data["x_web"]) == n - 2


def test_rollout_on_zip_demand_says_why(state):
    state.demand_at = "zip"
    state.wait()
    state.param.update(rollout_years=(2026, 2027), per_year=2)
    state.run_rollout = True
    state.wait(120)
    assert state.rollout is None and not state.rollout_busy
    assert "a forecast year plans for the vehicles at tract centres" in state.message


def test_evs_per_1000_residents_layer(state, store):
    app = PlannerApp(state)
    assert not app.map._tract_glyph.visible
    app.map.layer = "EVs per 1,000 residents"
    assert app.map._tract_glyph.visible and not app.map._image_glyph.visible
    data = app.map._tract_source.data
    assert 1700 < len(data["tract_id"]) <= 1784
    np.testing.assert_allclose(
        data["evs_per_1000"], 1000 * data["vehicles"] / data["population"]
    )
    # The layer follows the filters.
    state.counties = ["King"]
    state.wait()
    king = app.map._tract_source.data
    assert 0 < len(king["tract_id"]) < len(data["tract_id"])
    assert set(king["county"]) == {"King"}
    # The site table has the column too.
    assert app.table.value["evs_per_1000"].notna().any()
    app.map.layer = "Catchments"
    assert app.map._image_glyph.visible and not app.map._tract_glyph.visible


# --------------------------------------------------------------------- limits, cache
def test_browser_refused_upload_gives_message(state):
    kept = state.solution
    state.refuse_upload("huge.csv", 50_000_000)
    assert state.message == (
        "Upload rejected: huge.csv: the file is 50.0 MB, larger than the "
        f"{MAX_UPLOAD_BYTES / 1e6:.1f} MB limit for a station list; it was not "
        "uploaded"
    )
    assert state.message_level == "danger" and state.solution is kept


def test_upload_widget_checks_size_again_on_the_server(state):
    """A client that skips the browser's size check is refused all the same."""
    import base64

    from evplanner.app.upload import FileUpload

    got = []
    widget = FileUpload(
        on_file=lambda data, name: got.append((data, name)),
        on_refused=state.refuse_upload,
        max_bytes=100,
    )
    widget._handle_msg({"name": "ok.csv", "data": base64.b64encode(b"lon,lat\n")})
    assert got == []  # not base64 text: dropped as malformed
    widget._handle_msg(
        {"name": "ok.csv", "data": base64.b64encode(b"lon,lat\n").decode()}
    )
    assert got == [(b"lon,lat\n", "ok.csv")]
    widget._handle_msg(
        {"name": "big.csv", "data": base64.b64encode(b"x" * 200).decode()}
    )
    assert len(got) == 1
    assert state.message.startswith("Upload rejected: big.csv: the file is")


def test_second_identical_state_is_served_from_the_cache():
    shared = bundled_store()
    store = engine.DataStore(shared.vehicles, shared.stations)  # a cache of its own
    first = PlannerState(store=store)
    try:
        assert store.solutions.misses == 1 and store.solutions.hits == 0
        second = PlannerState(store=store)
        assert second.solution is first.solution  # no new solve
        assert store.solutions.hits == 1 and store.solutions.misses == 1
        second.k = 9
        second.wait()
        assert store.solutions.misses == 2
        first.k = 9
        assert first.wait() is second.solution  # the other session's result
    finally:
        first.close()
        second.close()


def test_cache_computes_identical_requests_once():
    cache = engine.SolutionCache(size=2)
    started, release, calls = threading.Event(), threading.Event(), []

    def compute():
        calls.append(1)
        started.set()
        release.wait(10)
        return object()

    results = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.get("a", compute)))
        for _ in range(5)
    ]
    threads[0].start()
    started.wait(10)
    for t in threads[1:]:
        t.start()
    release.set()
    for t in threads:
        t.join(10)
    assert len(calls) == 1 and len(results) == 5
    assert all(r is results[0] for r in results)
    # Bounded, least recently used first out.
    cache.get("b", object)
    cache.get("a", compute)  # a is now most recent
    cache.get("c", object)
    assert cache.peek("b") is None and cache.peek("a") is results[0]
    assert len(cache) == 2


def test_failed_compute_is_not_cached():
    cache = engine.SolutionCache()

    def fail():
        raise InputErrorForTest("no")

    with pytest.raises(InputErrorForTest):
        cache.get("x", fail)
    assert cache.get("x", lambda: 3) == 3


class InputErrorForTest(ValueError):
    pass


def test_heavy_solve_does_not_hold_the_light_lane(store):
    """A heavy fit (many fixed stations) runs on its own lane: a light one can
    start and finish while the heavy lane is held."""
    lanes = store.lanes
    assert lanes.separate  # omp is installed with numba here
    heavy_scenario = Scenario(new_sites=engine.HEAVY_NEW_SITES + 1)
    assert engine._heavy(heavy_scenario, None)
    assert not engine._heavy(Scenario(new_sites=7), None)
    engine.solve(store, Scenario(new_sites=7))  # a parallel kernel has run
    with lanes.lock(heavy=True):
        done = threading.Event()
        t = threading.Thread(
            target=lambda: (
                engine.solve(store, Scenario(new_sites=8, seed=11)),
                done.set(),
            )  # fmt: skip
        )
        t.start()
        assert done.wait(60), "a light solve waited for the heavy lane"
        t.join()


def test_superseded_queued_solve_is_skipped(state):
    """Of many k changes queued behind a running solve only the last is solved."""
    store = state.store
    misses = store.solutions.misses
    for k in range(20, 31):
        state.k = k
    sol = state.wait()
    assert sol.n_new == 30
    # The first change may already run; the ones queued behind it are skipped.
    assert store.solutions.misses - misses <= 3


# --------------------------------------------------------------------------- issue 12
@pytest.mark.parametrize(
    "controls, fields",
    [
        ({"sizing": "queue"}, {"sizing": "queue"}),
        (
            {"vehicles_per_l2_port": 20.0, "vehicles_per_dc_port": 100.0},
            {"vehicles_per_l2_port": 20.0, "vehicles_per_dc_port": 100.0},
        ),
        (
            {
                "sizing": "queue",
                "sessions_per_vehicle_day": 0.3,
                "session_hours": 2.0,
                "hours_per_day": 16.0,
                "max_wait_probability": 0.1,
            },
            {
                "sizing": "queue",
                "sessions_per_vehicle_day": 0.3,
                "session_hours": 2.0,
                "hours_per_day": 16.0,
                "max_wait_probability": 0.1,
            },
        ),
        ({"new_site_ports": 6}, {"new_site_ports": 6}),
        (
            {"counties": ["Spokane"], "capacitated": True},
            {"counties": ("Spokane",), "capacitated": True},
        ),
        # Where the scenario refuses capacity-aware siting, its (disabled)
        # toggle counts as off.
        (
            {"candidates": "tracts", "objective": "coverage", "capacitated": True},
            {"candidates": "tracts", "objective": "coverage", "capacitated": False},
        ),
        (
            {"weighting": "bev", "capacitated": True},
            {"weighting": "bev", "capacitated": False},
        ),
        (
            {"residents_share": 0.3, "capacitated": True},
            {"residents_share": 0.3, "capacitated": False},
        ),
        (
            {"existing": "none", "algorithm": "kmeans", "capacitated": True},
            {"existing": "none", "algorithm": "kmeans", "capacitated": False},
        ),
    ],
)
def test_sizing_controls_map_onto_the_scenario(store, controls, fields):
    state = PlannerState(store=store)
    try:
        state.param.update(**controls)
        expected = Scenario(new_sites=7, existing="public").replace(**fields)
        assert state.scenario() == expected
        sol = state.wait(300)
        assert state.message == "" or state.message_level == "info", state.message
        assert sol.scenario == expected
        assert sol.plan.sizing["model"]["method"] == expected.sizing
        assert sol.plan.sizing["capacitated"] == expected.capacitated
    finally:
        state.close()
        pn.state.reset()


@contextlib.contextmanager
def _quietly_set(state, **controls):
    """Set controls without re-solving, and put them back."""
    before = {name: getattr(state, name) for name in controls}
    with discard_events(state):
        state.param.update(**controls)
    try:
        yield
    finally:
        with discard_events(state):
            state.param.update(**before)


def test_capacitated_refusal_names_the_reason(state):
    assert state.capacitated_refusal is None
    for controls, phrase in [
        ({"algorithm": "kmeans"}, "K-Means"),
        ({"objective": "coverage"}, "coverage"),
        ({"weighting": "range"}, "vehicles"),
        ({"residents_share": 0.2}, "residents share"),
    ]:
        with _quietly_set(state, **controls):
            assert phrase in state.capacitated_refusal
    # The blend's slider means nothing on ZIP demand: it does not refuse then.
    with _quietly_set(state, demand_at="zip", residents_share=0.2):
        assert state.capacitated_refusal is None


def test_plan_sizing_reaches_the_views(store):
    from evplanner.app import views
    from evplanner.app.layout import headline_html

    app = PlannerApp(PlannerState(store=store))
    try:
        sol = app.state.solution
        sizing = sol.plan.sizing
        assert sizing["n_overloaded"] > 0  # today's network, tract demand
        values = app._indicator_values(sol)
        assert values["overloaded"] == sizing["n_overloaded"]
        assert values["ports_to_add"] == sizing["ports_to_add"]
        assert values["unserved"] == sizing["unserved_vehicles"]
        assert values["extra_sites"] == sizing["suggested_extra_sites"]
        text = headline_html(values, 5.0)
        for title, value in [
            ("Overloaded stations", sizing["n_overloaded"]),
            ("Ports to add", sizing["ports_to_add"]),
            ("Unserved vehicles", round(sizing["unserved_vehicles"])),
            ("Suggested extra sites", sizing["suggested_extra_sites"]),
        ]:
            assert f'{title}</div><div style="font-size:28pt;line-height:1.2">' \
                f"{value:,}</div>" in text  # fmt: skip

        # The site table: the plan's sizing columns, row for row.
        table = app.table.value
        for column in ("ports", "ports_needed", "ports_to_add", "overloaded", "action"):
            assert table[column].tolist() == sol.plan.sites[column].tolist()
        np.testing.assert_allclose(
            table["vehicles_per_port"],
            sol.plan.sites["vehicles_per_port"],
            atol=0.05,
        )

        # The map: stations coloured by their load per port, overloaded ringed
        # red; new sites labelled with the ports they need.
        existing = app.map._existing.data
        over = sol.sites.loc[sol.sites["kind"] == "existing", "overloaded"]
        assert (existing["line_colour"] == "#d62728").sum() == over.sum()
        per_port = existing["vehicles_per_port"]
        loaded = per_port > 0
        np.testing.assert_array_equal(existing["load_per_port"][loaded],
                                      per_port[loaded])  # fmt: skip
        assert np.isnan(existing["load_per_port"][~loaded]).all()
        new = sol.sites[sol.sites["kind"] == "new"]
        assert list(app.map._new.data["ports_label"]) == [
            f"{p} ports" for p in new["ports"]
        ]

        # The load-per-port plot: the most loaded stations first, red when
        # overloaded, each with its capacity per port.
        frame = views.load_per_port_frame(sol)
        assert len(frame) == views.MAX_BARS
        assert frame["vehicles_per_port"].is_monotonic_decreasing
        assert frame["vehicles_per_port"].iloc[0] == pytest.approx(
            sizing["existing_vehicles_per_port"]["max"]
        )
        rows = sol.sites.set_index("site_id").loc[frame["site_id"]]
        np.testing.assert_allclose(
            frame["capacity_per_port"] * frame["ports"], rows["capacity_vehicles"]
        )
        assert (frame["colour"] == views.OVERLOADED_COLOUR).tolist() == rows[
            "overloaded"
        ].tolist()
        plotted = app.load_plot._source.data
        assert list(plotted["site_id"]) == list(frame["site_id"])
        assert list(app.load_plot.figure.x_range.factors) == list(frame["site_id"])

        # Fewer vehicles per Level 2 port: more stations overloaded, more ports
        # to add, and the page follows.
        app.state.vehicles_per_l2_port = 10.0
        sol2 = app.state.wait(120)
        assert sol2.plan.sizing["n_overloaded"] > sizing["n_overloaded"]
        assert sol2.plan.sizing["ports_to_add"] > sizing["ports_to_add"]
        assert (
            app._indicator_values(sol2)["overloaded"]
            == (sol2.plan.sizing["n_overloaded"])
        )
        assert f"{sol2.plan.sizing['n_overloaded']:,}" in app.headline.div.text
        assert (app.map._existing.data["line_colour"] == "#d62728").sum() == (
            sol2.plan.sizing["n_overloaded"]
        )
    finally:
        app.state.close()
        pn.state.reset()


def test_load_per_port_tap_selects_the_station(store):
    from evplanner.app import views
    from evplanner.app.live_views import SELECTED_SIZE_PX

    app = PlannerApp(PlannerState(store=store))
    try:
        sol = app.state.solution
        frame = views.load_per_port_frame(sol)
        app.load_plot._source.selected.indices = [1]
        station = frame["site_id"].iloc[1]
        assert station.startswith("E")
        assert app.state.selected_site == station
        # The table selects its row, the map rings its demand and enlarges it.
        row = np.flatnonzero(app.table.value["site_id"].to_numpy() == station)
        assert app.table.selection == [int(row[0])]
        ringed = len(app.map._highlight.data["x_web"])
        assert ringed == (sol.demand["site_id"] == station).sum() > 0
        data = app.map._existing.data
        assert data["size"][data["site_id"] == station].tolist() == [SELECTED_SIZE_PX]
        assert (data["size"] == SELECTED_SIZE_PX).sum() == 1
    finally:
        app.state.close()
        pn.state.reset()


def test_sizing_controls_follow_the_method_and_the_refusal(store):
    app = PlannerApp(PlannerState(store=store))
    try:
        controls = app.sizing_controls()
        by_name = {getattr(w, "name", ""): w for w in controls}
        l2 = by_name["Vehicles per Level 2 port"]
        queue = by_name["Mean session (hours)"]
        toggle = by_name["Capacity-aware siting"]
        reason = controls[-1]
        assert l2.visible and not queue.visible and queue.disabled
        assert not toggle.disabled and not reason.visible
        app.state.param.update(sizing="queue", algorithm="kmeans")
        assert not l2.visible and queue.visible and not queue.disabled
        assert toggle.disabled and reason.visible
        assert "K-Means" in reason.object
        app.state.param.update(sizing="ratio", algorithm="kmedians")
        assert l2.visible and not toggle.disabled and not reason.visible
        app.state.wait(120)
    finally:
        app.state.close()
        pn.state.reset()


def test_downloads_carry_the_sizing(state):
    sol = state.solution
    table = pd.read_csv(io.BytesIO(sites_bytes(sol.plan, "csv")))
    for column in ("ports", "ports_needed", "ports_to_add", "vehicles_per_port",
                   "overloaded", "action"):  # fmt: skip
        assert column in table
    assert int(table["overloaded"].sum()) == sol.plan.sizing["n_overloaded"]
    metrics = json.loads(metrics_json(sol.plan))
    assert metrics["sizing"]["n_overloaded"] == sol.plan.sizing["n_overloaded"]


# ------------------------------------------------------------------ candidate uploads
#: 30 parking lots across the Puget Sound region (lon, lat on a grid), with names
#: and the ports each can take.
LOTS = pd.DataFrame({
    "name": [f"Lot {i}" for i in range(30)],
    "lon": [-122.45 + 0.05 * (i % 6) for i in range(30)],
    "lat": [47.25 + 0.08 * (i // 6) for i in range(30)],
    "max_ports": [4 + i % 5 for i in range(30)],
})  # fmt: skip


def _lots_csv() -> bytes:
    return LOTS.to_csv(index=False).encode()


def _on_candidates(lonlat: np.ndarray, candidates: pd.DataFrame) -> bool:
    """Whether every (lon, lat) row is one of the candidates' (to 1e-9 degrees)."""
    ref = candidates[["lon", "lat"]].to_numpy("f8")
    gaps = np.abs(lonlat[:, None, :] - ref[None, :, :]).max(axis=2).min(axis=1)
    return bool((gaps < 1e-9).all())


@pytest.mark.parametrize("objective", ["median", "coverage"])
def test_uploaded_candidates_are_where_new_sites_go(state, objective):
    from evplanner.app.live_views import candidate_data

    state.objective = objective  # coverage without candidates: a message only
    state.upload_candidates(_lots_csv(), "lots.csv")
    sol = state.wait(120)
    assert state.candidates == "upload"
    assert sol.scenario.candidates.startswith("upload:")
    assert sol.scenario.objective == objective
    assert state.message.startswith("Uploaded 30 candidate sites from lots.csv.")
    assert state.message_level == "info"
    new = sol.sites[sol.sites["kind"] == "new"]
    assert len(new) == 7
    assert _on_candidates(new[["lon", "lat"]].to_numpy("f8"), LOTS)
    # The map's candidate layer: 30 sites, the 7 chosen ones at the new sites.
    assert len(sol.candidates) == 30 and int(sol.candidates["chosen"].sum()) == 7
    chosen = candidate_data(sol, chosen=True)
    others = candidate_data(sol, chosen=False)
    assert len(chosen["x_web"]) == 7 and len(others["x_web"]) == 23
    assert set(chosen["chosen"]) == {"yes"} and set(others["chosen"]) == {"no"}
    # (the new sites' degrees went to metres and back)
    np.testing.assert_allclose(
        sorted(zip(chosen["lon"], chosen["lat"], strict=True)),
        sorted(zip(new["lon"], new["lat"], strict=True)),
        atol=1e-9,
    )
    by_name = dict(zip(LOTS["name"], LOTS["max_ports"].astype(str), strict=True))
    assert [by_name[n] for n in chosen["name"]] == list(chosen["max_ports_text"])
    assert state.uploaded_candidates["name"].tolist() == LOTS["name"].tolist()


def test_candidate_layer_on_the_map_follows_the_candidate_set(state):
    app = PlannerApp(state)
    glyphs = app.map._candidate_glyphs
    legend = [i for i in app.map.figure.legend[0].items
              if any(r in glyphs for r in i.renderers)]  # fmt: skip
    assert len(legend) == 2
    assert not any(g.visible for g in glyphs) and not any(i.visible for i in legend)
    state.upload_candidates(_lots_csv(), "lots.csv")
    state.wait(120)
    assert all(g.visible for g in glyphs) and all(i.visible for i in legend)
    assert len(app.map._chosen.data["x_web"]) == 7
    assert len(app.map._candidates.data["x_web"]) == 23
    state.candidates = "tracts"
    sol = state.wait(120)
    assert len(app.map._candidates.data["x_web"]) == len(sol.candidates) - 7 > 1500
    state.candidates = "none"
    state.wait(120)
    assert not any(g.visible for g in glyphs) and not any(i.visible for i in legend)
    assert len(app.map._chosen.data["x_web"]) == 0


def test_geojson_and_geoparquet_candidates_in_any_crs(state, tmp_path):
    import geopandas as gpd

    points = gpd.GeoDataFrame(
        LOTS[["name", "max_ports"]],
        geometry=gpd.points_from_xy(LOTS["lon"], LOTS["lat"]),
        crs=4326,
    ).to_crs(3857)  # Web Mercator metres: converted back on reading
    path = tmp_path / "lots.geojson"
    points.to_file(path, driver="GeoJSON")
    state.upload_candidates(path.read_bytes(), "lots.geojson")
    sol = state.wait(120)
    assert state.message.startswith("Uploaded 30 candidate sites from lots.geojson")
    np.testing.assert_allclose(sol.candidates[["lon", "lat"]], LOTS[["lon", "lat"]])
    new = sol.sites[sol.sites["kind"] == "new"][["lon", "lat"]].to_numpy("f8")
    gaps = np.abs(new[:, None] - LOTS[["lon", "lat"]].to_numpy()[None]).max(axis=2)
    assert (gaps.min(axis=1) < 1e-6).all()
    parquet = tmp_path / "lots.parquet"
    points.to_parquet(parquet)
    state.upload_candidates(parquet.read_bytes(), "lots.parquet")
    state.wait(120)
    assert state.message.startswith("Uploaded 30 candidate sites from lots.parquet")


@pytest.mark.parametrize(
    "data, name, phrase",
    [
        (
            b"name,lon,lat,max_ports\nA,-122.3,47.6,4\nB,xx,47.5,2\nC,-122.2,47.5,x\n"
            b"D,-122.1,47.4,\nE,151.2,-33.9,3\n",
            "lots.csv",
            "3 of 5 rows are not usable candidate sites (1 unparsable point; "
            "1 invalid max_ports; 1 outside the planning area)",
        ),
        (b"name,lon,lat\nA,-122.3,47.6\nB,-122.2,\n", "lots.csv", "bad rows: 2"),
        (b"\x89PNG\r\n\x1a\n\x00\x00binary", "map.png", "expected a .csv / .geojson"),
        (b"", "empty.csv", "empty"),
        (b"name,x_coord\nA,1\n", "lots.csv", "lon"),
        (b'{"type": "FeatureCollection", "features": [', "lots.geojson", "readable"),
        (
            b"lon,lat\n" + b"-122.3,47.6\n" * (engine.MAX_UPLOAD_CANDIDATES + 1),
            "many.csv",
            f"more than the {engine.MAX_UPLOAD_CANDIDATES:,} candidate sites",
        ),
        (
            b"lon,lat\n" + b"-122.3,47.6\n" * (MAX_UPLOAD_BYTES // 12 + 10),
            "big.csv",
            "limit for a candidate file",
        ),
    ],
)
def test_bad_candidate_file_names_the_bad_rows_and_keeps_solution(
    state, data, name, phrase
):
    kept = state.solution
    state.upload_candidates(data, name)
    state.wait()
    assert state.message.startswith(f"Candidate file rejected: {name}")
    assert phrase in state.message, state.message
    assert "Traceback" not in state.message
    assert state.message_level == "danger"
    assert state.solution is kept
    assert state.candidates == "none" and state.uploaded_candidates is None


def test_bad_candidate_file_keeps_the_previous_one(state):
    state.upload_candidates(_lots_csv(), "lots.csv")
    good = state.wait(120)
    state.upload_candidates(b"lon,lat\n-122.3,47.6\n-122.2,147.5\n", "bad.csv")
    state.wait()
    assert "bad.csv, row 2" in state.message and "bad rows: 2" in state.message
    assert state.solution is good and state.candidates == "upload"
    assert len(state.uploaded_candidates) == 30


def test_uploaded_candidate_set_chosen_before_any_upload(state):
    kept = state.solution
    state.candidates = "upload"
    state.wait()
    assert state.solution is kept and state.message_level == "info"
    assert "Upload a candidate file" in state.message
    state.compute_sweep = True  # says why, not a traceback in the server log
    state.wait()
    assert "upload a candidate file first" in state.message


def test_fewer_candidates_than_new_sites_says_so(state):
    kept = state.solution
    state.upload_candidates(b"lon,lat\n-122.3,47.6\n-122.2,47.5\n", "two.csv")
    state.wait(120)
    assert state.solution is kept
    assert "2 candidate sites, fewer than the 7 new sites" in state.message
    state.k = 2
    sol = state.wait(120)
    assert sol.n_new == 2 and int(sol.candidates["chosen"].sum()) == 2


def test_browser_refused_candidate_file_gives_message(state):
    state.refuse_candidate_upload("huge.geojson", 9_000_000)
    assert state.message == (
        "Candidate file rejected: huge.geojson: the file is 9.0 MB, larger than "
        f"the {MAX_UPLOAD_BYTES / 1e6:.1f} MB limit for a candidate file; it was "
        "not uploaded"
    )


def test_elbow_on_uploaded_candidates_stops_at_their_number(state):
    state.upload_candidates(_lots_csv(), "lots.csv")
    state.wait(120)
    state.compute_sweep = True
    state.wait(300)
    assert state.sweep["new_sites"].max() <= 30
    assert state.status.startswith("Elbow computed for")


def test_rollout_on_uploaded_candidates(state):
    state.upload_candidates(_lots_csv(), "lots.csv")
    state.wait(120)
    state.param.update(rollout_years=(2026, 2027), per_year=2)
    state.run_rollout = True
    state.wait(300)
    view = state.rollout
    assert view is not None, state.message
    new = view.sites[view.sites["kind"] == "new"]
    assert len(new) == 4 and sorted(new["year"]) == [2026, 2026, 2027, 2027]
    assert _on_candidates(new[["lon", "lat"]].to_numpy("f8"), LOTS)
