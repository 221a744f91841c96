"""Tests for the K-Medians core (evplanner.kmedians, evplanner._kernels)."""

from __future__ import annotations

import doctest
import itertools

import dask.array as da
import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from evplanner import _kernels as kern
from evplanner import kmedians as km
from evplanner.errors import InputError
from evplanner.kmedians import KMedians, k_medians
from tests.chunking import CHUNKINGS, to_dask

# Real Dask scheduling (threads), no process start-up cost per test.
pytestmark = pytest.mark.usefixtures("dask_threads")


def _objective(X, w, centers):
    D = np.abs(X[:, None, :] - centers[None, :, :]).sum(axis=2)
    return float(np.sum(w * D.min(axis=1)))


@pytest.fixture
def outlier_points(clustered_points):
    """The shared clustered points plus three far outliers (heavy weights)."""
    X, w = clustered_points
    X = np.vstack(
        [X, [[60_000.0, -40_000.0], [-50_000.0, 45_000.0], [70_000.0, 70_000.0]]]
    )
    w = np.concatenate([w, [4.0, 5.0, 3.0]])
    return X, w


# ---------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------


def test_assign_l1_matches_brute_force_with_ties(rng):
    # Integer grid coordinates make exact distance ties common: the kernel must
    # pick the lowest index among equally near centres, as argmin does.
    X = rng.integers(0, 20, size=(3000, 2)).astype(float)
    C = rng.integers(0, 20, size=(40, 2)).astype(float)
    labels, dist = kern.assign_l1(X, C)
    D = np.abs(X[:, None, :] - C[None]).sum(axis=2)
    np.testing.assert_array_equal(labels, D.argmin(axis=1))
    np.testing.assert_array_equal(dist, D.min(axis=1))
    lab2, d1, d2 = kern.assign2_l1(X, C)
    Ds = np.sort(D, axis=1)
    np.testing.assert_array_equal(lab2, labels)
    np.testing.assert_array_equal(d1, Ds[:, 0])
    np.testing.assert_array_equal(d2, Ds[:, 1])


def test_assign_l1_three_dimensions_and_one_centre(rng):
    X = rng.normal(size=(500, 3))
    C = rng.normal(size=(1, 3))
    labels, dist = kern.assign_l1(X, C)
    assert (labels == 0).all()
    np.testing.assert_allclose(dist, np.abs(X - C).sum(axis=1))
    _, _, d2 = kern.assign2_l1(X, C)
    assert np.isinf(d2).all()


def _brute_lower_median(v, w):
    o = np.argsort(v, kind="stable")
    cw = np.cumsum(w[o])
    return v[o][np.searchsorted(cw, 0.5 * cw[-1], side="left")]


@pytest.mark.parametrize("seed", range(30))
def test_median_step_is_exactly_optimal(seed):
    # For fixed assignments the median step must minimise each cluster's
    # weighted L1 cost exactly. For L1 the optimum per coordinate is attained
    # at a data value, so trying every data value is a complete search.
    r = np.random.default_rng(seed)
    n, d, k = int(r.integers(1, 25)), int(r.integers(1, 4)), int(r.integers(1, 5))
    X = r.integers(-5, 6, size=(n, d)).astype(float) * r.choice([1.0, 0.37])
    w = r.choice([0.0, 1.0, 2.0, 0.5, 3.25], size=n)
    if not w.sum() > 0:
        w[0] = 1.0
    labels = r.integers(0, k, size=n)
    med, wsum = kern.cluster_lower_medians(X, w, labels, k, k)
    for j in range(k):
        m = labels == j
        np.testing.assert_allclose(wsum[j], w[m].sum())
        if not w[m].sum() > 0:
            assert np.isnan(med[j]).all()
            continue
        for c in range(d):
            v, ww = X[m, c], w[m]
            costs = [np.sum(ww * np.abs(v - cand)) for cand in v]
            best = min(costs)
            got = np.sum(ww * np.abs(v - med[j, c]))
            assert got <= best + 1e-12 * max(1.0, best)
            # ... and it is the lower weighted median as documented.
            assert med[j, c] == _brute_lower_median(v, ww)


@pytest.mark.parametrize("kind", ["float", "int", "repeats"])
def test_median_step_on_large_clusters(rng, kind):
    # Clusters big enough for the 256-bin histogram path of the kernel.
    n, k = 30_000, 3
    X = rng.normal(0, 1000, size=(n, 2))
    if kind == "repeats":
        X = X.round(-2)  # many equal values: the median bin holds thousands
    w = rng.gamma(1.5, 1.0, n) if kind == "float" else rng.integers(0, 4, n) * 1.0
    labels = rng.integers(0, k, n)
    med, _ = kern.cluster_lower_medians(X, w, labels, k, k)
    for j in range(k):
        m = labels == j
        for c in range(2):
            assert med[j, c] == _brute_lower_median(X[m, c], w[m])


