"""The planning area: which points are in Washington State, for files that do not say.

The WA DOL vehicle export names each vehicle's state of registration, and that decides
(see :mod:`evplanner.data`). Plain lon/lat demand files and station lists carry no
state, so their rows are tested against a box around the state instead: a row at
``0,0`` (a classic export error), a station in Sydney or a demand point in Miami is
outside it, counted in the load report and left out unless the user keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["MARGIN_DEG", "WASHINGTON", "WA_DATA_BOX", "PlanningArea"]

#: Degrees added on every side of the data's box (0.5 degree is 56 km north-south and
#: 36-39 km east-west at 45.5-49.5 N): stations just across the border (Portland,
#: Coeur d'Alene, the BC Lower Mainland) serve WA drivers and are kept; another
#: state or continent is not.
MARGIN_DEG = 0.5


@dataclass(frozen=True)
class PlanningArea:
    """A lon/lat box, in WGS84 degrees, that points must lie in.

    Attributes
    ----------
    name : str
        What a planner calls it (``"WA"``), used in messages.
    west, south, east, north : float
        Bounds in degrees, inclusive; ``west < east`` (no antimeridian crossing).

    Examples
    --------
    >>> area = PlanningArea("box", west=-1.0, south=-1.0, east=1.0, north=1.0)
    >>> area.contains([0.0, 2.0, np.nan], [0.0, 0.0, 0.0]).tolist()
    [True, False, False]
    """

    name: str
    west: float
    south: float
    east: float
    north: float

    def contains(self, lon, lat) -> np.ndarray:
        """Whether each point is inside the box (NaN coordinates are not).

        Parameters
        ----------
        lon, lat : array-like of float, shape (n,)
            WGS84 degrees.

        Returns
        -------
        numpy.ndarray of bool, shape (n,)
        """
        lon = np.asarray(lon, dtype="float64")
        lat = np.asarray(lat, dtype="float64")
        return (
            (lon >= self.west) & (lon <= self.east)
            & (lat >= self.south) & (lat <= self.north)
        )  # fmt: skip

    def describe(self) -> str:
        """The box as text for messages.

        Examples
        --------
        >>> WASHINGTON.describe()
        'WA (lon -125.17 .. -116.54, lat 45.06 .. 49.50)'
        """
        return (
            f"{self.name} (lon {self.west:.2f} .. {self.east:.2f}, "
            f"lat {self.south:.2f} .. {self.north:.2f})"
        )


#: ``(west, south, east, north)``: the box of the bundled WA data, rounded outwards
#: to 0.01 degree. Vehicles registered in WA (postal-code centroids, lon -124.6252 ..
#: -117.0444, lat 45.5839 .. 48.9963), the AFDC electric stations (lon -124.6629 ..
#: -117.0435, lat 45.5626 .. 48.9953) and the Census 2020 tract centres of
#: population (lon -124.6187 .. -117.0501, lat 45.5756 .. 48.9910);
#: tests/test_area.py checks the bundled data against it.
WA_DATA_BOX = (-124.67, 45.56, -117.04, 49.00)

#: Washington State: the bundled data's box widened by :data:`MARGIN_DEG`.
WASHINGTON = PlanningArea(
    "WA",
    west=round(WA_DATA_BOX[0] - MARGIN_DEG, 2),
    south=round(WA_DATA_BOX[1] - MARGIN_DEG, 2),
    east=round(WA_DATA_BOX[2] + MARGIN_DEG, 2),
    north=round(WA_DATA_BOX[3] + MARGIN_DEG, 2),
)
