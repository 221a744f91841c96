"""Dask chunkings the NumPy-vs-Dask comparisons run over.

One chunk, two, four, and uneven ones (with a one-row chunk), so that every
chunk-additive reduction is checked against the in-memory answer.
"""

from __future__ import annotations

import dask.array as da
import numpy as np

CHUNKINGS = ["one", "two", "four", "uneven"]


def chunk_sizes(n: int, how: str) -> tuple[int, ...]:
    """Row counts of the chunks of ``n`` rows for chunking ``how``."""
    if how == "one":
        return (n,)
    if how == "two":
        return (n - n // 2, n // 2)
    if how == "four":
        q = n // 4
        return (q, q, q, n - 3 * q)
    return (7, n // 2 - 7, 1, n - n // 2 - 1)


def to_dask(X: np.ndarray, w: np.ndarray, how: str) -> tuple[da.Array, da.Array]:
    """Points ``(n, d)`` and weights ``(n,)`` as Dask arrays chunked by ``how``."""
    sizes = chunk_sizes(X.shape[0], how)
    return (
        da.from_array(X, chunks=(sizes, X.shape[1])),
        da.from_array(w, chunks=(sizes,)),
    )
