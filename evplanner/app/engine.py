"""What only the web app needs around the planning layer (no Panel here).

* :class:`DataStore`: the bundled vehicles and stations, loaded once per server
  process and shared read-only by every session, with a memo of the demand per
  filter set (sessions flipping between the same filters do not re-aggregate).
* :func:`parse_uploaded_stations`, :func:`parse_uploaded_candidates`: an uploaded
  station list as :class:`~evplanner.planning.ExistingSites`, an uploaded candidate
  file as :class:`~evplanner.planning.CandidateSites` (one reader of uploads,
  :func:`read_upload`, with one size cap and one way of naming bad rows).
* :func:`solve`, :func:`sweep`, :func:`compare`, :func:`rollout`: the planning
  layer's functions on the store's data, on two compute lanes shared by the
  sessions (light and heavy fits, :class:`ComputeLanes`), solutions cached
  process-wide per scenario (:class:`SolutionCache`), and a plan (or a staged
  rollout) shaped for display (:class:`Solution`, :class:`RolloutView`: Web
  Mercator coordinates, kilometres).

Every number shown comes from the :class:`~evplanner.planning.Plan`; nothing here
recomputes a metric.
"""

from __future__ import annotations

import hashlib
import logging
import re
import tempfile
import threading
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from evplanner.data import LoadReport
from evplanner.errors import InputError
from evplanner.planning import (
    Demand,
    ExistingSites,
    KMeansComparison,
    Plan,
    Scenario,
    compare_kmeans,
    load_demand,
    load_existing,
)
from evplanner.planning import solve as plan_solve
from evplanner.planning import sweep as plan_sweep
from evplanner.planning.inputs import CandidateSites, load_candidates
from evplanner.planning.rollout import Rollout
from evplanner.planning.rollout import rollout as plan_rollout
from evplanner.planning.scenario import UPLOAD_PREFIX

__all__ = [
    "ALGORITHMS",
    "CANDIDATES",
    "DEMAND_AT",
    "EXISTING",
    "MAX_UPLOAD_BYTES",
    "MAX_UPLOAD_CANDIDATES",
    "MAX_UPLOAD_STATIONS",
    "OBJECTIVES",
    "ComputeLanes",
    "SolutionCache",
    "WEIGHTINGS",
    "DataStore",
    "RolloutView",
    "Solution",
    "compare",
    "parse_uploaded_candidates",
    "parse_uploaded_stations",
    "read_upload",
    "rollout",
    "upload_too_large",
    "solve",
    "sweep",
    "web_mercator",
]

log = logging.getLogger(__name__)

#: Demand weighting choices: UI label -> scenario value.
WEIGHTINGS = {
    "All vehicles": "vehicles",
    "BEV only": "bev",
    "Weighted by electric range": "range",
    "Residents (tract population)": "residents",
}
#: Where demand sits: UI label -> scenario value.
DEMAND_AT = {
    "Census tract (centre of population)": "tract",
    "ZIP-code centroid": "zip",
}
#: Where new sites may go: UI label -> scenario value.
CANDIDATES = {
    "Anywhere": "none",
    "Census-tract centres": "tracts",
    "Today's public stations": "stations",
    "Uploaded candidate file": "upload",
}
#: What new sites optimise: UI label -> scenario value.
OBJECTIVES = {
    "Mean distance (p-median)": "median",
    "Demand within radius (max coverage)": "coverage",
}
#: Siting algorithms: UI label -> scenario value.
ALGORITHMS = {"K-Medians": "kmedians", "K-Means (comparison)": "kmeans"}
#: Existing (fixed) station choices: UI label -> scenario value ("upload" becomes
#: ``"upload:<content hash>"`` in the scenario).
EXISTING = {
    "None": "none",
    "Public stations (all)": "public",
    "Public stations (DC fast only)": "dc_fast",
    "Uploaded CSV": "upload",
}
#: Largest uploaded station file accepted, in bytes. A station list of a few
#: thousand lon/lat rows is well under 1 MB; the cap keeps a stray upload (a
#: vehicle file, an image) from tying up a server thread.
MAX_UPLOAD_BYTES = 2_000_000

