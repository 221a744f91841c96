"""Tests for evplanner.metrics: hand-computed cases first, then properties."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyproj
import pytest

from evplanner import metrics as M

# --------------------------------------------------------------------------------------
# A case small enough to compute by hand
#
#   points (x_m, y_m)  weight      sites: S0 = (0, 0), S1 = (10, 1)
#   A = (0, 0)         2           L1 to S0 / S1:  A 0 / 11   -> S0, 0
#   B = (3, 4)         1                           B 7 / 10   -> S0, 7
#   C = (10, 0)        1                           C 10 / 1   -> S1, 1
#
# W = 4, objective = 2*0 + 7 + 1 = 8, mean = 2.
# Sorted distances 0, 1, 7 with cumulative weights 2, 3, 4:
#   median (target 2) = 0, p90 (target 3.6) = 7, max = 7.
# Within 5 m: A and C, weight 3 -> 0.75. Loads: S0 = 3, S1 = 1 (mean load 2):
#   max/mean = 1.5, population std = 1 -> CV 0.5.
# --------------------------------------------------------------------------------------


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261128)


POINTS = np.array([[0.0, 0.0], [3.0, 4.0], [10.0, 0.0]])
WEIGHT = np.array([2.0, 1.0, 1.0])
SITES = np.array([[0.0, 0.0], [10.0, 1.0]])


@pytest.fixture
def hand() -> M.CoverageMetrics:
    return M.coverage_metrics(
        POINTS, SITES, sample_weight=WEIGHT, radius_m=5.0, radii_m=[7.0, 0.0, 1.0]
    )


def test_hand_case_assignment_and_distances(hand):
    assert hand.labels.tolist() == [0, 0, 1]
    assert hand.distance_m.tolist() == [0.0, 7.0, 1.0]
    assert hand.labels.dtype == np.int64


def test_hand_case_summary(hand):
    assert hand.n_points == 3
    assert hand.total_weight == 4.0
    assert hand.objective_m == 8.0
    assert hand.mean_distance_m == 2.0
    assert hand.median_distance_m == 0.0
    assert hand.p90_distance_m == 7.0
    assert hand.max_distance_m == 7.0
    assert hand.coverage_share == 0.75


def test_hand_case_coverage_curve_sorted(hand):
    # radii are sorted and deduplicated; d <= r is inclusive
    assert hand.radii_m.tolist() == [0.0, 1.0, 7.0]
    assert hand.coverage_curve.tolist() == [0.5, 0.75, 1.0]
    assert hand.coverage_at(6.999) == 0.75
    assert hand.coverage_at([0.5, 7.0]).tolist() == [0.5, 1.0]


def test_hand_case_site_loads(hand):
    assert hand.site_weight.tolist() == [3.0, 1.0]
    assert hand.site_share.tolist() == [0.75, 0.25]
    assert hand.site_n_points.tolist() == [2, 1]
    assert hand.site_mean_distance_m.tolist() == pytest.approx([7.0 / 3.0, 1.0])
    assert hand.site_max_distance_m.tolist() == [7.0, 1.0]
    assert hand.load_max_over_mean == 1.5
    assert hand.load_cv == 0.5
    assert hand.n_new_sites == 2 and hand.n_fixed_sites == 0


def test_hand_case_to_dict_is_json(hand):
    d = hand.to_dict(include_sites=True)
    text = json.dumps(d, allow_nan=False)
    back = json.loads(text)
    expected = {
        "metric": "l1",
        "n_points": 3,
        "n_sites": 2,
        "n_new_sites": 2,
        "n_fixed_sites": 0,
        "n_empty_sites": 0,
        "total_weight": 4.0,
        "objective_m": 8.0,
        "mean_distance_m": 2.0,
        "median_distance_m": 0.0,
        "p90_distance_m": 7.0,
        "max_distance_m": 7.0,
        "radius_m": 5.0,
        "coverage_share": 0.75,
        "max_site_weight": 3.0,
        "max_site_share": 0.75,
        "load_max_over_mean": 1.5,
        "load_cv": 0.5,
    }
    for key, value in expected.items():
        assert back[key] == value, key
    assert back["coverage_curve"] == [
        {"radius_m": 0.0, "share": 0.5},
        {"radius_m": 1.0, "share": 0.75},
        {"radius_m": 7.0, "share": 1.0},
    ]
    assert [s["weight"] for s in back["sites"]] == [3.0, 1.0]
    assert [s["fixed"] for s in back["sites"]] == [False, False]


def test_empty_site_gets_nan_in_table_and_none_in_json():
    far = np.array([[0.0, 0.0], [1e6, 1e6]])
    m = M.coverage_metrics(POINTS, far, sample_weight=WEIGHT)
    assert m.site_weight.tolist() == [4.0, 0.0]
    assert m.n_empty_sites == 1
    # loads [4, 0], mean 2: max/mean = 2, std = 2 -> CV 1
    assert m.load_max_over_mean == 2.0 and m.load_cv == 1.0
    table = M.site_table(m)
    assert np.isnan(table.loc[1, "mean_distance_m"])
    sites = json.loads(json.dumps(m.to_dict(include_sites=True), allow_nan=False))
    assert sites["sites"][1]["mean_distance_m"] is None


def test_site_table_hand_case(hand):
    table = M.site_table(hand)
    assert list(table.columns) == [
        "site_id",
        "x_m",
        "y_m",
        "fixed",
        "weight",
        "share",
        "n_points",
        "mean_distance_m",
        "max_distance_m",
    ]
    assert table["site_id"].tolist() == [0, 1]
    assert table["x_m"].tolist() == [0.0, 10.0]
    assert table["weight"].sum() == hand.total_weight


def test_site_table_with_crs_gives_lonlat():
    crs = pyproj.CRS("EPSG:32610")
    lonlat = np.array([[-122.33, 47.61], [-117.43, 47.66]])  # Seattle, Spokane
    tr = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    sites_m = np.column_stack(tr.transform(lonlat[:, 0], lonlat[:, 1]))
    m = M.coverage_metrics(sites_m + 100.0, sites_m)
    table = M.site_table(m, crs=crs)
    np.testing.assert_allclose(table[["lon", "lat"]].to_numpy(), lonlat, atol=1e-9)


# --------------------------------------------------------------------------------------
# Fixed (existing) sites, baseline and improvement (same hand case)
#
# Baseline: only the existing site F = (10, 1). Distances A 11, B 10, C 1:
#   objective 2*11 + 10 + 1 = 33, mean 8.25, within 5 m: C only -> 0.25.
# With the new site S0 = (0, 0): as above, objective 8, mean 2, coverage 0.75.
# --------------------------------------------------------------------------------------


def test_baseline_and_improvement_by_hand():
    existing = np.array([[10.0, 1.0]])
    base = M.baseline_metrics(POINTS, existing, sample_weight=WEIGHT, radius_m=5.0)
    assert base.distance_m.tolist() == [11.0, 10.0, 1.0]
    assert base.objective_m == 33.0
    assert base.mean_distance_m == 8.25
    assert base.coverage_share == 0.25
    assert base.n_new_sites == 0 and base.n_fixed_sites == 1

    new = M.coverage_metrics(
        POINTS,
        [[0.0, 0.0]],
        fixed_sites=existing,
        sample_weight=WEIGHT,
        radius_m=5.0,
    )
    # new sites first, then fixed
    assert new.is_fixed.tolist() == [False, True]
    assert new.labels.tolist() == [0, 0, 1]
    assert M.site_table(new)["fixed"].tolist() == [False, True]

    cmp = M.compare_networks(base, new)
    assert cmp.mean_distance_reduction_m == 6.25
    assert cmp.objective_reduction_share == pytest.approx(25.0 / 33.0)
    assert cmp.coverage_share_gain == 0.5
    assert cmp.table.loc["objective_m", "change"] == -25.0
    assert cmp.table.loc["coverage_share", "improved"] == 0.75
    d = json.loads(json.dumps(cmp.to_dict(), allow_nan=False))
    assert d["n_new_sites"] == 1
    assert d["baseline"]["objective_m"] == 33.0
    assert d["improved"]["mean_distance_m"] == 2.0
    assert d["change"]["coverage_share"] == 0.5


def test_adding_sites_never_hurts(rng):
    points = rng.uniform(0, 50_000, size=(2_000, 2))
    weight = rng.integers(1, 5, size=2_000).astype(float)
    existing = rng.uniform(0, 50_000, size=(5, 2))
    new_sites = rng.uniform(0, 50_000, size=(7, 2))
    base = M.baseline_metrics(points, existing, sample_weight=weight)
    better = M.coverage_metrics(
        points, new_sites, fixed_sites=existing, sample_weight=weight
    )
    assert (better.distance_m <= base.distance_m).all()
    cmp = M.compare_networks(base, better)
    distance_rows = [
        "objective_m",
        "mean_distance_m",
        "median_distance_m",
        "p90_distance_m",
        "max_distance_m",
    ]
    assert (cmp.table.loc[distance_rows, "change"] <= 0).all()
    assert cmp.table.loc["objective_m", "change"] < 0
    assert cmp.coverage_share_gain >= 0
    assert (better.coverage_curve >= base.coverage_curve).all()


def test_compare_networks_rejects_different_demand():
    a = M.coverage_metrics(POINTS, SITES)
    b = M.coverage_metrics(POINTS[:2], SITES)
    with pytest.raises(ValueError, match="same demand"):
        M.compare_networks(a, b)
    c = M.coverage_metrics(POINTS, SITES, radius_m=1.0)
    with pytest.raises(ValueError, match="radius_m"):
        M.compare_networks(a, c)


# --------------------------------------------------------------------------------------
# Weighted quantiles
# --------------------------------------------------------------------------------------


QS = [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0]


@pytest.mark.parametrize("seed", range(5))
def test_weighted_quantile_equals_numpy_on_repeated_points(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 40))
    # few distinct values so that ties and cumulative steps hit the targets exactly
    values = rng.integers(0, 10, size=n).astype(float)
    weight = rng.integers(0, 4, size=n)
    weight[0] = max(weight[0], 1)
    repeated = np.repeat(values, weight)
    for q in QS:
        expected = np.quantile(repeated, q, method="inverted_cdf")
        assert M.weighted_quantile(values, q, weight) == expected, q
    np.testing.assert_array_equal(
        M.weighted_quantile(values, QS, weight),
        np.quantile(repeated, QS, method="inverted_cdf"),
    )


def test_weighted_quantile_even_count_gives_lower_middle():
    assert M.weighted_quantile([4.0, 1.0, 3.0, 2.0], 0.5) == 2.0
    assert M.weighted_quantile([4.0, 1.0, 3.0, 2.0], 0.75) == 3.0


def test_weighted_quantile_real_weights_match_numpy_weights(rng):
    values = rng.normal(size=500)
    weight = rng.exponential(size=500)
    q = np.linspace(0, 1, 21)
    expected = np.quantile(values, q, weights=weight, method="inverted_cdf")
    np.testing.assert_array_equal(M.weighted_quantile(values, q, weight), expected)


def test_weighted_quantile_ignores_zero_weight():
    values = [100.0, 1.0, 2.0, -50.0]
    weight = [0.0, 1.0, 1.0, 0.0]
    assert M.weighted_quantile(values, 0.0, weight) == 1.0
    assert M.weighted_quantile(values, 1.0, weight) == 2.0


@pytest.mark.parametrize(
    ("values", "q", "weight", "match"),
    [
        ([], 0.5, None, "non-empty"),
        ([1.0, np.nan], 0.5, None, "finite"),
        ([1.0, 2.0], 1.5, None, "q must be in"),
        ([1.0, 2.0], 0.5, [1.0, -1.0], "row 1"),
        ([1.0, 2.0], 0.5, [0.0, 0.0], "positive sum"),
        ([1.0, 2.0], 0.5, [1.0], "shape"),
    ],
)
def test_weighted_quantile_errors(values, q, weight, match):
    with pytest.raises(ValueError, match=match):
        M.weighted_quantile(values, q, weight)


def test_zero_weight_point_counts_in_no_statistic():
    points = np.vstack([POINTS, [[1e6, 1e6]]])
    weight = np.append(WEIGHT, 0.0)
    m = M.coverage_metrics(points, SITES, sample_weight=weight, radius_m=5.0)
    assert m.n_points == 4
    assert m.max_distance_m == 7.0
    assert m.objective_m == 8.0
    assert m.coverage_share == 0.75
    assert m.site_n_points.sum() == 4


# --------------------------------------------------------------------------------------
# Coverage and loads: properties on random data
# --------------------------------------------------------------------------------------


def test_coverage_monotone_in_radius_and_loads_sum(rng):
    points = rng.normal(scale=20_000, size=(3_000, 2))
    weight = rng.exponential(size=3_000)
    sites = rng.normal(scale=20_000, size=(12, 2))
    radii = np.linspace(0, 120_000, 61)
    m = M.coverage_metrics(points, sites, sample_weight=weight, radii_m=radii)
    assert (np.diff(m.coverage_curve) >= 0).all()
    assert m.coverage_curve[0] >= 0 and m.coverage_curve[-1] == 1.0
    assert m.coverage_at(m.max_distance_m) == 1.0
    assert m.coverage_at(m.max_distance_m * (1 - 1e-9)) < 1.0
    # coverage at a radius = weighted share of d <= r, computed directly
    for r in (1_000.0, 10_000.0, 30_000.0):
        direct = weight[m.distance_m <= r].sum() / weight.sum()
        assert m.coverage_at(r) == pytest.approx(direct, rel=1e-12)
    assert m.site_weight.sum() == pytest.approx(weight.sum(), rel=1e-12)
    assert m.site_share.sum() == pytest.approx(1.0, rel=1e-12)
    assert m.site_n_points.sum() == 3_000
    assert m.objective_m == pytest.approx(np.dot(weight, m.distance_m), rel=1e-12)
    assert m.mean_distance_m <= m.max_distance_m
    assert m.median_distance_m <= m.p90_distance_m <= m.max_distance_m
    assert m.median_distance_m == M.weighted_quantile(m.distance_m, 0.5, weight)
    # per-site statistics agree with a direct computation
    for j in range(12):
        mine = m.labels == j
        if weight[mine].sum() > 0:
            assert m.site_max_distance_m[j] == m.distance_m[mine].max()
            assert m.site_mean_distance_m[j] == pytest.approx(
                np.average(m.distance_m[mine], weights=weight[mine])
            )
    loads = m.site_weight
    assert m.load_max_over_mean == pytest.approx(loads.max() / loads.mean())
    assert m.load_cv == pytest.approx(loads.std() / loads.mean())


def test_l1_assignment_matches_brute_force(rng):
    points = rng.uniform(-1e5, 1e5, size=(1_000, 2))
    sites = rng.uniform(-1e5, 1e5, size=(17, 2))
    labels, dist = M.assign_to_sites(points, sites)
    full = np.abs(points[:, None, :] - sites[None, :, :]).sum(axis=2)
    np.testing.assert_array_equal(labels, full.argmin(axis=1))
    np.testing.assert_array_equal(dist, full.min(axis=1))


# --------------------------------------------------------------------------------------
# Great-circle distances
# --------------------------------------------------------------------------------------


def test_one_degree_of_latitude():
    d = float(M.haversine_m(-120.0, 47.0, -120.0, 48.0))
    assert d == pytest.approx(111_200.0, rel=0.005)
    # exactly 2 pi R / 360 on the sphere
    assert d == pytest.approx(2 * np.pi * M.EARTH_RADIUS_M / 360, rel=1e-12)


def test_great_circle_close_to_geodesic_in_washington(rng):
    lon1 = rng.uniform(-124.5, -117.0, 200)
    lat1 = rng.uniform(45.6, 49.0, 200)
    lon2 = rng.uniform(-124.5, -117.0, 200)
    lat2 = rng.uniform(45.6, 49.0, 200)
    _, _, geodesic = pyproj.Geod(ellps="WGS84").inv(lon1, lat1, lon2, lat2)
    np.testing.assert_allclose(
        M.haversine_m(lon1, lat1, lon2, lat2), geodesic, rtol=5e-3
    )


def test_great_circle_metrics_by_hand():
    # two sites on the equator one degree apart; points at 0.25 deg and 0.9 deg
    one_deg = 2 * np.pi * M.EARTH_RADIUS_M / 360
    m = M.coverage_metrics(
        [[0.25, 0.0], [0.9, 0.0]],
        [[0.0, 0.0], [1.0, 0.0]],
        metric="great_circle",
        radius_m=0.2 * one_deg,
    )
    assert m.labels.tolist() == [0, 1]
    np.testing.assert_allclose(m.distance_m, [0.25 * one_deg, 0.1 * one_deg])
    assert m.coverage_share == 0.5
    assert m.mean_distance_m == pytest.approx(0.175 * one_deg)
    table = M.site_table(m)
    assert {"lon", "lat"} <= set(table.columns) and "x_m" not in table.columns


@pytest.mark.parametrize("block_rows", [1, 7, 1_000_000])
def test_great_circle_assignment_matches_brute_force(rng, block_rows):
    points = np.column_stack([rng.uniform(-124, -117, 500), rng.uniform(45.5, 49, 500)])
    sites = np.column_stack([rng.uniform(-124, -117, 40), rng.uniform(45.5, 49, 40)])
    labels, dist = M.assign_to_sites(
        points, sites, metric="great_circle", block_rows=block_rows
    )
    full = M.haversine_m(
        points[:, None, 0], points[:, None, 1], sites[None, :, 0], sites[None, :, 1]
    )
    np.testing.assert_allclose(dist, full.min(axis=1), rtol=1e-12, atol=1e-6)
    np.testing.assert_array_equal(labels, full.argmin(axis=1))


# --------------------------------------------------------------------------------------
# Input errors
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"points": [[0.0, np.nan]]}, r"points must be finite; row 0"),
        ({"points": [[0.0, 0.0, 0.0]]}, r"points must have shape \(n, 2\)"),
        ({"points": np.empty((0, 2))}, "at least one point"),
        ({"sites": None}, "at least one site"),
        ({"sites": [[np.inf, 0.0]]}, "sites must be finite"),
        ({"fixed_sites": [[0.0, np.nan]]}, "fixed_sites must be finite"),
        ({"sample_weight": [1.0, -2.0, 1.0]}, r"sample_weight .*row 1 is -2.0"),
        ({"sample_weight": [0.0, 0.0, 0.0]}, "positive sum"),
        ({"sample_weight": [1.0, 1.0]}, r"shape \(3,\)"),
        ({"metric": "euclid"}, "metric must be one of"),
        (
            {"metric": "great_circle", "points": [[0.0, 0.0], [5e5, 5.2e6]]},
            r"points must be lon, lat in degrees.*row 1",
        ),
        ({"radius_m": -1.0}, "radius_m"),
        ({"radii_m": [1.0, np.nan]}, "radii_m"),
    ],
)
def test_coverage_metrics_errors(kwargs, match):
    args = {"points": POINTS, "sites": SITES} | kwargs
    with pytest.raises(ValueError, match=match):
        M.coverage_metrics(args.pop("points"), args.pop("sites"), **args)


def test_from_assignment_matches_coverage_metrics(hand):
    again = M.CoverageMetrics.from_assignment(
        hand.distance_m,
        hand.labels,
        SITES,
        sample_weight=WEIGHT,
        radius_m=5.0,
        radii_m=[0.0, 1.0, 7.0],
    )
    assert again.to_dict() == hand.to_dict()
    with pytest.raises(ValueError, match=r"labels must be in \[0, 2\)"):
        M.CoverageMetrics.from_assignment([1.0, 2.0], [0, 2], SITES)


def test_summary_frame(hand):
    frame = hand.summary_frame()
    assert isinstance(frame, pd.DataFrame)
    assert frame["share"].tolist() == [0.5, 0.75, 1.0]


# --------------------------------------------------------------------------------------
# With the K-Medians estimator: sweep over k, baseline row, K-Means comparison
# --------------------------------------------------------------------------------------


def _blobs(seed: int, k: int = 4, per_blob: int = 150, spread_m: float = 3_000.0):
    """k well-separated Gaussian blobs of demand with integer weights (metres)."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 100_000, size=(k, 2))
    # keep the blobs apart so that "k" is the natural number of sites
    while (
        np.abs(centres[:, None] - centres[None])
        .sum(axis=2)[~np.eye(k, dtype=bool)]
        .min()
        < 30_000
    ):
        centres = rng.uniform(0, 100_000, size=(k, 2))
    points = np.concatenate(
        [c + rng.normal(scale=spread_m, size=(per_blob, 2)) for c in centres]
    )
    weight = rng.integers(1, 10, size=points.shape[0]).astype(float)
    return points, weight


