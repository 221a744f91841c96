"""Data in: read EV registrations and charging stations, clean them honestly.

Three kinds of vehicle input are understood, told apart by their columns:

* the Washington State Department of Licensing "Electric Vehicle Population Data" CSV,
  exactly as published (original column names, ``Vehicle Location`` as
  ``POINT (lon lat)``);
* the bundled Parquet (``evplanner/bundled/``, derived from that CSV by
  :func:`build_bundled_data`);
* a plain CSV or Parquet with ``lon``/``lat`` columns (aliases ``longitude``,
  ``latitude``, ``lng``) and an optional ``weight`` column.

Stations come as the US DOE Alternative Fuels Data Center (AFDC) CSV export as
published, the bundled Parquet, or a plain CSV of lon/lat (a planner's own list of
sites).

Nothing is dropped silently: every row left out is counted by reason in a
:class:`LoadReport` (with the first offending row as an example), which the CLI and the
app show; rows outside the planning area (another state of registration, or for files
without a state, outside the box of :data:`evplanner.area.WASHINGTON`) are counted and
left out unless kept. Files that cannot be read at all raise
:class:`~evplanner.errors.InputError` with a one-line message naming the file and,
where known, the row.
"""

from __future__ import annotations

import functools
import importlib.resources
import io
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from evplanner.area import WASHINGTON, PlanningArea
from evplanner.errors import InputError

__all__ = [
    "BUNDLED_DIR",
    "BUNDLED_STATIONS",
    "BUNDLED_TRACTS",
    "BUNDLED_VEHICLES",
    "MAX_TOTAL_WEIGHT",
    "MIN_PARTITION_ROWS",
    "PLANNING_AREA",
    "LoadReport",
    "attribute_columns",
    "build_bundled_data",
    "check_total_weight",
    "load_candidates",
    "load_stations",
    "load_tracts",
    "load_vehicles",
    "merge_reports",
    "parse_point",
    "parse_points",
    "read_points_dask",
]

logger = logging.getLogger(__name__)

#: The bundled data files, inside the installed package (so that a wheel or a plain
#: ``pip install .`` finds them from any directory).
BUNDLED_DIR = Path(str(importlib.resources.files("evplanner.bundled")))
BUNDLED_VEHICLES = BUNDLED_DIR / "vehicles.parquet"
BUNDLED_STATIONS = BUNDLED_DIR / "stations.parquet"
BUNDLED_TRACTS = BUNDLED_DIR / "tracts.parquet"

#: The planning area: vehicles registered in another state are counted as out of area.
PLANNING_STATE = "WA"
#: Rows without a state (plain lon/lat files, stations) must lie in this box.
PLANNING_AREA: PlanningArea = WASHINGTON

#: The largest total demand weight accepted. Sums of whole-number weights are exact
#: in float64 below 2**53 whatever the order of addition, which is what makes the
#: chunked (Dask) and in-memory objectives agree; far beyond it they overflow to inf.
MAX_TOTAL_WEIGHT = 2.0**53

#: Fewest rows :func:`read_points_dask` cuts a partition down to when it splits the
#: input to give every worker thread work: a smaller partition's fixed costs (a task
#: round trip and the per-cluster statistics each chunk returns in every pass of the
#: solver) would outweigh its share of the work.
MIN_PARTITION_ROWS = 50_000
#: Rows decoded at a time when a partition starts or ends inside a Parquet row
#: group, so that reading it holds a batch, not the whole row group.
_PARQUET_BATCH_ROWS = 65_536

# Drop reasons, worded for the load report a planner reads.
MISSING_LOCATION = "missing location"
UNPARSABLE_POINT = "unparsable point"
OUT_OF_RANGE = "coordinates out of range"
INVALID_WEIGHT = "invalid weight"
NOT_ELECTRIC = "not an electric station"
OUTSIDE_AREA = "outside the planning area"

#: Output columns of :func:`load_vehicles`, in order.
VEHICLE_COLUMNS = [
    "lon", "lat", "weight", "county", "city", "state", "postal_code", "census_tract",
    "model_year", "make", "model", "ev_type", "electric_range", "utility",
    "legislative_district",
]  # fmt: skip
#: Output columns of :func:`load_stations`, in order.
STATION_COLUMNS = [
    "station_id", "name", "lon", "lat", "level1_ports", "level2_ports",
    "dc_fast_ports", "network", "open_date",
]  # fmt: skip

# WA DOL export: published column -> our column.
_DOL_COLUMNS = {
    "County": "county",
    "City": "city",
    "State": "state",
    "Postal Code": "postal_code",
    "2020 Census Tract": "census_tract",
    "Model Year": "model_year",
    "Make": "make",
    "Model": "model",
    "Electric Vehicle Type": "ev_type",
    "Electric Range": "electric_range",
    "Electric Utility": "utility",
    "Legislative District": "legislative_district",
}
_DOL_REQUIRED = ["Vehicle Location", "State"]
_EV_TYPES = {
    "Battery Electric Vehicle (BEV)": "BEV",
    "Plug-in Hybrid Electric Vehicle (PHEV)": "PHEV",
}

# AFDC export: published column -> our column.
_AFDC_COLUMNS = {
    "ID": "station_id",
    "Station Name": "name",
    "Longitude": "lon",
    "Latitude": "lat",
    "EV Level1 EVSE Num": "level1_ports",
    "EV Level2 EVSE Num": "level2_ports",
    "EV DC Fast Count": "dc_fast_ports",
    "EV Network": "network",
    "Open Date": "open_date",
}
_AFDC_REQUIRED = ["Fuel Type Code", "Latitude", "Longitude"]
#: Port columns of :data:`STATION_COLUMNS` (Level 1, Level 2, DC fast).
PORT_COLUMNS = ("level1_ports", "level2_ports", "dc_fast_ports")
#: Ports assumed at a station whose file gives none (no port columns, or all empty
#: or zero): 2 Level 2 ports, the median of the bundled public stations (2,473
#: stations of 2025-02, median 2 Level 2 ports, 2 ports in all). Counted in the
#: load report's ``assumed``.
DEFAULT_STATION_PORTS = {"level1_ports": 0, "level2_ports": 2, "dc_fast_ports": 0}
#: The load report's name for stations given the default ports.
PORTS_ASSUMED = "ports missing: 2 Level 2 ports assumed"
# A station list's port columns (lower case: matched ignoring case): ours, the AFDC
# export's, or one "ports" column (counted as Level 2).
_PORT_ALIASES = {
    "level1_ports": ("level1_ports", "ev level1 evse num"),
    "level2_ports": ("level2_ports", "ev level2 evse num", "ports"),
    "dc_fast_ports": ("dc_fast_ports", "ev dc fast count"),
}

_LON_ALIASES = ("lon", "longitude", "lng", "long", "x")
_LAT_ALIASES = ("lat", "latitude", "y")
_WEIGHT_ALIASES = ("weight", "vehicles", "count")

_POINT_RE = re.compile(
    r"^\s*POINT\s*\(\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s+"
    r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*\)\s*$",
    re.IGNORECASE,
)


# --------------------------------------------------------------------------- report


