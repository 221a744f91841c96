"""Tests for the maximal covering model (evplanner.max_coverage)."""

from __future__ import annotations

import doctest
import itertools

import dask.array as da
import numpy as np
import pytest
from sklearn.base import clone

from evplanner import MaxCoverage, _discrete, max_coverage
from evplanner import _discrete_kernels as dk
from evplanner.errors import InputError
from tests.chunking import CHUNKINGS, to_dask

# Real Dask scheduling (threads), no process start-up cost per test.
pytestmark = pytest.mark.usefixtures("dask_threads")


def _covered(X, w, sites, radius):
    if sites.shape[0] == 0:
        return 0.0
    d = np.abs(X[:, None] - sites[None]).sum(2).min(1)
    return float(w[d <= radius].sum())


@pytest.fixture
def instance(clustered_points, rng):
    X, w = clustered_points
    C = X[rng.choice(X.shape[0], 60, replace=False)] + rng.normal(0, 500, (60, 2))
    F = np.array([[0.0, 0.0]])
    return X, w, C, F


@pytest.mark.parametrize("seed", range(10))
def test_coverage_swap_gains_are_exact(seed):
    r = np.random.default_rng(seed)
    X = r.integers(0, 10, size=(80, 2)).astype(float)
    w = r.integers(0, 4, 80).astype(float)
    w[0] = 1.0
    C = r.integers(0, 10, size=(15, 2)).astype(float)
    F = r.integers(0, 10, size=(seed % 3, 2)).astype(float)
    k = 1 + seed % 4
    radius = float(1 + seed % 4)
    open_idx = list(r.choice(15, k, replace=False))
    eng = _discrete._NumpyEngine(X, w)
    qinv = dk.quantum_inverse(float(w.max()), 80)
    wq = np.rint(w * qinv)
    prob = _discrete._Problem(
        eng, _discrete._block_coverage, (qinv, radius), C, F, np.arange(15), 1
    )
    tot = prob.evaluate(open_idx)
    assert tot.obj == _covered(X, wq, prob.sites(open_idx), radius)
    extra = dict(zip(tot.keys.tolist(), tot.extra.tolist(), strict=True))
    for c in sorted(set(range(15)) - set(open_idx)):
        grown = np.vstack([prob.sites(open_idx), C[c]])
        assert tot.gain[c] == _covered(X, wq, grown, radius) - tot.obj
        for j in range(k):
            new = list(open_idx)
            new[j] = c
            predicted = tot.gain[c] - tot.loss[j] + extra.get(c * k + j, 0)
            assert predicted == _covered(X, wq, prob.sites(new), radius) - tot.obj


def test_fitted_attributes(instance):
    X, w, C, F = instance
    mc = MaxCoverage(3, 1_500.0, C, fixed_centers=F, random_state=0)
    assert mc.fit(X, sample_weight=w) is mc
    idx = mc.center_indices_
    assert idx.dtype == np.int64 and np.unique(idx).shape == (3,)
    assert ((0 <= idx) & (idx < C.shape[0])).all()
    np.testing.assert_array_equal(mc.cluster_centers_, C[idx])
    sites = np.vstack([C[idx], F])
    assert mc.covered_weight_ == pytest.approx(_covered(X, w, sites, 1_500.0))
    assert mc.coverage_share_ == pytest.approx(mc.covered_weight_ / w.sum())
    D = np.abs(X[:, None] - sites[None]).sum(2)
    np.testing.assert_array_equal(mc.labels_, D.argmin(axis=1))
    assert (np.diff(mc.history_) >= 0).all()
    assert mc.history_[-1] == pytest.approx(mc.covered_weight_)
    assert mc.n_features_in_ == 2


