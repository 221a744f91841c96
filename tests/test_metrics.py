"""evplanner.metrics: a hand-computed case, properties, and NumPy against Dask."""

from __future__ import annotations

import json

import dask.array as da
import numpy as np
import pytest

from evplanner import metrics as M
from evplanner._kernels import l1_distances

# --------------------------------------------------------------------------------------
# A case small enough to compute by hand
#
#   points (x_m, y_m)  weight      sites: S0 = (0, 0) new, S1 = (10, 1) existing
#   A = (0, 0)         2           L1 to S0 / S1:  A 0 / 11   -> S0, 0
#   B = (3, 4)         1                           B 7 / 10   -> S0, 7
#   C = (10, 0)        1                           C 10 / 1   -> S1, 1
#
# W = 4, objective = 2*0 + 7 + 1 = 8, mean = 2, max = 7. Within 5 m: A and C, 0.75.
# Loads: S0 = 3, S1 = 1 (mean load 2): max/mean = 1.5, population std 1 -> CV 0.5.
# --------------------------------------------------------------------------------------

POINTS = np.array([[0.0, 0.0], [3.0, 4.0], [10.0, 0.0]])
WEIGHT = np.array([2.0, 1.0, 1.0])
SITES = np.array([[0.0, 0.0], [10.0, 1.0]])


@pytest.fixture
def hand() -> M.Coverage:
    return M.coverage(
        POINTS, WEIGHT, SITES, n_new_sites=1, radius_m=5.0, radii_m=[7.0, 0.0, 1.0]
    )


def test_hand_case_assignment(hand):
    assert hand.labels.tolist() == [0, 0, 1]
    assert hand.distance_m.tolist() == [0.0, 7.0, 1.0]
    assert (hand.n_new_sites, hand.n_existing_sites, hand.n_sites) == (1, 1, 2)


def test_hand_case_summary(hand):
    assert hand.n_points == 3
    assert hand.total_weight == 4.0 and hand.total_vehicles == 4.0
    assert hand.objective_m == 8.0
    assert hand.mean_distance_m == 2.0
    assert hand.max_distance_m == 7.0
    assert hand.coverage_share == 0.75


def test_hand_case_curve_is_sorted_with_the_radius_added(hand):
    assert hand.radii_m.tolist() == [0.0, 1.0, 5.0, 7.0]
    assert hand.coverage_curve.tolist() == [0.5, 0.75, 0.75, 1.0]
    assert hand.coverage_at(1.0) == 0.75
    with pytest.raises(ValueError, match="not one of"):
        hand.coverage_at(2.0)


def test_hand_case_site_loads(hand):
    assert hand.site_weight.tolist() == [3.0, 1.0]
    assert hand.site_share.tolist() == [0.75, 0.25]
    assert hand.site_n_points.tolist() == [2, 1]
    assert hand.site_mean_distance_m.tolist() == pytest.approx([7.0 / 3.0, 1.0])
    assert hand.site_max_distance_m.tolist() == [7.0, 1.0]
    assert hand.load_max_over_mean == 1.5
    assert hand.load_cv == 0.5


def test_hand_case_to_dict_is_json(hand):
    back = json.loads(json.dumps(hand.to_dict(), allow_nan=False))
    assert back["objective_m"] == 8.0 and back["coverage_share"] == 0.75
    assert back["coverage_curve"][0] == {"radius_m": 0.0, "share": 0.5}
    assert back["n_existing_sites"] == 1


def test_empty_site_gives_nan_and_none_in_json():
    far = np.array([[0.0, 0.0], [1e6, 1e6]])
    c = M.coverage(POINTS, WEIGHT, far, n_new_sites=2)
    assert c.n_empty_sites == 1
    assert np.isnan(c.site_mean_distance_m[1]) and np.isnan(c.site_max_distance_m[1])
    json.dumps(c.to_dict(), allow_nan=False)


def test_quantiles_from_the_histogram_are_within_one_bin(rng):
    X = rng.uniform(0, 60_000, size=(5000, 2))
    w = rng.integers(1, 9, size=5000).astype(float)
    sites = rng.uniform(0, 60_000, size=(7, 2))
    c = M.coverage(X, w, sites, n_new_sites=7)
    exact = M.weighted_quantile(c.distance_m, [0.5, 0.9], w)
    got = np.array([c.median_distance_m, c.p90_distance_m])
    # The histogram gives the upper edge of the bin holding the quantile.
    assert ((got >= exact) & (got <= exact + M.HISTOGRAM_BIN_M)).all()


def test_zero_weight_point_counts_in_no_statistic():
    X = np.array([[0.0, 0.0], [1000.0, 0.0], [5e5, 0.0]])
    w = np.array([1.0, 1.0, 0.0])
    c = M.coverage(X, w, np.array([[0.0, 0.0]]), n_new_sites=1)
    assert c.max_distance_m == 1000.0
    assert c.site_max_distance_m.tolist() == [1000.0]
    assert c.site_n_points.tolist() == [3]


