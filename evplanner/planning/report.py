"""A plan as a one-page HTML report a planner can take to a meeting.

The page is self-contained (the map is an embedded PNG, no scripts, no web fonts,
no tiles), so it opens offline and prints: headline numbers, a static map of demand
and sites, the site table, every assumption and parameter, and the data sources
with their dates.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np

from evplanner.planning.plan import Plan

__all__ = ["report_html", "static_map_png"]

#: Where the bundled files come from (shown instead of their install path).
BUNDLED_DESCRIPTIONS = {
    "vehicles.parquet": (
        "Washington State Department of Licensing, Electric Vehicle Population Data "
        "(data.wa.gov), 150,482-row extract of about late 2023 (model years "
        "1997-2024); vehicle locations are ZIP-code centroids"
    ),
    "stations.parquet": (
        "U.S. Department of Energy, Alternative Fuels Data Center Station Locator "
        "(NREL): public, available electric stations in Washington as of 2025-02-09"
    ),
}

_NEW_COLOUR, _EXISTING_COLOUR, _DEMAND_COLOUR = "#d62728", "#555555", "#4c78a8"
#: Existing sites listed in the report's table (the busiest); all are in the file.
MAX_EXISTING_ROWS = 15


def _describe(source: str) -> str:
    name = Path(source).name
    if "evplanner/bundled" in source.replace("\\", "/") and name in (
        BUNDLED_DESCRIPTIONS
    ):
        return BUNDLED_DESCRIPTIONS[name] + " (bundled with evplanner)"
    return source


def static_map_png(plan: Plan, width_in: float = 7.5, height_in: float = 6.0) -> bytes:
    """A static map of the demand and the sites, as PNG bytes.

    Drawn in the plan's projected CRS (metres, true shape), with a scale bar: demand
    points sized by weight (when the plan kept them: in-memory plans), existing sites
    as grey triangles, new sites as red circles labelled with their ids.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    sites = plan.sites
    demand = plan.demand
    if demand is not None and len(demand):
        w = demand["weight"].to_numpy()
        size = 2 + 60 * np.sqrt(w / w.max())
        ax.scatter(
            demand["x_m"],
            demand["y_m"],
            s=size,
            c=_DEMAND_COLOUR,
            alpha=0.35,
            linewidths=0,
            label="demand (area ~ weight)",
        )
    existing = sites[sites["kind"] == "existing"]
    if len(existing):
        ax.scatter(
            existing["x_m"],
            existing["y_m"],
            s=10,
            marker="^",
            c=_EXISTING_COLOUR,
            linewidths=0,
            label="existing sites",
        )
    new = sites[sites["kind"] == "new"]
    ax.scatter(
        new["x_m"],
        new["y_m"],
        s=70,
        c=_NEW_COLOUR,
        edgecolors="black",
        linewidths=1,
        label="new sites",
        zorder=3,
    )
    if len(new) <= 40:
        for row in new.itertuples():
            ax.annotate(
                row.site_id,
                (row.x_m, row.y_m),
                xytext=(4, 4),
                textcoords="offset points",
                fontsize=7,
                zorder=4,
            )
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    x0, x1 = ax.get_xlim()
    y0, _ = ax.get_ylim()
    # A scale bar of a round length, about a fifth of the width.
    span_km = (x1 - x0) / 5000
    bar_km = next((b for b in (500, 200, 100, 50, 20, 10, 5, 2, 1) if b <= span_km), 1)
    bx, by = x0 + 0.04 * (x1 - x0), y0 + 0.04 * (ax.get_ylim()[1] - y0)
    ax.plot([bx, bx + bar_km * 1000], [by, by], color="black", linewidth=3)
    ax.annotate(
        f"{bar_km:g} km",
        (bx, by),
        xytext=(0, 5),
        textcoords="offset points",
        fontsize=8,
    )
    ax.legend(loc="upper right", fontsize=8, framealpha=0.8)
    ax.set_title(f"Demand and sites ({plan.crs.name})", fontsize=10)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _e(value) -> str:
    return html.escape(str(value))


def _km(metres: float) -> str:
    return "–" if not np.isfinite(metres) else f"{metres / 1000:,.2f} km"


def _pct(share: float | None) -> str:
    return "–" if share is None else f"{100 * share:.1f}%"


