"""Metric coordinates: choose a projected CRS and convert lon/lat to metres and back.

Distances in evplanner are Manhattan (L1) distances in metres on a projected CRS, not on
scaled degrees (one degree of longitude in Washington is about 70 km, one of latitude
111 km, so scaling degrees distorts every distance). The default CRS is the UTM zone
at the weighted median point of the demand (a few stray points cannot move it); a
CRS given by the user must cover that point. lon/lat are kept for display.
"""

from __future__ import annotations

import logging

import numpy as np
import pyproj
from pyproj.aoi import AreaOfInterest
from pyproj.database import query_utm_crs_info

__all__ = [
    "WGS84",
    "choose_crs",
    "choose_crs_dask",
    "histogram_points",
    "lonlat_histogram",
    "robust_centre",
    "to_lonlat",
    "to_metres",
    "weighted_median",
]

logger = logging.getLogger(__name__)

WGS84 = pyproj.CRS.from_epsg(4326)


def weighted_median(values, weight=None) -> float:
    """The weighted median of ``values``, as :func:`numpy.median` for equal weights.

    Parameters
    ----------
    values : array-like of float, shape (n,)
        Finite values.
    weight : array-like of float, shape (n,), optional
        Finite, non-negative weights, not all zero; default 1 each.

    Returns
    -------
    float

    Notes
    -----
    With the values sorted and :math:`C_i` the cumulative weight up to value
    :math:`i` of total :math:`W`, the median is the first value with
    :math:`C_i \\ge W/2`; where :math:`C_i = W/2` exactly, the mean of that value
    and the next one with positive weight (so two equal weights give the midpoint,
    as :func:`numpy.median` does). Zero-weight values play no part. Half of the
    weight must move for the median to move arbitrarily far: a few stray points
    cannot drag it, unlike the mean or the centre of the bounding box.

    Examples
    --------
    >>> weighted_median([1.0, 2.0, 10.0])
    2.0
    >>> weighted_median([1.0, 2.0, 10.0], [1.0, 1.0, 5.0])
    10.0
    >>> weighted_median([1.0, 2.0])
    1.5
    """
    values = np.asarray(values, dtype="float64")
    weight = np.ones_like(values) if weight is None else np.asarray(weight, "float64")
    keep = weight > 0
    values, weight = values[keep], weight[keep]
    if values.size == 0:
        raise ValueError("weighted_median: expected a value with positive weight")
    order = np.argsort(values, kind="stable")
    values, cumulative = values[order], np.cumsum(weight[order])
    half = cumulative[-1] / 2
    index = int(np.searchsorted(cumulative, half, side="left"))
    if cumulative[index] == half and index + 1 < values.size:
        return float((values[index] + values[index + 1]) / 2)
    return float(values[index])


