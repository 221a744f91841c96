"""How big a charging site must be: ports from demand, capacity from ports.

Two models turn the vehicles a site serves into the ports it needs, and a site's
ports into the vehicles it can serve (its capacity). Everything here is a pure
function of numbers or arrays; :class:`SizingModel` only carries the parameters
the planning layer passes around.

*Ratio model* (the default)
    Public charging ports per electric vehicle, per charger type. The defaults are
    the ratios of NREL's national 2030 network (Wood et al., *The 2030 National
    Charging Network: Estimating U.S. Light-Duty Demand for Electric Vehicle
    Charging Infrastructure*, NREL/TP-5400-85654, June 2023), in its mid-adoption
    scenario of 33 million plug-in vehicles served by 182,000 publicly accessible
    DC fast ports and about 1 million publicly accessible Level 2 ports, as
    summarised by the U.S. DOE Vehicle Technologies Office (Fact of the Week
    #1334, 18 March 2024) and EC&M magazine (2023): 33e6 / 182e3 = 181 vehicles
    per public DC fast port, 33e6 / 1e6 = 33 vehicles per public Level 2 port.
    (The L2 count is the summaries' rounded "1 million"; the report's exact count
    was not confirmed here. Using 1,067,000 would give 31 vehicles per port.)

    NREL's fleet needs *both* kinds of port (one L2 port per 33 vehicles *and* one
    DC fast port per 181), so counting each kind as if it served the whole fleet
    would count the fleet twice. A site's capacity therefore counts each kind at
    :data:`L2_SHARE` (and ``1 - L2_SHARE``) of its ratio::

        capacity_vehicles = L2_SHARE * v_l2 * l2_ports
                            + (1 - L2_SHARE) * v_dc * dc_fast_ports

    With any ``L2_SHARE`` the NREL network serves exactly its fleet; the equal
    split (0.5) is this module's assumption, not NREL's. New sites are sized in
    NREL's mix, one port per ``1 / (1 / v_l2 + 1 / v_dc)`` vehicles (27.9 with the
    defaults, about 15% of them DC fast). Level 1 ports count as ports but carry no
    capacity in this model: NREL's public network has no Level 1 ports, and no
    public ratio for them was found.

*Queue model* (Erlang C, M/M/c)
    A site's vehicles start ``sessions_per_vehicle_day`` public sessions a day,
    spread evenly over ``hours_per_day`` opening hours, each lasting
    ``session_hours`` on average (exponential). With ``c`` ports the offered load
    is ``a = vehicles * sessions_per_vehicle_day * session_hours / hours_per_day``
    Erlangs; the probability that an arriving vehicle waits is Erlang's C formula
    and the mean wait is ``C * session_hours / (c - a)``. The ports needed are the
    fewest that keep the probability of waiting (or the mean wait) at or below the
    target. All ports count alike here, whatever their type. The queue defaults
    (:data:`DEFAULT_QUEUE`) are illustrative assumptions of this module: no public
    source for them was confirmed, so set them from local charging data.

Examples
--------
>>> round(erlang_c(2, 1.0), 6)
0.333333
>>> int(queue_ports_needed(100.0, sessions_per_vehicle_day=0.2, session_hours=2.0,
...                        hours_per_day=20.0, max_wait_probability=0.2))
4
>>> model = SizingModel()
>>> float(model.capacity_vehicles(level2_ports=2, dc_fast_ports=1))
123.5
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "DEFAULT_QUEUE",
    "DEFAULT_VEHICLES_PER_DC_PORT",
    "DEFAULT_VEHICLES_PER_L2_PORT",
    "L2_SHARE",
    "RATIO_SOURCE",
    "SIZING_METHODS",
    "SizingModel",
    "erlang_c",
    "mean_wait_hours",
    "mix_vehicles_per_port",
    "offered_load_erlangs",
    "overloaded",
    "queue_capacity_vehicles",
    "queue_ports_needed",
    "ratio_capacity_vehicles",
    "ratio_ports_needed",
    "suggested_extra_sites",
    "vehicles_per_port",
]

#: The sizing models: ratio of vehicles to ports, or an Erlang C queue.
SIZING_METHODS = ("ratio", "queue")
#: Vehicles per public Level 2 port: 33 million plug-in vehicles / ~1 million public
#: L2 ports (NREL 2030 National Charging Network, mid-adoption scenario).
DEFAULT_VEHICLES_PER_L2_PORT = 33.0
#: Vehicles per public DC fast port: 33 million / 182,000 (same source), rounded.
DEFAULT_VEHICLES_PER_DC_PORT = 181.0
#: Share of a vehicle's public charging need met by Level 2 (the rest: DC fast).
#: An assumption of this module (an equal split), not a published figure.
L2_SHARE = 0.5
#: Where the ratio defaults come from (for reports).
RATIO_SOURCE = (
    "Wood et al., The 2030 National Charging Network (NREL/TP-5400-85654, June "
    "2023), mid-adoption scenario: 33 million plug-in vehicles, 182,000 public DC "
    "fast ports and about 1 million public Level 2 ports (as summarised by U.S. DOE "
    "VTO Fact of the Week #1334, 18 March 2024)"
)
#: Queue defaults: illustrative assumptions, not from a confirmed public source.
DEFAULT_QUEUE = {
    "sessions_per_vehicle_day": 0.15,  # about one public session a week
    "session_hours": 1.5,
    "hours_per_day": 18.0,
    "max_wait_probability": 0.2,
}

# Rounding guard: 66 / 33 must need 2 ports, not 3.
_EPS = 1e-9


# --------------------------------------------------------------------------------------
# Load per port
# --------------------------------------------------------------------------------------


def vehicles_per_port(vehicles, ports) -> np.ndarray:
    """Vehicles per port: ``vehicles / ports`` (inf with load and no port, NaN idle).

    Parameters
    ----------
    vehicles : array_like, shape (n,)
        Vehicles a site serves.
    ports : array_like, shape (n,)
        Its ports (any type).

    Returns
    -------
    numpy.ndarray of float64, shape (n,)

    Examples
    --------
    >>> vehicles_per_port([10, 5, 0], [2, 0, 0]).tolist()
    [5.0, inf, nan]
    """
    v = np.asarray(vehicles, dtype="float64")
    p = np.asarray(ports, dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        out = v / p
    return np.where((p == 0) & (v > 0), np.inf, np.where(p == 0, np.nan, out))


def overloaded(vehicles, capacity_vehicles, rtol: float = 1e-9) -> np.ndarray:
    """Whether each site serves more vehicles than its capacity.

    Examples
    --------
    >>> overloaded([10, 10, 0], [10, 9.5, 0]).tolist()
    [False, True, False]
    """
    v = np.asarray(vehicles, dtype="float64")
    cap = np.asarray(capacity_vehicles, dtype="float64")
    return v > cap * (1 + rtol) + rtol


def suggested_extra_sites(
    shortfall_vehicles: float, site_capacity_vehicles: float
) -> int:
    """New sites of ``site_capacity_vehicles`` each that would carry a shortfall.

    Parameters
    ----------
    shortfall_vehicles : float
        Vehicles beyond the capacity available (>= 0).
    site_capacity_vehicles : float
        Capacity of one extra site (> 0).

    Examples
    --------
    >>> suggested_extra_sites(250.0, 100.0), suggested_extra_sites(0.0, 100.0)
    (3, 0)
    """
    if not shortfall_vehicles > 0:
        return 0
    if not site_capacity_vehicles > 0:
        raise ValueError(
            f"site_capacity_vehicles: expected > 0, got {site_capacity_vehicles!r}"
        )
    return int(math.ceil(shortfall_vehicles / site_capacity_vehicles - _EPS))


# --------------------------------------------------------------------------------------
# Ratio model
# --------------------------------------------------------------------------------------


def ratio_capacity_vehicles(
    level2_ports,
    dc_fast_ports,
    vehicles_per_l2_port: float = DEFAULT_VEHICLES_PER_L2_PORT,
    vehicles_per_dc_port: float = DEFAULT_VEHICLES_PER_DC_PORT,
    l2_share: float = L2_SHARE,
) -> np.ndarray:
    """Vehicles a site's ports serve, by the ratio model.

    Parameters
    ----------
    level2_ports, dc_fast_ports : array_like, shape (n,)
        Ports of each type at each site.
    vehicles_per_l2_port, vehicles_per_dc_port : float
        Vehicles per public port of the type, for the whole fleet.
    l2_share : float in [0, 1]
        Share of the fleet's public charging met by Level 2.

    Returns
    -------
    numpy.ndarray of float64, shape (n,)
        ``l2_share * v_l2 * level2_ports + (1 - l2_share) * v_dc * dc_fast_ports``.
    """
    l2 = np.asarray(level2_ports, dtype="float64")
    dc = np.asarray(dc_fast_ports, dtype="float64")
    return (l2_share * vehicles_per_l2_port * l2
            + (1.0 - l2_share) * vehicles_per_dc_port * dc)  # fmt: skip


def mix_vehicles_per_port(
    vehicles_per_l2_port: float = DEFAULT_VEHICLES_PER_L2_PORT,
    vehicles_per_dc_port: float = DEFAULT_VEHICLES_PER_DC_PORT,
) -> float:
    """Vehicles per port of a site built in the ratios' mix of L2 and DC fast ports.

    A vehicle needs ``1 / v_l2`` L2 ports and ``1 / v_dc`` DC fast ports, so one
    port of the mix serves ``1 / (1 / v_l2 + 1 / v_dc)`` vehicles.

    Examples
    --------
    >>> round(mix_vehicles_per_port(), 2)
    27.91
    """
    return 1.0 / (1.0 / vehicles_per_l2_port + 1.0 / vehicles_per_dc_port)


def ratio_ports_needed(
    vehicles,
    vehicles_per_l2_port: float = DEFAULT_VEHICLES_PER_L2_PORT,
    vehicles_per_dc_port: float = DEFAULT_VEHICLES_PER_DC_PORT,
) -> np.ndarray:
    """Ports (in the ratios' L2/DC mix) that serve ``vehicles``, rounded up.

    Examples
    --------
    >>> ratio_ports_needed([0, 1, 27.9, 28, 279.1], 33.0, 181.0).tolist()
    [0, 1, 1, 2, 10]
    """
    v = np.asarray(vehicles, dtype="float64")
    per = mix_vehicles_per_port(vehicles_per_l2_port, vehicles_per_dc_port)
    return np.ceil(np.maximum(v / per - _EPS, 0.0)).astype("int64")


# --------------------------------------------------------------------------------------
# Queue model (Erlang C)
# --------------------------------------------------------------------------------------


def offered_load_erlangs(
    vehicles, sessions_per_vehicle_day: float, session_hours: float,
    hours_per_day: float,
) -> np.ndarray:  # fmt: skip
    """Offered load ``a = arrivals per hour x mean session hours``, in Erlangs.

    Examples
    --------
    >>> float(offered_load_erlangs(100, 0.2, 2.0, 20.0))
    2.0
    """
    v = np.asarray(vehicles, dtype="float64")
    return v * sessions_per_vehicle_day * session_hours / hours_per_day


def erlang_c(n_ports: int, load_erlangs: float) -> float:
    """Probability that an arriving vehicle waits (Erlang C, M/M/c).

    Parameters
    ----------
    n_ports : int
        Servers ``c`` (>= 0).
    load_erlangs : float
        Offered load ``a`` (>= 0).

    Returns
    -------
    float
        ``C(c, a)`` in [0, 1]; 1 when ``a >= c`` (the queue grows without bound),
        0 when ``a == 0``.

    Notes
    -----
    Computed through Erlang B's stable recursion ``B(0) = 1``,
    ``B(k) = a B(k-1) / (k + a B(k-1))``, then
    ``C = c B(c) / (c - a (1 - B(c)))``: no factorials, no overflow.

    Examples
    --------
    >>> erlang_c(1, 0.5), round(erlang_c(3, 2.0), 6), erlang_c(2, 2.0)
    (0.5, 0.444444, 1.0)
    """
    c, a = int(n_ports), float(load_erlangs)
    if a <= 0:
        return 0.0
    if a >= c:
        return 1.0
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    return c * b / (c - a * (1.0 - b))


def mean_wait_hours(n_ports: int, load_erlangs: float, session_hours: float) -> float:
    """Mean wait before charging, hours: ``C(c, a) * session_hours / (c - a)``.

    Examples
    --------
    >>> round(mean_wait_hours(2, 1.0, 1.0), 6)
    0.333333
    """
    c, a = int(n_ports), float(load_erlangs)
    if a <= 0:
        return 0.0
    if a >= c:
        return math.inf
    return erlang_c(c, a) * session_hours / (c - a)


def _meets(c: int, a: float, session_hours: float, max_wait_probability,
           max_mean_wait_hours) -> bool:  # fmt: skip
    if max_wait_probability is not None:
        return erlang_c(c, a) <= max_wait_probability
    return mean_wait_hours(c, a, session_hours) <= max_mean_wait_hours


def _check_target(max_wait_probability, max_mean_wait_hours) -> None:
    if (max_wait_probability is None) == (max_mean_wait_hours is None):
        raise ValueError("give exactly one of max_wait_probability and "
                         "max_mean_wait_hours")  # fmt: skip


def queue_ports_needed(
    vehicles,
    *,
    sessions_per_vehicle_day: float = DEFAULT_QUEUE["sessions_per_vehicle_day"],
    session_hours: float = DEFAULT_QUEUE["session_hours"],
    hours_per_day: float = DEFAULT_QUEUE["hours_per_day"],
    max_wait_probability: float | None = None,
    max_mean_wait_hours: float | None = None,
) -> np.ndarray:
    """Fewest ports that keep waiting at or below the target (Erlang C).

    Parameters
    ----------
    vehicles : array_like, shape (n,)
        Vehicles each site serves.
    sessions_per_vehicle_day : float
        Public charging sessions a vehicle starts per day.
    session_hours : float
        Mean session length, hours (plugged in, not only charging).
    hours_per_day : float
        Hours a day over which the sessions arrive (opening hours).
    max_wait_probability : float in (0, 1), optional
        Target probability that an arriving vehicle waits.
    max_mean_wait_hours : float > 0, optional
        Target mean wait, hours (give this or ``max_wait_probability``).

    Returns
    -------
    numpy.ndarray of int64, shape (n,)
        0 for no vehicles; otherwise the smallest ``c > a`` meeting the target.

    Examples
    --------
    >>> queue_ports_needed([0, 5, 100], sessions_per_vehicle_day=0.2,
    ...                    session_hours=2.0, hours_per_day=20.0,
    ...                    max_wait_probability=0.2).tolist()
    [0, 1, 4]
    """
    _check_target(max_wait_probability, max_mean_wait_hours)
    loads = np.atleast_1d(offered_load_erlangs(
        vehicles, sessions_per_vehicle_day, session_hours, hours_per_day))  # fmt: skip
    out = np.zeros(loads.shape, dtype="int64")
    for i, a in enumerate(loads):
        if not a > 0:
            continue
        c = int(math.floor(a)) + 1  # the queue is stable only for c > a
        while not _meets(c, a, session_hours, max_wait_probability,
                         max_mean_wait_hours):  # fmt: skip
            c += 1
        out[i] = c
    return out.reshape(np.shape(vehicles))


def queue_capacity_vehicles(
    ports,
    *,
    sessions_per_vehicle_day: float = DEFAULT_QUEUE["sessions_per_vehicle_day"],
    session_hours: float = DEFAULT_QUEUE["session_hours"],
    hours_per_day: float = DEFAULT_QUEUE["hours_per_day"],
    max_wait_probability: float | None = None,
    max_mean_wait_hours: float | None = None,
) -> np.ndarray:
    """Most vehicles ``ports`` serve within the waiting target (Erlang C inverted).

    Waiting grows with the load for a fixed number of ports, so the largest load
    meeting the target is found by bisection (to 1e-10 relative) and turned back
    into vehicles.

    Returns
    -------
    numpy.ndarray of float64, shape (n,)
        0 for no ports.

    Examples
    --------
    >>> cap = queue_capacity_vehicles([4], sessions_per_vehicle_day=0.2,
    ...     session_hours=2.0, hours_per_day=20.0, max_wait_probability=0.2)
    >>> 100 < float(cap[0]) < 125
    True
    """
    _check_target(max_wait_probability, max_mean_wait_hours)
    c_all = np.atleast_1d(np.asarray(ports, dtype="int64"))
    out = np.zeros(c_all.shape, dtype="float64")
    per_erlang = hours_per_day / (sessions_per_vehicle_day * session_hours)
    for i, c in enumerate(c_all):
        if c <= 0:
            continue
        low, high = 0.0, float(c)
        for _ in range(200):
            mid = 0.5 * (low + high)
            if _meets(int(c), mid, session_hours, max_wait_probability,
                      max_mean_wait_hours):  # fmt: skip
                low = mid
            else:
                high = mid
            if high - low <= 1e-10 * c:
                break
        out[i] = low * per_erlang
    return out.reshape(np.shape(ports))


# --------------------------------------------------------------------------------------
# The model a plan uses
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SizingModel:
    """The parameters of one sizing model, with its capacity and ports functions.

    Parameters
    ----------
    method : {"ratio", "queue"}
    vehicles_per_l2_port, vehicles_per_dc_port : float
        Ratio model: vehicles per public port of the type.
    sessions_per_vehicle_day, session_hours, hours_per_day : float
        Queue model: demand and opening hours.
    max_wait_probability, max_mean_wait_hours : float or None
        Queue model target (exactly one is set for ``"queue"``).
    """

    method: str = "ratio"
    vehicles_per_l2_port: float = DEFAULT_VEHICLES_PER_L2_PORT
    vehicles_per_dc_port: float = DEFAULT_VEHICLES_PER_DC_PORT
    sessions_per_vehicle_day: float = DEFAULT_QUEUE["sessions_per_vehicle_day"]
    session_hours: float = DEFAULT_QUEUE["session_hours"]
    hours_per_day: float = DEFAULT_QUEUE["hours_per_day"]
    max_wait_probability: float | None = DEFAULT_QUEUE["max_wait_probability"]
    max_mean_wait_hours: float | None = None

    def _queue(self) -> dict:
        return {
            "sessions_per_vehicle_day": self.sessions_per_vehicle_day,
            "session_hours": self.session_hours,
            "hours_per_day": self.hours_per_day,
            "max_wait_probability": self.max_wait_probability,
            "max_mean_wait_hours": self.max_mean_wait_hours,
        }

    def capacity_vehicles(self, level1_ports=0, level2_ports=0,
                          dc_fast_ports=0) -> np.ndarray:  # fmt: skip
        """Vehicles existing ports serve (ratio: by type; queue: all ports alike)."""
        if self.method == "ratio":
            return ratio_capacity_vehicles(level2_ports, dc_fast_ports,
                                           self.vehicles_per_l2_port,
                                           self.vehicles_per_dc_port)  # fmt: skip
        total = (np.asarray(level1_ports) + np.asarray(level2_ports)
                 + np.asarray(dc_fast_ports))  # fmt: skip
        return queue_capacity_vehicles(total, **self._queue())

    def site_capacity_vehicles(self, ports: int) -> float:
        """Vehicles a new site of ``ports`` ports serves (ratio: in the L2/DC mix)."""
        if self.method == "ratio":
            return float(ports) * mix_vehicles_per_port(
                self.vehicles_per_l2_port, self.vehicles_per_dc_port)  # fmt: skip
        return float(queue_capacity_vehicles([int(ports)], **self._queue())[0])

    def ports_needed(self, vehicles) -> np.ndarray:
        """Ports a new site needs for ``vehicles`` (ratio: in the L2/DC mix)."""
        if self.method == "ratio":
            return ratio_ports_needed(vehicles, self.vehicles_per_l2_port,
                                      self.vehicles_per_dc_port)  # fmt: skip
        return queue_ports_needed(vehicles, **self._queue())

    def ports_to_add(self, vehicles, level1_ports=0, level2_ports=0,
                     dc_fast_ports=0) -> np.ndarray:  # fmt: skip
        """Ports an existing site must add to serve ``vehicles`` (0 if it can).

        Ratio model: the shortfall ``vehicles - capacity`` in new ports of the L2/DC
        mix. Queue model: the Erlang C ports needed minus the ports there.
        """
        v = np.asarray(vehicles, dtype="float64")
        if self.method == "ratio":
            short = v - self.capacity_vehicles(level1_ports, level2_ports,
                                               dc_fast_ports)  # fmt: skip
            return ratio_ports_needed(np.maximum(short, 0.0),
                                      self.vehicles_per_l2_port,
                                      self.vehicles_per_dc_port)  # fmt: skip
        total = (np.asarray(level1_ports) + np.asarray(level2_ports)
                 + np.asarray(dc_fast_ports))  # fmt: skip
        return np.maximum(self.ports_needed(v) - total, 0).astype("int64")

    def describe(self) -> str:
        """The model and its parameters in one sentence, with the source."""
        if self.method == "ratio":
            mix = mix_vehicles_per_port(self.vehicles_per_l2_port,
                                        self.vehicles_per_dc_port)  # fmt: skip
            return (
                f"Ratio model: {self.vehicles_per_l2_port:g} vehicles per public Level "
                f"2 port and {self.vehicles_per_dc_port:g} per public DC fast port; a "
                f"site's capacity counts each type at {L2_SHARE:g} of its ratio (an "
                f"equal split of public charging, our assumption); new sites are "
                f"sized in the L2/DC mix, {mix:.1f} vehicles per port. Defaults from "
                f"{RATIO_SOURCE}."
            )
        target = (f"probability of waiting <= {self.max_wait_probability:g}"
                  if self.max_wait_probability is not None
                  else f"mean wait <= {self.max_mean_wait_hours:g} h")  # fmt: skip
        return (
            f"Queue model (Erlang C, M/M/c): {self.sessions_per_vehicle_day:g} public "
            f"sessions per vehicle per day over {self.hours_per_day:g} h, "
            f"{self.session_hours:g} h per session, {target}; all port types alike. "
            "The queue defaults are illustrative assumptions, not from a confirmed "
            "public source."
        )

    def to_dict(self) -> dict:
        """The parameters as plain JSON values."""
        out = {"method": self.method}
        if self.method == "ratio":
            out.update(vehicles_per_l2_port=self.vehicles_per_l2_port,
                       vehicles_per_dc_port=self.vehicles_per_dc_port,
                       l2_share=L2_SHARE,
                       mix_vehicles_per_port=mix_vehicles_per_port(
                           self.vehicles_per_l2_port, self.vehicles_per_dc_port),
                       source=RATIO_SOURCE)  # fmt: skip
        else:
            out.update(self._queue())
        return out