def _site_rows(plan: Plan) -> tuple[str, str]:
    sites = plan.sites
    new = sites[sites["kind"] == "new"]
    existing = sites[sites["kind"] == "existing"].sort_values(
        "demand_served", ascending=False, kind="stable"
    )
    shown = existing.head(MAX_EXISTING_ROWS)
    rows = []
    for row in [*new.itertuples(), *shown.itertuples()]:
        rows.append(
            "<tr>"
            + "".join(
                f"<td>{_e(v)}</td>"
                for v in (
                    row.site_id,
                    row.kind,
                    row.name,
                    f"{row.lon:.5f}",
                    f"{row.lat:.5f}",
                    f"{row.vehicles_served:,.0f}",
                    f"{100 * row.share_of_demand:.2f}%",
                    _km(row.mean_distance_m),
                    _km(row.max_distance_m),
                )
            )
            + "</tr>"
        )
    note = ""
    if len(existing) > len(shown):
        note = (
            f"<p class='note'>Showing the {len(shown)} busiest of "
            f"{len(existing):,} existing sites; the sites file lists all of them."
            "</p>"
        )
    return "\n".join(rows), note


#: Overloaded stations listed in the report (most ports to add first).
MAX_OVERLOADED_ROWS = 25


def _sizing_section(plan: Plan) -> str:
    """Overloaded stations, sized new sites, and the capacity model's assumptions."""
    sizing = plan.sizing
    if sizing is None:
        return ""
    sites = plan.sites
    new = sites[sites["kind"] == "new"]
    over = sites[sites["overloaded"]].sort_values(
        ["ports_to_add", "load_vehicles"], ascending=False, kind="stable"
    )
    shown = over.head(MAX_OVERLOADED_ROWS)

    def rows(frame, cells) -> str:
        return "\n".join(
            "<tr>" + "".join(f"<td>{_e(c(r))}</td>" for c in cells) + "</tr>"
            for r in frame.itertuples()
        )

    new_rows = rows(new, (
        lambda r: r.site_id, lambda r: f"{r.load_vehicles:,.0f}",
        lambda r: f"{r.ports:,}", lambda r: f"{r.vehicles_per_port:,.1f}",
        lambda r: f"{r.capacity_vehicles:,.0f}", lambda r: r.action,
    ))  # fmt: skip
    over_rows = rows(shown, (
        lambda r: r.site_id, lambda r: r.name, lambda r: f"{r.load_vehicles:,.0f}",
        lambda r: f"{r.ports:,}", lambda r: f"{r.capacity_vehicles:,.0f}",
        lambda r: f"{r.vehicles_per_port:,.1f}", lambda r: f"{r.ports_to_add:,}",
        lambda r: r.action,
    ))  # fmt: skip
    note = ""
    if len(over) > len(shown):
        note = (f"<p class='note'>Showing the {len(shown)} stations with the most "
                f"ports to add of {len(over):,} overloaded; the sites file lists "
                "all of them (column <code>overloaded</code>).</p>")  # fmt: skip
    per_port = sizing["existing_vehicles_per_port"]
    facts = [
        ("Existing stations overloaded",
         f"{sizing['n_overloaded']:,} of {sizing['existing_with_load']:,} with load"),
        ("Ports to add at overloaded stations", f"{sizing['ports_to_add']:,}"),
        ("Ports the new sites need", f"{sizing['new_site_ports_needed']:,}"),
        ("Vehicles per port at existing stations with load (median / 90th "
         "percentile / worst)",
         " / ".join("–" if per_port[q] is None else f"{per_port[q]:,.1f}"
                    for q in ("median", "p90", "max"))),
        ("Unserved vehicles", f"{sizing['unserved_vehicles']:,.0f}"),
        (f"Suggested extra sites of {sizing['new_site_ports']} ports "
         f"({sizing['new_site_capacity_vehicles']:,.0f} vehicles each)",
         f"{sizing['suggested_extra_sites']:,}"),
    ]  # fmt: skip
    if sizing["capacitated"]:
        facts.append(("Mean distance with capacities (L1)",
                      _km(sizing["mean_distance_m"] or float("nan"))))  # fmt: skip
    fact_rows = "".join(f"<tr><th>{_e(t)}</th><td>{_e(v)}</td></tr>"
                        for t, v in facts)  # fmt: skip
    return f"""<h2>Sizing: ports and capacity</h2>
<table id="sizing-summary">{fact_rows}</table>
<p id="sizing-model">{_e(sizing["description"])}</p>
<p class="note">{_e(sizing["rule"])}</p>
<h3>Overloaded stations: add ports here</h3>
<table id="overloaded"><thead><tr><th>site</th><th>name</th><th>vehicles</th>
<th>ports</th><th>capacity (vehicles)</th><th>vehicles per port</th>
<th>ports to add</th><th>action</th></tr></thead><tbody>
{over_rows}
</tbody></table>{note}
<h3>New sites: build here, this size</h3>
<table id="sized-new-sites"><thead><tr><th>site</th><th>vehicles</th><th>ports</th>
<th>vehicles per port</th><th>capacity (vehicles)</th><th>action</th></tr></thead>
<tbody>
{new_rows}
</tbody></table>
"""


