"""The planning question: a :class:`Scenario`, validated once when it is built.

A scenario holds everything that defines one plan (which demand, weighted how,
which existing sites are held fixed, how many new sites, the coverage radius, the
algorithm and its seed), in the planners' vocabulary. It is immutable and hashable,
so the app can key its caches on it, and it never holds data: files are named, and
the caller may hand :func:`~evplanner.planning.solve` data it has already loaded.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from evplanner.errors import InputError

__all__ = [
    "ALGORITHMS",
    "CANDIDATE_CHOICES",
    "DEMAND_AT",
    "EXISTING_CHOICES",
    "EV_TYPES",
    "OBJECTIVES",
    "SIZING_METHODS",
    "TRACT_FALLBACKS",
    "WEIGHTINGS",
    "Scenario",
]

#: Demand weightings (:func:`evplanner.demand.demand_points`): one vehicle counts 1;
#: BEVs only; a vehicle's electric range in miles; or the tract's residents.
WEIGHTINGS = ("vehicles", "bev", "range", "residents")
#: Where a vehicle's demand sits: its census tract's centre of population, or its
#: published ZIP-code centroid.
DEMAND_AT = ("tract", "zip")
#: What happens to a vehicle whose census tract is missing or unknown.
TRACT_FALLBACKS = ("drop", "zip")
#: Named candidate sets: none (sites anywhere), tract centres of population with
#: residents (on land), today's public stations (expand there); anything else is a
#: file of candidate points, or an upload.
CANDIDATE_CHOICES = ("none", "tracts", "stations")
#: What the new sites optimise: the demand-weighted mean L1 distance (p-median), or
#: the demand within the coverage radius (maximal coverage, among candidates).
OBJECTIVES = ("median", "coverage")
#: Siting algorithms: weighted K-Medians (the L1 p-median), or scikit-learn's K-Means
#: for comparison (it cannot hold existing sites fixed).
ALGORITHMS = ("kmedians", "kmeans")
#: Named sets of existing sites; anything else is a station file, or an upload.
EXISTING_CHOICES = ("none", "public", "dc_fast")
#: Prefix of an uploaded station list's name (``"upload:<content hash>"``).
UPLOAD_PREFIX = "upload:"
EV_TYPES = ("BEV", "PHEV")
#: Largest number of new sites accepted (the bundled data has ~1,800 locations).
MAX_NEW_SITES = 5_000
#: How sites are sized (:mod:`evplanner.sizing`): vehicles per port by charger type,
#: or an Erlang C queue.
SIZING_METHODS = ("ratio", "queue")
#: Most ports one new site may be given.
MAX_SITE_PORTS = 1_000


def _fail(field: str, expected: str, value: Any) -> InputError:
    return InputError(f"expected {expected}, got {value!r}", field=field)


def _strings(field: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = (value,)
    try:
        out = tuple(str(v).strip() for v in value)
    except TypeError:
        raise _fail(field, "a list of names", value) from None
    if any(not v for v in out):
        raise _fail(field, "non-empty names", value)
    return out


def _positive(field: str, value: Any, high: float | None = None) -> float:
    """A finite float > 0 (and < ``high`` when given)."""
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and number > 0 and (high is None or number < high)):
        bound = "" if high is None else f" and < {high:g}"
        raise _fail(field, f"a finite number > 0{bound}", value)
    return number


def _integer(field: str, value: Any, low: int, high: int | None = None) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (isinstance(value, float) and not value.is_integer())
    ):
        raise _fail(field, "an integer", value)
    value = int(value)
    if value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"between {low} and {high}"
        raise _fail(field, f"an integer {bounds}", value)
    return value


@dataclass(frozen=True)
class Scenario:
    """One planning question: where to put ``new_sites`` charging sites.

    Every field is validated when the scenario is built (bad values raise
    :class:`~evplanner.errors.InputError` naming the field and the value); lists
    are stored as tuples, so a scenario is hashable.

    Parameters
    ----------
    new_sites : int
        How many new sites to place (the ``k`` of K-Medians), >= 1.
    demand : tuple of str
        Demand files or globs (WA DOL export, the bundled Parquet, or plain lon/lat
        files with an optional weight column); empty: the bundled vehicles.
    counties : tuple of str
        Keep vehicles registered in these counties (empty: all).
    ev_types : tuple of {"BEV", "PHEV"}
        Keep these EV types (empty: both).
    model_years : (int, int) or None
        Inclusive model-year range (None: all).
    utilities : tuple of str
        Keep vehicles served by these electric utilities (a vehicle listing several
        counts when any of them is chosen; empty: all).
    legislative_districts : tuple of int
        Keep vehicles in these legislative districts (empty: all).
    demand_at : {"tract", "zip"}
        Where a vehicle's demand sits: its 2020 census tract's centre of population
        (default), or its published ZIP-code centroid.
    tract_fallback : {"drop", "zip"}
        A vehicle whose tract is missing or unknown is left out (counted in the load
        report), or placed at its ZIP centroid.
    weighting : {"vehicles", "bev", "range", "residents"}
        What the demand counts: vehicles; BEVs only; electric range in miles; or
        the tracts' residents (plan for everyone, not only today's owners).
    residents_share : float in [0, 1]
        Blend of vehicles and residents: weight = (1 - a) vehicles + a residents
        scaled to the vehicles' total (0: vehicles only).
    year : int or None
        Plan for the demand forecast for this year (:mod:`evplanner.forecast`);
        None: today's registrations.
    keep_out_of_area : bool
        Keep vehicles registered outside Washington (and plain points or stations
        outside the planning area).
    existing : str
        Existing sites held fixed: ``"none"``, ``"public"`` (the bundled public
        stations), ``"dc_fast"`` (those with DC fast ports), a station file (AFDC
        export or lon/lat CSV), or ``"upload:<id>"`` for a list the caller loaded.
    radius_m : float
        Coverage radius in metres (L1 distance): demand within it counts as covered.
    candidates : str
        Where new sites may go: ``"none"`` (anywhere: K-Medians' medians),
        ``"tracts"`` (census-tract centres of population with residents, on land),
        ``"stations"`` (today's public stations: expand there), a file of candidate
        points (CSV, GeoJSON or GeoParquet; optional ``name`` and ``max_ports``), or
        ``"upload:<id>"`` for a list the caller loaded.
    objective : {"median", "coverage"}
        Minimise the demand-weighted mean L1 distance (p-median), or maximise the
        demand within ``radius_m`` of a site (maximal coverage; needs candidates).
    snap : bool
        With candidates and the median objective: place the sites freely, then move
        each to its nearest candidate (the plan reports what this costs against
        choosing among the candidates, which is the default).
    algorithm : {"kmedians", "kmeans"}
        Weighted K-Medians, or K-Means for comparison.
    seed : int
        Random seed: the same scenario and seed give the same plan, in memory or on
        a Dask cluster.
    max_iter : int
        Cap on K-Medians' Lloyd iterations per phase.
    crs : str
        ``"auto"`` (the UTM zone of the demand) or an EPSG code such as
        ``"EPSG:32610"``: the projected CRS distances are measured in.
    sizing : {"ratio", "queue"}
        How the ports a site needs follow from the vehicles it serves
        (:mod:`evplanner.sizing`): vehicles per port by charger type, or an Erlang C
        queue.
    vehicles_per_l2_port, vehicles_per_dc_port : float
        Ratio model: vehicles per public Level 2 / DC fast port (defaults: NREL's
        2030 national network, 33 and 181).
    sessions_per_vehicle_day, session_hours, hours_per_day : float
        Queue model: public sessions a vehicle starts per day, mean session length
        (hours), hours a day the sessions arrive over.
    max_wait_probability : float in (0, 1) or None
        Queue model target: probability that an arriving vehicle waits.
    max_mean_wait_hours : float or None
        Queue model target instead: mean wait in hours (then
        ``max_wait_probability`` must be None).
    new_site_ports : int
        Ports of one new site: its capacity when ``capacitated``, and the size of
        the extra sites suggested for unserved demand.
    capacitated : bool
        Capacity-aware siting: every site serves at most its capacity in vehicles
        (existing sites: from their ports; new sites: ``new_site_ports``), and a
        tract's vehicles may split across sites. Needs K-Medians, the median
        objective and demand counted in vehicles; with candidates the new sites
        are candidates (``snap``: the free capacity-aware sites moved to their
        nearest candidates).

    Examples
    --------
    >>> Scenario(new_sites=5, counties=["King"]).counties
    ('King',)
    >>> Scenario(new_sites=0)
    Traceback (most recent call last):
    ...
    evplanner.errors.InputError: new_sites: expected an integer between 1 and 5000, \
got 0
    """

    new_sites: int = 10
    demand: tuple[str, ...] = ()
    counties: tuple[str, ...] = ()
    ev_types: tuple[str, ...] = ()
    model_years: tuple[int, int] | None = None
    utilities: tuple[str, ...] = ()
    legislative_districts: tuple[int, ...] = ()
    demand_at: str = "tract"
    tract_fallback: str = "drop"
    weighting: str = "vehicles"
    residents_share: float = 0.0
    year: int | None = None
    keep_out_of_area: bool = False
    existing: str = "none"
    radius_m: float = 5_000.0
    candidates: str = "none"
    objective: str = "median"
    snap: bool = False
    algorithm: str = "kmedians"
    seed: int = 0
    max_iter: int = 300
    crs: str = "auto"
    sizing: str = "ratio"
    vehicles_per_l2_port: float = 33.0
    vehicles_per_dc_port: float = 181.0
    sessions_per_vehicle_day: float = 0.15
    session_hours: float = 1.5
    hours_per_day: float = 18.0
    max_wait_probability: float | None = 0.2
    max_mean_wait_hours: float | None = None
    new_site_ports: int = 10
    capacitated: bool = False

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalised values are set once, here
        set_(self, "new_sites", _integer("new_sites", self.new_sites, 1,
                                         MAX_NEW_SITES))  # fmt: skip
        set_(self, "demand", _strings("demand", self.demand))
        set_(self, "counties", _strings("counties", self.counties))
        ev_types = tuple(t.upper() for t in _strings("ev_types", self.ev_types))
        if set(ev_types) - set(EV_TYPES):
            raise _fail("ev_types", f"some of {EV_TYPES}", self.ev_types)
        # Both types is no filter: one spelling, so equal scenarios hash equal.
        set_(self, "ev_types", () if set(ev_types) == set(EV_TYPES)
             else tuple(sorted(set(ev_types))))  # fmt: skip
        if self.model_years is not None:
            try:
                low, high = (int(y) for y in self.model_years)
            except (TypeError, ValueError):
                raise _fail("model_years", "(first, last)", self.model_years) from None
            if low > high:
                raise _fail("model_years", "first <= last", self.model_years)
            set_(self, "model_years", (low, high))
        set_(self, "utilities", _strings("utilities", self.utilities))
        districts = self.legislative_districts
        districts = (districts,) if isinstance(districts, (int, str)) else districts
        try:
            districts = tuple(sorted({_integer("legislative_districts", d, 1, 49)
                                      for d in districts or ()}))  # fmt: skip
        except InputError:
            raise _fail("legislative_districts", "district numbers 1 to 49",
                        self.legislative_districts) from None  # fmt: skip
        set_(self, "legislative_districts", districts)
        for name, choices in (("demand_at", DEMAND_AT),
                              ("tract_fallback", TRACT_FALLBACKS),
                              ("weighting", WEIGHTINGS)):  # fmt: skip
            if getattr(self, name) not in choices:
                raise _fail(name, f"one of {choices}", getattr(self, name))
        try:
            share = float(self.residents_share)
        except (TypeError, ValueError):
            share = math.nan
        if not 0.0 <= share <= 1.0:
            raise _fail("residents_share", "a share from 0 to 1", self.residents_share)
        set_(self, "residents_share", share)
        if self.weighting == "residents" or share > 0:
            if self.demand_at != "tract":
                raise _fail("demand_at", "'tract' (residents live in census "
                            "tracts)", self.demand_at)  # fmt: skip
        if self.year is not None:
            set_(self, "year", _integer("year", self.year, 1990, 2100))
            if (
                self.demand_at != "tract"
                or self.weighting != "vehicles"
                or (self.model_years is not None)
            ):
                raise InputError(
                    "a forecast year plans for the vehicles at tract centres: "
                    f"expected demand_at 'tract', weighting 'vehicles' and no "
                    f"model_years, got {self.demand_at!r}, {self.weighting!r}, "
                    f"{self.model_years!r}", field="year")  # fmt: skip
        set_(self, "keep_out_of_area", bool(self.keep_out_of_area))
        if not isinstance(self.existing, str) or not self.existing.strip():
            raise _fail("existing", f"one of {EXISTING_CHOICES}, a station file or "
                        "an upload", self.existing)  # fmt: skip
        try:
            radius = float(self.radius_m)
        except (TypeError, ValueError):
            radius = math.nan
        if not (math.isfinite(radius) and radius > 0):
            raise _fail("radius_m", "a finite distance > 0 in metres", self.radius_m)
        set_(self, "radius_m", radius)
        if self.algorithm not in ALGORITHMS:
            raise _fail("algorithm", f"one of {ALGORITHMS}", self.algorithm)
        if not isinstance(self.candidates, str) or not self.candidates.strip():
            raise _fail("candidates", f"one of {CANDIDATE_CHOICES}, a file of "
                        "candidate points or an upload", self.candidates)  # fmt: skip
        if self.objective not in OBJECTIVES:
            raise _fail("objective", f"one of {OBJECTIVES}", self.objective)
        set_(self, "snap", bool(self.snap))
        no_candidates = self.candidates == "none"
        if self.objective == "coverage" and no_candidates:
            raise _fail("candidates", "a candidate set for the coverage objective",
                        self.candidates)  # fmt: skip
        if self.snap and (no_candidates or self.objective != "median"):
            raise _fail("snap", "False unless there are candidates and the median "
                        "objective", self.snap)  # fmt: skip
        if self.algorithm == "kmeans" and not no_candidates:
            raise _fail("algorithm", "'kmedians' with candidate sites",
                        self.algorithm)  # fmt: skip
        set_(self, "seed", _integer("seed", self.seed, 0, 2**32 - 1))
        set_(self, "max_iter", _integer("max_iter", self.max_iter, 1))
        if not isinstance(self.crs, str) or not self.crs.strip():
            raise _fail("crs", "'auto' or an EPSG code", self.crs)
        self._check_sizing()

    def _check_sizing(self) -> None:
        set_ = object.__setattr__
        if self.sizing not in SIZING_METHODS:
            raise _fail("sizing", f"one of {SIZING_METHODS}", self.sizing)
        for name in ("vehicles_per_l2_port", "vehicles_per_dc_port",
                     "sessions_per_vehicle_day", "session_hours"):  # fmt: skip
            set_(self, name, _positive(name, getattr(self, name)))
        set_(self, "hours_per_day", _positive("hours_per_day", self.hours_per_day))
        if self.hours_per_day > 24:
            raise _fail("hours_per_day", "hours from 0 to 24", self.hours_per_day)
        if self.max_mean_wait_hours is not None:
            set_(
                self,
                "max_mean_wait_hours",
                _positive("max_mean_wait_hours", self.max_mean_wait_hours),
            )
            if self.max_wait_probability is not None:
                raise _fail(
                    "max_wait_probability",
                    "None with a mean-wait target (give one queue target)",
                    self.max_wait_probability,
                )
        elif self.max_wait_probability is None:
            raise _fail("max_wait_probability", "a queue target (or "
                        "max_mean_wait_hours)", None)  # fmt: skip
        else:
            set_(
                self,
                "max_wait_probability",
                _positive("max_wait_probability", self.max_wait_probability, 1.0),
            )
        set_(
            self,
            "new_site_ports",
            _integer("new_site_ports", self.new_site_ports, 1, MAX_SITE_PORTS),
        )
        set_(self, "capacitated", bool(self.capacitated))
        if self.capacitated:
            if self.algorithm != "kmedians":
                raise _fail("capacitated", "False with K-Means (capacity-aware "
                            "siting is K-Medians)", self.capacitated)  # fmt: skip
            if self.objective != "median":
                # Maximal coverage counts demand within a radius, not where it
                # is served: capacities have no place in that objective.
                raise _fail("capacitated", "False with the coverage objective "
                            "(capacity-aware siting minimises distance)",
                            self.capacitated)  # fmt: skip
            if self.weighting != "vehicles" or self.residents_share > 0:
                raise _fail("capacitated", "False unless the demand counts vehicles "
                            "(weighting 'vehicles', no residents share): capacities "
                            "are in vehicles", self.capacitated)  # fmt: skip

    @property
    def sizing_model(self):
        """The :class:`evplanner.sizing.SizingModel` of this scenario."""
        from evplanner.sizing import SizingModel

        return SizingModel(
            method=self.sizing,
            vehicles_per_l2_port=self.vehicles_per_l2_port,
            vehicles_per_dc_port=self.vehicles_per_dc_port,
            sessions_per_vehicle_day=self.sessions_per_vehicle_day,
            session_hours=self.session_hours,
            hours_per_day=self.hours_per_day,
            max_wait_probability=self.max_wait_probability,
            max_mean_wait_hours=self.max_mean_wait_hours,
        )

    # --- derived ----------------------------------------------------------------------
    @property
    def existing_kind(self) -> str:
        """``"none"``, ``"public"``, ``"dc_fast"``, ``"upload"`` or ``"file"``."""
        if self.existing in EXISTING_CHOICES:
            return self.existing
        return "upload" if self.existing.startswith(UPLOAD_PREFIX) else "file"

    @property
    def candidates_kind(self) -> str:
        """``"none"``, ``"tracts"``, ``"stations"``, ``"upload"`` or ``"file"``."""
        if self.candidates in CANDIDATE_CHOICES:
            return self.candidates
        return "upload" if self.candidates.startswith(UPLOAD_PREFIX) else "file"

    @property
    def demand_key(self) -> tuple:
        """The fields that define the demand points (a cache key)."""
        return (self.demand, self.counties, self.ev_types, self.model_years,
                self.utilities, self.legislative_districts, self.demand_at,
                self.tract_fallback, self.weighting, self.residents_share,
                self.year, self.keep_out_of_area, self.crs)  # fmt: skip

    @property
    def sites_key(self) -> tuple:
        """The fields the site locations depend on (all but the radius)."""
        key = (
            self.demand_key,
            self.existing,
            self.new_sites,
            self.algorithm,
            self.seed,
            self.max_iter,
            self.candidates,
            self.objective,
            self.snap,
        )
        # The coverage objective places sites by the radius too; capacity-aware
        # siting by the capacities (the sizing model and the new sites' ports).
        if self.capacitated:
            key += (True, self.sizing_model, self.new_site_ports)
        return key + ((self.radius_m,) if self.objective == "coverage" else ())

    def replace(self, **changes: Any) -> Scenario:
        """A copy with ``changes`` applied (and validated)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain JSON values (tuples as lists)."""
        out = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))