def _usable(lon, lat, weight) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points with finite, in-range degrees and positive weight."""
    lon = np.asarray(lon, dtype="float64").ravel()
    lat = np.asarray(lat, dtype="float64").ravel()
    if weight is None:
        weight = np.ones_like(lon)
    else:
        weight = np.asarray(weight, dtype="float64").ravel()
        if weight.shape != lon.shape:
            raise ValueError(
                f"weight: expected one weight per point ({lon.size}), got {weight.size}"
            )
        if not np.isfinite(weight).all() or (weight < 0).any():
            raise ValueError("weight: expected finite, non-negative weights")
    ok = np.isfinite(lon) & np.isfinite(lat) & (np.abs(lon) <= 180)
    ok &= (np.abs(lat) <= 90) & (weight > 0)
    return lon[ok], lat[ok], weight[ok]


def robust_centre(lon, lat, weight=None) -> tuple[float, float]:
    """Weighted median longitude and latitude of the points, in degrees.

    Points with a missing or out-of-range coordinate, or zero weight, are ignored.

    Parameters
    ----------
    lon, lat : array-like of float, shape (n,)
        WGS84 degrees.
    weight : array-like of float, shape (n,), optional
        Demand weight of each point (finite, >= 0); default 1 each.

    Returns
    -------
    (float, float)
        ``(lon, lat)``: each coordinate's :func:`weighted_median`.

    Raises
    ------
    ValueError
        If no point is usable.

    Examples
    --------
    >>> robust_centre([-122.3, -122.4, -122.2, 0.0, 0.0], [47.6, 47.7, 47.5, 0, 0])
    (-122.2, 47.5)
    """
    lon, lat, weight = _usable(lon, lat, weight)
    if lon.size == 0:
        raise ValueError(
            "expected at least one point with valid lon/lat and positive weight"
        )
    return weighted_median(lon, weight), weighted_median(lat, weight)


def lonlat_histogram(lon, lat, weight=None) -> np.ndarray:
    """Weight per one-degree cell: a chunk-additive summary for :func:`choose_crs`.

    Parameters
    ----------
    lon, lat : array-like of float, shape (n,)
        WGS84 degrees; invalid points are ignored as in :func:`robust_centre`.
    weight : array-like of float, shape (n,), optional
        Default 1 each.

    Returns
    -------
    numpy.ndarray of float64, shape (180, 360)
        ``hist[i, j]`` is the weight with ``-90 + i <= lat < -89 + i`` and
        ``-180 + j <= lon < -179 + j`` (the last row and column include 90 and 180).

    Notes
    -----
    Histograms of chunks add up to the histogram of the whole, so a Dask reader can
    sum one small array per chunk. The UTM zone boundaries (multiples of 6 degrees
    of longitude, the equator, and the Norway/Svalbard exceptions) fall on cell
    edges, so ``choose_crs(lon, lat, weight=weight)`` on the
    :func:`histogram_points` picks the same zone as
    :func:`choose_crs` on the points, ties aside; the area-of-use check of a given
    CRS is then accurate to half a degree.

    Examples
    --------
    >>> hist = lonlat_histogram([-122.3, -122.4], [47.6, 47.7], [2.0, 3.0])
    >>> hist.shape, float(hist.sum()), float(hist[137, 57])
    ((180, 360), 5.0, 5.0)
    """
    lon, lat, weight = _usable(lon, lat, weight)
    col = np.minimum(np.floor(lon + 180.0), 359).astype(np.intp)
    row = np.minimum(np.floor(lat + 90.0), 179).astype(np.intp)
    flat = np.bincount(row * 360 + col, weights=weight, minlength=180 * 360)
    return flat.reshape(180, 360)


def histogram_points(hist: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centres and weights of the occupied cells of a :func:`lonlat_histogram`.

    Returns
    -------
    lon, lat, weight : numpy.ndarray of float64, shape (m,)
        One entry per cell with positive weight.

    Examples
    --------
    >>> histogram_points(lonlat_histogram([-122.3], [47.6]))
    (array([-122.5]), array([47.5]), array([1.]))
    """
    hist = np.asarray(hist, dtype="float64")
    if hist.shape != (180, 360):
        raise ValueError(f"hist: expected shape (180, 360), got {hist.shape}")
    row, col = np.nonzero(hist > 0)
    return col - 179.5, row - 89.5, hist[row, col]


def _utm_at(lon: float, lat: float) -> pyproj.CRS:
    infos = query_utm_crs_info(
        datum_name="WGS 84",
        area_of_interest=AreaOfInterest(lon, lat, lon, lat),
    )
    if not infos:
        raise ValueError(f"no UTM zone found for lon={lon}, lat={lat}")
    return pyproj.CRS.from_authority(infos[0].auth_name, infos[0].code)


def _in_area(area, lon: float, lat: float) -> bool:
    """Whether a point lies in an area of use (which may cross the antimeridian)."""
    if not area.south <= lat <= area.north:
        return False
    if area.west <= area.east:
        return area.west <= lon <= area.east
    return lon >= area.west or lon <= area.east