@dataclass
class LoadReport:
    """What a load read, kept and dropped, by reason.

    Attributes
    ----------
    source : str
        The file read.
    kind : str
        Which format it was read as (``"wa-dol-csv"``, ``"bundled-vehicles"``,
        ``"points"``, ``"afdc-csv"``, ``"bundled-stations"``, ``"station-points"``).
    rows_read : int
        Data rows in the file.
    rows_kept : int
        Rows in the returned frame.
    dropped : dict of str to int
        Rows left out, by reason.
    examples : dict of str to str
        For each drop reason, the first row concerned (1-based data row and value).
    assumed : dict of str to int
        Rows kept with a stated default for a missing value, by what was assumed
        (stations without port counts: :data:`DEFAULT_STATION_PORTS`).
    out_of_area : int
        Rows outside the planning area (:data:`OUTSIDE_AREA`): registered in another
        state, or, for rows without a state (plain lon/lat files, stations), outside
        the box of :data:`PLANNING_AREA`; left out unless ``kept_out_of_area``. The
        first one is in ``examples[OUTSIDE_AREA]``.
    kept_out_of_area : bool
        Whether out-of-area rows were kept.
    """

    source: str
    kind: str
    rows_read: int = 0
    rows_kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)
    out_of_area: int = 0
    kept_out_of_area: bool = False
    assumed: dict[str, int] = field(default_factory=dict)

    @property
    def rows_dropped(self) -> int:
        """Rows left out for any reason, out-of-area rows included when excluded."""
        return self.rows_read - self.rows_kept

    def to_dict(self) -> dict:
        """JSON-serialisable form."""
        return {
            "source": self.source,
            "kind": self.kind,
            "rows_read": self.rows_read,
            "rows_kept": self.rows_kept,
            "rows_dropped": self.rows_dropped,
            "dropped": dict(self.dropped),
            "examples": dict(self.examples),
            "out_of_area": self.out_of_area,
            "kept_out_of_area": self.kept_out_of_area,
            "assumed": dict(self.assumed),
        }

    def format(self) -> str:
        """Multi-line text for a terminal or a page."""
        lines = [
            f"source: {self.source} ({self.kind})",
            f"rows read: {self.rows_read:,}",
            f"rows kept: {self.rows_kept:,}",
            f"rows dropped: {self.rows_dropped:,}",
        ]
        for reason, count in sorted(self.dropped.items()):
            example = self.examples.get(reason)
            lines.append(
                f"  {reason}: {count:,}" + (f" (first: {example})" if example else "")
            )
        if self.out_of_area:
            verb = "kept" if self.kept_out_of_area else "left out"
            example = self.examples.get(OUTSIDE_AREA)
            lines.append(
                f"  {OUTSIDE_AREA} ({PLANNING_STATE}): {self.out_of_area:,} ({verb})"
                + (f" (first: {example})" if example else "")
            )
        for what, count in sorted(self.assumed.items()):
            lines.append(f"rows kept with {what}: {count:,}")
        return "\n".join(lines)

    def merge(self, other: LoadReport) -> LoadReport:
        """Sum of two reports on parts of the same source (for chunked reads)."""
        dropped = dict(self.dropped)
        for reason, count in other.dropped.items():
            dropped[reason] = dropped.get(reason, 0) + count
        examples = {**other.examples, **self.examples}
        assumed = dict(self.assumed)
        for what, count in other.assumed.items():
            assumed[what] = assumed.get(what, 0) + count
        return LoadReport(
            source=self.source,
            kind=self.kind,
            rows_read=self.rows_read + other.rows_read,
            rows_kept=self.rows_kept + other.rows_kept,
            dropped=dropped,
            examples=examples,
            out_of_area=self.out_of_area + other.out_of_area,
            kept_out_of_area=self.kept_out_of_area,
            assumed=assumed,
        )


# --------------------------------------------------------------------------- parsing


def parse_point(text: str) -> tuple[float, float]:
    """Parse one WKT ``POINT (lon lat)`` string into ``(lon, lat)`` degrees.

    Raises
    ------
    ValueError
        If ``text`` is not a 2-D WKT point.

    Examples
    --------
    >>> parse_point("POINT (-122.34301 47.659185)")
    (-122.34301, 47.659185)
    """
    match = _POINT_RE.match(text or "")
    if match is None:
        raise ValueError(f"expected 'POINT (lon lat)', got {text!r}")
    return float(match.group(1)), float(match.group(2))


def parse_points(texts: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised :func:`parse_point` that marks failures instead of raising.

    Parameters
    ----------
    texts : pandas.Series of str, shape (n,)
        WKT strings; empty or missing values mean "no location".

    Returns
    -------
    lon, lat : ndarray of float64, shape (n,)
        Degrees; NaN where not parsed.
    status : ndarray of object, shape (n,)
        ``None`` where parsed, else :data:`MISSING_LOCATION` or
        :data:`UNPARSABLE_POINT`.
    """
    texts = texts.astype("string").fillna("")
    parts = texts.str.extract(_POINT_RE)
    lon = pd.to_numeric(parts[0], errors="coerce").to_numpy("float64", na_value=np.nan)
    lat = pd.to_numeric(parts[1], errors="coerce").to_numpy("float64", na_value=np.nan)
    status = np.full(len(texts), None, dtype=object)
    missing = (texts.str.strip() == "").to_numpy(bool)
    status[np.isnan(lon) | np.isnan(lat)] = UNPARSABLE_POINT
    status[missing] = MISSING_LOCATION
    return lon, lat, status


# --------------------------------------------------------------------------- files


def _check_file(path: Path) -> None:
    """Fail early, naming the file, on what pandas would report as a traceback."""
    if not path.exists():
        raise InputError("file not found", path=path)
    if path.is_dir():
        raise InputError("expected a file, got a directory", path=path)
    if path.stat().st_size == 0:
        raise InputError("empty file", path=path)


def _is_parquet(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(4) == b"PAR1"


# pandas' C parser on a row with more fields than the header; its "line" counts
# records from the header (line 1), blank lines included.
_RAGGED_RE = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


def _check_csv_head(path: Path, head: bytes) -> None:
    """Refuse what is plainly not CSV text, from the first bytes of the file."""
    if head[:4] == b"PAR1":
        raise InputError(
            "not a CSV file (it is Parquet; give it a .parquet name)", path=path
        )
    if b"\x00" in head:
        raise InputError("not a CSV file (binary content)", path=path)
    try:
        head.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        # A cut multi-byte character at the end of the sample is not an error.
        if err.start < len(head) - 4:
            line = head.count(b"\n", 0, err.start)
            raise _not_utf8(path, head[err.start], line) from None


def _not_utf8(path: Path, byte: int, line: int) -> InputError:
    """The error for a ``byte`` that is not UTF-8 on ``line`` (0: the header)."""
    row = line if line > 0 else None
    where = "" if row is not None else " in the header"
    return InputError(
        f"not a CSV text file: byte 0x{byte:02x}{where} is not UTF-8 (the file may "
        "be Latin-1 or Windows-1252; save it as UTF-8)",
        path=path,
        row=row,
    )


def _first_bad_utf8(path: Path, chunk_bytes: int = 1 << 20) -> tuple[int, int]:
    """Line (0: the header) and value of the first byte that is not UTF-8."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")()
    lines = 0
    with path.open("rb") as fh:
        while chunk := fh.read(chunk_bytes):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as err:
                # The decoder may hold up to 3 bytes of the previous chunk.
                held = len(err.object) - len(chunk)
                line = lines + chunk.count(b"\n", 0, max(err.start - held, 0))
                return line, int(err.object[err.start])
            lines += chunk.count(b"\n")
    return 0, 0  # not reached: pandas found one


def _parse_csv(source, path: Path) -> pd.DataFrame:
    """``pandas.read_csv`` as strings, its errors as one-line InputErrors.

    Parameters
    ----------
    source : Path or io.BytesIO
        The CSV: a whole file, or a header line followed by a block of rows (whose
        row numbers the caller then shifts to the file's).
    path : Path
        The file, for messages.
    """
    try:
        return pd.read_csv(source, dtype=str, keep_default_na=False,
                           encoding="utf-8-sig")  # fmt: skip
    except pd.errors.EmptyDataError:
        raise InputError("empty file (no header row)", path=path) from None
    except pd.errors.ParserError as err:
        text = str(err).strip()
        ragged = _RAGGED_RE.search(text)
        if ragged:
            expected, line, saw = map(int, ragged.groups())
            raise InputError(
                f"not a valid CSV file: the row has {saw} fields, the header has "
                f"{expected} (a comma inside a value needs quotes)",
                path=path,
                row=line - 1,
            ) from None
        text = text.removeprefix("Error tokenizing data. ").splitlines()[0]
        raise InputError(f"not a valid CSV file ({text})", path=path) from None
    except UnicodeDecodeError as err:
        # pandas' position is within its own buffer: find the byte in the input.
        if not isinstance(source, io.BytesIO):
            line, byte = _first_bad_utf8(Path(source))
            raise _not_utf8(path, byte, line) from None
        data = source.getvalue()
        start = err.start
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exact:
            start = exact.start
        line = data.count(b"\n", 0, start)
        raise _not_utf8(path, data[start], line) from None


def _read_csv_text(path: Path) -> pd.DataFrame:
    """Read a CSV as strings (empty cells as ""), with one-line errors."""
    with path.open("rb") as fh:
        _check_csv_head(path, fh.read(65536))
    frame = _parse_csv(path, path)
    if frame.shape[1] < 2:
        raise InputError(
            f"not a valid CSV file: found {frame.shape[1]} column "
            f"({', '.join(map(repr, frame.columns))})",
            path=path,
        )
    return frame


def _read_table(path: Path) -> pd.DataFrame:
    """Read a CSV (all strings) or Parquet (typed) file."""
    _check_file(path)
    if _is_parquet(path):
        try:
            return pd.read_parquet(path)
        except Exception as err:  # pyarrow raises several unrelated types
            raise InputError(f"not a readable Parquet file ({err})", path=path) from err
    if path.suffix.lower() in (".parquet", ".pq"):
        raise InputError("not a Parquet file (no Parquet magic bytes)", path=path)
    return _read_csv_text(path)


def _find_column(columns, aliases) -> str | None:
    lookup = {str(c).strip().lower(): c for c in columns}
    for alias in aliases:
        if alias in lookup:
            return lookup[alias]
    return None


def _lonlat_columns(frame: pd.DataFrame, path: Path, expected: str) -> tuple[str, str]:
    """Names of the longitude and latitude columns, or an error naming the file."""
    lon_col = _find_column(frame.columns, _LON_ALIASES)
    lat_col = _find_column(frame.columns, _LAT_ALIASES)
    if lon_col is None or lat_col is None:
        raise InputError(
            f"missing required column: expected {expected}; found columns: "
            f"{list(frame.columns)[:20]}",
            path=path,
        )
    return lon_col, lat_col


