"""The planner's solve pipeline, without any Panel: data store, scenario, solution.

The web app's callbacks call :func:`solve`, :func:`sweep` and :func:`compare`; those
only glue library functions together (``evplanner.demand`` for the demand points,
``evplanner.projection`` for metres, ``evplanner.kmedians`` for the sites,
``evplanner.metrics`` for coverage) and shape the result for display. Nothing here
imports panel, so the pipeline can be tested, benchmarked and reused on its own.
"""

from __future__ import annotations

import logging
import re
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyproj

from evplanner.errors import InputError

__all__ = [
    "ALGORITHMS",
    "EXISTING",
    "MAX_UPLOAD_BYTES",
    "WEIGHTINGS",
    "DataStore",
    "Scenario",
    "Solution",
    "compare",
    "parse_uploaded_stations",
    "solve",
    "sweep",
]

log = logging.getLogger(__name__)

#: Demand weighting choices: UI label -> ``evplanner.demand`` weighting name.
WEIGHTINGS = {
    "All vehicles": "vehicles",
    "BEV only": "bev",
    "Weighted by electric range": "range",
}
#: Siting algorithms: UI label -> internal name.
ALGORITHMS = {"K-Medians": "kmedians", "K-Means (comparison)": "kmeans"}
#: Existing (fixed) station choices: UI label -> internal name.
EXISTING = {
    "None": "none",
    "Public stations (all)": "all",
    "Public stations (DC fast only)": "dc_fast",
    "Uploaded CSV": "uploaded",
}
#: Largest uploaded station file accepted, in bytes. A station list of a few
#: thousand lon/lat rows is well under 1 MB; the cap keeps a stray upload (a
#: vehicle file, an image) from tying up a server thread.
MAX_UPLOAD_BYTES = 2_000_000
#: Radii (km) of the coverage-share-vs-radius curve.
CURVE_RADII_KM = np.array(
    [0.5, 1, 2, 3, 4, 5, 7.5, 10, 15, 20, 25, 30, 40, 50, 75, 100], dtype="float64")


#: Serialises the numba-backed fits of all sessions in one server process. The
#: kernels already use every core for one fit, so running sessions' fits one after
#: another is as fast overall as overlapping them, and it never oversubscribes the
#: cores with spinning OpenMP teams (nor calls numba's ``workqueue`` layer, which is
#: not thread-safe, from two threads at once).
_COMPUTE_LOCK = threading.Lock()