@pytest.mark.parametrize("n_slices", [1, 2, 3, 7])
def test_median_step_sorts_in_slices_to_the_same_medians(rng, n_slices):
    # The counting sort by label runs one slice of rows per thread; every
    # slice count must give the medians of the serial sort, bit for bit (with
    # fixed centres among the labels, and a label with no points).
    n, k, n_labels = 60_000, 6, 9
    X = rng.normal(0, 1000, size=(n, 2)).round(1)
    w = rng.gamma(1.5, 1.0, n)
    labels = rng.integers(0, n_labels, n)
    labels[labels == 4] = 5  # cluster 4 is empty
    outs = []
    for slices in (1, n_slices):
        out, wsum = np.empty((k, 2)), np.zeros(k)
        kern._cluster_lower_medians(n, X, w, labels, n_labels, k, slices, out, wsum)
        outs.append((out, wsum))
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    np.testing.assert_array_equal(outs[0][1], outs[1][1])
    assert np.isnan(outs[1][0][4]).all()
    for j in (0, 3, 5):
        m = labels == j
        assert outs[1][0][j, 1] == _brute_lower_median(X[m, 1], w[m])


def test_weighted_lower_median_definition():
    v = np.array([5.0, 1.0, 3.0, 3.0, 9.0])
    w = np.array([1.0, 2.0, 0.0, 1.0, 2.0])
    # sorted: 1(2) 3(0) 3(1) 5(1) 9(2); total 6, half 3: C(1)=2, C(3)=3 -> 3
    assert kern.weighted_lower_median(v, w) == 3.0
    # Zero-weight values are never the median while the total is positive.
    assert (
        kern.weighted_lower_median(np.array([0.0, 1.0, 2.0]), np.array([0.0, 1.0, 1.0]))
        == 1.0
    )


# ---------------------------------------------------------------------------
# NumPy and Dask engines agree
# ---------------------------------------------------------------------------


def _assert_same(r_np, r_da):
    np.testing.assert_allclose(r_da.centers, r_np.centers, rtol=1e-6, atol=0)
    assert r_da.inertia == pytest.approx(r_np.inertia, rel=1e-12)
    np.testing.assert_array_equal(r_da.labels.compute(), r_np.labels)
    assert r_da.n_iter == r_np.n_iter
    np.testing.assert_allclose(r_da.inertia_history, r_np.inertia_history, rtol=1e-12)


@pytest.mark.parametrize("how", CHUNKINGS)
def test_numpy_and_dask_agree(outlier_points, how):
    X, w = outlier_points
    kw = dict(sample_weight=w, random_state=7, n_init=2)
    r_np = k_medians(X, 5, **kw)
    Xd, wd = to_dask(X, w, how)
    r_da = k_medians(Xd, 5, **{**kw, "sample_weight": wd})
    _assert_same(r_np, r_da)


@pytest.mark.parametrize(
    "how, budget, sample_size",
    [(how, 60, 150) for how in CHUNKINGS]
    + [("four", 1, 150), ("uneven", 60, 400), ("four", 1, 400)],
)
def test_numpy_and_dask_agree_sampled_init_and_refinement(
    monkeypatch, rng, how, budget, sample_size
):
    # Force every path that only large inputs take: the chunk-invariant
    # initialisation sample, sampled swap candidates, tiny histograms and a
    # tiny gather budget, so that the exact median needs refinement passes
    # (on data with many repeated coordinate values, float weights). With a
    # budget of 1 nearly every median is found by refinement alone. A sample
    # of 150 rows is too thin for 4 centres (every run works on all points);
    # one of 400 is not (runs on samples, the best refined on all points).
    monkeypatch.setattr(km, "INIT_SAMPLE_SIZE", sample_size)
    monkeypatch.setattr(km, "_N_BINS", 8)
    monkeypatch.setattr(km, "_GATHER_BUDGET", budget)
    X = np.vstack([rng.normal(0, 3, (400, 2)).round(), rng.normal(40, 9, (300, 2))])
    w = rng.gamma(2.0, 1.0, len(X))
    kw = dict(
        sample_weight=w,
        random_state=3,
        n_swap_candidates=20,
        fixed_centers=[[40.0, 0.0]],
    )
    rows_refined = _spy_refine(monkeypatch)
    r_np = k_medians(X, 4, **kw)
    Xd, wd = to_dask(X, w, how)
    r_da = k_medians(Xd, 4, **{**kw, "sample_weight": wd})
    _assert_same(r_np, r_da)
    runs = [len(X)] * 3 if sample_size == 150 else [sample_size] * 3 + [len(X)]
    assert rows_refined == runs * 2  # NumPy, then Dask: the same phases


