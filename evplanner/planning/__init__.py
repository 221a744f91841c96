"""The planning layer: a :class:`Scenario` in, a :class:`Plan` out.

Both entry points, the CLI and the web app, call this layer and nothing else to
plan: :func:`solve` (one plan), :func:`sweep` (plans for several numbers of new
sites), :func:`compare_kmeans` (K-Medians against K-Means), and the writers of a
plan's files (:func:`write_plan`; :func:`report_html` for the one-page report). No
Panel or Bokeh here.

Examples
--------
>>> from evplanner.planning import Scenario, solve
>>> plan = solve(Scenario(new_sites=3, counties=["Whitman"]))
>>> plan.sites["kind"].tolist()
['new', 'new', 'new']
>>> 0 < plan.coverage.coverage_share <= 1
True
"""

from evplanner.planning.cluster import dask_client
from evplanner.planning.compare import (
    KMeansComparison,
    compare_kmeans,
    suggest_new_sites,
)
from evplanner.planning.inputs import (
    Demand,
    ExistingSites,
    load_demand,
    load_existing,
    no_existing_sites,
)
from evplanner.planning.plan import METRICS_SCHEMA, SITE_COLUMNS, Plan
from evplanner.planning.report import report_html
from evplanner.planning.scenario import Scenario
from evplanner.planning.solve import solve, sweep
from evplanner.planning.writers import (
    metrics_json,
    site_format,
    sites_bytes,
    write_plan,
)

__all__ = [
    "METRICS_SCHEMA",
    "SITE_COLUMNS",
    "Demand",
    "ExistingSites",
    "KMeansComparison",
    "Plan",
    "Scenario",
    "compare_kmeans",
    "dask_client",
    "load_demand",
    "load_existing",
    "metrics_json",
    "no_existing_sites",
    "report_html",
    "site_format",
    "sites_bytes",
    "solve",
    "suggest_new_sites",
    "sweep",
    "write_plan",
]
