"""Scenario: validated once, normalised, hashable; errors name the field and value."""

from __future__ import annotations

import math

import pytest

from evplanner.errors import InputError
from evplanner.planning import Scenario


def test_defaults_and_normalisation():
    s = Scenario(new_sites=5.0, counties=["King", " Pierce "], ev_types=["bev", "PHEV"],
                 model_years=[2018, "2023"], radius_m=2500)  # fmt: skip
    assert s.new_sites == 5 and isinstance(s.new_sites, int)
    assert s.counties == ("King", "Pierce")
    assert s.ev_types == ()  # both types is no filter
    assert s.model_years == (2018, 2023)
    assert s.radius_m == 2500.0
    assert Scenario(ev_types="bev").ev_types == ("BEV",)
    assert s.existing_kind == "none"
    assert Scenario(existing="dc_fast").existing_kind == "dc_fast"
    assert Scenario(existing="upload:abc").existing_kind == "upload"
    assert Scenario(existing="my.csv").existing_kind == "file"


def test_equal_scenarios_hash_equal_and_keys_separate_radius():
    a = Scenario(new_sites=4, ev_types=["PHEV", "BEV"], counties=["King"])
    b = Scenario(new_sites=4, ev_types=(), counties=("King",))
    assert a == b and hash(a) == hash(b)
    c = b.replace(radius_m=9000.0)
    assert c != b and c.sites_key == b.sites_key and c.demand_key == b.demand_key
    assert b.replace(new_sites=5).sites_key != b.sites_key


def test_to_dict_is_plain():
    d = Scenario(counties=["King"], model_years=(2019, 2020)).to_dict()
    assert d["counties"] == ["King"] and d["model_years"] == [2019, 2020]
    assert set(d) == set(Scenario.field_names())


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("new_sites", 0, "an integer between 1 and"),
    ("new_sites", 2.5, "an integer"),
    ("new_sites", True, "an integer"),
    ("new_sites", "7", "an integer"),
    ("ev_types", ["HYDROGEN"], "some of ('BEV', 'PHEV')"),
    ("model_years", (2023, 2018), "first <= last"),
    ("model_years", ("x", 2), "(first, last)"),
    ("weighting", "miles", "one of ('vehicles', 'bev', 'range', 'residents')"),
    ("demand_at", "county", "one of ('tract', 'zip')"),
    ("tract_fallback", "guess", "one of ('drop', 'zip')"),
    ("residents_share", 1.5, "a share from 0 to 1"),
    ("legislative_districts", [0], "district numbers 1 to 49"),
    ("year", 3000, "an integer between 1990 and 2100"),
    ("existing", "", "one of ('none', 'public', 'dc_fast')"),
    ("radius_m", math.inf, "a finite distance > 0"),
    ("radius_m", math.nan, "a finite distance > 0"),
    ("radius_m", -5, "a finite distance > 0"),
    ("radius_m", "far", "a finite distance > 0"),
    ("algorithm", "dbscan", "one of ('kmedians', 'kmeans')"),
    ("seed", -1, "an integer between 0 and"),
    ("max_iter", 0, "an integer >= 1"),
    ("counties", [""], "non-empty names"),
    ("crs", "", "'auto' or an EPSG code"),
])  # fmt: skip
def test_bad_values_name_the_field_and_value(field, value, expected):
    with pytest.raises(InputError) as caught:
        Scenario(**{field: value})
    assert caught.value.field == field
    message = str(caught.value)
    assert message.startswith(f"{field}: expected {expected}")
    assert repr(value) in message


def test_replace_validates():
    with pytest.raises(InputError, match="new_sites"):
        Scenario().replace(new_sites=-2)


def test_residents_and_forecasts_need_tract_demand():
    with pytest.raises(InputError, match="demand_at: expected 'tract'"):
        Scenario(weighting="residents", demand_at="zip")
    with pytest.raises(InputError, match="year"):
        Scenario(year=2030, weighting="bev")
    s = Scenario(year=2030, legislative_districts=[5, 1, 5], utilities="PUGET SOUND")
    assert s.legislative_districts == (1, 5) and s.utilities == ("PUGET SOUND",)
