"""The solve pipeline behind ``evplanner solve`` and ``evplanner sweep``.

Read demand -> (filter, weight, aggregate) -> project to metres -> fit K-Medians ->
summarise coverage per site -> write sites and metrics. The same steps run in two
modes, which give the same answer for the same input and seed:

*in memory* (no Dask cluster)
    Files are read with pandas (:func:`evplanner.data.load_vehicles`), the points
    are NumPy arrays and the core runs its NumPy engine.
*on a Dask cluster* (a ``LocalCluster`` or an existing scheduler)
    Files are read with ``dask.dataframe`` on the workers
    (:func:`evplanner.data.read_points_dask`), cleaned, filtered and projected per
    partition (``map_partitions``) into a Dask array chunked by rows; the core runs
    its Dask engine and the coverage summary is a chunked reduction. The points are
    never gathered on the client: what comes back is O(k) per chunk.

Which rows the solver sees, in both modes:

* *vehicle files* (the WA DOL export, the bundled Parquet, or any file with vehicle
  attribute columns) are filtered (county, EV type, model years), weighted and
  aggregated to demand points, one per distinct location (weight summed), sorted
  by lon, lat. On a cluster the aggregation is a Dask ``groupby`` + ``sort_values``
  (a shuffle), so the solver sees exactly the rows it sees in memory.
* *plain lon/lat files* (optional ``weight``) are taken row by row, in file order,
  because they are usually demand points already (synthetic demand, a planner's
  own aggregation) and a shuffle of tens of millions of distinct points would buy
  nothing. Filters need attribute columns, so on a plain file they are an error.

The solver's random choices depend only on the number of rows and the seed (see
:func:`evplanner.kmedians.k_medians`), not on the chunking, so both modes agree.
"""

from __future__ import annotations

import glob
import json
import logging
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import pandas as pd
import pyproj

from evplanner._kernels import assign_l1
from evplanner.data import (
    _DOL_COLUMNS,
    BUNDLED_VEHICLES,
    VEHICLE_COLUMNS,
    LoadReport,
    load_stations,
    load_vehicles,
    merge_reports,
    read_points_dask,
)
from evplanner.demand import WEIGHTINGS, _vehicle_weight, demand_points, filter_vehicles
from evplanner.errors import InputError
from evplanner.metrics import DEFAULT_RADII_M, DEFAULT_RADIUS_M
from evplanner.projection import choose_crs, to_lonlat, to_metres

__all__ = [
    "SITE_EXTENSIONS",
    "Demand",
    "DemandOptions",
    "Solution",
    "Summary",
    "check_sites_path",
    "dask_client",
    "expand_inputs",
    "load_demand",
    "load_fixed_sites",
    "solve",
    "summarise",
    "sweep",
    "write_metrics",
    "write_sites",
]

logger = logging.getLogger(__name__)

#: Output formats of :func:`write_sites`, by file extension.
SITE_EXTENSIONS = (".geojson", ".json", ".parquet", ".csv")

# Option -> the vehicle attribute column it needs.
_NEEDS = {
    "counties": ("county", "--county"),
    "ev_types": ("ev_type", "--ev-type"),
    "model_years": ("model_year", "--model-years"),
}
_WEIGHTING_NEEDS = {"bev": ("ev_type",), "range": ("electric_range", "make", "model")}


# --------------------------------------------------------------------------- inputs