_PARAMETERS = (
    ("new_sites", "New sites placed"),
    ("existing", "Existing sites held fixed"),
    ("radius_m", "Coverage radius (m, L1)"),
    ("candidates", "Candidate sites"),
    ("objective", "Objective"),
    ("snap", "Free sites moved to their nearest candidate"),
    ("weighting", "Demand weighting"),
    ("residents_share", "Share of residents in the demand blend"),
    ("demand_at", "Demand placed at"),
    ("tract_fallback", "Vehicles without a known tract"),
    ("year", "Forecast year (empty: today's registrations)"),
    ("utilities", "Electric utilities (empty: all)"),
    ("legislative_districts", "Legislative districts (empty: all)"),
    ("counties", "Counties (empty: all)"),
    ("ev_types", "EV types (empty: all)"),
    ("model_years", "Model years (empty: all)"),
    ("keep_out_of_area", "Vehicles registered outside WA kept"),
    ("algorithm", "Algorithm"),
    ("seed", "Random seed"),
    ("max_iter", "Iteration cap"),
    ("crs", "CRS requested"),
    ("demand", "Demand files (empty: bundled)"),
    ("sizing", "Sizing model"),
    ("vehicles_per_l2_port", "Ratio model: vehicles per public Level 2 port"),
    ("vehicles_per_dc_port", "Ratio model: vehicles per public DC fast port"),
    ("sessions_per_vehicle_day", "Queue model: public sessions per vehicle per day"),
    ("session_hours", "Queue model: mean session length (h)"),
    ("hours_per_day", "Queue model: hours a day sessions arrive over"),
    ("max_wait_probability", "Queue model target: probability of waiting"),
    ("max_mean_wait_hours", "Queue model target: mean wait (h)"),
    ("new_site_ports", "Ports of one new site"),
    ("capacitated", "Capacity-aware siting"),
)