def test_result_is_swap_optimal(instance):
    X, w, C, F = instance
    mc = MaxCoverage(4, 1_200.0, C, fixed_centers=F, random_state=1).fit(
        X, sample_weight=w
    )
    idx = list(mc.center_indices_)
    base = _covered(X, w, np.vstack([C[idx], F]), 1_200.0)
    for c in sorted(set(range(C.shape[0])) - set(idx)):
        for j in range(4):
            new = list(idx)
            new[j] = c
            assert _covered(X, w, np.vstack([C[new], F]), 1_200.0) <= base


def test_reaches_brute_force_optimum_on_tiny_instances():
    ratios = []
    for seed in range(25):
        r = np.random.default_rng(seed)
        X = r.normal(size=(60, 2)) * 10
        w = r.integers(1, 5, 60).astype(float)
        C = r.normal(size=(12, 2)) * 10
        F = r.normal(size=(seed % 3, 2)) * 10
        k = 1 + seed % 3
        radius = 5.0 + seed % 4
        mc = MaxCoverage(k, radius, C, fixed_centers=F, random_state=0).fit(
            X, sample_weight=w
        )
        opt = max(
            _covered(X, w, np.vstack([C[list(S)], F]), radius)
            for S in itertools.combinations(range(12), k)
        )
        assert mc.covered_weight_ <= opt
        ratios.append(mc.covered_weight_ / opt)
    ratios = np.array(ratios)
    assert (ratios == 1.0).mean() >= 0.9
    assert ratios.min() >= 0.95


def test_existing_sites_count_as_covering(rng):
    X = np.vstack([rng.normal(0, 1, (50, 2)), rng.normal(100, 1, (30, 2))])
    C = np.array([[0.0, 0.0], [100.0, 100.0]])
    alone = MaxCoverage(1, 5.0, C, random_state=0).fit(X)
    assert alone.center_indices_.tolist() == [0]
    mc = MaxCoverage(1, 5.0, C, fixed_centers=[[0.0, 0.0]], random_state=0).fit(X)
    assert mc.center_indices_.tolist() == [1]
    assert mc.coverage_share_ == pytest.approx(1.0)


def test_radius_is_inclusive_and_zero_works():
    X = np.array([[0.0, 0.0], [3.0, 0.0], [10.0, 0.0]])
    C = np.array([[1.0, 1.0], [10.0, 0.0]])
    mc = MaxCoverage(1, 3.0, C, random_state=0).fit(X)
    # Candidate 0 reaches both of the first points at exactly 2 and 3.
    assert mc.center_indices_.tolist() == [0] and mc.covered_weight_ == 2.0
    zero = MaxCoverage(1, 0.0, C, random_state=0).fit(X)
    assert zero.center_indices_.tolist() == [1] and zero.covered_weight_ == 1.0


def _fit_both_paths(monkeypatch, *args, X, w, **kwargs):
    """MaxCoverage on the stored pairs, then with no memory for them (passes)."""
    built = []
    build = _discrete._CoverageIncidence.build

    def spy(*a):
        built.append(build(*a))
        return built[-1]

    with monkeypatch.context() as mp:
        mp.setattr(_discrete._CoverageIncidence, "build", spy)
        stored = MaxCoverage(*args, **kwargs).fit(X, sample_weight=w)
    assert len(built) == 1 and built[0] is not None
    with monkeypatch.context() as mp:
        mp.setattr(_discrete, "COVERAGE_PAIRS_BYTES", 0)
        passes = MaxCoverage(*args, **kwargs).fit(X, sample_weight=w)
    return stored, passes