# --------------------------------------------------------------------------------------
# Data store
# --------------------------------------------------------------------------------------
@dataclass
class DataStore:
    """Loaded, read-only inputs shared by every session of the app.

    Parameters
    ----------
    vehicles : pd.DataFrame
        Output of :func:`evplanner.data.load_vehicles` (``lon``, ``lat`` in degrees,
        ``weight``, ``county``, ``ev_type``, ``model_year``, ``electric_range``...).
    vehicles_report, stations_report : LoadReport or None
        What the loader kept and dropped, shown and exported by the app.
    stations : pd.DataFrame
        Output of :func:`evplanner.data.load_stations` (``station_id``, ``name``,
        ``lon``, ``lat``, ``level2_ports``, ``dc_fast_ports``...).
    crs : pyproj.CRS
        Projected CRS (metres) for every distance; chosen once from all vehicles so
        that a filter never changes the yardstick.

    Notes
    -----
    The store never changes after construction; the only mutable part is a memo of
    aggregated demand per filter (guarded by a lock) so that sessions flipping
    between the same filters do not re-aggregate ~150k rows.
    """

    vehicles: pd.DataFrame
    stations: pd.DataFrame
    crs: pyproj.CRS
    vehicles_report: object = None
    stations_report: object = None
    _memo: dict = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_files(cls, vehicles_path=None, stations_path=None) -> DataStore:
        """Load vehicles and stations (bundled files when the paths are None)."""
        from evplanner.data import load_stations, load_vehicles
        from evplanner.projection import choose_crs

        vehicles, v_report = load_vehicles(vehicles_path)
        stations, s_report = load_stations(stations_path)
        crs = choose_crs(vehicles["lon"].to_numpy(), vehicles["lat"].to_numpy())
        log.info("data store: %d vehicles, %d stations, %s", len(vehicles),
                 len(stations), crs.name)
        return cls(vehicles, stations, crs, v_report, s_report)

    @property
    def counties(self) -> list[str]:
        """Sorted county names present in the vehicle data."""
        col = self.vehicles.get("county")
        if col is None:
            return []
        return sorted(str(c) for c in col.dropna().unique())

    @property
    def model_year_range(self) -> tuple[int, int]:
        """(first, last) model year in the data; (2000, 2025) when unknown."""
        col = self.vehicles.get("model_year")
        years = pd.to_numeric(col, errors="coerce").dropna() if col is not None else []
        if len(years) == 0:
            return (2000, 2025)
        return int(years.min()), int(years.max())

    def web_extent(self, pad: float = 0.05) -> tuple[float, float, float, float]:
        """Initial map extent (x0, y0, x1, y1) in Web Mercator metres.

        The 0.1-99.9 percentile box of the vehicles, padded by ``pad`` of its size,
        so that a stray far-away registration does not zoom the map out.
        """
        lon = self.vehicles["lon"].to_numpy("float64")
        lat = self.vehicles["lat"].to_numpy("float64")
        (x0, x1), (y0, y1) = (np.nanpercentile(v, [0.1, 99.9]) for v in
                              _web_mercator(lon, lat))
        dx, dy = (x1 - x0) * pad, (y1 - y0) * pad
        return float(x0 - dx), float(y0 - dy), float(x1 + dx), float(y1 + dy)

    def demand(self, scenario: Scenario) -> pd.DataFrame:
        """Aggregated demand points (``lon``, ``lat``, ``weight``) for the filters."""
        key = scenario.demand_key
        with self._lock:
            hit = self._memo.get(key)
        if hit is not None:
            return hit
        from evplanner.demand import demand_points

        demand = demand_points(
            self.vehicles,
            counties=list(scenario.counties) or None,
            ev_types=list(scenario.ev_types) or None,
            model_years=scenario.model_years,
            weighting=WEIGHTINGS.get(scenario.weighting, scenario.weighting),
        )
        demand = demand[demand["weight"] > 0].reset_index(drop=True)
        with self._lock:
            if len(self._memo) > 64:  # bounded: filters are few, but never unbounded
                self._memo.pop(next(iter(self._memo)))
            self._memo[key] = demand
        return demand

    def existing_stations(self, mode: str, uploaded: pd.DataFrame | None = None
                          ) -> pd.DataFrame:
        """Stations kept fixed: ``none``, ``all``, ``dc_fast`` or ``uploaded``."""
        mode = EXISTING.get(mode, mode)
        cols = ["station_id", "name", "lon", "lat"]
        if mode == "none":
            return pd.DataFrame({c: pd.Series(dtype="float64" if c in ("lon", "lat")
                                              else "object") for c in cols})
        if mode == "uploaded":
            if uploaded is None:
                raise InputError("Existing stations: no CSV uploaded yet; upload a "
                                 "file with lon and lat columns first.")
            out = uploaded
        elif mode == "dc_fast":
            ports = pd.to_numeric(self.stations["dc_fast_ports"], errors="coerce")
            out = self.stations[ports.fillna(0) > 0]
        elif mode == "all":
            out = self.stations
        else:
            raise ValueError(f"existing: expected one of {list(EXISTING.values())}, "
                             f"got {mode!r}")
        out = out.reset_index(drop=True)
        if "station_id" not in out:
            out = out.assign(station_id=np.arange(1, len(out) + 1))
        if "name" not in out:
            out = out.assign(name="")
        return out[cols].copy()


