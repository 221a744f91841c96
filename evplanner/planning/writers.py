"""A plan's files: sites (CSV, GeoJSON, GeoParquet), metrics JSON, HTML report.

Each format is one function from a :class:`~evplanner.planning.Plan` to bytes, so
the CLI's files and the app's downloads are the same bytes; :func:`write_plan`
writes them to disk atomically (a temporary file in the same folder, then a rename),
so a failed or interrupted run never leaves a half-written file and never deletes
the file it was replacing.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path

from evplanner._json import json_ready
from evplanner.errors import InputError
from evplanner.planning.plan import Plan

__all__ = [
    "SITE_FORMATS",
    "metrics_json",
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
    return plan.sites.to_csv(index=False, lineterminator="\n").encode("utf-8")


def sites_geojson(plan: Plan) -> bytes:
    """The sites as a GeoJSON FeatureCollection of WGS84 points (RFC 7946).

    Each feature's properties are the site table's columns other than ``lon`` and
    ``lat``, which are its coordinates.
    """
    features = []
    for record in plan.sites.to_dict(orient="records"):
        lon, lat = float(record.pop("lon")), float(record.pop("lat"))
        features.append({"type": "Feature",
                         "geometry": {"type": "Point", "coordinates": [lon, lat]},
                         "properties": json_ready(record)})  # fmt: skip
    collection = {"type": "FeatureCollection", "features": features}
    return (json.dumps(collection, indent=1) + "\n").encode("utf-8")


def sites_geoparquet(plan: Plan) -> bytes:
    """The sites as GeoParquet: the site table plus point geometries in EPSG:4326."""
    import geopandas as gpd

    frame = gpd.GeoDataFrame(
        plan.sites,
        geometry=gpd.points_from_xy(plan.sites["lon"], plan.sites["lat"]),
        crs="EPSG:4326",
    )
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


_SITE_WRITERS = {"csv": sites_csv, "geojson": sites_geojson,
                 "geoparquet": sites_geoparquet}  # fmt: skip


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
    return _SITE_WRITERS[fmt](plan)


def metrics_json(plan: Plan) -> bytes:
    """:meth:`Plan.metrics` as indented JSON (NaN as null)."""
    return (json.dumps(plan.metrics(), indent=2) + "\n").encode("utf-8")


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically: a temporary file, then a rename.

    The previous file (if any) stays intact until the new one is complete; on any
    error the temporary file is removed.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp",
                               dir=path.parent or Path("."))  # fmt: skip
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_plan(
    plan: Plan,
    *,
    sites: str | Path | None = None,
    metrics: str | Path | None = None,
    report: str | Path | None = None,
) -> list[Path]:
    """Write a plan's files (each optional); returns the paths written.

    Every file is rendered in memory first, so a failure writing one leaves none
    half-written; each is then written atomically.
    """
    from evplanner.planning.report import report_html

    outputs = []
    if sites is not None:
        outputs.append((sites, sites_bytes(plan, site_format(sites))))
    if metrics is not None:
        outputs.append((metrics, metrics_json(plan)))
    if report is not None:
        outputs.append((report, report_html(plan).encode("utf-8")))
    return [write_bytes(path, data) for path, data in outputs]
