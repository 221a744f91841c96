"""What a scenario plans on: its demand points and its existing sites, in metres.

:func:`load_demand` reads, filters, weights, aggregates and projects the demand of a
:class:`~evplanner.planning.Scenario` in one of two modes, which give the same points
(and so the same plan):

*in memory* (no Dask client)
    Files are read with pandas (:func:`evplanner.data.load_vehicles`) and the points
    are NumPy arrays.
*on a Dask cluster*
    Files are read with ``dask.dataframe`` on the workers
    (:func:`evplanner.data.read_points_dask`), cleaned, filtered, weighted and
    projected per partition into Dask arrays chunked by rows. The points never come
    to the client.

Which rows become demand points, in both modes:

* *vehicle files* (the WA DOL export, the bundled Parquet, or any file with vehicle
  attribute columns) are filtered (county, EV type, model years), weighted and
  aggregated to one demand point per distinct location (weight summed), sorted by
  lon, lat. On a cluster the aggregation is a Dask ``groupby`` + ``sort_values``.
* *plain lon/lat files* (optional ``weight``) are taken row by row, in file order:
  they are usually demand points already (synthetic demand, a planner's own
  aggregation). Filters need vehicle columns, so on a plain file they are an error.

:func:`load_existing` turns the scenario's ``existing`` choice into
:class:`ExistingSites` (the station rows and the load report of their file).
"""

from __future__ import annotations

import glob
import logging
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd
import pyproj

from evplanner.data import (
    BUNDLED_STATIONS,
    BUNDLED_VEHICLES,
    VEHICLE_COLUMNS,
    LoadReport,
    attribute_columns,
    load_stations,
    load_vehicles,
    merge_reports,
    read_points_dask,
)
from evplanner.demand import demand_points, demand_points_dask
from evplanner.errors import InputError
from evplanner.planning.scenario import Scenario
from evplanner.projection import choose_crs, choose_crs_dask, to_metres

__all__ = [
    "CandidateSites",
    "Demand",
    "ExistingSites",
    "expand_inputs",
    "load_candidates",
    "load_demand",
    "load_existing",
]

logger = logging.getLogger(__name__)

# Scenario field -> (the vehicle attribute column it needs, how users name it).
_NEEDS = {
    "counties": ("county", "counties"),
    "ev_types": ("ev_type", "ev_types"),
    "model_years": ("model_year", "model_years"),
}
_WEIGHTING_NEEDS = {"bev": ("ev_type",), "range": ("electric_range", "make", "model")}

#: Partitions per worker thread when demand is read on a cluster (as long as each
#: keeps :data:`evplanner.data.MIN_PARTITION_ROWS` rows): every thread works on
#: every pass of the solver, and a second partition per thread evens out uneven
#: placement and a slower worker without multiplying per-task costs.
PARTITIONS_PER_THREAD = 2


# --------------------------------------------------------------------------------------
# Demand
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Demand:
    """Demand points in metres, as NumPy arrays or Dask arrays chunked by rows.

    Attributes
    ----------
    X : numpy.ndarray or dask.array.Array, shape (n, 2)
        ``x_m, y_m`` in ``crs``, metres.
    weight : numpy.ndarray or dask.array.Array, shape (n,)
        Demand weight of each point (what the plan minimises over).
    vehicles : numpy.ndarray or dask.array.Array, shape (n,)
        Vehicles at each point (equal to ``weight`` unless the weighting is ``bev``
        or ``range``).
    lon, lat : numpy.ndarray, shape (n,), or None
        Degrees, for in-memory demand (None on a cluster).
    population : numpy.ndarray, shape (n,), or None
        Residents at each point (tract demand: the tract's 2020 population under
        the filters); None when unknown (ZIP demand, plain files).
    crs : pyproj.CRS
        The projected CRS of ``X``.
    report : LoadReport
        What reading kept and dropped.
    aggregated : bool
        Whether identical locations were aggregated (vehicle files).
    source : str
        The input, as given.
    """

    X: np.ndarray | da.Array
    weight: np.ndarray | da.Array
    vehicles: np.ndarray | da.Array
    lon: np.ndarray | None
    lat: np.ndarray | None
    crs: pyproj.CRS
    report: LoadReport
    aggregated: bool
    source: str
    population: np.ndarray | None = None

    @property
    def n_points(self) -> int:
        """Number of demand points (rows)."""
        return int(self.X.shape[0])

    @property
    def is_dask(self) -> bool:
        """Whether the points live on a Dask cluster."""
        return isinstance(self.X, da.Array)

    @property
    def n_partitions(self) -> int:
        """Row chunks of the points (1 in memory)."""
        return int(self.X.numblocks[0]) if self.is_dask else 1


