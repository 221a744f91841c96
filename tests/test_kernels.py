"""The nearest-centre searches of evplanner._kernels against brute force.

Every assignment kernel has two searches (cell filtering on a grid over the
points, and the sorted-axis scan it falls back to); both must give exactly
the brute-force answer: nearest centre with ties to the lowest index, its
distance and the exact second-nearest distance bit for bit, and a valid
lower bound of the second distance in bound mode.
"""

from __future__ import annotations

import numpy as np
import pytest

from evplanner import _kernels as kern


def _brute(X, C):
    # (0.0 + |dx|) + |dy| is what the kernels compute; 0.0 + a == a exactly.
    D = np.abs(X[:, None, 0] - C[None, :, 0]) + np.abs(X[:, None, 1] - C[None, :, 1])
    labels = np.argmin(D, axis=1)  # first minimum: the lowest index
    rows = np.arange(X.shape[0])
    d1 = D[rows, labels]
    second = np.sort(D, axis=1)[:, 1] if C.shape[0] > 1 else np.full(len(X), np.inf)
    return labels, d1, second


@pytest.fixture(params=["grid", "sorted"])
def search(request, monkeypatch):
    """Force one search: the grid even on tiny inputs, or never the grid."""
    if request.param == "grid":
        monkeypatch.setattr(kern, "GRID_MIN_ROWS", 0)
        monkeypatch.setattr(kern, "GRID_MIN_SITES", 1)
        monkeypatch.setattr(kern, "GRID_ROWS_PER_CELL", 2)
    else:
        monkeypatch.setattr(kern, "GRID_MIN_ROWS", 10**15)
    return request.param


def _check_all(X, C, rng):
    labels, d1, second = _brute(X, C)
    got = kern.assign_l1(X, C)
    np.testing.assert_array_equal(got[0], labels)
    np.testing.assert_array_equal(got[1], d1)
    got = kern.assign2_l1(X, C)
    np.testing.assert_array_equal(got[0], labels)
    np.testing.assert_array_equal(got[1], d1)
    np.testing.assert_array_equal(got[2], second)
    got = kern.assign2_l1(X, C, exact=False)
    np.testing.assert_array_equal(got[0], labels)
    np.testing.assert_array_equal(got[1], d1)
    assert np.all(got[2] >= d1) and np.all(got[2] <= second)
    # Bounded assignment from older centres, with the exact and the plain
    # bounds, and one centre jumping far.
    scale = float(np.ptp(C)) + 1.0
    C_old = C + rng.normal(0, 0.02 * scale, size=C.shape)
    C_old[0] -= 0.5 * scale
    old_labels, _, old_lower = kern.assign2_l1(X, C_old, exact=False)
    for exact in (True, False):
        got = kern.assign_bounded(X, C, C_old, old_labels, old_lower, exact=exact)
        np.testing.assert_array_equal(got[0], labels)
        np.testing.assert_array_equal(got[1], d1)
        assert np.all(got[2] <= second)


def _clustered(rng, n):
    centres = rng.uniform(-50_000, 50_000, size=(12, 2))
    scales = rng.choice([10.0, 300.0, 5_000.0], size=12)
    which = rng.integers(0, 12, size=n)
    return centres[which] + rng.normal(size=(n, 2)) * scales[which, None]


@pytest.mark.parametrize("k", [1, 2, 5, 40, 250])
def test_random_and_clustered(search, rng, k):
    X = rng.uniform(0, 10_000, size=(6_000, 2))
    _check_all(X, X[rng.choice(len(X), k, replace=False)], rng)
    X = _clustered(rng, 6_000)
    _check_all(X, X[rng.choice(len(X), k, replace=False)], rng)
    # Centres not drawn from the points, some far outside their extent.
    _check_all(X, rng.normal(0, 80_000, size=(k, 2)), rng)


