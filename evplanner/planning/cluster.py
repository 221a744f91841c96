"""Where a plan runs: in memory, on a new ``LocalCluster``, or on a Dask scheduler.

:func:`dask_client` opens the cluster and watches it while the run lasts: when the
cluster has had no worker for ``no_workers_s`` seconds, or the scheduler stops
answering, it ends the run with a :class:`~evplanner.errors.ClusterError` that says
so, instead of waiting forever. Losing some workers is not an error: Dask recomputes
their chunks elsewhere (from the files), and the plan is the same.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dask
from distributed import WorkerPlugin

from evplanner.errors import ClusterError

__all__ = ["NO_WORKERS_S", "dask_client", "local_worker_env"]

logger = logging.getLogger(__name__)

#: Seconds without any worker after which a run on a cluster gives up.
NO_WORKERS_S = 60.0


class _Watchdog(threading.Thread):
    """Polls the scheduler; closes the client when the cluster cannot go on."""

    def __init__(self, client, no_workers_s: float, poll_s: float = 1.0):
        super().__init__(name="evplanner-cluster-watchdog", daemon=True)
        self.client, self.no_workers_s, self.poll_s = client, no_workers_s, poll_s
        self.reason: str | None = None
        self._stop = threading.Event()

    def run(self) -> None:
        address = self.client.scheduler.address
        idle_since = None
        while not self._stop.wait(self.poll_s):
            try:
                workers = len(self.client.nthreads())
            except Exception as err:  # noqa: BLE001  (any failure: scheduler gone)
                if self._stop.is_set():
                    return
                self.reason = (f"lost the Dask scheduler at {address} "
                               f"({type(err).__name__})")  # fmt: skip
                break
            if workers:
                idle_since = None
                continue
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since >= self.no_workers_s:
                self.reason = (f"the Dask cluster at {address} has had no worker for "
                               f"{self.no_workers_s:g} s")  # fmt: skip
                break
        if self.reason is not None:
            logger.error("%s: stopping the run", self.reason)
            # Closing the client cancels its pending work, so the run's compute
            # returns (with an error the context manager turns into the reason).
            self.client.close(timeout=5)

    def stop(self) -> None:
        self._stop.set()


@contextmanager
def dask_client(
    scheduler: str | None = None,
    workers: int | None = None,
    *,
    timeout_s: float = 10.0,
    threads_per_worker: int = 1,
    no_workers_s: float = NO_WORKERS_S,
) -> Iterator[Any]:
    """A ``distributed.Client`` on an existing scheduler or a new ``LocalCluster``.

    Parameters
    ----------
    scheduler : str, optional
        Scheduler address (``tcp://host:port``).
    workers : int, optional
        Start a ``LocalCluster`` with this many worker processes instead.
    timeout_s : float
        Seconds to wait for the scheduler before giving up.
    threads_per_worker : int
        Threads per local worker.
    no_workers_s : float
        Give up when the cluster has had no worker this long.

    Yields
    ------
    distributed.Client or None
        ``None`` when neither ``scheduler`` nor ``workers`` is given (in memory).

    Raises
    ------
    ValueError
        If the scheduler cannot be reached within ``timeout_s``.
    ClusterError
        If the cluster lost all its workers for ``no_workers_s`` or the scheduler
        went away during the run.
    """
    if scheduler is None and workers is None:
        yield None
        return
    from distributed import Client, LocalCluster

    cluster = None
    with dask.config.set({"distributed.comm.timeouts.connect": f"{timeout_s}s"}):
        if scheduler is not None:
            try:
                client = Client(scheduler, timeout=timeout_s)
            except (OSError, TimeoutError, ValueError) as err:
                raise ValueError(
                    f"--scheduler {scheduler}: cannot reach a Dask scheduler within "
                    f"{timeout_s:g} s ({type(err).__name__}: {err})"
                ) from err
        else:
            cluster = LocalCluster(
                n_workers=workers, threads_per_worker=threads_per_worker,
                processes=True, dashboard_address=":0",  # a free port: never clash
                env=local_worker_env(workers, threads_per_worker),
            )  # fmt: skip
            client = Client(cluster)
            client.register_plugin(_NumbaThreads())
    watchdog = _Watchdog(client, no_workers_s)
    watchdog.start()
    try:
        logger.info("Dask client: %s", client)
        yield client
    except Exception as err:
        if watchdog.reason is not None:
            raise ClusterError(watchdog.reason) from err
        if _lost_scheduler(err, client):
            raise ClusterError(f"lost the Dask scheduler at {client.scheduler.address} "
                               f"({type(err).__name__})") from err  # fmt: skip
        raise
    finally:
        watchdog.stop()
        try:
            client.close()
        finally:
            if cluster is not None:
                cluster.close()


def local_worker_env(workers: int, threads_per_worker: int = 1) -> dict[str, str]:
    """Environment of ``LocalCluster`` worker processes: their share of the cores.

    The numba kernels run each call on ``NUMBA_NUM_THREADS`` threads (default: all
    cores). Every local worker doing so would put ``workers`` times more threads
    than cores on the machine, and they slow each other down; each worker gets its
    share instead (at least one thread). Dask already pins the BLAS and OpenMP pools
    of its workers to one thread.

    Examples
    --------
    >>> import os
    >>> local_worker_env(os.cpu_count() or 1)
    {'NUMBA_NUM_THREADS': '1'}
    """
    import os

    share = (os.cpu_count() or 1) // max(1, workers * threads_per_worker)
    return {"NUMBA_NUM_THREADS": str(max(1, share))}


class _NumbaThreads(WorkerPlugin):
    """Worker plugin: numba takes the ``NUMBA_NUM_THREADS`` set for the worker.

    The nanny sets :func:`local_worker_env` in the worker process once it has
    started; a worker that imported numba before (a ``spawn``-ed process
    re-imports the caller's main module, which may import evplanner) would
    keep numba's default, all cores, and fail at its next compilation ("Cannot
    set NUMBA_NUM_THREADS ... once the threads have been launched"). When the
    worker starts, before any task has launched numba's threads, numba's
    configuration is read again and its thread pool size taken from it.
    """

    name = "evplanner-numba-threads"

    def setup(self, worker) -> None:
        import sys

        if "numba" not in sys.modules:
            return  # numba will read the environment when it is imported
        from numba.core import config
        from numba.np.ufunc import parallel

        if not parallel._is_initialized:
            config.reload_config()
            # numba sized its pool on import; no thread is running yet.
            parallel.NUM_THREADS = config.NUMBA_NUM_THREADS


def _lost_scheduler(err: BaseException, client) -> bool:
    """Whether ``err`` is the client losing its scheduler (closed comms, or work
    cancelled because the connection went)."""
    from concurrent.futures import CancelledError

    from distributed.comm.core import CommClosedError

    if isinstance(err, (CommClosedError, ConnectionError)):
        return True
    return isinstance(err, CancelledError) and client.status != "running"
