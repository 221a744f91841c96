"""Project-specific errors.

One module for the errors evplanner raises on bad input, so that the CLI and the app
can turn them into messages (never tracebacks) that name the file, row and value.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["InputError"]


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

    Examples
    --------
    >>> str(InputError("not a number", path="a.csv", row=3, column="lon", value="x"))
    "a.csv, row 3, column 'lon', value 'x': not a number"
    """

    def __init__(self, message, *, path=None, row=None, column=None, value=None):
        self.message = message
        self.path = None if path is None else str(path)
        self.row = row
        self.column = column
        self.value = value
        super().__init__(str(self))

    def __str__(self) -> str:
        where = []
        if self.path is not None:
            where.append(Path(self.path).name if len(self.path) > 120 else self.path)
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column {self.column!r}")
        if self.value is not None:
            where.append(f"value {self.value!r}")
        return (", ".join(where) + ": " if where else "") + self.message