def report_html(plan: Plan) -> str:
    """The plan as one self-contained HTML page (UTF-8 text)."""
    from evplanner import __version__

    s, c, today = plan.scenario, plan.coverage, plan.today
    radius_km = s.radius_m / 1000
    png = base64.b64encode(static_map_png(plan)).decode("ascii")
    site_rows, site_note = _site_rows(plan)
    headline = [
        ("New sites", f"{c.n_new_sites:,}"),
        ("Existing sites kept", f"{c.n_existing_sites:,}"),
        (f"Demand within {radius_km:g} km, with the new sites", _pct(c.coverage_share)),
        (
            f"Demand within {radius_km:g} km today",
            _pct(today.coverage_share if today else None),
        ),
        ("Mean distance to the nearest site (L1)", _km(c.mean_distance_m)),
        ("90% of demand within", _km(c.p90_distance_m)),
        ("Vehicles planned for", f"{c.total_vehicles:,.0f}"),
    ]
    cards = "".join(
        f"<div class='card'><div class='t'>{_e(t)}</div>"
        f"<div class='v'>{_e(v)}</div></div>"
        for t, v in headline
    )
    parameters = "".join(
        f"<tr><th>{_e(label)}</th><td>{_e(_value(getattr(s, name)))}</td></tr>"
        for name, label in _PARAMETERS
    )
    reports = "".join(
        f"<h3>{_e(title)}</h3><pre>{_e(report.format())}</pre>"
        for title, report in (
            ("Demand", plan.demand_report),
            ("Existing sites", plan.existing_report),
        )
        if report is not None
    )
    notes = "".join(f"<li>{_e(n)}</li>" for n in plan.notes)
    candidates = ("" if plan.candidates is None else
                  f"<li>Candidate sites: {_e(_describe(plan.candidates['source']))} "
                  f"({plan.candidates['n_candidates']:,})</li>")  # fmt: skip
    if plan.demand_report is not None and "tract" in s.demand_at:
        candidates += (
            "<li>Census tracts: U.S. Census Bureau, 2020 Centers of "
            "Population by Census Tract (population and centre of "
            "population of Washington's 1,784 tracts)</li>"
        )
    if s.objective == "coverage":
        goal = (f"Sites maximise the demand within {radius_km:g} km (L1) of a site "
                f"(maximal coverage)")  # fmt: skip
    else:
        goal = ("Sites minimise the demand-weighted Manhattan (L1) distance from each "
                "demand point to its nearest site (weighted K-Medians, the "
                "rectilinear p-median)")  # fmt: skip
    where = (
        ""
        if plan.candidates is None
        else (
            ", chosen among candidate sites"
            + (" (free sites moved to their nearest candidate)" if s.snap else "")
        )
    )
    placed = {
        "tract": "at their 2020 census tract's centre of population",
        "zip": "at their published ZIP-code centroid",
    }[s.demand_at]
    method = (
        f"{goal}{where}; algorithm <code>{_e(s.algorithm)}</code>, seed {s.seed}; "
        f"the existing sites are held fixed. Distances are measured in metres in "
        f"{_e(plan.crs.name)} ({_e(plan.crs.to_string())}). Demand weight is "
        f"counted in {_e(plan.weight_unit)}; {c.n_points:,} demand points"
        + (f" (vehicles placed {placed})" if plan.aggregated else "") + "."
    )  # fmt: skip
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>evplanner plan: {c.n_new_sites} new charging sites</title>
<style>
body {{ font-family: sans-serif; margin: 24px; color: #222; max-width: 1100px; }}
h1 {{ font-size: 20pt; margin-bottom: 4px; }}
h2 {{ font-size: 14pt; margin-top: 22px; }}
.sub {{ color: #555; }} .cards {{ display: flex; flex-wrap: wrap; gap: 8px 26px; }}
.card .t {{ font-size: 9pt; color: #555; }} .card .v {{ font-size: 18pt; }}
table {{ border-collapse: collapse; font-size: 9pt; }}
td, th {{ border-bottom: 1px solid #ddd; padding: 3px 8px; text-align: left; }}
.note {{ color: #555; font-size: 9pt; }} pre {{ font-size: 8pt; }}
img {{ max-width: 100%; border: 1px solid #ddd; }}
@media print {{ body {{ margin: 0; }} }}
</style></head><body>
<h1>Where the next {c.n_new_sites} EV charging sites should go</h1>
<p class="sub">evplanner {_e(__version__)}, plan made {_e(plan.created_utc)} (UTC).</p>
<div class="cards">{cards}</div>
<h2>Map</h2>
<img id="map" alt="Map of demand and sites" src="data:image/png;base64,{png}">
<h2>Sites</h2>
<table id="sites"><thead><tr><th>site</th><th>kind</th><th>name</th><th>lon</th>
<th>lat</th><th>vehicles served</th><th>share of demand</th><th>mean distance</th>
<th>max distance</th></tr></thead><tbody>
{site_rows}
</tbody></table>{site_note}
{_sizing_section(plan)}
<h2>Method and assumptions</h2>
<p>{method}</p>
{"<ul>" + notes + "</ul>" if notes else ""}
<table id="parameters">{parameters}</table>
<h2>Data sources</h2>
<ul><li>Demand: {_e(_describe(plan.demand_source))}</li>
<li>Existing sites: {_e(_describe(plan.existing_source))}</li>
{candidates}</ul>
{reports}
<p class="note">Run: {_e(plan.mode)}, {plan.timings.get("total", 0):.1f} s.</p>
</body></html>
"""


def _value(value) -> str:
    if value is None or value == ():
        return "–"
    if isinstance(value, tuple):
        return ", ".join(map(str, value))
    return str(value)
