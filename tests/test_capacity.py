"""Capacitated K-Medians: KMedians(capacity=..., fixed_capacity=...)."""

from __future__ import annotations

import itertools

import dask.array as da
import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import linprog

from evplanner import KMedians, k_medians
from evplanner import _capacitated as cap

RTOL_CAP = 1e-6


def l1(A, B):
    return np.abs(A[:, None, :] - B[None, :, :]).sum(axis=2)


def assert_valid(km, X, w, caps):
    """The three promises: capacities kept, weights fully sent, inertia = f x d."""
    F = km.flows_
    assert sp.issparse(F)
    assert F.shape == (X.shape[0], km.n_clusters + km.fixed_centers_.shape[0])
    assert F.min() >= 0
    loads = np.asarray(F.sum(axis=0)).ravel()
    np.testing.assert_allclose(loads, km.site_loads_, rtol=1e-12, atol=1e-9)
    finite = np.isfinite(caps)
    assert np.all(loads[finite] <= caps[finite] * (1 + RTOL_CAP))
    np.testing.assert_allclose(np.asarray(F.sum(axis=1)).ravel(), w, rtol=1e-12)
    coo = F.tocoo()
    D = l1(X, np.vstack([km.cluster_centers_, km.fixed_centers_]))
    inertia = float(np.dot(coo.data, D[coo.row, coo.col]))
    assert km.inertia_ == pytest.approx(inertia, rel=1e-12)
    assert isinstance(km.inertia_, float)
    assert np.all(km.capacity_prices_ >= 0)


@pytest.fixture
def problem(clustered_points, rng):
    """300 weighted points, 3 fixed sites (one tiny), 4 new sites, tight capacity."""
    X, w = clustered_points
    F = np.array([[0.0, 0.0], [10_000.0, 0.0], [5_000.0, 5_000.0]])
    cf = np.array([50.0, np.inf, 20.0])
    k = 4
    capacity = float(np.ceil((w.sum() - 70.0) / k * 0.6))  # 0.6: the inf site helps
    return X, w, F, cf, k, capacity


def fit(X, w, F, cf, k, capacity, **kw):
    return KMedians(k, fixed_centers=F, fixed_capacity=cf, capacity=capacity,
                    random_state=0, **kw).fit(X, sample_weight=w)  # fmt: skip


def test_capacities_weights_inertia_numpy(problem):
    X, w, F, cf, k, capacity = problem
    km = fit(X, w, F, cf, k, capacity)
    caps = np.concatenate([np.full(k, capacity), cf])
    assert_valid(km, X, w, caps)
    # The capacities bind: nearest-site assignment would overload the small sites.
    lab = l1(X, np.vstack([km.cluster_centers_, F])).argmin(axis=1)
    nearest = np.bincount(lab, weights=w, minlength=k + 3)
    assert np.any(nearest > caps * (1 + 1e-6))
    assert np.any(km.capacity_prices_ > 0)
    # labels_: the site receiving the largest share of each point.
    np.testing.assert_array_equal(
        km.labels_, np.asarray(km.flows_.argmax(axis=1)).ravel()
    )
    hist = km.inertia_history_
    assert np.all(np.diff(hist) <= 1e-9 * hist[0])
    assert hist[-1] == pytest.approx(km.inertia_, rel=1e-12)


def test_only_new_sites_limited(clustered_points):
    X, w = clustered_points
    km = KMedians(4, capacity=float(np.ceil(w.sum() / 4 * 1.05)),
                  random_state=1).fit(X, sample_weight=w)  # fmt: skip
    assert_valid(km, X, w, np.full(4, np.ceil(w.sum() / 4 * 1.05)))
    assert km.fixed_centers_.shape == (0, 2)


def test_only_fixed_limited(clustered_points):
    X, w = clustered_points
    F = np.array([[0.0, 0.0], [9_000.0, 9_000.0]])
    cf = np.array([30.0, 40.0])
    km = KMedians(2, fixed_centers=F, fixed_capacity=cf,
                  random_state=0).fit(X, sample_weight=w)  # fmt: skip
    assert_valid(km, X, w, np.concatenate([[np.inf, np.inf], cf]))
    assert km.site_loads_[2:] == pytest.approx(cf)  # the nearest would take more


