"""Metric coordinates: CRS choice and the lon/lat <-> metres round trip."""

from __future__ import annotations

import itertools

import numpy as np
import pyproj
import pytest

from evplanner.projection import (
    choose_crs,
    choose_crs_dask,
    histogram_points,
    lonlat_histogram,
    robust_centre,
    to_lonlat,
    to_metres,
    weighted_median,
)


def test_auto_crs_is_utm_zone_of_the_data():
    # Seattle and Spokane, equal weights: the median is their midpoint (lon -119.85),
    # in UTM zone 11N.
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
    with pytest.raises(ValueError, match="at least one point"):
        choose_crs([np.nan, 500.0], [47.0, 47.0])
    with pytest.raises(ValueError, match="at least one point"):
        choose_crs([-122.0], [47.0], weight=[0.0])


# ---------------------------------------------------------------- robust choice


def seattle(rng, n=40):
    return rng.uniform(-122.45, -122.2, n), rng.uniform(47.45, 47.75, n)


def test_stray_points_do_not_move_the_zone(rng):
    lon, lat = seattle(rng)
    # Two rows at 0,0 (a classic null-island export error): the box centre would
    # be lon -61, lat 24, UTM zone 20N, where Seattle's axes are rotated by ~40°.
    lon2, lat2 = np.append(lon, [0.0, 0.0]), np.append(lat, [0.0, 0.0])
    assert choose_crs(lon2, lat2).to_epsg() == 32610
    # WA plus a block of Miami rows (a third of them): still zone 10N.
    lon3 = np.append(lon, np.full(20, -80.19))
    lat3 = np.append(lat, np.full(20, 25.77))
    assert choose_crs(lon3, lat3).to_epsg() == 32610


def test_stray_points_would_distort_distances(rng):
    # Why it matters: L1 distances in the zone of the box centre are wrong.
    lon, lat = seattle(rng)
    good = choose_crs(lon, lat)
    bad = pyproj.CRS.from_epsg(32620)
    xg, yg = to_metres(lon, lat, good)
    xb, yb = to_metres(lon, lat, bad)
    l1_good = np.abs(xg[1:] - xg[0]) + np.abs(yg[1:] - yg[0])
    l1_bad = np.abs(xb[1:] - xb[0]) + np.abs(yb[1:] - yb[0])
    assert np.median(np.abs(l1_bad / l1_good - 1)) > 0.03


def test_weight_moves_the_zone():
    lon, lat = [-122.3, -117.4], [47.6, 47.7]  # Seattle, Spokane
    assert choose_crs(lon, lat, weight=[10.0, 1.0]).to_epsg() == 32610
    assert choose_crs(lon, lat, weight=[1.0, 10.0]).to_epsg() == 32611
    with pytest.raises(ValueError, match="finite, non-negative"):
        choose_crs(lon, lat, weight=[1.0, np.inf])
    with pytest.raises(ValueError, match="one weight per point"):
        choose_crs(lon, lat, weight=[1.0])


def test_weighted_median_matches_numpy_for_equal_weights(rng):
    for n in (1, 2, 3, 10, 11):
        values = rng.normal(size=n)
        assert weighted_median(values) == pytest.approx(np.median(values))
        # Integer weights = repeated values.
        w = rng.integers(1, 4, size=n)
        assert weighted_median(values, w) == pytest.approx(
            np.median(np.repeat(values, w))
        )
    with pytest.raises(ValueError, match="positive weight"):
        weighted_median([1.0], [0.0])


def test_robust_centre_ignores_invalid_points():
    assert robust_centre([-122.3, np.nan, 400.0], [47.6, 47.0, 47.0]) == (-122.3, 47.6)


# ---------------------------------------------------------------- a given CRS


def test_given_crs_far_from_the_data_is_refused(rng):
    lon, lat = seattle(rng)
    with pytest.raises(ValueError) as err:
        choose_crs(lon, lat, "EPSG:32633")
    text = str(err.value)
    assert "EPSG:32633" in text and "UTM zone 33N" in text
    assert "median point is lon -122." in text and ", lat 47." in text
    assert "(UTM zone EPSG:32610 there)" in text
    # The neighbouring zone is refused too: the data's centre is outside it.
    with pytest.raises(ValueError, match="crs EPSG:32611 "):
        choose_crs(lon, lat, 32611)


