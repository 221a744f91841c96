"""Shared helpers for the evplanner benchmarks (not part of the package).

Every benchmark measures its reference in the same process as the thing it judges,
so the ratios it prints do not depend on how busy the machine was on another day.
The helpers here load the bundled demand in metres, draw synthetic points, time
callables a few times, sample resident memory in a background thread and print the
environment (thread pools, numba threads, BLAS kernel) that the timings depend on.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
OUT_DIR = BENCH_DIR / "out"  # git-ignored: synthetic Parquet, logs, JSON results
REPO_DIR = BENCH_DIR.parent

if str(REPO_DIR) not in sys.path:
    # Run as `python benchmarks/x.py` from a checkout without installing.
    sys.path.insert(0, str(REPO_DIR))


# ---------------------------------------------------------------------------
# Environment
# ---------------------------------------------------------------------------


def environment() -> dict:
    """What the timings depend on: machine, versions, thread pools, BLAS kernel."""
    import numba
    import sklearn
    import threadpoolctl

    pools = [
        {
            "api": info.get("internal_api"),
            "threads": info.get("num_threads"),
            "arch": info.get("architecture"),
            "lib": Path(info.get("filepath", "")).name,
        }
        for info in threadpoolctl.threadpool_info()
    ]
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "date_utc": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "numba": numba.__version__,
        "numba_threads": numba.get_num_threads(),
        "numba_threading_layer": _numba_layer(),
        "threadpools": pools,
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "OPENBLAS_L2_SIZE": os.environ.get("OPENBLAS_L2_SIZE"),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
    }


def _numba_layer() -> str:
    import numba

    try:
        return numba.threading_layer()
    except ValueError:
        # Only known once a parallel kernel has run.
        return "(not yet initialised)"


def print_environment(env: dict | None = None) -> dict:
    env = env or environment()
    print(f"date        : {env['date_utc']}")
    print(f"machine     : {env['cpu']}, {env['cores']} cores")
    print(
        f"versions    : python {env['python']}, numpy {env['numpy']}, "
        f"scikit-learn {env['scikit-learn']}, numba {env['numba']}"
    )
    print(
        f"numba       : {env['numba_threads']} threads, "
        f"layer {env['numba_threading_layer']}"
    )
    for pool in env["threadpools"]:
        print(
            f"threadpool  : {pool['api']} {pool['threads']} threads "
            f"({pool['arch']}, {pool['lib']})"
        )
    print(
        f"env vars    : OPENBLAS_CORETYPE={env['OPENBLAS_CORETYPE']} "
        f"OPENBLAS_L2_SIZE={env['OPENBLAS_L2_SIZE']} "
        f"OMP_NUM_THREADS={env['OMP_NUM_THREADS']}"
    )
    return env


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------


def real_demand():
    """Bundled vehicles aggregated to weighted demand points, plus their CRS.

    Returns
    -------
    demand : pandas.DataFrame
        ``lon``, ``lat``, ``weight`` (vehicles per location), one row per location.
    crs : pyproj.CRS
        The projected CRS (UTM zone of the data) that distances are measured in.
    """
    from evplanner.data import load_vehicles
    from evplanner.demand import demand_points
    from evplanner.projection import choose_crs

    vehicles, _ = load_vehicles()
    demand = demand_points(vehicles)
    return demand, choose_crs(demand["lon"], demand["lat"])


def to_xy_m(frame, crs) -> np.ndarray:
    """``lon``/``lat`` columns to a C-contiguous ``(n, 2)`` float64 array in metres."""
    from evplanner.projection import to_metres

    x_m, y_m = to_metres(frame["lon"].to_numpy(), frame["lat"].to_numpy(), crs)
    return np.ascontiguousarray(np.column_stack([x_m, y_m]))


def synthetic_xy_m(n: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` synthetic demand points shaped like the bundled data, in metres.

    Returns
    -------
    X_m : np.ndarray, shape (n, 2), float64
    weight : np.ndarray, shape (n,), float64 (all ones: one vehicle each)
    """
    from evplanner.demand import synthesize_demand

    demand, crs = real_demand()
    points = synthesize_demand(demand, n, seed=seed)
    return to_xy_m(points, crs), points["weight"].to_numpy("float64")


# ---------------------------------------------------------------------------
# Timing and memory
# ---------------------------------------------------------------------------


@dataclass
class Timing:
    """Wall-clock seconds of repeated runs of one callable."""

    label: str
    seconds: list[float] = field(default_factory=list)

    @property
    def best(self) -> float:
        return min(self.seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def line(self, scale: float = 1.0, note: str = "") -> str:
        return (
            f"{self.label:<44s} best {self.best * scale:9.3f} s  "
            f"median {self.median * scale:9.3f} s  (n={len(self.seconds)}){note}"
        )


def time_it(label: str, func, *, repeat: int = 5, warmup: int = 1) -> Timing:
    """Run ``func()`` ``warmup`` times untimed (JIT, caches), then ``repeat`` timed."""
    for _ in range(warmup):
        func()
    timing = Timing(label)
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        timing.seconds.append(time.perf_counter() - start)
    return timing


def time_interleaved(funcs: dict, *, repeat: int = 5, warmup: int = 1) -> dict:
    """Time several callables in round-robin order.

    The machine may be shared, so each round runs every contender once: a busy
    spell then slows all of them rather than whichever happened to be running.

    Parameters
    ----------
    funcs : dict of str -> callable
        Label -> zero-argument callable.

    Returns
    -------
    dict of str -> Timing
    """
    for _ in range(warmup):
        for func in funcs.values():
            func()
    out = {label: Timing(label) for label in funcs}
    for _ in range(repeat):
        for label, func in funcs.items():
            start = time.perf_counter()
            func()
            out[label].seconds.append(time.perf_counter() - start)
    return out


def load_average() -> str:
    """1, 5 and 15 minute load averages (other work on a shared machine)."""
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


class PeakRSS:
    """Sample this process's resident set size in a thread; keep the peak.

    ``extra`` is an optional callable returning more bytes to add to each sample
    (for example the summed RSS of Dask workers), sampled at the same instants.
    """

    def __init__(self, interval_s: float = 0.05, extra=None):
        import psutil

        self._proc = psutil.Process()
        self._interval_s = interval_s
        self._extra = extra
        self._stop = threading.Event()
        self.peak_self = 0
        self.peak_extra = 0
        self.peak_total = 0
        self.baseline_self = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            own = self._proc.memory_info().rss
            more = self._extra() if self._extra is not None else 0
            self.peak_self = max(self.peak_self, own)
            self.peak_extra = max(self.peak_extra, more)
            self.peak_total = max(self.peak_total, own + more)
            self._stop.wait(self._interval_s)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        return False


def mib(nbytes: float) -> float:
    return nbytes / 2**20


def l1_objective(X: np.ndarray, w: np.ndarray, centers: np.ndarray) -> float:
    """Weighted sum of L1 distances to the nearest centre (the p-median objective)."""
    from evplanner._kernels import assign_l1

    _, dist = assign_l1(X, np.asarray(centers, dtype=np.float64))
    return float(np.dot(w, dist))


def save_json(name: str, payload: dict) -> Path:
    """Write results to ``benchmarks/out/<name>.json`` (for the README, not git)."""
    import json

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=float))
    return path
