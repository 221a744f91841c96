"""Demand points: vehicles aggregated to weighted locations, and synthetic demand.

The published vehicle location is a ZIP-code centroid, so 150k vehicles sit on about 800
distinct points. The weighted K-Medians problem on those points (weight = vehicles) is
identical to the problem on the vehicles and far smaller, so the solvers work on
:func:`demand_points`. For scale tests, :func:`synthesize_demand` draws any number of
points shaped like the real data.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from evplanner._io import atomic_write
from evplanner.errors import check_positive
from evplanner.projection import choose_crs, to_lonlat, to_metres

__all__ = [
    "WEIGHTINGS",
    "demand_points",
    "filter_vehicles",
    "synthesize_demand",
    "vehicle_weights",
]

logger = logging.getLogger(__name__)

#: Demand weightings: one vehicle counts 1; BEV only (PHEVs count 0); or its
#: electric range in miles (unknown ranges imputed, see :func:`demand_points`).
WEIGHTINGS = ("vehicles", "bev", "range")


def filter_vehicles(
    vehicles: pd.DataFrame,
    *,
    counties=None,
    ev_types=None,
    model_years: tuple[int, int] | None = None,
) -> pd.DataFrame:
    """Vehicles in the given counties, EV types and model-year range (inclusive).

    ``None`` means no filter. County names match case-insensitively.
    """
    keep = np.ones(len(vehicles), dtype=bool)
    if counties:
        wanted = {str(c).strip().lower() for c in counties}
        county = vehicles["county"].astype("string").str.lower()
        keep &= county.isin(wanted).fillna(False).to_numpy(bool)
    if ev_types:
        wanted = {str(t).strip().upper() for t in ev_types}
        unknown = wanted - {"BEV", "PHEV"}
        if unknown:
            raise ValueError(
                f"ev_types: expected BEV and/or PHEV, got {sorted(unknown)}"
            )
        keep &= vehicles["ev_type"].isin(wanted).fillna(False).to_numpy(bool)
    if model_years is not None:
        low, high = model_years
        if low > high:
            raise ValueError(f"model_years: expected (low, high) with low <= high, "
                             f"got {model_years}")  # fmt: skip
        year = vehicles["model_year"].astype("Float64")
        keep &= ((year >= low) & (year <= high)).fillna(False).to_numpy(bool)
    return vehicles.loc[keep]


def vehicle_weights(vehicles: pd.DataFrame, weighting: str) -> np.ndarray:
    """Demand weight of each vehicle row under ``weighting`` (see :data:`WEIGHTINGS`).

    Returns an array of shape (n,); ``"range"`` imputes unknown ranges from the
    same rows (median of the same make and model, else the overall median).
    """
    base = vehicles["weight"].to_numpy("float64")
    if weighting == "vehicles":
        return base
    if weighting == "bev":
        return np.where(vehicles["ev_type"].eq("BEV").fillna(False), base, 0.0)
    if weighting == "range":
        # DOL has not researched the range of about half the vehicles (published as
        # 0). Dropping them would bias demand towards new models, so impute the
        # median known range of the same make and model, then the overall median.
        rng = vehicles["electric_range"].astype("float64")
        by_model = rng.groupby(
            [vehicles["make"].astype(str), vehicles["model"].astype(str)]
        ).transform("median")
        overall = np.nanmedian(rng) if rng.notna().any() else 1.0
        filled = rng.fillna(by_model).fillna(overall).to_numpy("float64")
        return base * filled
    raise ValueError(f"weighting: expected one of {WEIGHTINGS}, got {weighting!r}")


def demand_points(
    vehicles: pd.DataFrame,
    *,
    counties=None,
    ev_types=None,
    model_years: tuple[int, int] | None = None,
    weighting: str = "vehicles",
) -> pd.DataFrame:
    """Aggregate vehicles at identical locations into weighted demand points.

    Parameters
    ----------
    vehicles : pandas.DataFrame
        As returned by :func:`evplanner.data.load_vehicles` (``lon``, ``lat``,
        ``weight`` and the attribute columns).
    counties : list of str, optional
        Keep only these counties.
    ev_types : list of {"BEV", "PHEV"}, optional
        Keep only these EV types.
    model_years : (int, int), optional
        Inclusive model-year range.
    weighting : {"vehicles", "bev", "range"}
        What one vehicle weighs: 1; 1 for a BEV and 0 for a PHEV; or its electric
        range in miles (unknown ranges imputed with the median of the same make and
        model, else the overall median).

    Returns
    -------
    pandas.DataFrame
        ``lon``, ``lat`` (degrees), ``weight`` (float64, > 0) and ``vehicles``
        (vehicles at the point), one row per distinct location, sorted by lon, lat.
        Locations whose weight is zero carry no demand and are not returned.

    Examples
    --------
    >>> v = pd.DataFrame({"lon": [1.0, 1.0, 2.0], "lat": [5.0, 5.0, 6.0],
    ...                   "weight": 1.0, "ev_type": ["BEV", "PHEV", "BEV"]})
    >>> demand_points(v)[["lon", "weight"]].to_numpy().tolist()
    [[1.0, 2.0], [2.0, 1.0]]
    """
    chosen = filter_vehicles(
        vehicles, counties=counties, ev_types=ev_types, model_years=model_years
    )
    weight = vehicle_weights(chosen, weighting)
    frame = pd.DataFrame(
        {
            "lon": chosen["lon"].to_numpy("float64"),
            "lat": chosen["lat"].to_numpy("float64"),
            "weight": weight,
            "vehicles": chosen["weight"].to_numpy("float64"),
        }
    )
    points = frame.groupby(["lon", "lat"], as_index=False, sort=True).sum()
    return points.loc[points["weight"] > 0].reset_index(drop=True)


def synthesize_demand(
    demand: pd.DataFrame,
    n: int,
    *,
    seed: int = 0,
    spread_m: float = 3000.0,
    path: str | Path | None = None,
    chunk_rows: int = 1_000_000,
    crs="auto",
):
    """Draw ``n`` synthetic demand points shaped like ``demand``.

    Each point picks a real location with probability proportional to its weight and
    is scattered around it by a normal offset of ``spread_m`` metres per axis (in the
    projected CRS, so the scatter is round on the ground).

    Parameters
    ----------
    demand : pandas.DataFrame
        ``lon``, ``lat``, ``weight``, e.g. from :func:`demand_points`.
    n : int
        Number of points (tens of millions are fine with ``path``).
    seed : int
        The same ``seed``, ``n`` and ``chunk_rows`` give the same points.
    spread_m : float
        Standard deviation of the scatter per axis, metres (finite, >= 0).
    path : str or Path, optional
        Write Parquet (columns ``lon``, ``lat``, ``weight``) here, one row group per
        chunk, never holding more than one chunk in memory. Without it, return the
        points as a DataFrame. The file is written atomically: a failure or an
        interruption leaves no partial file (and an existing file as it was).
    chunk_rows : int
        Rows generated (and written) per chunk.
    crs : "auto" or EPSG
        CRS used for the scatter.

    Returns
    -------
    pandas.DataFrame or pathlib.Path
        The points (weight 1.0 each), or ``path`` once written.

    Raises
    ------
    ValueError
        Before any file is created: for ``n`` or ``chunk_rows`` below 1, a
        ``spread_m`` that is NaN, inf or negative, invalid demand weights, or a
        ``path`` whose directory does not exist.
    """
    for name, value in (("n", n), ("chunk_rows", chunk_rows)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{name}: expected an integer, got {value!r}")
    if n < 1:
        raise ValueError(f"n: expected a positive number of points, got {n}")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows: expected a positive integer, got {chunk_rows}")
    spread_m = check_positive(spread_m, "spread_m", unit="m", allow_zero=True)
    weight = demand["weight"].to_numpy("float64")
    with np.errstate(over="ignore"):
        total = weight.sum()
    if not np.isfinite(weight).all() or (weight < 0).any() or not 0 < total < np.inf:
        raise ValueError("demand weights must be finite, non-negative, not all zero")
    if path is not None and not Path(path).parent.is_dir():
        raise ValueError(f"path {path}: directory {Path(path).parent} does not exist")
    crs = choose_crs(demand["lon"], demand["lat"], crs, weight=weight)
    x_m, y_m = to_metres(demand["lon"], demand["lat"], crs)
    cumulative = np.cumsum(weight / weight.sum())
    # One child seed per chunk: chunks are independent streams, so writing them one
    # at a time gives the same points as generating them all at once.
    streams = np.random.SeedSequence(seed).spawn(-(-n // chunk_rows))

    def chunks():
        for index, stream in enumerate(streams):
            rows = min(chunk_rows, n - index * chunk_rows)
            rng = np.random.default_rng(stream)
            pick = np.searchsorted(cumulative, rng.random(rows), side="right")
            pick = np.minimum(pick, len(cumulative) - 1)
            offset = rng.normal(0.0, spread_m, size=(rows, 2))
            lon, lat = to_lonlat(
                x_m[pick] + offset[:, 0], y_m[pick] + offset[:, 1], crs
            )
            yield pd.DataFrame({"lon": lon, "lat": lat, "weight": np.ones(rows)})

    if path is None:
        return pd.concat(list(chunks()), ignore_index=True)

    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    schema = pa.schema([("lon", pa.float64()), ("lat", pa.float64()),
                        ("weight", pa.float64())])  # fmt: skip
    with atomic_write(path) as tmp:
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            for index, chunk in enumerate(chunks()):
                writer.write_table(
                    pa.Table.from_pandas(chunk, schema, preserve_index=False)
                )
                logger.info("wrote chunk %d/%d to %s", index + 1, len(streams), path)
    return path