def parse_uploaded_stations(data: bytes, filename: str = "upload.csv",
                            max_bytes: int = MAX_UPLOAD_BYTES
                            ) -> tuple[pd.DataFrame, object]:
    """Read an uploaded CSV of existing stations (``lon``, ``lat`` columns).

    Parameters
    ----------
    data : bytes
        The file's content as the browser sent it.
    filename : str
        The name the user gave it, used in messages.
    max_bytes : int
        Size cap in bytes.

    Returns
    -------
    stations : pd.DataFrame
        As :func:`evplanner.data.load_stations` returns it.
    report : LoadReport

    Raises
    ------
    InputError
        Empty, too large, not a CSV, no lon/lat columns, or any row dropped by the
        loader for bad coordinates (missing, unparsable, out of range): a station
        list with bad rows is rejected whole, so that no station silently
        disappears from the plan. Non-electric rows of an AFDC export are skipped.

    Examples
    --------
    >>> stations, report = parse_uploaded_stations(b"lon,lat\\n-122.3,47.6\\n", "s.csv")
    >>> stations[["lon", "lat"]].to_numpy().tolist()
    [[-122.3, 47.6]]
    >>> parse_uploaded_stations(b"lon,lat\\n-122.3,147.6\\n", "s.csv")
    Traceback (most recent call last):
    ...
    evplanner.errors.InputError: s.csv: 1 of 1 rows are not usable stations ...
    """
    from evplanner.data import load_stations

    name = Path(filename or "upload.csv").name
    if data is None or len(data) == 0:
        raise InputError("the uploaded file is empty", path=name)
    if len(data) > max_bytes:
        raise InputError(f"the uploaded file is {len(data) / 1e6:.1f} MB, larger than "
                         f"the {max_bytes / 1e6:.1f} MB limit for a station list",
                         path=name)
    if not name.lower().endswith(".csv"):
        raise InputError("expected a .csv file with lon and lat columns", path=name)
    # The loader reads paths, and its messages name the path: write the bytes under
    # the user's own file name in a private temporary folder.
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    with tempfile.TemporaryDirectory(prefix="evplanner-upload-") as tmp:
        path = Path(tmp) / safe
        path.write_bytes(data)
        try:
            stations, report = load_stations(path)
        except InputError as err:
            err.path = name
            raise InputError(err.message, path=name, row=err.row, column=err.column,
                             value=err.value) from None
        except (UnicodeDecodeError, pd.errors.ParserError) as err:
            raise InputError(f"not a readable CSV file ({err})", path=name) from None
    # Rows that are not charging stations (an AFDC export lists every fuel) are
    # rightly skipped; any other dropped row is a station the user meant to keep.
    dropped = {k: v for k, v in getattr(report, "dropped", {}).items()
               if v and k != "not an electric station"}
    if dropped:
        examples = getattr(report, "examples", {}) or {}
        reasons = "; ".join(
            f"{n} {reason}" + (f" (first: {examples[reason]})"
                               if examples.get(reason) else "")
            for reason, n in dropped.items())
        raise InputError(f"{sum(dropped.values())} of {report.rows_read} rows are not "
                         f"usable stations ({reasons}); fix the file and upload it "
                         "again", path=name)
    if len(stations) == 0:
        raise InputError("no stations in the file", path=name)
    return stations, report


# --------------------------------------------------------------------------------------
# Scenario and solution
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scenario:
    """Everything a solve depends on (hashable, so it can key caches).

    ``radius_m`` only affects the metrics, not the sites.

    Examples
    --------
    >>> a, b = Scenario(k=5), Scenario(k=5, radius_m=20_000.0)
    >>> a.solve_key == b.solve_key, a == b
    (True, False)
    """

    k: int = 7
    counties: tuple[str, ...] = ()
    ev_types: tuple[str, ...] = ()
    model_years: tuple[int, int] | None = None
    weighting: str = "vehicles"
    radius_m: float = 5_000.0
    algorithm: str = "kmedians"
    seed: int = 0
    existing: str = "none"
    #: Identifies the uploaded station file (a hash), so a new upload re-solves.
    upload_token: str = ""

    @property
    def demand_key(self) -> tuple:
        return (self.counties, self.ev_types, self.model_years, self.weighting)

    @property
    def solve_key(self) -> tuple:
        return (self.demand_key, self.k, self.algorithm, self.seed, self.existing,
                self.upload_token)


