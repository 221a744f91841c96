"""Downloads of the planner: sites (CSV, GeoJSON), metrics (JSON), load report (text).

Panel-free: each function turns a solution (or the data store) into the text of a
file, so the same exports can be tested and reused outside the web app.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict

import numpy as np
import pandas as pd

from evplanner.app.engine import DataStore, Solution

__all__ = ["load_report_text", "metrics_json", "sites_csv", "sites_frame",
           "sites_geojson"]

_SITE_COLUMNS = ["site_id", "kind", "name", "lon", "lat", "demand", "vehicles",
                 "share", "mean_km", "max_km", "points"]


def sites_frame(solution: Solution) -> pd.DataFrame:
    """Per-site table for export: one row per new site, then existing stations.

    Columns: ``site_id``, ``kind`` ("new"/"existing"), ``name``, ``lon``, ``lat``
    (degrees), ``demand`` (assigned demand weight), ``vehicles`` (assigned
    vehicles), ``share`` (of total demand, 0..1), ``mean_km`` and ``max_km`` (L1
    distance of the assigned demand, km; empty for a site serving nobody),
    ``points`` (demand locations assigned).
    """
    return solution.sites[_SITE_COLUMNS].copy()


def sites_csv(solution: Solution) -> str:
    """The sites table as CSV text."""
    return sites_frame(solution).to_csv(index=False, float_format="%.6f")


def _clean(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def sites_geojson(solution: Solution) -> str:
    """The sites as a GeoJSON FeatureCollection of points (WGS84 lon/lat).

    Each feature's properties are the columns of :func:`sites_frame` other than
    lon/lat; coordinates follow RFC 7946 (longitude first).
    """
    features = []
    for rec in sites_frame(solution).to_dict(orient="records"):
        lon, lat = float(rec.pop("lon")), float(rec.pop("lat"))
        features.append({
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [lon, lat]},
            "properties": {k: _clean(v) for k, v in rec.items()},
        })
    return json.dumps({"type": "FeatureCollection", "features": features}, indent=1)


def metrics_json(solution: Solution, store: DataStore | None = None) -> str:
    """Scenario, coverage metrics, today's-network comparison and load report."""
    out = {
        "scenario": {k: (list(v) if isinstance(v, tuple) else v)
                     for k, v in asdict(solution.scenario).items()},
        "crs": store.crs.to_string() if store is not None else None,
        "n_demand_points": len(solution.demand),
        "solve_seconds": solution.solve_s,
        "metrics": solution.metrics.to_dict(),
        "versus_existing_network": (solution.baseline.to_dict()
                                    if solution.baseline is not None else None),
        "notes": list(solution.notes),
    }
    if store is not None:
        out["load_report"] = {
            "vehicles": _report_dict(store.vehicles_report),
            "stations": _report_dict(store.stations_report),
        }
    return json.dumps(out, indent=1, default=_clean)


def _report_dict(report):
    return None if report is None else report.to_dict()


def load_report_text(store: DataStore) -> str:
    """The data load reports (rows read, kept, dropped by reason) as plain text."""
    parts = []
    for title, report in (("Vehicles", store.vehicles_report),
                          ("Existing stations", store.stations_report)):
        body = report.format() if report is not None else "(no report)"
        parts.append(f"{title}\n{'=' * len(title)}\n{body}\n")
    return "\n".join(parts)
