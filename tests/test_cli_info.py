"""`evplanner info`: real subprocess runs of the console entry point."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT

# The console script installed beside this interpreter (the venv's bin/).
EVPLANNER = str(Path(sys.executable).parent / "evplanner")


def run_info(*args):
    return subprocess.run(
        [EVPLANNER, "info", *args], capture_output=True, text=True, timeout=120
    )


def kept(text):
    return int(re.search(r"rows kept: ([\d,]+)", text).group(1).replace(",", ""))


def test_info_bundled_and_raw_agree(raw_vehicles_csv):
    bundled = run_info()
    raw = run_info(str(raw_vehicles_csv))
    assert bundled.returncode == 0 and raw.returncode == 0, bundled.stderr + raw.stderr
    assert kept(bundled.stdout) == kept(raw.stdout) == 150_137
    for field in (
        "distinct locations", "total weight", "bounding box", "CRS: EPSG:32610",
        "missing location: 7", "outside the planning area",
    ):  # fmt: skip
        assert field in bundled.stdout and field in raw.stdout


def test_info_stations():
    stations = ROOT / "evplanner" / "bundled" / "stations.parquet"
    proc = run_info("--stations", str(stations))
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"stations: [\d,]+", proc.stdout)
    assert "dc fast ports" in proc.stdout


@pytest.mark.parametrize("content, message", [
    (b"", "empty file"),
    (b"a,b\n1,2\n", "missing required column"),
    (b"\x00\x01\x02binary", "not a CSV file"),
])  # fmt: skip
def test_info_bad_file_exit_code_2(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    proc = run_info(str(path))
    assert proc.returncode == 2
    assert message in proc.stderr and "bad.csv" in proc.stderr
    assert "Traceback" not in proc.stderr