def test_kmedians_inertia_equals_metrics_objective():
    from evplanner.kmedians import KMedians

    points, weight = _blobs(1)
    model = KMedians(n_clusters=4, n_init=3, random_state=0).fit(
        points, sample_weight=weight
    )
    m = M.coverage_metrics(points, model.cluster_centers_, sample_weight=weight)
    assert m.objective_m == pytest.approx(model.inertia_, rel=1e-9)
    np.testing.assert_array_equal(m.labels, model.labels_)


def test_sweep_k_objective_falls_and_elbow_is_the_blob_count():
    points, weight = _blobs(2)
    sweep = M.sweep_k(
        points, range(1, 9), sample_weight=weight, n_init=3, radius_m=4_000.0
    )
    assert sweep["k"].tolist() == list(range(1, 9))
    assert list(sweep.columns) == [
        "k",
        "n_sites",
        "objective_m",
        "mean_distance_m",
        "median_distance_m",
        "p90_distance_m",
        "max_distance_m",
        "coverage_share",
        "load_max_over_mean",
        "load_cv",
        "objective_drop",
        "n_iter",
        "fit_seconds",
    ]
    objective = sweep["objective_m"].to_numpy()
    assert (np.diff(objective) <= 1e-9 * objective[:-1]).all()
    assert np.isnan(sweep["objective_drop"].iloc[0])
    assert sweep["objective_drop"].iloc[1:].between(0, 1).all()
    assert sweep["mean_distance_m"].to_numpy() == pytest.approx(
        objective / weight.sum()
    )
    assert M.suggest_k(sweep) == 4