#: Largest number of stations in an uploaded list. Every new site is compared with
#: every fixed station, so a solve's time grows with the list: 20,000 stations (the
#: size of a national AFDC export of one state's neighbours) solve in ~2 s on the
#: bundled data on one core pair (benchmarks/README.md, web app load).
MAX_UPLOAD_STATIONS = 20_000
#: Largest number of candidate sites in an uploaded file. Each iteration of the
#: discrete search weighs every candidate against the demand, so a solve's time
#: grows with the file: 10,000 candidates solved in ~0.5 s on the bundled tract
#: demand (k = 7, either objective, 2 cores at load 6-9; ``engine.solve`` timed).
MAX_UPLOAD_CANDIDATES = 10_000
#: File types an uploaded candidate file may have (``data.load_candidates``).
CANDIDATE_SUFFIXES = (".csv", ".geojson", ".json", ".parquet", ".geoparquet")
#: A solve counts as heavy (its own compute lane, see :class:`ComputeLanes`) when it
#: holds more fixed stations than this; the public stations (~3,000) are light.
HEAVY_FIXED_STATIONS = 5_000
#: ... or places more new sites than this (the local search grows with k).
HEAVY_NEW_SITES = 60
#: ... or chooses among more candidate sites than this (the public stations,
#: ~3,000, and the tract centres are light).
HEAVY_CANDIDATES = 5_000
#: Solutions kept per server process (:class:`SolutionCache`); a solution of the
#: bundled data is ~1 MB, so the cache stays under ~100 MB.
SOLUTION_CACHE_SIZE = 96


class ComputeLanes:
    """Locks that order the numba-backed fits of all sessions of one process.

    Each fit already uses every core, so running many at once only oversubscribes
    the cores; but one lock for all would let a heavy fit (a large uploaded
    station list, an elbow sweep) stall every other session's k change for
    seconds. So there are two lanes: light fits run one at a time on one lane,
    heavy fits one at a time on the other, and a light fit waits at most for one
    other light fit.

    Two fits at once are safe only with a thread-safe numba threading layer (omp
    or tbb); with numba's ``workqueue`` layer both lanes share one lock.
    """

    def __init__(self):
        self._light = threading.Lock()
        self._heavy = threading.Lock() if _threadsafe_numba() else self._light

    @property
    def separate(self) -> bool:
        """Whether heavy fits have a lane of their own."""
        return self._heavy is not self._light

    def lock(self, heavy: bool) -> threading.Lock:
        """The lock to hold for a fit (``heavy``: see :data:`HEAVY_FIXED_STATIONS`)."""
        return self._heavy if heavy else self._light


def _threadsafe_numba() -> bool:
    """Whether numba's parallel kernels may be entered from two threads at once.

    True for the omp and tbb threading layers, false for ``workqueue``. Decided
    before any parallel kernel has run (the layer is chosen at the first one), the
    way numba chooses: a configured layer, or else tbb, then omp, then workqueue.
    """
    import importlib

    import numba

    try:
        return numba.threading_layer() != "workqueue"
    except ValueError:  # no parallel kernel has run yet
        pass
    layer = str(numba.config.THREADING_LAYER).lower()
    if layer in ("tbb", "omp", "threadsafe", "safe"):
        return True
    if layer == "workqueue":
        return False
    for pool in ("tbbpool", "omppool"):
        try:
            importlib.import_module(f"numba.np.ufunc.{pool}")
            return True
        except ImportError:
            continue
    return False


class SolutionCache:
    """Process-wide, bounded cache of finished app results, computed once.

    Keys are immutable and hashable: ``(kind, Scenario, ...)``; an upload's content
    hash is part of the scenario (``existing="upload:<hash>"``), so two sessions
    with the same controls and the same file share one result. Least recently
    used entries go first beyond ``size``. Identical requests that arrive while one
    is being computed wait for that one (no duplicate fits when 20 sessions open
    at once with the default controls).

    Parameters
    ----------
    size : int
        Number of results kept.
    """

    def __init__(self, size: int = SOLUTION_CACHE_SIZE):
        self.size = int(size)
        self._done: OrderedDict = OrderedDict()
        self._running: dict = {}
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._done)

    def peek(self, key):
        """The finished result for ``key`` or None; never computes, never waits."""
        with self._lock:
            hit = self._done.get(key)
            if hit is not None:
                self._done.move_to_end(key)
                self.hits += 1
            return hit

    def get(self, key, compute):
        """The result for ``key``, computing it with ``compute()`` on a miss.

        Exceptions are not cached: the next request for the key computes again.
        """
        with self._lock:
            hit = self._done.get(key)
            if hit is not None:
                self._done.move_to_end(key)
                self.hits += 1
                return hit
            running = self._running.get(key)
            if running is None:
                self.misses += 1
                running = self._running[key] = Future()
                owner = True
            else:
                self.hits += 1
                owner = False
        if not owner:
            return running.result()
        try:
            result = compute()
        except BaseException as err:
            with self._lock:
                self._running.pop(key, None)
            running.set_exception(err)
            raise
        with self._lock:
            self._running.pop(key, None)
            self._done[key] = result
            while len(self._done) > self.size:
                self._done.popitem(last=False)
        running.set_result(result)
        return result


