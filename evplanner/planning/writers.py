"""A plan's files: sites (CSV, GeoJSON, GeoParquet), metrics JSON, HTML report.

Each format is one function from a :class:`~evplanner.planning.Plan` to bytes, so
the CLI's files and the app's downloads are the same bytes; :func:`write_plan`
writes them to disk atomically (each to a temporary file in its folder, then all
renamed), so a failed or interrupted run never leaves a half-written file, never
writes some files but not the others, and never deletes a file it was replacing.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from evplanner._io import write_files
from evplanner._json import json_ready
from evplanner.errors import InputError
from evplanner.planning.plan import Plan

__all__ = [
    "SITE_FORMATS",
    "metrics_json",
    "rollout_bytes",
    "site_format",
    "sites_bytes",
    "sites_csv",
    "sites_geojson",
    "sites_geoparquet",
    "write_bytes",
    "write_plan",
]

#: Site file formats by extension.
SITE_FORMATS = {".csv": "csv", ".geojson": "geojson", ".json": "geojson",
                ".parquet": "geoparquet"}  # fmt: skip


def sites_csv(plan: Plan) -> bytes:
    """The site table as CSV (UTF-8, full float precision, empty for missing)."""
    return _table_csv(plan.sites)


def _table_csv(sites) -> bytes:
    return sites.to_csv(index=False, lineterminator="\n").encode("utf-8")


def sites_geojson(plan: Plan) -> bytes:
    """The sites as a GeoJSON FeatureCollection of WGS84 points (RFC 7946).

    Each feature's properties are the site table's columns (``lon`` and ``lat``
    too, so that the properties alone are the table).
    """
    return _table_geojson(plan.sites)


def _table_geojson(sites) -> bytes:
    features = []
    for record in sites.to_dict(orient="records"):
        lon, lat = float(record["lon"]), float(record["lat"])
        features.append({"type": "Feature",
                         "geometry": {"type": "Point", "coordinates": [lon, lat]},
                         "properties": json_ready(record)})  # fmt: skip
    collection = {"type": "FeatureCollection", "features": features}
    return (json.dumps(collection, indent=1) + "\n").encode("utf-8")


def sites_geoparquet(plan: Plan) -> bytes:
    """The sites as GeoParquet: the site table plus point geometries in EPSG:4326."""
    return _table_geoparquet(plan.sites)


def _table_geoparquet(sites) -> bytes:
    import geopandas as gpd

    frame = gpd.GeoDataFrame(
        sites, geometry=gpd.points_from_xy(sites["lon"], sites["lat"]),
        crs="EPSG:4326",
    )  # fmt: skip
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


_SITE_WRITERS = {"csv": _table_csv, "geojson": _table_geojson,
                 "geoparquet": _table_geoparquet}  # fmt: skip


def site_format(path: str | Path) -> str:
    """The site file format a path's extension names.

    Raises
    ------
    InputError
        For another extension (the message names the path and the known ones).

    Examples
    --------
    >>> site_format("sites.geojson")
    'geojson'
    """
    suffix = Path(path).suffix.lower()
    if suffix not in SITE_FORMATS:
        raise InputError(f"unknown site file format {suffix or '(none)'!r}; expected "
                         f"one of {', '.join(SITE_FORMATS)}", path=path)  # fmt: skip
    return SITE_FORMATS[suffix]


def sites_bytes(plan: Plan, fmt: str) -> bytes:
    """The sites in ``fmt`` (``"csv"``, ``"geojson"`` or ``"geoparquet"``)."""
    return _SITE_WRITERS[fmt](plan.sites)


def rollout_bytes(rollout, fmt: str) -> bytes:
    """A :class:`~evplanner.planning.rollout.Rollout`'s sites (with their year)."""
    return _SITE_WRITERS[fmt](rollout.sites)


def metrics_json(plan: Plan) -> bytes:
    """:meth:`Plan.metrics` as indented JSON (NaN as null)."""
    return (json.dumps(plan.metrics(), indent=2) + "\n").encode("utf-8")


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (:func:`evplanner._io.atomic_write`)."""
    return write_files({path: data})[0]


def write_plan(
    plan: Plan,
    *,
    sites: str | Path | None = None,
    metrics: str | Path | None = None,
    report: str | Path | None = None,
) -> list[Path]:
    """Write a plan's files (each optional), all or nothing; returns their paths."""
    from evplanner.planning.report import report_html

    files: dict[Path, bytes] = {}
    if sites is not None:
        files[Path(sites)] = sites_bytes(plan, site_format(sites))
    if metrics is not None:
        files[Path(metrics)] = metrics_json(plan)
    if report is not None:
        files[Path(report)] = report_html(plan).encode("utf-8")
    return write_files(files)