def test_sweep_k_with_existing_sites_starts_at_the_baseline():
    points, weight = _blobs(3)
    existing = points[[0, 150]] + 20_000.0  # two stations off to one side
    sweep = M.sweep_k(
        points, [0, 1, 2, 4], sample_weight=weight, fixed_sites_m=existing, n_init=2
    )
    base = M.baseline_metrics(points, existing, sample_weight=weight)
    assert sweep["k"].tolist() == [0, 1, 2, 4]
    assert sweep["n_sites"].tolist() == [2, 3, 4, 6]
    assert sweep["objective_m"].iloc[0] == base.objective_m
    assert sweep["coverage_share"].iloc[0] == base.coverage_share
    assert sweep["n_iter"].iloc[0] == 0
    assert (np.diff(sweep["objective_m"]) < 0).all()


def test_sweep_k_errors():
    points, weight = _blobs(4)
    with pytest.raises(ValueError, match="ks must be >= 1"):
        M.sweep_k(points, [0, 1])
    with pytest.raises(ValueError, match="at least one value"):
        M.sweep_k(points, [])
    with pytest.raises(ValueError, match="at least 3 rows"):
        M.suggest_k(pd.DataFrame({"k": [1, 2], "objective_m": [2.0, 1.0]}))


def test_make_outliers_distance_and_weight():
    points, weight = _blobs(5)
    outliers, out_w = M.make_outliers(
        points, 6, sample_weight=weight, weight_share=0.02, distance_factor=1.5
    )
    centre = np.array([M.weighted_quantile(points[:, j], 0.5, weight) for j in (0, 1)])
    extent = np.abs(points - centre).sum(axis=1).max()
    np.testing.assert_allclose(np.abs(outliers - centre).sum(axis=1), 2.5 * extent)
    assert out_w.shape == (6,)
    assert out_w.sum() == pytest.approx(0.02 * weight.sum())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kmedians_is_more_robust_to_outliers_than_kmeans(seed):
    # The original project's claim, checked on clustered demand plus 5 far outliers
    # (one demand extent beyond the demand) carrying 1 % of the weight. Seeds are not
    # hand-picked: every seed tried while writing this test (0-7) behaved the same
    # way. (Coverage within 5 km is not asserted: it is not systematically better
    # for K-Medians.)
    points, weight = _blobs(seed, k=5, per_blob=200, spread_m=5_000.0)
    outliers, outlier_weight = M.make_outliers(
        points, 5, sample_weight=weight, weight_share=0.01, random_state=seed
    )
    cmp = M.compare_kmeans(
        points,
        5,
        sample_weight=weight,
        outliers_m=outliers,
        outlier_weight=outlier_weight,
        n_init=10,
        random_state=seed,
    )
    table = cmp.table
    assert len(table) == 4
    assert set(zip(table["method"], table["scenario"], strict=True)) == {
        ("kmedians", "clean"),
        ("kmedians", "outliers"),
        ("kmeans", "clean"),
        ("kmeans", "outliers"),
    }
    kmed_clean = cmp.row("kmedians", "clean")
    kmeans_clean = cmp.row("kmeans", "clean")
    kmed_out = cmp.row("kmedians", "outliers")
    kmeans_out = cmp.row("kmeans", "outliers")
    assert kmed_clean["shift_mean_m"] == 0.0
    # judged by the L1 objective on the original demand, K-Medians is no worse
    assert kmed_clean["objective_m"] <= kmeans_clean["objective_m"]
    assert kmed_out["objective_m"] <= kmeans_out["objective_m"]
    # and its centres move less when the outliers are added
    assert kmed_out["shift_mean_m"] < kmeans_out["shift_mean_m"]
    assert kmed_out["shift_max_m"] < kmeans_out["shift_max_m"]
    assert kmed_out["n_centers_on_outliers"] == 0
    d = json.loads(json.dumps(cmp.to_dict(), allow_nan=False))
    assert d["n_clusters"] == 5 and d["n_outliers"] == 5 and len(d["rows"]) == 4