@pytest.mark.parametrize("chunks", [300, 150, 75, (100, 17, 183)])
def test_dask_same_as_numpy(problem, chunks):
    X, w, F, cf, k, capacity = problem
    ref = fit(X, w, F, cf, k, capacity)
    c = chunks if isinstance(chunks, tuple) else chunks
    Xd = da.from_array(X, chunks=(c, 2))
    wd = da.from_array(w, chunks=(c,))
    km = fit(Xd, wd, F, cf, k, capacity)
    np.testing.assert_array_equal(km.cluster_centers_, ref.cluster_centers_)
    assert km.inertia_ == pytest.approx(ref.inertia_, rel=1e-12)
    assert (km.flows_ != ref.flows_).nnz == 0
    np.testing.assert_array_equal(km.labels_.compute(), ref.labels_)
    np.testing.assert_allclose(km.capacity_prices_, ref.capacity_prices_)
    assert_valid(km, X, w, np.concatenate([np.full(k, capacity), cf]))


@pytest.mark.slow
@pytest.mark.cluster
def test_dask_local_cluster_same_as_numpy(problem):
    from distributed import Client, LocalCluster

    X, w, F, cf, k, capacity = problem
    ref = fit(X, w, F, cf, k, capacity)
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                     dashboard_address=None) as cluster,
        Client(cluster),
    ):  # fmt: skip
        Xd = da.from_array(X, chunks=(70, 2))
        wd = da.from_array(w, chunks=(70,))
        km = fit(Xd, wd, F, cf, k, capacity)
        labels = km.labels_.compute()
    np.testing.assert_array_equal(km.cluster_centers_, ref.cluster_centers_)
    assert km.inertia_ == pytest.approx(ref.inertia_, rel=1e-12)
    assert (km.flows_ != ref.flows_).nnz == 0
    np.testing.assert_array_equal(labels, ref.labels_)
    assert_valid(km, X, w, np.concatenate([np.full(k, capacity), cf]))


def test_infeasible_total_capacity_names_both_totals(clustered_points):
    X, w = clustered_points
    F = np.array([[0.0, 0.0]])
    with pytest.raises(ValueError, match="total capacity") as err:
        KMedians(3, capacity=10.0, fixed_centers=F, fixed_capacity=[5.0]).fit(
            X, sample_weight=w
        )
    msg = str(err.value)
    assert "35" in msg  # 3 x 10 + 5
    assert f"{w.sum():,.6g}" in msg  # the total demand


def test_infeasible_on_dask_too(clustered_points):
    X, w = clustered_points
    with pytest.raises(ValueError, match="below the total demand weight"):
        KMedians(2, capacity=1.0).fit(da.from_array(X, chunks=(100, 2)),
                                      sample_weight=w)  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"fixed_capacity": [1.0, 2.0]}, r"fixed_capacity must have shape "
         r"\(n_fixed,\) matching fixed_centers \(n_fixed=3\), got shape \(2,\)"),
        ({"fixed_capacity": [1e9, -1.0, 1e9]},
         r"fixed_capacity must be >= 0.*-1.0 at index 1"),
        ({"fixed_capacity": [1e9, np.nan, 1e9]},
         r"fixed_capacity must be >= 0.*nan at index 1"),
        ({"capacity": -5.0}, "capacity must be a number >= 0"),
        ({"capacity": float("nan")}, "capacity must be a number >= 0"),
        ({"capacity": "big"}, "capacity must be a number >= 0 or None, got 'big'"),
    ],
)  # fmt: skip
def test_bad_capacities(clustered_points, kwargs, match):
    X, w = clustered_points
    F = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])
    with pytest.raises(ValueError, match=match):
        KMedians(2, fixed_centers=F, **kwargs).fit(X, sample_weight=w)


def test_fixed_capacity_needs_fixed_centers(clustered_points):
    X, w = clustered_points
    with pytest.raises(
        ValueError, match="fixed_capacity was given without fixed_centers"
    ):
        KMedians(2, fixed_capacity=[10.0]).fit(X, sample_weight=w)


