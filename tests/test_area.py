"""The planning area box: it holds the bundled WA data and the documented margin."""

from __future__ import annotations

import pandas as pd
import pytest

from evplanner.area import MARGIN_DEG, WA_DATA_BOX, WASHINGTON
from evplanner.data import load_stations, load_vehicles

from .conftest import SHARED_DATA


def box_of(lon, lat):
    return lon.min(), lat.min(), lon.max(), lat.max()


def test_box_is_the_bundled_data_box_plus_the_margin():
    vehicles, _ = load_vehicles(keep_out_of_area=True)
    wa = vehicles[vehicles["state"] == "WA"]
    stations, report = load_stations(keep_out_of_area=True)
    west, south, east, north = WA_DATA_BOX
    for lon, lat in ((wa["lon"], wa["lat"]), (stations["lon"], stations["lat"])):
        assert WASHINGTON.contains(lon, lat).all()
        b = box_of(lon, lat)
        assert west <= b[0] and south <= b[1] and b[2] <= east and b[3] <= north
    # The data box is tight: each edge within 0.01 degree of some data.
    lon = pd.concat([wa["lon"], stations["lon"]])
    lat = pd.concat([wa["lat"], stations["lat"]])
    b = box_of(lon, lat)
    assert b[0] - west < 0.01 and b[1] - south < 0.01
    assert east - b[2] < 0.01 and north - b[3] < 0.01
    assert WASHINGTON.west == pytest.approx(west - MARGIN_DEG)
    assert WASHINGTON.north == pytest.approx(north + MARGIN_DEG)
    # No bundled station is outside the area.
    assert report.out_of_area == 0


def test_tract_centres_are_inside():
    path = SHARED_DATA / "CenPop2020_Mean_TR53.csv"
    if not path.exists():
        pytest.skip(f"{path} not present")
    tracts = pd.read_csv(path)
    assert WASHINGTON.contains(tracts["LONGITUDE"], tracts["LATITUDE"]).all()


def test_out_of_state_vehicles_are_mostly_outside_the_box():
    # The box is a fallback for files without a state; on the vehicles that do have
    # one, it agrees for most out-of-state registrations (border towns aside).
    vehicles, _ = load_vehicles(keep_out_of_area=True)
    other = vehicles[vehicles["state"] != "WA"]
    assert len(other) > 300
    assert (~WASHINGTON.contains(other["lon"], other["lat"])).mean() > 0.7
