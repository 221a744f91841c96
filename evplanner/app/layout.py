"""The planner page: a Panel template with the controls in the sidebar and the map,
indicators and linked coverage plots in the main area.

:class:`PlannerApp` wires a :class:`~evplanner.app.state.PlannerState` (one per
session) to widgets made from its parameters and to HoloViews ``DynamicMap``s that
depend on its ``solution``; :func:`create_app` returns the template, ready to be
served (``panel serve apps/planner.py``) or embedded (``pn.serve({...: create_app})``).
"""

from __future__ import annotations

import html
import io
import logging
from functools import partial

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import param

from evplanner.app import views
from evplanner.app.engine import (
    CANDIDATE_SUFFIXES,
    MAX_UPLOAD_BYTES,
    MAX_UPLOAD_CANDIDATES,
    MAX_UPLOAD_STATIONS,
    DataStore,
    Solution,
)
from evplanner.app.live_views import (
    DemandMap,
    DistanceHistogram,
    LiveText,
    LoadPerPortPlot,
    RolloutMap,
    RolloutPlots,
    in_document,
)
from evplanner.app.state import K_MAX, QUEUE_PARAMS, PlannerState
from evplanner.app.upload import FileUpload
from evplanner.planning import metrics_json, report_html, sites_bytes

__all__ = ["PlannerApp", "create_app", "alert_html", "headline_html"]

log = logging.getLogger(__name__)

TITLE = "evplanner: where should the next EV charging stations go?"

_TABLE_COLUMNS = {
    "site_id": "site",
    "kind": "kind",
    "name": "name",
    "lon": "lon",
    "lat": "lat",
    "vehicles": "vehicles",
    "share_pct": "share %",
    "mean_km": "mean km",
    "max_km": "max km",
    "evs_per_1000": "EVs / 1,000 residents",
    "ports": "ports",
    "ports_needed": "ports needed",
    "ports_to_add": "ports to add",
    "vehicles_per_port": "vehicles / port",
    "overloaded": "overloaded",
    "action": "action",
}
#: Text columns of the site table (the others are numbers).
_TABLE_TEXT = ("site_id", "kind", "name", "action")
#: Columns of the rollout's per-year table.
_ROLLOUT_COLUMNS = {
    "year": "year",
    "new_sites": "new sites",
    "sites_built": "built so far",
    "total_vehicles": "vehicles (forecast)",
    "coverage_pct": "within radius %",
    "today_pct": "today's network %",
    "mean_km": "mean km",
}


def _hv_pane(obj, **params) -> pn.pane.HoloViews:
    # Axes are not linked across panes: the comparison maps zoom on their own.
    params.setdefault("sizing_mode", "stretch_width")
    return pn.pane.HoloViews(obj, linked_axes=False, **params)


#: Inline styles of the headline numbers (inline: they must survive whatever
#: style sheets the page template gives the Div they are shown in).
_HEADLINE_STYLE = {
    "block": "display:flex;flex-wrap:wrap;gap:4px 28px",
    "title": "font-size:11pt;color:#555",
    "value": "font-size:28pt;line-height:1.2",
}