def expand_inputs(inputs: Sequence[str | Path] | str | Path | None) -> list[Path]:
    """Files named by paths or globs (empty or ``None``: the bundled vehicles).

    Raises
    ------
    InputError
        If a glob matches nothing or a named file does not exist.
    """
    if inputs is None or (not isinstance(inputs, (str, Path)) and not inputs):
        return [BUNDLED_VEHICLES]
    specs = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    paths: list[Path] = []
    for spec in specs:
        text = str(spec)
        if glob.has_magic(text):
            matched = sorted(glob.glob(text))
            if not matched:
                raise InputError("no file matches this pattern", path=text)
            paths.extend(Path(m) for m in matched)
        else:
            path = Path(text)
            if not path.exists():
                raise InputError("file not found", path=text)
            if path.is_dir():
                raise InputError("expected a file or a glob, got a directory",
                                 path=text)  # fmt: skip
            paths.append(path)
    return paths


def _columns_of(path: Path) -> list[str]:
    """Column names of a CSV header or a Parquet schema (empty if unreadable)."""
    try:
        with path.open("rb") as fh:
            head = fh.read(65536)
        if head[:4] == b"PAR1":
            import pyarrow.parquet as pq

            return list(pq.read_schema(path).names)
        text = head.decode("utf-8-sig", errors="replace").splitlines()
        return [c.strip().strip('"') for c in text[0].split(",")] if text else []
    except OSError:
        return []


def _classify(paths: list[Path], scenario: Scenario) -> tuple[bool, str]:
    """Whether the files are vehicle files (aggregate) and their load-report kind.

    Raises
    ------
    InputError
        If the files mix vehicle and plain point files, or a filter needs an
        attribute column a file lacks.
    """
    kinds = {}
    for path in paths:
        columns = _columns_of(path)
        attributes = attribute_columns(columns)
        if "Vehicle Location" in columns:
            kind = "wa-dol-csv"
        elif path.resolve() == BUNDLED_VEHICLES.resolve():
            kind = "bundled-vehicles"
        else:
            kind = "vehicles" if attributes else "points"
        kinds[path] = kind
        wanted = [(column, field) for name, (column, field) in _NEEDS.items()
                  if getattr(scenario, name)]  # fmt: skip
        wanted += [
            (column, "weighting")
            for column in _WEIGHTING_NEEDS.get(scenario.weighting, ())
        ]
        for column, field in wanted:
            if column not in attributes:
                what = ("a plain lon/lat file" if kind == "points"
                        else "a vehicle file without that column")  # fmt: skip
                raise InputError(
                    f"needs the vehicle column {column!r}, but {path} is {what} "
                    f"(columns: {columns[:12]}); filters and weightings apply to "
                    "vehicle files (WA DOL export or the bundled Parquet)",
                    field=field,
                )
    vehicle = {k != "points" for k in kinds.values()}
    if len(vehicle) > 1:
        plain = [str(p) for p, k in kinds.items() if k == "points"][:3]
        raise InputError(
            f"the inputs mix vehicle files and plain lon/lat files ({plain} are "
            "plain); give one kind at a time"
        )
    distinct = set(kinds.values())
    return vehicle.pop(), distinct.pop() if len(distinct) == 1 else "mixed"


def _source_name(paths: list[Path]) -> str:
    return str(paths[0]) if len(paths) == 1 else f"{paths[0]} (+{len(paths) - 1})"


def _no_demand(source: str, report: LoadReport) -> InputError:
    # Say where the rows went: an all-out-of-area file is otherwise a mystery.
    dropped = [f"{n:,} {reason}" for reason, n in report.dropped.items() if n]
    if report.out_of_area and not report.kept_out_of_area:
        dropped.append(f"{report.out_of_area:,} outside the planning area "
                       "(--keep-out-of-area keeps them)")  # fmt: skip
    why = f" (left out: {', '.join(dropped)})" if dropped else ""
    return InputError(
        f"no demand left to place sites for: {report.rows_kept:,} of "
        f"{report.rows_read:,} rows kept{why}, none with positive weight after the "
        "filters",
        path=source,
    )


