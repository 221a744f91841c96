"""The sizing models: Erlang C against hand-computed values, inverses, monotonicity."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evplanner.sizing import (
    DEFAULT_VEHICLES_PER_DC_PORT,
    DEFAULT_VEHICLES_PER_L2_PORT,
    SizingModel,
    erlang_c,
    mean_wait_hours,
    mix_vehicles_per_port,
    offered_load_erlangs,
    overloaded,
    queue_capacity_vehicles,
    queue_ports_needed,
    ratio_capacity_vehicles,
    ratio_ports_needed,
    suggested_extra_sites,
    vehicles_per_port,
)


def _erlang_c_closed_form(c: int, a: float) -> float:
    """The textbook formula with factorials (fine for small c)."""
    top = a**c / math.factorial(c) * c / (c - a)
    return top / (sum(a**k / math.factorial(k) for k in range(c)) + top)


# --------------------------------------------------------------------------- Erlang C


@pytest.mark.parametrize(
    ("c", "a", "expected"),
    [
        (1, 0.5, 0.5),  # M/M/1: P(wait) = rho
        (1, 0.9, 0.9),
        (2, 1.0, 1 / 3),  # by hand: (1/2 * 2) / (1 + 1 + 1)
        (3, 2.0, 4 / 9),  # by hand: (8/6 * 3) / (1 + 2 + 2 + 4)
        (4, 2.0, 4 / 23),  # by hand: (16/24 * 2) / (1 + 2 + 2 + 4/3 + 4/3)
    ],
)
def test_erlang_c_hand_values(c, a, expected):
    assert erlang_c(c, a) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("c", [1, 2, 5, 10, 30])
def test_erlang_c_matches_closed_form(c):
    for a in np.linspace(0.05, c - 0.05, 7):
        assert erlang_c(c, a) == pytest.approx(_erlang_c_closed_form(c, a), rel=1e-10)


def test_erlang_c_edges():
    assert erlang_c(3, 0.0) == 0.0
    assert erlang_c(3, 3.0) == 1.0  # unstable: everyone waits
    assert erlang_c(0, 0.5) == 1.0
    assert erlang_c(200, 150.0) < 1e-3  # large c: no overflow


def test_erlang_c_monotone():
    loads = np.linspace(0.1, 4.9, 40)
    values = [erlang_c(5, a) for a in loads]
    assert np.all(np.diff(values) > 0)  # more load, more waiting
    by_ports = [erlang_c(c, 2.5) for c in range(3, 12)]
    assert np.all(np.diff(by_ports) < 0)  # more ports, less waiting


def test_mean_wait_hours():
    # M/M/1 with rho = 0.5 and 1 h sessions: Wq = rho / (mu - lambda) = 1 h.
    assert mean_wait_hours(1, 0.5, 1.0) == pytest.approx(1.0)
    # c=2, a=1, 2 h sessions: C = 1/3, Wq = C * T / (c - a) = 2/3 h.
    assert mean_wait_hours(2, 1.0, 2.0) == pytest.approx(2 / 3)
    assert mean_wait_hours(2, 2.0, 1.0) == math.inf


def test_offered_load():
    # 300 vehicles, 0.1 sessions a day each, 2 h sessions, open 12 h: 5 Erlangs.
    assert float(offered_load_erlangs(300, 0.1, 2.0, 12.0)) == pytest.approx(5.0)


# ---------------------------------------------------------------------- queue sizing

QUEUE = {"sessions_per_vehicle_day": 0.2, "session_hours": 2.0, "hours_per_day": 20.0}


def test_queue_ports_needed_hand_case():
    # 100 vehicles -> a = 2 Erlangs; C(3, 2) = 4/9 > 0.2, C(4, 2) = 4/23 <= 0.2.
    got = queue_ports_needed([100.0], max_wait_probability=0.2, **QUEUE)
    assert got.tolist() == [4]
    # A tighter target needs more ports: C(5, 2) = 0.0597.
    assert queue_ports_needed([100.0], max_wait_probability=0.1,
                              **QUEUE).tolist() == [5]  # fmt: skip
    # Mean-wait target: Wq(4, 2) = 4/23 * 2 / 2 = 0.174 h; Wq(3, 2) = 0.889 h.
    assert queue_ports_needed([100.0], max_mean_wait_hours=0.5,
                              **QUEUE).tolist() == [4]  # fmt: skip


def test_queue_ports_needed_is_smallest_and_monotone():
    vehicles = np.arange(0, 2001, 50, dtype=float)
    ports = queue_ports_needed(vehicles, max_wait_probability=0.2, **QUEUE)
    assert ports[0] == 0
    assert np.all(np.diff(ports) >= 0)
    for v, c in zip(vehicles[1:], ports[1:], strict=True):
        a = float(offered_load_erlangs(v, **QUEUE))
        assert erlang_c(int(c), a) <= 0.2
        assert c - 1 <= a or erlang_c(int(c) - 1, a) > 0.2


def test_queue_capacity_inverts_ports_needed():
    ports = np.array([1, 2, 4, 8, 16])
    cap = queue_capacity_vehicles(ports, max_wait_probability=0.2, **QUEUE)
    assert np.all(np.diff(cap) > 0)
    # At capacity the ports suffice; a little beyond they do not.
    assert np.array_equal(
        queue_ports_needed(cap * (1 - 1e-6), max_wait_probability=0.2, **QUEUE), ports
    )
    assert np.all(
        queue_ports_needed(cap * (1 + 1e-6), max_wait_probability=0.2, **QUEUE)
        == ports + 1
    )
    assert queue_capacity_vehicles([0], max_wait_probability=0.2,
                                   **QUEUE).tolist() == [0.0]  # fmt: skip


def test_queue_needs_one_target():
    with pytest.raises(ValueError, match="exactly one"):
        queue_ports_needed([10.0], **QUEUE)
    with pytest.raises(ValueError, match="exactly one"):
        queue_ports_needed([10.0], max_wait_probability=0.2, max_mean_wait_hours=1.0,
                           **QUEUE)  # fmt: skip


# ----------------------------------------------------------------------- ratio model


def test_ratio_defaults_follow_the_published_counts():
    # 33 million vehicles, ~1 million public L2 ports, 182,000 public DC fast ports.
    assert DEFAULT_VEHICLES_PER_L2_PORT == pytest.approx(33e6 / 1e6)
    assert DEFAULT_VEHICLES_PER_DC_PORT == pytest.approx(33e6 / 182e3, abs=0.5)


def test_ratio_network_serves_its_fleet():
    # NREL's 2030 network in the model's own terms serves exactly its fleet.
    fleet = 33e6
    l2, dc = fleet / DEFAULT_VEHICLES_PER_L2_PORT, fleet / DEFAULT_VEHICLES_PER_DC_PORT
    assert float(ratio_capacity_vehicles(l2, dc)) == pytest.approx(fleet)
    assert mix_vehicles_per_port() == pytest.approx(fleet / (l2 + dc))


def test_ratio_capacity_and_ports():
    cap = ratio_capacity_vehicles([2, 0, 4], [1, 2, 0], 30.0, 200.0)
    assert cap.tolist() == [130.0, 200.0, 60.0]
    per = mix_vehicles_per_port(30.0, 200.0)  # 26.087
    got = ratio_ports_needed([0, per, per * 1.01, 10 * per], 30.0, 200.0)
    assert got.tolist() == [0, 1, 2, 10]
    vehicles = np.linspace(0, 5000, 101)
    assert np.all(np.diff(ratio_ports_needed(vehicles)) >= 0)


# --------------------------------------------------------------------------- the model


@pytest.mark.parametrize("method", ["ratio", "queue"])
def test_model_ports_to_add_cover_the_load(method):
    model = SizingModel(method=method)
    l1 = np.array([0, 0, 0, 1])
    l2 = np.array([1, 4, 0, 0])
    dc = np.array([0, 1, 2, 0])
    load = np.array([500.0, 100.0, 50.0, 10.0])
    cap = model.capacity_vehicles(l1, l2, dc)
    add = model.ports_to_add(load, l1, l2, dc)
    assert np.array_equal(add > 0, overloaded(load, cap))
    if method == "ratio":
        # Added ports (in the L2/DC mix) cover the shortfall, one fewer does not.
        per = mix_vehicles_per_port()
        assert np.all(cap + add * per >= load - 1e-9)
        assert np.all((add == 0) | (cap + (add - 1) * per < load))
    else:
        total = l1 + l2 + dc
        assert np.all(model.capacity_vehicles(0, total + add, 0) >= load - 1e-6)


def test_model_site_capacity_matches_ports_needed():
    for model in (SizingModel(), SizingModel(method="queue")):
        cap = model.site_capacity_vehicles(10)
        assert int(model.ports_needed([cap * (1 - 1e-6)])[0]) == 10
        assert int(model.ports_needed([cap * (1 + 1e-6)])[0]) == 11
    assert "NREL/TP-5400-85654" in SizingModel().describe()
    assert (
        "not from a confirmed public source" in SizingModel(method="queue").describe()
    )


def test_load_per_port_overload_and_extra_sites():
    assert vehicles_per_port([963.0], [1]).tolist() == [963.0]
    assert overloaded([100.0, 100.0], [100.0, 99.0]).tolist() == [False, True]
    assert suggested_extra_sites(1000.0, 279.1) == 4
    assert suggested_extra_sites(558.2, 279.1) == 2
    with pytest.raises(ValueError, match="site_capacity_vehicles"):
        suggested_extra_sites(10.0, 0.0)
