"""Metric coordinates: CRS choice and the lon/lat <-> metres round trip."""

from __future__ import annotations

import numpy as np
import pyproj
import pytest

from evplanner.projection import choose_crs, to_lonlat, to_metres


def test_auto_crs_is_utm_zone_of_the_data():
    # Seattle and Spokane: the centre of the box (lon -119.9) lies in UTM zone 11N.
    assert choose_crs([-122.3], [47.6]).to_epsg() == 32610
    assert choose_crs([-117.4], [47.7]).to_epsg() == 32611
    assert choose_crs([-122.3, -117.4], [47.6, 47.7]).to_epsg() == 32611
    assert choose_crs([151.2], [-33.9]).to_epsg() == 32756  # Sydney, southern zone


def test_explicit_crs():
    assert choose_crs([], [], 32610).to_epsg() == 32610


@pytest.mark.parametrize("crs, match", [("EPSG:4326", "projected"),
                                         ("EPSG:2285", "metres"),
                                         ("not a crs", "expected 'auto'")])  # fmt: skip
def test_bad_crs(crs, match):
    with pytest.raises(ValueError, match=match):
        choose_crs([-122.0], [47.0], crs)


def test_auto_needs_points():
    with pytest.raises(ValueError, match="at least one point"):
        choose_crs([], [])


def test_round_trip_within_a_centimetre(rng):
    lon = rng.uniform(-124.7, -117.0, 10_000)
    lat = rng.uniform(45.5, 49.0, 10_000)
    crs = choose_crs(lon, lat)
    x_m, y_m = to_metres(lon, lat, crs)
    lon2, lat2 = to_lonlat(x_m, y_m, crs)
    # Compare on the ground: geodesic distance between the original and the returned.
    _, _, dist_m = pyproj.Geod(ellps="WGS84").inv(lon, lat, lon2, lat2)
    assert np.max(np.abs(dist_m)) < 0.01


def test_metres_are_metres():
    crs = choose_crs([-122.3], [47.6])
    _, y_m = to_metres([-122.3, -122.3], [47.0, 48.0], crs)
    # One degree of latitude is about 111.2 km at 47.5 N.
    assert abs(abs(y_m[1] - y_m[0]) - 111_200) < 300
