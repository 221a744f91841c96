"""evplanner: place EV charging stations with weighted K-Medians (L1 distance, metres).

The layout follows the data flow: :mod:`evplanner.data` (files in, load reports) ->
:mod:`evplanner.projection` and :mod:`evplanner.demand` (metres, weighted demand
points) -> :mod:`evplanner.kmedians` and :mod:`evplanner.max_coverage` (the
models) -> :mod:`evplanner.metrics` (coverage) -> :mod:`evplanner.app` and
:mod:`evplanner.cli` (entry points); :mod:`evplanner.forecast` turns the demand
into demand for a target year.
"""

from importlib import import_module

__version__ = "0.1.0"

# Public names, imported on first use so that `import evplanner` (and the CLI's
# start-up) does not pay for numba, dask and scikit-learn until they are needed.
_EXPORTS = {
    "InputError": "evplanner.errors",
    "LoadReport": "evplanner.data",
    "load_vehicles": "evplanner.data",
    "load_stations": "evplanner.data",
    "load_tracts": "evplanner.data",
    "demand_points": "evplanner.demand",
    "forecast_demand": "evplanner.forecast",
    "synthesize_demand": "evplanner.demand",
    "choose_crs": "evplanner.projection",
    "KMedians": "evplanner.kmedians",
    "k_medians": "evplanner.kmedians",
    "MaxCoverage": "evplanner.max_coverage",
    "Scenario": "evplanner.planning",
    "Plan": "evplanner.planning",
    "solve": "evplanner.planning",
    "sweep": "evplanner.planning",
    "arrays_from_geodataframes": "evplanner.geoframes",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'evplanner' has no attribute {name!r}")
