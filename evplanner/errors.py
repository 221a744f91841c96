"""Project-specific errors.

One module for the errors evplanner raises on bad input, so that the CLI and the app
can turn them into messages (never tracebacks) that name the file, row and value.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["ClusterError", "InputError"]


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


class ClusterError(RuntimeError):
    """The Dask cluster failed under a run: no workers left, or the scheduler gone.

    Not the user's input: the CLI reports it in one line with exit code 1.
    """
