"""Demand points: where vehicles and residents count, how much, aggregated.

Where demand sits (``demand_at``)
    ``"tract"`` (the default): each vehicle at the centre of population of its 2020
    census tract (the WA DOL ``2020 Census Tract`` column, looked up in
    :func:`evplanner.data.load_tracts`). On the bundled data the 150,137 vehicles
    sit on 1,767 distinct locations. ``"zip"``: at the published
    ``Vehicle Location``, a ZIP-code centroid (537 locations). Rows whose tract is
    missing or not in the tract table are counted by reason (:class:`PlacementReport`)
    and dropped, or placed at their ZIP centroid with ``tract_fallback="zip"``.

How much it weighs (``weighting``, ``residents_share``)
    One vehicle counts 1 (``"vehicles"``); 1 for a BEV and 0 for a PHEV (``"bev"``);
    its electric range in miles (``"range"``); or demand is the tract's residents
    (``"residents"``: plan for everyone, not only today's owners). A vehicle
    weighting blends with residents through ``residents_share`` (see
    :func:`finish_demand`).

Which demand counts (filters)
    County, EV type, model years, electric utility and legislative district; see
    :func:`filter_vehicles` for the rules (a vehicle of several utilities counts for
    each of them).

The steps are pure functions of pandas frames, so the same code runs in memory and
per partition on Dask:

1. :func:`place_vehicles` (row-local): coordinates of each vehicle, counts by reason;
2. :func:`partial_demand` (row-local, then a group-by sum): filter, weigh and sum
   the vehicles of a frame per location; partial sums of several frames combine
   exactly with :func:`combine_partials` (they are counts, or whole miles);
3. :func:`finish_demand` (on the summed frame, a few thousand rows): tract
   populations, the residents weighting or blend, zero-weight locations dropped.

:func:`demand_points` runs the three in memory. The weighted K-Medians problem on
the aggregated points (weight summed) is the problem on the vehicles, far smaller.
For scale tests, :func:`synthesize_demand` draws any number of points shaped like
the real data.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from evplanner._io import atomic_write
from evplanner.data import LoadReport, load_tracts
from evplanner.errors import check_positive
from evplanner.projection import choose_crs, to_lonlat, to_metres

__all__ = [
    "DEMAND_AT",
    "DEMAND_COLUMNS",
    "MISSING_TRACT",
    "TRACT_FALLBACKS",
    "UNKNOWN_TRACT",
    "WEIGHTINGS",
    "PlacementReport",
    "check_filters",
    "combine_partials",
    "demand_points",
    "demand_points_dask",
    "evs_per_1000",
    "filter_vehicles",
    "finish_demand",
    "partial_demand",
    "place_vehicles",
    "range_fill",
    "split_utilities",
    "synthesize_demand",
    "tract_layer",
    "utility_names",
    "vehicle_weights",
]

logger = logging.getLogger(__name__)

#: Where a vehicle's demand sits: its census tract's centre of population, or the
#: published ZIP-code centroid.
DEMAND_AT = ("tract", "zip")
#: What happens to a vehicle whose tract is missing or unknown (tract demand only).
TRACT_FALLBACKS = ("drop", "zip")
#: Demand weightings: one vehicle counts 1; BEV only (PHEVs count 0); its electric
#: range in miles (unknown ranges imputed, see :func:`vehicle_weights`); or the
#: residents of the tract (see :func:`finish_demand`).
WEIGHTINGS = ("vehicles", "bev", "range", "residents")
_VEHICLE_WEIGHTINGS = WEIGHTINGS[:3]
#: Columns of :func:`demand_points`, in order.
DEMAND_COLUMNS = ["lon", "lat", "weight", "vehicles", "tract_id", "population"]

# Placement reasons, worded for the load report a planner reads.
MISSING_TRACT = "missing census tract"
UNKNOWN_TRACT = "census tract not in the tract table"

# Washington's legislative districts are numbered 1-49.
_DISTRICTS = range(1, 50)
# DOL lists every utility serving an address, separated by "|" or "||".
_UTILITY_SEPARATOR = re.compile(r"\s*\|+\s*")
# Per-location sums of partial_demand (all additive).
_SUMS = ["weight", "vehicles", "tract_vehicles", "area_vehicles"]
_KEYS = ["lon", "lat", "tract_id"]


# --------------------------------------------------------------------------- placement


@dataclass
class PlacementReport:
    """Where the vehicles of a frame were placed, and which were left out, by reason.

    Attributes
    ----------
    demand_at : {"tract", "zip"}
    tract_fallback : {"drop", "zip"}
    rows : int
        Vehicle rows given.
    at_tract : int
        Rows placed at their tract's centre of population.
    at_zip : int
        Rows placed at their published location (ZIP-code centroid): every row for
        ``demand_at="zip"``, the fallback rows for ``"tract"``.
    dropped : dict of str to int
        Rows left out, by reason (:data:`MISSING_TRACT`, :data:`UNKNOWN_TRACT`).
    fallback : dict of str to int
        Rows placed at their ZIP centroid instead of a tract, by reason.
    examples : dict of str to str
        The first value concerned, per reason.
    """

    demand_at: str
    tract_fallback: str = "drop"
    rows: int = 0
    at_tract: int = 0
    at_zip: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    fallback: dict[str, int] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)

    @property
    def rows_placed(self) -> int:
        """Rows kept as demand (at a tract or at a ZIP centroid)."""
        return self.at_tract + self.at_zip

    def merge(self, other: PlacementReport) -> PlacementReport:
        """Sum of two reports on parts of the same data (partitions)."""

        def add(a: dict, b: dict) -> dict:
            return {k: a.get(k, 0) + b.get(k, 0) for k in {**a, **b}}

        return PlacementReport(
            demand_at=self.demand_at,
            tract_fallback=self.tract_fallback,
            rows=self.rows + other.rows,
            at_tract=self.at_tract + other.at_tract,
            at_zip=self.at_zip + other.at_zip,
            dropped=add(self.dropped, other.dropped),
            fallback=add(self.fallback, other.fallback),
            examples={**other.examples, **self.examples},
        )

    def apply_to(self, report: LoadReport) -> LoadReport:
        """The load report with these drops added (rows kept reduced accordingly)."""
        merged = dataclasses.replace(
            report, dropped=dict(report.dropped), examples=dict(report.examples)
        )
        for reason, count in self.dropped.items():
            merged.dropped[reason] = merged.dropped.get(reason, 0) + count
            if reason in self.examples:
                merged.examples.setdefault(reason, self.examples[reason])
        merged.rows_kept -= sum(self.dropped.values())
        return merged

    def to_dict(self) -> dict:
        """JSON-serialisable form."""
        return {
            "demand_at": self.demand_at,
            "tract_fallback": self.tract_fallback,
            "rows": self.rows,
            "at_tract": self.at_tract,
            "at_zip": self.at_zip,
            "dropped": dict(self.dropped),
            "fallback": dict(self.fallback),
            "examples": dict(self.examples),
        }

    def format(self) -> str:
        """Lines for a terminal or a page, to follow the load report."""
        if self.demand_at == "zip":
            return f"demand at ZIP-code centroids: {self.at_zip:,} vehicles"
        lines = [f"demand at census-tract centres: {self.at_tract:,} vehicles"]
        for reason, count in sorted(self.fallback.items()):
            lines.append(f"  at their ZIP centroid instead ({reason}): {count:,}")
        for reason, count in sorted(self.dropped.items()):
            example = self.examples.get(reason)
            lines.append(f"  left out ({reason}): {count:,}"
                         + (f" (first: {example})" if example else ""))  # fmt: skip
        return "\n".join(lines)

    def to_frame(self) -> pd.DataFrame:
        """Long frame of plain columns (``key``, ``count``, ``example``), so that
        partition reports can travel as a Dask DataFrame; :meth:`from_frame` sums them.
        """
        rows = [("rows", self.rows, ""), ("at_tract", self.at_tract, ""),
                ("at_zip", self.at_zip, "")]  # fmt: skip
        for kind, counts in (("dropped", self.dropped), ("fallback", self.fallback)):
            rows += [(f"{kind}:{reason}", count, self.examples.get(reason, ""))
                     for reason, count in counts.items()]  # fmt: skip
        key, count, example = zip(*rows, strict=True)
        return pd.DataFrame({"key": list(key), "count": np.asarray(count, "int64"),
                             "example": list(example)})  # fmt: skip

    @classmethod
    def from_frame(cls, parts: pd.DataFrame, *, demand_at: str,
                   tract_fallback: str = "drop") -> PlacementReport:  # fmt: skip
        """Sum the rows of one or more :meth:`to_frame` outputs."""
        report = cls(demand_at=demand_at, tract_fallback=tract_fallback)
        for key, count, example in parts[["key", "count", "example"]].itertuples(
            index=False
        ):
            kind, _, reason = key.partition(":")
            if reason:
                counts = getattr(report, kind)
                counts[reason] = counts.get(reason, 0) + int(count)
                if example:
                    report.examples.setdefault(reason, example)
            else:
                setattr(report, kind, getattr(report, kind) + int(count))
        return report


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name}: expected one of {choices}, got {value!r}")


def place_vehicles(
    vehicles: pd.DataFrame,
    tracts: pd.DataFrame | None = None,
    *,
    demand_at: str = "tract",
    tract_fallback: str = "drop",
) -> tuple[pd.DataFrame, PlacementReport]:
    """Put each vehicle where its demand sits: its tract's centre or its ZIP centroid.

    Row-local: run it on a whole frame or on each partition (then
    :meth:`PlacementReport.merge` the reports).

    Parameters
    ----------
    vehicles : pandas.DataFrame
        As returned by :func:`evplanner.data.load_vehicles` (``lon``, ``lat``,
        ``weight``, ``census_tract`` and the attribute columns).
    tracts : pandas.DataFrame, optional
        As returned by :func:`evplanner.data.load_tracts`; default the bundled
        Washington tracts.
    demand_at : {"tract", "zip"}
        ``"tract"``: at the centre of population of the vehicle's 2020 census tract.
        ``"zip"``: at its published location (a ZIP-code centroid), unchanged.
    tract_fallback : {"drop", "zip"}
        For ``demand_at="tract"``, what happens to a row whose tract is missing
        (:data:`MISSING_TRACT`) or not in ``tracts`` (:data:`UNKNOWN_TRACT`, e.g. a
        vehicle registered in another state, kept with ``keep_out_of_area``): left
        out, or placed at its ZIP centroid. Counted by reason either way.

    Returns
    -------
    placed : pandas.DataFrame
        The rows kept, index reset, with ``lon``/``lat`` (degrees) where the demand
        sits and a new ``tract_id`` column (categorical over the tract ids of
        ``tracts``, or string for ``"zip"``; missing for rows at a ZIP centroid);
        the other columns unchanged.
    report : PlacementReport

    Examples
    --------
    >>> tracts = load_tracts()
    >>> v = pd.DataFrame({"lon": [-122.3, -122.3], "lat": [47.6, 47.6],
    ...                   "weight": 1.0, "census_tract": ["53033004800", None]})
    >>> placed, report = place_vehicles(v, tracts)
    >>> placed["tract_id"].tolist(), report.dropped
    (['53033004800'], {'missing census tract': 1})
    >>> placed, report = place_vehicles(v, tracts, tract_fallback="zip")
    >>> placed["lon"].round(2).tolist(), report.fallback
    ([-122.36, -122.3], {'missing census tract': 1})
    """
    _check_choice("demand_at", demand_at, DEMAND_AT)
    _check_choice("tract_fallback", tract_fallback, TRACT_FALLBACKS)
    n = len(vehicles)
    report = PlacementReport(demand_at, tract_fallback, rows=n)
    out = vehicles.reset_index(drop=True)
    if demand_at == "zip":
        report.at_zip = n
        return out.assign(tract_id=pd.Series(pd.NA, index=out.index,
                                             dtype="string")), report  # fmt: skip
    tracts = load_tracts() if tracts is None else tracts
    ids = pd.Index(tracts["tract_id"].astype("string"))
    # Look up each distinct tract once (1,767 on the bundled data), not each row.
    if "census_tract" in out.columns:
        codes, distinct = pd.factorize(out["census_tract"])
    else:
        codes, distinct = np.full(n, -1), pd.Index([], dtype="string")
    text = pd.Index(distinct).astype("string").str.strip()
    has_text = codes >= 0
    found = np.full(n, -1)
    found[has_text] = ids.get_indexer(text)[codes[has_text]]
    at_tract = found >= 0
    missing = ~has_text
    missing[has_text] = (text == "").to_numpy(bool)[codes[has_text]]
    reasons = {MISSING_TRACT: missing, UNKNOWN_TRACT: ~missing & ~at_tract}
    counts = report.fallback if tract_fallback == "zip" else report.dropped
    for reason, rows in reasons.items():
        if rows.any():
            counts[reason] = int(rows.sum())
            first = int(np.flatnonzero(rows)[0])
            value = text[codes[first]] if codes[first] >= 0 else None
            state = out["state"].iloc[first] if "state" in out.columns else pd.NA
            report.examples[reason] = f"census tract {value!r}" + (
                "" if pd.isna(state) else f", state {state}"
            )
    report.at_tract = int(at_tract.sum())
    report.at_zip = n - report.at_tract if tract_fallback == "zip" else 0
    pick = found[at_tract]
    lon = out["lon"].to_numpy("float64").copy()
    lat = out["lat"].to_numpy("float64").copy()
    lon[at_tract] = tracts["lon"].to_numpy("float64")[pick]
    lat[at_tract] = tracts["lat"].to_numpy("float64")[pick]
    # Categorical over the tract table: its codes are the rows of `tracts`.
    tract_id = pd.Categorical.from_codes(found, categories=ids)
    out = out.assign(lon=lon, lat=lat, tract_id=tract_id)
    if tract_fallback == "drop" and not at_tract.all():
        out = out.loc[at_tract].reset_index(drop=True)
    return out, report


# --------------------------------------------------------------------------- filters


def split_utilities(text) -> list[str]:
    """The utility names in one DOL ``Electric Utility`` value.

    DOL lists every electric utility whose service territory covers the address,
    separated by ``|`` or ``||``; the file does not say what the two separators
    distinguish, so both separate names alike.

    Examples
    --------
    >>> split_utilities("BONNEVILLE POWER ADMINISTRATION||CITY OF TACOMA - (WA)|"
    ...                 "PENINSULA LIGHT COMPANY")
    ['BONNEVILLE POWER ADMINISTRATION', 'CITY OF TACOMA - (WA)', \
'PENINSULA LIGHT COMPANY']
    >>> split_utilities(None)
    []
    """
    if text is None or pd.isna(text):
        return []
    return [name for name in _UTILITY_SEPARATOR.split(str(text).strip()) if name]


def utility_names(vehicles: pd.DataFrame | pd.Series) -> list[str]:
    """Distinct electric utility names of the vehicles (for a selector), sorted.

    Parameters
    ----------
    vehicles : pandas.DataFrame or pandas.Series
        Vehicles with a ``utility`` column, or that column (or its distinct values).
    """
    values = vehicles["utility"] if isinstance(vehicles, pd.DataFrame) else vehicles
    names = set()
    for value in pd.Series(values).dropna().unique():
        names.update(split_utilities(value))
    return sorted(names)


def _districts(values) -> set[int]:
    """Legislative districts as integers 1-49, or a ValueError naming the others."""
    out, bad = set(), []
    for value in values:
        try:
            number = float(str(value).strip())
        except ValueError:
            bad.append(value)
            continue
        if number != int(number) or int(number) not in _DISTRICTS:
            bad.append(value)
        else:
            out.add(int(number))
    if bad:
        raise ValueError(f"legislative_districts: expected whole numbers 1-49 "
                         f"(Washington's districts), got {bad}")  # fmt: skip
    return out


def _utility_mask(utility: pd.Series, wanted: set[str]) -> np.ndarray:
    # Decide once per distinct value (77 on the bundled data), not once per row.
    values = utility.astype("string")
    distinct = values.dropna().unique()
    chosen = [v for v in distinct if wanted & {n.upper() for n in split_utilities(v)}]
    return values.isin(chosen).fillna(False).to_numpy(bool)


def _area_mask(vehicles: pd.DataFrame, utilities, legislative_districts) -> np.ndarray:
    """Rows inside the utility and district filters (the filters that are not
    tract-wise: a tract can be split between utilities or districts)."""
    keep = np.ones(len(vehicles), dtype=bool)
    if utilities:
        wanted = {str(u).strip().upper() for u in utilities}
        keep &= _utility_mask(vehicles["utility"], wanted)
    if legislative_districts:
        wanted = _districts(legislative_districts)
        district = vehicles["legislative_district"].astype("Float64")
        keep &= district.isin(wanted).fillna(False).to_numpy(bool)
    return keep


def _filter_mask(vehicles, counties, ev_types, model_years, utilities,
                 legislative_districts) -> np.ndarray:  # fmt: skip
    keep = _area_mask(vehicles, utilities, legislative_districts)
    if counties:
        wanted = {str(c).strip().lower() for c in counties}
        county = vehicles["county"].astype("string").str.lower()
        keep &= county.isin(wanted).fillna(False).to_numpy(bool)
    if ev_types:
        wanted = {str(t).strip().upper() for t in ev_types}
        unknown = wanted - {"BEV", "PHEV"}
        if unknown:
            raise ValueError(
                f"ev_types: expected BEV and/or PHEV, got {sorted(unknown)}"
            )
        keep &= vehicles["ev_type"].isin(wanted).fillna(False).to_numpy(bool)
    if model_years is not None:
        low, high = model_years
        if low > high:
            raise ValueError(f"model_years: expected (low, high) with low <= high, "
                             f"got {model_years}")  # fmt: skip
        year = vehicles["model_year"].astype("Float64")
        keep &= ((year >= low) & (year <= high)).fillna(False).to_numpy(bool)
    return keep


def filter_vehicles(
    vehicles: pd.DataFrame,
    *,
    counties=None,
    ev_types=None,
    model_years: tuple[int, int] | None = None,
    utilities=None,
    legislative_districts=None,
) -> pd.DataFrame:
    """Vehicles in the given counties, EV types, model years, utilities and districts.

    ``None`` (or empty) means no filter; the filters combine with "and".

    Parameters
    ----------
    vehicles : pandas.DataFrame
        As returned by :func:`evplanner.data.load_vehicles`.
    counties : list of str, optional
        County names (DOL's ``County``), matched case-insensitively.
    ev_types : list of {"BEV", "PHEV"}, optional
    model_years : (int, int), optional
        Inclusive range.
    utilities : list of str, optional
        Electric utility names (as :func:`utility_names` lists them), matched
        case-insensitively. A vehicle counts if **any** of the utilities DOL lists
        for its address is selected (:func:`split_utilities`): where territories
        overlap, the vehicle is in each utility's territory, so filtering by two
        overlapping utilities one at a time counts it twice.
    legislative_districts : list of int, optional
        Washington legislative districts (1-49); rows without one (out of state)
        never match.

    Raises
    ------
    ValueError
        For an EV type other than BEV/PHEV, a reversed year range, or a district
        that is not a whole number 1-49. Names absent from the data are no error
        here (a partition may lack them); :func:`check_filters` reports those.
    """
    keep = _filter_mask(vehicles, counties, ev_types, model_years, utilities,
                        legislative_districts)  # fmt: skip
    return vehicles.loc[keep]


def check_filters(
    vehicles: pd.DataFrame, *, counties=None, utilities=None,
    legislative_districts=None,
) -> None:  # fmt: skip
    """Raise a ValueError naming any filter value that no vehicle has.

    Run it once on the whole data (a partition may lack a county that the data
    has). Names are compared case-insensitively; the message suggests close names.

    Examples
    --------
    >>> v = pd.DataFrame({"county": ["King"], "utility": ["PUGET SOUND ENERGY INC"],
    ...                   "legislative_district": [43]})
    >>> check_filters(v, counties=["king"], legislative_districts=[43])
    >>> check_filters(v, utilities=["PUGET SOUND ENERGY"])
    Traceback (most recent call last):
    ...
    ValueError: utilities: no vehicle has ['PUGET SOUND ENERGY'] (did you mean \
'PUGET SOUND ENERGY INC'?); ...
    """
    problems = []

    def check(name, wanted, known):
        lookup = {str(k).strip().upper(): str(k) for k in known}
        unknown = [w for w in wanted if str(w).strip().upper() not in lookup]
        if not unknown:
            return
        hints = []
        for value in unknown:
            close = difflib.get_close_matches(
                str(value).strip().upper(), list(lookup), n=1, cutoff=0.6
            )
            if close:
                hints.append(f"did you mean {lookup[close[0]]!r}?")
        shown = sorted(lookup.values())
        problems.append(
            f"{name}: no vehicle has {unknown}"
            + (f" ({'; '.join(hints)})" if hints else "")
            + f"; known: {shown[:60]}"
            + (" ..." if len(shown) > 60 else "")
        )

    if counties:
        check("counties", list(counties),
              vehicles["county"].dropna().astype(str).unique())  # fmt: skip
    if utilities:
        check("utilities", list(utilities), utility_names(vehicles))
    if legislative_districts:
        wanted = sorted(_districts(legislative_districts))
        have = set(vehicles["legislative_district"].dropna().astype(int))
        unknown = [d for d in wanted if d not in have]
        if unknown:
            problems.append(f"legislative_districts: no vehicle in {unknown}")
    if problems:
        raise ValueError("; ".join(problems))


# --------------------------------------------------------------------------- weights


def range_fill(vehicles: pd.DataFrame) -> tuple[dict, float]:
    """Median known electric range per make and model, and overall (for imputing).

    Returns
    -------
    by_model : dict of (str, str) to float
        Miles, per (make, model) with at least one known range.
    overall : float
        Median of all known ranges (1.0 if none is known).
    """
    rng = vehicles["electric_range"].astype("float64")
    known = rng.notna().to_numpy(bool)
    keys = pd.DataFrame({"make": vehicles["make"].astype(str).to_numpy()[known],
                         "model": vehicles["model"].astype(str).to_numpy()[known],
                         "range": rng.to_numpy()[known]})  # fmt: skip
    by_model = keys.groupby(["make", "model"])["range"].median().to_dict()
    overall = float(np.median(keys["range"])) if len(keys) else 1.0
    return by_model, overall


def vehicle_weights(
    vehicles: pd.DataFrame, weighting: str, fill: tuple[dict, float] | None = None
) -> np.ndarray:
    """Demand weight of each vehicle row, shape (n,).

    Parameters
    ----------
    vehicles : pandas.DataFrame
        ``weight`` (vehicles per row) and the columns the weighting needs.
    weighting : {"vehicles", "bev", "range"}
        1 per vehicle; 1 for a BEV and 0 for a PHEV; or its electric range in miles.
    fill : (dict, float), optional
        For ``"range"``: the :func:`range_fill` of the whole data the rows belong
        to. DOL has not researched the range of about half the vehicles (published
        as 0); dropping them would bias demand towards new models, so an unknown
        range is the median known range of the same make and model, else the
        overall median. Default: computed from ``vehicles`` itself (right when it
        is the whole data; pass the whole data's fill for a partition).
    """
    base = vehicles["weight"].to_numpy("float64")
    if weighting == "vehicles":
        return base
    if weighting == "bev":
        return np.where(vehicles["ev_type"].eq("BEV").fillna(False), base, 0.0)
    if weighting == "range" and fill is None:
        rng = vehicles["electric_range"].astype("float64")
        by_model = rng.groupby(
            [vehicles["make"].astype(str), vehicles["model"].astype(str)]
        ).transform("median")
        overall = np.nanmedian(rng) if rng.notna().any() else 1.0
        return base * rng.fillna(by_model).fillna(overall).to_numpy("float64")
    if weighting == "range":
        by_model, overall = fill
        rng = vehicles["electric_range"].to_numpy("float64", na_value=np.nan)
        unknown = np.flatnonzero(np.isnan(rng))
        if len(unknown):
            make = vehicles["make"].astype(str).to_numpy()[unknown]
            model = vehicles["model"].astype(str).to_numpy()[unknown]
            rng = rng.copy()
            rng[unknown] = [by_model.get(key, overall)
                            for key in zip(make, model, strict=True)]  # fmt: skip
        return base * rng
    raise ValueError(
        f"weighting: expected one of {_VEHICLE_WEIGHTINGS}, got {weighting!r}"
    )


# --------------------------------------------------------------------------- demand


def _aggregate(rows: pd.DataFrame) -> pd.DataFrame:
    """Sum rows per location (lon, lat, tract_id); missing tract ids group too."""
    summed = rows.groupby(_KEYS, as_index=False, sort=True, dropna=False)[_SUMS].sum()
    summed["tract_id"] = summed["tract_id"].astype("string")
    return summed


def partial_demand(
    placed: pd.DataFrame,
    *,
    counties=None,
    ev_types=None,
    model_years: tuple[int, int] | None = None,
    utilities=None,
    legislative_districts=None,
    weighting: str = "vehicles",
    fill: tuple[dict, float] | None = None,
) -> pd.DataFrame:
    """Filter, weigh and sum the placed vehicles of a frame per location.

    Parameters
    ----------
    placed : pandas.DataFrame
        From :func:`place_vehicles`.
    counties, ev_types, model_years, utilities, legislative_districts
        As in :func:`filter_vehicles`.
    weighting : {"vehicles", "bev", "range", "residents"}
        ``"residents"`` sums vehicles here; :func:`finish_demand` puts the
        residents in.
    fill : (dict, float), optional
        For ``"range"`` on a partition: the whole data's :func:`range_fill` of the
        filtered vehicles.

    Returns
    -------
    pandas.DataFrame
        One row per location, sorted: ``lon``, ``lat``, ``tract_id`` and the sums
        ``weight`` and ``vehicles`` (of the vehicles passing every filter),
        ``tract_vehicles`` (all vehicles placed at the tract) and ``area_vehicles``
        (those inside the utility and district filters): the last two say which
        share of a tract's residents the utility and district filters keep.
    """
    _check_choice("weighting", weighting, WEIGHTINGS)
    chosen = _filter_mask(placed, counties, ev_types, model_years, utilities,
                          legislative_districts)  # fmt: skip
    area = _area_mask(placed, utilities, legislative_districts)
    base = placed["weight"].to_numpy("float64")
    weight = np.zeros(len(placed))
    if weighting == "residents":
        weight[chosen] = base[chosen]
    else:
        weight[chosen] = vehicle_weights(placed.loc[chosen], weighting, fill)
    tract = placed["tract_id"]
    if isinstance(tract.dtype, pd.CategoricalDtype):
        codes, names = tract.cat.codes.to_numpy(), tract.cat.categories
    else:
        codes, names = pd.factorize(tract)
    at_tract = codes >= 0
    rows = pd.DataFrame(
        {
            "lon": placed["lon"].to_numpy("float64"),
            "lat": placed["lat"].to_numpy("float64"),
            "code": codes,
            "weight": weight,
            "vehicles": np.where(chosen, base, 0.0),
            "tract_vehicles": np.where(at_tract, base, 0.0),
            "area_vehicles": np.where(at_tract & area, base, 0.0),
        }
    )
    # Rows at a tract stay even when filtered out: they count its vehicles. Group by
    # the tract's integer code (strings are slow to group), then name it.
    rows = rows.loc[chosen | at_tract]
    summed = rows.groupby(["lon", "lat", "code"], as_index=False, sort=True).sum()
    code = summed.pop("code").to_numpy()
    tract_id = pd.Series(pd.NA, index=summed.index, dtype="string")
    tract_id[code >= 0] = np.asarray(names.astype(str))[code[code >= 0]]
    summed.insert(2, "tract_id", tract_id)
    return summed


def combine_partials(parts) -> pd.DataFrame:
    """Sum the :func:`partial_demand` frames of several partitions (exactly).

    Raises
    ------
    ValueError
        If ``parts`` is empty.
    """
    parts = list(parts)
    if not parts:
        raise ValueError("parts: expected at least one partial_demand frame")
    return _aggregate(pd.concat(parts, ignore_index=True))


def _with_population(summed, tracts, counties, apportion: bool) -> pd.DataFrame:
    """Summed locations plus every tract of the counties, with their residents."""
    tracts = load_tracts() if tracts is None else tracts
    chosen = tracts
    if counties:
        wanted = {str(c).strip().lower() for c in counties}
        name = tracts["county"].astype("string").str.lower()
        chosen = tracts.loc[name.isin(wanted).fillna(False).to_numpy(bool)]
    have = set(summed["tract_id"].dropna())
    extra = chosen.loc[~chosen["tract_id"].isin(have)]
    if len(extra):
        zeros = np.zeros(len(extra))
        summed = pd.concat([summed, pd.DataFrame({
            "lon": extra["lon"].to_numpy("float64"),
            "lat": extra["lat"].to_numpy("float64"),
            "tract_id": extra["tract_id"].astype("string").to_numpy(),
            **{k: zeros for k in _SUMS},
        })], ignore_index=True)  # fmt: skip
    population = chosen.set_index("tract_id")["population"].astype("float64")
    people = summed["tract_id"].map(population).astype("float64")
    # Rows at a tract outside the counties hold filtered-out vehicles: no residents.
    people = people.where(summed["tract_id"].isna(), people.fillna(0.0))
    if apportion:
        # A tract can be split between utilities or districts: keep the share of
        # its residents that its registered vehicles inside the filter suggest.
        tract_all = summed["tract_vehicles"].to_numpy("float64")
        share = np.divide(summed["area_vehicles"].to_numpy("float64"), tract_all,
                          out=np.zeros(len(summed)), where=tract_all > 0)  # fmt: skip
        people = people * share
    return summed.assign(population=people.to_numpy("float64"))


def finish_demand(
    summed: pd.DataFrame,
    tracts: pd.DataFrame | None = None,
    *,
    weighting: str = "vehicles",
    residents_share: float = 0.0,
    counties=None,
    utilities=None,
    legislative_districts=None,
) -> pd.DataFrame:
    """Demand points from summed partials: residents, weights, zero weights out.

    Parameters
    ----------
    summed : pandas.DataFrame
        :func:`partial_demand` of the whole data, or :func:`combine_partials` of
        its partitions.
    tracts : pandas.DataFrame, optional
        The tract table the vehicles were placed with; default the bundled one.
    weighting : {"vehicles", "bev", "range", "residents"}
        As given to :func:`partial_demand`.
    residents_share : float in [0, 1]
        Blend of a vehicle weighting with residents (see Notes); 0 is vehicles only.
    counties, utilities, legislative_districts
        The filters given to :func:`partial_demand`: they say which residents count.

    Returns
    -------
    pandas.DataFrame
        :data:`DEMAND_COLUMNS`, one row per location with weight > 0, sorted by
        ``lon``, ``lat``: ``weight`` (float64), ``vehicles`` (vehicles there that
        pass every filter), ``tract_id`` (missing at ZIP centroids) and
        ``population`` (residents counted there; NaN at ZIP centroids).

    Notes
    -----
    Which residents count. The county filter keeps the tracts of those counties
    (tracts nest in counties), all of them, with or without a registered EV. The
    utility and district filters are per vehicle row, and a tract can be split
    between utilities (overlapping service territories) or districts; with either
    filter a tract keeps the share of its residents equal to the share of its
    registered vehicles inside the filter,
    ``population_t * area_vehicles_t / tract_vehicles_t``, so tracts with no
    registered EV count no residents there. EV type and model years describe
    vehicles, not people: they do not change the residents.

    Weights. With ``weighting="residents"`` the weight of tract ``t`` is its
    residents ``P_t`` (locations at ZIP centroids weigh 0: their residents are
    unknown). With a vehicle weighting ``w_t`` and ``residents_share = a``,

    .. math:: \\text{weight}_t = (1 - a)\\, w_t + a\\, P_t \\frac{W}{P},
              \\qquad W = \\sum_t w_t,\\quad P = \\sum_t P_t,

    so the total weight stays ``W`` (vehicle units) for every ``a``, and ``a = 1``
    places the same demand as ``"residents"`` scaled to ``W`` (the same sites).
    """
    _check_choice("weighting", weighting, WEIGHTINGS)
    share = float(residents_share)
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"residents_share: expected a number in [0, 1], "
                         f"got {residents_share!r}")  # fmt: skip
    if weighting == "residents" and share:
        raise ValueError("residents_share: blends a vehicle weighting with residents; "
                         "weighting='residents' is residents only (use 0)")  # fmt: skip
    summed = _aggregate(summed)
    at_zip = len(summed) and summed["tract_id"].isna().all()
    if (weighting == "residents" or share) and at_zip:
        raise ValueError("residents need tract demand (demand_at='tract'): "
                         "population is known per census tract")  # fmt: skip
    apportion = bool(utilities) or bool(legislative_districts)
    points = _with_population(summed, tracts, counties, apportion)
    people = points["population"].fillna(0.0).to_numpy("float64")
    if weighting == "residents":
        weight = people
    else:
        weight = points["weight"].to_numpy("float64")
        if share:
            total_people = people.sum()
            scale = weight.sum() / total_people if total_people > 0 else 0.0
            weight = (1.0 - share) * weight + share * scale * people
    points["weight"] = weight
    points = points.loc[points["weight"] > 0].sort_values(["lon", "lat"], kind="stable")
    return points[DEMAND_COLUMNS].reset_index(drop=True)


def demand_points(
    vehicles: pd.DataFrame,
    *,
    counties=None,
    ev_types=None,
    model_years: tuple[int, int] | None = None,
    utilities=None,
    legislative_districts=None,
    weighting: str = "vehicles",
    residents_share: float = 0.0,
    demand_at: str = "tract",
    tract_fallback: str = "drop",
    tracts: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Weighted demand points of the vehicles (in memory).

    :func:`place_vehicles`, :func:`partial_demand` and :func:`finish_demand` on the
    whole frame, after :func:`check_filters`.

    Parameters
    ----------
    vehicles : pandas.DataFrame
        As returned by :func:`evplanner.data.load_vehicles`.
    counties, ev_types, model_years, utilities, legislative_districts
        Filters, see :func:`filter_vehicles`; a value no vehicle has is an error.
    weighting : {"vehicles", "bev", "range", "residents"}
        What demand weighs (see :func:`vehicle_weights`, :func:`finish_demand`).
    residents_share : float in [0, 1]
        Blend with residents (see :func:`finish_demand`).
    demand_at : {"tract", "zip"}
    tract_fallback : {"drop", "zip"}
        See :func:`place_vehicles`.
    tracts : pandas.DataFrame, optional
        Default: the bundled Washington tracts.

    Returns
    -------
    pandas.DataFrame
        :data:`DEMAND_COLUMNS` (``lon``, ``lat``, ``weight``, ``vehicles``,
        ``tract_id``, ``population``), one row per location with weight > 0,
        sorted by lon, lat. ``attrs["placement"]`` holds the
        :class:`PlacementReport`.

    Examples
    --------
    >>> v = pd.DataFrame({"lon": [1.0, 1.0, 2.0], "lat": [5.0, 5.0, 6.0],
    ...                   "weight": 1.0, "ev_type": ["BEV", "PHEV", "BEV"]})
    >>> demand_points(v, demand_at="zip")[["lon", "weight"]].to_numpy().tolist()
    [[1.0, 2.0], [2.0, 1.0]]
    """
    _check_choice("weighting", weighting, WEIGHTINGS)
    filters = {"counties": counties, "utilities": utilities,
               "legislative_districts": legislative_districts}  # fmt: skip
    check_filters(vehicles, **filters)
    _check_residents(demand_at, weighting, residents_share)
    if demand_at == "tract" and tracts is None:
        tracts = load_tracts()
    placed, report = place_vehicles(vehicles, tracts, demand_at=demand_at,
                                    tract_fallback=tract_fallback)  # fmt: skip
    summed = partial_demand(placed, ev_types=ev_types, model_years=model_years,
                            weighting=weighting, **filters)  # fmt: skip
    return _points(summed, report, tracts, weighting, residents_share, filters)


def _check_residents(demand_at: str, weighting: str, residents_share: float) -> None:
    _check_choice("demand_at", demand_at, DEMAND_AT)
    if demand_at == "zip" and (weighting == "residents" or residents_share):
        raise ValueError("residents need tract demand (demand_at='tract'): "
                         "population is known per census tract")  # fmt: skip


def _points(summed, report, tracts, weighting, residents_share, filters):
    """Demand points from the summed partials of all the data (both modes)."""
    if report.dropped or report.fallback:
        logger.info("placement: %s", report.format().replace("\n", "; "))
    if report.demand_at == "zip":
        # No tract table is needed: no residents, no population.
        points = summed.loc[summed["weight"] > 0].assign(population=np.nan)
        points = points.sort_values(["lon", "lat"], kind="stable")
        points = points[DEMAND_COLUMNS].reset_index(drop=True)
    else:
        points = finish_demand(summed, tracts, weighting=weighting,
                               residents_share=residents_share, **filters)  # fmt: skip
    points.attrs["placement"] = report
    return points


# --------------------------------------------------------------------------- dask


def _range_counts(placed: pd.DataFrame, filters: dict) -> pd.DataFrame:
    """Vehicles per (make, model, known range) of a partition (for the medians)."""
    chosen = placed.loc[_filter_mask(placed, **filters)]
    frame = pd.DataFrame({"make": chosen["make"].astype(str).to_numpy(),
                          "model": chosen["model"].astype(str).to_numpy(),
                          "range": chosen["electric_range"].astype("float64"),
                          "count": chosen["weight"].to_numpy("float64")})  # fmt: skip
    frame = frame.dropna(subset=["range"])
    return frame.groupby(["make", "model", "range"], as_index=False)["count"].sum()


def _median_of_counts(values: np.ndarray, counts: np.ndarray) -> float:
    """Median of ``values`` each repeated ``counts`` times (NumPy's definition)."""
    order = np.argsort(values, kind="stable")
    values, cumulative = values[order], np.cumsum(counts[order])
    total = cumulative[-1]

    def at(rank: float) -> float:  # 0-based rank in the repeated values
        return float(values[np.searchsorted(cumulative, rank, side="right")])

    if total % 2:
        return at((total - 1) / 2)
    return (at(total / 2 - 1) + at(total / 2)) / 2


def _fill_from_counts(counts: pd.DataFrame) -> tuple[dict, float]:
    """:func:`range_fill` from the summed :func:`_range_counts` of all partitions."""
    if counts.empty:
        return {}, 1.0
    counts = counts.groupby(["make", "model", "range"], as_index=False)["count"].sum()
    overall = _median_of_counts(counts["range"].to_numpy(), counts["count"].to_numpy())
    by_model = {
        key: _median_of_counts(group["range"].to_numpy(), group["count"].to_numpy())
        for key, group in counts.groupby(["make", "model"])
    }
    return by_model, overall


def _partition_demand(part, tracts, placement, filters, weighting, fill):
    placed, report = place_vehicles(part, tracts, **placement)
    return partial_demand(placed, weighting=weighting, fill=fill, **filters), report


def _combine_pair(a, b):
    return combine_partials([a[0], b[0]]), a[1].merge(b[1])


def demand_points_dask(
    vehicles,
    *,
    counties=None,
    ev_types=None,
    model_years: tuple[int, int] | None = None,
    utilities=None,
    legislative_districts=None,
    weighting: str = "vehicles",
    residents_share: float = 0.0,
    demand_at: str = "tract",
    tract_fallback: str = "drop",
    tracts: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """:func:`demand_points` of a Dask DataFrame of vehicles, summed on the cluster.

    Each partition is placed, filtered, weighted and summed per location where it
    lives (:func:`place_vehicles`, :func:`partial_demand`); the partial sums and the
    placement reports combine in a tree, and only the summed locations (a few
    thousand rows) come back to finish (:func:`finish_demand`). The answer is
    :func:`demand_points` of the same rows, exactly, for any partitioning: the
    sums are of counts (or whole miles), and the ``"range"`` medians come from
    exact value counts.

    Parameters
    ----------
    vehicles : dask.dataframe.DataFrame
        Vehicle partitions with :data:`evplanner.data.VEHICLE_COLUMNS`, e.g. the
        ``points`` of :func:`evplanner.data.read_points_dask` read with
        ``columns=VEHICLE_COLUMNS``.
    counties, ev_types, model_years, utilities, legislative_districts, weighting,
    residents_share, demand_at, tract_fallback, tracts
        As in :func:`demand_points`.

    Returns
    -------
    pandas.DataFrame
        As :func:`demand_points` returns (``attrs["placement"]`` included).
    """
    import dask

    from evplanner._chunked import tree_reduce

    _check_choice("weighting", weighting, WEIGHTINGS)
    _check_choice("tract_fallback", tract_fallback, TRACT_FALLBACKS)
    _check_residents(demand_at, weighting, residents_share)
    filters = {"counties": counties, "utilities": utilities,
               "legislative_districts": legislative_districts}  # fmt: skip
    needed = {"counties": "county", "utilities": "utility",
              "legislative_districts": "legislative_district"}  # fmt: skip
    wanted = [needed[k] for k, v in filters.items() if v]
    if wanted:
        # The filter values the data holds: distinct values only, a small compute.
        values = dask.compute(*[vehicles[c].dropna().unique() for c in wanted])
        for column, distinct in zip(wanted, values, strict=True):
            name = next(k for k, c in needed.items() if c == column)
            check_filters(pd.DataFrame({column: pd.Series(distinct)}),
                          **{name: filters[name]})  # fmt: skip
    if demand_at == "tract" and tracts is None:
        tracts = load_tracts()
    placement = {"demand_at": demand_at, "tract_fallback": tract_fallback}
    row_filters = {**filters, "ev_types": ev_types, "model_years": model_years}
    parts = vehicles.to_delayed()
    fill = None
    if weighting == "range":

        def counts(part):
            return _range_counts(place_vehicles(part, tracts, **placement)[0],
                                 row_filters)  # fmt: skip

        summed_counts = tree_reduce(
            [dask.delayed(counts)(p) for p in parts],
            lambda a, b: pd.concat([a, b], ignore_index=True),
        )
        fill = _fill_from_counts(summed_counts.compute())
    pieces = [
        dask.delayed(_partition_demand)(
            p, tracts, placement, row_filters, weighting, fill
        )  # fmt: skip
        for p in parts
    ]
    summed, report = tree_reduce(pieces, _combine_pair).compute()
    return _points(summed, report, tracts, weighting, residents_share, filters)


def evs_per_1000(vehicles, population) -> np.ndarray:
    """EVs per 1,000 residents: ``1000 * vehicles / population``, NaN without residents.

    Examples
    --------
    >>> evs_per_1000([5, 3, 0], [1000, 0, 200]).tolist()
    [5.0, nan, 0.0]
    """
    vehicles = np.asarray(vehicles, dtype="float64")
    population = np.asarray(population, dtype="float64")
    out = np.full(np.broadcast(vehicles, population).shape, np.nan)
    np.divide(1000.0 * vehicles, population, out=out, where=population > 0)
    return out


def tract_layer(
    vehicles: pd.DataFrame,
    tracts: pd.DataFrame | None = None,
    *,
    counties=None,
    ev_types=None,
    model_years: tuple[int, int] | None = None,
    utilities=None,
    legislative_districts=None,
) -> pd.DataFrame:
    """EVs and residents per census tract, for a map layer.

    Parameters
    ----------
    vehicles : pandas.DataFrame
        As returned by :func:`evplanner.data.load_vehicles`.
    tracts : pandas.DataFrame, optional
        Default: the bundled Washington tracts.
    counties, ev_types, model_years, utilities, legislative_districts
        As in :func:`demand_points` (residents counted as in
        :func:`finish_demand`).

    Returns
    -------
    pandas.DataFrame
        One row per tract with residents or vehicles counted, sorted by tract:
        ``tract_id``, ``county``, ``lon``, ``lat`` (centre of population),
        ``population``, ``vehicles`` and ``evs_per_1000`` (NaN where no residents
        count). Vehicles whose tract is not in the table are not in it.
    """
    tracts = load_tracts() if tracts is None else tracts
    filters = {"counties": counties, "utilities": utilities,
               "legislative_districts": legislative_districts}  # fmt: skip
    check_filters(vehicles, **filters)
    placed, _ = place_vehicles(vehicles, tracts)
    summed = partial_demand(placed, ev_types=ev_types, model_years=model_years,
                            **filters)  # fmt: skip
    apportion = bool(utilities) or bool(legislative_districts)
    rows = _with_population(summed, tracts, counties, apportion)
    rows = rows.loc[(rows["population"] > 0) | (rows["vehicles"] > 0)]
    county = tracts.set_index("tract_id")["county"]
    out = pd.DataFrame(
        {
            "tract_id": rows["tract_id"].to_numpy(),
            "county": rows["tract_id"].map(county).to_numpy(),
            "lon": rows["lon"].to_numpy(),
            "lat": rows["lat"].to_numpy(),
            "population": rows["population"].to_numpy(),
            "vehicles": rows["vehicles"].to_numpy(),
            "evs_per_1000": evs_per_1000(rows["vehicles"], rows["population"]),
        }
    )
    for column in ("tract_id", "county"):
        out[column] = out[column].astype("string")
    return out.sort_values("tract_id", ignore_index=True)


# --------------------------------------------------------------------------- synthetic


def synthesize_demand(
    demand: pd.DataFrame,
    n: int,
    *,
    seed: int = 0,
    spread_m: float = 3000.0,
    path: str | Path | None = None,
    chunk_rows: int = 1_000_000,
    crs="auto",
):
    """Draw ``n`` synthetic demand points shaped like ``demand``.

    Each point picks a real location with probability proportional to its weight and
    is scattered around it by a normal offset of ``spread_m`` metres per axis (in the
    projected CRS, so the scatter is round on the ground).

    Parameters
    ----------
    demand : pandas.DataFrame
        ``lon``, ``lat``, ``weight``, e.g. from :func:`demand_points`.
    n : int
        Number of points (tens of millions are fine with ``path``).
    seed : int
        The same ``seed``, ``n`` and ``chunk_rows`` give the same points.
    spread_m : float
        Standard deviation of the scatter per axis, metres (finite, >= 0).
    path : str or Path, optional
        Write Parquet (columns ``lon``, ``lat``, ``weight``) here, one row group per
        chunk, never holding more than one chunk in memory. Without it, return the
        points as a DataFrame. The file is written atomically: a failure or an
        interruption leaves no partial file (and an existing file as it was).
    chunk_rows : int
        Rows generated (and written) per chunk.
    crs : "auto" or EPSG
        CRS used for the scatter.

    Returns
    -------
    pandas.DataFrame or pathlib.Path
        The points (weight 1.0 each), or ``path`` once written.

    Raises
    ------
    ValueError
        Before any file is created: for ``n`` or ``chunk_rows`` below 1, a
        ``spread_m`` that is NaN, inf or negative, invalid demand weights, or a
        ``path`` whose directory does not exist.
    """
    for name, value in (("n", n), ("chunk_rows", chunk_rows)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{name}: expected an integer, got {value!r}")
    if n < 1:
        raise ValueError(f"n: expected a positive number of points, got {n}")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows: expected a positive integer, got {chunk_rows}")
    spread_m = check_positive(spread_m, "spread_m", unit="m", allow_zero=True)
    weight = demand["weight"].to_numpy("float64")
    with np.errstate(over="ignore"):
        total = weight.sum()
    if not np.isfinite(weight).all() or (weight < 0).any() or not 0 < total < np.inf:
        raise ValueError("demand weights must be finite, non-negative, not all zero")
    if path is not None and not Path(path).parent.is_dir():
        raise ValueError(f"path {path}: directory {Path(path).parent} does not exist")
    crs = choose_crs(demand["lon"], demand["lat"], crs, weight=weight)
    x_m, y_m = to_metres(demand["lon"], demand["lat"], crs)
    cumulative = np.cumsum(weight / weight.sum())
    # One child seed per chunk: chunks are independent streams, so writing them one
    # at a time gives the same points as generating them all at once.
    streams = np.random.SeedSequence(seed).spawn(-(-n // chunk_rows))

    def chunks():
        for index, stream in enumerate(streams):
            rows = min(chunk_rows, n - index * chunk_rows)
            rng = np.random.default_rng(stream)
            pick = np.searchsorted(cumulative, rng.random(rows), side="right")
            pick = np.minimum(pick, len(cumulative) - 1)
            offset = rng.normal(0.0, spread_m, size=(rows, 2))
            lon, lat = to_lonlat(
                x_m[pick] + offset[:, 0], y_m[pick] + offset[:, 1], crs
            )
            yield pd.DataFrame({"lon": lon, "lat": lat, "weight": np.ones(rows)})

    if path is None:
        return pd.concat(list(chunks()), ignore_index=True)

    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    schema = pa.schema([("lon", pa.float64()), ("lat", pa.float64()),
                        ("weight", pa.float64())])  # fmt: skip
    with atomic_write(path) as tmp:
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            for index, chunk in enumerate(chunks()):
                writer.write_table(
                    pa.Table.from_pandas(chunk, schema, preserve_index=False)
                )
                logger.info("wrote chunk %d/%d to %s", index + 1, len(streams), path)
    return path
