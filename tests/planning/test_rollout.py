"""Staged rollout: each year on its forecast, earlier years' sites never move."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from evplanner.cli import main
from evplanner.errors import InputError
from evplanner.planning import Scenario
from evplanner.planning.rollout import rollout


@pytest.fixture(scope="module")
def staged():
    return rollout(Scenario(new_sites=4, existing="dc_fast", counties=["King"]),
                   [2025, 2026, 2027])  # fmt: skip


def test_each_year_places_its_sites_and_keeps_the_earlier_ones(staged):
    assert staged.years == (2025, 2026, 2027)
    new = staged.sites[staged.sites["kind"] == "new"]
    assert new["year"].tolist() == [2025] * 4 + [2026] * 4 + [2027] * 4
    assert staged.sites.loc[staged.sites["kind"] == "existing", "year"].isna().all()
    # Later years never move earlier sites: each year's plan holds them fixed at
    # the place the year that built them chose.
    for i, plan in enumerate(staged.plans):
        assert plan.n_new_sites == 4 and plan.scenario.year == staged.years[i]
        mine = plan.sites[plan.sites["kind"] == "new"][["lon", "lat"]].to_numpy()
        built = new[new["year"] == staged.years[i]][["lon", "lat"]].to_numpy()
        np.testing.assert_allclose(built, mine, rtol=0, atol=1e-9)
        for later in staged.plans[i + 1 :]:
            held = later.sites[
                later.sites["station_id"].str.contains(f"{staged.years[i]}-")
            ][["lon", "lat"]].to_numpy()
            np.testing.assert_allclose(held, mine, rtol=0, atol=1e-9)


def test_demand_grows_and_coverage_follows(staged):
    table = staged.per_year()
    assert table["total_vehicles"].is_monotonic_increasing
    assert table["sites_built"].tolist() == [4, 8, 12]
    assert (table["coverage_share"] >= table["today_coverage_share"]).all()
    metrics = staged.metrics()
    assert metrics["schema"] == "evplanner.rollout/1"
    assert [y["year"] for y in metrics["years"]] == [2025, 2026, 2027]
    json.dumps(metrics, allow_nan=False)


def test_a_rollout_on_candidates_keeps_each_sites_candidate(staged):
    # Every year's sites are candidates (tract centres here); the site table
    # names each one after its candidate, earlier years' ones too (they are
    # stations in the later plans). Off candidates the names stay blank.
    assert (staged.sites.loc[staged.sites["kind"] == "new", "name"] == "").all()
    on = rollout(Scenario(new_sites=3, counties=["Spokane"], candidates="tracts"),
                 [2025, 2026])  # fmt: skip
    new = on.sites[on.sites["kind"] == "new"]
    assert new["year"].tolist() == [2025] * 3 + [2026] * 3
    assert new["candidate_id"].str.len().gt(0).all()
    assert (new["name"] == "tract " + new["candidate_id"]).all()
    first = on.plans[0].sites[on.plans[0].sites["kind"] == "new"]
    assert new[new["year"] == 2025]["candidate_id"].tolist() == (
        first["candidate_id"].tolist()
    )


def test_bad_years_are_refused():
    with pytest.raises(InputError, match="ascending"):
        rollout(Scenario(new_sites=1), [2026, 2025])
    with pytest.raises(InputError, match="year"):
        rollout(Scenario(new_sites=1, weighting="bev"), [2025])


def test_cli_rollout_writes_per_year_sites_and_metrics(tmp_path, capsys):
    code = main(
        [
            "rollout",
            "--years",
            "2025:2026",
            "--per-year",
            "3",
            "--existing",
            "dc-fast",
            "--county",
            "Spokane",
            "--out",
            str(tmp_path / "r.csv"),
            "--metrics",
            str(tmp_path / "r.json"),
            "--quiet",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    sites = pd.read_csv(tmp_path / "r.csv")
    assert (
        sites.loc[sites["kind"] == "new", "year"].tolist()
        == [2025.0] * 3 + [2026.0] * 3
    )
    assert sites.loc[sites["kind"] == "existing", "year"].isna().all()
    metrics = json.loads((tmp_path / "r.json").read_text())
    assert [y["new_sites"] for y in metrics["years"]] == [3, 3]
    assert "2026" in out
    assert (
        main(
            [
                "rollout",
                "--years",
                "2030:2025",
                "--per-year",
                "3",
                "--out",
                str(tmp_path / "x.csv"),
            ]
        )
        == 2
    )