@dataclass
class DemandOptions:
    """What to read and which demand to keep.

    Attributes
    ----------
    inputs : str, Path, sequence of them, or None
        A file, a glob, or a list; ``None`` is the bundled vehicle data.
    counties : list of str, optional
        Keep vehicles in these counties (vehicle files only).
    ev_types : list of {"BEV", "PHEV"}, optional
        Keep these EV types (vehicle files only).
    model_years : (int, int), optional
        Inclusive model-year range (vehicle files only).
    weighting : {"vehicles", "bev", "range"}
        Demand weight of one vehicle (see :func:`evplanner.demand.demand_points`).
    keep_out_of_area : bool
        Keep vehicles registered outside the planning area.
    crs : str
        ``"auto"`` (UTM zone of the data) or an EPSG code such as ``"EPSG:32610"``.
    blocksize : str or int
        Partition size when reading on a cluster (bytes, or ``"64MB"``).
    """

    inputs: str | Path | Sequence[str | Path] | None = None
    counties: list[str] | None = None
    ev_types: list[str] | None = None
    model_years: tuple[int, int] | None = None
    weighting: str = "vehicles"
    keep_out_of_area: bool = False
    crs: str = "auto"
    blocksize: str | int = "64MB"

    def filters(self) -> dict[str, Any]:
        """The filter keyword arguments of :func:`evplanner.demand.filter_vehicles`."""
        return {
            "counties": self.counties or None,
            "ev_types": self.ev_types or None,
            "model_years": self.model_years,
        }


def expand_inputs(inputs) -> list[Path]:
    """Files named by a path, a glob or a list (``None``: the bundled vehicles).

    Raises
    ------
    InputError
        If a glob matches nothing or a named file does not exist.
    """
    if inputs is None:
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


def _vehicle_columns(columns: Sequence[str]) -> set[str]:
    """Our attribute column names present in a file (published DOL names mapped)."""
    present = {c for c in columns if c in VEHICLE_COLUMNS[3:]}
    present |= {_DOL_COLUMNS[c] for c in columns if c in _DOL_COLUMNS}
    if "Electric Vehicle Type" in columns:
        present.add("ev_type")
    return present


def _classify(paths: list[Path], options: DemandOptions) -> tuple[bool, str]:
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
        attributes = _vehicle_columns(columns)
        if "Vehicle Location" in columns:
            kind = "wa-dol-csv"
        elif path.resolve() == BUNDLED_VEHICLES:
            kind = "bundled-vehicles"
        else:
            kind = "vehicles" if attributes else "points"
        kinds[path] = kind
        wanted = [
            (column, flag)
            for name, (column, flag) in _NEEDS.items()
            if getattr(options, name)
        ]
        wanted += [
            (column, f"--weighting {options.weighting}")
            for column in _WEIGHTING_NEEDS.get(options.weighting, ())
        ]
        for column, flag in wanted:
            if column not in attributes:
                what = (
                    "a plain lon/lat file" if kind == "points"
                    else "a vehicle file without that column"
                )
                raise InputError(
                    f"{flag} needs the vehicle column {column!r}, but this is {what} "
                    f"(columns: {columns[:12]}); filters apply to vehicle files "
                    "(WA DOL export or the bundled Parquet)",
                    path=path,
                )
    vehicle = {k != "points" for k in kinds.values()}
    if len(vehicle) > 1:
        plain = [str(p) for p, k in kinds.items() if k == "points"][:3]
        raise InputError(
            f"the inputs mix vehicle files and plain lon/lat files ({plain} are "
            "plain); give one kind at a time"
        )
    distinct = set(kinds.values())
    kind = distinct.pop() if len(distinct) == 1 else "mixed"
    return vehicle.pop(), kind


# --------------------------------------------------------------------------- demand


@dataclass
class Demand:
    """Demand points in metres, as NumPy arrays or Dask arrays chunked by rows.

    Attributes
    ----------
    X : numpy.ndarray or dask.array.Array, shape (n, 2)
        ``x_m, y_m`` in ``crs``, metres.
    weight : numpy.ndarray or dask.array.Array, shape (n,)
        Demand weight of each point (what the solver minimises over).
    vehicles : numpy.ndarray or dask.array.Array, shape (n,)
        Vehicles at each point (equal to ``weight`` unless the weighting is ``bev``
        or ``range``); the sites' ``vehicles_served`` sum it.
    crs : pyproj.CRS
        The projected CRS.
    report : LoadReport
        What reading kept and dropped.
    aggregated : bool
        Whether identical locations were aggregated (vehicle files).
    source : str
        The input as given.
    """

    X: np.ndarray | da.Array
    weight: np.ndarray | da.Array
    vehicles: np.ndarray | da.Array
    crs: pyproj.CRS
    report: LoadReport
    aggregated: bool
    source: str

    @property
    def n_points(self) -> int:
        """Number of demand points (rows)."""
        return int(self.X.shape[0])

    @property
    def is_dask(self) -> bool:
        """Whether the points live on a Dask cluster."""
        return isinstance(self.X, da.Array)


