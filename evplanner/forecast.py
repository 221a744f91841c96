"""Demand in a target year: a growth forecast of the EV stock from model years.

The WA DOL extract lists the vehicles registered today with their model year. Read
by model year, it is a history of new registrations: the vehicles of model year
``y`` still registered are (about) those that joined the stock in year ``y``. The
forecast extends that history county by county and spreads it over the tracts:

1. **Cohorts.** ``n_c(y)``: vehicles of county ``c`` with model year ``y``;
   ``S_t(B)``: the stock of tract ``t`` at the base year ``B`` (model year <= ``B``,
   or unknown). ``B`` defaults to the newest model year in the data less one,
   because an extract always holds only part of the newest model year (the bundled
   one: 2024 has 642 rows, the extract is from late 2023, so ``B = 2023``).
2. **Growth.** The annual growth of new registrations of county ``c``, ``g_c``, is
   the slope of a least-squares line through ``log n_c(y)`` over the last
   ``window`` complete model years (``exp(slope) - 1``). A county with fewer than
   ``min_registrations`` vehicles in the window, or a year without any, takes the
   statewide rate (the same fit on the state's counts): a handful of vehicles gives
   no growth rate worth the name.
3. **New registrations.** From the level ``n_c(B)``, year ``B + k`` adds
   ``n_c(B) * prod_{j=1..k} (1 + g_c * damping**(j - 1))``: ``damping = 1``
   compounds the recent growth for ever, ``damping < 1`` lets it fade (a damped
   trend, so that a boom of three years is not extrapolated for ten).
4. **Tracts.** Each tract receives its share of its county's new registrations,
   the share it had of them over the window: ``S_t(T) = S_t(B) + s_t * N_c(T)``.
5. **Cap.** No tract exceeds ``max_evs_per_resident`` EVs per resident (0.5 by
   default, above every tract today: the highest, 53033028200, has 0.34), unless
   it already does; the vehicles above the cap are left out (reported), not
   moved elsewhere. It is a ceiling, not a prediction.

For a target year ``T <= B`` the "forecast" is the observed stock (model year
<= ``T``). :func:`validate_forecast` measures the error on held-out years: it
forecasts the last complete model years from the earlier ones only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from evplanner.data import load_tracts
from evplanner.demand import (
    check_filters,
    filter_vehicles,
    finish_demand,
    partial_demand,
    place_vehicles,
)

__all__ = [
    "GROWTHS",
    "Forecast",
    "forecast_demand",
    "forecast_errors",
    "forecast_stock",
    "growth_rates",
    "validate_forecast",
]

logger = logging.getLogger(__name__)

#: Where the growth rate comes from: each county's own recent growth (small
#: counties: the state's), the state's for every county, or none (new
#: registrations stay at the base year's level).
GROWTHS = ("county", "state", "none")


@dataclass
class Forecast:
    """A tract-level forecast of the EV stock.

    Attributes
    ----------
    year : int
        Target year.
    base_year : int
        Last model year taken as complete.
    tracts : pandas.DataFrame
        One row per tract with vehicles or residents: ``tract_id``, ``county``,
        ``lon``, ``lat``, ``population``, ``stock_base`` (vehicles at the base
        year), ``new`` (forecast new vehicles up to ``year``, after the cap),
        ``stock`` (``stock_base + new``) and ``capped`` (vehicles left out by the
        cap).
    rates : pandas.DataFrame
        Per county (``county_fips``, ``county``): ``window_registrations``,
        ``level`` (new registrations in the base year), ``growth`` (annual rate)
        and ``source`` (``"county"``, ``"state"`` or ``"none"``).
    """

    year: int
    base_year: int
    tracts: pd.DataFrame
    rates: pd.DataFrame

    @property
    def total(self) -> float:
        """Forecast stock of all tracts."""
        return float(self.tracts["stock"].sum())


def _check_params(window, damping, min_registrations, max_evs_per_resident, growth):
    if int(window) != window or window < 2:
        raise ValueError(f"window: expected a whole number of years >= 2, got {window}")
    if not 0.0 <= damping <= 1.0:
        raise ValueError(f"damping: expected a number in [0, 1], got {damping}")
    if min_registrations < 0:
        raise ValueError(
            f"min_registrations: expected a number >= 0, got {min_registrations}"
        )
    if not max_evs_per_resident > 0:
        raise ValueError(
            f"max_evs_per_resident: expected a number > 0, got {max_evs_per_resident}"
        )
    if growth not in GROWTHS:
        raise ValueError(f"growth: expected one of {GROWTHS}, got {growth!r}")


def _cohorts(placed: pd.DataFrame) -> pd.DataFrame:
    """Vehicles per tract and model year (year -1 where unknown)."""
    year = placed["model_year"].astype("Float64").fillna(-1).astype("int64")
    frame = pd.DataFrame(
        {
            "tract_id": placed["tract_id"].astype("string").to_numpy(),
            "model_year": year.to_numpy(),
            "vehicles": placed["weight"].to_numpy("float64"),
        }
    )
    return frame.groupby(["tract_id", "model_year"], as_index=False)["vehicles"].sum()


def _log_slope(years: np.ndarray, counts: np.ndarray) -> float:
    """Annual growth ``exp(b) - 1`` of the least-squares line ``log n = a + b y``."""
    slope = np.polyfit(years - years.mean(), np.log(counts), 1)[0]
    return float(np.expm1(slope))


def growth_rates(
    cohorts: pd.DataFrame,
    tracts: pd.DataFrame,
    *,
    base_year: int,
    window: int = 3,
    min_registrations: float = 200,
    growth: str = "county",
) -> pd.DataFrame:
    """Annual growth of new registrations per county, over the window's model years.

    Parameters
    ----------
    cohorts : pandas.DataFrame
        ``tract_id``, ``model_year``, ``vehicles``: vehicles per tract and model
        year.
    tracts : pandas.DataFrame
        The tract table (for each tract's county).
    base_year : int
        Last complete model year; the window is ``base_year - window + 1`` to
        ``base_year``.
    window : int
        Model years in the fit (>= 2).
    min_registrations : float
        Below this many vehicles in the window, a county takes the state's rate.
    growth : {"county", "state", "none"}
        See :data:`GROWTHS`.

    Returns
    -------
    pandas.DataFrame
        One row per county with tracts, sorted by ``county_fips``:
        ``county_fips``, ``county``, ``window_registrations``, ``level``
        (registrations of ``base_year``), ``growth`` (annual rate, e.g. 0.3 for
        +30 % a year) and ``source``.
    """
    years = np.arange(base_year - window + 1, base_year + 1)
    county_of = tracts.set_index("tract_id")["county_fips"]
    in_window = cohorts.loc[cohorts["model_year"].isin(years)]
    counts = (
        in_window.assign(county_fips=in_window["tract_id"].map(county_of))
        .pivot_table(
            index="county_fips",
            columns="model_year",
            values="vehicles",
            aggfunc="sum",
            fill_value=0.0,
        )  # fmt: skip
        .reindex(
            index=sorted(tracts["county_fips"].unique()), columns=years, fill_value=0.0
        )  # fmt: skip
    )
    state = counts.sum().to_numpy("float64")
    if (state > 0).all():
        state_rate = _log_slope(years.astype(float), state)
    else:
        state_rate = 0.0
    rates, sources = [], []
    for row in counts.to_numpy("float64"):
        if growth == "none":
            rates.append(0.0)
            sources.append("none")
        elif growth == "county" and row.sum() >= min_registrations and (row > 0).all():
            rates.append(_log_slope(years.astype(float), row))
            sources.append("county")
        else:
            rates.append(state_rate)
            sources.append("state")
    names = tracts.drop_duplicates("county_fips").set_index("county_fips")["county"]
    return pd.DataFrame(
        {
            "county_fips": counts.index.astype("string"),
            "county": counts.index.map(names).astype("string"),
            "window_registrations": counts.sum(axis=1).to_numpy("float64"),
            "level": counts[base_year].to_numpy("float64"),
            "growth": np.asarray(rates, dtype="float64"),
            "source": pd.array(sources, dtype="string"),
        }
    )


def _cumulative_new(level, rate, damping: float, horizon: int) -> np.ndarray:
    """``sum_{k=1..h} level * prod_{j=1..k} (1 + rate * damping**(j-1))``."""
    total = np.zeros_like(level, dtype="float64")
    yearly = np.asarray(level, dtype="float64").copy()
    for k in range(1, horizon + 1):
        yearly = yearly * (1.0 + rate * damping ** (k - 1))
        total += yearly
    return total


def _forecast_from_cohorts(
    cohorts, tracts, year, *, base_year, window, damping, min_registrations,
    max_evs_per_resident, growth,
) -> Forecast:  # fmt: skip
    """The forecast maths on cohort counts (see the module docstring)."""
    known = cohorts["model_year"] >= 0
    base = cohorts.loc[~known | (cohorts["model_year"] <= min(year, base_year))]
    stock_base = base.groupby("tract_id")["vehicles"].sum()
    rates = growth_rates(
        cohorts, tracts, base_year=base_year, window=window,
        min_registrations=min_registrations, growth=growth,
    )  # fmt: skip
    table = tracts.set_index("tract_id")
    listed = (
        table.index.isin(cohorts["tract_id"]) | (table["population"] > 0).to_numpy()
    )
    ids = table.index[listed]
    out = table.loc[ids, ["county_fips", "county", "lon", "lat", "population"]]
    out = out.assign(stock_base=stock_base.reindex(ids, fill_value=0.0).to_numpy())
    new = np.zeros(len(out))
    capped = np.zeros(len(out))
    if year > base_year:
        years = range(base_year - window + 1, base_year + 1)
        recent = cohorts.loc[cohorts["model_year"].isin(years)]
        recent = recent.groupby("tract_id")["vehicles"].sum().reindex(ids, fill_value=0)
        county_recent = recent.groupby(out["county_fips"].to_numpy()).transform("sum")
        county_recent = county_recent.to_numpy("float64")
        share = np.divide(
            recent.to_numpy("float64"), county_recent, out=np.zeros(len(out)),
            where=county_recent > 0,
        )  # fmt: skip
        by_county = rates.set_index("county_fips")
        county_new = _cumulative_new(
            by_county["level"].to_numpy(), by_county["growth"].to_numpy(), damping,
            year - base_year,
        )  # fmt: skip
        county_new = pd.Series(county_new, index=by_county.index)
        new = share * county_new.reindex(out["county_fips"]).to_numpy()
        # The ceiling: never above the cap unless a tract already is.
        room = np.maximum(
            max_evs_per_resident * out["population"].to_numpy("float64")
            - out["stock_base"].to_numpy("float64"),
            0.0,
        )
        capped = np.maximum(new - room, 0.0)
        new = new - capped
    out = out.assign(new=new, stock=out["stock_base"].to_numpy() + new, capped=capped)
    out = out.reset_index()
    for column in ("tract_id", "county_fips", "county"):
        out[column] = out[column].astype("string")
    out["population"] = out["population"].astype("float64")
    return Forecast(year=int(year), base_year=int(base_year), tracts=out, rates=rates)


def _default_base_year(vehicles: pd.DataFrame) -> int:
    years = vehicles["model_year"].dropna()
    if years.empty:
        raise ValueError("base_year: the vehicles have no model year to forecast from")
    return int(years.max()) - 1


def forecast_stock(
    vehicles: pd.DataFrame,
    year: int,
    *,
    tracts: pd.DataFrame | None = None,
    base_year: int | None = None,
    window: int = 3,
    damping: float = 0.8,
    min_registrations: float = 200,
    max_evs_per_resident: float = 0.5,
    growth: str = "county",
    counties=None,
    ev_types=None,
    utilities=None,
    legislative_districts=None,
) -> Forecast:
    """Forecast the EV stock of every tract in ``year`` (see the module docstring).

    Parameters
    ----------
    vehicles : pandas.DataFrame
        As returned by :func:`evplanner.data.load_vehicles` (``census_tract``,
        ``model_year`` and the filter columns). Vehicles whose tract is not in
        ``tracts`` are left out (counted in ``Forecast.tracts.attrs["placement"]``).
    year : int
        Target year; at or before ``base_year`` the observed stock.
    tracts : pandas.DataFrame, optional
        Default: the bundled Washington tracts.
    base_year : int, optional
        Last complete model year; default the newest model year less one.
    window : int
        Complete model years the growth is fitted on (default 3: on the bundled
        data 2021-2023).
    damping : float in [0, 1]
        Yearly factor on the growth rate (1: constant growth; 0: none after the
        first year).
    min_registrations : float
        Counties with fewer vehicles in the window take the state's rate.
    max_evs_per_resident : float
        Ceiling of the forecast per tract, EVs per resident.
    growth : {"county", "state", "none"}
        See :data:`GROWTHS`.
    counties, ev_types, utilities, legislative_districts
        Forecast these vehicles only (:func:`evplanner.demand.filter_vehicles`);
        the growth is fitted on them.

    Returns
    -------
    Forecast
    """
    _check_params(window, damping, min_registrations, max_evs_per_resident, growth)
    tracts = load_tracts() if tracts is None else tracts
    check_filters(vehicles, counties=counties, utilities=utilities,
                  legislative_districts=legislative_districts)  # fmt: skip
    placed, report = place_vehicles(vehicles, tracts)
    chosen = filter_vehicles(placed, counties=counties, ev_types=ev_types,
                             utilities=utilities,
                             legislative_districts=legislative_districts)  # fmt: skip
    base_year = _default_base_year(chosen) if base_year is None else int(base_year)
    forecast = _forecast_from_cohorts(
        _cohorts(chosen), tracts, int(year), base_year=base_year, window=int(window),
        damping=float(damping), min_registrations=min_registrations,
        max_evs_per_resident=max_evs_per_resident, growth=growth,
    )  # fmt: skip
    forecast.tracts.attrs["placement"] = report
    if counties:
        wanted = {str(c).strip().lower() for c in counties}
        keep = forecast.tracts["county"].str.lower().isin(wanted).fillna(False)
        forecast.tracts = forecast.tracts.loc[keep.to_numpy(bool)].reset_index(
            drop=True
        )
        forecast.rates = forecast.rates.loc[
            forecast.rates["county"]
            .str.lower()
            .isin(wanted)
            .fillna(False)
            .to_numpy(bool)
        ].reset_index(drop=True)
    capped = forecast.tracts["capped"].sum()
    if capped:
        logger.info("forecast %d: %.0f vehicles above the cap of %g EVs per resident "
                    "left out", year, capped, max_evs_per_resident)  # fmt: skip
    return forecast


def forecast_demand(
    vehicles: pd.DataFrame,
    year: int,
    *,
    tracts: pd.DataFrame | None = None,
    residents_share: float = 0.0,
    counties=None,
    ev_types=None,
    utilities=None,
    legislative_districts=None,
    **params,
) -> pd.DataFrame:
    """Demand points for a target year: the forecast stock at tract centres.

    Parameters
    ----------
    vehicles : pandas.DataFrame
        As returned by :func:`evplanner.data.load_vehicles`.
    year : int
        Target year.
    tracts : pandas.DataFrame, optional
        Default: the bundled Washington tracts.
    residents_share : float in [0, 1]
        Blend with residents, as in :func:`evplanner.demand.finish_demand`.
    counties, ev_types, utilities, legislative_districts
        Filters, as in :func:`evplanner.demand.demand_points`.
    **params
        ``base_year``, ``window``, ``damping``, ``min_registrations``,
        ``max_evs_per_resident``, ``growth`` of :func:`forecast_stock`.

    Returns
    -------
    pandas.DataFrame
        :data:`evplanner.demand.DEMAND_COLUMNS`, as
        :func:`evplanner.demand.demand_points` returns them: ``weight`` and
        ``vehicles`` are the forecast vehicles of the tract (float), ``population``
        its residents under the filters. ``attrs["forecast"]`` holds the
        :class:`Forecast`, ``attrs["placement"]`` the placement report.

    Examples
    --------
    >>> from evplanner.data import load_vehicles
    >>> vehicles, _ = load_vehicles()
    >>> now = forecast_demand(vehicles, 2023)["vehicles"].sum()
    >>> later = forecast_demand(vehicles, 2026)["vehicles"].sum()
    >>> int(now), bool(later > now)
    (149495, True)
    """
    tracts = load_tracts() if tracts is None else tracts
    filters = {"counties": counties, "utilities": utilities,
               "legislative_districts": legislative_districts}  # fmt: skip
    forecast = forecast_stock(vehicles, year, tracts=tracts, ev_types=ev_types,
                              **filters, **params)  # fmt: skip
    placed, _ = place_vehicles(vehicles, tracts)
    # Today's vehicles per tract say which share of its residents the utility and
    # district filters keep (as for today's demand).
    today = partial_demand(placed, ev_types=ev_types, **filters)
    today = today.set_index("tract_id")[["tract_vehicles", "area_vehicles"]]
    rows = forecast.tracts
    stock = rows["stock"].to_numpy("float64")
    summed = pd.DataFrame(
        {
            "lon": rows["lon"].to_numpy("float64"),
            "lat": rows["lat"].to_numpy("float64"),
            "tract_id": rows["tract_id"].to_numpy(),
            "weight": stock,
            "vehicles": stock,
            "tract_vehicles": today["tract_vehicles"]
            .reindex(rows["tract_id"], fill_value=0.0)
            .to_numpy(),
            "area_vehicles": today["area_vehicles"]
            .reindex(rows["tract_id"], fill_value=0.0)
            .to_numpy(),
        }
    )
    summed["tract_id"] = summed["tract_id"].astype("string")
    points = finish_demand(summed, tracts, residents_share=residents_share, **filters)
    points.attrs["forecast"] = forecast
    points.attrs["placement"] = forecast.tracts.attrs.get("placement")
    return points


# --------------------------------------------------------------------------- validation


def forecast_errors(forecast: pd.Series, actual: pd.Series) -> dict:
    """Errors of a forecast against the actual values, both indexed by unit.

    Units missing on one side count 0 there.

    Returns
    -------
    dict
        ``units`` (units with actual > 0), ``mape`` (mean of
        ``|forecast - actual| / actual`` over them), ``wape``
        (``sum |forecast - actual| / sum actual``) and ``total_error``
        (``(sum forecast - sum actual) / sum actual``), as fractions.

    Examples
    --------
    >>> e = forecast_errors(pd.Series({"a": 110.0, "b": 45.0}),
    ...                     pd.Series({"a": 100.0, "b": 50.0, "c": 0.0}))
    >>> e["units"], round(e["mape"], 3), round(e["wape"], 3), round(e["total_error"], 3)
    (2, 0.1, 0.1, 0.033)
    """
    forecast, actual = forecast.align(actual, fill_value=0.0)
    err = forecast - actual
    positive = actual > 0
    return {
        "units": int(positive.sum()),
        "mape": float((err[positive].abs() / actual[positive]).mean()),
        "wape": float(err.abs().sum() / actual.sum()),
        "total_error": float(err.sum() / actual.sum()),
    }


def validate_forecast(
    vehicles: pd.DataFrame,
    *,
    tracts: pd.DataFrame | None = None,
    base_years=None,
    last_year: int | None = None,
    **params,
) -> pd.DataFrame:
    """Held-out error: forecast the last complete model years from earlier ones.

    For each base year ``B``, only the vehicles of model year <= ``B`` are given to
    :func:`forecast_stock` (as if the data ended then), and its stock for each year
    ``T`` in ``B + 1 .. last_year`` is compared with the observed stock (model
    year <= ``T``), per county and per tract.

    Parameters
    ----------
    vehicles : pandas.DataFrame
        As returned by :func:`evplanner.data.load_vehicles`.
    tracts : pandas.DataFrame, optional
        Default: the bundled Washington tracts.
    base_years : sequence of int, optional
        Default: the four years before ``last_year``.
    last_year : int, optional
        Last complete model year; default the newest model year less one.
    **params
        Passed to :func:`forecast_stock` (``window``, ``damping``, ``growth``...).

    Returns
    -------
    pandas.DataFrame
        One row per (base year, target year, level): ``base_year``, ``year``,
        ``horizon`` (years), ``level`` (``"county"`` or ``"tract"``), ``units``
        (counties or tracts with vehicles), ``mape`` (mean absolute percentage
        error over them), ``wape`` (sum of absolute errors / sum of actual
        vehicles) and ``total_error`` (signed error of the state total, as a
        share). Errors are fractions (0.05 is 5 %).
    """
    tracts = load_tracts() if tracts is None else tracts
    placed, _ = place_vehicles(vehicles, tracts)
    last_year = _default_base_year(placed) if last_year is None else int(last_year)
    if base_years is None:
        base_years = range(last_year - 4, last_year)
    county_of = tracts.set_index("tract_id")["county_fips"]
    year = placed["model_year"].astype("Float64")
    rows = []
    for base in base_years:
        if base >= last_year:
            raise ValueError(
                f"base_years: expected years before {last_year}, got {base}"
            )
        seen = placed.loc[(year <= base).fillna(False).to_numpy(bool)]
        for target in range(base + 1, last_year + 1):
            forecast = forecast_stock(seen, target, tracts=tracts, base_year=base,
                                      **params)  # fmt: skip
            got = forecast.tracts.set_index("tract_id")["stock"]
            actual = placed.loc[(year <= target).fillna(False).to_numpy(bool)]
            actual = actual.groupby(actual["tract_id"].astype("string"))["weight"].sum()
            for level, group in (("county", county_of), ("tract", None)):
                if group is None:
                    f, a = got, actual
                else:
                    f = got.groupby(got.index.map(group)).sum()
                    a = actual.groupby(actual.index.map(group)).sum()
                rows.append({"base_year": base, "year": target,
                             "horizon": target - base, "level": level,
                             **forecast_errors(f, a)})  # fmt: skip
    return pd.DataFrame(rows)
