"""Scale benchmark: synthetic demand from Parquet, K-Medians on a LocalCluster.

One command::

    .venv/bin/python benchmarks/scale.py                  # 10M and 50M points
    .venv/bin/python benchmarks/scale.py --sizes 10M --max-iter 5

For each size it writes synthetic demand shaped like the bundled data to
``benchmarks/out/demand-<size>.parquet`` (reused when it already holds the right
number of rows), starts a ``LocalCluster`` with two single-threaded worker processes,
reads and projects the points on the workers (the same pipeline as
``evplanner solve --workers 2``), runs Lloyd iterations of the Dask engine for k new
sites and prints wall times, the time per iteration and the peak resident memory of
the client and of each worker. A ``WorkerPlugin`` samples each worker's RSS every
0.2 s; the client's peak is ``resource.getrusage``.

The figures go into ``benchmarks/README.md`` ("## Scale").
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import statistics
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
from distributed import WorkerPlugin

from evplanner.data import load_vehicles
from evplanner.demand import demand_points, synthesize_demand
from evplanner.kmedians import k_medians
from evplanner.metrics import coverage
from evplanner.planning import Scenario, dask_client, load_demand

OUT = Path(__file__).resolve().parent / "out"
MIB = 2**20


class PeakRSS(WorkerPlugin):
    """Samples the worker process's resident memory; keeps the peak (bytes)."""

    name = "peak-rss"

    def __init__(self, interval_s: float = 0.2):
        self.interval_s = interval_s

    def setup(self, worker):
        import psutil

        self.peak = 0
        self.peak_managed = 0
        self._stop = threading.Event()
        process = psutil.Process()

        def sample():
            while not self._stop.is_set():
                self.peak = max(self.peak, process.memory_info().rss)
                # Bytes of the results Dask holds (persisted points, solver state).
                self.peak_managed = max(self.peak_managed, worker.state.nbytes)
                self._stop.wait(self.interval_s)

        threading.Thread(target=sample, daemon=True, name="peak-rss").start()

    def teardown(self, worker):
        self._stop.set()


def _peaks(dask_worker):
    import psutil

    cpu = psutil.Process().cpu_times()
    plugin = dask_worker.plugins["peak-rss"]
    return plugin.peak, cpu.user + cpu.system, plugin.peak_managed


