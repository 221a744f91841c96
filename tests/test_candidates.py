"""Tests for sites among candidates: KMedians(candidates=...) and its kernels."""

from __future__ import annotations

import doctest
import itertools

import dask.array as da
import numpy as np
import pytest
from sklearn.base import clone

from evplanner import _discrete
from evplanner import _discrete_kernels as dk
from evplanner.errors import InputError
from evplanner.kmedians import KMedians, k_medians
from tests.chunking import CHUNKINGS, to_dask

# Real Dask scheduling (threads), no process start-up cost per test.
pytestmark = pytest.mark.usefixtures("dask_threads")


def _cost(X, w, sites):
    return float(np.sum(w * np.abs(X[:, None] - sites[None]).sum(2).min(1)))


def _brute_force(X, w, C, F, k):
    best = None
    for S in itertools.combinations(range(C.shape[0]), k):
        obj = _cost(X, w, np.vstack([C[list(S)], F]))
        if best is None or obj < best[0]:
            best = (obj, S)
    return best


@pytest.fixture
def instance(clustered_points, rng):
    """300 weighted points, 60 candidates around them, 2 existing sites."""
    X, w = clustered_points
    C = X[rng.choice(X.shape[0], 60, replace=False)] + rng.normal(0, 300, (60, 2))
    F = np.array([[0.0, 0.0], [9_000.0, 9_000.0]])
    return X, w, C, F


# ---------------------------------------------------------------------------
# Kernels: the swap gains are exact
# ---------------------------------------------------------------------------


def _quanta(X, w, sites, qinv):
    d = np.abs(X[:, None] - sites[None]).sum(2).min(1)
    return int(np.rint(w * d * qinv).astype(np.int64).sum())


@pytest.mark.parametrize("seed", range(12))
def test_pmedian_swap_gains_are_exact(seed):
    # Integer coordinates: many distance ties; zero weights; 0-2 fixed sites.
    r = np.random.default_rng(seed)
    X = r.integers(0, 10, size=(80, 2)).astype(float)
    w = r.integers(0, 4, 80).astype(float)
    w[0] = 1.0
    C = r.integers(0, 10, size=(15, 2)).astype(float)
    F = r.integers(0, 10, size=(seed % 3, 2)).astype(float)
    k = 1 + seed % 4
    open_idx = list(r.choice(15, k, replace=False))
    eng = _discrete._NumpyEngine(X, w)
    s = _discrete._summary(eng)
    ext = _discrete._joint_extent(s, C, F)
    qinv = dk.quantum_inverse(s["wmax"] * ext, 80)
    sentinel = int(np.ceil(s["wmax"] * ext * qinv)) + 2
    prob = _discrete._Problem(
        eng, _discrete._block_pmedian, (qinv, sentinel), C, F, np.arange(15), -1
    )
    tot = prob.evaluate(open_idx)
    assert tot.obj == _quanta(X, w, prob.sites(open_idx), qinv)
    extra = dict(zip(tot.keys.tolist(), tot.extra.tolist(), strict=True))
    for c in sorted(set(range(15)) - set(open_idx)):
        grown = np.vstack([prob.sites(open_idx), C[c]])
        assert tot.gain[c] == tot.obj - _quanta(X, w, grown, qinv)
        for j in range(k):
            new = list(open_idx)
            new[j] = c
            predicted = tot.gain[c] - tot.loss[j] + extra.get(c * k + j, 0)
            assert predicted == tot.obj - _quanta(X, w, prob.sites(new), qinv)


def test_quantum_is_a_power_of_two_with_headroom():
    qinv = dk.quantum_inverse(123.4, 1_000_000)
    assert np.frexp(qinv)[0] == 0.5
    assert 123.4 * 1_000_000 * qinv <= 2.0**60
    assert dk.quantum_inverse(0.0, 10) == 1.0


def test_nearest_candidate_matches_brute_force(rng):
    C = rng.integers(0, 50, size=(300, 2)).astype(float)
    X = rng.uniform(-20, 70, size=(500, 2))
    D = np.abs(X[:, None] - C[None]).sum(2)
    np.testing.assert_array_equal(
        dk.nearest_candidate(X, dk.build_grid(C)), D.argmin(axis=1)
    )


def test_grid_on_degenerate_candidates():
    # All candidates on one line, or one point: the grid still finds them.
    X = np.array([[0.0, 0.0], [5.0, 3.0]])
    for C in (
        np.array([[1.0, 2.0], [1.0, 2.0]]),
        np.array([[0.0, 1.0], [0.0, 4.0], [0.0, 9.0]]),
    ):
        D = np.abs(X[:, None] - C[None]).sum(2)
        got = dk.nearest_candidate(X, dk.build_grid(C))
        np.testing.assert_array_equal(got, D.argmin(axis=1))