def _require(frame: pd.DataFrame, required, path: Path, what: str) -> None:
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise InputError(
            f"missing required column(s) {missing} for {what}; found columns: "
            f"{list(frame.columns)[:20]}",
            path=path,
        )


# --------------------------------------------------------------------------- cleaning


def _number(values: pd.Series) -> np.ndarray:
    """Floats from strings or numbers; NaN where not a number."""
    return pd.to_numeric(values, errors="coerce").to_numpy("float64", na_value=np.nan)


def _lonlat_status(lon: np.ndarray, lat: np.ndarray, status: np.ndarray) -> None:
    """Mark missing and out-of-range coordinates in ``status`` (in place)."""
    unset = pd.isna(status)
    missing = np.isnan(lon) | np.isnan(lat)
    out = ~missing & ((np.abs(lon) > 180) | (np.abs(lat) > 90))
    status[unset & missing] = MISSING_LOCATION
    status[unset & out] = OUT_OF_RANGE


def _apply_status(
    frame: pd.DataFrame,
    status: np.ndarray,
    report: LoadReport,
    shown: pd.Series,
    outside: np.ndarray,
) -> tuple[pd.DataFrame, pd.Series]:
    """Count drops by reason (with a first example) and keep the clean rows.

    Returns the clean rows and, for them, ``outside`` (out of the planning area) as
    a Series indexed by the rows' 0-based positions in the file.
    """
    reasons = pd.Series(status, dtype=object)
    for reason, count in reasons.value_counts().items():
        report.dropped[reason] = report.dropped.get(reason, 0) + int(count)
        first = int(np.flatnonzero(status == reason)[0])
        report.examples.setdefault(reason, f"row {first + 1}: {shown.iloc[first]!r}")
    clean = reasons.isna().to_numpy()
    kept_outside = pd.Series(np.asarray(outside, dtype=bool)[clean],
                             index=np.flatnonzero(clean))  # fmt: skip
    return frame.loc[clean].reset_index(drop=True), kept_outside


def _clean_dol(raw: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, pd.Series]:
    """WA DOL export (all strings) -> vehicle columns, drop status, shown value."""
    lon, lat, status = parse_points(raw["Vehicle Location"])
    _lonlat_status(lon, lat, status)
    out = pd.DataFrame({"lon": lon, "lat": lat, "weight": 1.0})
    for published, ours in _DOL_COLUMNS.items():
        if published in raw.columns:
            out[ours] = raw[published].replace("", pd.NA).to_numpy()
        else:
            out[ours] = pd.NA
    out["model_year"] = pd.to_numeric(out["model_year"], errors="coerce").astype(
        "Int16"
    )
    out["legislative_district"] = pd.to_numeric(
        out["legislative_district"], errors="coerce"
    ).astype("Int16")
    out["ev_type"] = out["ev_type"].map(_EV_TYPES).astype("string")
    # DOL writes 0 where the range has not been researched: unknown, not zero.
    rng = _number(out["electric_range"])
    out["electric_range"] = np.where(rng > 0, rng, np.nan)
    return out, status, raw["Vehicle Location"]


# Typed attribute columns of a plain or bundled points file (the others are strings).
_POINT_DTYPES = {
    "model_year": "Int16",
    "electric_range": "float64",
    "legislative_district": "Int16",
}


