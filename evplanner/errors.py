"""Project-specific errors.

One module for the errors evplanner raises on bad input, so that the CLI and the app
can turn them into messages (never tracebacks) that name the file, row and value; and
the check of a number given as an option (radius, spread), shared by all entry points.
"""

from __future__ import annotations

import math
import numbers
from pathlib import Path

__all__ = ["ClusterError", "InputError", "check_positive"]


class InputError(ValueError):
    """Bad input data: names the file and, where known, the row, column and value.

    Parameters
    ----------
    message : str
        What is wrong and what was expected.
    path : str or Path, optional
        The file the problem is in.
    row : int, optional
        1-based data row (the header is row 0), as a spreadsheet user counts.
    column : str, optional
        The column concerned.
    value : object, optional
        The offending value.
    field : str, optional
        The parameter concerned, for bad parameters rather than bad files (for
        example a :class:`~evplanner.planning.Scenario` field); the CLI and the app
        name their own option or control instead.

    Examples
    --------
    >>> str(InputError("not a number", path="a.csv", row=3, column="lon", value="x"))
    "a.csv, row 3, column 'lon', value 'x': not a number"
    >>> str(InputError("expected an integer >= 1, got 0", field="new_sites"))
    'new_sites: expected an integer >= 1, got 0'
    """

    def __init__(self, message, *, path=None, row=None, column=None, value=None,
                 field=None):  # fmt: skip
        self.message = message
        self.path = None if path is None else str(path)
        self.row = row
        self.column = column
        self.value = value
        self.field = field
        super().__init__(str(self))

    def __reduce__(self):
        # Keep path, row, column and value through pickling (Dask workers -> client).
        fields = {"path": self.path, "row": self.row, "column": self.column,
                  "value": self.value, "field": self.field}  # fmt: skip
        return _rebuild, (type(self), self.message, fields)

    def __str__(self) -> str:
        where = [] if self.field is None else [self.field]
        if self.path is not None:
            where.append(Path(self.path).name if len(self.path) > 120 else self.path)
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column {self.column!r}")
        if self.value is not None:
            where.append(f"value {self.value!r}")
        return (", ".join(where) + ": " if where else "") + self.message


def _rebuild(cls, message, fields):
    return cls(message, **fields)


def check_positive(
    value, name: str, *, unit: str = "", allow_zero: bool = False
) -> float:
    """Return ``value`` as a float if it is a finite number > 0 (>= 0 if allowed).

    Parameters
    ----------
    value : int or float
        The number as given (not a string: parse options first).
    name : str
        The parameter or option, as the user wrote it (``"--radius-km"``).
    unit : str
        Its unit, for the message (``"km"``).
    allow_zero : bool
        Accept 0.

    Raises
    ------
    ValueError
        Naming ``name``, the expected and the actual value, for NaN, inf, a negative
        number, zero (unless ``allow_zero``), a bool or a non-number.

    Examples
    --------
    >>> check_positive(5, "--radius-km", unit="km")
    5.0
    >>> check_positive(float("inf"), "--radius-km", unit="km")
    Traceback (most recent call last):
    ...
    ValueError: --radius-km: expected a finite number > 0 km, got inf
    >>> check_positive(-100.0, "spread_m", unit="m", allow_zero=True)
    Traceback (most recent call last):
    ...
    ValueError: spread_m: expected a finite number >= 0 m, got -100.0
    """
    bound = ">= 0" if allow_zero else "> 0"
    expected = f"expected a finite number {bound}" + (f" {unit}" if unit else "")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name}: {expected}, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        raise ValueError(f"{name}: {expected}, got {number!r}")
    return number


class ClusterError(RuntimeError):
    """The Dask cluster failed under a run: no workers left, or the scheduler gone.

    Not the user's input: the CLI reports it in one line with exit code 1.
    """
