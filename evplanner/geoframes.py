"""GeoDataFrames in, the models' arrays out: demand, candidate and existing sites.

The models (:class:`evplanner.kmedians.KMedians`,
:class:`evplanner.max_coverage.MaxCoverage`) take arrays in one projected CRS;
this adapter checks that the frames share that CRS (a mismatch is a
``ValueError``, never a silent reprojection) and hands back their coordinates.
"""

from __future__ import annotations

import numpy as np

__all__ = ["arrays_from_geodataframes"]


def _xy(frame, name):
    geom = frame.geometry
    if len(geom) and not (geom.geom_type == "Point").all():
        bad = geom.geom_type[geom.geom_type != "Point"]
        raise ValueError(
            f"{name} must hold Point geometries, got {bad.iloc[0]} at row "
            f"{bad.index[0]!r}"
        )
    if geom.is_empty.any() or geom.isna().any():
        row = geom.index[(geom.is_empty | geom.isna()).to_numpy()][0]
        raise ValueError(f"{name} has an empty or missing geometry at row {row!r}")
    return np.column_stack([geom.x.to_numpy("float64"), geom.y.to_numpy("float64")])


def arrays_from_geodataframes(demand, candidates, fixed=None, weight=None):
    """Coordinates of demand, candidate and existing sites that share one CRS.

    Parameters
    ----------
    demand : geopandas.GeoDataFrame
        Demand points (Point geometries) in a projected CRS (metres).
    candidates : geopandas.GeoDataFrame
        Candidate sites (Points), same CRS.
    fixed : geopandas.GeoDataFrame, optional
        Existing sites (Points), same CRS.
    weight : str, optional
        Column of ``demand`` holding the weight; default 1 per point.

    Returns
    -------
    X : np.ndarray, shape (n, 2)
    sample_weight : np.ndarray, shape (n,)
    candidates : np.ndarray, shape (m, 2)
    fixed_centers : np.ndarray, shape (f, 2) or None

    Raises
    ------
    ValueError
        A frame without a CRS, CRSs that differ, a geographic CRS (degrees:
        an L1 distance in degrees means nothing on the ground), geometries
        that are not points, or a missing weight column.

    Examples
    --------
    >>> import geopandas as gpd
    >>> from shapely.geometry import Point
    >>> d = gpd.GeoDataFrame({"ev": [2.0, 1.0]},
    ...                      geometry=[Point(0, 0), Point(10, 0)], crs=32610)
    >>> c = gpd.GeoDataFrame(geometry=[Point(1, 0)], crs=32610)
    >>> X, w, C, F = arrays_from_geodataframes(d, c, weight="ev")
    >>> X.tolist(), w.tolist(), C.tolist(), F
    ([[0.0, 0.0], [10.0, 0.0]], [2.0, 1.0], [[1.0, 0.0]], None)
    >>> arrays_from_geodataframes(d, c.to_crs(4326))
    Traceback (most recent call last):
    ...
    ValueError: candidates has CRS EPSG:4326 but demand has EPSG:32610; reproject ...
    """
    frames = {"demand": demand, "candidates": candidates}
    if fixed is not None:
        frames["fixed"] = fixed
    crs = demand.crs
    if crs is None:
        raise ValueError("demand has no CRS; expected a projected CRS in metres")
    for name, frame in frames.items():
        if frame.crs is None:
            raise ValueError(f"{name} has no CRS; expected {crs.to_string()}")
        if frame.crs != crs:
            raise ValueError(
                f"{name} has CRS {frame.crs.to_string()} but demand has "
                f"{crs.to_string()}; reproject one with .to_crs() first"
            )
    if not crs.is_projected:
        raise ValueError(
            f"the CRS must be projected (metres), got geographic {crs.to_string()}"
        )
    X = _xy(demand, "demand")
    if weight is None:
        w = np.ones(X.shape[0])
    elif weight not in demand.columns:
        raise ValueError(
            f"weight column {weight!r} not in demand; columns: {list(demand.columns)}"
        )
    else:
        w = demand[weight].to_numpy("float64")
    C = _xy(candidates, "candidates")
    F = _xy(fixed, "fixed") if fixed is not None else None
    return X, w, C, F