def _clean_points(frame: pd.DataFrame, path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """Plain or bundled lon/lat frame -> vehicle columns and drop status."""
    lon_col, lat_col = _lonlat_columns(
        frame, path, "'Vehicle Location' (WA DOL export) or lon/lat columns"
    )
    lon, lat = _number(frame[lon_col]), _number(frame[lat_col])
    status = np.full(len(frame), None, dtype=object)

    def unparsable(column, values):
        # Only text can fail to parse; and only the NaN rows need a look (turning
        # millions of floats into strings costs seconds per partition).
        if pd.api.types.is_numeric_dtype(frame[column].dtype):
            return np.zeros(len(frame), dtype=bool)
        out = np.isnan(values)
        text = frame[column].iloc[np.flatnonzero(out)].astype("string")
        out[out] = (text.fillna("").str.strip() != "").to_numpy(bool)
        return out

    status[unparsable(lon_col, lon) | unparsable(lat_col, lat)] = UNPARSABLE_POINT
    _lonlat_status(lon, lat, status)
    weight_col = _find_column(frame.columns, _WEIGHT_ALIASES)
    if weight_col is None:
        weight = np.ones(len(frame))
    else:
        weight = _number(frame[weight_col])
        bad = ~np.isfinite(weight) | (weight < 0)
        status[bad & pd.isna(status)] = INVALID_WEIGHT
    out = pd.DataFrame({"lon": lon, "lat": lat, "weight": weight})
    for col in VEHICLE_COLUMNS[3:]:
        dtype = _POINT_DTYPES.get(col, "string")
        if col not in frame.columns:
            # A typed empty column directly: converting a column of NA objects
            # costs seconds per million rows (plain lon/lat files at scale).
            na = np.nan if dtype == "float64" else pd.NA
            out[col] = pd.Series(na, index=out.index, dtype=dtype)
        elif col in ("model_year", "legislative_district"):
            out[col] = pd.to_numeric(frame[col], errors="coerce").to_numpy()
            out[col] = out[col].astype(dtype)
        elif col == "electric_range":
            out[col] = _number(frame[col])
        else:
            out[col] = pd.Series(frame[col].to_numpy(), index=out.index).astype(dtype)
    return out, status


def _clean_vehicle_frame(
    frame: pd.DataFrame, path: Path, keep_out_of_area: bool, kind: str | None = None
) -> tuple[pd.DataFrame, LoadReport]:
    """Detect the format of ``frame`` and clean it into :data:`VEHICLE_COLUMNS`."""
    if "Vehicle Location" in frame.columns or "DOL Vehicle ID" in frame.columns:
        _require(frame, _DOL_REQUIRED, path, "the WA DOL vehicle export")
        out, status, shown = _clean_dol(frame.astype("string").fillna(""))
        kind = kind or "wa-dol-csv"
    else:
        out, status = _clean_points(frame, path)
        # The shown value is only needed for dropped rows (examples in the report).
        shown = pd.Series("", index=out.index, dtype=object)
        flagged = np.flatnonzero(~pd.isna(status))
        shown.iloc[flagged] = (
            out["lon"].iloc[flagged].astype(str) + " "
            + out["lat"].iloc[flagged].astype(str)
        ).to_numpy()  # fmt: skip
        kind = kind or "points"
    report = LoadReport(source=str(path), kind=kind, rows_read=len(frame))
    state = out["state"].astype("string")
    outside = np.where(
        state.notna().to_numpy(bool),
        (state.str.upper() != PLANNING_STATE).fillna(False).to_numpy(bool),
        ~PLANNING_AREA.contains(out["lon"], out["lat"]),
    )
    out, outside = _apply_status(out, status, report, shown, outside)
    _count_outside(report, out, outside, keep_out_of_area)
    if not keep_out_of_area and report.out_of_area:
        out = out.loc[~outside.to_numpy()].reset_index(drop=True)
    report.rows_kept = len(out)
    weight_col = _find_column(frame.columns, _WEIGHT_ALIASES) or "weight"
    check_total_weight(out["weight"].to_numpy(), source=path, column=weight_col)
    return out[VEHICLE_COLUMNS], report


def _count_outside(
    report: LoadReport, clean: pd.DataFrame, outside: pd.Series, keep: bool
) -> None:
    """Count out-of-area rows among the ``clean`` ones, with the first as example.

    ``outside`` is aligned with ``clean`` and indexed by 0-based file row.
    """
    report.out_of_area = int(outside.sum())
    report.kept_out_of_area = keep
    if report.out_of_area:
        at = int(np.argmax(outside.to_numpy()))
        row = clean.iloc[at]
        text = (
            f"row {outside.index[at] + 1}: lon {row['lon']:.6g}, lat {row['lat']:.6g}"
        )
        if "state" in clean.columns and not pd.isna(row["state"]):
            text += f", State {row['state']}"
        report.examples.setdefault(OUTSIDE_AREA, text)


def check_total_weight(weight, *, source, column: str = "weight") -> float:
    """The total demand weight, if finite and at most :data:`MAX_TOTAL_WEIGHT`.

    Parameters
    ----------
    weight : float or array-like of float
        The weights (summed here) or, for a chunked read, their total.
    source : str or Path
        The file(s) the weights come from, for the message.
    column : str
        The weight column, for the message.

    Returns
    -------
    float
        The total.

    Raises
    ------
    InputError
        Naming the file and column, if the weights sum to more than
        :data:`MAX_TOTAL_WEIGHT` or overflow to inf (e.g. weights of 1e308).

    Examples
    --------
    >>> check_total_weight([1.0, 2.5], source="d.csv")
    3.5
    >>> check_total_weight([1e308, 1e308], source="d.csv")
    Traceback (most recent call last):
    ...
    evplanner.errors.InputError: d.csv, column 'weight': the weights sum to inf \
(overflow); the total must be at most 9.0072e+15 (2**53) ...
    """
    with np.errstate(over="ignore", invalid="ignore"):
        total = float(np.sum(np.asarray(weight, dtype="float64")))
    if not total <= MAX_TOTAL_WEIGHT:
        what = f"{total:g}" + (" (overflow)" if np.isinf(total) else "")
        raise InputError(
            f"the weights sum to {what}; the total must be at most "
            f"{MAX_TOTAL_WEIGHT:.5g} (2**53) for exact sums: rescale the weights",
            path=source,
            column=column,
        )
    return total


def load_vehicles(
    path: str | Path | None = None, *, keep_out_of_area: bool = False
) -> tuple[pd.DataFrame, LoadReport]:
    """Load EV registrations (or plain demand points) and report what was dropped.

    Parameters
    ----------
    path : str or Path, optional
        WA DOL CSV as published, the bundled Parquet, or a CSV/Parquet with lon/lat
        (and optional weight) columns. Default: the bundled vehicles
        (:data:`BUNDLED_VEHICLES`).
    keep_out_of_area : bool, default False
        Keep vehicles registered outside the planning area (State other than WA);
        they are counted in the report either way.

    Returns
    -------
    vehicles : pandas.DataFrame
        One row per vehicle (or input point), columns :data:`VEHICLE_COLUMNS`;
        ``lon``/``lat`` in WGS84 degrees, ``weight`` 1.0 per vehicle,
        ``electric_range`` in miles with NaN where DOL has not researched it.
    report : LoadReport
        Rows read, kept and dropped by reason.

    Raises
    ------
    InputError
        If the file is missing, empty, not a CSV/Parquet, or lacks the location
        columns.
    """
    path = Path(path) if path is not None else BUNDLED_VEHICLES
    frame = _read_table(path)
    kind = "bundled-vehicles" if path.resolve() == BUNDLED_VEHICLES else None
    vehicles, report = _clean_vehicle_frame(frame, path, keep_out_of_area, kind)
    logger.info("loaded %s: kept %d of %d rows", path, report.rows_kept, len(frame))
    return vehicles, report


def _clean_station_frame(
    frame: pd.DataFrame,
    path: Path,
    keep_out_of_area: bool,
    strict: bool,
    what: str = "stations",
    invalid: tuple[np.ndarray, str] | None = None,
) -> tuple[pd.DataFrame, LoadReport]:
    """Station-like points (stations or candidate sites) cleaned, with their report.

    ``what`` names the rows in a strict refusal; ``invalid`` is ``(mask, reason)``
    of rows a caller found bad in its own columns (a candidate's ``max_ports``),
    refused with the bad points in one message when ``strict``.
    """
    if "Fuel Type Code" in frame.columns:
        _require(frame, _AFDC_REQUIRED, path, "the AFDC station export")
        frame = frame.astype("string").fillna("")
        kind = "afdc-csv"
        status = np.full(len(frame), None, dtype=object)
        fuel = frame["Fuel Type Code"].str.strip().str.upper()
        status[(fuel != "ELEC").to_numpy(bool)] = NOT_ELECTRIC
        out = pd.DataFrame({ours: frame[pub] if pub in frame.columns else pd.NA
                            for pub, ours in _AFDC_COLUMNS.items()})  # fmt: skip
        shown = frame["Fuel Type Code"] + " " + frame.get("Station Name", "")
    else:
        lon_col, lat_col = _lonlat_columns(
            frame, path, "lon/lat (or the AFDC export's Longitude/Latitude)"
        )
        kind = "bundled-stations" if "station_id" in frame.columns else "station-points"
        status = np.full(len(frame), None, dtype=object)
        out = pd.DataFrame({c: frame[c] if c in frame.columns else pd.NA
                            for c in STATION_COLUMNS})  # fmt: skip
        for ours, aliases in _PORT_ALIASES.items():
            found = _find_column(frame.columns, aliases)
            out[ours] = frame[found] if found is not None else pd.NA
        out["lon"], out["lat"] = frame[lon_col], frame[lat_col]
        if "name" not in frame.columns:
            out["name"] = [f"site {i + 1}" for i in range(len(frame))]
        shown = frame[lon_col].astype(str) + " " + frame[lat_col].astype(str)
    lon, lat = _number(out["lon"]), _number(out["lat"])
    unparsable = np.zeros(len(out), dtype=bool)
    for values, column in ((lon, "lon"), (lat, "lat")):
        raw = out[column].astype("string").fillna("").str.strip()
        unparsable |= np.isnan(values) & (raw != "").to_numpy(bool)
    status[unparsable & pd.isna(status)] = UNPARSABLE_POINT
    _lonlat_status(lon, lat, status)
    out["lon"], out["lat"] = lon, lat
    ports = {
        col: pd.to_numeric(out[col], errors="coerce").to_numpy("float64", copy=True)
        for col in PORT_COLUMNS
    }
    for values in ports.values():
        # A negative or fractional count is no count: the station gets the default.
        values[(values < 0) | (values != np.floor(values))] = np.nan
    # Empty means none of that type (as in the AFDC export), unless no type has any.
    no_ports = np.nansum(np.column_stack(list(ports.values())), axis=1) <= 0
    for col, values in ports.items():
        values = np.where(np.isnan(values), 0, values)
        values[no_ports] = DEFAULT_STATION_PORTS[col]
        out[col] = values.astype("int32")
    out["station_id"] = out["station_id"].astype("string")
    if out["station_id"].isna().all():
        out["station_id"] = pd.array([str(i + 1) for i in range(len(out))], "string")
    out["name"] = out["name"].astype("string")
    out["network"] = out["network"].astype("string").replace("", pd.NA)
    out["open_date"] = pd.to_datetime(out["open_date"], errors="coerce")
    report = LoadReport(source=str(path), kind=kind, rows_read=len(frame))
    outside = pd.isna(status) & ~PLANNING_AREA.contains(lon, lat)
    if strict:
        if invalid is not None:
            mask, reason = invalid
            status[np.asarray(mask, bool) & pd.isna(status)] = reason
        left_out = outside if not keep_out_of_area else np.zeros_like(outside)
        _refuse_bad_stations(status, left_out, shown, path, what)
    out["_no_ports"] = no_ports
    out, outside = _apply_status(out, status, report, shown, outside)
    _count_outside(report, out, outside, keep_out_of_area)
    if not keep_out_of_area and report.out_of_area:
        out = out.loc[~outside.to_numpy()].reset_index(drop=True)
    report.rows_kept = len(out)
    if out["_no_ports"].any():
        report.assumed[PORTS_ASSUMED] = int(out["_no_ports"].sum())
    return out[STATION_COLUMNS], report


#: Bad rows named one by one in a strict refusal; beyond, they are counted.
LISTED_BAD_ROWS = 50


def _refuse_bad_stations(
    status: np.ndarray,
    outside: np.ndarray,
    shown: pd.Series,
    path: Path,
    what: str = "stations",
) -> None:
    """Raise one InputError naming every row that would be left out, if any.

    Rows that are not electric stations (other fuels in an AFDC export) are not
    stations a planner meant to keep, so they do not count. The message counts the
    bad rows by reason, shows the first and lists the 1-based row numbers (the
    first :data:`LISTED_BAD_ROWS`, then how many more), so one round of fixes
    clears the file.
    """
    reasons = pd.Series(status, dtype=object).where(~outside, OUTSIDE_AREA)
    bad = (reasons.notna() & (reasons != NOT_ELECTRIC)).to_numpy(bool)
    if not bad.any():
        return
    counts = reasons[bad].value_counts()
    listed = "; ".join(f"{n:,} {reason}" for reason, n in counts.items())
    rows = np.flatnonzero(bad) + 1
    named = ", ".join(str(r) for r in rows[:LISTED_BAD_ROWS])
    more = len(rows) - LISTED_BAD_ROWS
    named += f" and {more:,} more" if more > 0 else ""
    first = int(rows[0]) - 1
    raise InputError(
        f"{int(bad.sum()):,} of {len(status):,} rows are not usable {what} "
        f"({listed}); first: {reasons.iloc[first]}, {shown.iloc[first]!r}; fix the "
        f"file (every row in it is meant to be kept); bad rows: {named}",
        path=path,
        row=first + 1,
    )


#: Most candidate sites one file may hold (the discrete search handles 10,000
#: candidates on a million demand points; a larger file is more likely a mistake).
MAX_CANDIDATES = 100_000
#: Output columns of :func:`load_candidates`, in order.
CANDIDATE_COLUMNS = ["candidate_id", "name", "lon", "lat", "max_ports"]
INVALID_MAX_PORTS = "invalid max_ports"


def _read_geo_points(path: Path) -> pd.DataFrame:
    """A GeoJSON or GeoParquet file of points as a frame with lon/lat (EPSG:4326)."""
    import geopandas as gpd

    try:
        frame = (gpd.read_parquet(path) if _is_parquet(path)
                 else gpd.read_file(path))  # fmt: skip
    except Exception as err:  # noqa: BLE001  (pyogrio/pyarrow raise many types)
        raise InputError(f"not a readable GeoJSON/GeoParquet file ({err})",
                         path=path) from None  # fmt: skip
    if frame.crs is None:
        raise InputError("the points have no CRS; expected EPSG:4326 (lon/lat) or a "
                         "CRS to convert them from", path=path)  # fmt: skip
    not_points = (frame.geometry.geom_type != "Point").to_numpy()
    if not_points.any():
        row = int(np.flatnonzero(not_points)[0])
        raise InputError("expected Point geometries", path=path, row=row + 1,
                         value=str(frame.geometry.geom_type.iloc[row]))  # fmt: skip
    frame = frame.to_crs(4326)
    out = pd.DataFrame(frame.drop(columns=frame.geometry.name))
    out["lon"], out["lat"] = frame.geometry.x.to_numpy(), frame.geometry.y.to_numpy()
    return out


def load_candidates(
    path: str | Path,
    *,
    keep_out_of_area: bool = False,
    strict: bool = False,
    max_rows: int = MAX_CANDIDATES,
) -> tuple[pd.DataFrame, LoadReport]:
    """Load candidate sites: the real places where new sites may go.

    Parameters
    ----------
    path : str or Path
        A CSV or Parquet file with lon/lat columns, or a GeoJSON or GeoParquet file
        of points (any CRS, converted to EPSG:4326; a file without a CRS is
        refused). Optional columns: ``name`` and ``max_ports`` (the most ports the
        place can take, a whole number >= 0).
    keep_out_of_area : bool
        Keep candidates outside the planning area (counted either way).
    strict : bool
        Refuse the whole file if any row is not a usable candidate (the app's
        uploads), instead of leaving those rows out (counted in the report).
    max_rows : int
        Most rows accepted, checked before any row is cleaned.

    Returns
    -------
    candidates : pandas.DataFrame
        Columns :data:`CANDIDATE_COLUMNS` (``max_ports`` NaN where not given).
    report : LoadReport
        Rows read, kept and dropped by reason (bad coordinates, out of area,
        :data:`INVALID_MAX_PORTS`).

    Raises
    ------
    InputError
        A missing or unreadable file, no lon/lat, too many rows, no CRS, a
        geometry that is not a point, or (``strict``) any bad row.

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "lots.csv"
    >>> _ = path.write_text("name,lon,lat,max_ports\\nLot A,-122.3,47.6,8\\n"
    ...                     "Lot B,-122.2,47.5,x\\n")
    >>> sites, report = load_candidates(path)
    >>> sites[["name", "max_ports"]].values.tolist(), report.dropped
    ([['Lot A', 8.0]], {'invalid max_ports': 1})
    """
    path = Path(path)
    _check_file(path)
    suffix = path.suffix.lower()
    geo = suffix in (".geojson", ".json") or (
        _is_parquet(path) and b"geo" in _parquet_metadata_keys(path)
    )
    frame = _read_geo_points(path) if geo else _read_table(path)
    if len(frame) > max_rows:
        raise InputError(f"{len(frame):,} candidate sites, more than the "
                         f"{max_rows:,} accepted", path=path)  # fmt: skip
    if len(frame) == 0:
        raise InputError("no candidate sites in the file", path=path)
    frame = frame.reset_index(drop=True)
    column = _find_column(frame.columns, ("max_ports", "ports"))
    invalid = None
    if strict and column is not None:
        # Refused with the bad points in one message: every bad row at once.
        invalid = (_bad_max_ports(frame[column])[1], INVALID_MAX_PORTS)
    sites, report = _clean_station_frame(frame, path, keep_out_of_area, strict,
                                         "candidate sites", invalid)  # fmt: skip
    report.kind = "candidates"
    max_ports = np.full(len(sites), np.nan)
    if column is not None:
        kept = _kept_rows(frame, sites)
        raw = frame[column].iloc[kept].astype("string").fillna("").str.strip()
        value, bad = _bad_max_ports(raw)
        if bad.any():
            # (strict: refused above, with the bad points)
            first = int(np.flatnonzero(bad)[0])
            report.dropped[INVALID_MAX_PORTS] = int(bad.sum())
            report.examples[INVALID_MAX_PORTS] = (
                f"row {int(kept[first]) + 1}: {raw.iloc[first]!r}"
            )
        max_ports = np.where(raw == "", np.nan, value)
        sites, max_ports = sites.loc[~bad].reset_index(drop=True), max_ports[~bad]
        report.rows_kept = len(sites)
    out = pd.DataFrame({"candidate_id": sites["station_id"], "name": sites["name"],
                        "lon": sites["lon"], "lat": sites["lat"],
                        "max_ports": max_ports})  # fmt: skip
    logger.info("loaded %s: %d candidate sites", path, len(out))
    return out[CANDIDATE_COLUMNS], report


def _bad_max_ports(raw: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """A ``max_ports`` column as numbers, and which given values are not whole
    numbers >= 0 (empty cells are "not given", not bad)."""
    text = raw.astype("string").fillna("").str.strip()
    value = _number(text)
    bad = (text != "").to_numpy(bool) & ~(
        np.isfinite(value) & (value >= 0) & (value == np.round(value))
    )
    return value, bad


def _parquet_metadata_keys(path: Path) -> bytes:
    import pyarrow.parquet as pq

    metadata = pq.read_schema(path).metadata or {}
    return b" ".join(metadata)


def _kept_rows(frame: pd.DataFrame, sites: pd.DataFrame) -> np.ndarray:
    """Positions in ``frame`` of the rows the cleaning kept (by their site id)."""
    ids = sites["station_id"].astype(str).to_numpy()
    if "station_id" in frame.columns:
        lookup = {str(v): i for i, v in enumerate(frame["station_id"])}
        return np.array([lookup[i] for i in ids], dtype=np.int64)
    # Rows without ids are numbered 1..n by the cleaning.
    return ids.astype(np.int64) - 1


def load_stations(
    path: str | Path | None = None,
    *,
    keep_out_of_area: bool = False,
    strict: bool = False,
) -> tuple[pd.DataFrame, LoadReport]:
    """Load existing public charging stations (or a planner's list of sites).

    Parameters
    ----------
    path : str or Path, optional
        AFDC Station Locator CSV export as published (only rows with
        ``Fuel Type Code == ELEC`` and coordinates are stations; the others are
        counted as dropped), the bundled Parquet, or a CSV with lon/lat columns.
        Default: the bundled stations (:data:`BUNDLED_STATIONS`).
    keep_out_of_area : bool, default False
        Keep stations outside the planning area (the box of :data:`PLANNING_AREA`);
        they are counted in the report either way.
    strict : bool, default False
        Refuse the whole file if any station would be left out (missing,
        unparsable or out-of-range coordinates, or outside the planning area unless
        ``keep_out_of_area``), as a planner's own list of sites should be: one
        message counts the rows by reason and names the first. Rows of other fuels
        in an AFDC export are skipped as usual.

    Returns
    -------
    stations : pandas.DataFrame
        Columns :data:`STATION_COLUMNS`; ports as int32 counts, ``open_date`` as
        datetime (NaT where unknown).
    report : LoadReport
        Every row read is kept or counted: ``dropped`` by reason, ``out_of_area``.

    Raises
    ------
    InputError
        If the file cannot be read, lacks coordinates, or (``strict``) has a row
        that would be left out.

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "sites.csv"
    >>> rows = ["lon,lat", "-122.3,47.6", "xx,47.5", "-122.1,", "151.2,-33.9"]
    >>> _ = path.write_text("\\n".join(rows))
    >>> stations, report = load_stations(path)
    >>> len(stations), report.dropped, report.out_of_area
    (1, {'unparsable point': 1, 'missing location': 1}, 1)
    >>> load_stations(path, strict=True)
    Traceback (most recent call last):
    ...
    evplanner.errors.InputError: ...sites.csv, row 2: 3 of 4 rows are not usable \
stations (1 unparsable point; 1 missing location; 1 outside the planning area); \
first: unparsable point, 'xx 47.5'; fix the file ...
    """
    path = Path(path) if path is not None else BUNDLED_STATIONS
    frame = _read_table(path)
    stations, report = _clean_station_frame(frame, path, keep_out_of_area, strict)
    logger.info("loaded %s: %d stations", path, len(stations))
    return stations, report


# --------------------------------------------------------------------------- dask


def read_points_dask(
    paths, *, keep_out_of_area: bool = False, blocksize="64MB",
    columns=("lon", "lat", "weight"), min_partitions: int = 1,
):  # fmt: skip
    """Read vehicle/demand files lazily with dask.dataframe, cleaning each partition.

    Parameters
    ----------
    paths : str, Path or list
        A file, a glob (``"demand-*.parquet"``) or a list of files; every file must be
        of one of the formats :func:`load_vehicles` reads.
    keep_out_of_area : bool, default False
        As in :func:`load_vehicles`.
    blocksize : str or int
        Largest partition, bytes: CSV blocks (cut at line ends), or Parquet rows
        (uncompressed size): whole row groups grouped up to this size, larger row
        groups cut into row ranges (of at least :data:`MIN_PARTITION_ROWS` rows).
    columns : sequence of str, default ("lon", "lat", "weight")
        Which of :data:`VEHICLE_COLUMNS` to return (the attribute columns are needed
        to filter vehicles by county, EV type or model year on the workers).
    min_partitions : int, default 1
        Cut the input into at least this many partitions (for example a small
        multiple of the cluster's worker threads, so that every thread gets a
        share of each pass), even a file of one row group or one CSV block, as
        long as every partition keeps at least :data:`MIN_PARTITION_ROWS` rows
        (estimated from the first 64 kB for CSV). ``blocksize`` still caps each
        partition.

    Returns
    -------
    points : dask.dataframe.DataFrame
        The ``columns`` (``lon``, ``lat``, ``weight`` float64 by default), one
        partition per block.
    reports : dask.dataframe.DataFrame
        The per-partition load reports as rows of counts; compute it in the same
        ``dask.compute``/``persist`` call as ``points`` so files are read once, then
        sum with :func:`merge_reports`, which raises the errors of the partitions.

    Raises
    ------
    InputError
        At once, if a file is missing, empty, not CSV text in its first 64 kB, or
        lacks location columns.

    Notes
    -----
    A partition that cannot be read (a ragged row, a byte that is not UTF-8) or
    whose weights overflow does not raise on the worker (where it would be logged
    as a traceback): it yields no points and an error entry in ``reports``, which
    :func:`merge_reports` raises as the same one-line
    :class:`~evplanner.errors.InputError` the in-memory reader gives, naming the
    file and the row. Always merge the reports before using the points.

    Partitions follow the files' row order, so the points come out in the order
    the in-memory reader gives them (whatever the partitioning). A Parquet
    partition that starts or ends inside a row group decodes that row group in
    batches of 65,536 rows up to its last row, keeping only its own: memory stays
    at one partition plus one batch.
    """
    import glob

    import dask
    import dask.dataframe as dd
    from dask.utils import parse_bytes

    if isinstance(paths, (str, Path)):
        matched = sorted(glob.glob(str(paths))) or [str(paths)]
    else:
        matched = [str(p) for p in paths]
    columns = list(columns)
    unknown = [c for c in columns if c not in VEHICLE_COLUMNS]
    if unknown:
        raise ValueError(f"columns: expected some of {VEHICLE_COLUMNS}, got {unknown}")
    for file in matched:
        _check_file(Path(file))
    source = matched[0] if len(matched) == 1 else f"{matched[0]} (+{len(matched) - 1})"
    meta = _clean_points(pd.DataFrame({"lon": [], "lat": []}), Path(source))[0]
    meta = meta[columns]
    if (
        isinstance(min_partitions, bool)
        or not isinstance(min_partitions, (int, np.integer))
        or min_partitions < 1
    ):
        raise ValueError(
            f"min_partitions: expected an integer >= 1, got {min_partitions!r}"
        )
    size = int(parse_bytes(blocksize) if isinstance(blocksize, str) else blocksize)
    if all(_is_parquet(Path(f)) for f in matched):
        pieces = _parquet_pieces(matched, size, int(min_partitions))
        tasks = [
            dask.delayed(_clean_parquet_piece, nout=2)(
                file, ranges, index, keep_out_of_area, columns, meta
            )
            for index, (file, ranges) in enumerate(pieces)
        ]
    else:
        size = _csv_block_bytes(matched, size, int(min_partitions))
        tasks = []
        for file in matched:
            header = _read_csv_text_head(Path(file))
            for offset, length in _csv_blocks(Path(file), len(header), size):
                tasks.append(
                    dask.delayed(_clean_csv_block, nout=2)(
                        file,
                        header,
                        offset,
                        length,
                        len(tasks),
                        keep_out_of_area,
                        columns,
                        meta,
                    )  # fmt: skip
                )
    points = dd.from_delayed([t[0] for t in tasks], meta=meta, verify_meta=False)
    # The per-partition reports travel as a small dask DataFrame (not a Delayed), so
    # that one dask.compute of points and reports reads each file once.
    report_meta = _report_to_frame(LoadReport(source, "")).iloc[:0]
    reports = dd.from_delayed([t[1] for t in tasks], meta=report_meta,
                              verify_meta=False)  # fmt: skip
    return points, reports


def _clean_partition(
    part: pd.DataFrame, index: int, source: str, keep_out_of_area: bool,
    columns: list[str], meta: pd.DataFrame,
) -> tuple[pd.DataFrame, pd.DataFrame]:  # fmt: skip
    """Clean one partition: its points and its report as a frame (never raises)."""
    try:
        out, report = _clean_vehicle_frame(part, Path(source), keep_out_of_area)
    except InputError as err:
        return meta, _report_to_frame(LoadReport(source, ""), error=err)
    # Row numbers count from the start of the partition: say which one.
    report.examples = {
        reason: f"partition {index}, {text}" for reason, text in report.examples.items()
    }
    return out[columns], _report_to_frame(report, weight=out["weight"].sum())


def _rows_per_partition(
    n_rows: int, bytes_per_row: float, blocksize: int, min_partitions: int
) -> int:
    """Rows per partition: at most ``blocksize`` bytes, and few enough for
    ``min_partitions`` partitions of ``n_rows`` unless that would cut below
    :data:`MIN_PARTITION_ROWS`."""
    cap = int(blocksize / bytes_per_row) if bytes_per_row > 0 else n_rows
    spread = max(-(-n_rows // min_partitions), MIN_PARTITION_ROWS)
    return max(1, min(cap, spread))


def _parquet_pieces(
    files: list[str], blocksize: int, min_partitions: int
) -> list[tuple[str, tuple[tuple[int, int, int], ...]]]:
    """Partitions of Parquet files as ``(file, ((row_group, start, stop), ...))``.

    Consecutive whole row groups of a file are grouped while the partition stays
    within its row budget (:func:`_rows_per_partition`); a row group above the
    budget is cut into equal row ranges, of at least :data:`MIN_PARTITION_ROWS`
    rows (a smaller row group stays whole). A file without rows is one empty
    partition (its columns still count).

    Raises
    ------
    InputError
        If a file's Parquet footer cannot be read.
    """
    import pyarrow.parquet as pq

    layouts = []
    for file in files:
        try:
            meta = pq.ParquetFile(file).metadata
        except Exception as err:  # pyarrow raises several unrelated types
            raise InputError(f"not a readable Parquet file ({err})",
                             path=file) from err  # fmt: skip
        groups = [meta.row_group(g) for g in range(meta.num_row_groups)]
        layouts.append((file, [(g.num_rows, g.total_byte_size) for g in groups]))
    n_rows = sum(rows for _, groups in layouts for rows, _ in groups)
    pieces = []
    for file, groups in layouts:
        rows_in_file = sum(rows for rows, _ in groups)
        bytes_per_row = sum(b for _, b in groups) / max(rows_in_file, 1)
        budget = _rows_per_partition(n_rows, bytes_per_row, blocksize, min_partitions)
        before = len(pieces)
        grouped: list[tuple[int, int, int]] = []
        grouped_rows = 0
        for g, (rows, _) in enumerate(groups):
            if grouped and grouped_rows + rows > budget:
                pieces.append((file, tuple(grouped)))
                grouped, grouped_rows = [], 0
            if rows <= budget:
                grouped.append((g, 0, rows))
                grouped_rows += rows
                continue
            n_cuts = max(1, min(-(-rows // budget), rows // MIN_PARTITION_ROWS))
            cuts = np.linspace(0, rows, n_cuts + 1).round().astype(int)
            pieces.extend(
                (file, ((g, int(a), int(b)),))
                for a, b in zip(cuts[:-1], cuts[1:], strict=True)
            )
        if grouped:
            pieces.append((file, tuple(grouped)))
        if len(pieces) == before:
            pieces.append((file, ()))
    return pieces


def _read_parquet_piece(
    file: str, ranges: tuple[tuple[int, int, int], ...]
) -> pd.DataFrame:
    """Rows ``start:stop`` of each listed row group, typed as ``pd.read_parquet``
    types them (the file's pandas metadata applied)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    handle = pq.ParquetFile(file)
    schema = handle.schema_arrow
    tables = []
    for group, start, stop in ranges:
        if start == 0 and stop == handle.metadata.row_group(group).num_rows:
            tables.append(handle.read_row_group(group, use_pandas_metadata=True))
            continue
        batches, seen = [], 0
        for batch in handle.iter_batches(
            batch_size=_PARQUET_BATCH_ROWS, row_groups=[group],
            use_pandas_metadata=True,
        ):  # fmt: skip
            lo, hi = max(start - seen, 0), min(stop - seen, batch.num_rows)
            if lo < hi:
                batches.append(batch.slice(lo, hi - lo))
            seen += batch.num_rows
            if seen >= stop:
                break
        tables.append(pa.Table.from_batches(batches, schema=batches[0].schema))
    if not tables:
        return schema.empty_table().to_pandas()
    table = pa.concat_tables(tables).replace_schema_metadata(schema.metadata)
    return table.to_pandas()


def _clean_parquet_piece(
    file: str, ranges: tuple[tuple[int, int, int], ...], index: int,
    keep_out_of_area: bool, columns: list[str], meta: pd.DataFrame,
) -> tuple[pd.DataFrame, pd.DataFrame]:  # fmt: skip
    """Read and clean one Parquet partition: points and report frame (never
    raises)."""
    try:
        part = _read_parquet_piece(file, ranges)
    except Exception as err:  # noqa: BLE001  (a damaged page: pyarrow raises many)
        error = InputError(f"not a readable Parquet file ({err})", path=file)
        return meta, _report_to_frame(LoadReport(file, ""), error=error)
    return _clean_partition(part, index, file, keep_out_of_area, columns, meta)


def _csv_block_bytes(files: list[str], blocksize: int, min_partitions: int) -> int:
    """CSV block size: ``blocksize``, or less so that the files make at least
    ``min_partitions`` blocks, down to about :data:`MIN_PARTITION_ROWS` rows a
    block (row length estimated from the first 64 kB of the first file)."""
    if min_partitions <= 1:
        return max(int(blocksize), 1)
    with Path(files[0]).open("rb") as fh:
        head = fh.read(65536)
    bytes_per_row = len(head) / max(head.count(b"\n"), 1)
    n_bytes = sum(Path(f).stat().st_size for f in files)
    n_rows = int(n_bytes / bytes_per_row)
    rows = _rows_per_partition(n_rows, bytes_per_row, blocksize, min_partitions)
    return max(int(rows * bytes_per_row), 1)


def _csv_blocks(path: Path, start: int, blocksize: int) -> list[tuple[int, int]]:
    """``(offset, length)`` byte ranges covering ``path`` from ``start``.

    A block holds the lines that begin in its range (see :func:`_read_csv_block`).
    """
    size = path.stat().st_size
    blocksize = max(int(blocksize), 1)
    return [(o, min(blocksize, size - o)) for o in range(start, size, blocksize)] or [
        (start, 0)
    ]


def _read_csv_block(path: Path, offset: int, length: int, first: bool) -> bytes:
    """The lines of ``path`` that begin in ``[offset, offset + length)``."""
    with path.open("rb") as fh:
        fh.seek(offset)
        if not first:
            # The line under `offset` belongs to the block before, unless a line
            # ends just before it.
            fh.seek(offset - 1)
            fh.readline()
        begin = fh.tell()
        end = offset + length
        if begin >= end:
            return b""
        data = fh.read(end - begin)
        if not data.endswith(b"\n"):
            data += fh.readline()
        return data


def _rows_before(path: Path, header_bytes: int, offset: int) -> int:
    """Data rows (lines after the header) that begin before byte ``offset``."""
    with path.open("rb") as fh:
        fh.seek(header_bytes)
        before = fh.read(max(offset - header_bytes, 0))
    # A line cut by `offset` begins before it and belongs to the previous block.
    return before.count(b"\n") + (1 if before and not before.endswith(b"\n") else 0)


def _clean_csv_block(
    file: str, header: bytes, offset: int, length: int, index: int,
    keep_out_of_area: bool, columns: list[str], meta: pd.DataFrame,
) -> tuple[pd.DataFrame, pd.DataFrame]:  # fmt: skip
    """Read and clean one block of a CSV: points and report frame (never raises)."""
    path = Path(file)
    first = offset == len(header)
    try:
        data = _read_csv_block(path, offset, length, first)
        try:
            part = _parse_csv(io.BytesIO(header + data), path)
        except InputError as err:
            if err.row is None or first:
                raise
            # Only on this error path: count the rows before the block.
            before = _rows_before(path, len(header), offset)
            raise InputError(err.message, path=path, row=before + err.row) from None
    except InputError as err:
        return meta, _report_to_frame(LoadReport(file, ""), error=err)
    return _clean_partition(part, index, file, keep_out_of_area, columns, meta)


def _report_to_frame(
    report: LoadReport, *, weight: float = 0.0, error: InputError | None = None
) -> pd.DataFrame:
    """A :class:`LoadReport` as a long frame of plain columns (for chunked reads).

    Dask turns object columns into strings, so the report travels as
    ``key``/``count``/``example`` rows rather than as an object; the partition's
    total ``weight`` and an ``error`` (as JSON) travel the same way.
    """
    keys = ["rows_read", "rows_kept", "out_of_area", "weight_total"]
    counts = [report.rows_read, report.rows_kept, report.out_of_area, weight]
    examples = ["", "", report.examples.get(OUTSIDE_AREA, ""), ""]
    for reason, count in report.dropped.items():
        keys.append(f"dropped:{reason}")
        counts.append(count)
        examples.append(report.examples.get(reason, ""))
    if error is not None:
        import json

        keys.append("error")
        counts.append(0)
        fields = {"message": error.message, "path": error.path, "row": error.row,
                  "column": error.column}  # fmt: skip
        examples.append(json.dumps(fields))
    return pd.DataFrame(
        {"key": keys, "count": np.asarray(counts, dtype="float64"), "example": examples}
    )


def merge_reports(parts: pd.DataFrame, *, source: str, kind: str,
                  kept_out_of_area: bool = False) -> LoadReport:  # fmt: skip
    """Sum the computed per-partition ``reports`` of :func:`read_points_dask`.

    Raises
    ------
    InputError
        The first partition's error (a file that could not be read, naming the file
        and row), or if the weights of all partitions sum beyond
        :data:`MAX_TOTAL_WEIGHT` (see :func:`check_total_weight`).
    """
    import json

    errors = parts.loc[parts["key"] == "error", "example"]
    if len(errors):
        fields = json.loads(errors.iloc[0])
        raise InputError(fields.pop("message"), **fields)
    report = LoadReport(source=source, kind=kind, kept_out_of_area=kept_out_of_area)
    weight = 0.0
    for key, count, example in parts[["key", "count", "example"]].itertuples(
        index=False
    ):
        if key.startswith("dropped:"):
            reason = key.removeprefix("dropped:")
            report.dropped[reason] = report.dropped.get(reason, 0) + int(count)
            if example:
                report.examples.setdefault(reason, example)
        elif key == "weight_total":
            weight += count
        else:
            setattr(report, key, getattr(report, key) + int(count))
            if key == "out_of_area" and example:
                report.examples.setdefault(OUTSIDE_AREA, example)
    check_total_weight(weight, source=source)
    return report


def _read_csv_text_head(path: Path) -> bytes:
    """Check one CSV's first bytes and header as the in-memory reader does.

    Returns
    -------
    bytes
        The header line, line end included.
    """
    with path.open("rb") as fh:
        head = fh.read(65536)
        fh.seek(0)
        header = fh.readline()
    _check_csv_head(path, head)
    columns = [str(c).strip() for c in _parse_csv(io.BytesIO(header), path).columns]
    if "Vehicle Location" not in columns and (
        _find_column(columns, _LON_ALIASES) is None
        or _find_column(columns, _LAT_ALIASES) is None
    ):
        raise InputError(
            "missing required column: expected 'Vehicle Location' (WA DOL export) or "
            f"lon/lat columns; found columns: {columns[:20]}",
            path=path,
        )
    if not header.endswith(b"\n"):
        header += b"\n"  # a file of a header only, without a final line end
    return header


# --------------------------------------------------------------------------- tracts

#: Output columns of :func:`load_tracts`, in order.
TRACT_COLUMNS = ["tract_id", "county_fips", "county", "population", "lon", "lat"]

# U.S. Census Bureau county FIPS codes of Washington (state 53): numbered 001-077 in
# alphabetical order. tests/test_data.py checks them against the County column of
# every WA DOL vehicle row (via the row's 2020 census tract).
_WA_COUNTIES = dict(
    zip(
        (f"53{code:03d}" for code in range(1, 78, 2)),
        (
            "Adams", "Asotin", "Benton", "Chelan", "Clallam", "Clark", "Columbia",
            "Cowlitz", "Douglas", "Ferry", "Franklin", "Garfield", "Grant",
            "Grays Harbor", "Island", "Jefferson", "King", "Kitsap", "Kittitas",
            "Klickitat", "Lewis", "Lincoln", "Mason", "Okanogan", "Pacific",
            "Pend Oreille", "Pierce", "San Juan", "Skagit", "Skamania", "Snohomish",
            "Spokane", "Stevens", "Thurston", "Wahkiakum", "Walla Walla", "Whatcom",
            "Whitman", "Yakima",
        ),
        strict=True,
    )
)  # fmt: skip
_CENPOP_COLUMNS = ["STATEFP", "COUNTYFP", "TRACTCE", "POPULATION", "LATITUDE",
                   "LONGITUDE"]  # fmt: skip


def _tract_error(path: Path, rows: np.ndarray, column: str, values, what: str):
    first = int(np.flatnonzero(rows)[0])
    return InputError(
        f"{what} ({int(rows.sum())} row(s))",
        path=path, row=first + 1, column=column, value=values.iloc[first],
    )  # fmt: skip


def _clean_cenpop(raw: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Census "Centers of Population by Census Tract" (all strings) -> tract columns."""
    text = {c: raw[c].astype("string").fillna("").str.strip() for c in _CENPOP_COLUMNS}
    for column, width in (("STATEFP", 2), ("COUNTYFP", 3), ("TRACTCE", 6)):
        bad = ~text[column].str.fullmatch(rf"\d{{{width}}}").fillna(False)
        if bad.any():
            raise _tract_error(path, bad.to_numpy(bool), column, text[column],
                               f"expected {width} digits")  # fmt: skip
    county_fips = text["STATEFP"] + text["COUNTYFP"]
    frame = pd.DataFrame(
        {
            "tract_id": county_fips + text["TRACTCE"],
            "county_fips": county_fips,
            "population": _number(text["POPULATION"]),
            # NAD83 degrees, used as WGS84: the two differ by about a metre here.
            "lon": _number(text["LONGITUDE"]),
            "lat": _number(text["LATITUDE"]),
        }
    )
    return frame


def _check_tracts(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Validate a tract table (every row must be usable: it is reference data)."""
    ids = frame["tract_id"].astype("string")
    bad = ~ids.str.fullmatch(r"\d{11}").fillna(False).to_numpy(bool)
    if bad.any():
        raise _tract_error(path, bad, "tract_id", ids, "expected 11 digits")
    duplicated = ids.duplicated().to_numpy(bool)
    if duplicated.any():
        raise _tract_error(path, duplicated, "tract_id", ids, "duplicate tract id")
    population = _number(frame["population"])
    bad = ~(np.isfinite(population) & (population >= 0))
    bad |= np.isfinite(population) & (population != np.round(population))
    if bad.any():
        raise _tract_error(path, bad, "population", frame["population"],
                           "expected a whole number >= 0")  # fmt: skip
    lon, lat = _number(frame["lon"]), _number(frame["lat"])
    for column, values, limit in (("lon", lon, 180), ("lat", lat, 90)):
        bad = ~(np.abs(values) <= limit)
        if bad.any():
            raise _tract_error(path, bad, column, frame[column],
                               f"expected degrees within +-{limit}")  # fmt: skip
    out = pd.DataFrame(
        {
            "tract_id": ids.to_numpy(),
            "county_fips": ids.str.slice(0, 5).to_numpy(),
            "county": ids.str.slice(0, 5).map(_WA_COUNTIES).to_numpy(),
            "population": population.astype("int64"),
            "lon": lon,
            "lat": lat,
        }
    )
    for column in ("tract_id", "county_fips", "county"):
        out[column] = out[column].astype("string")
    return out.sort_values("tract_id", ignore_index=True)[TRACT_COLUMNS]


def load_tracts(path: str | Path | None = None) -> pd.DataFrame:
    """Census tracts: id, county, 2020 population and centre of population.

    Parameters
    ----------
    path : str or Path, optional
        The U.S. Census Bureau "Centers of Population by Census Tract" CSV as
        published (``CenPop2020_Mean_TR*.txt``: ``STATEFP``, ``COUNTYFP``,
        ``TRACTCE``, ``POPULATION``, ``LATITUDE``, ``LONGITUDE``), or a CSV/Parquet
        with :data:`TRACT_COLUMNS` (``county_fips`` and ``county`` are derived from
        ``tract_id``). Default: the bundled Washington tracts
        (:data:`BUNDLED_TRACTS`, 1,784 tracts).

    Returns
    -------
    pandas.DataFrame
        One row per tract, sorted by ``tract_id``, columns :data:`TRACT_COLUMNS`:
        ``tract_id`` (11-digit string: state, county and tract FIPS codes, as in the
        WA DOL ``2020 Census Tract`` column), ``county_fips`` (5 digits),
        ``county`` (name for Washington tracts, else missing), ``population``
        (int64, 2020 census count, may be 0) and ``lon``/``lat`` (degrees, the
        tract's centre of population).

    Raises
    ------
    InputError
        If the file cannot be read, lacks the columns, or a row is not usable
        (tract id not 11 digits or repeated, population not a whole number >= 0,
        coordinates out of range): tracts are reference data, so no row is dropped.

    Examples
    --------
    >>> tracts = load_tracts()
    >>> len(tracts), int(tracts["population"].sum())
    (1784, 7705281)
    >>> tracts.loc[tracts["tract_id"] == "53033004800", "county"].item()
    'King'
    """
    if path is None:
        return _bundled_tracts().copy()
    path = Path(path)
    raw = _read_table(path)
    if all(c in raw.columns for c in _CENPOP_COLUMNS):
        frame = _clean_cenpop(raw, path)
    else:
        _require(raw, ["tract_id", "population", "lon", "lat"], path,
                 "a census tract table")  # fmt: skip
        frame = raw
    tracts = _check_tracts(frame, path)
    logger.info("loaded %s: %d tracts", path, len(tracts))
    return tracts


@functools.cache
def _bundled_tracts() -> pd.DataFrame:
    # Read once per process: every demand computation looks tracts up.
    return load_tracts(BUNDLED_TRACTS)


# --------------------------------------------------------------------------- bundling


def build_bundled_data(
    vehicles_csv: str | Path,
    stations_csv: str | Path,
    out_dir: str | Path = BUNDLED_DIR,
    *,
    tracts_csv: str | Path | None = None,
) -> dict[str, LoadReport]:
    """Regenerate the bundled ``vehicles.parquet``, ``stations.parquet`` and
    ``tracts.parquet``.

    The vehicle file keeps every row of the published CSV, with only the columns the
    product uses. Rows without a usable location keep empty (NaN) coordinates, so that
    :func:`load_vehicles` reports the same drops and keeps the same rows on the bundled
    file as on the raw CSV; out-of-state rows are kept too, so the out-of-area option
    still works. The station file keeps the electric stations with coordinates.

    Parameters
    ----------
    vehicles_csv : path
        WA DOL "Electric Vehicle Population Data" CSV as published.
    stations_csv : path
        AFDC Station Locator export for Washington as published.
    out_dir : path
        Where to write; default the package's bundled data (:data:`BUNDLED_DIR`).
    tracts_csv : path, optional
        U.S. Census Bureau "2020 Centers of Population by Census Tract" file as
        published (or its Washington rows); written as ``tracts.parquet`` with
        :data:`TRACT_COLUMNS`. Without it, the tract file is left as it is.

    Returns
    -------
    dict
        The load reports of the raw files (``"vehicles"``, ``"stations"`` and, when
        given, ``"tracts"``).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    vehicles_csv = Path(vehicles_csv)
    _, v_report = load_vehicles(vehicles_csv, keep_out_of_area=True)
    raw = _read_table(vehicles_csv)
    _require(raw, _DOL_REQUIRED, vehicles_csv, "the WA DOL vehicle export")
    vehicles, status, _ = _clean_dol(raw.astype("string").fillna(""))
    unusable = np.array([s is not None for s in status], dtype=bool)
    vehicles.loc[unusable, ["lon", "lat"]] = np.nan
    for col in ("county", "city", "state", "make", "model", "ev_type", "utility"):
        vehicles[col] = vehicles[col].astype("category")
    vehicles = vehicles[VEHICLE_COLUMNS]
    vehicles.to_parquet(out_dir / "vehicles.parquet", index=False, compression="zstd")
    stations, s_report = load_stations(stations_csv)
    stations.to_parquet(out_dir / "stations.parquet", index=False, compression="zstd")
    reports = {"vehicles": v_report, "stations": s_report}
    if tracts_csv is not None:
        tracts = load_tracts(tracts_csv)
        tracts.to_parquet(out_dir / "tracts.parquet", index=False, compression="zstd")
        reports["tracts"] = LoadReport(
            source=str(tracts_csv), kind="census-tracts", rows_read=len(tracts),
            rows_kept=len(tracts),
        )  # fmt: skip
    return reports


def attribute_columns(columns) -> set[str]:
    """Our vehicle attribute columns among a file's ``columns`` (DOL names mapped).

    Examples
    --------
    >>> sorted(attribute_columns(["Vehicle Location", "County", "Model Year", "x"]))
    ['county', 'model_year']
    """
    present = {c for c in columns if c in VEHICLE_COLUMNS[3:]}
    return present | {_DOL_COLUMNS[c] for c in columns if c in _DOL_COLUMNS}