def web_mercator(lon, lat) -> tuple[np.ndarray, np.ndarray]:
    """Web Mercator metres for the web-tile map (display only; never distances)."""
    from holoviews.util.transform import lon_lat_to_easting_northing

    x, y = lon_lat_to_easting_northing(np.asarray(lon, "float64"),
                                       np.asarray(lat, "float64"))  # fmt: skip
    return np.asarray(x, "float64"), np.asarray(y, "float64")


# --------------------------------------------------------------------------------------
# Data store
# --------------------------------------------------------------------------------------
@dataclass
class DataStore:
    """Loaded, read-only inputs shared by every session of the app.

    Parameters
    ----------
    vehicles : (pandas.DataFrame, LoadReport)
        :func:`evplanner.data.load_vehicles` output.
    stations : (pandas.DataFrame, LoadReport)
        :func:`evplanner.data.load_stations` output (the public stations).

    Notes
    -----
    The data never changes after construction. The mutable parts are deliberate,
    bounded and guarded by locks: a memo of the demand per filter set, the
    process-wide :class:`SolutionCache` of results (``solutions``) and the
    :class:`ComputeLanes` that order the fits of all sessions (``lanes``). The
    store is the one object the sessions of a server process share.
    """

    vehicles: tuple[pd.DataFrame, LoadReport]
    stations: tuple[pd.DataFrame, LoadReport]
    solutions: SolutionCache = field(default_factory=SolutionCache, repr=False)
    lanes: ComputeLanes = field(default_factory=ComputeLanes, repr=False)
    _memo: dict = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_files(cls, vehicles_path=None, stations_path=None) -> DataStore:
        """Load vehicles and stations (bundled files when the paths are None)."""
        from evplanner.data import load_stations, load_vehicles

        store = cls(load_vehicles(vehicles_path), load_stations(stations_path))
        log.info("data store: %d vehicles, %d stations", len(store.vehicles[0]),
                 len(store.stations[0]))  # fmt: skip
        return store

    @property
    def vehicles_report(self) -> LoadReport:
        return self.vehicles[1]

    @property
    def stations_report(self) -> LoadReport:
        return self.stations[1]

    @property
    def counties(self) -> list[str]:
        """Sorted county names present in the vehicle data."""
        col = self.vehicles[0].get("county")
        return [] if col is None else sorted(str(c) for c in col.dropna().unique())

    @property
    def model_year_range(self) -> tuple[int, int]:
        """(first, last) model year in the data; (2000, 2025) when unknown."""
        years = pd.to_numeric(self.vehicles[0].get("model_year"), errors="coerce")
        years = years.dropna() if years is not None else []
        return (2000, 2025) if len(years) == 0 else (int(years.min()),
                                                     int(years.max()))  # fmt: skip

    @property
    def utilities(self) -> list[str]:
        """Sorted electric utility names in the vehicle data (``|``-lists split)."""
        from evplanner.demand import utility_names

        frame = self.vehicles[0]
        return utility_names(frame) if "utility" in frame else []

    @property
    def legislative_districts(self) -> list[int]:
        """Sorted legislative district numbers present in the vehicle data."""
        col = self.vehicles[0].get("legislative_district")
        if col is None:
            return []
        numbers = pd.to_numeric(col, errors="coerce").dropna()
        return sorted(int(d) for d in numbers.unique() if float(d).is_integer())

    def web_extent(self, pad: float = 0.05) -> tuple[float, float, float, float]:
        """Initial map extent (x0, y0, x1, y1) in Web Mercator metres.

        The 0.1-99.9 percentile box of the vehicles, padded by ``pad`` of its size,
        so that a stray far-away registration does not zoom the map out.
        """
        frame = self.vehicles[0]
        x, y = web_mercator(frame["lon"], frame["lat"])
        (x0, x1), (y0, y1) = (np.nanpercentile(v, [0.1, 99.9]) for v in (x, y))
        dx, dy = (x1 - x0) * pad, (y1 - y0) * pad
        return float(x0 - dx), float(y0 - dy), float(x1 + dx), float(y1 + dy)

    def demand(self, scenario: Scenario) -> Demand:
        """The scenario's demand (memoised per filter set)."""
        key = scenario.demand_key
        with self._lock:
            hit = self._memo.get(key)
        if hit is not None:
            return hit
        demand = load_demand(scenario, vehicles=self.vehicles)
        with self._lock:
            if len(self._memo) > 64:  # bounded: filters are few, but never unbounded
                self._memo.pop(next(iter(self._memo)))
            self._memo[key] = demand
        return demand

    def tract_layer(self, scenario: Scenario) -> pd.DataFrame:
        """EVs per 1,000 residents by census tract under the scenario's filters.

        :func:`evplanner.demand.tract_layer` (memoised per filter set) plus
        ``x_web``, ``y_web``: one row per tract with residents or vehicles.
        """
        from evplanner.demand import tract_layer

        key = ("tracts", scenario.counties, scenario.ev_types, scenario.model_years,
               scenario.utilities, scenario.legislative_districts)  # fmt: skip
        with self._lock:
            hit = self._memo.get(key)
        if hit is not None:
            return hit
        frame = tract_layer(
            self.vehicles[0],
            counties=scenario.counties or None,
            ev_types=scenario.ev_types or None,
            model_years=scenario.model_years,
            utilities=scenario.utilities or None,
            legislative_districts=scenario.legislative_districts or None,
        )
        frame = frame.reset_index(drop=True)
        frame["x_web"], frame["y_web"] = web_mercator(frame["lon"], frame["lat"])
        with self._lock:
            if len(self._memo) > 64:
                self._memo.pop(next(iter(self._memo)))
            self._memo[key] = frame
        return frame

    def existing(
        self, scenario: Scenario, uploaded: ExistingSites | None = None
    ) -> ExistingSites:
        """The scenario's existing sites, from the store (or the upload)."""
        return load_existing(scenario, stations=self.stations, uploaded=uploaded)

    def candidates(
        self, scenario: Scenario, uploaded: CandidateSites | None = None
    ) -> CandidateSites | None:
        """The scenario's candidate sites (None: anywhere), from the store's
        stations, the bundled tracts (loaded once per process) or the upload."""
        return load_candidates(scenario, stations=self.stations, uploaded=uploaded)


