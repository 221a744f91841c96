"""Demand arrays at the estimators' boundary: points, weights, bad values.

Shared by :class:`~evplanner.kmedians.KMedians`, :class:`~evplanner.max_coverage.
MaxCoverage` and the discrete search, so that every model accepts the same inputs
and rejects bad ones with the same message.
"""

from __future__ import annotations

import dask.array as da
import numpy as np

from evplanner.errors import InputError


def is_dask(X) -> bool:
    """True for a Dask array or a Dask DataFrame/Series."""
    return isinstance(X, da.Array) or hasattr(X, "to_dask_array")


def as_points(X):
    """Demand points ``(n_samples, n_features)`` as float64.

    NumPy/pandas input becomes a C-contiguous ndarray; Dask input a float64
    Dask array chunked by rows only (all features in one chunk).
    """
    if is_dask(X):
        if not isinstance(X, da.Array):
            X = X.to_dask_array(lengths=True)
        if X.ndim != 2:
            raise ValueError(
                f"X must be 2-D (n_samples, n_features), got shape {X.shape}"
            )
        if any(np.isnan(c) for c in X.chunks[0]):
            raise ValueError(
                "X is a Dask array with unknown chunk sizes; call "
                "X.compute_chunk_sizes() first"
            )
        if not np.issubdtype(X.dtype, np.number) or np.issubdtype(
            X.dtype, np.complexfloating
        ):
            raise ValueError(f"X must hold real numbers, got dtype {X.dtype}")
        return X.astype(np.float64).rechunk({1: -1})
    X = np.ascontiguousarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n_samples, n_features), got shape {X.shape}")
    return X


def as_weights(sample_weight, X):
    """Weights ``(n_samples,)`` as float64, like ``X`` (NumPy, or Dask with its
    row chunks); ``None`` means 1 per point, a scalar the same for every point."""
    n = X.shape[0]
    if isinstance(X, da.Array):
        if sample_weight is None:
            return da.ones(n, chunks=(X.chunks[0],), dtype=np.float64)
        if not isinstance(sample_weight, da.Array):
            sample_weight = np.asarray(sample_weight, dtype=np.float64)
        if sample_weight.shape != (n,):
            raise ValueError(
                f"sample_weight must have shape (n_samples,) = ({n},), got "
                f"{sample_weight.shape}"
            )
        w = da.asarray(sample_weight).astype(np.float64)
        # Same row chunks as X, so each chunk sees its own points' weights.
        return w.rechunk((X.chunks[0],))
    if sample_weight is None:
        return np.ones(n, dtype=np.float64)
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.ndim == 0:
        return np.full(n, float(w))
    if w.shape != (n,):
        raise ValueError(
            f"sample_weight must have shape (n_samples,) = ({n},), got {w.shape}"
        )
    return np.ascontiguousarray(w)


def check_summary(summary: dict) -> None:
    """Refuse what a chunked pass over the demand found wrong.

    ``summary`` holds ``n`` (rows), ``wsum`` (total weight), and ``bad_x`` /
    ``bad_w``: the first non-finite coordinate or bad weight as ``(row, value)``
    (rows counted over the whole input), or None.
    """
    if summary["bad_x"] is not None:
        row, value = summary["bad_x"]
        raise InputError(
            "X must contain only finite coordinates (no NaN or inf), got "
            f"{value} at sample index {row}"
        )
    if summary["bad_w"] is not None:
        row, value = summary["bad_w"]
        raise InputError(
            f"sample_weight must be finite and >= 0, got {value} at sample index {row}"
        )
    if summary["n"] == 0:
        raise ValueError("X must have at least 1 sample, got n_samples=0")
    if not summary["wsum"] > 0:
        raise ValueError(
            "sample_weight must not be all zero: expected a positive total "
            f"weight, got {summary['wsum']} over n_samples={summary['n']}"
        )