@dataclass
class Solution:
    """A solved scenario, shaped for display and export.

    Attributes
    ----------
    scenario : Scenario
    demand : pd.DataFrame, shape (n,)
        ``lon``, ``lat``, ``weight``, ``x_web``, ``y_web`` (Web Mercator metres,
        display only), ``label`` (row of ``sites``), ``site_id``, ``dist_m`` (L1
        metres to the assigned site).
    sites : pd.DataFrame, shape (k + m,)
        New sites first, then the m existing stations: ``site_id``, ``kind``
        ("new"/"existing"), ``name``, ``lon``, ``lat``, ``x_web``, ``y_web``,
        ``vehicles`` (assigned weight), ``share`` (of total weight, 0..1),
        ``mean_km``, ``max_km``, ``points``.
    metrics : object
        Coverage metrics of new + existing sites (``evplanner.metrics``).
    baseline : object or None
        The same metrics for the existing stations alone (today's network).
    curve : pd.DataFrame
        ``radius_km``, ``share`` and ``baseline_share`` (0..1) for the
        coverage-vs-radius plot.
    objective_m : float
        Weighted sum of L1 distances (weight x metres).
    solve_s : float
        Wall time of the solve in seconds.
    """

    scenario: Scenario
    demand: pd.DataFrame
    sites: pd.DataFrame
    metrics: object
    baseline: object
    curve: pd.DataFrame
    objective_m: float
    solve_s: float
    centers_m: np.ndarray = field(repr=False, default=None)
    notes: tuple[str, ...] = ()

    @property
    def n_new(self) -> int:
        return int((self.sites["kind"] == "new").sum())

    @property
    def total_weight(self) -> float:
        return float(self.demand["weight"].sum())


def _web_mercator(lon, lat) -> tuple[np.ndarray, np.ndarray]:
    # Display coordinates for the web-tile map only; distances never use them.
    from holoviews.util.transform import lon_lat_to_easting_northing

    x, y = lon_lat_to_easting_northing(np.asarray(lon, "float64"),
                                       np.asarray(lat, "float64"))
    return np.asarray(x, "float64"), np.asarray(y, "float64")


# --------------------------------------------------------------------------------------
# Solving
# --------------------------------------------------------------------------------------
def _fit_new_sites(X: np.ndarray, weight: np.ndarray, fixed: np.ndarray,
                   scenario: Scenario) -> tuple[np.ndarray, list[str]]:
    """The k new centres (metres, shape (k, 2)) and notes for the user."""
    notes = []
    if scenario.algorithm == "kmedians":
        from evplanner.kmedians import KMedians

        est = KMedians(n_clusters=scenario.k, random_state=scenario.seed,
                       fixed_centers=fixed if len(fixed) else None)
        est.fit(X, sample_weight=weight)
        centers = np.asarray(est.cluster_centers_, dtype="float64")[: scenario.k]
    elif scenario.algorithm == "kmeans":
        from sklearn.cluster import KMeans

        est = KMeans(n_clusters=scenario.k, random_state=scenario.seed, n_init=4)
        est.fit(X, sample_weight=weight)
        centers = np.asarray(est.cluster_centers_, dtype="float64")
        if len(fixed):
            notes.append("K-Means cannot hold existing stations fixed: it placed the "
                         "new sites ignoring them; coverage counts both.")
    else:
        raise ValueError(f"algorithm: expected 'kmedians' or 'kmeans', got "
                         f"{scenario.algorithm!r}")
    return centers, notes


