"""Chunk -> combine -> aggregate helpers shared by the chunked (Dask) algorithms.

Every chunked algorithm in evplanner runs a pure per-block function that returns
small partial statistics, combines them pairwise in a tree, and computes once.
"""

from __future__ import annotations

import dask

__all__ = ["combine_many", "compute_and_keep", "tree_levels", "tree_reduce"]


def combine_many(items, combine):
    """Fold ``items`` left to right with the pairwise ``combine``."""
    out = items[0]
    for item in items[1:]:
        out = combine(out, item)
    return out


def tree_levels(parts, combine, split_every: int = 8):
    """The levels of :func:`tree_reduce` but the last: at most ``split_every``
    delayed partial results, whose :func:`combine_many` is the reduction.

    The caller can compute these few and combine them itself (one hop less
    than a final combine task, which first gathers them on one worker), with
    the same grouping and order, hence the same floating-point result.
    """
    while len(parts) > split_every:
        parts = [
            dask.delayed(combine_many)(parts[i : i + split_every], combine)
            for i in range(0, len(parts), split_every)
        ]
    return parts


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
    parts = tree_levels(parts, combine, split_every)
    return parts[0] if len(parts) == 1 else dask.delayed(combine_many)(parts, combine)


def compute_and_keep(results, keep):
    """Compute ``results`` and leave ``keep`` in (worker) memory, in one pass.

    Parameters
    ----------
    results : list of dask.delayed.Delayed
        What comes back to the caller (small statistics).
    keep : list of dask.delayed.Delayed
        Per-block state that later passes read where it is (labels, bounds).

    Returns
    -------
    values : list
        ``results`` computed.
    kept : list
        ``keep`` persisted: distributed futures on a Dask cluster, else
        persisted Delayed objects.

    Notes
    -----
    On a ``distributed`` cluster one submission computes both (the kept blocks
    as futures, the result gathered): a pass costs one round trip to the
    scheduler instead of two (persist, then compute of the persisted result),
    which matters for an iterative solver that makes hundreds of passes. Other
    schedulers persist and compute as before. The block tasks run once either
    way, so the values are the same.
    """
    from dask.base import get_scheduler

    client = getattr(get_scheduler(), "__self__", None)
    if client is not None and type(client).__name__ == "Client":
        futures = client.compute([*results, *keep])
        return client.gather(futures[: len(results)]), futures[len(results) :]
    persisted = dask.persist(*results, *keep)
    values = dask.compute(*persisted[: len(results)])
    return list(values), list(persisted[len(results) :])