def _demand_options(scenario: Scenario) -> dict[str, Any]:
    """The keyword arguments of :func:`evplanner.demand.demand_points`."""
    return {
        "counties": list(scenario.counties) or None,
        "ev_types": list(scenario.ev_types) or None,
        "model_years": scenario.model_years,
        "utilities": list(scenario.utilities) or None,
        "legislative_districts": list(scenario.legislative_districts) or None,
        "weighting": scenario.weighting,
        "residents_share": scenario.residents_share,
        "demand_at": scenario.demand_at,
        "tract_fallback": scenario.tract_fallback,
    }


def _field_error(err: ValueError) -> InputError:
    """The demand module's "<parameter>: message" as an InputError on that field."""
    field, _, message = str(err).partition(": ")
    if field in Scenario.field_names() and message:
        return InputError(message, field=field)
    return InputError(str(err))


def _vehicle_points(vehicles: pd.DataFrame, scenario: Scenario) -> pd.DataFrame:
    """The scenario's demand points of in-memory vehicles (today or forecast)."""
    options = _demand_options(scenario)
    try:
        if scenario.year is None:
            return demand_points(vehicles, **options)
        from evplanner.forecast import forecast_demand

        return forecast_demand(
            vehicles, scenario.year, residents_share=scenario.residents_share,
            **{k: options[k] for k in ("counties", "ev_types", "utilities",
                                      "legislative_districts")},
        )  # fmt: skip
    except InputError:
        raise
    except ValueError as err:  # unknown filter values, named by the demand module
        raise _field_error(err) from None


def load_demand(
    scenario: Scenario,
    *,
    client=None,
    vehicles: tuple[pd.DataFrame, LoadReport] | None = None,
    blocksize: str | int = "64MB",
) -> Demand:
    """Read, filter, weight, aggregate and project the scenario's demand.

    Parameters
    ----------
    scenario : Scenario
    client : distributed.Client, optional
        Read on this cluster with dask.dataframe; without it, read in memory.
    vehicles : (pandas.DataFrame, LoadReport), optional
        The scenario's vehicles already loaded (the app keeps the bundled ones in
        memory); in memory only.
    blocksize : str or int
        Largest partition when reading on a cluster (bytes). Files are cut into
        at least :data:`PARTITIONS_PER_THREAD` partitions per worker thread of
        the cluster when they hold enough rows (see
        :func:`evplanner.data.read_points_dask`), even a file of one row group.

    Returns
    -------
    Demand

    Raises
    ------
    InputError
        Missing or unreadable files, filters that need columns a file lacks, or no
        demand left after the filters.

    Notes
    -----
    The CRS is chosen from the demand that is planned on (after the filters), so
    the CLI and the app measure the same scenario with the same yardstick. On a
    cluster the projected points are persisted in the workers' memory (24 bytes a
    point; Dask spills beyond a worker's memory limit), since every iteration reads
    them; their graph down to the files stays, so a chunk lost with a worker is
    recomputed from the files.
    """
    if vehicles is not None:
        frame, report = vehicles
        return _demand_in_memory(frame, report, scenario, aggregate=True,
                                 source=report.source)  # fmt: skip
    paths = expand_inputs(scenario.demand)
    aggregate, kind = _classify(paths, scenario)
    if client is None:
        frames, report = [], None
        for path in paths:
            frame, part = load_vehicles(
                path, keep_out_of_area=scenario.keep_out_of_area
            )
            frames.append(frame)
            report = part if report is None else report.merge(part)
        source = _source_name(paths)
        report.source = source
        frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        return _demand_in_memory(frame, report, scenario, aggregate, source)
    return _demand_on_cluster(paths, scenario, aggregate, kind, blocksize, client)


def _worker_threads(client) -> int:
    """Worker threads of the cluster behind ``client`` (at least 1)."""
    return max(1, sum(client.nthreads().values()))


def _demand_in_memory(
    vehicles: pd.DataFrame, report: LoadReport, scenario: Scenario,
    aggregate: bool, source: str,
) -> Demand:  # fmt: skip
    if aggregate:
        points = _vehicle_points(vehicles, scenario)
    else:
        points = vehicles[["lon", "lat", "weight"]].assign(vehicles=vehicles["weight"])
    return _finish(points, report, scenario, aggregate, source)