def test_capacity_with_candidates(problem, rng):
    X, w, F, cf, k, capacity = problem
    C = np.vstack([X[::7], rng.uniform(-2_000, 12_000, size=(30, 2))])
    km = fit(X, w, F, cf, k, capacity, candidates=C)
    assert_valid(km, X, w, np.concatenate([np.full(k, capacity), cf]))
    idx = km.center_indices_
    assert np.all(np.diff(idx) > 0)
    np.testing.assert_array_equal(km.cluster_centers_, C[idx])
    # Never better than the continuous search, which may put sites anywhere
    # (not guaranteed for heuristics in general, but by a wide margin here).
    assert km.inertia_ >= fit(X, w, F, cf, k, capacity).inertia_ * 0.99
    Xd = da.from_array(X, chunks=(100, 2))
    kd = fit(Xd, da.from_array(w, chunks=(100,)), F, cf, k, capacity, candidates=C)
    np.testing.assert_array_equal(kd.center_indices_, idx)
    assert (kd.flows_ != km.flows_).nnz == 0


@pytest.mark.parametrize("seed", range(6))
def test_tiny_candidates_reach_the_optimum(seed):
    """With candidates = the demand points, the brute-force optimum is the optimum."""
    rng = np.random.default_rng(100 + seed)
    n, k = 10, 2 + seed % 2
    X = np.round(rng.normal(size=(n, 2)) * 10, 1)
    w = rng.integers(1, 6, size=n).astype(float)
    capacity = float(np.ceil(1.1 * w.sum() / k))
    opt = brute_force_capacitated(X, w, np.empty((0, 2)), np.empty(0), k, capacity)
    km = KMedians(k, capacity=capacity, candidates=X,
                  random_state=0).fit(X, sample_weight=w)  # fmt: skip
    assert_valid(km, X, w, np.full(k, capacity))
    np.testing.assert_array_equal(km.cluster_centers_, X[km.center_indices_])
    assert km.inertia_ <= opt * (1 + 1e-9)


def test_uncapacitated_path_unchanged(problem):
    X, w, F, _, k, _ = problem
    km = KMedians(k, fixed_centers=F, random_state=0).fit(X, sample_weight=w)
    ref = k_medians(X, k, sample_weight=w, fixed_centers=F, random_state=0)
    np.testing.assert_array_equal(km.cluster_centers_, ref.centers)
    np.testing.assert_array_equal(km.labels_, ref.labels)
    assert km.inertia_ == ref.inertia
    for name in ("flows_", "site_loads_", "capacity_prices_"):
        assert not hasattr(km, name)


def test_infinite_capacity_is_uncapacitated(problem):
    X, w, F, _, k, _ = problem
    ref = KMedians(k, fixed_centers=F, random_state=0).fit(X, sample_weight=w)
    km = KMedians(k, fixed_centers=F, capacity=np.inf,
                  fixed_capacity=np.full(3, np.inf),
                  random_state=0).fit(X, sample_weight=w)  # fmt: skip
    assert_valid(km, X, w, np.full(k + 3, np.inf))
    # No capacity binds: the uncapacitated solution is the answer.
    np.testing.assert_array_equal(km.cluster_centers_, ref.cluster_centers_)
    assert km.inertia_ == pytest.approx(ref.inertia_, rel=1e-12)
    assert np.all(km.capacity_prices_ == 0)
    # Every point goes (whole) to a nearest site.
    D = l1(X, np.vstack([km.cluster_centers_, F]))
    coo = km.flows_.tocoo()
    assert np.allclose(D[coo.row, coo.col], D.min(axis=1)[coo.row])


def test_duplicates_and_zero_weights():
    X = np.array([[0.0, 0.0], [0.0, 0.0], [10.0, 0.0], [10.0, 0.0], [5.0, 0.0],
                  [20.0, 0.0]])  # fmt: skip
    w = np.array([1.0, 3.0, 2.0, 2.0, 0.0, 4.0])
    km = KMedians(2, capacity=6.0, random_state=0).fit(X, sample_weight=w)
    assert_valid(km, X, w, np.full(2, 6.0))
    F = km.flows_.toarray()
    # Rows at one location split the same way, in proportion to their weights.
    np.testing.assert_allclose(F[0] * 3, F[1])
    np.testing.assert_allclose(F[2], F[3])
    assert F[4].sum() == 0
    sites = km.cluster_centers_
    assert km.labels_[4] == int(np.argmin(np.abs(sites - X[4]).sum(axis=1)))