def _source_name(paths: list[Path]) -> str:
    return str(paths[0]) if len(paths) == 1 else f"{paths[0]} (+{len(paths) - 1})"


def _empty_demand(source: str, report: LoadReport) -> InputError:
    return InputError(
        f"no demand left to place sites for: {report.rows_kept:,} of "
        f"{report.rows_read:,} rows kept, none with positive weight after the filters",
        path=source,
    )


def load_demand(options: DemandOptions, *, client=None) -> Demand:
    """Read, filter, weight, aggregate and project the demand.

    Parameters
    ----------
    options : DemandOptions
        Input files and filters.
    client : distributed.Client, optional
        Read on this cluster with dask.dataframe; without it, read in memory.

    Notes
    -----
    On a cluster the projected points are persisted in the workers' memory (24
    bytes a point; Dask spills to disk beyond a worker's memory limit), since every
    iteration reads them two or three times. Their graph down to the files stays
    with them, so a chunk lost with a worker is recomputed from the files.

    Returns
    -------
    Demand
    """
    if options.weighting not in WEIGHTINGS:
        raise ValueError(
            f"--weighting: expected one of {WEIGHTINGS}, got {options.weighting!r}"
        )
    paths = expand_inputs(options.inputs)
    aggregate, kind = _classify(paths, options)
    if client is None:
        return _load_memory(paths, options, aggregate)
    return _load_dask(paths, options, aggregate, kind)


def _load_memory(paths: list[Path], options: DemandOptions, aggregate: bool) -> Demand:
    frames, report = [], None
    for path in paths:
        frame, part = load_vehicles(path, keep_out_of_area=options.keep_out_of_area)
        frames.append(frame)
        report = part if report is None else report.merge(part)
    source = _source_name(paths)
    report.source = source
    vehicles = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if aggregate:
        points = demand_points(
            vehicles, weighting=options.weighting, **options.filters()
        )
    else:
        points = vehicles[["lon", "lat", "weight"]].assign(vehicles=vehicles["weight"])
    if points.empty or not points["weight"].sum() > 0:
        raise _empty_demand(source, report)
    lon, lat = points["lon"].to_numpy(), points["lat"].to_numpy()
    crs = choose_crs(lon, lat, options.crs)
    x_m, y_m = to_metres(lon, lat, crs)
    weight = points["weight"].to_numpy("float64")
    vehicles_at = points["vehicles"].to_numpy("float64")
    logger.info("read %s: %d demand points in memory", source, len(points))
    return Demand(
        X=np.column_stack([x_m, y_m]),
        weight=weight,
        vehicles=vehicles_at,
        crs=crs,
        report=report,
        aggregated=aggregate,
        source=source,
    )


# Range imputation on a cluster: the same numbers demand._vehicle_weight computes in
# memory (median known range per make and model, else the overall median), from
# exact value counts, which are small (a few thousand make/model/range triples).


def _range_counts(part: pd.DataFrame) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "make": part["make"].astype(str),
            "model": part["model"].astype(str),
            "electric_range": part["electric_range"].astype("float64"),
        }
    ).dropna(subset=["electric_range"])
    return (
        frame.groupby(["make", "model", "electric_range"], dropna=False)
        .size()
        .rename("count")
        .reset_index()
    )