def solve(store: DataStore, scenario: Scenario, uploaded: pd.DataFrame | None = None,
          previous: Solution | None = None) -> Solution:
    """Solve one scenario: demand points -> sites -> coverage metrics.

    Parameters
    ----------
    store : DataStore
    scenario : Scenario
    uploaded : pd.DataFrame, optional
        Stations from :func:`parse_uploaded_stations`, used when
        ``scenario.existing == "uploaded"``.
    previous : Solution, optional
        The last solution; when only the radius changed its sites are reused and
        just the metrics are recomputed.

    Returns
    -------
    Solution

    Raises
    ------
    InputError
        When the filters leave no demand or fewer demand locations than ``k``, or
        the uploaded stations are missing.
    """
    from evplanner import metrics as M

    t0 = time.perf_counter()
    X, weight, fixed = _problem_arrays(store, scenario, uploaded)
    if len(X) < scenario.k:
        raise InputError(f"The filters leave {len(X)} demand location(s), fewer than "
                         f"k = {scenario.k}: lower k or widen the filters.")
    demand = store.demand(scenario)
    fixed_df = store.existing_stations(scenario.existing, uploaded)

    radii_m = CURVE_RADII_KM * 1000
    with _COMPUTE_LOCK:
        if previous is not None and previous.scenario.solve_key == scenario.solve_key:
            new_centers, notes = previous.centers_m, list(previous.notes)
        else:
            new_centers, notes = _fit_new_sites(X, weight, fixed, scenario)
        metrics = M.coverage_metrics(X, new_centers, sample_weight=weight,
                                     fixed_sites=fixed if len(fixed) else None,
                                     radius_m=scenario.radius_m, radii_m=radii_m)
        baseline = None
        if len(fixed):
            baseline = M.compare_networks(
                M.baseline_metrics(X, fixed, sample_weight=weight,
                                   radius_m=scenario.radius_m, radii_m=radii_m),
                metrics)

    k = len(new_centers)
    width = len(str(k))
    table = M.site_table(metrics, crs=store.crs)
    # Existing stations keep their own coordinates (a round trip through metres
    # would move them by micrometres and make them look like different places).
    lon = table["lon"].to_numpy().copy()
    lat = table["lat"].to_numpy().copy()
    lon[k:] = fixed_df["lon"].to_numpy(dtype="float64")
    lat[k:] = fixed_df["lat"].to_numpy(dtype="float64")
    labels = metrics.labels
    # Hover shows vehicles even when the demand is weighted by range.
    vehicles = np.bincount(labels, weights=demand["vehicles"].to_numpy("float64"),
                           minlength=len(table)) if "vehicles" in demand else (
        table["weight"].to_numpy())
    sites = pd.DataFrame({
        "site_id": [f"N{i + 1:0{width}d}" for i in range(k)]
        + [f"E{sid}" for sid in fixed_df["station_id"]],
        "kind": ["new"] * k + ["existing"] * len(fixed_df),
        "name": [""] * k + fixed_df["name"].fillna("").astype(str).tolist(),
        "lon": lon,
        "lat": lat,
        "demand": table["weight"].to_numpy(),
        "vehicles": vehicles,
        "share": table["share"].to_numpy(),
        "mean_km": table["mean_distance_m"].to_numpy() / 1000,
        "max_km": table["max_distance_m"].to_numpy() / 1000,
        "points": table["n_points"].to_numpy(),
    })
    sites["x_web"], sites["y_web"] = _web_mercator(sites["lon"], sites["lat"])

    out = demand[["lon", "lat", "weight"]].copy()
    out["x_web"], out["y_web"] = _web_mercator(out["lon"], out["lat"])
    out["label"] = labels
    out["site_id"] = sites["site_id"].to_numpy()[labels]
    out["dist_m"] = metrics.distance_m

    base_share = (baseline.baseline.coverage_curve if baseline is not None
                  else np.full(len(metrics.radii_m), np.nan))
    curve = pd.DataFrame({"radius_km": metrics.radii_m / 1000,
                          "share": metrics.coverage_curve,
                          "baseline_share": base_share})
    solve_s = time.perf_counter() - t0
    log.info("solved k=%d (%s, %d fixed) on %d points in %.3f s", k,
             scenario.algorithm, len(fixed), len(X), solve_s)
    return Solution(scenario, out, sites, metrics, baseline, curve,
                    metrics.objective_m, solve_s, centers_m=new_centers,
                    notes=tuple(notes))