def headline_html(values: dict, radius_km: float) -> str:
    """Headline numbers as HTML: each figure a title and a value below it.

    ``values`` is :meth:`PlannerApp._indicator_values` (empty without a solution;
    a missing figure shows as a dash).
    """
    r = values.get("radius_km", radius_km)
    figures = [
        ("New sites", values.get("sites"), "{:.0f}"),
        (
            f"Demand within {r:g} km (with new sites)",
            values.get("covered_pct"),
            "{:.1f}%",
        ),
        (f"Today's network within {r:g} km", values.get("baseline_pct"), "{:.1f}%"),
        ("Vehicles covered", values.get("covered"), "{:,.0f}"),
        ("Mean distance (km, L1)", values.get("mean_km"), "{:.2f}"),
        ("Objective (vehicle-km)", values.get("objective"), "{:,.0f}"),
        # Sizing (the plan's metrics["sizing"]).
        ("Ports at new sites", values.get("new_site_ports"), "{:,.0f}"),
        ("Overloaded stations", values.get("overloaded"), "{:,.0f}"),
        ("Ports to add", values.get("ports_to_add"), "{:,.0f}"),
        ("Unserved vehicles", values.get("unserved"), "{:,.0f}"),
        ("Suggested extra sites", values.get("extra_sites"), "{:,.0f}"),
    ]
    style = _HEADLINE_STYLE
    cells = "".join(
        f'<div><div style="{style["title"]}">{html.escape(title)}</div>'
        f'<div style="{style["value"]}">{"–" if v is None else fmt.format(v)}'
        "</div></div>"
        for title, v, fmt in figures
    )
    return f'<div style="{style["block"]}">{cells}</div>'


#: Alert colours (background, text, border) per message level, as Bootstrap's.
_ALERT_COLOURS = {
    "info": ("#cff4fc", "#055160", "#b6effb"),
    "warning": ("#fff3cd", "#664d03", "#ffecb5"),
    "danger": ("#f8d7da", "#842029", "#f5c2c7"),
}


def alert_html(text: str, level: str = "warning") -> str:
    """A message box whose text is shown as text (no Markdown, links or HTML).

    Messages quote user input (file names, header cells), so they are escaped, not
    rendered: ``[x](http://...)`` stays those characters.

    Examples
    --------
    >>> alert_html("[log in](http://x.example) <b>", "info")[-42:]
    '[log in](http://x.example) &lt;b&gt;</div>'
    """
    background, colour, border = _ALERT_COLOURS.get(level, _ALERT_COLOURS["warning"])
    return (
        f'<div role="alert" class="evp-alert" style="background:{background};'
        f"color:{colour};border:1px solid {border};border-radius:6px;"
        f'padding:10px 14px;font-size:14px">{html.escape(text)}</div>'
    )


def report_bytes(plan) -> bytes:
    """The plan's one-page HTML report, as the file's bytes."""
    return report_html(plan).encode("utf-8")


def load_report_text(store: DataStore) -> str:
    """The data load reports (rows read, kept, dropped by reason) as plain text."""
    parts = []
    for title, report in (
        ("Vehicles", store.vehicles_report),
        ("Existing public stations", store.stations_report),
    ):
        parts.append(f"{title}\n{'=' * len(title)}\n{report.format()}\n")
    return "\n".join(parts)


def _status_html(busy: bool, status: str, jobs_done: int = 0) -> str:
    """The status line: a light (amber while busy, green when idle) and the text.

    ``jobs_done`` goes in the text's ``data-jobs-done`` attribute: two solves can
    end with the same line (same sites, same time to 0.01 s), and a page (or a
    test) tells them apart by it.
    """
    colour, word = ("#e69f00", "busy") if busy else ("#2c6e49", "idle")
    return (
        f'<span title="{word}" aria-label="{word}" style="color:{colour}">'
        f'&#9679;</span> <span class="status-text" data-jobs-done="{int(jobs_done)}">'
        f"{html.escape(status)}</span>"
    )