def _median_from_counts(values: np.ndarray, counts: np.ndarray) -> float:
    """Median of ``values`` repeated ``counts`` times (as pandas/NumPy define it)."""
    order = np.argsort(values, kind="stable")
    values, cum = values[order], np.cumsum(counts[order])
    n = int(cum[-1])

    def at(position: int) -> float:
        return float(values[np.searchsorted(cum, position, side="right")])

    if n % 2:
        return at(n // 2)
    return (at(n // 2 - 1) + at(n // 2)) / 2


def _range_fill(counts: pd.DataFrame) -> tuple[dict, float]:
    counts = counts.groupby(["make", "model", "electric_range"], dropna=False)[
        "count"
    ].sum()
    counts = counts.reset_index()
    if counts.empty:
        return {}, 1.0
    overall = _median_from_counts(
        counts["electric_range"].to_numpy(), counts["count"].to_numpy()
    )
    # NaN makes/models (missing in the file) form no group, as in pandas' groupby.
    by_model = {}
    for key, group in counts.dropna(subset=["make", "model"]).groupby(
        ["make", "model"]
    ):
        by_model[key] = _median_from_counts(
            group["electric_range"].to_numpy(), group["count"].to_numpy()
        )
    return by_model, overall


def _demand_partition(
    part: pd.DataFrame, filters: dict, weighting: str, fill: tuple | None
) -> pd.DataFrame:
    """Filter and weight one partition of vehicles (row-local except ``fill``)."""
    chosen = filter_vehicles(part, **filters)
    if weighting == "range":
        by_model, overall = fill
        keys = zip(
            chosen["make"].astype(str), chosen["model"].astype(str), strict=True
        )
        imputed = np.array([by_model.get(k, np.nan) for k in keys], dtype="float64")
        rng = chosen["electric_range"].to_numpy("float64", na_value=np.nan)
        rng = np.where(np.isnan(rng), imputed, rng)
        weight = chosen["weight"].to_numpy("float64") * np.where(
            np.isnan(rng), overall, rng
        )
    else:
        weight = _vehicle_weight(chosen, weighting)
    return pd.DataFrame(
        {
            "lon": chosen["lon"].to_numpy("float64"),
            "lat": chosen["lat"].to_numpy("float64"),
            "weight": np.asarray(weight, dtype="float64"),
            "vehicles": chosen["weight"].to_numpy("float64"),
        }
    )


def _float_frame(*columns: str) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="float64") for c in columns})


def _project_partition(part: pd.DataFrame, crs_wkt: str) -> pd.DataFrame:
    x_m, y_m = to_metres(part["lon"], part["lat"], pyproj.CRS.from_wkt(crs_wkt))
    out = {"x_m": x_m, "y_m": y_m, "weight": part["weight"].to_numpy("float64")}
    if "vehicles" in part:
        out["vehicles"] = part["vehicles"].to_numpy("float64")
    return pd.DataFrame(out, index=part.index)


