"""`evplanner solve` on real Dask clusters: same answer everywhere, faults.

A real ``dask scheduler`` and two ``dask worker`` processes are started from the
venv's ``bin/`` on loopback (free ports, no dashboard, one thread each) and the
console script runs against them as a subprocess. The reference answer is the
in-memory run of the same input and seed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evplanner.cli import main
from evplanner.data import load_vehicles
from evplanner.demand import demand_points, synthesize_demand

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

BIN = Path(sys.executable).parent
EVPLANNER = str(BIN / "evplanner")
K, SEED = 12, 4


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LoopbackCluster:
    """``dask scheduler`` + ``dask worker`` subprocesses on 127.0.0.1."""

    def __init__(self, directory: Path, n_workers: int = 2):
        self.directory = directory
        self.address = f"tcp://127.0.0.1:{free_port()}"
        self.scheduler = None
        self.workers: dict[str, subprocess.Popen] = {}
        self.n_workers = n_workers

    def _spawn(self, name: str, *args: str) -> subprocess.Popen:
        log = (self.directory / f"{name}.log").open("wb")
        return subprocess.Popen(
            [str(BIN / "dask"), *args], stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def start(self) -> LoopbackCluster:
        port = self.address.rsplit(":", 1)[1]
        self.scheduler = self._spawn(
            "scheduler", "scheduler", "--host", "127.0.0.1", "--port", port,
            "--no-dashboard",
        )  # fmt: skip
        for i in range(self.n_workers):
            name = f"w{i}"
            # No nanny: a killed worker stays dead, as when a machine is lost.
            self.workers[name] = self._spawn(
                name, "worker", self.address, "--name", name, "--nthreads", "1",
                "--no-nanny", "--no-dashboard", "--host", "127.0.0.1",
                "--memory-limit", "4GiB",
                "--local-directory", str(self.directory / f"{name}-space"),
            )  # fmt: skip
        from distributed import Client

        with Client(self.address, timeout=60) as client:
            client.wait_for_workers(self.n_workers, timeout=120)
        return self

    def n_alive(self) -> int:
        from distributed import Client

        with Client(self.address, timeout=30) as client:
            return len(client.scheduler_info(n_workers=-1)["workers"])

    def stop(self) -> None:
        # Workers first (they close cleanly while the scheduler is still there).
        for group in (list(self.workers.values()), [self.scheduler]):
            for proc in group:
                if proc is not None and proc.poll() is None:
                    proc.terminate()
            for proc in group:
                if proc is None:
                    continue
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=15)

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted(self.directory.glob("*.log"))
        )


@pytest.fixture
def loopback_cluster(tmp_path):
    cluster = LoopbackCluster(tmp_path)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def demand_file(tmp_path_factory) -> Path:
    """200,000 synthetic points in 8 row groups (8 partitions at blocksize 500kB)."""
    vehicles, _ = load_vehicles()
    path = tmp_path_factory.mktemp("cluster") / "demand.parquet"
    synthesize_demand(demand_points(vehicles), 200_000, seed=11, path=path,
                      chunk_rows=25_000)  # fmt: skip
    return path


def solve_args(out: Path, *extra) -> list[str]:
    return ["solve", "--k", str(K), "--seed", str(SEED), "--out", str(out / "s.csv"),
            "--metrics", str(out / "m.json"), *map(str, extra)]  # fmt: skip


def read_answer(out: Path) -> tuple[pd.DataFrame, dict]:
    return pd.read_csv(out / "s.csv"), json.loads((out / "m.json").read_text())


@pytest.fixture(scope="module")
def in_memory(tmp_path_factory, demand_file):
    out = tmp_path_factory.mktemp("memory")
    assert main(solve_args(out, "--input", demand_file, "--quiet")) == 0
    return read_answer(out)


def assert_same_answer(got, want):
    sites, metrics = got
    ref_sites, ref_metrics = want
    assert metrics["coverage"]["n_points"] == ref_metrics["coverage"]["n_points"]
    assert metrics["demand"]["total_weight"] == ref_metrics["demand"]["total_weight"]
    # Same centres (the core's engines agree to the last bit on integer weights).
    np.testing.assert_allclose(sites[["x_m", "y_m"]], ref_sites[["x_m", "y_m"]],
                               rtol=1e-12, atol=0)  # fmt: skip
    np.testing.assert_array_equal(sites["demand_points"], ref_sites["demand_points"])
    np.testing.assert_allclose(sites["vehicles_served"], ref_sites["vehicles_served"])
    got, want = metrics["coverage"], ref_metrics["coverage"]
    assert got["objective_m"] == pytest.approx(want["objective_m"], rel=1e-12)
    assert got["coverage_share"] == pytest.approx(want["coverage_share"])
    assert metrics["fit"]["n_iter"] == ref_metrics["fit"]["n_iter"]


def run_cli(*argv, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([EVPLANNER, *map(str, argv)], capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip


def test_remote_scheduler_gives_the_in_memory_answer(
    loopback_cluster, demand_file, in_memory, tmp_path
):
    proc = run_cli(
        *solve_args(
            tmp_path,
            "--input",
            demand_file,
            "--scheduler",
            loopback_cluster.address,
            "--blocksize",
            "500kB",
        )
    )
    assert proc.returncode == 0, proc.stderr + loopback_cluster.logs()
    got = read_answer(tmp_path)
    assert got[1]["run"]["mode"].startswith(
        f"Dask cluster at {loopback_cluster.address}"
    )
    assert got[1]["run"]["n_partitions"] == 8  # really chunked
    assert_same_answer(got, in_memory)


def test_worker_killed_during_solve_same_answer(
    loopback_cluster, demand_file, in_memory, tmp_path
):
    stdout = (tmp_path / "stdout.txt").open("w")
    proc = subprocess.Popen(
        [EVPLANNER, *solve_args(tmp_path, "--input", demand_file, "--scheduler",
                                loopback_cluster.address, "--blocksize", "500kB")],
        stdout=stdout, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines = []
    try:
        # Kill a worker once the solver is iterating: its chunks of the persisted
        # points are lost and must be recomputed from the Parquet file.
        for line in proc.stderr:
            lines.append(line)
            if "iteration 1:" in line:
                break
        assert proc.poll() is None, "".join(lines)
        victim = loopback_cluster.workers["w1"]
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)
        killed_at = time.monotonic()
        rest = proc.stderr.read()
        proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
        stdout.close()
    stderr = "".join(lines) + rest
    assert proc.returncode == 0, stderr + loopback_cluster.logs()
    assert time.monotonic() - killed_at >= 0
    assert loopback_cluster.n_alive() == 1
    assert_same_answer(read_answer(tmp_path), in_memory)


def test_local_cluster_aggregated_vehicles_same_answer(tmp_path):
    """Filters, range weighting and aggregation on the workers match memory."""
    options = ["--county", "King,Snohomish", "--model-years", "2015:2023",
               "--weighting", "range", "--k", "6", "--seed", "2"]  # fmt: skip
    memory, cluster = tmp_path / "memory", tmp_path / "cluster"
    memory.mkdir(), cluster.mkdir()
    assert main(["solve", *options, "--quiet", "--out", str(memory / "s.csv"),
                 "--metrics", str(memory / "m.json")]) == 0  # fmt: skip
    proc = run_cli("solve", *options, "--workers", "2", "--out", cluster / "s.csv",
                   "--metrics", cluster / "m.json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    got, want = read_answer(cluster), read_answer(memory)
    assert got[1]["run"]["mode"].startswith("Dask cluster at")
    assert got[1]["demand"]["aggregated"]
    assert got[1]["demand"]["total_vehicles"] == want[1]["demand"]["total_vehicles"]
    # Range weights are whole miles or medians of them: sums are exact.
    assert got[1]["demand"]["total_weight"] == want[1]["demand"]["total_weight"]
    got_report, want_report = (
        got[1]["load_report"]["demand"],
        want[1]["load_report"]["demand"],
    )
    assert got_report["rows_kept"] == want_report["rows_kept"]
    assert got_report["dropped"] == want_report["dropped"]
    assert_same_answer(got, want)


def test_unreachable_scheduler_exits_2_quickly(tmp_path):
    address = f"tcp://127.0.0.1:{free_port()}"  # nobody listens there
    start = time.monotonic()
    proc = run_cli("solve", "--k", "3", "--scheduler", address, "--timeout", "3s",
                   "--out", tmp_path / "s.csv", timeout=120)  # fmt: skip
    elapsed = time.monotonic() - start
    assert proc.returncode == 2
    assert f"--scheduler {address}: cannot reach a Dask scheduler within 3 s" in (
        proc.stderr
    )
    assert "Traceback" not in proc.stderr
    assert elapsed < 60
    assert not (tmp_path / "s.csv").exists()


def _solve_until_iterating(tmp_path, demand_file, cluster, *extra):
    """Start a solve on ``cluster``; return it once K-Medians is iterating."""
    proc = subprocess.Popen(
        [EVPLANNER, *solve_args(tmp_path, "--input", demand_file, "--scheduler",
                                cluster.address, "--blocksize", "500kB", *extra)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if "iteration 1:" in line:
            return proc, lines
    raise AssertionError("the solve never iterated:\n" + "".join(lines))


def test_all_workers_killed_fails_fast_with_one_line(
    loopback_cluster, demand_file, tmp_path
):
    proc, lines = _solve_until_iterating(
        tmp_path, demand_file, loopback_cluster, "--worker-timeout", "5s"
    )
    try:
        for worker in loopback_cluster.workers.values():
            os.kill(worker.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, "".join(lines) + stderr
    assert time.monotonic() - killed_at < 60
    errors = [line for line in stderr.splitlines() if "error" in line]
    assert errors == [
        f"evplanner solve: cluster error: the Dask cluster at "
        f"{loopback_cluster.address} has had no worker for 5 s"
    ], stderr
    assert "Traceback" not in stderr
    assert not (tmp_path / "s.csv").exists()


def test_scheduler_stopped_fails_with_one_line(loopback_cluster, demand_file, tmp_path):
    proc, lines = _solve_until_iterating(tmp_path, demand_file, loopback_cluster)
    try:
        os.kill(loopback_cluster.scheduler.pid, signal.SIGKILL)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, "".join(lines) + stderr
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith(
        "evplanner solve: cluster error: lost the Dask scheduler at"
    ), stderr
