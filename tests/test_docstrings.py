"""The examples in the public docstrings run and give what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize(
    "module",
    ["evplanner.errors", "evplanner.projection", "evplanner.data", "evplanner.demand",
     "evplanner.forecast", "evplanner.kmedians"],
)  # fmt: skip
def test_docstring_examples(module):
    result = doctest.testmod(
        importlib.import_module(module), optionflags=doctest.ELLIPSIS
    )
    assert result.failed == 0