def _load_dask(
    paths: list[Path], options: DemandOptions, aggregate: bool, kind: str
) -> Demand:
    columns = VEHICLE_COLUMNS if aggregate else ("lon", "lat", "weight")
    points, reports = read_points_dask(
        [str(p) for p in paths],
        keep_out_of_area=options.keep_out_of_area,
        blocksize=options.blocksize,
        columns=columns,
    )
    source = _source_name(paths)
    # One pass over the files: cleaned points and their load reports together.
    points, reports = dask.persist(points, reports)
    _progress(points)
    report = merge_reports(
        reports.compute(), source=source, kind=kind,
        kept_out_of_area=options.keep_out_of_area,
    )  # fmt: skip
    if aggregate:
        fill = None
        if options.weighting == "range":
            chosen = points.map_partitions(filter_vehicles, **options.filters())
            fill = _range_fill(
                chosen.map_partitions(_range_counts).compute()
            )
        meta = _float_frame("lon", "lat", "weight", "vehicles")
        weighted = points.map_partitions(
            _demand_partition, options.filters(), options.weighting, fill, meta=meta
        )
        # Identical locations -> one weighted demand point, sorted as in memory.
        # Weights are counts (or whole miles), so the sums are exact in any order.
        summed = weighted.groupby(["lon", "lat"]).agg(
            {"weight": "sum", "vehicles": "sum"},
            split_out=max(1, weighted.npartitions // 4),
        )
        summed = summed.reset_index()
        points = summed[summed["weight"] > 0].sort_values(["lon", "lat"]).persist()
    lon_min, lon_max, lat_min, lat_max = dask.compute(
        points["lon"].min(), points["lon"].max(),
        points["lat"].min(), points["lat"].max(),
    )  # fmt: skip
    if not np.isfinite([lon_min, lon_max, lat_min, lat_max]).all():
        raise _empty_demand(source, report)
    crs = choose_crs([lon_min, lon_max], [lat_min, lat_max], options.crs)
    lengths = tuple(int(n) for n in points.map_partitions(len).compute())
    columns = ["x_m", "y_m", "weight"] + (["vehicles"] if aggregate else [])
    projected = points.map_partitions(
        _project_partition, crs.to_wkt(), meta=_float_frame(*columns)
    )
    X = projected[["x_m", "y_m"]].to_dask_array(lengths=lengths)
    weight = projected["weight"].to_dask_array(lengths=lengths)
    # Plain files: a point's weight is its vehicles, no second array.
    vehicles = (
        projected["vehicles"].to_dask_array(lengths=lengths) if aggregate else weight
    )
    # Keep the arrays the solver reads (24 bytes a point), not the frames: the
    # unprojected points are released once these are in memory. The graph down to
    # the files stays with them, so a lost chunk is recomputed from disk.
    X, weight, vehicles = dask.persist(X, weight, vehicles)
    _progress([X, weight])
    logger.info(
        "read %s on the cluster: %d demand points in %d partitions",
        source, X.shape[0], X.numblocks[0],
    )  # fmt: skip
    return Demand(
        X=X, weight=weight, vehicles=vehicles, crs=crs, report=report,
        aggregated=aggregate, source=source,
    )  # fmt: skip


def _progress(collection) -> None:
    """Wait for persisted work: with Dask's own progress bar when a terminal watches.

    Persisting is asynchronous; waiting here makes the read show as reading (and
    be timed as such), not as the solver's first iteration.
    """
    import sys

    from distributed import progress, wait

    if sys.stderr.isatty():
        progress(collection)
    else:
        wait(collection)


def load_fixed_sites(
    path: str | Path, crs: pyproj.CRS
) -> tuple[np.ndarray, pd.DataFrame]:
    """Existing stations as fixed sites in metres.

    Returns
    -------
    fixed_m : numpy.ndarray, shape (m, 2)
        ``x_m, y_m`` in ``crs``.
    stations : pandas.DataFrame
        The station rows (``station_id``, ``name``, ``lon``, ``lat``, ...).
    """
    stations, report = load_stations(path)
    if stations.empty:
        raise InputError(
            f"no usable station rows ({report.rows_read:,} read, dropped: "
            f"{report.dropped})",
            path=path,
        )
    x_m, y_m = to_metres(stations["lon"], stations["lat"], crs)
    return np.column_stack([x_m, y_m]), stations.reset_index(drop=True)


# --------------------------------------------------------------------------- cluster


@contextmanager
def dask_client(
    scheduler: str | None = None,
    workers: int | None = None,
    *,
    timeout_s: float = 10.0,
    threads_per_worker: int = 1,
) -> Iterator[Any]:
    """A ``distributed.Client`` on an existing scheduler or a new ``LocalCluster``.

    Parameters
    ----------
    scheduler : str, optional
        Scheduler address (``tcp://host:port``).
    workers : int, optional
        Start a ``LocalCluster`` with this many worker processes instead.
    timeout_s : float
        Seconds to wait for the scheduler before giving up.
    threads_per_worker : int
        Threads per local worker.

    Yields
    ------
    distributed.Client or None
        ``None`` when neither ``scheduler`` nor ``workers`` is given (in memory).

    Raises
    ------
    ValueError
        If the scheduler cannot be reached within ``timeout_s``.
    """
    if scheduler is None and workers is None:
        yield None
        return
    from distributed import Client, LocalCluster

    cluster = None
    with dask.config.set({"distributed.comm.timeouts.connect": f"{timeout_s}s"}):
        if scheduler is not None:
            try:
                client = Client(scheduler, timeout=timeout_s)
            except (OSError, TimeoutError, ValueError) as err:
                raise ValueError(
                    f"--scheduler {scheduler}: cannot reach a Dask scheduler within "
                    f"{timeout_s:g} s ({type(err).__name__}: {err})"
                ) from err
        else:
            cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=threads_per_worker,
                processes=True,
                dashboard_address=":0",  # a free port: never clash with another
            )
            client = Client(cluster)
    try:
        logger.info("Dask client: %s", client)
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


