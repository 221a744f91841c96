"""`evplanner solve | sweep | synth`: arguments, errors, outputs (in memory).

Most runs call :func:`evplanner.cli.main` in this process (a real run, without the
cost of starting Python); one runs the installed console script as a subprocess.
The cluster modes are in ``test_cluster.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest

import evplanner.planning
from evplanner.cli import main
from evplanner.data import load_stations, load_vehicles

from .conftest import ROOT

EVPLANNER = str(Path(sys.executable).parent / "evplanner")
STATIONS = ROOT / "evplanner" / "bundled" / "stations.parquet"
SITE_COLUMNS = [
    "site_id", "lon", "lat", "vehicles_served", "mean_distance_m", "max_distance_m",
]  # fmt: skip
METRIC_KEYS = {"schema", "scenario", "demand", "existing", "coverage", "today",
               "candidates", "sizing",
               "change", "fit", "load_report", "notes", "run"}  # fmt: skip


@pytest.fixture(scope="module")
def plain_csv(tmp_path_factory) -> Path:
    """A plain lon/lat/weight CSV of 400 points around four Washington towns."""
    rng = np.random.default_rng(7)
    towns = np.array([[-122.33, 47.61], [-117.42, 47.66], [-120.51, 46.60],
                      [-122.48, 48.75]])  # fmt: skip
    pick = rng.integers(0, 4, 400)
    lonlat = towns[pick] + rng.normal(0, 0.05, (400, 2))
    path = tmp_path_factory.mktemp("plain") / "points.csv"
    pd.DataFrame(
        {"lon": lonlat[:, 0], "lat": lonlat[:, 1], "weight": rng.integers(1, 5, 400)}
    ).to_csv(path, index=False)
    return path


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--k", "0"], "--k: expected a number of new sites >= 1"),
        (
            ["--k", "3", "--out", "sites.txt"],
            "--out sites.txt: unknown site file format '.txt'",
        ),
        (["--k", "3", "--out", "nowhere/sites.csv"], "does not exist"),
        (["--k", "3", "--input", "missing.csv"], "missing.csv: file not found"),
        (["--k", "3", "--input", "nothing-*.parquet"], "no file matches"),
        (
            ["--k", "3", "--workers", "2", "--scheduler", "tcp://127.0.0.1:1"],
            "either --scheduler or --workers",
        ),
        (["--k", "3", "--model-years", "2023:2018"], "--model-years: expected"),
        (
            ["--k", "3", "--ev-type", "HYDROGEN"],
            "--ev-type: expected some of ('BEV', 'PHEV')",
        ),
        (["--k", "3", "--radius-km", "-1"], "--radius-km: expected a finite"),
        (["--k", "3", "--radius-km", "inf"], "--radius-km: expected a finite"),
        (["--k", "3", "--radius-km", "nan"], "--radius-km: expected a finite"),
        (["--k", "3", "--timeout", "soon"], "--timeout: expected a duration"),
        (["--k", "3", "--crs", "EPSG:4326"], "expected a projected CRS"),
        (
            ["--k", "3", "--fixed", "no-stations.csv"],
            "no-stations.csv: file not found (--fixed: none",
        ),
        (["--k", "3", "--existing", "elsewhere"], "elsewhere: file not found"),
        (["--k", "999999"], "--k: expected an integer between 1 and 5000"),
        (["--k", "2000"], "--k: the demand has 1,767 location(s), fewer than the"),
        (["--k", "3", "--county", "Kng"], "--county: no vehicle has ['Kng']"),
        (["--k", "3", "--out", "."], "--out .: expected a file name, got a directory"),
        (
            ["--k", "3", "--out", "/proc/sites.csv"],
            "--out /proc/sites.csv: cannot write",
        ),
        (["--k", "3", "--report", "r.txt"], "--report r.txt: expected an .html"),
        (["--k", "3", "--worker-timeout", "0s"], "--worker-timeout: expected a"),
        (["--k", "three"], "invalid int value"),
        (["--k", "3", "--sizing", "fifo"], "invalid choice: 'fifo'"),
        (
            ["--k", "3", "--vehicles-per-l2-port", "0"],
            "--vehicles-per-l2-port: expected a finite number > 0, got 0.0",
        ),
        (
            ["--k", "3", "--max-wait-probability", "1.5"],
            "--max-wait-probability: expected a finite number > 0 and < 1",
        ),
        (
            [
                "--k",
                "3",
                "--max-mean-wait-hours",
                "0.5",
                "--max-wait-probability",
                "0.1",
            ],
            "--max-wait-probability: expected None with a mean-wait target",
        ),  # fmt: skip
        (["--k", "3", "--hours-per-day", "30"], "--hours-per-day: expected hours"),
        (["--k", "3", "--new-site-ports", "0"], "--new-site-ports: expected an"),
        (
            ["--k", "3", "--capacitated", "--weighting", "range"],
            "--capacitated: expected False unless the demand counts vehicles",
        ),
    ],
)
def test_solve_bad_arguments_exit_2(capsys, tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    if "--out" not in argv:
        argv = [*argv, "--out", "sites.csv"]
    code, out, err = run(capsys, "solve", *argv)
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert not (tmp_path / "sites.csv").exists()


@pytest.mark.parametrize("name", ["sites.csv", "sites.geojson"])
def test_directory_as_out_exit_2(capsys, tmp_path, name):
    # A directory named like a site file: refused before any work, not exit 1 after.
    folder = tmp_path / name
    folder.mkdir()
    code, _, err = run(capsys, "solve", "--k", 2, "--out", folder)
    assert code == 2
    assert err == (
        f"evplanner solve: error: --out {folder}: expected a file name, got a "
        "directory\n"
    )
    assert not list(folder.iterdir())


def test_bad_input_file_names_the_file(capsys, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    code, _, err = run(capsys, "solve", "--k", 2, "--input", bad,
                       "--out", tmp_path / "s.csv")  # fmt: skip
    assert code == 2
    assert str(bad) in err and "missing required column" in err


@pytest.mark.parametrize(
    "option", [["--county", "King"], ["--ev-type", "BEV"],
               ["--model-years", "2018:2023"], ["--weighting", "range"]],
)  # fmt: skip
def test_filters_on_plain_file_exit_2(capsys, tmp_path, plain_csv, option):
    code, _, err = run(capsys, "solve", "--k", 2, "--input", plain_csv, *option,
                       "--out", tmp_path / "s.csv")  # fmt: skip
    assert code == 2
    assert str(plain_csv) in err
    assert "plain lon/lat file" in err and option[0] in err


def test_unexpected_error_exits_1(capsys, tmp_path, monkeypatch):
    import evplanner.planning

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(evplanner.planning, "solve", broken)
    code, _, err = run(capsys, "solve", "--k", 2, "--out", tmp_path / "s.csv")
    assert code == 1
    assert "unexpected error: RuntimeError: disk on fire" in err


def test_quiet_is_quiet_after_a_run_with_progress(capsys, tmp_path, plain_csv):
    # main() twice in one process: the first run's progress output is not left on.
    code, _, err = run(capsys, "solve", "--k", 2, "--input", plain_csv,
                       "--out", tmp_path / "a.csv")  # fmt: skip
    assert code == 0 and "iteration" in err
    code, _, err = run(capsys, "solve", "--k", 2, "--input", plain_csv, "--quiet",
                       "--out", tmp_path / "b.csv")  # fmt: skip
    assert code == 0 and err == ""


def test_console_script_exit_code_and_message(tmp_path):
    proc = subprocess.run(
        [EVPLANNER, "solve", "--k", "2", "--input", str(tmp_path / "none.parquet"),
         "--out", str(tmp_path / "s.csv")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "none.parquet: file not found" in proc.stderr
    assert "Traceback" not in proc.stderr


# --------------------------------------------------------------------------- solve


@pytest.fixture(scope="module")
def solved(tmp_path_factory):
    """The bundled data solved once per output format (in memory, k = 8)."""
    out = tmp_path_factory.mktemp("solve")
    codes = {}
    for ext in ("csv", "geojson", "parquet"):
        codes[ext] = main(["solve", "--k", "8", "--seed", "3", "--quiet",
                           "--out", str(out / f"sites.{ext}"),
                           "--metrics", str(out / f"metrics-{ext}.json")])  # fmt: skip
    return out, codes


def test_output_formats_round_trip(solved):
    out, codes = solved
    assert codes == {"csv": 0, "geojson": 0, "parquet": 0}
    csv = pd.read_csv(out / "sites.csv")
    assert list(csv.columns) == list(evplanner.planning.SITE_COLUMNS)
    assert set(SITE_COLUMNS) <= set(csv.columns)
    assert len(csv) == 8
    for name in ("sites.geojson", "sites.parquet"):
        read = (gpd.read_parquet if name.endswith("parquet") else gpd.read_file)(
            out / name
        )
        assert read.crs.to_epsg() == 4326
        assert set(SITE_COLUMNS) <= set(read.columns)
        np.testing.assert_allclose(read.geometry.x, csv["lon"], rtol=0, atol=1e-9)
        np.testing.assert_allclose(read.geometry.y, csv["lat"], rtol=0, atol=1e-9)
        assert read["site_id"].tolist() == csv["site_id"].tolist()
        for column in SITE_COLUMNS[1:]:
            np.testing.assert_allclose(
                read[column].to_numpy(float), csv[column].to_numpy(float), rtol=1e-12
            )


def test_metrics_json(solved):
    out, _ = solved
    metrics = json.loads((out / "metrics-csv.json").read_text())
    assert set(metrics) == METRIC_KEYS and metrics["schema"] == "evplanner.plan/1"
    vehicles, report = load_vehicles()
    demand, cover = metrics["demand"], metrics["coverage"]
    # Independent checks against the loader: every kept vehicle is demand.
    assert demand["total_weight"] == len(vehicles) == report.rows_kept
    # Demand sits at the vehicles' census-tract centres (the default).
    assert cover["n_points"] == vehicles["census_tract"].nunique() == 1_767
    assert metrics["scenario"]["new_sites"] == 8 and demand["crs"] == "EPSG:32610"
    assert metrics["load_report"]["demand"]["rows_read"] == report.rows_read
    assert metrics["load_report"]["demand"]["dropped"] == report.dropped
    assert metrics["load_report"]["existing"] is None and metrics["today"] is None
    assert cover["mean_distance_m"] == pytest.approx(
        cover["objective_m"] / demand["total_weight"]
    )
    assert 0 < cover["coverage_share"] < 1 and cover["radius_m"] == 5000.0
    sites = pd.read_csv(out / "sites.csv")
    assert sites["vehicles_served"].sum() == pytest.approx(demand["total_weight"])
    # The same seed gives the same sites in every run (three runs here).
    again = json.loads((out / "metrics-parquet.json").read_text())
    assert again["coverage"] == cover and again["run"] != metrics["run"]


def test_solve_filters_and_fixed_stations(capsys, tmp_path):
    code, out, err = run(
        capsys, "solve", "--k", 3, "--county", "King", "--ev-type", "bev",
        "--model-years", "2020:2023", "--fixed", STATIONS, "--radius-km", 2,
        "--out", tmp_path / "s.csv", "--metrics", tmp_path / "m.json",
    )  # fmt: skip
    assert code == 0, err
    vehicles, _ = load_vehicles()
    chosen = vehicles[
        vehicles["county"].eq("King") & vehicles["ev_type"].eq("BEV")
        & vehicles["model_year"].between(2020, 2023)
    ]  # fmt: skip
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["demand"]["total_weight"] == len(chosen)
    stations, station_report = load_stations(STATIONS)
    assert metrics["existing"]["n_sites"] == len(stations)
    assert metrics["load_report"]["existing"]["rows_kept"] == len(stations)
    sites = pd.read_csv(tmp_path / "s.csv", dtype={"station_id": "string"})
    assert len(sites) == 3 + len(stations)
    assert sites["kind"].tolist() == ["new"] * 3 + ["existing"] * len(stations)
    np.testing.assert_allclose(sites["lon"][3:], stations["lon"])
    assert (
        sites["station_id"][3:].astype(str).tolist()
        == stations["station_id"].astype(str).tolist()
    )
    assert metrics["coverage"]["radius_m"] == 2000.0
    # Today's network alone is measured too, and the new sites improve on it.
    assert metrics["today"]["n_new_sites"] == 0
    assert (
        metrics["change"]["objective_m"]["improved"]
        <= metrics["change"]["objective_m"]["baseline"]
    )
    assert "3 new sites + " in out and station_report.format() in out


def test_solve_plain_file_takes_rows_as_given(capsys, tmp_path, plain_csv):
    code, _, err = run(capsys, "solve", "--k", 4, "--input", plain_csv,
                       "--out", tmp_path / "s.geojson", "--metrics",
                       tmp_path / "m.json", "--crs", "EPSG:32610")  # fmt: skip
    assert code == 0, err
    metrics = json.loads((tmp_path / "m.json").read_text())
    frame = pd.read_csv(plain_csv)
    assert metrics["coverage"]["n_points"] == len(frame)
    assert not metrics["demand"]["aggregated"]
    assert metrics["demand"]["total_weight"] == frame["weight"].sum()
    assert metrics["load_report"]["demand"]["kind"] == "points"
    # Four well separated towns, four sites: nearly everyone within 20 km.
    curve = {c["radius_m"]: c["share"] for c in metrics["coverage"]["coverage_curve"]}
    assert curve[20_000.0] > 0.95


# --------------------------------------------------------------------------- sweep


def test_sweep_writes_table_and_plot(capsys, tmp_path):
    code, out, err = run(capsys, "sweep", "--k", "2:6:2", "--quiet",
                         "--out", tmp_path / "sweep.csv")  # fmt: skip
    assert code == 0, err
    table = pd.read_csv(tmp_path / "sweep.csv")
    assert table["new_sites"].tolist() == [2, 4, 6]
    assert {"objective_m", "coverage_share", "mean_distance_m"} <= set(table)
    assert table["objective_m"].iloc[-1] < table["objective_m"].iloc[0]
    png = (tmp_path / "sweep.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


@pytest.mark.parametrize("k", ["5:", "0:10", "a,b", "10:5:0", "1:1000000000", "1:4000"])
def test_sweep_bad_k_is_refused_before_any_work(capsys, tmp_path, k):
    start = time.perf_counter()
    code, _, err = run(capsys, "sweep", "--k", k, "--out", tmp_path / "s.csv")
    assert code == 2 and "--k" in err
    assert time.perf_counter() - start < 5  # no list of a billion values
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------- synth


def test_synth_is_chunked_and_deterministic(capsys, tmp_path):
    import pyarrow.parquet as pq

    paths = [tmp_path / "a.parquet", tmp_path / "b.parquet"]
    for path in paths:
        code, out, err = run(capsys, "synth", "--n", 2500, "--chunk-rows", 1000,
                             "--seed", 5, "--out", path)  # fmt: skip
        assert code == 0, err
    meta = pq.ParquetFile(paths[0]).metadata
    assert meta.num_rows == 2500 and meta.num_row_groups == 3
    a, b = (pd.read_parquet(p) for p in paths)
    pd.testing.assert_frame_equal(a, b)
    assert list(a.columns) == ["lon", "lat", "weight"]
    # Shaped like Washington: inside its bounding box (with the scatter).
    assert a["lon"].between(-125, -116).all() and a["lat"].between(45, 49.5).all()


@pytest.mark.parametrize("argv, message", [
    (["--n", "0", "--out", "x.parquet"], "--n: expected a positive number"),
    (["--n", "10", "--out", "x.csv"], "expected a .parquet file"),
    (["--n", "10", "--out", "x.parquet", "--spread-m", "-100"], "--spread-m"),
    (["--n", "10", "--out", "x.parquet", "--spread-m", "nan"], "--spread-m"),
])  # fmt: skip
def test_synth_bad_arguments_write_nothing(
    capsys, tmp_path, monkeypatch, argv, message
):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "synth", *argv)
    assert code == 2 and message in err
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------- outputs


@pytest.mark.parametrize("clash", ["input", "metrics", "existing", "report"])
def test_an_output_never_overwrites_an_input_or_another_output(
    capsys, tmp_path, plain_csv, clash
):
    target = tmp_path / "v.csv"
    target.write_bytes(plain_csv.read_bytes())
    before = target.read_bytes()
    argv = ["solve", "--k", 2, "--out", target]
    if clash == "input":
        argv += ["--input", target]
    elif clash == "metrics":
        argv += ["--metrics", target]
    elif clash == "existing":
        argv += ["--existing", target]
    else:
        argv += [
            "--report",
            target.with_suffix(".html"),
            "--metrics",
            target.with_suffix(".html"),
        ]
    code, _, err = run(capsys, *argv)
    assert code == 2, err
    assert "is also the input" in err or "is also the output" in err
    assert target.read_bytes() == before


@pytest.mark.parametrize("option", ["--fixed", "--existing"])
def test_metrics_never_overwrites_the_station_file(capsys, tmp_path, option):
    stations = tmp_path / "st.csv"
    stations.write_text("lon,lat\n-122.33,47.61\n-122.2,47.7\n")
    before = stations.read_bytes()
    code, _, err = run(capsys, "solve", "--k", 2, option, stations,
                       "--out", tmp_path / "s.csv", "--metrics", stations)  # fmt: skip
    assert code == 2, err
    assert f"--metrics {stations} is also the input {option} {stations}" in err
    assert stations.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["st.csv"]


def test_synth_never_overwrites_the_bundled_vehicles(capsys, tmp_path):
    from evplanner.data import BUNDLED_VEHICLES

    before = BUNDLED_VEHICLES.read_bytes()
    # The bundled file is the input when --input is not given; also through a link.
    link = tmp_path / "link.parquet"
    link.symlink_to(BUNDLED_VEHICLES)
    for out in (BUNDLED_VEHICLES, link):
        code, _, err = run(capsys, "synth", "--n", 10, "--out", out)
        assert code == 2 and "is also the input --input" in err, err
    assert BUNDLED_VEHICLES.read_bytes() == before


@pytest.mark.parametrize("name", ["vehicles", "stations", "tracts"])
def test_solve_never_overwrites_the_bundled_data(capsys, tmp_path, name):
    # The census tracts are read for tract demand (the default) though no option
    # names them; the vehicles and stations are the package's data in any run.
    from evplanner.data import BUNDLED_DIR

    bundled = BUNDLED_DIR / f"{name}.parquet"
    before = bundled.read_bytes()
    plain = tmp_path / "points.csv"
    plain.write_text("lon,lat\n-122.3,47.6\n-122.2,47.5\n")
    link = tmp_path / "sites.parquet"
    link.symlink_to(bundled)
    for extra in ([], ["--input", plain]):
        code, _, err = run(capsys, "solve", "--k", 1, *extra, "--out", link)
        assert code == 2 and f"--out {link} is also the input" in err, err
    assert bundled.read_bytes() == before


def test_sweep_output_never_overwrites_its_input(capsys, tmp_path, plain_csv):
    target = tmp_path / "points.csv"
    target.write_bytes(plain_csv.read_bytes())
    code, _, err = run(capsys, "sweep", "--k", "2:3", "--input", target,
                       "--out", target)  # fmt: skip
    assert code == 2 and "--out" in err and "is also the input" in err
    assert target.read_bytes() == plain_csv.read_bytes()


def test_unwritable_metrics_fails_before_writing_the_sites(capsys, tmp_path):
    code, _, err = run(capsys, "solve", "--k", 2, "--out", tmp_path / "s.csv",
                       "--metrics", "/proc/m.json")  # fmt: skip
    assert code == 2 and "--metrics /proc/m.json" in err
    assert not (tmp_path / "s.csv").exists()


def test_outputs_replace_old_files_whole(capsys, tmp_path):
    sites = tmp_path / "s.geojson"
    sites.write_text("old")
    code, _, err = run(capsys, "solve", "--k", 2, "--out", sites, "--quiet")
    assert code == 0, err
    assert json.loads(sites.read_text())["type"] == "FeatureCollection"
    assert [p.name for p in tmp_path.iterdir()] == ["s.geojson"]  # no temp files


def test_a_failed_write_keeps_the_old_geojson(capsys, tmp_path, monkeypatch):
    # The disk fills while the new file is written: the old one is still there,
    # whole (it used to be deleted before the GeoJSON driver wrote the new one).
    import errno

    import evplanner._io

    sites, metrics = tmp_path / "s.geojson", tmp_path / "m.json"
    sites.write_text('{"old": true}')
    metrics.write_text("old metrics")

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(evplanner._io.os, "fsync", disk_full)
    code, _, err = run(capsys, "solve", "--k", 2, "--out", sites,
                       "--metrics", metrics, "--quiet")  # fmt: skip
    assert code == 1 and "No space left on device" in err
    assert sites.read_text() == '{"old": true}'
    assert metrics.read_text() == "old metrics"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "s.geojson"]


def test_sweep_writes_table_and_plot_all_or_nothing(capsys, tmp_path, monkeypatch):
    import evplanner.cli

    def broken(*args, **kwargs):
        raise RuntimeError("no fonts")

    monkeypatch.setattr(evplanner.cli, "_sweep_png", broken)
    code, _, err = run(capsys, "sweep", "--k", "2:3", "--quiet",
                       "--out", tmp_path / "sweep.csv")  # fmt: skip
    assert code == 1 and "no fonts" in err
    assert not list(tmp_path.iterdir())


def test_report_is_written(capsys, tmp_path):
    code, out, err = run(capsys, "solve", "--k", 4, "--existing", "dc-fast",
                         "--out", tmp_path / "s.csv", "--report",
                         tmp_path / "plan.html", "--quiet")  # fmt: skip
    assert code == 0, err
    html = (tmp_path / "plan.html").read_text()
    assert 'id="map"' in html and "data:image/png;base64," in html
    site_table = html.split('<table id="sites">')[1].split("</table>")[0]
    assert site_table.count("<tr><td>N") == 4 and "2025-02-09" in html
    sized = html.split('<table id="sized-new-sites">')[1].split("</table>")[0]
    assert sized.count("<tr><td>N") == 4
    assert f"report: {tmp_path / 'plan.html'}" in out


# --------------------------------------------------------------------------- demand


def test_info_counts_tract_and_zip_demand(capsys):
    code, out, _ = run(capsys, "info")
    assert code == 0
    assert "rows kept: 150,137" in out
    assert "distinct locations (tract demand): 1,767" in out
    code, out, _ = run(capsys, "info", "--demand-at", "zip")
    assert "distinct locations (zip demand): 537" in out


@pytest.mark.parametrize("options, check", [
    (["--demand-at", "zip"], lambda m: m["coverage"]["n_points"] == 537),
    (["--weighting", "residents"],
     lambda m: m["demand"]["total_weight"] == 7_705_281),
    (["--residents-share", "0.5"],
     lambda m: m["demand"]["total_weight"] == pytest.approx(150_137)),
    (["--district", "1,41"], lambda m: 0 < m["demand"]["total_vehicles"] < 20_000),
    (["--utility", "PUGET SOUND ENERGY INC"],
     lambda m: 0 < m["demand"]["total_vehicles"] < 150_137),
    (["--year", "2028"], lambda m: m["demand"]["total_vehicles"] > 150_137),
])  # fmt: skip
def test_demand_options(capsys, tmp_path, options, check):
    code, _, err = run(
        capsys,
        "solve",
        "--k",
        3,
        *options,
        "--quiet",
        "--out",
        tmp_path / "s.csv",
        "--metrics",
        tmp_path / "m.json",
    )
    assert code == 0, err
    assert check(json.loads((tmp_path / "m.json").read_text()))


def test_tract_demand_with_todays_stations(capsys, tmp_path):
    """The planner's real question: new sites among today's 2,473 stations."""
    code, _, err = run(
        capsys,
        "solve",
        "--k",
        10,
        "--existing",
        "public",
        "--quiet",
        "--out",
        tmp_path / "s.csv",
        "--metrics",
        tmp_path / "m.json",
    )
    assert code == 0, err
    sites = pd.read_csv(tmp_path / "s.csv", dtype={"station_id": "string"})
    new, existing = sites[sites["kind"] == "new"], sites[sites["kind"] == "existing"]
    # Tract demand: new sites gather several demand locations (ZIP demand put each
    # on one centroid, at distance 0).
    assert new["demand_points"].median() > 1 and new["demand_points"].sum() > 20
    assert new["mean_distance_m"].median() > 0
    # Existing stations' loads are reported, and hundreds serve demand.
    assert len(existing) == 2_473 and existing["vehicles_served"].gt(0).sum() > 500
    assert sites["vehicles_served"].sum() == pytest.approx(150_137)
    assert new["evs_per_1000_residents"].notna().all()


def test_sizing_with_todays_stations(capsys, tmp_path):
    """Overloaded stations and sized new sites, in the CSV, metrics and report."""
    code, out, err = run(
        capsys, "solve", "--k", 10, "--existing", "public", "--quiet",
        "--out", tmp_path / "s.csv", "--metrics", tmp_path / "m.json",
        "--report", tmp_path / "r.html",
    )  # fmt: skip
    assert code == 0, err
    sites = pd.read_csv(tmp_path / "s.csv", dtype={"station_id": "string",
                                                   "action": "string"})  # fmt: skip
    new, existing = sites[sites["kind"] == "new"], sites[sites["kind"] == "existing"]
    # Every new site is sized: ports for its vehicles, about 28 vehicles a port.
    assert (new["action"] == "build new site").all() and (new["ports"] >= 1).all()
    assert new["vehicles_per_port"].between(1, 27.92).all()
    # Existing stations keep their ports (6,653 on 2,473 stations); the overloaded
    # ones are listed with the ports to add.
    assert existing["ports"].sum() == 6_653
    over = existing[existing["overloaded"]]
    assert len(over) > 100 and (over["action"] == "add ports").all()
    assert (over["ports_to_add"] > 0).all()
    assert (existing.loc[~existing["overloaded"], "action"].isna()).all()
    # The 1-port station in Burien the issue names: 963 vehicles on one port.
    assert existing["vehicles_per_port"].max() == pytest.approx(963.0)
    m = json.loads((tmp_path / "m.json").read_text())["sizing"]
    assert m["n_overloaded"] == len(over)
    assert m["ports_to_add"] == int(over["ports_to_add"].sum())
    assert m["new_site_ports_needed"] == int(new["ports"].sum())
    assert m["existing_vehicles_per_port"]["median"] == pytest.approx(48.0)
    assert m["unserved_vehicles"] > 0 and m["suggested_extra_sites"] > 0
    assert m["model"]["vehicles_per_l2_port"] == 33.0
    html = (tmp_path / "r.html").read_text()
    assert "Overloaded stations: add ports here" in html
    assert "New sites: build here, this size" in html
    assert html.count("<td>build new site</td>") == 10
    assert html.count("<td>add ports</td>") == min(len(over), 25)
    assert f"{len(over):,} of {m['existing_with_load']:,} with load" in html
    assert f"sizing (ratio): {len(over):,} of" in out


def test_sizing_options_reach_the_plan(capsys, tmp_path):
    code, out, err = run(
        capsys, "solve", "--k", 3, "--county", "Whitman", "--quiet",
        "--sizing", "queue", "--sessions-per-vehicle-day", "0.3",
        "--session-hours", "2", "--hours-per-day", "16",
        "--max-mean-wait-hours", "0.25", "--new-site-ports", "6",
        "--out", tmp_path / "s.csv", "--metrics", tmp_path / "m.json",
    )  # fmt: skip
    assert code == 0, err
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["sizing"]["model"] == {
        "method": "queue", "sessions_per_vehicle_day": 0.3, "session_hours": 2.0,
        "hours_per_day": 16.0, "max_wait_probability": None,
        "max_mean_wait_hours": 0.25,
    }  # fmt: skip
    assert m["scenario"]["new_site_ports"] == 6
    sites = pd.read_csv(tmp_path / "s.csv")
    from evplanner.sizing import queue_ports_needed

    expected = queue_ports_needed(
        sites["load_vehicles"].to_numpy(), sessions_per_vehicle_day=0.3,
        session_hours=2.0, hours_per_day=16.0, max_mean_wait_hours=0.25,
    )  # fmt: skip
    assert sites["ports"].tolist() == np.maximum(expected, 1).tolist()
    assert "sizing (queue)" in out


def test_capacitated_solve(capsys, tmp_path):
    code, out, err = run(
        capsys, "solve", "--k", 3, "--county", "Whitman", "--existing", "public",
        "--capacitated", "--new-site-ports", "8", "--quiet",
        "--out", tmp_path / "s.csv", "--metrics", tmp_path / "m.json",
    )  # fmt: skip
    assert code == 0, err
    sites = pd.read_csv(tmp_path / "s.csv")
    m = json.loads((tmp_path / "m.json").read_text())
    s = m["sizing"]
    assert m["scenario"]["capacitated"] and s["capacitated"]
    # Every vehicle is carried, no site above its capacity.
    assert sites["load_vehicles"].sum() == pytest.approx(m["demand"]["total_vehicles"])
    assert (sites["load_vehicles"]
            <= sites["capacity_vehicles"] * (1 + 1e-6)).all()  # fmt: skip
    assert not sites["overloaded"].any() and s["unserved_vehicles"] == 0
    assert s["mean_distance_m"] == pytest.approx(
        s["objective_m"] / m["demand"]["total_vehicles"]
    )
    assert "with capacities: mean distance" in out


# --------------------------------------------------------------------------- hardening


@pytest.mark.parametrize("option", ["--fixed", "--existing"])
def test_bad_station_rows_are_counted_not_dropped_silently(capsys, tmp_path, option):
    stations = tmp_path / "stations.csv"
    stations.write_text(
        "lon,lat\n-122.33,47.61\nxx,47.5\n-122.1,\n151.21,-33.87\n37.62,55.75\n"
    )  # Seattle, two bad rows, Sydney, Moscow
    code, out, err = run(
        capsys,
        "solve",
        "--k",
        2,
        option,
        stations,
        "--quiet",
        "--out",
        tmp_path / "s.csv",
        "--metrics",
        tmp_path / "m.json",
    )
    assert code == 0, err
    report = json.loads((tmp_path / "m.json").read_text())["load_report"]["existing"]
    assert report["rows_read"] == 5 and report["rows_kept"] == 1
    assert sum(report["dropped"].values()) == 2 and report["out_of_area"] == 2
    assert "rows dropped: 4" in out and "outside the planning area" in out
    assert len(pd.read_csv(tmp_path / "s.csv")) == 2 + 1


def test_a_crs_far_from_the_data_is_refused(capsys, tmp_path):
    code, _, err = run(capsys, "solve", "--k", 2, "--crs", "EPSG:32633",
                       "--out", tmp_path / "s.csv")  # fmt: skip
    assert code == 2 and "--crs: EPSG:32633" in err and "is for lon 12.0" in err
    assert "UTM zone EPSG:32610 there" in err and not (tmp_path / "s.csv").exists()


@pytest.mark.parametrize("command", [["info"], ["synth", "--n", "10"]])
def test_info_and_synth_refuse_a_crs_far_from_the_data(
    capsys, tmp_path, monkeypatch, command
):
    monkeypatch.chdir(tmp_path)
    argv = [*command, "--crs", "EPSG:32633"]
    if command[0] == "synth":
        argv += ["--out", "x.parquet"]
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert (
        f"evplanner {command[0]}: error: --crs: EPSG:32633 (WGS 84 / UTM zone " in err
    )
    assert "UTM zone EPSG:32610 there" in err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "stray, n_stray",
    [((0.0, 0.0), 2), ((-80.19, 25.77), 5)],  # null island (zone 20N); Miami (14N)
    ids=["null-island", "miami"],
)
@pytest.mark.parametrize("keep", [True, False], ids=["kept", "left-out"])
def test_stray_points_do_not_move_the_crs(capsys, tmp_path, stray, n_stray, keep):
    # The bounding box's centre would pick the UTM zone of the middle of the
    # Pacific or of Texas; the weighted median stays in Seattle's zone.
    rng = np.random.default_rng(3)
    seattle = np.column_stack(
        [-122.33 + rng.normal(0, 0.05, 40), 47.61 + rng.normal(0, 0.05, 40)]
    )
    frame = pd.DataFrame(
        np.vstack([seattle, [stray] * n_stray]), columns=["lon", "lat"]
    )
    path = tmp_path / "points.csv"
    frame.to_csv(path, index=False)
    keep_option = ["--keep-out-of-area"] if keep else []
    code, out, err = run(capsys, "solve", "--k", 2, "--input", path, "--quiet",
                         *keep_option, "--out", tmp_path / "s.csv",
                         "--metrics", tmp_path / "m.json")  # fmt: skip
    assert code == 0, err
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["demand"]["crs"] == "EPSG:32610"
    # The stray rows are counted either way, and used only when asked for.
    report = metrics["load_report"]["demand"]
    assert report["rows_read"] == 40 + n_stray and report["out_of_area"] == n_stray
    assert metrics["coverage"]["n_points"] == 40 + (n_stray if keep else 0)
    assert "outside the planning area (WA): " in out


@pytest.mark.slow
@pytest.mark.cluster
def test_stray_points_on_a_worker(tmp_path):
    # The Dask path: CRS from per-partition histograms, strays counted per block.
    rng = np.random.default_rng(3)
    seattle = np.column_stack(
        [-122.33 + rng.normal(0, 0.05, 40), 47.61 + rng.normal(0, 0.05, 40)]
    )
    path = tmp_path / "points.csv"
    pd.DataFrame(
        np.vstack([seattle, [(-80.19, 25.77)] * 5]), columns=["lon", "lat"]
    ).to_csv(path, index=False)
    proc = subprocess.run(
        [EVPLANNER, "solve", "--k", "2", "--input", str(path), "--workers", "1",
         "--quiet", "--out", str(tmp_path / "s.csv"),
         "--metrics", str(tmp_path / "m.json")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["run"]["mode"].startswith("Dask")
    assert metrics["demand"]["crs"] == "EPSG:32610"
    assert metrics["load_report"]["demand"]["out_of_area"] == 5
    assert metrics["coverage"]["n_points"] == 40


def test_demand_all_outside_the_area_says_so(capsys, tmp_path):
    path = tmp_path / "miami.csv"
    path.write_text("lon,lat\n-80.19,25.77\n-80.2,25.8\nx,25.8\n")
    code, _, err = run(capsys, "solve", "--k", 1, "--input", path, "--quiet",
                       "--out", tmp_path / "s.csv")  # fmt: skip
    assert code == 2 and err.count("\n") == 1
    assert (
        f"{path}: no demand left to place sites for: 0 of 3 rows kept (left out: "
        "1 unparsable point, 2 outside the planning area (--keep-out-of-area keeps "
        "them))" in err
    ), err


def test_overflowing_weights_exit_2(capsys, tmp_path):
    path = tmp_path / "w.csv"
    path.write_text("lon,lat,weight\n-122.3,47.6,1e308\n-122.2,47.5,1e308\n")
    code, _, err = run(capsys, "solve", "--k", 1, "--input", path,
                       "--out", tmp_path / "s.csv")  # fmt: skip
    assert code == 2 and "w.csv" in err and "weight" in err
    assert "nan" not in err.lower() and not (tmp_path / "s.csv").exists()


def bad_csv(tmp_path, kind: str) -> tuple[Path, str]:
    """A 6,000-row CSV with one bad row beyond the first 64 kB; its expected error."""
    rows = ["lon,lat,name"] + [f"-122.{i % 90:02d},47.5,s{i}" for i in range(6000)]
    if kind == "ragged":
        rows[5000] += ",9"
        path = tmp_path / "ragged.csv"
        path.write_text("\n".join(rows) + "\n")
        return path, f"{path}, row 5000: not a valid CSV file: the row has 4 fields"
    rows[5000] = "-122.3,47.6,Caf\xe9"
    path = tmp_path / "latin.csv"
    path.write_bytes(("\n".join(rows) + "\n").encode("latin-1"))
    assert path.read_bytes().index(b"\xe9") > 65536
    return path, f"{path}, row 5000: not a CSV text file: byte 0xe9 is not UTF-8"


@pytest.mark.parametrize("kind", ["ragged", "latin-1"])
def test_bad_csv_text_is_one_line_naming_file_and_row(capsys, tmp_path, kind):
    path, message = bad_csv(tmp_path, kind)
    code, _, err = run(capsys, "solve", "--k", 2, "--input", path, "--quiet",
                       "--out", tmp_path / "s.csv")  # fmt: skip
    assert code == 2
    assert err.count("\n") == 1 and err.startswith(
        f"evplanner solve: error: {message}"
    ), err
    assert not (tmp_path / "s.csv").exists()


@pytest.mark.slow
@pytest.mark.cluster
@pytest.mark.parametrize("kind", ["ragged", "latin-1"])
def test_bad_csv_on_a_worker_is_one_line(tmp_path, kind):
    path, message = bad_csv(tmp_path, kind)
    proc = subprocess.run(
        [EVPLANNER, "solve", "--k", "2", "--input", str(path), "--workers", "1",
         "--out", str(tmp_path / "s.csv")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"evplanner solve: error: {message}"), proc.stderr
    assert "Traceback" not in proc.stderr and "Compute Failed" not in proc.stderr
    assert not (tmp_path / "s.csv").exists()