def _finish(points: pd.DataFrame, report: LoadReport, scenario: Scenario,
            aggregate: bool, source: str) -> Demand:  # fmt: skip
    """Demand points (lon, lat, weight, vehicles) projected to metres."""
    placement = points.attrs.get("placement")
    if placement is not None:
        # Vehicles without a usable census tract are counted like any dropped row.
        report = placement.apply_to(report)
    if points.empty or not points["weight"].sum() > 0:
        raise _no_demand(source, report)
    lon = points["lon"].to_numpy("float64")
    lat = points["lat"].to_numpy("float64")
    weight = points["weight"].to_numpy("float64")
    # The UTM zone where most of the demand weight is: stray points cannot move it.
    crs = _crs(lambda: choose_crs(lon, lat, scenario.crs, weight=weight))
    x_m, y_m = to_metres(lon, lat, crs)
    population = None
    if "population" in points and points["population"].notna().all():
        population = points["population"].to_numpy("float64")
    logger.info("demand %s: %d points in memory", source, len(points))
    return Demand(
        X=np.column_stack([x_m, y_m]), weight=weight,
        vehicles=points["vehicles"].to_numpy("float64"), lon=lon, lat=lat, crs=crs,
        report=report, aggregated=aggregate, source=source, population=population,
    )  # fmt: skip


def _crs(choose) -> pyproj.CRS:
    """The CRS ``choose()`` picks; a CRS that does not fit is the scenario's error."""
    try:
        return choose()
    except ValueError as err:
        message = str(err)
        message = message.removeprefix("crs: ").removeprefix("crs ")
        raise InputError(message, field="crs") from None


def _project_partition(
    part: pd.DataFrame, crs_wkt: str
) -> tuple[np.ndarray, np.ndarray]:
    """One partition's points in metres in ``crs_wkt``, shape (n, 2), and their
    weights, shape (n,)."""
    x_m, y_m = to_metres(part["lon"], part["lat"], pyproj.CRS.from_wkt(crs_wkt))
    X = np.ascontiguousarray(np.column_stack([x_m, y_m]), dtype="float64")
    return X, part["weight"].to_numpy("float64", copy=True)


def _threads_of(client) -> list[str]:
    """One worker address per worker thread of the cluster (sorted)."""
    return [address for address, n in sorted(client.nthreads().items())
            for _ in range(n)]  # fmt: skip


def _demand_on_cluster(
    paths: list[Path], scenario: Scenario, aggregate: bool, kind: str,
    blocksize: str | int, client,
) -> Demand:  # fmt: skip
    import dask.dataframe as dd

    columns = VEHICLE_COLUMNS if aggregate else ("lon", "lat", "weight")
    lazy_points, lazy_reports = read_points_dask(
        [str(p) for p in paths], keep_out_of_area=scenario.keep_out_of_area,
        blocksize=blocksize, columns=columns,
        min_partitions=PARTITIONS_PER_THREAD * _worker_threads(client),
    )  # fmt: skip
    source = _source_name(paths)
    # One pass over the files: cleaned points and their load reports together.
    # Partition i goes to worker thread i (modulo the threads), so that every
    # worker holds its share of the points and every pass of the solver keeps
    # every thread busy: left to itself, the scheduler may put three of four
    # partitions on one worker, which then does three quarters of each pass.
    # The placement is a preference (`allow_other_workers`): a partition lost
    # with its worker is read again elsewhere.
    slots = _threads_of(client)
    where = [
        {"workers": [slots[i % len(slots)]], "allow_other_workers": True}
        for i in range(lazy_points.npartitions)
    ]
    placed = [
        client.compute([part, part_report], **where[i])
        for i, (part, part_report) in enumerate(
            zip(lazy_points.to_delayed(), lazy_reports.to_delayed(), strict=True)
        )
    ]
    parts, reports = [p for p, _ in placed], [r for _, r in placed]
    _wait(parts + reports)
    report = merge_reports(pd.concat(client.gather(reports), ignore_index=True),
                           source=source, kind=kind,
                           kept_out_of_area=scenario.keep_out_of_area)  # fmt: skip
    # The futures in `parts` stay referenced while `points` is used here.
    points = dd.from_delayed(parts, meta=lazy_points._meta, verify_meta=False)
    if aggregate:
        if scenario.year is not None:
            raise InputError(
                "the forecast runs in memory: plan a forecast year "
                "without --workers or --scheduler",
                field="year",
            )
        # Vehicles are placed, filtered, weighted and summed per location on the
        # workers; only the summed locations (a few thousand) come back, exactly
        # the points the in-memory read gives, and are planned on in memory.
        try:
            summed = demand_points_dask(points, **_demand_options(scenario))
        except InputError:
            raise
        except ValueError as err:
            raise _field_error(err) from None
        return _finish(summed, report, scenario, aggregate, source)
    lengths = [int(n) for n in client.gather(client.map(len, parts))]
    if not sum(lengths):
        raise _no_demand(source, report)
    # As in memory: the zone where most of the weight is (additive histograms).
    crs = _crs(lambda: choose_crs_dask(points, scenario.crs, weight="weight"))
    # One task per partition projects it, on its worker, and both arrays are
    # taken from its result there: a partition's points and weights stay
    # together, so a pass of the solver moves no points between workers.
    pairs = [client.submit(_project_partition, part, crs.to_wkt(), **where[i])
             for i, part in enumerate(parts)]  # fmt: skip
    X_parts = [client.submit(operator.getitem, pair, 0, **where[i])
               for i, pair in enumerate(pairs)]  # fmt: skip
    w_parts = [client.submit(operator.getitem, pair, 1, **where[i])
               for i, pair in enumerate(pairs)]  # fmt: skip
    _wait(X_parts + w_parts)
    # The solver keeps the arrays (24 bytes a point), not the frames: those are
    # released when this function returns (their lineage stays with the
    # scheduler, so a chunk lost with a worker is recomputed from the files).
    X = da.concatenate([
        da.from_delayed(f, shape=(rows, 2), dtype="float64")
        for f, rows in zip(X_parts, lengths, strict=True)
    ])  # fmt: skip
    weight = da.concatenate([
        da.from_delayed(f, shape=(rows,), dtype="float64")
        for f, rows in zip(w_parts, lengths, strict=True)
    ])  # fmt: skip
    logger.info("demand %s on the cluster: %d points in %d partitions", source,
                X.shape[0], X.numblocks[0])  # fmt: skip
    # Plain files: a point's weight is its vehicles, no second array.
    return Demand(
        X=X,
        weight=weight,
        vehicles=weight,
        lon=None,
        lat=None,
        crs=crs,
        report=report,
        aggregated=False,
        source=source,
    )


