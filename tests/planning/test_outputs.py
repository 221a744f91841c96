"""A plan's files: the CLI writes what the app downloads; atomic and installable."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import panel as pn
import pytest

from evplanner.app import PlannerState, bundled_store
from evplanner.cli import main
from evplanner.planning import Scenario, metrics_json, report_html, sites_bytes, solve
from evplanner.planning.writers import write_plan

ROOT = Path(__file__).resolve().parents[2]


def _without_run(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k != "run"}


def _site_rows(html: str) -> list[str]:
    return re.findall(r"<tr><td>.*?</tr>", html)


def test_cli_files_equal_the_app_downloads(tmp_path):
    out = tmp_path
    args = [
        "solve",
        "--k",
        "7",
        "--existing",
        "dc-fast",
        "--quiet",
        "--metrics",
        str(out / "m.json"),
        "--report",
        str(out / "r.html"),
    ]
    for ext in ("csv", "geojson", "parquet"):
        assert main([*args, "--out", str(out / f"s.{ext}")]) == 0
    state = PlannerState(store=bundled_store(), existing="dc_fast")
    try:
        plan = state.wait().plan
    finally:
        state.close()
        pn.state.reset()
    assert plan.scenario == Scenario(new_sites=7, existing="dc_fast")
    assert (out / "s.csv").read_bytes() == sites_bytes(plan, "csv")
    assert (out / "s.geojson").read_bytes() == sites_bytes(plan, "geojson")
    pd.testing.assert_frame_equal(
        pd.read_parquet(out / "s.parquet"),
        pd.read_parquet(io.BytesIO(sites_bytes(plan, "geoparquet"))),
    )
    cli_metrics = json.loads((out / "m.json").read_text())
    app_metrics = json.loads(metrics_json(plan))
    assert _without_run(cli_metrics) == _without_run(app_metrics)
    assert set(cli_metrics["run"]) == {
        "mode",
        "n_partitions",
        "seconds",
        "created_utc",
        "evplanner_version",
    }
    cli_report = (out / "r.html").read_text()
    assert _site_rows(cli_report) == _site_rows(report_html(plan))


@pytest.mark.parametrize(
    "cli_args, app_controls",
    [
        # The app's default: tract demand with today's public stations fixed.
        (["--existing", "public"], {}),
        (["--existing", "none"], {"existing": "none"}),
        ([], {"existing": "none"}),  # the CLI's own default: no stations
    ],
)
def test_cli_solve_k10_agrees_with_the_app_on_tract_demand(
    tmp_path, cli_args, app_controls
):
    sites, metrics = tmp_path / "s.csv", tmp_path / "m.json"
    args = ["solve", "--k", "10", *cli_args, "--quiet"]
    assert main([*args, "--out", str(sites), "--metrics", str(metrics)]) == 0
    state = PlannerState(store=bundled_store(), k=10, **app_controls)
    try:
        plan = state.wait().plan
    finally:
        state.close()
        pn.state.reset()
    assert plan.scenario.demand_at == "tract" and plan.coverage.n_points == 1767
    # The same sites (every byte of the site file) and the same objective.
    assert sites.read_bytes() == sites_bytes(plan, "csv")
    cli = json.loads(metrics.read_text())
    assert cli["coverage"]["objective_m"] == plan.coverage.objective_m
    assert _without_run(cli) == _without_run(json.loads(metrics_json(plan)))
    if app_controls.get("existing") != "none":
        # With today's stations fixed, new sites serve several tracts (on ZIP
        # demand every one sat on a single centroid) and the existing stations'
        # loads are reported. Not yet every one: at k = 10 one new site serves a
        # single tract (issue 11 asks for each; left to the planning layer).
        table = pd.read_csv(sites)
        new = table[table["kind"] == "new"]
        assert len(new) == 10 and (new["demand_points"] > 1).mean() > 0.5
        existing = table[table["kind"] == "existing"]
        assert existing["vehicles_served"].sum() > 0
        assert cli["today"]["n_existing_sites"] == len(existing)


def test_report_holds_map_numbers_table_parameters_and_sources(tmp_path):
    plan = solve(Scenario(new_sites=5, existing="public", radius_m=3000.0))
    html = report_html(plan)
    assert re.search(
        r'<img id="map" [^>]*src="data:image/png;base64,[A-Za-z0-9+/=]{'
        r'5000,}"',
        html,
    )
    site_table = html.split('<table id="sites">')[1].split("</table>")[0]
    assert len(re.findall(r"<tr><td>N\d", site_table)) == 5
    assert "Showing the 15 busiest of 2,473 existing sites" in html
    assert "Demand within 3 km, with the new sites" in html
    assert f"{100 * plan.coverage.coverage_share:.1f}%" in html
    for fact in (
        "Coverage radius (m, L1)",
        "3000.0",
        "Random seed",
        "Washington State Department of Licensing",
        "2025-02-09",
        plan.crs.name,
        "rows kept: 150,137",
    ):
        assert fact in html, fact
    assert "<script" not in html


def test_write_plan_is_all_or_nothing(tmp_path):
    plan = solve(Scenario(new_sites=2))
    sites = tmp_path / "s.csv"
    sites.write_text("old sites")
    with pytest.raises(OSError):
        write_plan(plan, sites=sites, metrics=tmp_path / "missing-dir" / "m.json")
    assert sites.read_text() == "old sites"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.csv"]
    write_plan(plan, sites=sites, metrics=tmp_path / "m.json")
    assert sites.read_bytes() == sites_bytes(plan, "csv")


@pytest.mark.slow
def test_installed_wheel_finds_its_data_from_anywhere(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "-w",
            str(wheels),
            str(ROOT),
        ],
        check=True,
        timeout=600,
    )
    wheel = next(wheels.glob("evplanner-*.whl"))
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--quiet",
            "--target",
            str(site),
            str(wheel),
        ],
        check=True,
        timeout=600,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    code = (
        "import sys, evplanner; from evplanner.cli import main; "
        "print(evplanner.__file__); sys.exit(main(sys.argv[1:]))"
    )
    info = subprocess.run(
        [sys.executable, "-c", code, "info"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert info.returncode == 0, info.stderr
    assert info.stdout.startswith(str(site))  # the wheel's copy, not the repository
    assert "rows kept: 150,137" in info.stdout
    solved = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "solve",
            "--k",
            "5",
            "--out",
            "sites.csv",
            "--quiet",
        ],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert solved.returncode == 0, solved.stderr
    assert len(pd.read_csv(elsewhere / "sites.csv")) == 5
