"""Numba kernels for the L1 (Manhattan) K-Medians core.

The kernels here are pure functions of NumPy arrays: they never see Dask,
never validate (the public entry points do that once) and never allocate an
``n x k`` distance matrix. Each one is compiled on first use and cached on
disk (``cache=True``) so that later processes skip the compile.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["assign_l1", "l1_distances"]


@numba.njit(parallel=True, cache=True, fastmath=False)
def _assign_l1(X, centers, labels, dist):
    n, d = X.shape
    k = centers.shape[0]
    for i in numba.prange(n):
        best = np.inf
        best_j = 0
        for j in range(k):
            s = 0.0
            for c in range(d):
                s += abs(X[i, c] - centers[j, c])
            # Strict "<" keeps the lowest centre index on ties, so the labels
            # do not depend on how the rows are chunked or threaded.
            if s < best:
                best = s
                best_j = j
        labels[i] = best_j
        dist[i] = best


def assign_l1(X: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Assign every point to its nearest centre in L1 distance.

    Fused distance + argmin, parallel over rows; memory is O(n), never O(n k).

    Parameters
    ----------
    X : np.ndarray, shape (n, d), float64
        Demand points (for example ``x_m, y_m`` in metres).
    centers : np.ndarray, shape (k, d), float64
        Centres (sites), ``k >= 1``.

    Returns
    -------
    labels : np.ndarray, shape (n,), int64
        Index of the nearest centre; ties go to the lowest index.
    dist : np.ndarray, shape (n,), float64
        L1 distance to that centre, in the units of ``X``.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0, 0.0], [9.0, 1.0]])
    >>> labels, dist = assign_l1(X, np.array([[1.0, 1.0], [10.0, 0.0]]))
    >>> labels.tolist(), dist.tolist()
    ([0, 1], [2.0, 2.0])
    """
    X = np.ascontiguousarray(X, dtype=np.float64)
    centers = np.ascontiguousarray(centers, dtype=np.float64)
    n = X.shape[0]
    labels = np.empty(n, dtype=np.int64)
    dist = np.empty(n, dtype=np.float64)
    if n:
        _assign_l1(X, centers, labels, dist)
    return labels, dist


@numba.njit(parallel=True, cache=True)
def _l1_distances(X, centers, out):
    n, d = X.shape
    k = centers.shape[0]
    for i in numba.prange(n):
        for j in range(k):
            s = 0.0
            for c in range(d):
                s += abs(X[i, c] - centers[j, c])
            out[i, j] = s


def l1_distances(X: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Full L1 distance matrix (for ``transform``; O(n k) memory by design).

    Parameters
    ----------
    X : np.ndarray, shape (n, d), float64
    centers : np.ndarray, shape (k, d), float64

    Returns
    -------
    np.ndarray, shape (n, k), float64
        ``out[i, j] = sum_c |X[i, c] - centers[j, c]|``.
    """
    X = np.ascontiguousarray(X, dtype=np.float64)
    centers = np.ascontiguousarray(centers, dtype=np.float64)
    out = np.empty((X.shape[0], centers.shape[0]), dtype=np.float64)
    if X.shape[0] and centers.shape[0]:
        _l1_distances(X, centers, out)
    return out