def _wait(collection) -> None:
    """Wait for persisted work: with Dask's own progress bar when a terminal watches.

    Persisting is asynchronous; waiting here makes the read show (and be timed) as
    reading, not as the solver's first iteration.
    """
    import sys

    from distributed import progress, wait

    if sys.stderr.isatty():
        progress(collection)
    else:
        wait(collection)


# --------------------------------------------------------------------------------------
# Existing sites
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExistingSites:
    """Existing charging sites held fixed while new ones are placed.

    Attributes
    ----------
    stations : pandas.DataFrame
        One row per site: ``station_id``, ``name``, ``lon``, ``lat`` (degrees) and
        the port counts of :data:`evplanner.data.STATION_COLUMNS`.
    report : LoadReport or None
        What reading their file kept and dropped (None for no sites).
    source : str
        Where they come from (a file, or a description of the bundled set).
    """

    stations: pd.DataFrame
    report: LoadReport | None
    source: str

    def __len__(self) -> int:
        return len(self.stations)

    def metres(self, crs: pyproj.CRS) -> np.ndarray:
        """``x_m, y_m`` in ``crs``, shape (m, 2)."""
        if not len(self.stations):
            return np.empty((0, 2))
        x_m, y_m = to_metres(self.stations["lon"], self.stations["lat"], crs)
        return np.column_stack([x_m, y_m])


#: What the bundled stations are, for reports and metrics.
PUBLIC_STATIONS_SOURCE = ("public stations: U.S. DOE AFDC Station Locator, "
                          "Washington, as of 2025-02-09 (bundled)")  # fmt: skip


def no_existing_sites() -> ExistingSites:
    """The empty set of existing sites."""
    from evplanner.data import STATION_COLUMNS

    return ExistingSites(pd.DataFrame({c: [] for c in STATION_COLUMNS}), None, "none")