# --------------------------------------------------------------------------- summary


def _block_summary(X, w, v, centers, radii_m) -> dict:
    """Assignment statistics of one block of points (all sizes O(k + radii))."""
    k = centers.shape[0]
    X = np.ascontiguousarray(X, dtype=np.float64)
    labels, dist = assign_l1(X, centers)
    site_max = np.full(k, -np.inf)
    pos = w > 0
    np.maximum.at(site_max, labels[pos], dist[pos])
    return {
        "n": X.shape[0],
        "total_weight": float(w.sum()),
        "total_vehicles": float(v.sum()),
        "objective_m": float(np.dot(w, dist)),
        "covered": np.array([w[dist <= r].sum() for r in radii_m]),
        "site_weight": np.bincount(labels, weights=w, minlength=k),
        "site_vehicles": np.bincount(labels, weights=v, minlength=k),
        "site_wd": np.bincount(labels, weights=w * dist, minlength=k),
        "site_n": np.bincount(labels, minlength=k),
        "site_max": site_max,
    }


def _combine(parts: list[dict]) -> dict:
    out = dict(parts[0])
    for part in parts[1:]:
        for key, value in part.items():
            if key == "site_max":
                out[key] = np.maximum(out[key], value)
            else:
                out[key] = out[key] + value
    return out


@dataclass
class Summary:
    """Coverage of the demand by a set of sites (chunk-additive statistics).

    Attributes
    ----------
    n_points : int
    total_weight, total_vehicles : float
    objective_m : float
        Weighted sum of L1 distances to the nearest site (vehicle-metres when the
        weight counts vehicles).
    mean_distance_m, max_distance_m : float
        Weighted mean distance and the largest distance of a point with weight > 0.
    radius_m : float
    coverage_share : float
        Share of the weight within ``radius_m`` (L1) of its site.
    coverage_curve : dict of float to float
        Share within each radius of :data:`evplanner.metrics.DEFAULT_RADII_M`.
    sites : pandas.DataFrame
        Per site: ``weight_served``, ``vehicles_served``, ``n_points``,
        ``mean_distance_m``, ``max_distance_m`` (NaN for a site serving nothing).
    """

    n_points: int
    total_weight: float
    total_vehicles: float
    objective_m: float
    mean_distance_m: float
    max_distance_m: float
    radius_m: float
    coverage_share: float
    coverage_curve: dict[float, float]
    sites: pd.DataFrame = field(repr=False)


