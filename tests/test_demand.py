"""Demand points: placement (tract/ZIP), filters, weightings, residents, Dask parts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evplanner.data import load_vehicles
from evplanner.demand import (
    DEMAND_COLUMNS,
    MISSING_TRACT,
    UNKNOWN_TRACT,
    PlacementReport,
    check_filters,
    combine_partials,
    demand_points,
    demand_points_dask,
    evs_per_1000,
    filter_vehicles,
    finish_demand,
    partial_demand,
    place_vehicles,
    range_fill,
    split_utilities,
    synthesize_demand,
    tract_layer,
    utility_names,
)


def small_vehicles():
    """Six vehicles in two King tracts, one without tract, one in Oregon."""
    return pd.DataFrame({
        "lon": [-122.31, -122.31, -122.20, -122.20, -122.10, -122.67],
        "lat": [47.66, 47.66, 47.76, 47.76, 47.70, 45.52],
        "weight": 1.0,
        "census_tract": ["53033004800", "53033004800", "53033022101",
                         "53033022101", None, "41051000100"],
        "state": ["WA", "WA", "WA", "WA", "WA", "OR"],
        "county": ["King", "King", "King", "King", "King", "Multnomah"],
        "ev_type": ["BEV", "PHEV", "BEV", "BEV", "BEV", "BEV"],
        "utility": ["CITY OF SEATTLE - (WA)|CITY OF TACOMA - (WA)",
                    "CITY OF SEATTLE - (WA)|CITY OF TACOMA - (WA)",
                    "PUGET SOUND ENERGY INC", "PUGET SOUND ENERGY INC||X",
                    "PUGET SOUND ENERGY INC", "NON WASHINGTON STATE ELECTRIC UTILITY"],
        "legislative_district": pd.array([43, 43, 1, 1, 45, None], dtype="Int16"),
        "model_year": pd.array([2020, 2021, 2022, 2023, 2023, 2023], dtype="Int16"),
    })  # fmt: skip


# ---------------------------------------------------------------- placement


def test_tract_demand_on_the_bundled_data(vehicles, tracts):
    # The acceptance figures: 1,767 tract locations, 150,137 vehicles kept.
    points = demand_points(vehicles)
    assert list(points.columns) == DEMAND_COLUMNS
    assert len(points) == 1_767 and points["tract_id"].is_unique
    assert points["vehicles"].sum() == points["weight"].sum() == 150_137
    report = points.attrs["placement"]
    assert report.at_tract == 150_137 and not report.dropped and not report.fallback
    # Each location is its tract's centre of population, with its vehicles and
    # residents, counted here independently of the code under test.
    table = tracts.set_index("tract_id")
    by_id = points.set_index("tract_id")
    np.testing.assert_array_equal(by_id["lon"], table.loc[by_id.index, "lon"])
    np.testing.assert_array_equal(by_id["lat"], table.loc[by_id.index, "lat"])
    np.testing.assert_array_equal(
        by_id["population"], table.loc[by_id.index, "population"]
    )
    counts = vehicles.groupby("census_tract").size()
    np.testing.assert_array_equal(by_id["vehicles"], counts.loc[by_id.index])
    assert points[["lon", "lat"]].apply(tuple, axis=1).is_monotonic_increasing


def test_zip_demand_is_todays_demand(vehicles):
    points = demand_points(vehicles, demand_at="zip")
    assert len(points) == 537 and points["vehicles"].sum() == 150_137
    assert points["tract_id"].isna().all() and points["population"].isna().all()
    expected = vehicles.groupby(["lon", "lat"], as_index=False)["weight"].sum()
    np.testing.assert_array_equal(
        points[["lon", "lat", "weight"]].to_numpy(), expected.to_numpy()
    )
    bev = demand_points(vehicles, demand_at="zip", weighting="bev")
    expected = (
        vehicles[vehicles["ev_type"] == "BEV"].groupby(["lon", "lat"])["weight"].sum()
    )
    np.testing.assert_array_equal(bev["weight"], expected.to_numpy())


def test_missing_and_unknown_tracts_are_counted(tracts):
    v = small_vehicles()
    placed, report = place_vehicles(v, tracts)
    assert report.rows == 6 and report.at_tract == 4 and report.at_zip == 0
    assert report.dropped == {MISSING_TRACT: 1, UNKNOWN_TRACT: 1}
    assert report.examples[UNKNOWN_TRACT] == "census tract '41051000100', state OR"
    assert len(placed) == 4 and placed["tract_id"].notna().all()
    centre = tracts.set_index("tract_id").loc["53033004800"]
    assert (
        placed.loc[0, "lon"] == centre["lon"] and placed.loc[0, "lat"] == centre["lat"]
    )

    placed, report = place_vehicles(v, tracts, tract_fallback="zip")
    assert report.fallback == {MISSING_TRACT: 1, UNKNOWN_TRACT: 1}
    assert not report.dropped and report.at_zip == 2 and report.rows_placed == 6
    # Fallback rows keep their published (ZIP centroid) coordinates.
    assert placed["lon"].iloc[4:].tolist() == [-122.10, -122.67]
    assert placed["tract_id"].iloc[4:].isna().all()

    zip_placed, report = place_vehicles(v, demand_at="zip")
    assert report.at_zip == 6 and zip_placed["lon"].tolist() == v["lon"].tolist()

    # Blank and malformed tract values are missing / unknown too.
    odd = v.assign(census_tract=["", " ", "5303300480", "x", None, "53033004800"])
    _, report = place_vehicles(odd, tracts)
    assert report.dropped == {MISSING_TRACT: 3, UNKNOWN_TRACT: 2}
    assert report.at_tract == 1


def test_out_of_state_rows_and_the_load_report():
    vehicles, load = load_vehicles(keep_out_of_area=True)
    points = demand_points(vehicles)
    placement = points.attrs["placement"]
    assert placement.dropped == {UNKNOWN_TRACT: 338}
    assert points["vehicles"].sum() == 150_137
    merged = placement.apply_to(load)
    assert merged.rows_kept == load.rows_kept - 338 == 150_137
    assert merged.dropped[UNKNOWN_TRACT] == 338 and UNKNOWN_TRACT not in load.dropped
    assert "census tract not in the tract table: 338" in merged.format()
    fallback = demand_points(vehicles, tract_fallback="zip")
    assert fallback["vehicles"].sum() == 150_475
    at_zip = fallback[fallback["tract_id"].isna()]
    assert at_zip["vehicles"].sum() == 338 and at_zip["population"].isna().all()


def test_placement_reports_merge_and_travel_as_frames(tracts):
    v = small_vehicles()
    whole = place_vehicles(v, tracts, tract_fallback="zip")[1]
    parts = [place_vehicles(v.iloc[i : i + 2], tracts, tract_fallback="zip")[1]
             for i in (0, 2, 4)]  # fmt: skip
    merged = parts[0].merge(parts[1]).merge(parts[2])
    assert merged == whole
    frames = pd.concat([p.to_frame() for p in parts], ignore_index=True)
    assert PlacementReport.from_frame(frames, demand_at="tract",
                                      tract_fallback="zip") == whole  # fmt: skip
    assert "at their ZIP centroid instead" in whole.format()


def test_bad_placement_options(vehicles):
    with pytest.raises(ValueError, match="demand_at: expected one of"):
        demand_points(vehicles, demand_at="county")
    with pytest.raises(ValueError, match="tract_fallback: expected one of"):
        place_vehicles(vehicles, tract_fallback="nearest")


# ---------------------------------------------------------------- filters


def test_filters(vehicles):
    king = demand_points(vehicles, counties=["KING"])
    assert king["vehicles"].sum() == (vehicles["county"] == "King").sum()
    assert (king["tract_id"].str.slice(0, 5) == "53033").all()
    bev = demand_points(vehicles, ev_types=["bev"])
    assert bev["vehicles"].sum() == (vehicles["ev_type"] == "BEV").sum()
    years = demand_points(vehicles, model_years=(2020, 2021))
    assert years["vehicles"].sum() == vehicles["model_year"].between(2020, 2021).sum()
    district = demand_points(vehicles, legislative_districts=[43, "1"])
    assert (
        district["vehicles"].sum()
        == vehicles["legislative_district"].isin([43, 1]).sum()
    )


def test_utility_rule(vehicles):
    # A vehicle counts for a utility if DOL lists it among the vehicle's utilities,
    # whatever the separator ("|" or "||"). Counted here with plain string tests.
    text = vehicles["utility"].astype(str)
    tacoma = text.str.contains("CITY OF TACOMA - (WA)", regex=False)
    points = demand_points(vehicles, utilities=["city of tacoma - (wa)"])
    assert points["vehicles"].sum() == tacoma.sum() > 80_000
    both = demand_points(vehicles, utilities=["CITY OF TACOMA - (WA)", "AVISTA CORP"])
    either = tacoma | text.str.contains("AVISTA CORP", regex=False)
    assert both["vehicles"].sum() == either.sum()

    names = utility_names(vehicles)
    assert "PUGET SOUND ENERGY INC" in names and "CITY OF TACOMA - (WA)" in names
    assert not any("|" in n or n != n.strip() or not n for n in names)
    assert names == sorted(names) and len(names) == len(set(names))
    assert set(utility_names(vehicles["utility"])) == set(names)
    assert split_utilities("A||B|C") == ["A", "B", "C"]


def test_unknown_filter_values_are_named(vehicles):
    with pytest.raises(ValueError, match=r"counties: no vehicle has \['Kng'\] "
                                         r"\(did you mean 'King'\?\)"):  # fmt: skip
        demand_points(vehicles, counties=["Kng"])
    with pytest.raises(ValueError, match=r"utilities: no vehicle has \['PSE'\]"):
        demand_points(vehicles, utilities=["PSE"])
    with pytest.raises(ValueError, match=r"whole numbers 1-49.*\[50, 'x'\]"):
        demand_points(vehicles, legislative_districts=[50, "x"])
    plain = vehicles[vehicles["legislative_district"] != 7]
    with pytest.raises(ValueError, match=r"legislative_districts: no vehicle in \[7\]"):
        check_filters(plain, legislative_districts=[7, 8])
    # Per frame (a partition may lack a county), unknown names just match nothing.
    assert filter_vehicles(vehicles, counties=["Atlantis"]).empty


def test_filter_errors(vehicles):
    with pytest.raises(ValueError, match="expected BEV and/or PHEV, got \\['EV'\\]"):
        filter_vehicles(vehicles, ev_types=["EV"])
    with pytest.raises(ValueError, match="low <= high"):
        filter_vehicles(vehicles, model_years=(2023, 2020))


# ---------------------------------------------------------------- weightings


def test_weightings():
    vehicles = pd.DataFrame({
        "lon": [1.0, 1.0, 2.0, 2.0], "lat": [5.0, 5.0, 6.0, 6.0], "weight": 1.0,
        "ev_type": ["BEV", "PHEV", "PHEV", "BEV"],
        "make": ["A", "A", "B", "A"], "model": ["x", "x", "y", "x"],
        "electric_range": [200.0, np.nan, 30.0, 100.0],
    })  # fmt: skip
    bev = demand_points(vehicles, weighting="bev", demand_at="zip")
    assert bev["weight"].tolist() == [1.0, 1.0] and bev["vehicles"].tolist() == [2, 2]
    rng = demand_points(vehicles, weighting="range", demand_at="zip")
    # The unknown range of an A x is the median of the known A x ranges (150).
    assert rng["weight"].tolist() == [200.0 + 150.0, 30.0 + 100.0]
    assert range_fill(vehicles) == ({("A", "x"): 150.0, ("B", "y"): 30.0}, 100.0)
    with pytest.raises(ValueError, match="weighting: expected one of"):
        demand_points(vehicles, weighting="price", demand_at="zip")


def test_residents_weighting(vehicles, tracts):
    residents = demand_points(vehicles, weighting="residents")
    # Every tract with residents, with or without a registered EV.
    assert len(residents) == (tracts["population"] > 0).sum() == 1_771
    assert residents["weight"].sum() == tracts["population"].sum() == 7_705_281
    np.testing.assert_array_equal(residents["weight"], residents["population"])
    # Tract 53021980100 has 2 EVs and no residents: no weight, so no location.
    assert residents["vehicles"].sum() == 150_137 - 2
    king = demand_points(vehicles, weighting="residents", counties=["King"])
    assert king["weight"].sum() == tracts.loc[tracts["county"] == "King",
                                              "population"].sum()  # fmt: skip
    # EV type and model years describe vehicles, not residents.
    bev = demand_points(vehicles, weighting="residents", ev_types=["BEV"])
    assert bev["weight"].sum() == 7_705_281
    peopled = vehicles["census_tract"] != "53021980100"
    assert bev["vehicles"].sum() == (peopled & (vehicles["ev_type"] == "BEV")).sum()


def test_residents_under_utility_and_district_filters(tracts):
    v = small_vehicles()
    pop = tracts.set_index("tract_id")["population"]
    points = demand_points(
        v, weighting="residents", utilities=["PUGET SOUND ENERGY INC"]
    )
    # Tract 022101: both vehicles are PSE customers, all residents count; tract
    # 004800 has no PSE vehicle, so none of its residents count.
    assert points["tract_id"].tolist() == ["53033022101"]
    assert points["weight"].item() == pop["53033022101"]
    half = demand_points(v, weighting="residents", utilities=["X"])
    assert half["weight"].item() == pop["53033022101"] / 2
    district = demand_points(v, weighting="residents", legislative_districts=[43])
    assert district["weight"].item() == pop["53033004800"]


@pytest.mark.parametrize("share", [0.0, 0.25, 0.5, 1.0])
def test_blend_keeps_vehicle_units(vehicles, share):
    blend = demand_points(vehicles, residents_share=share, counties=["Pierce"])
    cars = demand_points(vehicles, counties=["Pierce"])
    people = demand_points(vehicles, weighting="residents", counties=["Pierce"])
    total = cars["weight"].sum()
    assert blend["weight"].sum() == pytest.approx(total, rel=1e-12)
    # weight = (1 - a) vehicles + a residents * (vehicles / residents), per tract.
    merged = (
        people.set_index("tract_id")[["weight"]]
        .join(cars.set_index("tract_id")["weight"].rename("cars"))
        .fillna(0.0)
    )
    scale = total / people["weight"].sum()
    expected = (1 - share) * merged["cars"] + share * scale * merged["weight"]
    expected = expected[expected > 0]
    got = blend.set_index("tract_id")["weight"]
    np.testing.assert_allclose(got.loc[expected.index], expected, rtol=1e-12)
    assert len(got) == len(expected)


def test_residents_errors(vehicles):
    with pytest.raises(ValueError, match="residents need tract demand"):
        demand_points(vehicles, weighting="residents", demand_at="zip")
    with pytest.raises(ValueError, match="residents need tract demand"):
        demand_points(vehicles, residents_share=0.5, demand_at="zip")
    with pytest.raises(ValueError, match=r"residents_share: expected a number in"):
        demand_points(vehicles, residents_share=1.5)
    with pytest.raises(ValueError, match="residents only"):
        demand_points(vehicles, weighting="residents", residents_share=0.5)


def test_evs_per_1000_residents(vehicles, tracts):
    layer = tract_layer(vehicles)
    # Every tract with residents or EVs: 1,784 less the 12 empty tracts without EVs.
    assert len(layer) == 1_772 and layer["vehicles"].sum() == 150_137
    row = layer.set_index("tract_id").loc["53033028200"]
    assert row["county"] == "King" and row["population"] == 5_128
    assert row["vehicles"] == 1_758
    assert row["evs_per_1000"] == pytest.approx(1000 * 1_758 / 5_128)
    # The tract with EVs but no residents has no rate.
    empty = layer.set_index("tract_id").loc["53021980100"]
    assert empty["vehicles"] == 2 and np.isnan(empty["evs_per_1000"])
    king = tract_layer(vehicles, counties=["King"])
    assert set(king["county"]) == {"King"}
    assert king["population"].sum() == tracts.loc[tracts["county"] == "King",
                                                  "population"].sum()  # fmt: skip
    np.testing.assert_array_equal(evs_per_1000([1, 2], [0, 500]), [np.nan, 4.0])


# ---------------------------------------------------------------- on Dask


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    )
    with cluster, Client(cluster) as c:
        yield c


@pytest.mark.parametrize(
    "options",
    [
        {"weighting": "range", "tract_fallback": "zip"},
        {"residents_share": 0.3, "utilities": ["PUGET SOUND ENERGY INC"],
         "ev_types": ["BEV"]},
        {"weighting": "residents", "legislative_districts": [1, 45],
         "counties": ["King", "Snohomish"]},
        {"demand_at": "zip", "model_years": (2015, 2022)},
    ],
)  # fmt: skip
def test_partitions_on_dask_give_the_in_memory_demand(client, tracts, tmp_path,
                                                      options):  # fmt: skip
    import pyarrow as pa
    import pyarrow.parquet as pq

    from evplanner.data import VEHICLE_COLUMNS, read_points_dask

    vehicles, _ = load_vehicles(keep_out_of_area=True)
    expected = demand_points(vehicles, tracts=tracts, **options)
    n = len(vehicles)
    table = pa.Table.from_pandas(vehicles, preserve_index=False)
    for sizes in ([n], [n // 2, n - n // 2], [n // 4] * 3 + [n - 3 * (n // 4)],
                  [1_000, 89_000, 1, n - 90_001]):  # fmt: skip
        # Row groups never grouped (blocksize 1), the larger ones cut into row
        # ranges; or all in one partition (blocksize 1 GB); read from disk as the
        # pipeline reads.
        path = tmp_path / f"v{len(sizes)}.parquet"
        with pq.ParquetWriter(path, table.schema) as writer:
            start = 0
            for size in sizes:
                writer.write_table(table.slice(start, size))
                start += size
        for blocksize in (1, "1GB"):
            frame, _ = read_points_dask(path, keep_out_of_area=True,
                                        blocksize=blocksize,
                                        columns=VEHICLE_COLUMNS)  # fmt: skip
            if blocksize == 1:
                assert frame.npartitions >= len(sizes)
            else:
                assert frame.npartitions == 1
            got = demand_points_dask(frame, tracts=tracts, **options)
            pd.testing.assert_frame_equal(got, expected, check_exact=True)
            assert got.attrs["placement"] == expected.attrs["placement"]


def test_dask_names_unknown_filter_values(client):
    import dask.dataframe as dd

    frame = dd.from_pandas(small_vehicles(), npartitions=2)
    with pytest.raises(ValueError, match=r"utilities: no vehicle has \['PSE'\]"):
        demand_points_dask(frame, utilities=["PSE"])
    with pytest.raises(ValueError, match=r"legislative_districts: no vehicle in \[7\]"):
        demand_points_dask(frame, legislative_districts=[7])


def test_combining_partials_by_hand(tracts):
    # The per-frame steps compose: parts placed and summed apart, then combined.
    v = small_vehicles()
    options = {"utilities": ["PUGET SOUND ENERGY INC", "CITY OF SEATTLE - (WA)"]}
    expected = demand_points(v, tracts=tracts, residents_share=0.4, **options)
    parts = [partial_demand(place_vehicles(v.iloc[i : i + 3], tracts)[0], **options)
             for i in (0, 3)]  # fmt: skip
    got = finish_demand(combine_partials(parts), tracts, residents_share=0.4,
                        **options)  # fmt: skip
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    with pytest.raises(ValueError, match="at least one"):
        combine_partials([])


# ---------------------------------------------------------------- synthetic


def test_synthetic_is_deterministic_and_shaped_like_the_data(vehicles, tmp_path):
    demand = demand_points(vehicles)
    a = synthesize_demand(demand, 50_000, seed=7, chunk_rows=20_000)
    b = synthesize_demand(demand, 50_000, seed=7, chunk_rows=20_000)
    c = synthesize_demand(demand, 50_000, seed=8, chunk_rows=20_000)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["lon"], c["lon"])
    assert len(a) == 50_000 and (a["weight"] == 1.0).all()
    # Written in chunks to Parquet: the same points, one row group per chunk.
    import pyarrow.parquet as pq

    path = synthesize_demand(demand, 50_000, seed=7, chunk_rows=20_000,
                             path=tmp_path / "d.parquet")  # fmt: skip
    assert pq.ParquetFile(path).num_row_groups == 3
    pd.testing.assert_frame_equal(pd.read_parquet(path), a)

    # Shaped like the data: King County's share of demand is about its share of
    # vehicles (53%), measured with a box around Seattle-Bellevue.
    def share(frame, w):
        box = frame["lon"].between(-122.5, -121.9) & frame["lat"].between(47.4, 47.8)
        return w[box].sum() / w.sum()

    assert share(a, a["weight"]) == pytest.approx(share(demand, demand["weight"]),
                                                   abs=0.02)  # fmt: skip


def test_synthetic_errors():
    demand = pd.DataFrame({"lon": [1.0], "lat": [2.0], "weight": [0.0]})
    with pytest.raises(ValueError, match="not all zero"):
        synthesize_demand(demand, 10)
    with pytest.raises(ValueError, match="n: expected a positive"):
        synthesize_demand(demand.assign(weight=1.0), 0)


@pytest.mark.parametrize("spread_m", [np.nan, np.inf, -100.0, "3000"])
def test_synthetic_bad_spread_creates_no_file(tmp_path, spread_m):
    demand = pd.DataFrame({"lon": [-122.3], "lat": [47.6], "weight": [1.0]})
    path = tmp_path / "d.parquet"
    with pytest.raises(ValueError, match="spread_m: expected a finite number >= 0 m"):
        synthesize_demand(demand, 10, spread_m=spread_m, path=path)
    assert list(tmp_path.iterdir()) == []
    # An existing file is left as it was.
    path.write_bytes(b"old")
    with pytest.raises(ValueError, match="spread_m"):
        synthesize_demand(demand, 10, spread_m=spread_m, path=path)
    assert path.read_bytes() == b"old" and list(tmp_path.iterdir()) == [path]


def test_synthetic_file_replaced_whole(tmp_path):
    demand = pd.DataFrame({"lon": [-122.3], "lat": [47.6], "weight": [1.0]})
    path = tmp_path / "d.parquet"
    path.write_bytes(b"old")
    synthesize_demand(demand, 25, spread_m=0, path=path, chunk_rows=10)
    frame = pd.read_parquet(path)
    # spread 0: every point on the location itself (up to the projection round trip)
    assert len(frame) == 25 and np.allclose(frame["lon"], -122.3)
    assert list(tmp_path.iterdir()) == [path]
    with pytest.raises(ValueError, match="directory .*nope does not exist"):
        synthesize_demand(demand, 10, path=tmp_path / "nope" / "d.parquet")
    with pytest.raises(ValueError, match="n: expected an integer, got 2.5"):
        synthesize_demand(demand, 2.5)
    # Weights that overflow when summed.
    with pytest.raises(ValueError, match="finite, non-negative"):
        synthesize_demand(pd.concat([demand.assign(weight=1e308)] * 2), 5)