def read_upload(data: bytes, filename: str, read, *, what: str, noun: str,
                suffixes: tuple[str, ...], max_bytes: int = MAX_UPLOAD_BYTES,
                max_rows: int | None = None):  # fmt: skip
    """Check an uploaded file and read it with a loader of :mod:`evplanner.data`.

    The one way uploads are read: every upload has the same size cap, the same
    checks before parsing, and the same messages naming the user's file.

    Parameters
    ----------
    data : bytes
        The file's content as the browser sent it.
    filename : str
        The name the user gave it, used in messages (and as the loader's path).
    read : callable(Path) -> object
        The loader; it reads the file at the path it is given. An
        :class:`~evplanner.errors.InputError` it raises is re-raised naming
        ``filename`` instead of the temporary path.
    what, noun : str
        What the file is and what its rows are, for messages (``"a station
        list"``, ``"stations"``).
    suffixes : tuple of str
        Accepted file name endings, lower case (``(".csv",)``).
    max_bytes : int
        Size cap in bytes.
    max_rows : int, optional
        Cap on data rows of a CSV, checked by counting lines before parsing (the
        loader checks again after: quoted line breaks can hide rows).

    Returns
    -------
    result : object
        What ``read`` returned.
    token : str
        ``"upload:<content hash>"``: the scenario value for the upload, so that
        sessions with the same file share cached solutions.

    Raises
    ------
    InputError
        Empty, too large, a file type not in ``suffixes``, too many rows, or
        whatever the loader refuses (unreadable, bad rows), naming the file.
    """
    name = Path(filename or "upload").name
    if data is None or len(data) == 0:
        raise InputError("the uploaded file is empty", path=name)
    if len(data) > max_bytes:
        raise upload_too_large(name, len(data), max_bytes, what)
    if not name.lower().endswith(suffixes):
        raise InputError(f"expected a {' / '.join(suffixes)} file of {noun}",
                         path=name)  # fmt: skip
    if max_rows is not None and name.lower().endswith(".csv"):
        # Lines after the header, before any parsing: a too-long file costs nothing.
        lines = data.count(b"\n") + (not data.endswith(b"\n")) - 1
        if lines > max_rows:
            raise InputError(_too_many(lines, max_rows, noun), path=name)
    # The loaders read paths, and their messages name the path: write the bytes
    # under the user's own file name in a private temporary folder.
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    with tempfile.TemporaryDirectory(prefix="evplanner-upload-") as tmp:
        path = Path(tmp) / safe
        path.write_bytes(data)
        try:
            result = read(path)
        except InputError as err:
            raise InputError(err.message, path=name, row=err.row, column=err.column,
                             value=err.value) from None  # fmt: skip
        except (UnicodeDecodeError, ValueError, OSError) as err:
            # pandas' ParserError and pyarrow's ArrowInvalid are ValueErrors.
            raise InputError(f"not a readable file ({err})", path=name) from None
    return result, f"{UPLOAD_PREFIX}{hashlib.sha256(data).hexdigest()[:16]}"