# ---------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------


def test_sites_are_candidates(instance):
    X, w, C, F = instance
    km = KMedians(6, candidates=C, fixed_centers=F, random_state=0).fit(
        X, sample_weight=w
    )
    idx = km.center_indices_
    assert idx.dtype == np.int64 and idx.shape == (6,)
    assert np.unique(idx).shape == (6,) and (np.diff(idx) > 0).all()
    assert ((0 <= idx) & (idx < C.shape[0])).all()
    np.testing.assert_array_equal(km.cluster_centers_, C[idx])
    # Objective, labels and history describe these sites, fixed ones included.
    sites = np.vstack([C[idx], F])
    assert km.inertia_ == pytest.approx(_cost(X, w, sites), rel=1e-12)
    D = np.abs(X[:, None] - sites[None]).sum(2)
    np.testing.assert_array_equal(km.labels_, D.argmin(axis=1))
    assert km.inertia_history_[-1] == pytest.approx(km.inertia_, rel=1e-12)
    # Swaps lower it; a round of iterated local search may also move along a
    # plateau (equal objective), and one accepted round can hold several swaps.
    assert (np.diff(km.inertia_history_) <= 0).all()
    assert km.inertia_history_[0] > km.inertia_
    assert km.n_iter_ >= km.inertia_history_.shape[0] - 1


def test_result_is_swap_optimal(instance):
    # The local search stops only when no single swap lowers the objective by
    # more than tol (0 here): check every swap by brute force.
    X, w, C, F = instance
    res = k_medians(
        X, 4, sample_weight=w, candidates=C, fixed_centers=F, tol=0.0, random_state=0
    )
    idx = list(res.center_indices)
    base = _cost(X, w, np.vstack([C[idx], F]))
    for c in sorted(set(range(C.shape[0])) - set(idx)):
        for j in range(4):
            new = list(idx)
            new[j] = c
            assert _cost(X, w, np.vstack([C[new], F])) >= base * (1 - 1e-12)


def test_reaches_brute_force_optimum_on_tiny_instances():
    ratios = []
    for seed in range(25):
        r = np.random.default_rng(seed)
        X = r.normal(size=(60, 2)) * 10
        w = r.integers(1, 5, 60).astype(float)
        C = r.normal(size=(12, 2)) * 10
        F = r.normal(size=(seed % 3, 2)) * 10
        k = 1 + seed % 3
        res = k_medians(
            X,
            k,
            sample_weight=w,
            candidates=C,
            fixed_centers=F,
            tol=0.0,
            n_init=3,
            random_state=0,
        )
        opt, _ = _brute_force(X, w, C, F, k)
        assert res.inertia >= opt * (1 - 1e-12)
        ratios.append(res.inertia / opt)
    ratios = np.array(ratios)
    assert (ratios <= 1 + 1e-9).mean() >= 0.9
    assert ratios.max() <= 1.01


def test_fixed_sites_are_honoured(rng):
    # Two demand clusters; an existing site sits on one: the single new site
    # goes to the other, although alone it would be placed in the heavier one.
    X = np.vstack([rng.normal(0, 1, (50, 2)), rng.normal(100, 1, (30, 2))])
    C = np.array([[0.0, 0.0], [100.0, 100.0], [50.0, 50.0]])
    alone = KMedians(1, candidates=C, random_state=0).fit(X)
    assert alone.center_indices_.tolist() == [0]
    km = KMedians(1, candidates=C, fixed_centers=[[0.0, 0.0]], random_state=0).fit(X)
    assert km.center_indices_.tolist() == [1]
    assert set(km.labels_[:50].tolist()) == {1}
    assert set(km.labels_[50:].tolist()) == {0}


@pytest.mark.parametrize("how", CHUNKINGS)
@pytest.mark.parametrize("with_fixed", [False, True])
def test_numpy_and_dask_choose_the_same_sites(instance, how, with_fixed):
    X, w, C, F = instance
    kw = dict(
        candidates=C, fixed_centers=F if with_fixed else None, n_init=2, random_state=5
    )
    a = KMedians(5, **kw).fit(X, sample_weight=w)
    Xd, wd = to_dask(X, w, how)
    b = KMedians(5, **kw).fit(Xd, sample_weight=wd)
    np.testing.assert_array_equal(b.center_indices_, a.center_indices_)
    np.testing.assert_array_equal(b.cluster_centers_, a.cluster_centers_)
    assert b.n_iter_ == a.n_iter_
    assert b.inertia_ == pytest.approx(a.inertia_, rel=1e-12)
    np.testing.assert_allclose(b.inertia_history_, a.inertia_history_, rtol=1e-12)
    np.testing.assert_array_equal(b.labels_.compute(), a.labels_)