def choose_crs(
    lon, lat, crs: str | int | pyproj.CRS = "auto", weight=None
) -> pyproj.CRS:
    """Return the projected CRS to measure distances in.

    Parameters
    ----------
    lon, lat : array-like of float, shape (n,)
        Degrees (WGS84) of the points the CRS must serve; points with missing or
        out-of-range coordinates are ignored.
    crs : "auto", int, str or pyproj.CRS
        ``"auto"`` picks the WGS84 UTM zone at the points' weighted median point
        (:func:`robust_centre`); an int is an EPSG code; a string is anything pyproj
        accepts (``"EPSG:32610"``).
    weight : array-like of float, shape (n,), optional
        Demand weight of each point (finite, >= 0); default 1 each.

    Returns
    -------
    pyproj.CRS
        A projected CRS whose axes are in metres.

    Raises
    ------
    ValueError
        If ``crs`` is not a projected CRS in metres; if its area of use does not
        contain the weighted median point of the data (the message names the CRS,
        its area and where the data is); or if ``"auto"`` is given no usable point.

    Notes
    -----
    The zone follows the weighted median longitude and latitude, not the centre of
    the bounding box: 40 points in Seattle and two rows at ``0,0`` keep UTM zone
    10N (the box centre would pick zone 20N, where L1 distances in Seattle are 7%
    off and the axes rotated). A given CRS is checked the same way; with no points
    there is nothing to check it against.

    Examples
    --------
    >>> choose_crs([-122.3, -122.4], [47.6, 47.2]).to_epsg()  # Seattle, Tacoma
    32610
    >>> choose_crs([-122.3] * 40 + [0.0, 0.0], [47.6] * 40 + [0.0, 0.0]).to_epsg()
    32610
    >>> choose_crs([-122.3], [47.6], "EPSG:32633")
    Traceback (most recent call last):
    ...
    ValueError: crs EPSG:32633 (WGS 84 / UTM zone 33N) is for lon 12.0 .. 18.0, \
lat 0.0 .. 84.0, but the data's weighted median point is lon -122.3000, lat 47.6000 \
(UTM zone EPSG:32610 there); give crs='auto' or a CRS for that area
    """
    auto = isinstance(crs, str) and crs.strip().lower() == "auto"
    usable = _usable(lon, lat, weight)
    if auto:
        if usable[0].size == 0:
            raise ValueError(
                "crs='auto' needs at least one point with valid lon/lat and positive "
                "weight to choose a UTM zone"
            )
        lon_c, lat_c = robust_centre(*usable)
        out = _utm_at(lon_c, lat_c)
        logger.info("CRS %s (%s) at the weighted median point lon %.4f, lat %.4f",
                    out.to_string(), out.name, lon_c, lat_c)  # fmt: skip
        return out
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
    area = out.area_of_use
    if area is not None and usable[0].size:
        lon_c, lat_c = robust_centre(*usable)
        if not _in_area(area, lon_c, lat_c):
            label = crs if isinstance(crs, str) else out.to_string()
            raise ValueError(
                f"crs {label} ({out.name}) is for lon {area.west:.1f} .. "
                f"{area.east:.1f}, lat {area.south:.1f} .. {area.north:.1f}, but the "
                f"data's weighted median point is lon {lon_c:.4f}, lat {lat_c:.4f} "
                f"(UTM zone {_utm_at(lon_c, lat_c).to_string()} there); give "
                "crs='auto' or a CRS for that area"
            )
    return out


def _frame_histogram(part, weight: str | None) -> np.ndarray:
    return lonlat_histogram(
        part["lon"].to_numpy("float64"),
        part["lat"].to_numpy("float64"),
        None if weight is None else part[weight].to_numpy("float64"),
    )


def choose_crs_dask(
    frame, crs: str | int | pyproj.CRS = "auto", *, weight: str | None = "weight"
) -> pyproj.CRS:
    """:func:`choose_crs` for points in a Dask DataFrame, without gathering them.

    Parameters
    ----------
    frame : dask.dataframe.DataFrame
        Columns ``lon``, ``lat`` (WGS84 degrees) and the ``weight`` column.
    crs : "auto", int, str or pyproj.CRS
        As in :func:`choose_crs`.
    weight : str or None
        The weight column; ``None`` for 1 per point.

    Returns
    -------
    pyproj.CRS

    Notes
    -----
    Each partition returns its :func:`lonlat_histogram` (a 180 x 360 array); the
    histograms are summed in a tree (fan-in 8) in partition order and computed
    once. The zone is the one :func:`choose_crs` picks on the points themselves
    (UTM zone edges fall on cell edges), for any partitioning.
    """
    import dask

    from evplanner._chunked import tree_reduce

    parts = [
        dask.delayed(_frame_histogram)(part, weight) for part in frame.to_delayed()
    ]
    hist = tree_reduce(parts, np.add).compute()
    cell_lon, cell_lat, cell_weight = histogram_points(hist)
    return choose_crs(cell_lon, cell_lat, crs, weight=cell_weight)


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