def parse_uploaded_stations(data: bytes, filename: str = "upload.csv",
                            max_bytes: int = MAX_UPLOAD_BYTES,
                            max_stations: int = MAX_UPLOAD_STATIONS,
                            ) -> tuple[ExistingSites, str]:  # fmt: skip
    """Read an uploaded CSV of existing stations (``lon``, ``lat`` columns).

    Parameters
    ----------
    data : bytes
        The file's content as the browser sent it.
    filename : str
        The name the user gave it, used in messages.
    max_bytes : int
        Size cap in bytes.
    max_stations : int
        Cap on the number of stations (data rows), checked before the file is
        parsed (a line count) and after.

    Returns
    -------
    sites : ExistingSites
        The stations and their load report, named after the file.
    existing : str
        The scenario value for them: ``"upload:<content hash>"``.

    Raises
    ------
    InputError
        Empty, too large, more than ``max_stations`` rows, not a CSV, no lon/lat
        columns, or any row dropped by the loader for bad coordinates (missing,
        unparsable, out of range): a station list with bad rows is rejected
        whole, naming every bad row, so that no station silently disappears from
        the plan. Non-electric rows of an AFDC export are skipped.

    Examples
    --------
    >>> sites, existing = parse_uploaded_stations(b"lon,lat\\n-122.3,47.6\\n", "s.csv")
    >>> sites.stations[["lon", "lat"]].to_numpy().tolist(), existing[:7]
    ([[-122.3, 47.6]], 'upload:')
    >>> parse_uploaded_stations(b"lon,lat\\n-122.3,147.6\\n", "s.csv")
    Traceback (most recent call last):
    ...
    evplanner.errors.InputError: s.csv, row 1: 1 of 1 rows are not usable stations ...
    """
    from evplanner.data import load_stations

    name = Path(filename or "upload.csv").name

    def read(path: Path):
        # Strict: a list with a bad or out-of-area row is refused whole, so that
        # no station the planner meant to keep silently disappears.
        return load_stations(path, strict=True)

    (stations, report), token = read_upload(
        data, name, read, what="a station list", noun="stations", suffixes=(".csv",),
        max_bytes=max_bytes, max_rows=max_stations,
    )  # fmt: skip
    report.source = name
    if len(stations) == 0:
        raise InputError("no stations in the file", path=name)
    if len(stations) > max_stations:  # quoted line breaks can hide rows from the count
        raise InputError(_too_many(len(stations), max_stations, "stations"),
                         path=name)  # fmt: skip
    sites = ExistingSites(stations.reset_index(drop=True), report, f"uploaded {name}")
    return sites, token


def parse_uploaded_candidates(data: bytes, filename: str = "candidates.csv",
                              max_bytes: int = MAX_UPLOAD_BYTES,
                              max_candidates: int = MAX_UPLOAD_CANDIDATES,
                              ) -> tuple[CandidateSites, str]:  # fmt: skip
    """Read an uploaded file of candidate sites: where new sites may go.

    Parameters
    ----------
    data : bytes
        The file's content as the browser sent it.
    filename : str
        The name the user gave it: its ending says the format (``.csv`` with lon,
        lat columns; ``.geojson``/``.json`` or ``.parquet``/``.geoparquet`` of
        points, any CRS). Optional columns ``name`` and ``max_ports``.
    max_bytes : int
        Size cap in bytes.
    max_candidates : int
        Cap on the number of candidate sites.

    Returns
    -------
    candidates : CandidateSites
        The sites (:data:`evplanner.data.CANDIDATE_COLUMNS`) and their load report,
        named after the file.
    token : str
        The scenario value for them: ``"upload:<content hash>"``.

    Raises
    ------
    InputError
        Empty, too large, another file type, too many rows, no lon/lat or no CRS,
        or any bad row (a point that is missing, unparsable or outside the
        planning area, a ``max_ports`` that is not a whole number >= 0): the file
        is refused whole, naming every bad row.

    Examples
    --------
    >>> lots = b"name,lon,lat,max_ports\\nLot A,-122.3,47.6,8\\n"
    >>> sites, token = parse_uploaded_candidates(lots, "lots.csv")
    >>> sites.sites[["name", "max_ports"]].values.tolist(), token[:7]
    ([['Lot A', 8.0]], 'upload:')
    >>> parse_uploaded_candidates(lots + b"Lot B,-122.2,47.5,x\\n", "lots.csv")
    Traceback (most recent call last):
    ...
    evplanner.errors.InputError: lots.csv, row 2: 1 of 2 rows are not usable \
candidate sites (1 invalid max_ports); ...; bad rows: 2
    """
    from evplanner.data import load_candidates as read_candidates

    name = Path(filename or "candidates.csv").name

    def read(path: Path):
        return read_candidates(path, strict=True, max_rows=max_candidates)

    (sites, report), token = read_upload(
        data, name, read, what="a candidate file", noun="candidate sites",
        suffixes=CANDIDATE_SUFFIXES,
        max_bytes=max_bytes, max_rows=max_candidates,
    )  # fmt: skip
    report.source = name
    candidates = CandidateSites(sites.reset_index(drop=True), report,
                                f"uploaded {name}")  # fmt: skip
    return candidates, token