@pytest.mark.parametrize("seed", range(12))
def test_stored_pairs_and_passes_make_the_same_search(monkeypatch, seed):
    # Integer coordinates: ties and points exactly at the radius are common,
    # the cases where two implementations would part ways first.
    r = np.random.default_rng(seed)
    X = r.integers(0, 40, size=(300, 2)).astype(float)
    w = r.integers(0, 4, 300).astype(float)
    w[0] = 1.0
    C = r.integers(0, 40, size=(50, 2)).astype(float)
    F = r.integers(0, 40, size=(seed % 3, 2)).astype(float)
    k = 2 + seed % 5
    a, b = _fit_both_paths(
        monkeypatch,
        k,
        float(2 + seed % 6),
        C,
        X=X,
        w=w,
        fixed_centers=F,
        random_state=seed,
        n_rounds=10,
        max_iter=3 + seed,
    )
    np.testing.assert_array_equal(a.center_indices_, b.center_indices_)
    assert a.n_iter_ == b.n_iter_
    assert a.covered_weight_ == pytest.approx(b.covered_weight_, rel=1e-12)
    assert a.history_.shape == b.history_.shape
    np.testing.assert_allclose(a.history_, b.history_, rtol=1e-12)


def test_stored_pairs_are_used_only_within_their_budget(monkeypatch, instance):
    X, w, C, F = instance
    qinv = dk.quantum_inverse(float(w.max()), X.shape[0])
    rank = np.arange(C.shape[0])
    args = (X, w, 3, qinv, 1_000.0, C, F, rank)
    prob = _discrete._CoverageIncidence.build(*args, 2**30)
    wq = np.rint(w * qinv)
    # Every stored pair is within the radius, and every such pair is stored.
    D = np.abs(X[:, None] - C[None]).sum(2)
    rows = np.flatnonzero(
        (wq > 0) & (np.abs(X[:, None] - F[None]).sum(2) > 1_000.0).all(1)
    )
    pairs = sorted(
        (int(rows[p]), int(c))
        for p in range(rows.shape[0])
        for c in prob.idx[prob.ptr[p] : prob.ptr[p + 1]]
    )
    expected = sorted(zip(*np.nonzero(D[rows] <= 1_000.0), strict=True))
    assert pairs == [(int(rows[p]), int(c)) for p, c in expected]
    n_pairs = len(pairs)
    tight = 16 * n_pairs + 8 * (C.shape[0] * 3 + 4 * X.shape[0])
    assert _discrete._CoverageIncidence.build(*args, tight) is not None
    assert _discrete._CoverageIncidence.build(*args, tight - 16) is None


@pytest.mark.parametrize("how", CHUNKINGS)
@pytest.mark.parametrize("with_fixed", [False, True])
def test_numpy_and_dask_choose_the_same_sites(instance, how, with_fixed):
    X, w, C, F = instance
    kw = dict(fixed_centers=F if with_fixed else None, random_state=4)
    a = MaxCoverage(5, 1_000.0, C, **kw).fit(X, sample_weight=w)
    Xd, wd = to_dask(X, w, how)
    b = MaxCoverage(5, 1_000.0, C, **kw).fit(Xd, sample_weight=wd)
    np.testing.assert_array_equal(b.center_indices_, a.center_indices_)
    assert b.n_iter_ == a.n_iter_
    assert b.covered_weight_ == pytest.approx(a.covered_weight_, rel=1e-12)
    np.testing.assert_allclose(b.history_, a.history_, rtol=1e-12)
    np.testing.assert_array_equal(b.labels_.compute(), a.labels_)


@pytest.mark.parametrize("how", CHUNKINGS)
def test_numpy_and_dask_agree_with_ties(rng, how):
    # Integer grid: many candidates cover the same weight; the seeded order
    # decides the same way whatever the chunking.
    X = rng.integers(0, 30, size=(500, 2)).astype(float)
    w = rng.integers(0, 3, 500).astype(float)
    C = rng.integers(0, 30, size=(90, 2)).astype(float)
    a = MaxCoverage(7, 3.0, C, random_state=2).fit(X, sample_weight=w)
    Xd, wd = to_dask(X, w, how)
    b = MaxCoverage(7, 3.0, C, random_state=2).fit(Xd, sample_weight=wd)
    np.testing.assert_array_equal(b.center_indices_, a.center_indices_)