def test_given_crs_that_covers_the_data_is_kept(rng):
    lon, lat = seattle(rng)
    # Two stray rows do not make a right CRS wrong.
    lon, lat = np.append(lon, [0.0, 0.0]), np.append(lat, [0.0, 0.0])
    assert choose_crs(lon, lat, "EPSG:32610").to_epsg() == 32610
    assert choose_crs(lon, lat, 32148).to_epsg() == 32148  # NAD83 / Washington North
    # Washington North does not reach Vancouver, WA (lat 45.6).
    with pytest.raises(ValueError, match="Washington North"):
        choose_crs([-122.6], [45.6], 32148)


# ---------------------------------------------------------------- chunked summary


def test_histogram_is_chunk_additive_and_picks_the_same_zone(rng):
    for centre_lon, centre_lat in [(-122.3, 47.6), (-117.0, 47.6), (151.2, -33.9),
                                   (6.0, 60.0), (10.0, 78.0), (-0.5, 0.5)]:  # fmt: skip
        lon = centre_lon + rng.normal(0, 2.0, 5000)
        lat = np.clip(centre_lat + rng.normal(0, 1.0, 5000), -89, 89)
        w = rng.integers(1, 5, 5000).astype(float)
        whole = lonlat_histogram(lon, lat, w)
        parts = sum(
            lonlat_histogram(lon[i:j], lat[i:j], w[i:j])
            for i, j in [(0, 1), (1, 1700), (1700, 1700), (1700, 5000)]
        )
        np.testing.assert_allclose(parts, whole)
        assert whole.sum() == w.sum()
        expected = choose_crs(lon, lat, weight=w)
        cell_lon, cell_lat, cell_w = histogram_points(whole)
        assert choose_crs(cell_lon, cell_lat, weight=cell_w) == expected


def test_histogram_edges():
    hist = lonlat_histogram([180.0, -180.0, 0.0], [90.0, -90.0, 0.0])
    assert hist[179, 359] == 1 and hist[0, 0] == 1 and hist[90, 180] == 1
    with pytest.raises(ValueError, match=r"shape \(180, 360\)"):
        histogram_points(np.zeros((10, 10)))


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


@pytest.mark.parametrize("crs", ["auto", "EPSG:32610", "EPSG:32611"])
def test_choose_crs_dask_matches_numpy_for_any_chunking(rng, crs):
    import dask
    import dask.dataframe as dd
    import pandas as pd

    # Seattle-heavy WA demand with a few stray rows and a Spokane block.
    lon, lat = seattle(rng, 300)
    lon = np.concatenate([lon, rng.uniform(-117.5, -117.3, 150), [0.0, -80.19]])
    lat = np.concatenate([lat, rng.uniform(47.6, 47.7, 150), [0.0, 25.77]])
    weight = rng.integers(1, 4, lon.size).astype(float)
    frame = pd.DataFrame({"lon": lon, "lat": lat, "weight": weight})
    try:
        expected = choose_crs(lon, lat, crs, weight=weight)
    except ValueError as err:
        expected = err
    for chunks in (1, 2, 4, (1, 100, 3, len(frame) - 104)):
        if isinstance(chunks, int):
            parts = dd.from_pandas(frame, npartitions=chunks, sort=False)
        else:
            bounds = np.cumsum((0,) + chunks)
            blocks = [frame.iloc[a:b] for a, b in itertools.pairwise(bounds)]
            parts = dd.from_delayed([dask.delayed(b) for b in blocks], meta=frame)
        if isinstance(expected, ValueError):
            with pytest.raises(ValueError, match="weighted median point"):
                choose_crs_dask(parts, crs)
        else:
            assert choose_crs_dask(parts, crs) == expected
    # Unweighted: 1 per point.
    flat = dd.from_pandas(frame, npartitions=3, sort=False)
    assert choose_crs_dask(flat, weight=None) == choose_crs(lon, lat)