def upload_too_large(filename: str, size_bytes: int,
                     max_bytes: int = MAX_UPLOAD_BYTES,
                     what: str = "a station list") -> InputError:  # fmt: skip
    """The error for an upload of ``size_bytes`` over the limit (also when the
    browser refused it and only its name and size reached the server)."""
    name = Path(filename or "upload.csv").name
    return InputError(f"the file is {size_bytes / 1e6:.1f} MB, larger than the "
                      f"{max_bytes / 1e6:.1f} MB limit for {what}; it was "
                      "not uploaded", path=name)  # fmt: skip


def _too_many(n_rows: int, max_rows: int, noun: str) -> str:
    return (f"{n_rows:,} rows, more than the {max_rows:,} {noun} an uploaded file "
            f"may hold; keep the {noun} near the area you plan for")  # fmt: skip


# --------------------------------------------------------------------------------------
# A plan shaped for display
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Solution:
    """A :class:`~evplanner.planning.Plan` with what the page draws.

    Attributes
    ----------
    plan : Plan
        Every number shown comes from it (and every download is its writers').
    demand : pandas.DataFrame, shape (n,)
        ``lon``, ``lat``, ``weight``, ``x_web``, ``y_web`` (Web Mercator metres),
        ``label`` (row of ``sites``), ``site_id``, ``dist_m`` (L1 metres to it).
    sites : pandas.DataFrame, shape (k + m,)
        The plan's site table plus ``x_web``, ``y_web``, and for display
        ``vehicles``, ``share`` (0..1), ``mean_km``, ``max_km``.
    candidates : pandas.DataFrame, shape (c,)
        The candidate sites the new sites were chosen among (empty when they
        may go anywhere): :data:`evplanner.data.CANDIDATE_COLUMNS` plus
        ``x_web``, ``y_web`` and ``chosen`` (a new site is there).
    curve : pandas.DataFrame
        ``radius_km``, ``share`` and ``baseline_share`` (0..1; NaN without
        existing sites) for the coverage-vs-radius plot.
    """

    plan: Plan
    demand: pd.DataFrame = field(repr=False)
    sites: pd.DataFrame = field(repr=False)
    curve: pd.DataFrame = field(repr=False)
    candidates: pd.DataFrame = field(default_factory=lambda: candidate_frame(None),
                                     repr=False)  # fmt: skip

    @property
    def scenario(self) -> Scenario:
        return self.plan.scenario

    @property
    def n_new(self) -> int:
        return self.plan.n_new_sites

    @property
    def notes(self) -> tuple[str, ...]:
        return self.plan.notes

    @property
    def solve_s(self) -> float:
        return self.plan.timings["total"]

    @property
    def total_weight(self) -> float:
        return self.plan.coverage.total_weight

    @classmethod
    def from_plan(
        cls, plan: Plan, candidates: CandidateSites | None = None
    ) -> Solution:
        """Shape ``plan`` (an in-memory plan, with the candidate sites it chose
        among, if any) for display."""
        sites = plan.sites.assign(
            vehicles=plan.sites["vehicles_served"],
            share=plan.sites["share_of_demand"],
            mean_km=plan.sites["mean_distance_m"] / 1000,
            max_km=plan.sites["max_distance_m"] / 1000,
        )
        sites["x_web"], sites["y_web"] = web_mercator(sites["lon"], sites["lat"])
        d = plan.demand
        demand = d[["lon", "lat", "weight"]].copy()
        demand["x_web"], demand["y_web"] = web_mercator(d["lon"], d["lat"])
        demand["label"] = d["site"].to_numpy()
        demand["site_id"] = sites["site_id"].to_numpy()[demand["label"].to_numpy()]
        demand["dist_m"] = d["distance_m"].to_numpy()
        c, today = plan.coverage, plan.today
        curve = pd.DataFrame({
            "radius_km": c.radii_m / 1000, "share": c.coverage_curve,
            "baseline_share": (today.coverage_curve if today is not None
                               else np.full(len(c.radii_m), np.nan)),
        })  # fmt: skip
        return cls(plan, demand, sites, curve,
                   candidate_frame(candidates, plan.chosen_candidates))  # fmt: skip