def load_existing(
    scenario: Scenario,
    *,
    stations: tuple[pd.DataFrame, LoadReport] | None = None,
    uploaded: ExistingSites | None = None,
) -> ExistingSites:
    """The scenario's existing sites.

    Parameters
    ----------
    scenario : Scenario
    stations : (pandas.DataFrame, LoadReport), optional
        The bundled public stations, already loaded (the app keeps them).
    uploaded : ExistingSites, optional
        The sites of an ``"upload:..."`` scenario (the caller parsed the upload).

    Returns
    -------
    ExistingSites

    Raises
    ------
    InputError
        A station file that cannot be read or holds no usable station, or an
        upload scenario without its sites.
    """
    kind = scenario.existing_kind
    if kind == "none":
        return no_existing_sites()
    if kind == "upload":
        if uploaded is None:
            raise InputError(f"no uploaded station list given for "
                             f"{scenario.existing!r}", field="existing")  # fmt: skip
        return uploaded
    if kind in ("public", "dc_fast"):
        frame, report = stations if stations is not None else load_stations(
            BUNDLED_STATIONS)  # fmt: skip
        source = PUBLIC_STATIONS_SOURCE
        if kind == "dc_fast":
            frame = frame[frame["dc_fast_ports"] > 0]
            source = source.replace("public stations", "public DC fast stations")
        return ExistingSites(frame.reset_index(drop=True), report, source)
    path = Path(scenario.existing)
    frame, report = load_stations(path, keep_out_of_area=scenario.keep_out_of_area)
    if frame.empty:
        raise InputError(f"no usable station rows ({report.rows_read:,} read, "
                         f"dropped: {report.dropped})", path=path)  # fmt: skip
    return ExistingSites(frame.reset_index(drop=True), report, str(path))


# --------------------------------------------------------------------------------------
# Candidate sites
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CandidateSites:
    """The real places where new sites may go.

    Attributes
    ----------
    sites : pandas.DataFrame
        :data:`evplanner.data.CANDIDATE_COLUMNS`: ``candidate_id``, ``name``,
        ``lon``, ``lat`` (degrees), ``max_ports`` (NaN when not given).
    report : LoadReport or None
        What reading their file kept and dropped (None for built-in sets).
    source : str
    """

    sites: pd.DataFrame
    report: LoadReport | None
    source: str

    def __len__(self) -> int:
        return len(self.sites)

    def metres(self, crs: pyproj.CRS) -> np.ndarray:
        """``x_m, y_m`` in ``crs``, shape (c, 2)."""
        x_m, y_m = to_metres(self.sites["lon"], self.sites["lat"], crs)
        return np.column_stack([x_m, y_m])


def load_candidates(
    scenario: Scenario,
    *,
    stations: tuple[pd.DataFrame, LoadReport] | None = None,
    uploaded: CandidateSites | None = None,
) -> CandidateSites | None:
    """The scenario's candidate sites (None when sites may go anywhere).

    Parameters
    ----------
    scenario : Scenario
    stations : (pandas.DataFrame, LoadReport), optional
        The bundled public stations, already loaded.
    uploaded : CandidateSites, optional
        The candidates of an ``"upload:..."`` scenario.

    Raises
    ------
    InputError
        An unreadable candidate file, or one without a usable row.
    """
    from evplanner.data import load_candidates as read_candidates
    from evplanner.data import load_tracts

    kind = scenario.candidates_kind
    if kind == "none":
        return None
    if kind == "upload":
        if uploaded is None:
            raise InputError(
                f"no uploaded candidate list given for {scenario.candidates!r}",
                field="candidates",
            )
        return uploaded
    if kind == "tracts":
        tracts = load_tracts()
        keep = tracts["population"] > 0  # tracts with residents: on land
        if scenario.counties:
            wanted = {c.lower() for c in scenario.counties}
            keep &= tracts["county"].str.lower().isin(wanted).fillna(False)
        chosen = tracts[keep.to_numpy(bool)]
        sites = pd.DataFrame({
            "candidate_id": chosen["tract_id"].to_numpy(),
            "name": ("tract " + chosen["tract_id"].astype(str)).to_numpy(),
            "lon": chosen["lon"].to_numpy(), "lat": chosen["lat"].to_numpy(),
            "max_ports": np.nan,
        })  # fmt: skip
        source = ("census-tract centres of population with residents (U.S. "
                  "Census Bureau, 2020)")  # fmt: skip
        return CandidateSites(sites.reset_index(drop=True), None, source)
    if kind == "stations":
        frame, _ = stations if stations is not None else load_stations(
            BUNDLED_STATIONS)  # fmt: skip
        sites = pd.DataFrame({
            "candidate_id": frame["station_id"].to_numpy(),
            "name": frame["name"].to_numpy(), "lon": frame["lon"].to_numpy(),
            "lat": frame["lat"].to_numpy(), "max_ports": np.nan,
        })  # fmt: skip
        return CandidateSites(sites, None, PUBLIC_STATIONS_SOURCE)
    path = Path(scenario.candidates)
    sites, report = read_candidates(path, keep_out_of_area=scenario.keep_out_of_area)
    if sites.empty:
        raise InputError(f"no usable candidate rows ({report.rows_read:,} read, "
                         f"dropped: {report.dropped})", path=path)  # fmt: skip
    return CandidateSites(sites, report, str(path))