def test_duplicates_and_ties(search, rng):
    # Integer coordinates: many equal distances; duplicate points and
    # duplicate centres (the lowest index must win).
    X = np.round(rng.normal(0, 20.0, size=(5_000, 2)))
    C = X[rng.choice(len(X), 30, replace=False)]
    C = np.vstack([C, C[::3], C[:2]])
    _check_all(X, C, rng)
    # Points on cell edges and centres on a lattice: exact ties everywhere.
    g = np.arange(0.0, 40.0, 2.0)
    X = np.array([[a, b] for a in g for b in g] * 3)
    C = np.array([[a, b] for a in g[::4] + 1.0 for b in g[::4] + 1.0])
    _check_all(X, C, rng)


def test_one_cell_and_degenerate_extent(search, rng):
    # All points identical (the grid's extent is a single point), on one
    # line, or in a tiny square far from every centre.
    X = np.full((300, 2), 7.5)
    C = rng.uniform(0, 15, size=(20, 2))
    _check_all(X, C, rng)
    X = np.column_stack([rng.uniform(0, 100, 500), np.full(500, 3.0)])
    _check_all(X, C * 7, rng)
    X = 1e6 + rng.uniform(0, 1e-3, size=(800, 2))
    _check_all(X, rng.uniform(-10, 10, size=(25, 2)), rng)


def test_more_centres_than_points(search, rng):
    X = rng.uniform(0, 100, size=(10, 2))
    _check_all(X, rng.uniform(0, 100, size=(50, 2)), rng)
    _check_all(X, np.vstack([X, X]), rng)  # every point on two centres


def test_float_extremes(search, rng):
    # Large coordinates with tiny differences, and magnitudes beyond the
    # grid's limit (there the sorted-axis search must take over).
    X = 1e12 + rng.integers(0, 1000, size=(3_000, 2)) * 1e-3
    _check_all(X, X[rng.choice(len(X), 17, replace=False)], rng)
    X = rng.uniform(-1, 1, size=(2_000, 2)) * 1e200
    _check_all(X, X[rng.choice(len(X), 9, replace=False)], rng)
    X = rng.uniform(-1, 1, size=(2_000, 2)) * 1e-300
    _check_all(X, X[rng.choice(len(X), 9, replace=False)], rng)


def test_points_outside_the_grid_fall_back(rng, monkeypatch):
    # A grid built over half the points: the other half, outside its extent,
    # must take the sorted-axis search and still be exact.
    monkeypatch.setattr(kern, "GRID_MIN_ROWS", 0)
    X = rng.uniform(0, 1_000, size=(4_000, 2))
    X[2_000:] *= 3.0
    C = X[rng.choice(len(X), 40, replace=False)]
    order, key, axis = kern._sorted_axis(C)
    plan = kern._grid_plan(X[:2_000], C)
    assert plan is not None
    labels, d1, second = _brute(X, C)
    for nth in (1, 2):
        grid = kern._grid_build(plan, C, order, key, axis, nth)
        out_labels = np.empty(len(X), dtype=np.int64)
        out_d1 = np.empty(len(X))
        out_d2 = np.empty(len(X))
        exact = nth == 2
        kern._assign2_l1(len(X), X, C, order, key, axis, *grid, True,
                         out_labels, out_d1, out_d2, exact)  # fmt: skip
        np.testing.assert_array_equal(out_labels, labels)
        np.testing.assert_array_equal(out_d1, d1)
        if exact:
            np.testing.assert_array_equal(out_d2, second)
        else:
            assert np.all(out_d2 >= d1) and np.all(out_d2 <= second)


def test_grid_is_used_by_default_and_shortlists_are_short(rng):
    # The default rule picks the grid for a K-Medians-sized input, and its
    # shortlists are much shorter than k (else it would not pay).
    X = _clustered(rng, 50_000)
    C = X[rng.choice(len(X), 200, replace=False)]
    plan = kern._grid_plan(X, C)
    assert plan is not None
    order, key, axis = kern._sorted_axis(C)
    start = kern._grid_build(plan, C, order, key, axis, 1)[6]
    assert np.diff(start).mean() < C.shape[0] / 5
    # and not for one coordinate, one centre or few points
    assert kern._grid_plan(X[:, :1].copy(), C[:, :1].copy()) is None
    assert kern._grid_plan(X, C[:1]) is None
    assert kern._grid_plan(X[:100], C) is None