def candidate_frame(candidates: CandidateSites | None,
                    chosen: np.ndarray | None = None) -> pd.DataFrame:  # fmt: skip
    """Candidate sites for the map: their table plus ``x_web``, ``y_web`` (Web
    Mercator metres) and ``chosen`` (whether a new site is at the row; ``chosen``
    holds the rows, :attr:`Plan.chosen_candidates`). Empty for None."""
    from evplanner.data import CANDIDATE_COLUMNS

    if candidates is None:
        numeric = ("lon", "lat", "max_ports")
        frame = pd.DataFrame(
            {
                c: pd.Series(dtype="float64" if c in numeric else object)
                for c in CANDIDATE_COLUMNS
            }
        )
    else:
        frame = candidates.sites[CANDIDATE_COLUMNS].reset_index(drop=True)
    frame = frame.assign(chosen=np.zeros(len(frame), dtype=bool))
    if chosen is not None and len(frame):
        frame.loc[np.asarray(chosen, dtype=np.int64), "chosen"] = True
    frame["x_web"], frame["y_web"] = web_mercator(frame["lon"], frame["lat"])
    return frame


@dataclass(frozen=True)
class RolloutView:
    """A :class:`~evplanner.planning.rollout.Rollout` with what the page draws.

    Attributes
    ----------
    rollout : Rollout
        Every number shown comes from it.
    per_year : pandas.DataFrame, one row per year
        :meth:`Rollout.per_year` plus ``coverage_pct`` and ``today_pct`` (0..100)
        and ``mean_km``.
    sites : pandas.DataFrame, shape (sites,)
        The rollout's site table plus ``x_web``, ``y_web`` (Web Mercator metres);
        ``year`` is the year a new site is built (missing for today's sites).
    candidates : pandas.DataFrame
        :func:`candidate_frame` of the rollout's candidate sites (empty when
        sites may go anywhere) plus ``year``, the year each is opened (NaN:
        never).
    """

    rollout: Rollout
    per_year: pd.DataFrame = field(repr=False)
    sites: pd.DataFrame = field(repr=False)
    candidates: pd.DataFrame = field(default_factory=lambda: candidate_frame(None),
                                     repr=False)  # fmt: skip

    @property
    def years(self) -> tuple[int, ...]:
        return self.rollout.years

    @property
    def radius_km(self) -> float:
        return self.rollout.scenario.radius_m / 1000

    @classmethod
    def from_rollout(
        cls, result: Rollout, candidates: CandidateSites | None = None
    ) -> RolloutView:
        """Shape ``result`` (planned among ``candidates``, if given) for display."""
        per_year = result.per_year()
        per_year = per_year.assign(
            coverage_pct=per_year["coverage_share"] * 100,
            today_pct=pd.to_numeric(per_year["today_coverage_share"]) * 100,
            mean_km=per_year["mean_distance_m"] / 1000,
        )
        sites = result.sites.copy()
        sites["x_web"], sites["y_web"] = web_mercator(sites["lon"], sites["lat"])
        frame = candidate_frame(candidates)
        # The year each candidate is opened (NaN: never): each year's plan opens
        # its own new sites, earlier ones being held as stations.
        opened = np.full(len(frame), np.nan)
        for year, plan in zip(result.years, result.plans, strict=True):
            if plan.chosen_candidates is not None and len(frame):
                opened[np.asarray(plan.chosen_candidates, dtype=np.int64)] = year
        return cls(result, per_year, sites, frame.assign(year=opened))

    def built_by(self, year: int) -> pd.DataFrame:
        """The new sites built in ``year`` or earlier."""
        new = self.sites[self.sites["kind"] == "new"]
        return new[new["year"].to_numpy(dtype="float64") <= year]

    def row(self, year: int) -> dict:
        """The :attr:`per_year` row of ``year`` (the nearest planned year before it,
        or the first)."""
        years = self.per_year["year"].to_numpy()
        index = max(int(np.searchsorted(years, year, side="right")) - 1, 0)
        return self.per_year.iloc[index].to_dict()


# --------------------------------------------------------------------------------------
# Planning on the store's data
# --------------------------------------------------------------------------------------
def _heavy(scenario: Scenario, existing: ExistingSites | None,
           candidates: CandidateSites | None = None) -> bool:  # fmt: skip
    """Whether a fit goes to the heavy lane (see :class:`ComputeLanes`)."""
    n_fixed = 0 if existing is None else len(existing.stations)
    n_candidates = 0 if candidates is None else len(candidates)
    # Capacity-aware siting solves transport problems: ~60 s on the bundled tract
    # demand with today's public stations (1.4 s on one county), against ~1 s.
    return (
        n_fixed > HEAVY_FIXED_STATIONS
        or scenario.new_sites > HEAVY_NEW_SITES
        or n_candidates > HEAVY_CANDIDATES
        or scenario.capacitated
    )


