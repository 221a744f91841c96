"""Metric coordinates: choose a projected CRS and convert lon/lat to metres and back.

Distances in evplanner are Manhattan (L1) distances in metres on a projected CRS, not on
scaled degrees (one degree of longitude in Washington is about 70 km, one of latitude
111 km, so scaling degrees distorts every distance). The default CRS is the UTM zone
that pyproj estimates for the data; lon/lat are kept for display.
"""

from __future__ import annotations

import numpy as np
import pyproj
from pyproj.aoi import AreaOfInterest
from pyproj.database import query_utm_crs_info

__all__ = ["WGS84", "choose_crs", "to_lonlat", "to_metres"]

WGS84 = pyproj.CRS.from_epsg(4326)


def choose_crs(lon, lat, crs: str | int | pyproj.CRS = "auto") -> pyproj.CRS:
    """Return the projected CRS to measure distances in.

    Parameters
    ----------
    lon, lat : array-like of float, shape (n,)
        Degrees (WGS84) of the points the CRS must serve; only used for ``"auto"``.
    crs : "auto", int, str or pyproj.CRS
        ``"auto"`` estimates the WGS84 UTM zone from the points' bounding box (its
        centre decides the zone); an int is an EPSG code; a string is anything pyproj
        accepts (``"EPSG:32610"``).

    Returns
    -------
    pyproj.CRS
        A projected CRS whose axes are in metres.

    Raises
    ------
    ValueError
        If ``crs`` is not a projected CRS in metres, or ``"auto"`` is given no points.

    Examples
    --------
    >>> choose_crs([-122.3, -122.4], [47.6, 47.2]).to_epsg()  # Seattle, Tacoma
    32610
    """
    if isinstance(crs, str) and crs.lower() == "auto":
        lon = np.asarray(lon, dtype="float64")
        lat = np.asarray(lat, dtype="float64")
        if lon.size == 0:
            raise ValueError("crs='auto' needs at least one point to choose a UTM zone")
        west, east = float(np.nanmin(lon)), float(np.nanmax(lon))
        south, north = float(np.nanmin(lat)), float(np.nanmax(lat))
        # Query with the centre only: the whole box of a state spans several zones and
        # pyproj would return all of them; the zone of the centre is the usual choice.
        lon_c, lat_c = (west + east) / 2, (south + north) / 2
        infos = query_utm_crs_info(
            datum_name="WGS 84",
            area_of_interest=AreaOfInterest(lon_c, lat_c, lon_c, lat_c),
        )
        if not infos:
            raise ValueError(f"no UTM zone found for centre lon={lon_c}, lat={lat_c}")
        return pyproj.CRS.from_authority(infos[0].auth_name, infos[0].code)
    try:
        out = pyproj.CRS.from_user_input(crs)
    except pyproj.exceptions.CRSError as err:
        raise ValueError(f"crs: expected 'auto' or an EPSG code, got {crs!r}") from err
    if not out.is_projected:
        raise ValueError(
            f"crs: expected a projected CRS in metres, got {out.name!r} "
            "(geographic degrees would distort Manhattan distances)"
        )
    unit = out.axis_info[0].unit_name if out.axis_info else ""
    if unit not in ("metre", "meter"):
        raise ValueError(f"crs: expected axes in metres, got {unit!r} for {out.name!r}")
    return out


def _transformer(src: pyproj.CRS, dst: pyproj.CRS) -> pyproj.Transformer:
    return pyproj.Transformer.from_crs(src, dst, always_xy=True)


def to_metres(lon, lat, crs: pyproj.CRS) -> tuple[np.ndarray, np.ndarray]:
    """Project WGS84 lon/lat (degrees, shape (n,)) to ``crs`` x/y in metres."""
    x_m, y_m = _transformer(WGS84, crs).transform(
        np.asarray(lon, dtype="float64"), np.asarray(lat, dtype="float64")
    )
    return np.asarray(x_m, dtype="float64"), np.asarray(y_m, dtype="float64")


def to_lonlat(x_m, y_m, crs: pyproj.CRS) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`to_metres`: ``crs`` metres (shape (n,)) to WGS84 degrees."""
    lon, lat = _transformer(crs, WGS84).transform(
        np.asarray(x_m, dtype="float64"), np.asarray(y_m, dtype="float64")
    )
    return np.asarray(lon, dtype="float64"), np.asarray(lat, dtype="float64")
