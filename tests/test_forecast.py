"""Demand forecast: growth rates, tract shares, the cap, held-out validation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evplanner.demand import DEMAND_COLUMNS
from evplanner.forecast import (
    forecast_demand,
    forecast_errors,
    forecast_stock,
    growth_rates,
    validate_forecast,
)

KING_A, KING_B, PIERCE = "53033004800", "53033022101", "53053071206"


def cohort_vehicles(counts: dict) -> pd.DataFrame:
    """One row per vehicle from {(tract, model_year): count}."""
    rows = [(tract, year) for (tract, year), n in counts.items() for _ in range(n)]
    tract, year = zip(*rows, strict=True)
    county = ["Pierce" if t == PIERCE else "King" for t in tract]
    return pd.DataFrame({
        "lon": -122.3, "lat": 47.6, "weight": 1.0, "census_tract": list(tract),
        "county": county, "state": "WA", "ev_type": "BEV",
        "model_year": pd.array(year, dtype="Int16"),
        "utility": "PUGET SOUND ENERGY INC",
        "legislative_district": pd.array([43] * len(rows), dtype="Int16"),
    })  # fmt: skip


def king_growing_by_half():
    # King: 100, 150, 225 new vehicles in 2021-2023 (+50 % a year), three quarters
    # of them in tract A; Pierce: 10 a year (a small county).
    counts = {}
    for year, n in ((2021, 100), (2022, 150), (2023, 225)):
        counts[(KING_A, year)] = 3 * n // 4
        counts[(KING_B, year)] = n - 3 * n // 4
        counts[(PIERCE, year)] = 10
    counts[(KING_A, 2015)] = 40  # older stock
    counts[(KING_A, 2024)] = 5  # the incomplete newest model year
    return cohort_vehicles(counts)


def test_growth_rate_of_exact_exponential_growth(tracts):
    v = king_growing_by_half()
    cohorts = (
        v.assign(tract_id=v["census_tract"])
        .groupby(["tract_id", "model_year"], as_index=False)["weight"]
        .sum()
    )
    cohorts = cohorts.rename(columns={"weight": "vehicles"})
    cohorts["model_year"] = cohorts["model_year"].astype("int64")
    rates = growth_rates(cohorts, tracts, base_year=2023, window=3,
                         min_registrations=100).set_index("county")  # fmt: skip
    assert rates.loc["King", "growth"] == pytest.approx(0.5)
    assert rates.loc["King", "source"] == "county"
    assert rates.loc["King", "level"] == 225
    # Pierce has 30 vehicles in the window: the state's rate (King + Pierce).
    state = np.array([110.0, 160.0, 235.0])
    slope = np.polyfit([-1, 0, 1], np.log(state), 1)[0]
    assert rates.loc["Pierce", "source"] == "state"
    assert rates.loc["Pierce", "growth"] == pytest.approx(np.expm1(slope))
    # Counties without vehicles are listed, on the state rate, with no level.
    assert len(rates) == 39 and rates.loc["Adams", "level"] == 0
    none = growth_rates(cohorts, tracts, base_year=2023, growth="none")
    assert (none["growth"] == 0).all()


def test_forecast_arithmetic_on_a_small_county(tracts):
    v = king_growing_by_half()
    f = forecast_stock(v, 2025, tracts=tracts, damping=0.5, min_registrations=100)
    assert f.base_year == 2023  # the newest model year (2024) is incomplete
    rows = f.tracts.set_index("tract_id")
    # King adds 225 * 1.5 in 2024 and 225 * 1.5 * (1 + 0.5 * 0.5) in 2025.
    king_new = 225 * 1.5 + 225 * 1.5 * 1.25
    # Tract A had 75 + 112 + 168 = 355 of King's 475 window registrations.
    assert rows.loc[KING_A, "new"] == pytest.approx(king_new * 355 / 475)
    assert rows.loc[KING_B, "new"] == pytest.approx(king_new * 120 / 475)
    # Base stock: model years <= 2023 (the 5 of 2024 are in the forecast).
    assert rows.loc[KING_A, "stock_base"] == 40 + 355
    assert rows.loc[KING_A, "stock"] == pytest.approx(395 + king_new * 355 / 475)
    # Tracts with residents and no vehicles are listed with nothing.
    assert rows["stock"].sum() == pytest.approx(f.total)
    assert len(rows) == (tracts["population"] > 0).sum()


def test_observed_stock_up_to_the_base_year(vehicles):
    for year in (2018, 2021):
        f = forecast_stock(vehicles, year)
        got = f.tracts.set_index("tract_id")["stock"]
        seen = vehicles[vehicles["model_year"] <= year]
        expected = seen.groupby("census_tract")["weight"].sum()
        got = got[got > 0]
        pd.testing.assert_series_equal(
            got.sort_index(), expected.sort_index(), check_names=False,
            check_index_type=False,
        )  # fmt: skip
        assert (f.tracts["new"] == 0).all()


def test_forecast_is_monotone_in_the_year(vehicles):
    years = [2021, 2023, 2024, 2026, 2030, 2040]
    stocks = [forecast_stock(vehicles, y).tracts.set_index("tract_id")["stock"]
              for y in years]  # fmt: skip
    for before, after in zip(stocks, stocks[1:], strict=False):
        before, after = before.align(after, fill_value=0.0)
        assert (after >= before - 1e-9).all()
    assert stocks[-1].sum() > stocks[2].sum() > stocks[1].sum()


@pytest.mark.parametrize("cap", [0.5, 0.05])
def test_cap_per_resident(vehicles, cap):
    f = forecast_stock(vehicles, 2035, max_evs_per_resident=cap)
    rows = f.tracts
    ceiling = np.maximum(rows["stock_base"], cap * rows["population"])
    assert (rows["stock"] <= ceiling + 1e-9).all()
    assert (rows["stock"] >= rows["stock_base"]).all()
    # By 2035 the ceiling binds somewhere; what it cut is reported.
    assert rows["capped"].sum() > 0
    # The cap only cuts: before it, the forecast is the same whatever the cap.
    loose = forecast_stock(vehicles, 2035, max_evs_per_resident=1e9).tracts
    np.testing.assert_allclose(loose["stock"] + loose["capped"],
                               rows["stock"] + rows["capped"], rtol=1e-12)  # fmt: skip
    # A tract without residents keeps its vehicles but gets no new ones.
    empty = loose[loose["population"] == 0]
    assert (empty["stock"] == empty["stock_base"]).all()


def test_forecast_demand_points(vehicles):
    points = forecast_demand(vehicles, 2027)
    assert list(points.columns) == DEMAND_COLUMNS
    forecast = points.attrs["forecast"]
    assert points["weight"].sum() == pytest.approx(forecast.total)
    np.testing.assert_array_equal(points["weight"], points["vehicles"])
    assert points["tract_id"].is_unique and (points["weight"] > 0).all()
    assert points["weight"].sum() > 2 * 150_137  # three years of strong growth
    blend = forecast_demand(vehicles, 2027, residents_share=0.5)
    assert blend["weight"].sum() == pytest.approx(forecast.total)
    king = forecast_demand(vehicles, 2027, counties=["King"])
    assert (king["tract_id"].str.slice(0, 5) == "53033").all()
    assert set(king.attrs["forecast"].rates["county"]) == {"King"}
    bev = forecast_demand(vehicles, 2027, ev_types=["BEV"])
    assert bev["weight"].sum() < points["weight"].sum()
    pse = forecast_demand(vehicles, 2027, utilities=["PUGET SOUND ENERGY INC"])
    assert pse["weight"].sum() < points["weight"].sum()


def test_bad_parameters(vehicles):
    for params, match in (
        ({"window": 1}, "window: expected a whole number"),
        ({"damping": 1.5}, r"damping: expected a number in \[0, 1\]"),
        ({"max_evs_per_resident": 0}, "max_evs_per_resident: expected"),
        ({"growth": "fast"}, "growth: expected one of"),
        ({"counties": ["Atlantis"]}, "counties: no vehicle has"),
    ):
        with pytest.raises(ValueError, match=match):
            forecast_stock(vehicles, 2030, **params)


def test_errors():
    e = forecast_errors(pd.Series({"a": 90.0}), pd.Series({"a": 100.0, "b": 10.0}))
    assert e["units"] == 2
    assert e["mape"] == pytest.approx((0.1 + 1.0) / 2)
    assert e["wape"] == pytest.approx(20 / 110)
    assert e["total_error"] == pytest.approx(-20 / 110)


def test_held_out_validation(vehicles):
    errors = validate_forecast(vehicles, base_years=[2021, 2022])
    # 2021 -> 2022, 2023 and 2022 -> 2023, per county and per tract.
    assert len(errors) == 6
    assert set(errors["level"]) == {"county", "tract"}
    assert errors[["mape", "wape", "total_error"]].notna().all().all()
    assert np.isfinite(errors[["mape", "wape", "total_error"]].to_numpy()).all()
    counties = errors[errors["level"] == "county"]
    assert (counties["units"] == 39).all()
    # Better than assuming the stock stays as it was (the persistence forecast).
    one = errors[(errors["horizon"] == 1) & (errors["level"] == "county")]
    for _, row in one.iterrows():
        seen = vehicles[vehicles["model_year"] <= row["base_year"]]
        actual = vehicles[vehicles["model_year"] <= row["year"]]
        persistence = forecast_errors(
            seen.groupby("county")["weight"].sum(),
            actual.groupby("county")["weight"].sum(),
        )
        assert row["wape"] < persistence["wape"]
    with pytest.raises(ValueError, match="base_years: expected years before 2023"):
        validate_forecast(vehicles, base_years=[2023])
