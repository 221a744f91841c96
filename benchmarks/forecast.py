"""Held-out error of the demand forecast (evplanner.forecast) on the bundled data.

Run:  .venv/bin/python benchmarks/forecast.py [--last-year 2023] [--origins 4]

For each base year B of the last ``--origins`` years before ``--last-year`` (the
last complete model year), the forecast sees only the vehicles of model year <= B
and forecasts the stock of every later year up to ``--last-year``; the observed
stock (model year <= T) is the truth. Errors per county (39) and per census tract
(about 1,760), averaged over the base years for each horizon:

* MAPE: mean absolute percentage error over counties (tracts) with vehicles;
* WAPE: sum of absolute errors / sum of actual vehicles (large units weigh more);
* total: signed error of the state total.

Contenders: the default method (per-county growth of the last 3 model years,
damping 0.8, small counties on the state rate), the same without damping, with
damping 0.6, over 2 and 4 model years, one statewide rate, and two baselines:
``growth="none"`` (new registrations stay at the base year's level) and
"persistence" (the stock stays as in the base year). The figures go to
benchmarks/README.md ("Demand forecast").
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import load_average, save_json

VARIANTS = {
    "default (county, 3 y, damping 0.8)": {},
    "no damping (1.0)": {"damping": 1.0},
    "damping 0.6": {"damping": 0.6},
    "window 2 y": {"window": 2},
    "window 4 y": {"window": 4},
    "state rate for all counties": {"growth": "state"},
    "baseline: no growth (level stays)": {"growth": "none"},
}


def persistence(vehicles, tracts, last_year, base_years):
    """Errors of the forecast "the stock stays as in the base year"."""
    from evplanner.demand import place_vehicles
    from evplanner.forecast import forecast_errors

    placed, _ = place_vehicles(vehicles, tracts)
    county_of = tracts.set_index("tract_id")["county_fips"]
    year = placed["model_year"].astype("Float64")
    tract = placed["tract_id"].astype("string")

    def stock(upto):
        rows = (year <= upto).fillna(False).to_numpy(bool)
        return placed.loc[rows, "weight"].groupby(tract[rows]).sum()

    rows = []
    for base in base_years:
        got = stock(base)
        for target in range(base + 1, last_year + 1):
            actual = stock(target)
            for level in ("county", "tract"):
                f, a = got, actual
                if level == "county":
                    f = got.groupby(got.index.map(county_of)).sum()
                    a = actual.groupby(actual.index.map(county_of)).sum()
                rows.append({"base_year": base, "year": target,
                             "horizon": target - base, "level": level,
                             **forecast_errors(f, a)})  # fmt: skip
    import pandas as pd

    return pd.DataFrame(rows)


def summary(errors):
    """Mean over base years, per horizon and level."""
    table = errors.groupby(["level", "horizon"])[["mape", "wape", "total_error"]]
    return table.agg(
        mape=("mape", "mean"),
        wape=("wape", "mean"),
        total=("total_error", lambda s: np.mean(np.abs(s))),
        n=("mape", "size"),
    )


def markdown(results) -> str:
    """The README table: one row per contender, horizons 1..4 in each cell."""
    columns = [("county", "mape"), ("county", "wape"), ("tract", "wape"),
               ("county", "total")]  # fmt: skip
    lines = [
        "| contender | county MAPE | county WAPE | tract WAPE | state total (abs.) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, errors in results.items():
        table = summary(errors)
        cells = [" / ".join(f"{100 * v:.1f}" for v in table.loc[level, key])
                 for level, key in columns]  # fmt: skip
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--last-year", type=int, default=2023)
    parser.add_argument("--origins", type=int, default=4)
    args = parser.parse_args()

    from evplanner.data import load_tracts, load_vehicles
    from evplanner.forecast import validate_forecast

    print(f"load average before: {load_average()}")
    vehicles, _ = load_vehicles()
    tracts = load_tracts()
    base_years = list(range(args.last_year - args.origins, args.last_year))
    print(f"base years {base_years}, targets up to {args.last_year}; "
          f"{len(vehicles):,} vehicles, {len(tracts):,} tracts")  # fmt: skip
    results = {}
    start = time.perf_counter()
    for name, params in VARIANTS.items():
        errors = validate_forecast(vehicles, tracts=tracts, base_years=base_years,
                                   last_year=args.last_year, **params)  # fmt: skip
        results[name] = errors
    results["baseline: persistence (stock stays)"] = persistence(
        vehicles, tracts, args.last_year, base_years
    )
    seconds = time.perf_counter() - start

    print("\nPer base year, default method (errors in %):")
    default = results[next(iter(VARIANTS))]
    shown = default.assign(**{c: 100 * default[c]
                              for c in ("mape", "wape", "total_error")})  # fmt: skip
    print(shown.round(1).to_string(index=False))

    print("\nMean over base years, per horizon (errors in %; total = mean |error| of"
          " the state total):")  # fmt: skip
    payload = {}
    for name, errors in results.items():
        table = summary(errors)
        payload[name] = table.reset_index().to_dict(orient="records")
        print(f"\n{name}")
        print((100 * table[["mape", "wape", "total"]]).round(1).join(table["n"])
              .to_string())  # fmt: skip

    print("\nFor benchmarks/README.md (errors in %, horizons 1 / 2 / 3 / 4 years):\n")
    print(markdown(results))
    print(f"\n{len(results)} contenders in {seconds:.1f} s; "
          f"load average after: {load_average()}")  # fmt: skip
    save_json(
        "forecast",
        {
            "base_years": base_years,
            "last_year": args.last_year,
            "results": payload,
            "default_per_base_year": default.to_dict(orient="records"),
        },
    )


if __name__ == "__main__":
    main()