@pytest.mark.parametrize("how", CHUNKINGS)
def test_numpy_and_dask_agree_on_the_sampled_start(monkeypatch, rng, how):
    # Inputs above the greedy sample size start from a sample of rows drawn
    # from n and the seed only; ties everywhere (integer grid, float weights).
    monkeypatch.setattr(_discrete, "GREEDY_SAMPLE_SIZE", 100)
    X = rng.integers(0, 40, size=(700, 2)).astype(float)
    w = rng.gamma(2.0, 1.0, 700)
    C = rng.integers(0, 40, size=(80, 2)).astype(float)
    kw = dict(
        candidates=C,
        fixed_centers=[[20.0, 20.0]],
        random_state=3,
        n_init=2,
        init="k-medians++",
    )
    a = k_medians(X, 6, sample_weight=w, **kw)
    Xd, wd = to_dask(X, w, how)
    b = k_medians(Xd, 6, sample_weight=wd, **kw)
    np.testing.assert_array_equal(b.center_indices, a.center_indices)
    assert b.inertia == pytest.approx(a.inertia, rel=1e-12)


@pytest.mark.parametrize("init", ["random", "array"])
def test_other_starts(instance, init):
    X, w, C, F = instance
    start = C[[3, 3, 10]] + 1.0 if init == "array" else init
    km = KMedians(3, candidates=C, init=start, local_search=False, random_state=0).fit(
        X, sample_weight=w
    )
    assert np.unique(km.center_indices_).shape == (3,)
    if init == "array":
        # Rows snap to their nearest candidates; the duplicate is completed
        # greedily, and without local search the snapped sites stay.
        assert {3, 10} <= set(km.center_indices_.tolist())
        assert km.n_iter_ == 0


def test_more_starts_never_hurt(instance):
    X, w, C, F = instance
    one = k_medians(X, 5, sample_weight=w, candidates=C, n_init=1, random_state=2)
    four = k_medians(X, 5, sample_weight=w, candidates=C, n_init=4, random_state=2)
    assert four.inertia <= one.inertia * (1 + 1e-12)


def test_three_features_and_duplicate_candidates(rng):
    X = rng.normal(size=(200, 3))
    C = np.vstack([rng.normal(size=(20, 3))] * 2)
    km = KMedians(4, candidates=C, random_state=0).fit(X)
    assert np.unique(km.center_indices_).shape == (4,)
    assert km.inertia_ == pytest.approx(_cost(X, np.ones(200), km.cluster_centers_))


def test_as_many_sites_as_candidates(instance):
    X, w, C, F = instance
    km = KMedians(5, candidates=C[:5], random_state=0).fit(X, sample_weight=w)
    assert km.center_indices_.tolist() == [0, 1, 2, 3, 4]


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "candidates, n, error, match",
    [
        (np.empty((0, 2)), 1, ValueError, "at least one site, got 0"),
        (
            np.zeros((3, 2)),
            4,
            ValueError,
            r"n_clusters=4 exceeds the number of "
            r"candidates \(3\)",
        ),
        (np.zeros((5, 3)), 2, ValueError, r"n_features=2.*got shape \(5, 3\)"),
        (np.zeros(5), 2, ValueError, r"got shape \(5,\)"),
        (
            [[0.0, 1.0], [np.nan, 2.0]],
            1,
            InputError,
            r"finite.*\[nan, 2.0\] at candidate index 1",
        ),
        ([[0.0, np.inf]], 1, InputError, "candidate index 0"),
        ([["a", "b"]], 1, ValueError, "candidates must be numbers"),
    ],
)
def test_bad_candidates(instance, candidates, n, error, match):
    X, w, _, _ = instance
    with pytest.raises(error, match=match):
        KMedians(n, candidates=candidates).fit(X, sample_weight=w)


@pytest.mark.parametrize("dask_input", [False, True])
def test_bad_demand_with_candidates(instance, dask_input):
    X, w, C, _ = instance
    X = X.copy()
    X[17, 1] = np.nan
    Xin = da.from_array(X, chunks=(100, 2)) if dask_input else X
    with pytest.raises(InputError, match="sample index 17"):
        k_medians(Xin, 3, sample_weight=w, candidates=C)
    w = w.copy()
    w[250] = -1.0
    X[17, 1] = 0.0
    Xin = da.from_array(X, chunks=(100, 2)) if dask_input else X
    with pytest.raises(InputError, match=r"-1.0 at sample index 250"):
        k_medians(Xin, 3, sample_weight=w, candidates=C)
    with pytest.raises(ValueError, match="all zero"):
        k_medians(Xin, 3, sample_weight=np.zeros_like(w), candidates=C)


