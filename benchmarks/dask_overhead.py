"""The Dask path's overhead, and the time to a solution against scikit-learn KMeans.

Run:  .venv/bin/python benchmarks/dask_overhead.py [--sizes 1M 2M] [--k 50]
                                                   [--workers 2] [--repeat 1]
                                                   [--skip-kmeans]

Two questions of issue 13, on synthetic demand shaped like the bundled data
(``benchmarks/out/synthetic_<n>_seed0.parquet``: written once as ``evplanner synth
--n <n>`` writes it, one row group per million rows, and reused):

1. **Dask overhead.** ``evplanner solve --k 50 --input FILE`` in memory against the
   same command with ``--workers 2`` (a ``LocalCluster`` of 2 worker processes x 1
   thread). Each command runs in a fresh child process (``python -m evplanner.cli``,
   this checkout first on ``sys.path``), in memory and on the cluster alternately;
   the wall time of the whole command (imports, cluster start, read, fit, metrics,
   files written) is what is compared, as in the issue, and the solve's own
   ``load``/``fit``/``metrics`` seconds (from ``--metrics``) are printed beside it.
   Target: the cluster run within 1.3x of the in-memory run from 1M points up. The
   script checks that both write the same sites and objective.
2. **Time to a solution.** On the largest size's points (projected to metres as the
   CLI projects them), ``KMedians(k, random_state=0).fit`` (defaults: 3 restarts,
   swap local search) against ``sklearn.cluster.KMeans(k, n_init=3,
   random_state=0).fit``, in this process, after a small warm-up fit of each
   (numba kernels loaded from their disk cache). Target: KMedians no slower.

The load average is printed before and after every timed run: the machine may be
shared, and a busy spell slows whatever runs during it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import (
    REPO_DIR,
    load_average,
    print_environment,
    save_json,
)
from dask_memory import ensure_parquet

TARGET_OVERHEAD = 1.3


def parse_size(text: str) -> int:
    """``"2M"`` -> 2,000,000; ``"500k"`` -> 500,000; plain integers as they are."""
    scale = {"k": 10**3, "m": 10**6}.get(text[-1].lower(), 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


def run_solve(path: Path, k: int, workers: int | None, out_dir: Path) -> dict:
    """One ``evplanner solve`` in a fresh child process: wall time and its output."""
    out_dir.mkdir(parents=True, exist_ok=True)
    sites, metrics = out_dir / "sites.csv", out_dir / "metrics.json"
    command = [sys.executable, "-m", "evplanner.cli", "solve", "--k", str(k),
               "--input", str(path), "--out", str(sites), "--metrics", str(metrics),
               "--quiet"]  # fmt: skip
    if workers is not None:
        command += ["--workers", str(workers)]
    env = {**os.environ, "PYTHONPATH": str(REPO_DIR)}
    load_before = load_average()
    start = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    wall_s = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{proc.stderr[-3000:]}")
    answer = json.loads(metrics.read_text())
    import pandas as pd

    table = pd.read_csv(sites)
    return {
        "mode": "in memory" if workers is None else f"LocalCluster {workers} workers",
        "wall_s": wall_s,
        "seconds": answer["run"]["seconds"],
        "n_partitions": answer["run"]["n_partitions"],
        "objective_m": answer["fit"]["objective_m"],
        "n_iter": answer["fit"]["n_iter"],
        "sites_xy": table[["x_m", "y_m"]].to_numpy().tolist(),
        "load_before": load_before,
        "load_after": load_average(),
    }


def overhead(sizes: list[int], k: int, workers: int, repeat: int) -> list[dict]:
    results = []
    with tempfile.TemporaryDirectory(prefix="dask_overhead_") as tmp:
        for n in sizes:
            path = ensure_parquet(n, 0)
            runs = {"memory": [], "dask": []}
            for r in range(repeat):
                # Alternate, so that a busy spell does not fall on one mode only.
                order = ("memory", "dask") if r % 2 == 0 else ("dask", "memory")
                for mode in order:
                    res = run_solve(path, k, None if mode == "memory" else workers,
                                    Path(tmp) / f"{n}-{mode}-{r}")  # fmt: skip
                    runs[mode].append(res)
                    s = res["seconds"]
                    print(
                        f"n={n:>9,}  {res['mode']:<22s} wall {res['wall_s']:7.1f} s "
                        f"(load {s['load']:5.1f}, fit {s['fit']:6.1f}, metrics "
                        f"{s['metrics']:5.1f}), {res['n_partitions']:3d} partitions, "
                        f"{res['n_iter']} iterations; load average "
                        f"{res['load_before']} -> {res['load_after']}",
                        flush=True,
                    )
            mem = min(runs["memory"], key=lambda x: x["wall_s"])
            dsk = min(runs["dask"], key=lambda x: x["wall_s"])
            same_sites = all(
                np.array_equal(np.asarray(a["sites_xy"]), np.asarray(mem["sites_xy"]))
                for a in runs["memory"] + runs["dask"]
            )
            rel = abs(dsk["objective_m"] - mem["objective_m"]) / mem["objective_m"]
            ratio = dsk["wall_s"] / mem["wall_s"]
            fit_ratio = dsk["seconds"]["fit"] / mem["seconds"]["fit"]
            verdict = "met" if ratio <= TARGET_OVERHEAD else "MISSED"
            print(
                f"n={n:>9,}  best wall: in memory {mem['wall_s']:.1f} s, cluster "
                f"{dsk['wall_s']:.1f} s -> ratio {ratio:.2f}x (fit alone "
                f"{fit_ratio:.2f}x); target <= {TARGET_OVERHEAD}x: {verdict}"
            )
            print(
                f"n={n:>9,}  same sites in every run: {same_sites}; objective "
                f"relative difference {rel:.1e}"
            )
            for entry in runs["memory"] + runs["dask"]:
                entry.pop("sites_xy")
            results.append({
                "n": n, "memory": runs["memory"], "dask": runs["dask"],
                "ratio_wall": ratio, "ratio_fit": fit_ratio, "same_sites": same_sites,
                "objective_rel_diff": rel,
            })  # fmt: skip
    return results


def projected_points(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The file's points in metres, in the CRS the CLI chooses for them."""
    import pyarrow.parquet as pq

    from evplanner.projection import choose_crs, to_metres

    table = pq.read_table(path, columns=["lon", "lat", "weight"])
    lon, lat = table["lon"].to_numpy(), table["lat"].to_numpy()
    weight = table["weight"].to_numpy().astype("float64")
    crs = choose_crs(lon, lat, "auto", weight=weight)
    x_m, y_m = to_metres(lon, lat, crs)
    return np.ascontiguousarray(np.column_stack([x_m, y_m])), weight