def cached_solution(store: DataStore, scenario: Scenario) -> Solution | None:
    """The store's finished solution of ``scenario``, or None (never computes)."""
    return store.solutions.peek(("solve", scenario))


def solve(store: DataStore, scenario: Scenario,
          uploaded: ExistingSites | None = None,
          previous: Solution | None = None,
          candidates: CandidateSites | None = None) -> Solution:  # fmt: skip
    """Plan one scenario on the store's data (reusing ``previous``'s sites when
    only the radius changed) and shape it for display.

    ``uploaded`` and ``candidates`` are the uploaded stations and candidate sites
    of a scenario that names uploads. Served from the store's
    :class:`SolutionCache` when any session of the process has solved the same
    scenario (an upload's content hash is part of it).

    Raises
    ------
    InputError
        Filters that leave no demand or fewer locations than new sites, or an
        upload scenario without its stations or candidates.
    """

    def compute() -> Solution:
        demand = store.demand(scenario)
        existing = store.existing(scenario, uploaded)
        sites = store.candidates(scenario, candidates)
        with store.lanes.lock(_heavy(scenario, existing, sites)):
            plan = plan_solve(
                scenario,
                demand=demand,
                existing=existing,
                candidates=sites,
                previous=previous.plan if previous else None,
            )
        return Solution.from_plan(plan, sites)

    return store.solutions.get(("solve", scenario), compute)


def sweep(store: DataStore, scenario: Scenario, new_sites,
          uploaded: ExistingSites | None = None,
          candidates: CandidateSites | None = None) -> pd.DataFrame:  # fmt: skip
    """Objective and coverage for each number of new sites the demand (and the
    candidate sites, if any) allow.

    A sweep is several fits: it runs on the heavy lane, and its table is cached
    per scenario and list of k (callers must not modify the returned frame).
    """
    demand = store.demand(scenario)
    sites = store.candidates(scenario, candidates)
    most = demand.n_points if sites is None else min(demand.n_points, len(sites))
    counts = sorted({int(k) for k in new_sites if 1 <= int(k) <= most})
    if not counts:
        raise InputError(f"The filters leave {demand.n_points} demand location(s) "
                         f"and {most} place(s) to site on: too few for the "
                         "elbow.")  # fmt: skip

    def compute() -> pd.DataFrame:
        existing = store.existing(scenario, uploaded)
        with store.lanes.lock(heavy=True):
            return plan_sweep(scenario, counts, demand=demand, existing=existing,
                              candidates=sites)  # fmt: skip

    # A copy: the cached table is shared by every session that asks for it.
    return store.solutions.get(("sweep", scenario, tuple(counts)), compute).copy()


def compare(
    store: DataStore, scenario: Scenario
) -> tuple[KMeansComparison, dict[str, pd.DataFrame]]:
    """K-Medians against K-Means on the scenario's demand (no existing sites).

    Two fits: on the heavy lane, cached per scenario.

    Returns
    -------
    comparison : KMeansComparison
    sites : dict
        ``"kmedians"``/``"kmeans"`` -> ``lon``, ``lat``, ``x_web``, ``y_web`` of the
        sites fitted on the demand alone, for side-by-side maps.
    """

    def compute():
        with store.lanes.lock(heavy=True):
            comparison = compare_kmeans(scenario, demand=store.demand(scenario))
        sites = {}
        for method in ("kmedians", "kmeans"):
            frame = comparison.sites_lonlat(method)
            frame["x_web"], frame["y_web"] = web_mercator(frame["lon"], frame["lat"])
            sites[method] = frame
        return comparison, sites

    return store.solutions.get(("compare", scenario), compute)


def rollout(store: DataStore, scenario: Scenario, years,
            uploaded: ExistingSites | None = None,
            candidates: CandidateSites | None = None) -> RolloutView:  # fmt: skip
    """A staged rollout on the store's data: ``scenario.new_sites`` new sites per
    year on each year's forecast demand, earlier years' sites held fixed.

    Raises
    ------
    InputError
        Years out of order, or a scenario a forecast cannot serve (ZIP demand, a
        weighting other than vehicles, a model-year filter).
    """
    existing = store.existing(scenario, uploaded)
    sites = store.candidates(scenario, candidates)
    # Several fits (one per year): the heavy lane.
    with store.lanes.lock(heavy=True):
        result = plan_rollout(scenario, list(years), vehicles=store.vehicles,
                              existing=existing, candidates=sites)  # fmt: skip
    return RolloutView.from_rollout(result, sites)