def summarise(demand: Demand, centers_m: np.ndarray, radius_m: float) -> Summary:
    """Assign every demand point to its nearest site (L1) and summarise.

    On a cluster each chunk returns O(k) numbers, combined on the client in chunk
    order (deterministic).
    """
    centers_m = np.ascontiguousarray(centers_m, dtype=np.float64)
    radii = np.array(sorted({radius_m, *DEFAULT_RADII_M}), dtype=np.float64)
    if demand.is_dask:
        parts = [
            dask.delayed(_block_summary)(xb, wb, vb, centers_m, radii)
            for xb, wb, vb in zip(
                demand.X.to_delayed().ravel(),
                demand.weight.to_delayed().ravel(),
                demand.vehicles.to_delayed().ravel(),
                strict=True,
            )
        ]
        s = _combine(list(dask.compute(*parts)))
    else:
        s = _block_summary(demand.X, demand.weight, demand.vehicles, centers_m, radii)
    total = s["total_weight"]
    served = s["site_weight"] > 0
    mean = np.full(served.shape, np.nan)
    mean[served] = s["site_wd"][served] / s["site_weight"][served]
    site_max = np.where(served, s["site_max"], np.nan)
    shares = s["covered"] / total
    sites = pd.DataFrame(
        {
            "weight_served": s["site_weight"],
            "vehicles_served": s["site_vehicles"],
            "share": s["site_weight"] / total,
            "n_points": s["site_n"].astype("int64"),
            "mean_distance_m": mean,
            "max_distance_m": site_max,
        }
    )
    return Summary(
        n_points=int(s["n"]),
        total_weight=total,
        total_vehicles=s["total_vehicles"],
        objective_m=s["objective_m"],
        mean_distance_m=s["objective_m"] / total,
        max_distance_m=float(np.nanmax(site_max)),
        radius_m=float(radius_m),
        coverage_share=float(shares[np.searchsorted(radii, radius_m)]),
        coverage_curve={float(r): float(x) for r, x in zip(radii, shares, strict=True)},
        sites=sites,
    )


# --------------------------------------------------------------------------- solve


@dataclass
class Solution:
    """A solved instance: sites, their coverage and how the fit went.

    Attributes
    ----------
    sites : pandas.DataFrame
        One row per site, new sites first, then fixed ones: ``site_id``, ``lon``,
        ``lat``, ``x_m``, ``y_m``, ``vehicles_served``, ``weight_served``,
        ``share``, ``n_points``, ``mean_distance_m``, ``max_distance_m`` and, when
        fixed sites were given, ``fixed`` (bool), ``station_id`` and ``name``.
    summary : Summary
    k : int
        New sites.
    n_fixed : int
    n_iter : int
        Lloyd iterations of the core.
    inertia_m : float
        The core's objective (equals ``summary.objective_m`` up to rounding).
    fit_seconds : float
    """

    sites: pd.DataFrame
    summary: Summary
    k: int
    n_fixed: int
    n_iter: int
    inertia_m: float
    fit_seconds: float


def solve(
    demand: Demand,
    k: int,
    *,
    fixed_m: np.ndarray | None = None,
    fixed_stations: pd.DataFrame | None = None,
    seed: int = 0,
    radius_m: float = DEFAULT_RADIUS_M,
    **kmedians_params: Any,
) -> Solution:
    """Place ``k`` new sites with weighted K-Medians and summarise their coverage.

    Parameters
    ----------
    demand : Demand
        From :func:`load_demand`.
    k : int
        New sites, >= 1.
    fixed_m : numpy.ndarray, shape (m, 2), optional
        Existing sites in metres (``demand.crs``); they stay and serve demand.
    fixed_stations : pandas.DataFrame, optional
        Their station rows (``station_id``, ``name``), for the site table.
    seed : int
        Random seed of the core: same input and seed, same sites, in every mode.
    radius_m : float
        Coverage radius, metres.
    **kmedians_params
        Passed to :func:`evplanner.kmedians.k_medians`.

    Returns
    -------
    Solution
    """
    from evplanner.kmedians import k_medians

    start = time.perf_counter()
    result = k_medians(
        demand.X,
        k,
        sample_weight=demand.weight,
        fixed_centers=fixed_m,
        random_state=seed,
        **kmedians_params,
    )
    fit_seconds = time.perf_counter() - start
    n_fixed = 0 if fixed_m is None else int(fixed_m.shape[0])
    centers = result.centers if not n_fixed else np.vstack([result.centers, fixed_m])
    summary = summarise(demand, centers, radius_m)
    lon, lat = to_lonlat(centers[:, 0], centers[:, 1], demand.crs)
    sites = pd.DataFrame(
        {
            "site_id": np.arange(centers.shape[0], dtype="int64"),
            "lon": lon,
            "lat": lat,
            "x_m": centers[:, 0],
            "y_m": centers[:, 1],
        }
    )
    sites = pd.concat([sites, summary.sites], axis=1)
    if n_fixed:
        sites["fixed"] = np.arange(centers.shape[0]) >= k
        if fixed_stations is not None:
            for column in ("station_id", "name"):
                values = [pd.NA] * k + list(fixed_stations[column])
                sites[column] = pd.array(values, dtype="string")
            # The stations' own coordinates, not a round trip through metres.
            sites.loc[k:, "lon"] = fixed_stations["lon"].to_numpy()
            sites.loc[k:, "lat"] = fixed_stations["lat"].to_numpy()
    return Solution(
        sites=sites,
        summary=summary,
        k=k,
        n_fixed=n_fixed,
        n_iter=int(result.n_iter),
        inertia_m=float(result.inertia),
        fit_seconds=fit_seconds,
    )