# ---------------------------------------------------------------------------
# Exactness of the parts, and of the whole on tiny instances
# ---------------------------------------------------------------------------


def dense_transport(X, w, S, caps):
    """Reference: the full transportation LP, dense, by scipy's HiGHS."""
    n, m = X.shape[0], S.shape[0]
    D = l1(X, S)
    a_eq = np.kron(np.eye(n), np.ones(m))
    lim = np.isfinite(caps)
    a_ub = np.kron(np.ones(n), np.eye(m))[lim]
    res = linprog(D.ravel(), A_ub=a_ub if lim.any() else None,
                  b_ub=caps[lim] if lim.any() else None, A_eq=a_eq, b_eq=w,
                  method="highs")  # fmt: skip
    assert res.status == 0
    return res.fun


@pytest.mark.parametrize("seed", range(6))
def test_transport_is_exact(seed):
    rng = np.random.default_rng(seed)
    n, m = 60, 12
    X = rng.normal(size=(n, 2)) * 100
    w = rng.integers(1, 9, size=n).astype(float)
    S = rng.normal(size=(m, 2)) * 100
    caps = rng.uniform(0.2, 1.5, size=m) * w.sum() / m
    caps[caps.argmax()] = np.inf if seed % 2 else caps.max()
    caps *= max(1.0, 1.05 * w.sum() / caps.sum())
    tr = cap.transport(X, w, S, caps)
    ref = dense_transport(X, w, S, caps)
    assert tr.objective == pytest.approx(ref, rel=1e-9)
    loads = np.bincount(tr.cols, weights=tr.flow, minlength=m)
    assert np.all(loads <= caps * (1 + RTOL_CAP))
    np.testing.assert_allclose(np.bincount(tr.rows, weights=tr.flow, minlength=n), w)


def test_flow_medians_minimise_each_site_cost():
    rng = np.random.default_rng(3)
    U = rng.normal(size=(40, 2))
    W = rng.uniform(1, 2, size=40)
    S = U[:3].copy()
    tr = cap.transport(U, W, S, np.full(3, W.sum() / 2.5))
    # With k = 3 new sites (no fixed) flow_medians moves all three.
    new = cap.flow_medians(U, tr, S)

    def cost(j, c):
        on = tr.cols == j
        return np.dot(tr.flow[on], np.abs(U[tr.rows[on]] - c).sum(axis=1))

    for j in range(3):
        for step in ([1e-3, 0], [-1e-3, 0], [0, 1e-3], [0, -1e-3]):
            assert cost(j, new[j]) <= cost(j, new[j] + np.array(step)) + 1e-12


def brute_force_capacitated(X, w, F, cf, k, capacity):
    """Optimum with the new sites among the demand points, every combination."""
    best = np.inf
    for combo in itertools.combinations(range(X.shape[0]), k):
        S = np.vstack([X[list(combo)], F])
        caps = np.concatenate([np.full(k, capacity), cf])
        best = min(best, dense_transport(X, w, S, caps))
    return best


@pytest.mark.parametrize("seed", range(8))
def test_tiny_instances_reach_the_discrete_optimum(seed):
    """The continuous optimum is at most the discrete one (sites at demand points).

    The search is a heuristic: it must end at or below the brute-force optimum
    of the capacitated p-median with candidates = demand points (within 1e-9)
    on these instances.
    """
    rng = np.random.default_rng(seed)
    n, k = 10, 2 + seed % 2
    X = np.round(rng.normal(size=(n, 2)) * 10, 1)
    w = rng.integers(1, 6, size=n).astype(float)
    if seed % 3 == 0:
        F, cf = np.array([[0.0, 0.0]]), np.array([w.sum() * 0.2])
    else:
        F, cf = np.empty((0, 2)), np.empty(0)
    capacity = float(np.ceil(1.1 * (w.sum() - cf.sum()) / k))
    opt = brute_force_capacitated(X, w, F, cf, k, capacity)
    km = KMedians(k, capacity=capacity, fixed_centers=F if len(F) else None,
                  fixed_capacity=cf if len(F) else None,
                  random_state=0).fit(X, sample_weight=w)  # fmt: skip
    assert_valid(km, X, w, np.concatenate([np.full(k, capacity), cf]))
    assert km.inertia_ <= opt * (1 + 1e-9)