def time_to_solution(n: int, k: int, repeat: int) -> dict:
    from sklearn.cluster import KMeans

    from evplanner._kernels import assign_l1
    from evplanner.kmedians import KMedians

    X, w = projected_points(ensure_parquet(n, 0))
    # Warm-up: numba kernels (from the disk cache) and scikit-learn's pools.
    KMedians(5, random_state=0).fit(X[:60_000])
    KMeans(5, n_init=1, random_state=0).fit(X[:60_000])
    contenders = {
        "KMedians(k, random_state=0)": lambda: KMedians(k, random_state=0),
        "KMeans(k, n_init=3, random_state=0)": lambda: KMeans(
            k, n_init=3, random_state=0
        ),
    }
    times = {label: [] for label in contenders}
    models = {}
    for _ in range(repeat):
        for label, make in contenders.items():
            model = make()
            before = load_average()
            start = time.perf_counter()
            model.fit(X)
            times[label].append(time.perf_counter() - start)
            models[label] = model
            print(
                f"{label:<38s} {times[label][-1]:7.1f} s  ({model.n_iter_} "
                f"iterations; load average {before} -> {load_average()})",
                flush=True,
            )
    kmed, kmeans = models.values()
    l1 = {
        label: float(np.dot(w, assign_l1(X, np.asarray(m.cluster_centers_, "f8"))[1]))
        for label, m in models.items()
    }
    best = {label: min(t) for label, t in times.items()}
    ratio = (
        best["KMedians(k, random_state=0)"]
        / best["KMeans(k, n_init=3, random_state=0)"]
    )
    verdict = "met" if ratio <= 1.0 else "MISSED"
    print(
        f"time to a solution, {n:,} points, k={k}: KMedians / KMeans(n_init=3) = "
        f"{ratio:.2f}x (best of {repeat}); target <= 1.0x: {verdict}"
    )
    print(
        "L1 objective (vehicle-metres): "
        + ", ".join(f"{label} {value:.6g}" for label, value in l1.items())
    )
    del kmed, kmeans
    return {"n": n, "k": k, "seconds": times, "ratio": ratio, "l1_objective": l1}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["1M", "2M"])
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs of each contender (alternated)")  # fmt: skip
    parser.add_argument("--skip-overhead", action="store_true")
    parser.add_argument("--skip-kmeans", action="store_true")
    args = parser.parse_args(argv)
    sizes = [parse_size(s) for s in args.sizes]

    env = print_environment()
    print(f"load average: {load_average()}")
    payload = {"environment": env, "k": args.k, "workers": args.workers}
    if not args.skip_overhead:
        print(f"\n--- evplanner solve --k {args.k}: in memory vs --workers "
              f"{args.workers} ---")  # fmt: skip
        payload["overhead"] = overhead(sizes, args.k, args.workers, args.repeat)
    if not args.skip_kmeans:
        print(f"\n--- time to a solution on {max(sizes):,} points, k = {args.k} ---")
        payload["time_to_solution"] = time_to_solution(max(sizes), args.k, args.repeat)
    print(f"\nload average: {load_average()}")
    print(f"saved {save_json('dask_overhead', payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
