"""Chunk -> combine -> aggregate helpers shared by the chunked (Dask) algorithms.

Every chunked algorithm in evplanner runs a pure per-block function that returns
small partial statistics, combines them pairwise in a tree, and computes once.
"""

from __future__ import annotations

import dask

__all__ = ["combine_many", "tree_reduce"]


def combine_many(items, combine):
    """Fold ``items`` left to right with the pairwise ``combine``."""
    out = items[0]
    for item in items[1:]:
        out = combine(out, item)
    return out


def tree_reduce(parts, combine, split_every: int = 8):
    """Combine delayed partial results in a tree of fan-in ``split_every``.

    Parameters
    ----------
    parts : list of dask.delayed.Delayed
        One partial result per block, in block order.
    combine : callable
        ``combine(a, b) -> ab``, associative; applied in block order, so the result
        does not depend on the scheduler.

    Returns
    -------
    dask.delayed.Delayed
        The combined result (compute it once).
    """
    while len(parts) > 1:
        parts = [
            dask.delayed(combine_many)(parts[i : i + split_every], combine)
            for i in range(0, len(parts), split_every)
        ]
    return parts[0]