def test_properties_on_random_demand(rng):
    X = rng.normal(0, 20_000, size=(3000, 2))
    w = rng.exponential(2.0, size=3000)
    sites = rng.normal(0, 20_000, size=(12, 2))
    c = M.coverage(X, w, sites, n_new_sites=12)
    # Every point at its nearest site (brute force), loads sum to the total.
    assert np.array_equal(c.distance_m, l1_distances(X, sites).min(axis=1))
    assert c.site_weight.sum() == pytest.approx(c.total_weight)
    assert (np.diff(c.coverage_curve) >= 0).all() and c.coverage_curve[-1] <= 1
    # Adding sites never hurts (new sites only move points closer).
    more = M.coverage(
        X, w, np.vstack([sites, rng.normal(0, 20_000, (5, 2))]), n_new_sites=17
    )
    assert more.objective_m <= c.objective_m
    assert (more.coverage_curve >= c.coverage_curve - 1e-12).all()
    table = M.compare_networks(c, more)
    assert table.loc["objective_m", "change"] <= 0


@pytest.mark.parametrize("chunks", [3000, 1500, 750, (1000, 7, 1993)])
def test_dask_gives_the_numpy_numbers(rng, chunks):
    X = rng.normal(0, 20_000, size=(3000, 2))
    w = rng.integers(0, 5, size=3000).astype(float)
    v = rng.integers(0, 3, size=3000).astype(float)
    sites = rng.normal(0, 20_000, size=(9, 2))
    mem = M.coverage(X, w, sites, n_new_sites=4, vehicles=v, radius_m=7_000.0)
    chunked = M.coverage(
        da.from_array(X, chunks=(chunks, 2)),
        da.from_array(w, chunks=chunks),
        sites,
        n_new_sites=4,
        vehicles=da.from_array(v, chunks=chunks),
        radius_m=7_000.0,
    )
    assert chunked.labels is None and chunked.distance_m is None
    for name in (
        "n_points",
        "total_weight",
        "total_vehicles",
        "max_distance_m",
        "coverage_share",
        "median_distance_m",
        "p90_distance_m",
    ):
        assert getattr(chunked, name) == pytest.approx(getattr(mem, name), rel=1e-12), (
            name
        )
    assert chunked.objective_m == pytest.approx(mem.objective_m, rel=1e-12)
    for name in (
        "coverage_curve",
        "site_weight",
        "site_vehicles",
        "site_n_points",
        "site_mean_distance_m",
        "site_max_distance_m",
        "histogram_weight",
    ):
        np.testing.assert_allclose(
            getattr(chunked, name), getattr(mem, name), rtol=1e-12, err_msg=name
        )


def test_compare_networks_rejects_different_demand(hand):
    other = M.coverage(POINTS[:2], WEIGHT[:2], SITES, n_new_sites=1, radius_m=5.0)
    with pytest.raises(ValueError, match="same demand"):
        M.compare_networks(hand, other)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="sites_m"):
        M.coverage(POINTS, WEIGHT, np.empty((0, 2)), n_new_sites=0)
    with pytest.raises(ValueError, match="radius_m"):
        M.coverage(POINTS, WEIGHT, SITES, n_new_sites=1, radius_m=float("inf"))


# --------------------------------------------------------------------------------------
# Weighted quantiles
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_weighted_quantile_equals_numpy_on_repeated_points(seed):
    rng = np.random.default_rng(seed)
    values = rng.normal(size=40)
    counts = rng.integers(1, 5, size=40)
    repeated = np.repeat(values, counts)
    for q in (0.1, 0.5, 0.9):
        expected = np.quantile(repeated, q, method="inverted_cdf")
        assert M.weighted_quantile(values, q, counts.astype(float)) == expected


def test_weighted_quantile_lower_median_and_zero_weights():
    assert M.weighted_quantile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0
    assert M.weighted_quantile([1.0, 2.0, 100.0], 1.0, [1.0, 1.0, 0.0]) == 2.0


@pytest.mark.parametrize(("values", "q", "weight", "match"), [
    ([], 0.5, None, "non-empty"),
    ([1.0, np.nan], 0.5, None, "finite"),
    ([1.0, 2.0], 1.5, None, r"\[0, 1\]"),
    ([1.0, 2.0], 0.5, [0.0, 0.0], "positive sum"),
    ([1.0, 2.0], 0.5, [1.0], "shape"),
])  # fmt: skip
def test_weighted_quantile_errors(values, q, weight, match):
    with pytest.raises(ValueError, match=match):
        M.weighted_quantile(values, q, weight)


def test_kmedians_objective_equals_the_metrics_objective(clustered_points):
    from evplanner.kmedians import KMedians

    X, w = clustered_points
    km = KMedians(n_clusters=4, random_state=0).fit(X, sample_weight=w)
    c = M.coverage(X, w, km.cluster_centers_, n_new_sites=4)
    assert c.objective_m == pytest.approx(km.inertia_, rel=1e-12)
    assert np.array_equal(c.labels, km.labels_)


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
