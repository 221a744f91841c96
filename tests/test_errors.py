"""Errors and the check of numeric options."""

from __future__ import annotations

import math
import pickle

import pytest

from evplanner.errors import InputError, check_positive


def test_input_error_survives_pickling():
    err = InputError("not a number", path="a.csv", row=3, column="lon", value="x")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is InputError and str(back) == str(err)
    assert (back.path, back.row, back.column, back.value) == ("a.csv", 3, "lon", "x")


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, -1.0, 0, 0.0])
def test_radius_must_be_finite_and_positive(value):
    with pytest.raises(
        ValueError, match=r"--radius-km: expected a finite number > 0 km"
    ):
        check_positive(value, "--radius-km", unit="km")


@pytest.mark.parametrize("value", [True, "5", None])
def test_not_a_number(value):
    with pytest.raises(ValueError, match=f"got {value!r}"):
        check_positive(value, "spread_m", allow_zero=True)


def test_good_values():
    assert check_positive(0, "spread_m", allow_zero=True) == 0.0
    assert check_positive(2, "--radius-km") == 2.0
    assert check_positive(1e-9, "--radius-km") == 1e-9
