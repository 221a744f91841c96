"""Regenerate the bundled data files from the raw public exports.

Usage, from the repository root, with the raw files at hand (default: ../shared/data)::

    .venv/bin/python data/regenerate.py [RAW_DIR]

Writes ``evplanner/bundled/vehicles.parquet``, ``stations.parquet`` and
``tracts.parquet`` and prints what the loaders kept and dropped;
``tests/test_data.py`` checks that this gives exactly the shipped files.
"""

import sys
from pathlib import Path

from evplanner.data import BUNDLED_DIR, build_bundled_data

raw = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data")
reports = build_bundled_data(
    raw / "Electric_Vehicle_Population_Data.csv",
    raw / "alt_fuel_stations_WA_2025-02-09.csv",
    BUNDLED_DIR,
    tracts_csv=raw / "CenPop2020_Mean_TR53.csv",
)
for name, report in reports.items():
    print(f"== {name} -> {BUNDLED_DIR}\n{report.format()}")