@pytest.mark.parametrize("dask_input", [False, True])
def test_too_many_distinct_locations(clustered_points, monkeypatch, dask_input):
    import evplanner.kmedians as kmedians_module

    monkeypatch.setattr(kmedians_module, "_MAX_DISTINCT", 50)
    X, w = clustered_points
    if dask_input:
        X, w = da.from_array(X, chunks=(40, 2)), da.from_array(w, chunks=(40,))
    with pytest.raises(ValueError, match="at most 50 distinct demand locations"):
        KMedians(2, capacity=1e6).fit(X, sample_weight=w)


# --------------------------------------------------------------------------- start


def test_overflow_weights_are_the_catchments_excess():
    U = np.array([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0], [11.0, 0.0]])
    W = np.array([3.0, 1.0, 2.0, 2.0])
    fixed = np.array([[0.5, 0.0], [10.5, 0.0]])
    # Site 0 holds 2 of its 4 (half overflows), site 1 all of its 4.
    ov = cap.overflow_weights(U, W, fixed, np.array([2.0, 5.0]))
    np.testing.assert_allclose(ov, [1.5, 0.5, 0.0, 0.0])
    # Unlimited or no fixed sites.
    assert not cap.overflow_weights(U, W, fixed, np.array([np.inf, np.inf])).any()
    np.testing.assert_allclose(cap.overflow_weights(U, W, np.empty((0, 2)),
                                                    np.empty(0)), W)  # fmt: skip


def test_overflow_seeds_fill_where_the_overflow_is():
    # Two heavy groups far apart and light points elsewhere: one site each
    # goes to the heavy groups, the rest fill distinct locations.
    U = np.array([[0.0, 0.0], [1.0, 0.0], [100.0, 0.0], [101.0, 0.0],
                  [50.0, 50.0], [60.0, 60.0]])  # fmt: skip
    overflow = np.array([5.0, 4.0, 3.0, 3.0, 0.0, 0.0])
    S = cap.overflow_seeds(U, overflow, 2, cap=9.0)
    assert {tuple(r) for r in S} == {(0.0, 0.0), (100.0, 0.0)}
    S4 = cap.overflow_seeds(U, overflow, 4, cap=9.0)
    assert S4.shape == (4, 2) and np.unique(S4, axis=0).shape[0] == 4
    C = np.array([[0.0, 1.0], [0.0, 2.0], [99.0, 0.0]])
    snapped = cap.snap_to_free(np.array([[0.0, 0.0], [0.0, 0.0]]), C)
    np.testing.assert_array_equal(snapped, C[:2])


def test_overflow_start_beats_or_matches_the_uncapacitated_start(rng):
    # Fixed sites far from a dense town they cannot hold: the new sites
    # belong in the town. The kept search is never worse than either start.
    town = rng.normal([0.0, 0.0], 300.0, size=(150, 2))
    rural = rng.uniform(-20_000, 20_000, size=(60, 2))
    X = np.vstack([town, rural])
    w = np.concatenate([np.full(150, 10.0), np.full(60, 1.0)])
    F = np.array([[2_000.0, 0.0], [-2_000.0, 0.0], [0.0, 15_000.0]])
    cf = np.array([100.0, 100.0, 1_000.0])
    km = KMedians(4, capacity=400.0, fixed_centers=F, fixed_capacity=cf,
                  random_state=0).fit(X, sample_weight=w)  # fmt: skip
    caps = np.concatenate([np.full(4, 400.0), cf])
    assert_valid(km, X, w, caps)
    U, W, _ = cap.aggregate_points(X, w)
    start = k_medians(X, 4, sample_weight=w, fixed_centers=F, random_state=0)
    plain = cap.capacitated_search(U, W, start.centers, F, caps, n_trials=30)
    seeds = cap.overflow_start(U, W, F, caps, 4)
    seeded = cap.capacitated_search(U, W, seeds, F, caps, n_trials=30)
    best = min(plain.transport.objective, seeded.transport.objective)
    assert km.inertia_ == pytest.approx(best, rel=1e-12)
    # The seeds sit where the overflow is: in the town.
    assert (np.abs(seeds).sum(axis=1) < 2_000).all()
