"""Demand points: aggregation, filters, weightings, the synthetic generator."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evplanner.data import load_vehicles
from evplanner.demand import demand_points, filter_vehicles, synthesize_demand


@pytest.fixture(scope="module")
def vehicles():
    return load_vehicles()[0]


def test_aggregation_preserves_total_weight(vehicles):
    points = demand_points(vehicles)
    assert points["weight"].sum() == pytest.approx(vehicles["weight"].sum())
    assert points["vehicles"].sum() == len(vehicles)
    assert not points.duplicated(["lon", "lat"]).any()
    distinct = vehicles[["lon", "lat"]].drop_duplicates()
    assert len(points) == len(distinct)


def test_filters(vehicles):
    king = demand_points(vehicles, counties=["KING"])
    assert king["vehicles"].sum() == (vehicles["county"] == "King").sum()
    bev = demand_points(vehicles, ev_types=["bev"])
    assert bev["vehicles"].sum() == (vehicles["ev_type"] == "BEV").sum()
    years = demand_points(vehicles, model_years=(2020, 2021))
    assert years["vehicles"].sum() == vehicles["model_year"].between(2020, 2021).sum()
    empty = demand_points(vehicles, counties=["Atlantis"])
    assert empty.empty


def test_filter_errors(vehicles):
    with pytest.raises(ValueError, match="expected BEV and/or PHEV, got \\['EV'\\]"):
        filter_vehicles(vehicles, ev_types=["EV"])
    with pytest.raises(ValueError, match="low <= high"):
        filter_vehicles(vehicles, model_years=(2023, 2020))


def test_weightings():
    vehicles = pd.DataFrame({
        "lon": [1.0, 1.0, 2.0, 2.0], "lat": [5.0, 5.0, 6.0, 6.0], "weight": 1.0,
        "ev_type": ["BEV", "PHEV", "PHEV", "BEV"],
        "make": ["A", "A", "B", "A"], "model": ["x", "x", "y", "x"],
        "electric_range": [200.0, np.nan, 30.0, 100.0],
    })  # fmt: skip
    bev = demand_points(vehicles, weighting="bev")
    assert bev["weight"].tolist() == [1.0, 1.0] and bev["vehicles"].tolist() == [2, 2]
    rng = demand_points(vehicles, weighting="range")
    # The unknown range of an A x is the median of the known A x ranges (150).
    assert rng["weight"].tolist() == [200.0 + 150.0, 30.0 + 100.0]
    with pytest.raises(ValueError, match="weighting: expected one of"):
        demand_points(vehicles, weighting="price")


def test_synthetic_is_deterministic_and_shaped_like_the_data(vehicles, tmp_path):
    demand = demand_points(vehicles)
    a = synthesize_demand(demand, 50_000, seed=7, chunk_rows=20_000)
    b = synthesize_demand(demand, 50_000, seed=7, chunk_rows=20_000)
    c = synthesize_demand(demand, 50_000, seed=8, chunk_rows=20_000)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["lon"], c["lon"])
    assert len(a) == 50_000 and (a["weight"] == 1.0).all()
    # Written in chunks to Parquet: the same points, one row group per chunk.
    import pyarrow.parquet as pq

    path = synthesize_demand(demand, 50_000, seed=7, chunk_rows=20_000,
                             path=tmp_path / "d.parquet")  # fmt: skip
    assert pq.ParquetFile(path).num_row_groups == 3
    pd.testing.assert_frame_equal(pd.read_parquet(path), a)

    # Shaped like the data: King County's share of demand is about its share of
    # vehicles (53%), measured with a box around Seattle-Bellevue.
    def share(frame, w):
        box = frame["lon"].between(-122.5, -121.9) & frame["lat"].between(47.4, 47.8)
        return w[box].sum() / w.sum()

    assert share(a, a["weight"]) == pytest.approx(share(demand, demand["weight"]),
                                                   abs=0.02)  # fmt: skip


def test_synthetic_errors():
    demand = pd.DataFrame({"lon": [1.0], "lat": [2.0], "weight": [0.0]})
    with pytest.raises(ValueError, match="not all zero"):
        synthesize_demand(demand, 10)
    with pytest.raises(ValueError, match="n: expected a positive"):
        synthesize_demand(demand.assign(weight=1.0), 0)


@pytest.mark.parametrize("spread_m", [np.nan, np.inf, -100.0, "3000"])
def test_synthetic_bad_spread_creates_no_file(tmp_path, spread_m):
    demand = pd.DataFrame({"lon": [-122.3], "lat": [47.6], "weight": [1.0]})
    path = tmp_path / "d.parquet"
    with pytest.raises(ValueError, match="spread_m: expected a finite number >= 0 m"):
        synthesize_demand(demand, 10, spread_m=spread_m, path=path)
    assert list(tmp_path.iterdir()) == []
    # An existing file is left as it was.
    path.write_bytes(b"old")
    with pytest.raises(ValueError, match="spread_m"):
        synthesize_demand(demand, 10, spread_m=spread_m, path=path)
    assert path.read_bytes() == b"old" and list(tmp_path.iterdir()) == [path]


def test_synthetic_file_replaced_whole(tmp_path):
    demand = pd.DataFrame({"lon": [-122.3], "lat": [47.6], "weight": [1.0]})
    path = tmp_path / "d.parquet"
    path.write_bytes(b"old")
    synthesize_demand(demand, 25, spread_m=0, path=path, chunk_rows=10)
    frame = pd.read_parquet(path)
    # spread 0: every point on the location itself (up to the projection round trip)
    assert len(frame) == 25 and np.allclose(frame["lon"], -122.3)
    assert list(tmp_path.iterdir()) == [path]
    with pytest.raises(ValueError, match="directory .*nope does not exist"):
        synthesize_demand(demand, 10, path=tmp_path / "nope" / "d.parquet")
    with pytest.raises(ValueError, match="n: expected an integer, got 2.5"):
        synthesize_demand(demand, 2.5)
    # Weights that overflow when summed.
    with pytest.raises(ValueError, match="finite, non-negative"):
        synthesize_demand(pd.concat([demand.assign(weight=1e308)] * 2), 5)
