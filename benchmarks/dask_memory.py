"""K-Medians on 10,000,000 points from Parquet: Dask LocalCluster vs in memory.

Run:  .venv/bin/python benchmarks/dask_memory.py [--n 10000000] [--k 100]
                                                 [--max-iter 10]

The points are synthesised once from the bundled demand (``synthesize_demand``) to
``benchmarks/out/synthetic_<n>_seed<seed>.parquet`` (git-ignored, one row group per
million rows) and reused on later runs.

Each engine runs in a fresh child process of this script, one after the other, so
that neither inherits the other's memory:

* ``numpy``: read the Parquet file with pyarrow, project to metres (EPSG:32610) and
  fit ``KMedians`` on the in-memory arrays (numba kernels, ``NUMBA_NUM_THREADS``
  left at its default: all cores).
* ``dask``: a ``distributed.LocalCluster`` with **2 worker processes x 1 thread**
  (``NUMBA_NUM_THREADS=1`` in each worker, so the two workers use the two cores
  between them); ``dask.dataframe.read_parquet`` (one partition per row group),
  projection per partition, ``persist`` on the workers, then the same fit on the
  row-chunked Dask arrays. The points are never gathered on the client.

Both fits use the same init array (``k`` points drawn with a fixed seed),
``n_init=1``, ``max_iter`` Lloyd iterations with ``tol=0`` (so both do exactly the
same number of iterations) and no local search; the script checks that they end
with the same objective and centres.

Memory: the resident set size of the child process and all its descendants
(Dask workers, nannies) is sampled every 0.1 s by a thread (psutil); the peak of
the sum is reported for the load phase and for the fit phase, together with each
process's own peak (``ru_maxrss``) for the Dask workers (via ``client.run``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _common import (
    OUT_DIR,
    PeakRSS,
    load_average,
    mib,
    print_environment,
    real_demand,
    save_json,
)

EPSG = 32610  # UTM 10N, the zone choose_crs picks for Washington


def parquet_path(n: int, seed: int) -> Path:
    return OUT_DIR / f"synthetic_{n}_seed{seed}.parquet"


def ensure_parquet(n: int, seed: int) -> Path:
    from evplanner.demand import synthesize_demand

    path = parquet_path(n, seed)
    if path.exists():
        return path
    demand, _ = real_demand()
    start = time.perf_counter()
    tmp = path.with_suffix(".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)  # git-ignored: absent in a clone
    synthesize_demand(demand, n, seed=seed, path=tmp, chunk_rows=1_000_000)
    tmp.rename(path)
    print(f"wrote {path} in {time.perf_counter() - start:.1f} s")
    return path


def _tree_rss(proc) -> int:
    """RSS of a process and all its descendants, bytes."""
    import psutil

    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass  # a process that just ended
    return total


def _project(frame):
    """One partition (lon, lat, weight) -> x_m, y_m, weight."""
    import pandas as pd
    import pyproj

    from evplanner.projection import to_metres

    x_m, y_m = to_metres(frame["lon"].to_numpy(), frame["lat"].to_numpy(),
                         pyproj.CRS.from_epsg(EPSG))  # fmt: skip
    return pd.DataFrame(
        {"x_m": x_m, "y_m": y_m, "weight": frame["weight"].to_numpy("float64")},
        index=frame.index,
    )


def make_init(path: Path, k: int, seed: int) -> np.ndarray:
    """``k`` points of the file (rows drawn with ``seed``), in metres."""
    import pyarrow.parquet as pq
    import pyproj

    from evplanner.projection import to_metres

    meta = pq.ParquetFile(path).metadata
    rows = np.sort(np.random.default_rng(seed).choice(meta.num_rows, k, replace=False))
    table = pq.read_table(path, columns=["lon", "lat"]).take(rows)
    x_m, y_m = to_metres(table["lon"].to_numpy(), table["lat"].to_numpy(),
                         pyproj.CRS.from_epsg(EPSG))  # fmt: skip
    return np.ascontiguousarray(np.column_stack([x_m, y_m]))


def run_engine(engine: str, args) -> dict:
    """Load and fit with one engine (runs in a child process)."""
    import psutil

    from evplanner.kmedians import KMedians

    path = parquet_path(args.n, args.seed)
    init = np.asarray(json.loads(args.init_json))
    me = psutil.Process()
    out = {"engine": engine}
    model = KMedians(n_clusters=args.k, init=init, n_init=1, max_iter=args.max_iter,
                     tol=0.0, local_search=False)  # fmt: skip
    # Compile (or load from numba's disk cache) the kernels before timing, as a
    # long-running service would have; the Dask workers do the same below.
    model_warm = KMedians(n_clusters=3, init=init[:3], n_init=1, max_iter=1)
    warm = np.ascontiguousarray(init[:50] + 1.0)
    model_warm.fit(warm)
    out["baseline_rss"] = me.memory_info().rss

    if engine == "numpy":
        import pyarrow.parquet as pq

        with PeakRSS(0.1, extra=lambda: _tree_rss(me) - me.memory_info().rss) as mem:
            start = time.perf_counter()
            table = pq.read_table(path, columns=["lon", "lat", "weight"])
            frame = _project(table.to_pandas())
            del table
            X = np.ascontiguousarray(frame[["x_m", "y_m"]].to_numpy())
            w = frame["weight"].to_numpy("float64").copy()
            del frame
            out["load_s"] = time.perf_counter() - start
        out["load_peak"] = mem.peak_total
        before = me.memory_info().rss
        with PeakRSS(0.1) as mem:
            start = time.perf_counter()
            model.fit(X, sample_weight=w)
            out["fit_s"] = time.perf_counter() - start
        out["fit_peak"] = mem.peak_total
        out["fit_rss_before"] = before
        out["n_points"] = int(X.shape[0])
        out["threads"] = f"numba {os.environ.get('NUMBA_NUM_THREADS', 'default')}"
    else:
        import dask
        import dask.dataframe as dd
        from distributed import Client, LocalCluster

        dask.config.set({"distributed.worker.daemon": True})
        cluster = LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True,
            dashboard_address=None, env={"NUMBA_NUM_THREADS": "1"},
            memory_limit="8GiB",
        )  # fmt: skip
        client = Client(cluster)

        def warm_worker():
            import numpy

            from evplanner.kmedians import KMedians as KM

            KM(n_clusters=3, init=numpy.asarray(init[:3]), n_init=1,
               max_iter=1).fit(numpy.asarray(warm))  # fmt: skip
            import numba

            return numba.get_num_threads()

        out["worker_numba_threads"] = list(client.run(warm_worker).values())
        out["baseline_rss"] = _tree_rss(me)
        with PeakRSS(0.1, extra=lambda: _tree_rss(me) - me.memory_info().rss) as mem:
            start = time.perf_counter()
            # One partition per row group (1,000,000 rows).
            ddf = dd.read_parquet(path, columns=["lon", "lat", "weight"],
                                  split_row_groups=True)  # fmt: skip
            meta = {"x_m": "f8", "y_m": "f8", "weight": "f8"}
            ddf = ddf.map_partitions(_project, meta=meta)
            arr = ddf.to_dask_array(lengths=True)
            X = arr[:, :2]
            w = arr[:, 2]
            X, w = client.persist([X, w])
            from distributed import wait

            wait([X, w])
            out["load_s"] = time.perf_counter() - start
        out["load_peak"] = mem.peak_total
        out["chunks"] = [int(c) for c in X.chunks[0]]
        before = _tree_rss(me)
        with PeakRSS(0.1, extra=lambda: _tree_rss(me) - me.memory_info().rss) as mem:
            start = time.perf_counter()
            model.fit(X, sample_weight=w)
            out["fit_s"] = time.perf_counter() - start
        out["fit_peak"] = mem.peak_total
        out["fit_peak_client"] = mem.peak_self
        out["fit_rss_before"] = before
        out["n_points"] = int(X.shape[0])

        def maxrss():
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

        out["worker_maxrss"] = list(client.run(maxrss).values())
        out["threads"] = "2 workers x 1 thread, NUMBA_NUM_THREADS=1 per worker"
        client.close()
        cluster.close()
    out["inertia"] = float(model.inertia_)
    out["n_iter"] = int(model.n_iter_)
    out["centers"] = model.cluster_centers_.tolist()
    import resource

    out["client_maxrss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000_000)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--max-iter", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--engine", choices=["numpy", "dask"], help=argparse.SUPPRESS)
    parser.add_argument("--init-json", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.engine:  # child process: one engine, JSON on the last line of stdout
        result = run_engine(args.engine, args)
        print(json.dumps(result))
        return

    print(f"# Dask path vs in memory: n = {args.n:,}, k = {args.k}, "
          f"max_iter = {args.max_iter} (tol=0, no local search)")  # fmt: skip
    print_environment()
    path = ensure_parquet(args.n, args.seed)
    print(f"data        : {path} ({mib(path.stat().st_size):.0f} MiB on disk)")
    init = make_init(path, args.k, args.seed)
    results = {}
    for engine in ("numpy", "dask"):
        print(f"load average: {load_average()} (before {engine})")
        cmd = [sys.executable, __file__, "--engine", engine, "--n", str(args.n),
               "--k", str(args.k), "--max-iter", str(args.max_iter),
               "--seed", str(args.seed),
               "--init-json", json.dumps(init.tolist())]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print(proc.stdout[-3000:], proc.stderr[-6000:])
            raise SystemExit(f"{engine} run failed ({proc.returncode})")
        results[engine] = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"load average: {load_average()} (after)")

    npy, dsk = results["numpy"], results["dask"]
    same_obj = np.isclose(npy["inertia"], dsk["inertia"], rtol=1e-9)
    same_c = np.allclose(npy["centers"], dsk["centers"], rtol=1e-6, atol=0)
    print()
    print(f"Dask setup  : {dsk['threads']}; {len(dsk['chunks'])} chunks of "
          f"{max(dsk['chunks']):,} rows; workers' numba threads "
          f"{dsk['worker_numba_threads']}")  # fmt: skip
    print(f"points      : numpy {npy['n_points']:,}, dask {dsk['n_points']:,}")
    print(f"iterations  : numpy {npy['n_iter']}, dask {dsk['n_iter']}")
    print(f"objective   : numpy {npy['inertia']:.6e}, dask {dsk['inertia']:.6e} "
          f"-> same: {same_obj}; centres same (1e-6 rel): {same_c}")  # fmt: skip
    print()
    print(f"{'':<34s}{'in memory':>14s}{'Dask':>14s}{'Dask/mem':>10s}")

    def line(label, a, b, fmt="{:14.2f}"):
        print(f"{label:<34s}{fmt.format(a)}{fmt.format(b)}{b / a:10.2f}")
        return b / a

    ratios = {}
    line("load: read + project (s)", npy["load_s"], dsk["load_s"])
    ratios["fit_time"] = line("fit wall time (s)", npy["fit_s"], dsk["fit_s"])
    line("time per iteration (s)", npy["fit_s"] / npy["n_iter"],
         dsk["fit_s"] / dsk["n_iter"])  # fmt: skip
    line("RSS before fit, all procs (MiB)", mib(npy["fit_rss_before"]),
         mib(dsk["fit_rss_before"]))  # fmt: skip
    ratios["fit_peak"] = line("peak RSS during fit (MiB)", mib(npy["fit_peak"]),
                              mib(dsk["fit_peak"]))  # fmt: skip
    ratios["fit_peak_over_baseline"] = line(
        "  of which above pre-fit RSS (MiB)",
        mib(npy["fit_peak"] - npy["fit_rss_before"]),
        mib(dsk["fit_peak"] - dsk["fit_rss_before"]),
    )
    ratios["run_peak"] = line(
        "peak RSS, load or fit (MiB)",
        mib(max(npy["load_peak"], npy["fit_peak"])),
        mib(max(dsk["load_peak"], dsk["fit_peak"])),
    )
    print(f"Dask client process peak during fit: {mib(dsk['fit_peak_client']):.0f} "
          f"MiB; workers' own peaks (ru_maxrss): "
          f"{[round(mib(x)) for x in dsk['worker_maxrss']]} MiB")  # fmt: skip
    for key, label in [("fit_time", "fit wall time"), ("fit_peak", "peak memory")]:
        verdict = "MET" if ratios[key] <= 1.5 else "MISSED"
        print(f"target Dask within 1.5x of in memory, {label}: "
              f"{ratios[key]:.2f}x {verdict}")  # fmt: skip
    for r in results.values():
        r.pop("centers")
    save_json("dask_memory", {"args": {k: v for k, v in vars(args).items()
                                       if k != "init_json"},
                              "results": results, "ratios": ratios,
                              "same_objective": bool(same_obj),
                              "same_centers": bool(same_c)})  # fmt: skip


if __name__ == "__main__":
    main()