def sweep(
    demand: Demand,
    ks: Sequence[int],
    *,
    fixed_m: np.ndarray | None = None,
    seed: int = 0,
    radius_m: float = DEFAULT_RADIUS_M,
    **kmedians_params: Any,
) -> pd.DataFrame:
    """Objective and coverage for each number of new sites (for the elbow).

    Returns
    -------
    pandas.DataFrame
        One row per k: ``k``, ``objective_m``, ``mean_distance_m``,
        ``max_distance_m``, ``coverage_share``, ``radius_m``, ``n_iter``,
        ``fit_seconds``.
    """
    rows = []
    for k in sorted(set(ks)):
        solution = solve(demand, k, fixed_m=fixed_m, seed=seed, radius_m=radius_m,
                         **kmedians_params)  # fmt: skip
        s = solution.summary
        rows.append(
            {
                "k": k,
                "objective_m": s.objective_m,
                "mean_distance_m": s.mean_distance_m,
                "max_distance_m": s.max_distance_m,
                "coverage_share": s.coverage_share,
                "radius_m": s.radius_m,
                "n_iter": solution.n_iter,
                "fit_seconds": solution.fit_seconds,
            }
        )
        logger.info(
            "k=%d: objective %.6g m, coverage %.3f within %g m (%.1f s)",
            k, s.objective_m, s.coverage_share, radius_m, solution.fit_seconds,
        )  # fmt: skip
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- output


def check_sites_path(path: str | Path) -> Path:
    """The output path, if its extension names a known format.

    Raises
    ------
    ValueError
        For another extension, or a directory that does not exist.

    Examples
    --------
    >>> check_sites_path("sites.geojson").suffix
    '.geojson'
    >>> check_sites_path("sites.xlsx")
    Traceback (most recent call last):
    ...
    ValueError: --out sites.xlsx: unknown output format '.xlsx'; expected one of \
.geojson, .json, .parquet, .csv
    """
    path = Path(path)
    if path.suffix.lower() not in SITE_EXTENSIONS:
        raise ValueError(
            f"--out {path}: unknown output format {path.suffix or '(none)'!r}; "
            f"expected one of {', '.join(SITE_EXTENSIONS)}"
        )
    if not path.parent.exists():
        raise ValueError(f"--out {path}: directory {path.parent} does not exist")
    return path


def write_sites(sites: pd.DataFrame, path: str | Path) -> Path:
    """Write the site table as GeoJSON, GeoParquet or CSV (by extension).

    GeoJSON and GeoParquet carry point geometries in WGS84 (EPSG:4326) besides the
    columns; CSV has the ``lon``/``lat`` columns only.
    """
    path = check_sites_path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        sites.to_csv(path, index=False)
        return path
    import geopandas as gpd

    frame = gpd.GeoDataFrame(
        sites,
        geometry=gpd.points_from_xy(sites["lon"], sites["lat"]),
        crs="EPSG:4326",
    )
    if suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        if path.exists():
            path.unlink()  # the GeoJSON driver will not overwrite
        frame.to_file(path, driver="GeoJSON")
    return path


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def write_metrics(metrics: dict, path: str | Path) -> Path:
    """Write a metrics dict as JSON (NaN as null)."""
    path = Path(path)
    path.write_text(json.dumps(_plain(metrics), indent=2) + "\n")
    return path
