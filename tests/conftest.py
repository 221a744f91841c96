"""Shared fixtures: small seeded data and paths to the raw reference files."""

from __future__ import annotations

import os
from pathlib import Path

import dask
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
# The raw published files live beside the repository for building and testing only.
SHARED_DATA = Path(
    os.environ.get("EVPLANNER_SHARED_DATA", ROOT.parent / "shared" / "data")
)
RAW_VEHICLES = SHARED_DATA / "Electric_Vehicle_Population_Data.csv"
RAW_STATIONS_2023 = SHARED_DATA / "alt_fuel_stations_WA_2023-03-28.csv"
RAW_STATIONS_2025 = SHARED_DATA / "alt_fuel_stations_WA_2025-02-09.csv"
RAW_TRACTS = SHARED_DATA / "CenPop2020_Mean_TR53.csv"


@pytest.fixture
def raw_vehicles_csv() -> Path:
    if not RAW_VEHICLES.exists():
        pytest.skip(f"raw WA DOL file not present at {RAW_VEHICLES}")
    return RAW_VEHICLES


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture
def clustered_points(rng) -> tuple[np.ndarray, np.ndarray]:
    """300 points in 4 clusters (metres), with weights 1..5."""
    centres = np.array(
        [[0.0, 0.0], [10_000.0, 0.0], [0.0, 10_000.0], [9_000.0, 9_000.0]]
    )
    pick = rng.integers(0, len(centres), size=300)
    X = centres[pick] + rng.normal(0, 800.0, size=(300, 2))
    w = rng.integers(1, 6, size=300).astype(float)
    return X, w


@pytest.fixture
def dask_threads():
    """Real Dask scheduling (threads) without a process start-up cost per test."""
    with dask.config.set(scheduler="threads"):
        yield


@pytest.fixture
def cluster_client():
    """A client of a real two-worker ``LocalCluster`` (one process per worker)."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def vehicles():
    """The bundled vehicle table (:func:`evplanner.data.load_vehicles`)."""
    from evplanner.data import load_vehicles

    return load_vehicles()[0]


@pytest.fixture(scope="module")
def tracts():
    """The bundled census tract table (:func:`evplanner.data.load_tracts`)."""
    from evplanner.data import load_tracts

    return load_tracts()