def test_dask_candidates_are_accepted(instance):
    X, w, C, _ = instance
    a = KMedians(3, candidates=C, random_state=0).fit(X, sample_weight=w)
    b = KMedians(3, candidates=da.from_array(C, chunks=20), random_state=0).fit(
        X, sample_weight=w
    )
    np.testing.assert_array_equal(a.center_indices_, b.center_indices_)


# ---------------------------------------------------------------------------
# scikit-learn conventions
# ---------------------------------------------------------------------------


def test_estimator_conventions(instance):
    X, w, C, F = instance
    km = KMedians(3, candidates=C, fixed_centers=F, random_state=0)
    assert km.get_params()["candidates"] is C
    twin = clone(km)
    np.testing.assert_array_equal(twin.candidates, C)
    assert km.fit(X, sample_weight=w) is km
    assert not hasattr(twin, "center_indices_")
    np.testing.assert_array_equal(km.predict(X), km.labels_)
    assert km.score(X, sample_weight=w) == pytest.approx(-km.inertia_, rel=1e-12)
    # Refitting without candidates clears the indices.
    km.set_params(candidates=None).fit(X, sample_weight=w)
    assert km.center_indices_ is None


def test_docstring_examples():
    for module in (_discrete, dk):
        assert doctest.testmod(module).failed == 0


@pytest.mark.cluster
@pytest.mark.slow
def test_candidates_on_a_real_local_cluster(instance, cluster_client):
    X, w, C, F = instance
    kw = dict(candidates=C, fixed_centers=F, random_state=1)
    ref = KMedians(4, **kw).fit(X, sample_weight=w)
    Xd, wd = to_dask(X, w, "uneven")
    est = KMedians(4, **kw).fit(Xd, sample_weight=wd)
    labels = est.labels_.compute()
    np.testing.assert_array_equal(est.center_indices_, ref.center_indices_)
    np.testing.assert_array_equal(labels, ref.labels_)


# ---------------------------------------------------------------------------
# GeoDataFrames: the CRS must match
# ---------------------------------------------------------------------------


@pytest.fixture
def frames(instance):
    gpd = pytest.importorskip("geopandas")
    X, w, C, F = instance
    demand = gpd.GeoDataFrame(
        {"ev": w}, geometry=gpd.points_from_xy(X[:, 0], X[:, 1]), crs=32610
    )
    cands = gpd.GeoDataFrame(geometry=gpd.points_from_xy(C[:, 0], C[:, 1]), crs=32610)
    fixed = gpd.GeoDataFrame(geometry=gpd.points_from_xy(F[:, 0], F[:, 1]), crs=32610)
    return demand, cands, fixed


def test_geodataframes_feed_both_models(instance, frames):
    from evplanner import MaxCoverage, arrays_from_geodataframes

    X, w, C, F = instance
    Xg, wg, Cg, Fg = arrays_from_geodataframes(*frames, weight="ev")
    np.testing.assert_array_equal(Xg, X)
    np.testing.assert_array_equal(wg, w)
    np.testing.assert_array_equal(Cg, C)
    np.testing.assert_array_equal(Fg, F)
    km = KMedians(3, candidates=Cg, fixed_centers=Fg, random_state=0)
    assert km.fit(Xg, sample_weight=wg).center_indices_.shape == (3,)
    mc = MaxCoverage(3, 1_000.0, Cg, fixed_centers=Fg, random_state=0)
    assert mc.fit(Xg, sample_weight=wg).center_indices_.shape == (3,)


def test_geodataframes_wrong_crs(frames):
    from evplanner import arrays_from_geodataframes

    demand, cands, fixed = frames
    with pytest.raises(
        ValueError, match="candidates has CRS EPSG:32611 but demand has EPSG:32610"
    ):
        arrays_from_geodataframes(demand, cands.set_crs(32611, allow_override=True))
    with pytest.raises(ValueError, match="fixed has CRS EPSG:4326"):
        arrays_from_geodataframes(demand, cands, fixed.to_crs(4326))
    with pytest.raises(ValueError, match="candidates has no CRS"):
        arrays_from_geodataframes(demand, cands.set_crs(None, allow_override=True))
    with pytest.raises(ValueError, match="must be projected"):
        arrays_from_geodataframes(demand.to_crs(4326), cands.to_crs(4326))
    with pytest.raises(ValueError, match="weight column 'vehicles' not in demand"):
        arrays_from_geodataframes(demand, cands, weight="vehicles")
    lines = cands.copy()
    lines.geometry = lines.buffer(1.0)
    with pytest.raises(ValueError, match="candidates must hold Point geometries"):
        arrays_from_geodataframes(demand, lines)


def test_geoframes_docstring_examples():
    pytest.importorskip("geopandas")
    from evplanner import geoframes

    result = doctest.testmod(geoframes, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