class _IterationClock(logging.Handler):
    """Timestamps of the core's per-iteration log lines."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.times: list[float] = []

    def emit(self, record):
        if record.getMessage().startswith("iteration"):
            self.times.append(time.perf_counter())


def _size(text: str) -> int:
    text = text.upper().replace("_", "")
    scale = {"K": 1_000, "M": 1_000_000}.get(text[-1], 1)
    return int(float(text.rstrip("KM")) * scale)


def _client_peak_mib() -> float:
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthesise(n: int, label: str, chunk_rows: int) -> tuple[Path, float]:
    path = OUT / f"demand-{label}.parquet"
    if path.exists() and pq.ParquetFile(path).metadata.num_rows == n:
        return path, 0.0
    start = time.perf_counter()
    vehicles, _ = load_vehicles()
    synthesize_demand(demand_points(vehicles), n, seed=0, path=path,
                      chunk_rows=chunk_rows)  # fmt: skip
    return path, time.perf_counter() - start


def run_size(args, n: int, label: str) -> dict:
    path, synth_s = synthesise(n, label, args.chunk_rows)
    print(f"\n== {n:,} points ({path.name}, {path.stat().st_size / MIB:,.0f} MiB)"
          + (f", synthesised in {synth_s:.0f} s" if synth_s else ", reused"),
          flush=True)  # fmt: skip
    clock = _IterationClock()
    core_log = logging.getLogger("evplanner.kmedians")
    core_log.setLevel(logging.DEBUG)
    core_log.addHandler(clock)
    start = time.perf_counter()
    try:
        with dask_client(workers=args.workers) as client:
            client.register_plugin(PeakRSS())
            cluster_s = time.perf_counter() - start
            t0 = time.perf_counter()
            demand = load_demand(
                Scenario(new_sites=args.k, demand=[str(path)]),
                client=client,
                blocksize=args.blocksize,
            )
            load_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            solution = k_medians(
                demand.X, args.k, sample_weight=demand.weight, random_state=0,
                max_iter=args.max_iter, local_search=args.local_search,
                n_init=args.n_init,
            )  # fmt: skip
            fit_s = time.perf_counter() - t0
            summary = coverage(
                demand.X,
                demand.weight,
                solution.centers,
                n_new_sites=args.k,
                vehicles=demand.vehicles,
            )
            summary_s = time.perf_counter() - t0 - fit_s
            workers = client.run(_peaks)
            n_chunks = demand.X.numblocks[0]
            chunk_rows = max(demand.X.chunks[0])
    finally:
        core_log.removeHandler(clock)
    wall_s = time.perf_counter() - start
    gaps = [b - a for a, b in zip(clock.times, clock.times[1:], strict=False)]
    per_iter = statistics.median(gaps) if gaps else fit_s / max(1, solution.n_iter)
    result = {
        "n_points": n,
        "k": args.k,
        "workers": args.workers,
        "n_init": args.n_init,
        "local_search": args.local_search,
        "n_chunks": n_chunks,
        "chunk_rows": chunk_rows,
        "n_iter": solution.n_iter,
        "max_iter": args.max_iter,
        "cluster_start_s": cluster_s,
        "read_project_s": load_s,
        "fit_s": fit_s,
        "summary_s": summary_s,
        "wall_s": wall_s,
        "iteration_s_median": per_iter,
        "iteration_s_mean": fit_s / max(1, solution.n_iter),
        "objective_m": summary.objective_m,
        "client_peak_rss_mib": _client_peak_mib(),
        "worker_peak_rss_mib": {
            str(addr): v[0] / MIB for addr, v in sorted(workers.items())
        },
        "worker_peak_managed_mib": {
            str(addr): v[2] / MIB for addr, v in sorted(workers.items())
        },
        # CPU seconds the workers used in all (not wall time): comparable between
        # runs on a busy machine, unlike wall times.
        "worker_cpu_s": sum(v[1] for v in workers.values()),
        "load_average": list(os.getloadavg()),
    }
    peaks = ", ".join(f"{v:,.0f}" for v in result["worker_peak_rss_mib"].values())
    managed = ", ".join(f"{v:,.0f}" for v in result["worker_peak_managed_mib"].values())
    print(
        f"chunks: {n_chunks} x <= {chunk_rows:,} rows; cluster start {cluster_s:.1f} s"
        f"\nread + clean + project + persist: {load_s:.1f} s"
        f"\nfit: {fit_s:.1f} s for {solution.n_iter} Lloyd iterations "
        f"(median {per_iter:.2f} s per iteration, mean {result['iteration_s_mean']:.2f}"
        f" s incl. initialisation); coverage summary {summary_s:.1f} s"
        f"\nwall time: {wall_s:.1f} s"
        f"\npeak RSS: client {result['client_peak_rss_mib']:,.0f} MiB; "
        f"workers {peaks} MiB (of which Dask-held data at most {managed} MiB)"
        f"\nworker CPU time {result['worker_cpu_s']:.0f} s in all; load average "
        f"{result['load_average'][1]:.1f} (5 min) on {os.cpu_count()} cores",
        flush=True,
    )
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["10M", "50M"])
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--max-iter", type=int, default=10, help="cap on Lloyd iterations (default 10)"
    )
    parser.add_argument(
        "--local-search",
        action="store_true",
        help="also run the swap local search (many more passes)",
    )
    parser.add_argument(
        "--blocksize", default="24MB", help="partition size (default 24MB = 1M rows)"
    )
    parser.add_argument("--chunk-rows", type=int, default=1_000_000)
    parser.add_argument(
        "--n-init",
        type=int,
        default=1,
        help="K-Medians runs from different seeds (default 1)",
    )
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    logging.getLogger("distributed").setLevel(logging.WARNING)
    print(f"scale benchmark: k={args.k}, {args.workers} workers x 1 thread, "
          f"max_iter={args.max_iter}, local_search={args.local_search}, "
          f"n_init={args.n_init}")  # fmt: skip
    results = []
    for text in args.sizes:
        results.append(run_size(args, _size(text), text))
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