@pytest.mark.parametrize("how", ["two", "uneven"])
def test_estimator_dask_matches_numpy(outlier_points, how):
    X, w = outlier_points
    a = KMedians(4, random_state=0).fit(X, sample_weight=w)
    Xd, wd = to_dask(X, w, how)
    b = KMedians(4, random_state=0).fit(Xd, sample_weight=wd)
    np.testing.assert_allclose(b.cluster_centers_, a.cluster_centers_, rtol=1e-6)
    assert isinstance(b.inertia_, float)
    assert b.inertia_ == pytest.approx(a.inertia_, rel=1e-12)
    np.testing.assert_array_equal(b.predict(Xd).compute(), a.predict(X))
    np.testing.assert_allclose(b.transform(Xd).compute(), a.transform(X))
    assert b.n_features_in_ == 2


def test_dask_weights_given_as_numpy_and_default(outlier_points):
    X, w = outlier_points
    Xd = da.from_array(X, chunks=(100, 2))
    a = k_medians(X, 3, sample_weight=w, random_state=1)
    b = k_medians(Xd, 3, sample_weight=w, random_state=1)
    np.testing.assert_allclose(b.centers, a.centers, rtol=1e-6)
    c = k_medians(X, 3, random_state=1)
    e = k_medians(Xd, 3, random_state=1)
    np.testing.assert_allclose(e.centers, c.centers, rtol=1e-6)