def sweep(store: DataStore, scenario: Scenario, ks, uploaded=None) -> pd.DataFrame:
    """Objective and coverage for each k in ``ks`` (the elbow plot).

    Thin wrapper over :func:`evplanner.metrics.sweep_k` on the scenario's demand
    and existing stations (K-Medians; the sweep is for choosing k).

    Returns
    -------
    pd.DataFrame
        The sweep table (``k``, ``objective_m``, ``coverage_share``,
        ``mean_distance_m``...) for the ks that the filtered demand allows.
    """
    from evplanner.metrics import sweep_k

    X, weight, fixed = _problem_arrays(store, scenario, uploaded)
    ks = sorted({int(k) for k in ks if 1 <= int(k) <= len(X)})
    if not ks:
        raise InputError(f"The filters leave {len(X)} demand location(s): too few "
                         "for the sweep.")
    with _COMPUTE_LOCK:
        return sweep_k(X, ks, sample_weight=weight,
                       fixed_sites_m=fixed if len(fixed) else None,
                       radius_m=scenario.radius_m, random_state=scenario.seed)


def compare(store: DataStore, scenario: Scenario, uploaded=None):
    """K-Medians against K-Means on the scenario's demand (no existing stations).

    Returns
    -------
    comparison : evplanner.metrics.KMeansComparison
        Its ``table`` judges both by the L1 objective and coverage, with and without
        far outliers; ``centers[(method, "clean")]`` are the sites in metres.
    sites : dict[str, pd.DataFrame]
        ``"kmedians"``/``"kmeans"`` -> ``lon``, ``lat``, ``x_web``, ``y_web`` of the
        clean-data sites, for side-by-side maps.
    """
    from evplanner.metrics import compare_kmeans
    from evplanner.projection import to_lonlat

    X, weight, _ = _problem_arrays(store, scenario, uploaded)
    if len(X) < scenario.k:
        raise InputError(f"The filters leave {len(X)} demand location(s), fewer than "
                         f"k = {scenario.k}.")
    with _COMPUTE_LOCK:
        comparison = compare_kmeans(X, scenario.k, sample_weight=weight,
                                    radius_m=scenario.radius_m, n_init=4,
                                    random_state=scenario.seed)
    sites = {}
    for method in ("kmedians", "kmeans"):
        c = comparison.centers[(method, "clean")]
        lon, lat = to_lonlat(c[:, 0], c[:, 1], store.crs)
        x_web, y_web = _web_mercator(lon, lat)
        sites[method] = pd.DataFrame({"lon": lon, "lat": lat, "x_web": x_web,
                                      "y_web": y_web})
    return comparison, sites


def _problem_arrays(store: DataStore, scenario: Scenario, uploaded=None):
    """Demand in metres (n, 2), weights (n,), fixed stations in metres (m, 2)."""
    from evplanner.projection import to_metres

    demand = store.demand(scenario)
    if len(demand) == 0:
        raise InputError("The filters leave no vehicles: widen the county, EV type "
                         "or model year selection.")
    x_m, y_m = to_metres(demand["lon"].to_numpy(), demand["lat"].to_numpy(), store.crs)
    fixed_df = store.existing_stations(scenario.existing, uploaded)
    fx, fy = to_metres(fixed_df["lon"].to_numpy(), fixed_df["lat"].to_numpy(),
                       store.crs)
    return (np.column_stack([x_m, y_m]), demand["weight"].to_numpy("float64"),
            np.column_stack([fx, fy]) if len(fixed_df) else np.empty((0, 2)))