def test_suggest_k_by_hand():
    # log objective 4.61, 2.30, 0, -0.11, -0.22: scaled to [0, 1] it is
    # 1, 0.52, 0.05, 0.02, 0 against the chord 1, 0.75, 0.5, 0.25, 0, so the point
    # farthest below the chord is k = 3 (each of the first two sites cut the
    # objective tenfold, the next ones by about 10 %).
    sweep = pd.DataFrame({"k": [5, 4, 3, 2, 1], "objective_m": [0.8, 0.9, 1, 10, 100]})
    assert M.suggest_k(sweep) == 3
    flat = pd.DataFrame({"k": [1, 2, 3], "objective_m": [5.0, 5.0, 5.0]})
    assert M.suggest_k(flat) == 1


def test_kmedians_is_more_robust_to_real_out_of_state_registrations():
    # Real outliers: the bundled vehicles registered outside Washington (a few
    # hundred, across the country) added to the Washington demand, k = 10.
    from evplanner.data import load_vehicles
    from evplanner.demand import demand_points
    from evplanner.projection import choose_crs, to_metres

    vehicles, _ = load_vehicles(keep_out_of_area=True)
    in_wa = (vehicles["state"] == "WA").fillna(False).to_numpy(dtype=bool)
    # At their ZIP centroids: the out-of-state vehicles' tracts are not in the
    # (Washington) tract table.
    demand = demand_points(vehicles[in_wa], demand_at="zip")
    away = demand_points(vehicles[~in_wa], demand_at="zip")
    assert 0 < away["weight"].sum() < 0.01 * demand["weight"].sum()
    crs = choose_crs(demand["lon"], demand["lat"])

    def metres(frame):
        lon, lat = frame["lon"].to_numpy(), frame["lat"].to_numpy()
        return np.column_stack(to_metres(lon, lat, crs))

    cmp = M.compare_kmeans(
        metres(demand),
        10,
        sample_weight=demand["weight"].to_numpy(),
        outliers_m=metres(away),
        outlier_weight=away["weight"].to_numpy(),
        n_init=4,
        random_state=0,
    )
    kmed_clean = cmp.row("kmedians", "clean")
    kmeans_clean = cmp.row("kmeans", "clean")
    kmed_out = cmp.row("kmedians", "outliers")
    kmeans_out = cmp.row("kmeans", "outliers")
    assert kmed_clean["objective_m"] < kmeans_clean["objective_m"]
    assert kmed_out["n_centers_on_outliers"] < kmeans_out["n_centers_on_outliers"]
    kmed_loss = kmed_out["objective_m"] / kmed_clean["objective_m"]
    kmeans_loss = kmeans_out["objective_m"] / kmeans_clean["objective_m"]
    assert kmed_loss < kmeans_loss


def test_docstring_examples():
    import doctest

    result = doctest.testmod(M)
    assert result.failed == 0
    assert result.attempted >= 10


@pytest.mark.parametrize("seed", range(4))
def test_weighted_median_is_the_one_kmedians_uses(seed):
    # One definition of the weighted median across the package: the metrics' median
    # is the lower weighted median that the K-Medians update computes.
    from evplanner._kernels import weighted_lower_median

    rng = np.random.default_rng(seed)
    values = rng.integers(0, 20, size=51).astype(float)
    integer_weight = rng.integers(0, 4, size=51).astype(float)
    integer_weight[0] += 1
    real_weight = rng.exponential(size=51)
    for weight in (integer_weight, real_weight, np.ones(50)):
        v = values[: weight.size]
        assert M.weighted_quantile(v, 0.5, weight) == weighted_lower_median(v, weight)