class PlannerApp(param.Parameterized):
    """Views and layout over one session's :class:`PlannerState`.

    Parameters
    ----------
    state : PlannerState, optional
        Default: a new state on the bundled data.
    """

    state = param.ClassSelector(class_=PlannerState, doc="The session's state.")

    def __init__(self, state: PlannerState | None = None, **params):
        if state is None:
            state = PlannerState()
        super().__init__(state=state, **params)
        views.bokeh_backend()
        s = self.state
        # The map and the histogram are on screen for every solve: Bokeh figures
        # whose data sources each solution replaces (see live_views for why).
        self.map = DemandMap(
            s.store.web_extent(), tracts=lambda sol: s.store.tract_layer(sol.scenario)
        )
        self.map.show(s.solution, s.selected_site)
        self.map.param.watch(self._on_map_tap, "tapped_site")
        self.histogram = DistanceHistogram()
        self.histogram.show(s.solution)
        # The status line (with its busy light) and the headline numbers change
        # with every solve too: Bokeh Divs set directly, not Panel panes. The busy
        # light is part of the status text: a text change re-renders one element,
        # whereas a widget's CSS-class change (BooleanStatus) makes Bokeh recompute
        # the whole page layout, twice per solve (busy, then idle); and no CSS
        # animation, which repaints continuously while a solve runs.
        self.status_text = LiveText(
            _status_html(s.busy, s.status, s.jobs_done), height_px=24
        )
        self.headline = LiveText(self._headline(s.solution), min_height_px=80)
        s.param.watch(self._on_status, ["busy", "status", "jobs_done"])
        # The plots on the other tabs are HoloViews DynamicMaps: they update their
        # figures in place while their tab is shown. Explicit Params streams:
        # HoloViews does not follow "state.solution" dependencies on a sub-object.
        solution = hv.streams.Params(s, ["solution"])
        self._bars = hv.DynamicMap(views.site_loads, streams=[solution])
        self._coverage = hv.DynamicMap(views.coverage_curve, streams=[solution])
        self._bar_tap = hv.streams.Selection1D(source=self._bars)
        self._bar_tap.param.watch(self._on_bar_tap, "index")
        # Load per port of the most loaded stations, with each one's capacity per
        # port marked; a tap selects the station like a tap on a site-load bar.
        self.load_plot = LoadPerPortPlot()
        self.load_plot.show(s.solution)
        self.load_plot.param.watch(self._on_load_tap, "tapped_site")
        # Bokeh's DataTable (pn.widgets.DataFrame), not Tabulator: it renders only
        # the visible rows and replacing its data costs the browser a fraction of
        # a Tabulator update (benchmarks/README.md, web app load).
        self.table = pn.widgets.DataFrame(
            value=self._table_frame(s.solution),
            disabled=True,
            show_index=False,
            height=480,
            sizing_mode="stretch_width",
            titles=_TABLE_COLUMNS,
        )
        self.table.param.watch(self._on_table_select, "selection")
        s.param.watch(self._on_solution, "solution")
        s.param.watch(self._on_selected, "selected_site")
        # The staged rollout: a map of the network as of the chosen year, and
        # coverage and mean distance per year with that year marked.
        self.rollout_map = RolloutMap(s.store.web_extent())
        self.rollout_plots = RolloutPlots()
        self.rollout_text = LiveText(self._rollout_html(), min_height_px=24)
        self.rollout_table = pn.widgets.DataFrame(
            value=self._rollout_frame(None),
            disabled=True,
            show_index=False,
            height=220,
            sizing_mode="stretch_width",
            titles=_ROLLOUT_COLUMNS,
        )
        self.year_slider = pn.widgets.IntSlider.from_param(
            s.param.rollout_year, disabled=True, sizing_mode="stretch_width"
        )
        # Plays the years one after another (the same parameter as the slider).
        self.year_player = pn.widgets.Player.from_param(
            s.param.rollout_year,
            name="Play the years",
            interval=1500,
            loop_policy="once",
            show_loop_controls=False,
            disabled=True,
            width=360,
        )
        s.param.watch(self._on_rollout, "rollout")
        s.param.watch(self._on_rollout_year, "rollout_year")
        self.rollout_plots.param.watch(self._on_year_tap, "tapped_year")
        self.map.param.watch(lambda e: self.rollout_map.set_basemap(e.new), "basemap")

    # --- selection links --------------------------------------------------------
    def _select_index(self, index, bars=False):
        sol = self.state.solution
        if sol is None or not index:
            return
        frame = views.bar_frame(sol) if bars else sol.sites[sol.sites["kind"] == "new"]
        if index[0] < len(frame):
            self.state.selected_site = str(frame["site_id"].iloc[index[0]])

    def _on_map_tap(self, event):
        self.state.selected_site = event.new

    def _on_bar_tap(self, event):
        self._select_index(event.new, bars=True)

    def _on_load_tap(self, event):
        if event.new is not None:
            self.state.selected_site = event.new

    def _on_table_select(self, event):
        if event.new:
            frame = self.table.value
            if event.new[0] < len(frame):
                self.state.selected_site = str(frame.iloc[event.new[0]]["site_id"])
        else:
            self.state.selected_site = None

    def _on_selected(self, event):
        in_document(partial(self._show_selected, event.new))

    def _show_selected(self, site_id):
        self.map.select(site_id)
        frame = self.table.value
        if site_id is None:
            if self.table.selection:
                self.table.selection = []
            return
        rows = np.flatnonzero(frame["site_id"].to_numpy() == site_id)
        if len(rows) and list(self.table.selection) != [int(rows[0])]:
            self.table.selection = [int(rows[0])]

    def _on_status(self, *events):
        in_document(
            partial(
                self.status_text.show,
                _status_html(self.state.busy, self.state.status, self.state.jobs_done),
            )
        )

    # --- staged rollout ---------------------------------------------------------------
    def _on_rollout(self, event):
        view = event.new
        if view is not None:
            for widget in (self.year_slider, self.year_player):
                widget.param.update(
                    start=view.years[0],
                    end=view.years[-1],
                    disabled=len(view.years) < 2,
                )
        self.rollout_table.value = self._rollout_frame(view)
        in_document(self._show_rollout)

    def _on_rollout_year(self, event):
        in_document(self._show_rollout)

    def _on_year_tap(self, event):
        if event.new is not None:
            self.state.rollout_year = event.new

    def _show_rollout(self):
        view, year = self.state.rollout, self.state.rollout_year
        self.rollout_map.show(view, year)
        self.rollout_plots.show(view, year)
        self.rollout_text.show(self._rollout_html())

    def _rollout_html(self) -> str:
        view, year = self.state.rollout, self.state.rollout_year
        if view is None:
            return html.escape(
                "Choose the years and the new sites per year, then press "
                "'Plan staged rollout': each year places its sites on that year's "
                "forecast demand, with today's stations and earlier years' sites "
                "held fixed."
            )
        row = view.row(year)
        text = (
            f"Network in {year}: {int(row['sites_built'])} new sites built "
            f"({int(row['new_sites'])} in {int(row['year'])}); "
            f"{row['coverage_pct']:.1f}% of the forecast demand within "
            f"{view.radius_km:g} km (today's network: {row['today_pct']:.1f}%); "
            f"mean distance {row['mean_km']:.2f} km."
        )
        return f'<span class="rollout-text">{html.escape(text)}</span>'

    @staticmethod
    def _rollout_frame(view) -> pd.DataFrame:
        if view is None:
            return pd.DataFrame(
                {c: pd.Series(dtype="float64") for c in _ROLLOUT_COLUMNS}
            )
        f = view.per_year[list(_ROLLOUT_COLUMNS)]
        return f.round({"coverage_pct": 1, "today_pct": 1, "mean_km": 2,
                        "total_vehicles": 0})  # fmt: skip

    def _on_solution(self, event):
        self.map.show(event.new, self.state.selected_site)
        self.histogram.show(event.new)
        self.load_plot.show(event.new)
        self.headline.show(self._headline(event.new))
        self.table.value = self._table_frame(event.new)
        self.table.selection = []

    @staticmethod
    def _table_frame(solution: Solution | None) -> pd.DataFrame:
        if solution is None:
            return pd.DataFrame(
                {
                    c: pd.Series(dtype="object" if c in _TABLE_TEXT else "float64")
                    for c in _TABLE_COLUMNS
                }
            )
        t = solution.sites.assign(
            share_pct=solution.sites["share"] * 100,
            evs_per_1000=solution.sites["evs_per_1000_residents"],
        )
        return t[list(_TABLE_COLUMNS)].round(
            {
                "lon": 5,
                "lat": 5,
                "share_pct": 2,
                "mean_km": 2,
                "max_km": 2,
                "vehicles": 0,
                "evs_per_1000": 1,
                "vehicles_per_port": 1,
            }
        )

    # --- views ------------------------------------------------------------------------
    @param.depends("state.sweep")
    def elbow_view(self):
        return views.elbow_plot(self.state.sweep, self.state.k).opts(
            hv.opts.Curve(responsive=True, height=300)
        )

    @param.depends("state.comparison")
    def comparison_view(self):
        comp = self.state.comparison
        if comp is None:
            return pn.pane.Markdown(
                "Press **Compare K-Medians vs K-Means** to fit both on the same "
                "demand (existing stations left out) and judge them by the L1 "
                "objective and coverage, with and without far outliers."
            )
        comparison, sites = comp
        sol = self.state.solution
        points = views.demand_points(sol)
        table = comparison.table.copy()
        table["objective_vkm"] = table["objective_m"] / 1000
        table["mean_km"] = table["mean_distance_m"] / 1000
        table["coverage_pct"] = table["coverage_share"] * 100
        maps = []
        for method, label in (("kmedians", "K-Medians"), ("kmeans", "K-Means")):
            row = comparison.row(method, "clean")
            title = (
                f"{label}: mean {row['mean_distance_m'] / 1000:.1f} km, "
                f"{row['coverage_share'] * 100:.1f}% within radius"
            )
            maps.append(
                _hv_pane(
                    views.comparison_map(
                        points,
                        sites[method],
                        title,
                        self.map.basemap,
                        self.state.store.web_extent(),
                    ).opts(
                        hv.opts.Overlay(
                            responsive=True, height=380, xaxis=None, yaxis=None
                        )
                    ),
                    sizing_mode="stretch_width",
                )
            )
        cols = [
            "method",
            "case",
            "objective_vkm",
            "mean_km",
            "coverage_pct",
            "shift_mean_m",
            "n_centers_on_outliers",
        ]
        return pn.Column(
            pn.Row(*maps, sizing_mode="stretch_width"),
            pn.widgets.DataFrame(
                table[cols].round(2),
                disabled=True,
                show_index=False,
                height=200,
                sizing_mode="stretch_width",
            ),
            sizing_mode="stretch_width",
        )

    # --- headline numbers -------------------------------------------------------------
    def _indicator_values(self, solution: Solution | None) -> dict:
        if solution is None:
            return {}
        m = solution.plan.coverage
        radius_km = solution.scenario.radius_m / 1000
        base = solution.plan.today
        return views.sizing_values(solution) | {
            "sites": solution.n_new,
            "covered_pct": 100 * m.coverage_share,
            "covered": m.coverage_share * m.total_weight,
            "mean_km": m.mean_distance_m / 1000,
            "objective": m.objective_m / 1000,
            "baseline_pct": 100 * base.coverage_share if base is not None else None,
            "radius_km": radius_km,
        }

    def _headline(self, solution: Solution | None) -> str:
        return headline_html(self._indicator_values(solution), self.state.radius_km)

    # --- controls -----------------------------------------------------------------
    def controls(self) -> pn.Column:
        s = self.state
        W = pn.widgets
        # The size limit holds in the browser (see upload.FileUpload).
        upload = FileUpload(
            on_file=s.upload_stations,
            on_refused=s.refuse_upload,
            label=(
                f"Upload stations CSV (lon, lat; max {MAX_UPLOAD_BYTES / 1e6:g} MB, "
                f"{MAX_UPLOAD_STATIONS:,} stations)"
            ),
            max_bytes=MAX_UPLOAD_BYTES,
            kind="stations",
            sizing_mode="stretch_width",
        )
        candidate_upload = FileUpload(
            on_file=s.upload_candidates,
            on_refused=s.refuse_candidate_upload,
            label=(
                "Upload candidate sites (CSV with lon, lat, GeoJSON or GeoParquet; "
                f"optional name, max_ports; max {MAX_UPLOAD_BYTES / 1e6:g} MB, "
                f"{MAX_UPLOAD_CANDIDATES:,} sites)"
            ),
            max_bytes=MAX_UPLOAD_BYTES,
            accept=",".join(CANDIDATE_SUFFIXES) + ",text/csv,application/geo+json",
            kind="candidates",
            sizing_mode="stretch_width",
        )
        # The blend only means something for a vehicle weighting on tract demand.
        share = W.FloatSlider.from_param(
            s.param.residents_share, disabled=not s.residents_share_applies
        )

        def enable_share(*events):
            share.disabled = not s.residents_share_applies

        s.param.watch(enable_share, ["demand_at", "weighting"])
        sizing = self.sizing_controls()
        rollout_button = W.Button.from_param(s.param.run_rollout, color="primary")
        s.param.watch(
            lambda e: setattr(rollout_button, "loading", e.new), "rollout_busy"
        )
        return pn.Column(
            W.RadioButtonGroup.from_param(
                s.param.quick_k,
                color="primary",
                variant="outline",
                label="Quick pick k",
            ),
            W.EditableIntSlider.from_param(
                s.param.k, start=1, end=100, fixed_start=1, fixed_end=K_MAX
            ),
            W.Select.from_param(s.param.algorithm),
            W.FloatSlider.from_param(s.param.radius_km),
            pn.layout.Divider(),
            W.Select.from_param(s.param.existing),
            upload,
            W.Select.from_param(s.param.candidates),
            candidate_upload,
            W.Select.from_param(s.param.objective),
            pn.layout.Divider(),
            W.Select.from_param(s.param.demand_at),
            W.Select.from_param(s.param.weighting),
            share,
            W.Select.from_param(s.param.year),
            W.MultiChoice.from_param(s.param.counties, placeholder="All counties"),
            W.MultiChoice.from_param(s.param.utilities, placeholder="All utilities"),
            W.MultiChoice.from_param(
                s.param.legislative_districts, placeholder="All districts"
            ),
            W.CheckButtonGroup.from_param(
                s.param.ev_types, color="primary", variant="outline"
            ),
            W.IntRangeSlider.from_param(s.param.model_years),
            W.IntInput.from_param(s.param.seed),
            pn.layout.Divider(),
            *sizing,
            pn.layout.Divider(),
            pn.pane.Markdown("**Staged rollout**", margin=(0, 10)),
            W.IntRangeSlider.from_param(s.param.rollout_years),
            W.IntInput.from_param(s.param.per_year),
            rollout_button,
            pn.layout.Divider(),
            W.Select.from_param(self.map.param.basemap),
            W.RadioButtonGroup.from_param(self.map.param.layer),
            W.Button.from_param(s.param.compute_sweep, color="default"),
            W.Button.from_param(s.param.run_compare, color="default"),
            pn.layout.Divider(),
            pn.pane.Markdown("**Downloads**", margin=(0, 10)),
            *self.downloads(),
            sizing_mode="stretch_width",
        )

    def sizing_controls(self) -> list:
        """The capacity model's controls: the method, its parameters (the ratio's
        or the queue's, whichever applies), ports per new site and capacity-aware
        siting (disabled, with the reason shown, where the scenario refuses it)."""
        s = self.state
        W = pn.widgets
        ratio = [
            W.FloatInput.from_param(s.param.vehicles_per_l2_port),
            W.FloatInput.from_param(s.param.vehicles_per_dc_port),
        ]
        queue = [W.FloatInput.from_param(s.param[name]) for name in QUEUE_PARAMS]
        capacitated = W.Checkbox.from_param(s.param.capacitated)
        reason = pn.pane.HTML("", sizing_mode="stretch_width", margin=(0, 10))

        def follow_method(*events):
            for widget in ratio:
                widget.visible = s.sizing == "ratio"
            for widget in queue:
                widget.param.update(visible=s.sizing == "queue",
                                    disabled=s.sizing != "queue")  # fmt: skip

        def follow_refusal(*events):
            refusal = s.capacitated_refusal
            capacitated.disabled = refusal is not None
            reason.object = (
                ""
                if refusal is None
                else '<div class="capacity-refusal" style="font-size:12px;'
                f'color:#664d03">{html.escape(refusal)}</div>'
            )
            reason.visible = refusal is not None

        follow_method()
        follow_refusal()
        s.param.watch(follow_method, "sizing")
        s.param.watch(
            follow_refusal,
            ["algorithm", "objective", "weighting", "residents_share", "demand_at"],
        )
        return [
            pn.pane.Markdown("**Capacity and sizing**", margin=(0, 10)),
            W.Select.from_param(s.param.sizing),
            *ratio,
            *queue,
            W.IntInput.from_param(s.param.new_site_ports),
            capacitated,
            reason,
        ]

    def downloads(self) -> list:
        """The plan's files, from the planning layer's writers (same bytes as the
        CLI writes), and the data load report."""
        s = self.state

        def file(render):
            def callback():
                if s.solution is None:
                    return io.BytesIO(b"")
                return io.BytesIO(render(s.solution.plan))

            return callback

        def button(render, filename, label):
            return pn.widgets.FileDownload(
                callback=file(render),
                filename=filename,
                label=label,
                color="success",
                variant="outline",
            )

        return [
            button(report_bytes, "evplanner_report.html", "Report (HTML)"),
            button(
                partial(sites_bytes, fmt="csv"), "evplanner_sites.csv", "Sites (CSV)"
            ),
            button(
                partial(sites_bytes, fmt="geojson"),
                "evplanner_sites.geojson",
                "Sites (GeoJSON)",
            ),
            button(
                partial(sites_bytes, fmt="geoparquet"),
                "evplanner_sites.parquet",
                "Sites (GeoParquet)",
            ),
            button(metrics_json, "evplanner_metrics.json", "Metrics (JSON)"),
            pn.widgets.FileDownload(
                callback=lambda: io.StringIO(load_report_text(s.store)),
                filename="evplanner_load_report.txt",
                label="Data load report",
                color="success",
                variant="outline",
            ),
        ]

    # --- page ---------------------------------------------------------------------
    def main(self) -> pn.Column:
        s = self.state
        alert = pn.pane.HTML(
            pn.bind(alert_html, s.param.message, s.param.message_level),
            visible=pn.bind(bool, s.param.message),
            sizing_mode="stretch_width",
            name="message",
        )
        status = pn.pane.Bokeh(
            self.status_text.div,
            name="status",
            margin=(6, 10),
            sizing_mode="stretch_width",
        )
        headline = pn.pane.Bokeh(
            self.headline.div, name="indicators", sizing_mode="stretch_width"
        )
        report = pn.pane.Str(load_report_text(s.store), name="load report")
        plots = pn.Tabs(
            (
                "Distance",
                pn.pane.Bokeh(
                    self.histogram.figure, height=320, sizing_mode="stretch_width"
                ),
            ),
            (
                "Site loads",
                _hv_pane(self._bars.opts(responsive=True, height=320, framewise=True)),
            ),
            (
                "Load per port",
                pn.pane.Bokeh(
                    self.load_plot.figure, height=360, sizing_mode="stretch_width"
                ),
            ),
            (
                "Coverage vs radius",
                _hv_pane(
                    self._coverage.opts(
                        hv.opts.Overlay(responsive=True, height=320),
                        hv.opts.Curve(framewise=True),
                    )
                ),
            ),
            ("Rollout", self.rollout_panel()),
            ("Elbow (choose k)", _hv_pane(self.elbow_view)),
            (
                "K-Medians vs K-Means",
                pn.panel(self.comparison_view, sizing_mode="stretch_width"),
            ),
            ("Data load report", report),
            sizing_mode="stretch_width",
            dynamic=False,
        )
        return pn.Column(
            alert,
            status,
            headline,
            pn.Row(
                pn.pane.Bokeh(
                    self.map.figure, height=600, name="map", sizing_mode="stretch_width"
                ),
                pn.Column(self.table, width=520),
                sizing_mode="stretch_width",
            ),
            plots,
            sizing_mode="stretch_width",
        )

    def rollout_panel(self) -> pn.Column:
        """The rollout tab: the year slider, the network as of that year, coverage
        and mean distance per year (tap a year to show it), the per-year table."""
        return pn.Column(
            pn.Row(self.year_slider, self.year_player, sizing_mode="stretch_width"),
            pn.pane.Bokeh(
                self.rollout_text.div,
                name="rollout summary",
                sizing_mode="stretch_width",
            ),
            pn.Row(
                pn.pane.Bokeh(
                    self.rollout_map.figure, height=520, sizing_mode="stretch_width"
                ),
                pn.Column(
                    pn.pane.Bokeh(
                        self.rollout_plots.coverage,
                        height=250,
                        sizing_mode="stretch_width",
                    ),
                    pn.pane.Bokeh(
                        self.rollout_plots.distance,
                        height=250,
                        sizing_mode="stretch_width",
                    ),
                    sizing_mode="stretch_width",
                ),
                sizing_mode="stretch_width",
            ),
            self.rollout_table,
            sizing_mode="stretch_width",
            name="rollout",
        )

    def template(self) -> pn.template.FastListTemplate:
        return pn.template.FastListTemplate(
            title=TITLE,
            sidebar=[self.controls()],
            main=[self.main()],
            sidebar_width=340,
            accent="#2c6e49",
            header_background="#2c6e49",
            main_layout=None,
            busy_indicator=None,
        )