def test_dask_default_weights(instance):
    X, _, C, _ = instance
    a = MaxCoverage(3, 1_000.0, C, random_state=0).fit(X)
    b = MaxCoverage(3, 1_000.0, C, random_state=0).fit(da.from_array(X, chunks=70))
    np.testing.assert_array_equal(a.center_indices_, b.center_indices_)
    assert a.covered_weight_ == b.covered_weight_


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_sites=0), "n_sites must be an integer >= 1, got 0"),
        (dict(n_sites=2.5), "n_sites must be an integer"),
        (dict(radius=-1.0), "radius must be a finite number >= 0, got -1.0"),
        (dict(radius=np.nan), "radius must be a finite number"),
        (dict(max_iter=-1), "max_iter must be an integer >= 0"),
        (dict(n_rounds=-2), "n_rounds must be an integer >= 0, got -2"),
        (dict(candidates=None), "candidates must be given"),
        (dict(candidates=np.empty((0, 2))), "at least one site, got 0"),
        (dict(n_sites=61), r"n_sites=61 exceeds the number of candidates \(60\)"),
        (dict(candidates=np.zeros((4, 3))), r"got shape \(4, 3\)"),
        (dict(fixed_centers=np.zeros((2, 3))), "fixed_centers must have shape"),
        (dict(fixed_centers=[[np.nan, 0.0]]), "fixed_centers must be finite"),
    ],
)
def test_parameter_errors(instance, kwargs, match):
    X, w, C, _ = instance
    params = {"n_sites": 2, "radius": 1_000.0, "candidates": C, **kwargs}
    with pytest.raises(ValueError, match=match):
        MaxCoverage(**params).fit(X, sample_weight=w)


def test_input_errors(instance):
    X, w, C, _ = instance
    bad = C.copy()
    bad[7, 0] = np.inf
    with pytest.raises(InputError, match="candidate index 7"):
        MaxCoverage(2, 1.0, bad).fit(X)
    Xb = X.copy()
    Xb[3, 0] = np.nan
    with pytest.raises(InputError, match="sample index 3"):
        MaxCoverage(2, 1.0, C).fit(da.from_array(Xb, chunks=50))
    with pytest.raises(ValueError, match=r"sample_weight must have shape"):
        MaxCoverage(2, 1.0, C).fit(X, sample_weight=w[:-1])
    with pytest.raises(InputError, match="sample_weight must be finite and >= 0"):
        MaxCoverage(2, 1.0, C).fit(X, sample_weight=-w)


def test_estimator_conventions(instance):
    X, w, C, F = instance
    mc = MaxCoverage(2, 1_000.0, C, fixed_centers=F, random_state=0)
    params = mc.get_params()
    assert params["n_sites"] == 2 and params["radius"] == 1_000.0
    assert params["fixed_centers"] is F
    twin = clone(mc)
    assert not hasattr(twin, "center_indices_")
    twin.fit(X, sample_weight=w)
    mc.fit(X, sample_weight=w)
    np.testing.assert_array_equal(twin.center_indices_, mc.center_indices_)


def test_docstring_examples():
    result = doctest.testmod(max_coverage)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.cluster
@pytest.mark.slow
def test_max_coverage_on_a_real_local_cluster(instance, cluster_client):
    X, w, C, F = instance
    ref = MaxCoverage(4, 1_000.0, C, fixed_centers=F, random_state=3).fit(
        X, sample_weight=w
    )
    Xd, wd = to_dask(X, w, "uneven")
    est = MaxCoverage(4, 1_000.0, C, fixed_centers=F, random_state=3).fit(
        Xd, sample_weight=wd
    )
    labels = est.labels_.compute()
    np.testing.assert_array_equal(est.center_indices_, ref.center_indices_)
    assert est.covered_weight_ == pytest.approx(ref.covered_weight_, rel=1e-12)
    np.testing.assert_array_equal(labels, ref.labels_)
