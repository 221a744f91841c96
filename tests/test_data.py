"""Loading and cleaning: POINT parsing, drop reasons, readable errors, bundled data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evplanner.data import (
    BUNDLED_STATIONS,
    BUNDLED_TRACTS,
    BUNDLED_VEHICLES,
    DEFAULT_STATION_PORTS,
    INVALID_WEIGHT,
    MAX_TOTAL_WEIGHT,
    MISSING_LOCATION,
    NOT_ELECTRIC,
    OUT_OF_RANGE,
    OUTSIDE_AREA,
    PORTS_ASSUMED,
    UNPARSABLE_POINT,
    build_bundled_data,
    check_total_weight,
    load_candidates,
    load_stations,
    load_tracts,
    load_vehicles,
    merge_reports,
    parse_point,
    parse_points,
    read_points_dask,
)
from evplanner.errors import InputError

from .conftest import RAW_STATIONS_2023, RAW_STATIONS_2025, RAW_TRACTS

DOL_HEADER = (
    "VIN (1-10),County,City,State,Postal Code,Model Year,Make,Model,"
    "Electric Vehicle Type,Clean Alternative Fuel Vehicle (CAFV) Eligibility,"
    "Electric Range,Base MSRP,Legislative District,DOL Vehicle ID,Vehicle Location,"
    "Electric Utility,2020 Census Tract"
)


def dol_row(location, state="WA", county="King", ev="Battery Electric Vehicle (BEV)",
            year="2020", rng="258"):  # fmt: skip
    return (
        f"KM8K33AGXL,{county},Seattle,{state},98103,{year},HYUNDAI,KONA,{ev},"
        f"Eligible,{rng},0,43,1,{location},CITY OF SEATTLE - (WA),53033004800"
    )


def write(tmp_path, name, lines):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------- POINT parsing


@pytest.mark.parametrize(
    "text, expected",
    [
        ("POINT (-122.34301 47.659185)", (-122.34301, 47.659185)),
        ("POINT(-122 47)", (-122.0, 47.0)),
        ("  point ( -1.5e2   4.7E1 )  ", (-150.0, 47.0)),
        ("POINT (+.5 -0.25)", (0.5, -0.25)),
    ],
)
def test_parse_point_good(text, expected):
    assert parse_point(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "POINT ()", "POINT (-122.3)", "POINT (-122.3 47.6 12)", "POINT (a b)",
     "LINESTRING (0 0, 1 1)", "-122.3 47.6", "POINT (-122.3, 47.6)", None],
)  # fmt: skip
def test_parse_point_malformed_raises(text):
    with pytest.raises(ValueError, match="expected 'POINT \\(lon lat\\)'"):
        parse_point(text)


def test_parse_points_marks_missing_and_unparsable():
    lon, lat, status = parse_points(
        pd.Series(["POINT (1 2)", "", None, "POINT (x 2)", "  "])
    )
    assert lon[0] == 1 and lat[0] == 2
    assert list(status) == [
        None, MISSING_LOCATION, MISSING_LOCATION, UNPARSABLE_POINT, MISSING_LOCATION
    ]  # fmt: skip
    assert np.isnan(lon[1:]).all()


# ---------------------------------------------------------------- drop reasons


def test_every_drop_reason_is_counted(tmp_path):
    path = write(tmp_path, "dol.csv", [
        DOL_HEADER,
        dol_row("POINT (-122.3 47.6)"),
        dol_row("POINT (-122.3 47.6)"),
        dol_row(""),                            # missing location
        dol_row("POINT (-122.3)"),              # unparsable point
        dol_row("POINT (-222.3 47.6)"),         # longitude out of range
        dol_row("POINT (-122.3 97.6)"),         # latitude out of range
        dol_row("POINT (-77.0 38.9)", state="VA"),  # outside the planning area
    ])  # fmt: skip
    vehicles, report = load_vehicles(path)
    assert report.kind == "wa-dol-csv"
    assert report.rows_read == 7
    assert report.rows_kept == len(vehicles) == 2
    assert report.dropped == {MISSING_LOCATION: 1, UNPARSABLE_POINT: 1, OUT_OF_RANGE: 2}
    assert report.out_of_area == 1 and not report.kept_out_of_area
    assert report.rows_dropped == 5
    assert report.examples[UNPARSABLE_POINT] == "row 4: 'POINT (-122.3)'"
    text = report.format()
    assert "coordinates out of range: 2" in text and "(WA): 1 (left out)" in text

    kept, report_all = load_vehicles(path, keep_out_of_area=True)
    assert len(kept) == 3 and report_all.rows_kept == 3
    assert report_all.out_of_area == 1 and report_all.kept_out_of_area
    assert set(kept["state"]) == {"WA", "VA"}


def test_dol_columns_cleaned(tmp_path):
    path = write(tmp_path, "dol.csv", [
        DOL_HEADER,
        dol_row("POINT (-122.3 47.6)", rng="0",
                ev="Plug-in Hybrid Electric Vehicle (PHEV)"),
        dol_row("POINT (-122.3 47.6)", year="20x0"),
    ])  # fmt: skip
    vehicles, _ = load_vehicles(path)
    # DOL publishes 0 for a range it has not researched: unknown, not zero.
    assert np.isnan(vehicles.loc[0, "electric_range"])
    assert vehicles.loc[1, "electric_range"] == 258
    assert list(vehicles["ev_type"]) == ["PHEV", "BEV"]
    assert vehicles.loc[0, "model_year"] == 2020 and pd.isna(
        vehicles.loc[1, "model_year"]
    )
    assert vehicles.loc[0, "census_tract"] == "53033004800"
    assert vehicles.loc[0, "legislative_district"] == 43
    assert (vehicles["weight"] == 1.0).all()


def test_plain_points_file_with_weights(tmp_path):
    path = write(tmp_path, "pts.csv", [
        "Longitude,Latitude,weight",
        "-122.3,47.6,2.5",
        "-122.4,47.7,",       # invalid weight (empty)
        "-122.4,47.7,-1",     # invalid weight (negative)
        "abc,47.7,1",         # unparsable
        ",47.7,1",            # missing
        "-122.4,147.7,1",     # out of range
    ])  # fmt: skip
    points, report = load_vehicles(path)
    assert report.kind == "points"
    assert len(points) == 1 and points.loc[0, "weight"] == 2.5
    assert report.dropped == {
        INVALID_WEIGHT: 2, UNPARSABLE_POINT: 1, MISSING_LOCATION: 1, OUT_OF_RANGE: 1
    }  # fmt: skip
    assert points["county"].isna().all()


def test_parquet_points_file(tmp_path):
    path = tmp_path / "pts.parquet"
    pd.DataFrame({"lon": [-122.3, np.nan], "lat": [47.6, 47.0]}).to_parquet(path)
    points, report = load_vehicles(path)
    assert len(points) == 1 and report.dropped == {MISSING_LOCATION: 1}


# ---------------------------------------------------------------- bad files


def test_missing_column_error_names_file_and_columns(tmp_path):
    path = write(tmp_path, "bad.csv", ["Postal Code,State", "98103,WA"])
    with pytest.raises(InputError, match=r"bad\.csv: missing required column") as err:
        load_vehicles(path)
    assert "Postal Code" in str(err.value) and err.value.path == str(path)


@pytest.mark.parametrize(
    "name, content, match",
    [
        ("dol.csv", b"County,Vehicle Location\nKing,POINT (1 2)\n",
         r"missing required column\(s\) \['State'\]"),
        ("empty.csv", b"", r"empty\.csv: empty file"),
        ("blank.csv", b"\n\n", r"blank\.csv: empty file"),
        ("image.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)),
         r"image\.csv: not a CSV file"),
        ("latin.csv", "lon,lat\n\xff\xfe,1\n".encode("latin-1") + b"\xff" * 100,
         "not a CSV text file"),
    ],
)  # fmt: skip
def test_unreadable_files_name_file_and_problem(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError, match=match):
        load_vehicles(path)


def test_parquet_named_csv(tmp_path):
    path = tmp_path / "data.csv"
    pd.DataFrame({"lon": [-122.3], "lat": [47.6]}).to_parquet(path)
    # Content decides: a Parquet file is read as Parquet whatever its name.
    points, _ = load_vehicles(path)
    assert len(points) == 1


def test_csv_named_parquet(tmp_path):
    path = write(tmp_path, "data.parquet", ["lon,lat", "1,2"])
    with pytest.raises(InputError, match="not a Parquet file"):
        load_vehicles(path)


def test_missing_file():
    with pytest.raises(InputError, match="nope.csv: file not found"):
        load_vehicles("nope.csv")


# ---------------------------------------------------------------- stations


@pytest.mark.parametrize(
    "path, stations, level2, dc_fast, dropped",
    [
        (RAW_STATIONS_2023, 1642, 3222, 857, 62),
        (RAW_STATIONS_2025, 2473, 5143, 1507, 85),
    ],
)
def test_afdc_export_as_published(path, stations, level2, dc_fast, dropped):
    # Figures from shared/data/SOURCES.md, counted independently of this code.
    if not path.exists():
        pytest.skip(f"{path} not present")
    frame, report = load_stations(path)
    assert len(frame) == stations
    assert frame["level2_ports"].sum() == level2
    assert frame["dc_fast_ports"].sum() == dc_fast
    assert report.dropped == {NOT_ELECTRIC: dropped}
    assert frame["station_id"].is_unique


def test_plain_station_csv(tmp_path):
    path = write(tmp_path, "mine.csv", ["lat,lon", "47.6,-122.3", "47.7,-122.4",
                                        "147.7,-122.4"])  # fmt: skip
    frame, report = load_stations(path)
    assert report.kind == "station-points"
    assert len(frame) == 2 and list(frame["name"]) == ["site 1", "site 2"]
    assert report.dropped == {OUT_OF_RANGE: 1}
    # No port columns: the stated default (2 Level 2 ports), counted per kept row.
    assert (frame["level2_ports"] == DEFAULT_STATION_PORTS["level2_ports"]).all()
    assert (frame["dc_fast_ports"] == 0).all()
    assert report.assumed == {PORTS_ASSUMED: 2}
    assert f"rows kept with {PORTS_ASSUMED}: 2" in report.format()
    assert report.to_dict()["assumed"] == {PORTS_ASSUMED: 2}


@pytest.mark.parametrize(
    "header",
    ["level1_ports,level2_ports,dc_fast_ports",
     "EV Level1 EVSE Num,EV Level2 EVSE Num,EV DC Fast Count"],
)  # fmt: skip
def test_station_csv_keeps_its_ports(tmp_path, header):
    rows = [f"name,lon,lat,{header}", "A,-122.3,47.6,0,4,2", "B,-122.2,47.6,,,3",
            "C,-122.1,47.6,,,", "D,-122.0,47.6,0,-1,0"]  # fmt: skip
    frame, report = load_stations(write(tmp_path, "mine.csv", rows))
    assert frame["level2_ports"].tolist() == [4, 0, 2, 2]
    assert frame["dc_fast_ports"].tolist() == [2, 3, 0, 0]
    # C has no ports given, D only an invalid count: both get the default.
    assert report.assumed == {PORTS_ASSUMED: 2}


def test_station_csv_with_one_ports_column(tmp_path):
    frame, report = load_stations(
        write(tmp_path, "mine.csv", ["lon,lat,Ports", "-122.3,47.6,6"])
    )
    assert frame[["level2_ports", "dc_fast_ports"]].values.tolist() == [[6, 0]]
    assert report.assumed == {}


def test_station_csv_without_coordinates(tmp_path):
    path = write(tmp_path, "mine.csv", ["name,city", "A,Seattle"])
    with pytest.raises(InputError, match="expected lon/lat"):
        load_stations(path)


# ---------------------------------------------------------------- bundled data


def test_bundled_files_exist_and_load():
    vehicles, report = load_vehicles()
    stations, s_report = load_stations()
    assert BUNDLED_VEHICLES.exists() and BUNDLED_STATIONS.exists()
    assert report.kind == "bundled-vehicles"
    assert vehicles["state"].eq("WA").all()
    assert vehicles["lon"].between(-125, -116).all()
    assert vehicles["lat"].between(45, 49.5).all()
    assert s_report.rows_kept == len(stations) > 0


def test_bundled_and_raw_report_the_same(raw_vehicles_csv):
    _, bundled = load_vehicles()
    _, raw = load_vehicles(raw_vehicles_csv)
    assert bundled.rows_read == raw.rows_read == 150_482
    assert bundled.rows_kept == raw.rows_kept
    assert bundled.dropped == raw.dropped
    assert bundled.out_of_area == raw.out_of_area


def test_build_bundled_data_regenerates_identical_rows(raw_vehicles_csv, tmp_path):
    if not RAW_STATIONS_2025.exists():
        pytest.skip("raw AFDC file not present")
    if not RAW_TRACTS.exists():
        pytest.skip("raw Census tract file not present")
    reports = build_bundled_data(
        raw_vehicles_csv, RAW_STATIONS_2025, tmp_path, tracts_csv=RAW_TRACTS
    )
    assert reports["tracts"].rows_kept == 1_784
    fresh = pd.read_parquet(tmp_path / "vehicles.parquet")
    shipped = pd.read_parquet(BUNDLED_VEHICLES)
    pd.testing.assert_frame_equal(fresh, shipped)
    for name, bundled in (("stations", BUNDLED_STATIONS), ("tracts", BUNDLED_TRACTS)):
        pd.testing.assert_frame_equal(
            pd.read_parquet(tmp_path / f"{name}.parquet"), pd.read_parquet(bundled)
        )


# ---------------------------------------------------------------- census tracts


def test_bundled_tracts():
    # Figures from shared/data/SOURCES.md (counted there from the Census file).
    tracts = load_tracts()
    assert len(tracts) == 1_784 and tracts["tract_id"].is_unique
    assert tracts["tract_id"].str.fullmatch(r"53\d{9}").all()
    assert int(tracts["population"].sum()) == 7_705_281
    assert (tracts["population"] == 0).sum() == 13
    assert tracts["county"].nunique() == 39 and tracts["county"].notna().all()
    assert tracts["lon"].between(-125, -116).all()
    assert tracts["lat"].between(45.5, 49.1).all()
    # A copy each time: a caller's edits do not leak into the next load.
    tracts.loc[0, "population"] = -1
    assert load_tracts().loc[0, "population"] >= 0


def test_raw_census_file_gives_the_bundled_tracts():
    if not RAW_TRACTS.exists():
        pytest.skip("raw Census tract file not present")
    pd.testing.assert_frame_equal(load_tracts(RAW_TRACTS), load_tracts())


def test_county_names_of_tracts_match_every_vehicle_row():
    # The FIPS -> county name table against DOL's own County column: every WA
    # vehicle's tract lies in the county DOL names for it.
    vehicles, _ = load_vehicles()
    tracts = load_tracts().set_index("tract_id")
    county = vehicles["census_tract"].map(tracts["county"])
    assert county.notna().all()
    assert (county == vehicles["county"]).all()


CENPOP_HEADER = "STATEFP,COUNTYFP,TRACTCE,POPULATION,LATITUDE,LONGITUDE"


@pytest.mark.parametrize(
    "row, match",
    [
        ("53,33,004800,10,+47.6,-122.3", r"row 2, column 'COUNTYFP', value '33'"),
        ("53,033,004800,-5,+47.6,-122.3", r"column 'population'.*whole number"),
        ("53,033,004800,2.5,+47.6,-122.3", r"column 'population'.*whole number"),
        ("53,033,004800,10,+97.6,-122.3", r"column 'lat'.*within \+-90"),
        ("53,033,004802,10,+47.6,", r"row 2, column 'lon'"),
        ("53,033,004801,10,+47.6,-122.3", r"row 2, column 'tract_id'.*duplicate"),
    ],
)
def test_bad_tract_rows_are_errors(tmp_path, row, match):
    path = write(tmp_path, "tracts.csv",
                 [CENPOP_HEADER, "53,033,004801,10,+47.6,-122.3", row])  # fmt: skip
    with pytest.raises(InputError, match=match):
        load_tracts(path)


def test_plain_tract_table(tmp_path):
    path = tmp_path / "t.parquet"
    pd.DataFrame({"tract_id": ["41051000100"], "population": [7], "lon": [-122.6],
                  "lat": [45.5]}).to_parquet(path)  # fmt: skip
    tracts = load_tracts(path)
    assert tracts.loc[0, "county_fips"] == "41051"
    assert pd.isna(tracts.loc[0, "county"])  # not a Washington tract
    with pytest.raises(InputError, match="missing required column"):
        load_tracts(write(tmp_path, "x.csv", ["tract_id,lon", "1,2"]))


# ---------------------------------------------------------------- dask reader


def test_read_points_dask_matches_in_memory(tmp_path):
    lines = [DOL_HEADER] + [
        dol_row(f"POINT (-122.{i:03d} 47.{i:03d})") for i in range(300)
    ]
    lines += [dol_row(""), dol_row("POINT (1)"), dol_row("POINT (-77 38)", state="VA")]
    path = write(tmp_path, "dol.csv", lines)
    import dask

    points, reports = read_points_dask(path, blocksize=4000)
    assert points.npartitions > 1
    frame, parts = dask.compute(points, reports)
    report = merge_reports(parts, source=str(path), kind="wa-dol-csv")
    memory, mem_report = load_vehicles(path)
    np.testing.assert_array_equal(frame["lon"].to_numpy(), memory["lon"].to_numpy())
    assert report.rows_read == mem_report.rows_read == 303
    assert report.rows_kept == mem_report.rows_kept == 300
    assert report.dropped == mem_report.dropped
    assert report.out_of_area == 1
    assert report.examples.keys() == mem_report.examples.keys()
    assert report.examples[UNPARSABLE_POINT].endswith("'POINT (1)'")


@pytest.mark.parametrize(
    ("rows", "min_partitions", "blocksize", "expected"),
    [
        (120_000, 4, "64MB", 2),  # as many as keep MIN_PARTITION_ROWS each
        (200_000, 4, "64MB", 4),
        (200_000, 2, "64MB", 2),
        (40_000, 4, "64MB", 1),  # too few rows to split
        (120_000, 1, 1, 2),  # blocksize caps, down to MIN_PARTITION_ROWS rows
        (120_000, 1, "64MB", 1),
    ],
)  # fmt: skip
def test_parquet_of_one_row_group_is_cut_into_row_ranges(
    tmp_path, rows, min_partitions, blocksize, expected
):
    import dask
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(rows)
    frame = pd.DataFrame({
        "lon": rng.uniform(-122.5, -117.5, rows),
        "lat": rng.uniform(45.8, 48.8, rows),
        "weight": rng.integers(1, 4, rows).astype(float),
    })  # fmt: skip
    path = tmp_path / "points.parquet"
    pq.write_table(pa.Table.from_pandas(frame), path, row_group_size=rows)
    assert pq.ParquetFile(path).metadata.num_row_groups == 1
    points, reports = read_points_dask(path, blocksize=blocksize,
                                       min_partitions=min_partitions)  # fmt: skip
    assert points.npartitions == expected
    with dask.config.set(scheduler="threads"):
        got, parts = dask.compute(points, reports)
    # In file order, every row once, as the in-memory reader gives them.
    memory, _ = load_vehicles(path)
    columns = ["lon", "lat", "weight"]
    np.testing.assert_array_equal(got[columns].to_numpy(), memory[columns].to_numpy())
    assert merge_reports(parts, source=str(path), kind="points").rows_read == rows


def test_csv_blocks_follow_min_partitions(tmp_path):
    import dask

    rows = 200_000
    rng = np.random.default_rng(5)
    lon, lat = rng.uniform(-122.5, -117.5, rows), rng.uniform(45.8, 48.8, rows)
    path = tmp_path / "points.csv"
    pd.DataFrame({"lon": lon.round(6), "lat": lat.round(6)}).to_csv(path, index=False)
    one, _ = read_points_dask(path)
    four, reports = read_points_dask(path, min_partitions=4)
    assert one.npartitions == 1
    # Block sizes come from a row length estimated on the first 64 kB.
    assert 3 <= four.npartitions <= 5
    with dask.config.set(scheduler="threads"):
        got, parts = dask.compute(four, reports)
    np.testing.assert_array_equal(got["lon"].to_numpy(), lon.round(6))
    assert merge_reports(parts, source=str(path), kind="points").rows_read == rows
    with pytest.raises(ValueError, match="min_partitions: expected an integer >= 1"):
        read_points_dask(path, min_partitions=0)


# ---------------------------------------------------------------- planning area


def test_plain_points_outside_the_planning_area(tmp_path):
    path = write(tmp_path, "pts.csv", [
        "lon,lat",
        "-122.3,47.6",
        "0,0",              # null island: an export error
        "-122.4,47.7",
        "-80.19,25.77",     # Miami
        "-117.4,47.7",      # Spokane
        "-122.68,45.52",    # Portland, OR: inside the margin
    ])  # fmt: skip
    points, report = load_vehicles(path)
    assert report.rows_read == 6 and report.rows_kept == len(points) == 4
    assert report.out_of_area == 2 and not report.kept_out_of_area
    assert report.dropped == {} and report.rows_dropped == 2
    assert report.examples[OUTSIDE_AREA] == "row 2: lon 0, lat 0"
    assert "outside the planning area (WA): 2 (left out) (first: row 2" in (
        report.format()
    )
    assert not (points["lon"] == 0).any()
    kept, report_all = load_vehicles(path, keep_out_of_area=True)
    assert len(kept) == 6 and report_all.out_of_area == 2
    assert "(kept)" in report_all.format()


def test_state_decides_before_the_box(tmp_path):
    # A DOL row registered in WA is in the area wherever its point is; a row of
    # another state is not, even inside the box.
    path = write(tmp_path, "dol.csv", [
        DOL_HEADER,
        dol_row("POINT (-122.3 47.6)"),
        dol_row("POINT (-122.68 45.52)", state="OR"),
    ])  # fmt: skip
    _, report = load_vehicles(path)
    assert report.out_of_area == 1 and report.rows_kept == 1
    assert report.examples[OUTSIDE_AREA] == "row 2: lon -122.68, lat 45.52, State OR"


def test_every_row_is_kept_or_counted(tmp_path):
    path = write(tmp_path, "pts.csv", [
        "lon,lat,weight", "-122.3,47.6,1", "x,47.6,1", "-122.3,,1", "0,0,1",
        "-122.3,47.6,-2", "-122.3,95,1",
    ])  # fmt: skip
    for keep in (False, True):
        _, report = load_vehicles(path, keep_out_of_area=keep)
        left_out = 0 if keep else report.out_of_area
        assert report.rows_read == (
            report.rows_kept + sum(report.dropped.values()) + left_out
        )


# ---------------------------------------------------------------- stations


def test_bad_station_rows_are_counted(tmp_path):
    path = write(tmp_path, "fixed.csv", [
        "lon,lat",
        "-122.3,47.6",
        "xx,47.5",          # unparsable longitude
        "-122.1,",          # missing latitude
        "-122.1,yy",        # unparsable latitude
        "151.21,-33.87",    # Sydney
        "37.62,55.75",      # Moscow
    ])  # fmt: skip
    stations, report = load_stations(path)
    assert len(stations) == report.rows_kept == 1
    assert report.dropped == {UNPARSABLE_POINT: 2, MISSING_LOCATION: 1}
    assert report.examples[UNPARSABLE_POINT] == "row 2: 'xx 47.5'"
    assert report.out_of_area == 2 and report.rows_dropped == 5
    assert report.examples[OUTSIDE_AREA] == "row 5: lon 151.21, lat -33.87"
    assert "outside the planning area (WA): 2 (left out)" in report.format()
    kept, report_all = load_stations(path, keep_out_of_area=True)
    assert len(kept) == 3 and report_all.kept_out_of_area
    assert sorted(kept["lon"]) == [-122.3, 37.62, 151.21]


def test_strict_station_file_is_refused_whole(tmp_path):
    path = write(tmp_path, "fixed.csv", ["lon,lat", "-122.3,47.6", "-122.1,",
                                         "151.21,-33.87"])  # fmt: skip
    with pytest.raises(InputError) as err:
        load_stations(path, strict=True)
    text = str(err.value)
    assert err.value.row == 2 and "\n" not in text
    assert text.startswith(f"{path}, row 2: 2 of 3 rows are not usable stations")
    assert "1 missing location" in text and "1 outside the planning area" in text
    # Keeping out-of-area stations leaves only the bad row to refuse.
    with pytest.raises(InputError, match="1 of 3 rows .*1 missing location"):
        load_stations(path, strict=True, keep_out_of_area=True)
    good = write(tmp_path, "good.csv", ["lon,lat", "-122.3,47.6", "151.21,-33.87"])
    stations, _ = load_stations(good, strict=True, keep_out_of_area=True)
    assert len(stations) == 2


def test_strict_afdc_export_skips_other_fuels(tmp_path):
    path = write(tmp_path, "afdc.csv", [
        "Fuel Type Code,Station Name,Latitude,Longitude,ID",
        "ELEC,A,47.6,-122.3,1",
        "CNG,B,47.5,-122.2,2",
    ])  # fmt: skip
    stations, report = load_stations(path, strict=True)
    assert len(stations) == 1 and report.dropped == {NOT_ELECTRIC: 1}


# ---------------------------------------------------------------- weights


def test_overflowing_weights_are_refused(tmp_path):
    path = write(tmp_path, "w.csv", ["lon,lat,vehicles", "-122.3,47.6,1e308",
                                     "-122.4,47.7,1e308"])  # fmt: skip
    with pytest.raises(InputError) as err:
        load_vehicles(path)
    assert str(err.value).startswith(
        f"{path}, column 'vehicles': the weights sum to inf"
    )
    # Finite but beyond exact float64 sums: refused too, with the limit.
    big = write(tmp_path, "big.csv", ["lon,lat,weight", "-122.3,47.6,1e16"])
    with pytest.raises(InputError, match=r"sum to 1e\+16; the total must be at most"):
        load_vehicles(big)
    assert check_total_weight([2.0**52, 2.0**52], source="x") == MAX_TOTAL_WEIGHT


def test_weight_total_is_checked_across_partitions(tmp_path):
    # Each file is fine alone; together they sum past the limit.
    paths = []
    for i in range(2):
        paths.append(tmp_path / f"w{i}.parquet")
        frame = pd.DataFrame({"lon": [-122.3], "lat": [47.6], "weight": [6e15]})
        frame.to_parquet(paths[-1])
        load_vehicles(paths[-1])  # no error
    import dask

    points, reports = read_points_dask(paths)
    _, parts = dask.compute(points, reports, scheduler="sync")
    with pytest.raises(InputError, match="the weights sum to 1.2e"):
        merge_reports(parts, source="w*.parquet", kind="points")


# ---------------------------------------------------------------- bad CSV text


def ragged_lines(n=3000, bad_row=2500):
    lines = ["lon,lat,weight"] + [
        f"-122.{i % 1000:03d},47.{i % 1000:03d},1" for i in range(1, n + 1)
    ]
    lines[bad_row] = "-122.3,47.6,1,5"
    return lines


def latin1_file(tmp_path, bad_row=2500, n=3000):
    lines = ["lon,lat,name"] + [f"-122.3,47.6,s{i}" for i in range(1, n + 1)]
    lines[bad_row] = "-122.3,47.6,Caf\xe9"
    path = tmp_path / "latin.csv"
    path.write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    return path


def test_ragged_csv_one_line_with_row(tmp_path):
    path = write(tmp_path, "ragged.csv", ragged_lines())
    with pytest.raises(InputError) as err:
        load_vehicles(path)
    assert err.value.row == 2500 and err.value.path == str(path)
    assert str(err.value) == (
        f"{path}, row 2500: not a valid CSV file: the row has 4 fields, the header "
        "has 3 (a comma inside a value needs quotes)"
    )


def test_latin1_csv_names_file_and_row(tmp_path):
    # In the first 64 kB (the quick check) and beyond (pandas' own error).
    for bad_row, n in ((2500, 3000), (5000, 6000)):
        path = latin1_file(tmp_path, bad_row=bad_row, n=n)
        assert (path.read_bytes().index(b"\xe9") > 65536) == (bad_row == 5000)
        with pytest.raises(InputError) as err:
            load_vehicles(path)
        assert err.value.row == bad_row and "\n" not in str(err.value)
        assert str(err.value).startswith(
            f"{path}, row {bad_row}: not a CSV text file: byte 0xe9 is not UTF-8"
        )
    header = tmp_path / "header.csv"
    header.write_bytes("lon,lat,r\xe9gion\n-122.3,47.6,x\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"header\.csv: .*0xe9 in the header"):
        load_vehicles(header)


# ---------------------------------------------------------------- dask CSV blocks


@pytest.mark.parametrize(
    "ending, final, bom",
    [("\n", True, False), ("\n", False, False), ("\r\n", True, True),
     ("\r\n", False, False)],
)  # fmt: skip
def test_dask_csv_blocks_give_the_in_memory_rows(tmp_path, ending, final, bom):
    lines = ["lon,lat,weight,county"] + [
        f'-122.{i:03d},47.{i:03d},{1 + i % 3},"K, {i}"' for i in range(20)
    ]
    lines[17] = "x,47.1,1,a"  # one dropped row and one out of the area, to compare
    lines[9] = "0,0,1,b"  # the reports
    text = ending.join(lines) + (ending if final else "")
    path = tmp_path / "pts.csv"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
    memory, mem_report = load_vehicles(path)
    import dask

    # Blocks shorter than a line, a few lines, and the whole file.
    for blocksize in (7, 64, 10**9):
        points, reports = read_points_dask(
            path, blocksize=blocksize, columns=["lon", "lat", "weight", "county"]
        )
        frame, parts = dask.compute(points, reports, scheduler="sync")
        report = merge_reports(parts, source=str(path), kind="points")
        pd.testing.assert_frame_equal(
            frame.reset_index(drop=True),
            memory[["lon", "lat", "weight", "county"]].astype({"county": object}),
            check_dtype=False,
        )
        assert report.rows_read == mem_report.rows_read == 20
        assert report.dropped == mem_report.dropped == {UNPARSABLE_POINT: 1}
        assert report.out_of_area == mem_report.out_of_area == 1
        assert report.examples[OUTSIDE_AREA].endswith("lon 0, lat 0")
        assert report.rows_kept == len(frame) == 18


@pytest.mark.parametrize("blocksize", [5000, 20_000, "64MB"])
def test_dask_bad_csv_gives_the_in_memory_error(tmp_path, blocksize):
    import dask

    ragged = write(tmp_path, "ragged.csv", ragged_lines())
    # Beyond the first 64 kB, which read_points_dask checks at once.
    latin = latin1_file(tmp_path, bad_row=5000, n=6000)
    for path, row in ((ragged, 2500), (latin, 5000)):
        with pytest.raises(InputError) as expected:
            load_vehicles(path)
        points, reports = read_points_dask(path, blocksize=blocksize)
        _, parts = dask.compute(points, reports, scheduler="sync")
        with pytest.raises(InputError) as err:
            merge_reports(parts, source=str(path), kind="points")
        assert str(err.value) == str(expected.value)
        assert err.value.row == row and err.value.path == str(path)
    early = latin1_file(tmp_path, bad_row=2500, n=3000)
    with pytest.raises(InputError, match="row 2500: not a CSV text file"):
        read_points_dask(early, blocksize=blocksize)


@pytest.mark.slow
@pytest.mark.cluster
def test_dask_bad_csv_on_a_cluster_is_one_line_without_worker_traceback(tmp_path):
    import dask
    from distributed import Client, LocalCluster

    ragged = write(tmp_path, "ragged.csv", ragged_lines())
    latin = latin1_file(tmp_path, bad_row=5000, n=6000)
    cluster = LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0"
    )
    with cluster, Client(cluster) as client:
        for path, row in ((ragged, 2500), (latin, 5000)):
            points, reports = read_points_dask(path, blocksize=20_000)
            assert points.npartitions > 2
            points, reports = dask.persist(points, reports)
            with pytest.raises(InputError) as err:
                merge_reports(reports.compute(), source=str(path), kind="points")
            assert err.value.path == str(path) and err.value.row == row
            assert "\n" not in str(err.value)
        logs = client.get_worker_logs()
        text = "\n".join(msg for entries in logs.values() for _, msg in entries)
        assert "Compute Failed" not in text and "Traceback" not in text


def test_strict_candidate_file_names_every_bad_row(tmp_path):
    # A bad point, a bad max_ports and an out-of-area row: one message, all three.
    rows = ["name,lon,lat,max_ports", "A,-122.3,47.6,8", "B,xx,47.5,2",
            "C,-122.2,47.5,x", "D,-122.1,47.4,", "E,151.2,-33.9,3"]  # fmt: skip
    path = write(tmp_path, "lots.csv", rows)
    with pytest.raises(InputError) as err:
        load_candidates(path, strict=True)
    text = str(err.value)
    assert err.value.row == 2
    assert "3 of 5 rows are not usable candidate sites" in text
    assert "1 invalid max_ports" in text and "1 unparsable point" in text
    assert text.endswith("bad rows: 2, 3, 5")
    # Not strict: the same rows are left out and counted.
    sites, report = load_candidates(path)
    assert sites["name"].tolist() == ["A", "D"]
    assert report.dropped == {"unparsable point": 1, "invalid max_ports": 1}


def test_strict_refusal_lists_at_most_fifty_rows(tmp_path):
    from evplanner.data import LISTED_BAD_ROWS

    rows = ["lon,lat", *(["xx,47.5"] * (LISTED_BAD_ROWS + 7))]
    path = write(tmp_path, "many.csv", rows)
    with pytest.raises(InputError, match=r"bad rows: 1, 2, .*, 50 and 7 more$"):
        load_stations(path, strict=True)