def create_app(store: DataStore | None = None) -> pn.template.FastListTemplate:
    """Build one session's planner page.

    Parameters
    ----------
    store : DataStore, optional
        Data to plan on; default the bundled vehicles and stations (loaded once per
        process and shared read-only between sessions).

    Returns
    -------
    panel.template.FastListTemplate
        Call ``.servable()`` on it in a ``panel serve`` script, or hand
        ``create_app`` itself to ``pn.serve`` so that each session gets its own.

    Examples
    --------
    >>> import panel as pn                                   # doctest: +SKIP
    >>> pn.serve({"evplanner": create_app}, port=5006)       # doctest: +SKIP
    """
    # The session's Panel resources (per page, as Panel's apps do); HoloViews'
    # Bokeh backend loads with the first plot (views.bokeh_backend).
    pn.extension(notifications=False)
    state = PlannerState(store=store)
    app = PlannerApp(state=state)
    template = app.template()
    if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
        pn.state.on_session_destroyed(lambda ctx: _end_session(state, template))
    return template


def _end_session(state: PlannerState, page) -> None:
    """Release what a destroyed session leaves in process-wide registries.

    Stops the session's solver thread, and drops the page's widgets from Panel's
    registry of JavaScript callbacks and links (``panel.links.Callback.registry``,
    one for all sessions). That registry is weakly keyed by the source widget,
    but its values hold the targets: the k slider's text box
    (``EditableIntSlider``) holds a callback whose target is the slider, which
    watches the composite that holds the text box, so the value keeps its own key
    alive and with it the whole session (state, solution, Bokeh models: ~1 MB per
    session) for the life of the process.
    """
    from panel.links import Callback

    state.close()
    # The sidebar and main area hold every widget of the page (the template's own
    # objects, such as its BrowserInfo, cannot be walked with select()).
    for root in (*page.sidebar, *page.main):
        for widget in root.select():
            Callback.registry.pop(widget, None)