# ---------------------------------------------------------------------------
# Objective: monotone, converged, consistent
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("init", ["k-medians++", "random"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_objective_never_increases(outlier_points, init, seed):
    X, w = outlier_points
    est = KMedians(6, init=init, n_init=1, tol=0.0, random_state=seed)
    est.fit(X, sample_weight=w)
    h = est.inertia_history_
    assert h.shape[0] >= 2
    assert (np.diff(h) <= 0).all(), h
    assert h[-1] == est.inertia_
    # inertia_ really is the weighted L1 objective of the final centres.
    assert est.inertia_ == pytest.approx(
        _objective(X, w, est.cluster_centers_), rel=1e-12
    )
    np.testing.assert_array_equal(est.labels_, est.predict(X))


@pytest.mark.parametrize("sample_size", [km.INIT_SAMPLE_SIZE, 50])
def test_max_iter_caps_lloyd(monkeypatch, outlier_points, sample_size):
    # Also above the sample size: one plain Lloyd run has no sample phase.
    monkeypatch.setattr(km, "INIT_SAMPLE_SIZE", sample_size)
    X, w = outlier_points
    init = X[:5].copy()
    est = KMedians(5, init=init, max_iter=1, local_search=False).fit(X)
    assert est.n_iter_ == 1
    assert est.inertia_history_.shape[0] == 2


def test_local_search_reaches_the_brute_force_optimum():
    # A tiny p-median instance whose optimum we can enumerate: for L1 every
    # optimal site lies on the grid of data x-values times data y-values.
    r = np.random.default_rng(4)
    X = np.vstack([r.normal(0, 1, (6, 2)), r.normal(8, 1, (5, 2)), [[30.0, -20.0]]])
    w = r.integers(1, 4, len(X)).astype(float)
    grid = np.array(list(itertools.product(X[:, 0], X[:, 1])))
    best = min(
        _objective(X, w, grid[list(p)])
        for p in itertools.combinations(range(len(grid)), 2)
    )
    res = k_medians(X, 2, sample_weight=w, random_state=0)
    assert res.inertia == pytest.approx(best, rel=1e-9)


def test_local_search_does_not_hurt_and_helps_with_outliers(outlier_points):
    X, w = outlier_points
    plain = [
        k_medians(X, 5, sample_weight=w, random_state=s, local_search=False).inertia
        for s in range(4)
    ]
    swap = [k_medians(X, 5, sample_weight=w, random_state=s).inertia for s in range(4)]
    assert all(b <= a * (1 + 1e-12) for a, b in zip(plain, swap, strict=True))
    assert min(swap) < min(plain) or max(swap) < max(plain)


def _spy_refine(monkeypatch) -> list[int]:
    """Record the rows of every Lloyd-and-swaps phase a fit runs."""
    rows = []
    real = km._refine

    def spy(eng, *args):
        rows.append(eng.n)
        return real(eng, *args)

    monkeypatch.setattr(km, "_refine", spy)
    return rows


def test_a_thin_sample_is_not_trusted(monkeypatch, rng):
    # When a few rows carry the weight, a row sample misses most of it: each
    # run then works on every point, as small inputs do.
    monkeypatch.setattr(km, "INIT_SAMPLE_SIZE", 600)
    rows_refined = _spy_refine(monkeypatch)
    X = rng.normal(0, 100.0, (3000, 2))
    w = np.zeros(len(X))
    w[rng.choice(len(X), 60, replace=False)] = rng.gamma(2.0, 1.0, 60)
    res = k_medians(X, 5, sample_weight=w, random_state=0)
    assert rows_refined == [len(X)] * 3
    assert res.inertia == pytest.approx(_objective(X, w, res.centers), rel=1e-12)


def test_large_inputs_run_on_samples_and_refine_the_best_on_every_point(
    monkeypatch, rng
):
    # Above INIT_SAMPLE_SIZE rows each run's Lloyd and swaps work on its sample
    # and only the best run is refined on every row: the returned centres are
    # then a Lloyd fixed point of *all* the points (a median step on their
    # clusters gains nothing), which the sample's solution alone is not.
    monkeypatch.setattr(km, "INIT_SAMPLE_SIZE", 600)
    rows_refined = _spy_refine(monkeypatch)
    X = np.vstack([rng.normal(c, 4.0, (600, 2)) for c in (0, 30, 60, 90, 120)])
    X[:, 1] += rng.normal(0, 20, len(X))
    w = rng.gamma(2.0, 1.0, len(X))
    res = k_medians(X, 5, sample_weight=w, tol=0.0, random_state=1)
    assert rows_refined == [600, 600, 600, len(X)]  # 3 runs on samples, 1 on all
    assert res.inertia == pytest.approx(_objective(X, w, res.centers), rel=1e-12)
    medians = np.array(
        [
            [kern.weighted_lower_median(X[res.labels == j, c], w[res.labels == j])
             for c in range(2)]
            for j in range(5)
        ]
    )  # fmt: skip
    assert _objective(X, w, medians) >= res.inertia * (1 - 1e-12)
    # The history is on every point: it starts at the best run's sample
    # solution and never rises.
    history = res.inertia_history
    assert history[-1] == pytest.approx(res.inertia, rel=1e-12)
    assert np.all(np.diff(history) <= 1e-9 * history[0])


# ---------------------------------------------------------------------------
# Corners
# ---------------------------------------------------------------------------


def test_fixed_centers_stay_fixed_and_count(outlier_points):
    X, w = outlier_points
    fixed = np.array([[0.0, 0.0], [10_000.0, 0.0]])
    est = KMedians(2, fixed_centers=fixed, random_state=0).fit(X, sample_weight=w)
    np.testing.assert_array_equal(est.fixed_centers_, fixed)
    assert est.cluster_centers_.shape == (2, 2)
    all_c = np.vstack([est.cluster_centers_, fixed])
    assert est.inertia_ == pytest.approx(_objective(X, w, all_c), rel=1e-12)
    # Points at the existing stations are served by them (labels >= n_clusters).
    lab = est.predict(fixed + 1.0)
    np.testing.assert_array_equal(lab, [2, 3])
    assert set(np.unique(est.labels_)) <= {0, 1, 2, 3}
    assert (est.labels_ >= 2).any()
    # The new sites go where the existing ones do not already serve demand.
    for c in est.cluster_centers_:
        assert np.abs(fixed - c).sum(axis=1).min() > 3_000
    assert est.transform(X).shape == (len(X), 4)
    # Fewer new sites are needed with existing ones: objective is lower than
    # the same 2 new sites without them.
    alone = KMedians(2, random_state=0).fit(X, sample_weight=w)
    assert est.inertia_ < alone.inertia_


def test_fixed_centers_dask(outlier_points):
    X, w = outlier_points
    fixed = np.array([[0.0, 0.0]])
    a = k_medians(X, 3, sample_weight=w, fixed_centers=fixed, random_state=2)
    Xd, wd = to_dask(X, w, "uneven")
    b = k_medians(Xd, 3, sample_weight=wd, fixed_centers=fixed, random_state=2)
    _assert_same(a, b)


def test_empty_cluster_is_reseeded(outlier_points):
    X, w = outlier_points
    # Two identical initial centres (one is necessarily empty) and one far
    # from every point (also empty).
    init = np.array([[0.0, 0.0], [0.0, 0.0], [1e7, 1e7], [10_000.0, 0.0]])
    for Xin, win in [(X, w), to_dask(X, w, "four")]:
        res = k_medians(Xin, 4, sample_weight=win, init=init, local_search=False)
        assert np.isfinite(res.centers).all()
        assert len({tuple(c) for c in res.centers}) == 4
        labels = np.asarray(res.labels)
        assert np.bincount(labels, minlength=4).min() > 0
        # Re-seeded centres sit on data points.
        gap = np.abs(res.centers[:, None] - X[None]).sum(axis=2).min(axis=1)
        assert gap.max() < 1e4


def test_reseeding_picks_the_most_costly_points():
    X = np.array([[0.0, 0.0], [1.0, 0.0], [100.0, 0.0], [50.0, 0.0]])
    w = np.array([1.0, 1.0, 1.0, 1.0])
    init = np.array([[0.0, 0.0], [-1e6, 0.0]])
    res = k_medians(X, 2, sample_weight=w, init=init, max_iter=1, local_search=False)
    # After one update the empty centre moved to the worst-served point.
    assert [100.0, 0.0] in res.centers.tolist()


def test_identical_points():
    X = np.repeat(np.array([[1.0, 2.0], [5.0, 5.0]]), 50, axis=0)
    res = k_medians(X, 2, random_state=0)
    assert sorted(res.centers.tolist()) == [[1.0, 2.0], [5.0, 5.0]]
    assert res.inertia == 0.0
    res1 = k_medians(X, 1, random_state=0)
    assert res1.inertia == pytest.approx(50 * 7.0)
    Xd = da.from_array(X, chunks=30)
    resd = k_medians(Xd, 2, random_state=0)
    np.testing.assert_array_equal(resd.centers, res.centers)
    with pytest.raises(
        ValueError,
        match=r"n_clusters=3 exceeds the number of "
        r"distinct points with positive weight \(2",
    ):
        k_medians(X, 3)


def test_zero_weight_points_equal_removed_points(outlier_points):
    X, w = outlier_points
    w0 = w.copy()
    w0[::3] = 0.0
    keep = w0 > 0
    a = k_medians(X, 4, sample_weight=w0, random_state=5)
    b = k_medians(X[keep], 4, sample_weight=w0[keep], random_state=5)
    np.testing.assert_allclose(a.centers, b.centers, rtol=1e-12)
    assert a.inertia == pytest.approx(b.inertia, rel=1e-12)


def test_weight_equals_repetition(outlier_points):
    X, w = outlier_points
    wi = (w % 3 + 1).astype(int)
    a = k_medians(X, 4, sample_weight=wi.astype(float), random_state=9)
    b = k_medians(np.repeat(X, wi, axis=0), 4, random_state=9)
    np.testing.assert_allclose(a.centers, b.centers, rtol=1e-12)
    assert a.inertia == pytest.approx(b.inertia, rel=1e-12)


def test_integer_and_pandas_input(outlier_points):
    pd = pytest.importorskip("pandas")
    X, w = outlier_points
    Xi = X.round().astype(np.int64)
    a = KMedians(3, random_state=0).fit(Xi)
    b = KMedians(3, random_state=0).fit(pd.DataFrame(Xi, columns=["x_m", "y_m"]))
    assert a.cluster_centers_.dtype == np.float64
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)


# ---------------------------------------------------------------------------
# Errors: one clear message each
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_clusters": 0}, r"n_clusters must be an integer >= 1, got 0"),
        ({"n_clusters": 2.5}, r"n_clusters must be an integer >= 1, got 2\.5"),
        ({"init": "kmeans"}, r"init must be 'k-medians\+\+', 'random' or an array"),
        (
            {"init": np.zeros((2, 2))},
            r"init array must have shape \(n_clusters, n_features\) = \(3, 2\), "
            r"got \(2, 2\)",
        ),
        ({"init": np.zeros((3, 3))}, r"= \(3, 2\), got \(3, 3\)"),
        (
            {"fixed_centers": np.zeros((2, 3))},
            r"fixed_centers must have shape \(n_fixed, n_features\) with "
            r"n_features=2, got shape \(2, 3\)",
        ),
        ({"fixed_centers": [[np.nan, 0.0]]}, r"fixed_centers must be finite"),
        ({"n_init": 0}, r"n_init must be 'auto' or an integer >= 1, got 0"),
        ({"max_iter": 0}, r"max_iter must be an integer >= 1, got 0"),
        ({"tol": -1.0}, r"tol must be a finite number >= 0, got -1\.0"),
        ({"n_swap_candidates": 0}, r"n_swap_candidates must be an integer >= 1"),
    ],
)
def test_parameter_errors(outlier_points, kwargs, match):
    X, _ = outlier_points
    params = {"n_clusters": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        KMedians(**params).fit(X)


def test_too_many_clusters():
    X = np.array([[0.0, 0.0], [1.0, 1.0], [1.0, 1.0], [2.0, 2.0]])
    with pytest.raises(
        ValueError,
        match=r"n_clusters=4 exceeds .* \(3, "
        r"n_samples=4\); expected n_clusters <= 3",
    ):
        k_medians(X, 4)
    # Zero-weight points do not count as places to put a site.
    with pytest.raises(ValueError, match=r"positive weight \(2"):
        k_medians(X, 3, sample_weight=[1.0, 1.0, 1.0, 0.0])
    with pytest.raises(ValueError, match=r"exceeds"):
        k_medians(da.from_array(X, chunks=2), 4)
    assert k_medians(X, 3).inertia == 0.0


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dask_input", [False, True])
def test_non_finite_coordinates(outlier_points, bad, dask_input):
    X, _ = outlier_points
    X = X.copy()
    X[123, 1] = bad
    Xin = da.from_array(X, chunks=50) if dask_input else X
    with pytest.raises(
        InputError,
        match=r"X must contain only finite coordinates "
        r"\(no NaN or inf\), got .* at sample index 123",
    ):
        k_medians(Xin, 3)


@pytest.mark.parametrize("dask_input", [False, True])
def test_weight_errors(outlier_points, dask_input):
    X, w = outlier_points
    n = len(X)

    def run(weights):
        if dask_input:
            return k_medians(
                da.from_array(X, chunks=40),
                3,
                sample_weight=da.from_array(weights, chunks=70),
            )
        return k_medians(X, 3, sample_weight=weights)

    neg = w.copy()
    neg[77] = -1.0
    with pytest.raises(
        InputError,
        match=r"sample_weight must be finite and >= 0, "
        r"got -1\.0 at sample index 77",
    ):
        run(neg)
    nanw = w.copy()
    nanw[5] = np.nan
    with pytest.raises(InputError, match=r"got nan at sample index 5"):
        run(nanw)
    with pytest.raises(
        ValueError,
        match=r"sample_weight must not be all zero: "
        r"expected a positive total weight, got 0\.0",
    ):
        run(np.zeros(n))
    with pytest.raises(
        ValueError,
        match=rf"sample_weight must have shape "
        rf"\(n_samples,\) = \({n},\), got \({n - 1},\)",
    ):
        run(w[:-1])


def test_dask_input_errors():
    X = da.ones((10, 2), chunks=5)
    unknown = X[X[:, 0] > 0]
    with pytest.raises(ValueError, match=r"unknown chunk sizes"):
        k_medians(unknown, 1)
    with pytest.raises(ValueError, match=r"X must be 2-D"):
        k_medians(da.ones(10, chunks=5), 1)


def test_predict_checks_features(outlier_points):
    X, _ = outlier_points
    est = KMedians(3, random_state=0).fit(X)
    with pytest.raises(ValueError, match=r"3 features"):
        est.predict(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"3 features"):
        est.predict(da.zeros((2, 3), chunks=1))


# ---------------------------------------------------------------------------
# scikit-learn conformance (NumPy path)
# ---------------------------------------------------------------------------


def _expected_failed_checks(estimator):
    failed = {
        # The check shuffles the repeated data set. Our initialisation draws
        # one uniform per centre through the cumulative weights, which makes
        # weight 3 exactly equivalent to 3 consecutive copies (tested above in
        # test_weight_equals_repetition) but, like scikit-learn's own KMeans,
        # not to copies in shuffled order.
        "check_sample_weight_equivalence_on_dense_data": (
            "random init depends on row order; equivalence holds for ordered "
            "repeats (test_weight_equals_repetition)"
        ),
    }
    if estimator.n_clusters > 4:
        # These checks fit on 4 distinct points; issue 3 requires a ValueError
        # when n_clusters exceeds the number of distinct points (scikit-learn's
        # KMeans only warns). The n_clusters=3 instance runs them and passes.
        for name in (
            "check_sample_weights_shape",
            "check_sample_weights_not_overwritten",
        ):
            failed[name] = "n_clusters=8 > 4 distinct points must raise"
    return failed


@parametrize_with_checks(
    [KMedians(), KMedians(n_clusters=3, init="random", n_init=2)],
    expected_failed_checks=_expected_failed_checks,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


@pytest.mark.cluster
@pytest.mark.slow
def test_dask_path_on_a_real_local_cluster(outlier_points, cluster_client):
    # Worker processes: every per-chunk function and combine step must pickle
    # and run away from the client, and still give the in-memory answer.
    X, w = outlier_points
    # One run, few passes: each compute round-trips through the scheduler.
    kw = dict(n_init=1, n_swap_candidates=10, random_state=11)
    r_np = k_medians(X, 4, sample_weight=w, **kw)
    Xd, wd = to_dask(X, w, "uneven")
    est = KMedians(4, **kw).fit(Xd, sample_weight=wd)
    labels = est.labels_.compute()
    np.testing.assert_allclose(est.cluster_centers_, r_np.centers, rtol=1e-6)
    assert est.inertia_ == pytest.approx(r_np.inertia, rel=1e-12)
    np.testing.assert_array_equal(labels, r_np.labels)


@pytest.mark.parametrize("module", [km, kern])
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0


def test_dask_dataframe_input(outlier_points):
    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    X, w = outlier_points
    ddf = dd.from_pandas(pd.DataFrame(X, columns=["x_m", "y_m"]), npartitions=3)
    a = KMedians(3, random_state=0).fit(X)
    b = KMedians(3, random_state=0).fit(ddf)
    np.testing.assert_allclose(b.cluster_centers_, a.cluster_centers_, rtol=1e-6)
    assert b.inertia_ == pytest.approx(a.inertia_, rel=1e-12)


def test_threaded_use_with_numba_workqueue_layer(tmp_path):
    # numba's fallback threading layer aborts the whole process when two
    # threads launch parallel kernels at once; Dask's threaded scheduler and
    # threaded servers do exactly that, so the kernels must take turns.
    import os
    import subprocess
    import sys

    script = tmp_path / "threads.py"
    script.write_text(
        "import numpy as np, dask, dask.array as da\n"
        "from concurrent.futures import ThreadPoolExecutor\n"
        "from evplanner import _kernels\n"
        "from evplanner.kmedians import KMedians, k_medians\n"
        # Small inputs run serial kernels; force the parallel ones here.
        "_kernels.SERIAL_MAX_ROWS = 0\n"
        "X = np.random.default_rng(0).normal(size=(40_000, 2))\n"
        "with dask.config.set(scheduler='threads', num_workers=4):\n"
        "    k_medians(da.from_array(X, chunks=5_000), 4, n_init=1,\n"
        "              n_swap_candidates=10)\n"
        "with ThreadPoolExecutor(3) as ex:\n"
        "    list(ex.map(lambda s: KMedians(4, n_init=1, random_state=s).fit(X),\n"
        "                range(3)))\n"
        "import numba\n"
        "print(numba.threading_layer())\n"
    )
    env = {**os.environ, "NUMBA_THREADING_LAYER": "workqueue"}
    out = subprocess.run(
        [sys.executable, str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "workqueue"


@pytest.mark.parametrize("local_search", [False, True])
def test_final_labels_are_those_of_the_final_centres(outlier_points, local_search):
    # The in-memory fit returns the labels its last assignment computed
    # instead of searching again; they must still be those of a fresh search
    # for the returned centres, also after re-seeding and swaps.
    X, w = outlier_points
    fixed = np.array([[5_000.0, 5_000.0]])
    inits = [
        np.array([[0.0, 0.0], [0.0, 0.0], [1e7, 1e7], [10_000.0, 0.0]]),
        "k-medians++",
    ]
    for init in inits:
        res = k_medians(
            X,
            4,
            sample_weight=w,
            fixed_centers=fixed,
            init=init,
            local_search=local_search,
            random_state=3,
        )
        fresh, dist = kern.assign_l1(X, np.vstack([res.centers, fixed]))
        np.testing.assert_array_equal(res.labels, fresh)
        assert res.inertia == pytest.approx(float(np.sum(w * dist)), rel=1e-12)


def test_serial_and_parallel_kernels_agree(monkeypatch, rng):
    # Small inputs run the single-threaded compilation of each kernel; it
    # must give bit-identical results to the parallel one.
    n, k = 3_000, 12
    X = np.vstack(
        [
            rng.normal(c, 700.0, size=(n // 3, 2))
            for c in ([0.0, 0.0], [8_000.0, 1_000.0], [2_000.0, 9_000.0])
        ]
    )
    w = rng.integers(1, 6, size=X.shape[0]).astype(float)
    C = X[rng.choice(X.shape[0], k, replace=False)]
    C2 = C + rng.normal(0, 300.0, size=C.shape)
    cands = X[rng.choice(X.shape[0], 40, replace=False)]

    def everything():
        labels, d1, d2 = kern.assign2_l1(X, C)
        med = kern.cluster_lower_medians(X, w, labels, k, k - 2)
        bounded = kern.assign_bounded(X, C2, C, labels, d2)
        swaps = kern.swap_costs(X, w, labels, d1, d2, cands, k - 2)
        fit = k_medians(
            X, 5, sample_weight=w, n_init=2, n_swap_candidates=30, random_state=1
        )
        return [
            *kern.assign_l1(X, C),
            labels,
            d1,
            d2,
            *med,
            *bounded,
            *swaps,
            kern.l1_distances(X, C),
            fit.centers,
            fit.labels,
            np.array([fit.inertia]),
        ]

    monkeypatch.setattr(kern, "SERIAL_MAX_ROWS", 0)
    parallel = everything()
    monkeypatch.setattr(kern, "SERIAL_MAX_ROWS", 10**9)
    serial = everything()
    for a, b in zip(parallel, serial, strict=True):
        np.testing.assert_array_equal(a, b)


def test_small_inputs_use_the_serial_kernels(monkeypatch, outlier_points):
    # Below the row threshold no parallel kernel is launched at all.
    X, w = outlier_points
    calls = []
    for name in (
        "_assign_l1",
        "_assign2_l1",
        "_assign_bounded",
        "_cluster_lower_medians",
        "_swap_costs",
        "_l1_distances",
    ):
        kernel = getattr(kern, name)
        monkeypatch.setattr(kernel, "parallel", lambda *a, _n=name: calls.append(_n))
    k_medians(X, 4, sample_weight=w, random_state=0)
    assert X.shape[0] < kern.SERIAL_MAX_ROWS
    assert calls == []


@pytest.mark.parametrize("k", [1, 2, 3, 12])
def test_plain_search_bound_and_bounded_assignment_are_exact(rng, k):
    # The plain search's lower bound lies between the nearest and the exact
    # second-nearest distance; the bounded assignment, whatever bounds it is
    # given (exact or plain) and however far some centres jump, returns the
    # labels and distances of a full search.
    X = np.round(rng.normal(0, 1_000.0, size=(4_000, 2)), -2)  # many ties
    C = X[rng.choice(X.shape[0], k, replace=False)]
    D = np.abs(X[:, None, :] - C[None, :, :]).sum(axis=2)
    true_second = np.sort(D, axis=1)[:, 1] if k > 1 else np.full(len(X), np.inf)
    labels, d1, bound = kern.assign2_l1(X, C, exact=False)
    exact = kern.assign2_l1(X, C)
    np.testing.assert_array_equal(labels, exact[0])
    np.testing.assert_array_equal(d1, exact[1])
    np.testing.assert_array_equal(exact[2], true_second)
    assert np.all(bound >= d1) and np.all(bound <= true_second)
    if k > 2:
        assert np.mean(bound < true_second) > 0  # really a different bound
    C2 = C + rng.normal(0, 150.0, size=C.shape)
    C2[0] += 5_000.0  # one far jump (a swap or re-seed)
    ref = kern.assign_l1(X, C2)
    for lower in (bound, exact[2]):
        for flag in (True, False):
            lab2, dist2, low2, kept = kern.assign_bounded(
                X, C2, C, labels, lower, exact=flag, return_kept=True
            )
            np.testing.assert_array_equal(lab2, ref[0])
            np.testing.assert_array_equal(dist2, ref[1])
            D2 = np.abs(X[:, None, :] - C2[None, :, :]).sum(axis=2)
            D2[np.arange(len(X)), lab2] = np.inf
            assert np.all(low2 <= D2.min(axis=1) * (1 + 1e-12))
    if k > 2:
        assert kept.any()


def test_assignment_policy_is_exact_on_large_inputs(rng):
    # Above the policy's row threshold the engine chooses between bounded and
    # plain searches from a sample; every choice must give the labels of a
    # full search, and the fit must match one with the choices disabled.
    n = km._POLICY_MIN_ROWS + 5_000
    X = np.vstack(
        [
            rng.normal(c, 900.0, size=(n // 4, 2))
            for c in ([0, 0], [9_000, 0], [0, 9_000], [40_000, 40_000])
        ]
    )
    C = X[rng.choice(X.shape[0], 20, replace=False)]
    prev = None
    for _ in range(5):
        labels, dist, lower = km._assign_carrying(X, C, prev)
        ref = kern.assign_l1(X, C)
        np.testing.assert_array_equal(labels, ref[0])
        np.testing.assert_array_equal(dist, ref[1])
        prev = (C.copy(), labels, lower)
        med, _ = kern.cluster_lower_medians(X, np.ones(len(X)), labels, 20, 20)
        C = np.where(np.isnan(med), C, med)
