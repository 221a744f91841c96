"""Plots of the planner and the tables behind them, built from a :class:`Solution`.

Pure functions: a solution (and a few display options) in, data frames or HoloViews
elements out. The app wraps the elements in ``DynamicMap``s that depend on the
session's parameters, so a new solution updates the existing Bokeh plots in place
instead of rebuilding them. The main map (:mod:`evplanner.app.live_views`) uses the
frames here with Bokeh data sources directly.

Map coordinates are Web Mercator metres (``x_web``, ``y_web``) so that web tiles can
sit underneath; distances shown are the L1 metres the solver uses, in km.
"""

from __future__ import annotations

import colorcet
import datashader as ds
import holoviews as hv
import numpy as np
import pandas as pd
from holoviews.element import tiles as hv_tiles
from holoviews.operation.datashader import dynspread, rasterize

from evplanner.app.engine import Solution

#: Canvas, not WebGL, for every plot: they hold tens of glyphs, where WebGL gains
#: nothing, and without a GPU (remote desktops, VMs, headless browsers) WebGL is
#: emulated in software and every repaint cost ~0.1 s of CPU. Set per plot, not
#: for the whole process.
CANVAS = {"plot.output_backend": "canvas"}


def bokeh_backend() -> None:
    """Load HoloViews' Bokeh backend (once), which the elements' options need.

    Called by the functions that build elements, not at import, so that importing
    this module changes nothing in the process.
    """
    if "bokeh" not in hv.Store.loaded_backends():
        hv.renderer("bokeh")
    import geoviews.plotting.bokeh  # noqa: F401  (GeoViews' Bokeh plots)


__all__ = [
    "BASEMAPS",
    "CATCHMENT_COLOURS",
    "COLOUR_KEY",
    "MAX_BARS",
    "MAX_HIGHLIGHT_POINTS",
    "bar_frame",
    "catchment_frame",
    "comparison_map",
    "coverage_curve",
    "demand_frame",
    "demand_points",
    "density_layer",
    "distance_histogram_data",
    "elbow_plot",
    "load_per_port_frame",
    "sizing_values",
    "site_colour",
    "site_colours",
    "site_frame",
    "site_loads",
    "tiles",
]

#: Web-tile basemaps; the tiles load in the browser, so with no network they just
#: stay blank and everything else works.
BASEMAPS = {
    "Light (CARTO)": "CartoLight",
    "OpenStreetMap": "OSM",
    "Imagery (Esri)": "EsriImagery",
    "None": "none",
}

#: Colours of catchments. Sites are coloured by ``index % len(CATCHMENT_COLOURS)``:
#: categorical shading keeps one aggregate per colour, so a fixed palette keeps
#: memory bounded at several hundred sites (neighbouring sites sharing a colour is
#: rare with 20 colours spread by index). Demand served by an existing station is
#: grey.
CATCHMENT_COLOURS = list(colorcet.palette["glasbey_category10"][:20])
EXISTING_COLOUR = "#9e9e9e"
HIGHLIGHT_COLOUR = "#e6007e"
_COLOUR_KEYS = [f"c{i:02d}" for i in range(len(CATCHMENT_COLOURS))] + ["existing"]
#: Categorical colour key -> colour, for Datashader's categorical shading.
COLOUR_KEY = dict(zip(_COLOUR_KEYS, [*CATCHMENT_COLOURS, EXISTING_COLOUR], strict=True))

_SITE_VDIMS = [
    "site_id",
    "kind",
    "name",
    "lon",
    "lat",
    "vehicles",
    "share",
    "mean_km",
    "max_km",
]


def tiles(basemap: str = "CartoLight") -> hv.Tiles:
    """The basemap for a :data:`BASEMAPS` value; ``"none"`` hides the tiles.

    Always a tile element, so that a DynamicMap can switch basemaps in place.
    """
    bokeh_backend()
    if basemap == "none":
        return hv_tiles.tile_sources["CartoLight"]().opts(alpha=0.0)
    return hv_tiles.tile_sources[basemap]().opts(alpha=0.75)


def site_colour(labels: np.ndarray, n_new: int) -> pd.Categorical:
    """Categorical colour key of each demand point from its site label."""
    codes = np.where(
        labels < n_new, labels % len(CATCHMENT_COLOURS), len(CATCHMENT_COLOURS)
    )
    return pd.Categorical.from_codes(codes, categories=_COLOUR_KEYS)


def demand_frame(solution: Solution | None) -> pd.DataFrame:
    """Demand points with weight and catchment colour key (empty without a solution).

    Columns ``x_web``, ``y_web`` (Web Mercator metres), ``weight`` and ``colour``
    (categorical over :data:`COLOUR_KEY`: the site's colour, grey for demand served
    by an existing station).
    """
    if solution is None:
        return pd.DataFrame(
            {
                "x_web": [],
                "y_web": [],
                "weight": [],
                "colour": pd.Categorical([], categories=_COLOUR_KEYS),
            }
        )
    d = solution.demand
    return pd.DataFrame(
        {
            "x_web": d["x_web"].to_numpy(),
            "y_web": d["y_web"].to_numpy(),
            "weight": d["weight"].to_numpy(),
            "colour": site_colour(d["label"].to_numpy(), solution.n_new),
        }
    )


def demand_points(solution: Solution | None) -> hv.Points:
    """:func:`demand_frame` as HoloViews points (weight and colour as values)."""
    bokeh_backend()
    return hv.Points(demand_frame(solution), ["x_web", "y_web"], ["weight", "colour"])


#: Aggregate at half the plot's pixel size: the points are spread into dots anyway,
#: and a quarter of the pixels is a quarter of the image sent to the browser.
_PIXEL_RATIO = 0.5


def density_layer(points, extent=None) -> hv.Element:
    """Rasterised demand density (sum of weights per pixel).

    ``extent`` is the initial (x0, y0, x1, y1) in Web Mercator metres: without
    it the first aggregation would span the overlay's full extent (tiles cover the
    world) and come out a few pixels wide.
    """
    ranges = {}
    if extent is not None:
        x0, y0, x1, y1 = extent
        ranges = {"x_range": (x0, x1), "y_range": (y0, y1)}
    raster = rasterize(
        points, aggregator=ds.sum("weight"), pixel_ratio=_PIXEL_RATIO, **ranges
    ).opts(
        cmap=colorcet.fire[40:],
        cnorm="eq_hist",
        colorbar=True,
        clabel="demand weight",
        tools=["hover"],
        alpha=0.9,
    )
    return dynspread(raster, threshold=0.6, max_px=3, shape="circle")


#: Most demand points drawn individually for a highlighted catchment (the heaviest
#: ones); the bundled data's largest catchment has a few hundred.
MAX_HIGHLIGHT_POINTS = 20_000


def catchment_frame(
    solution: Solution | None, selected_site: str | None = None
) -> pd.DataFrame:
    """Demand points (``x_web``, ``y_web``, ``weight``) served by ``selected_site``.

    At most :data:`MAX_HIGHLIGHT_POINTS`, the heaviest: they are drawn one by one
    as rings, which stays cheap for a catchment but not for a whole region.
    """
    if solution is None or selected_site is None:
        return pd.DataFrame({"x_web": [], "y_web": [], "weight": []})
    d = solution.demand
    sel = d.loc[d["site_id"] == selected_site, ["x_web", "y_web", "weight"]]
    if len(sel) > MAX_HIGHLIGHT_POINTS:
        sel = sel.nlargest(MAX_HIGHLIGHT_POINTS, "weight")
    return sel.reset_index(drop=True)


def site_frame(solution: Solution | None, kind: str) -> pd.DataFrame:
    """Sites of one ``kind`` ("new" or "existing") with their display colour.

    New sites take their catchment's colour, existing stations grey.
    """
    cols = ["x_web", "y_web", *_SITE_VDIMS, "colour"]
    if solution is None:
        return pd.DataFrame({c: [] for c in cols})
    s = solution.sites[solution.sites["kind"] == kind].copy()
    s["colour"] = site_colours(len(s), kind)
    return s[cols]


def site_colours(n: int, kind: str) -> np.ndarray:
    """Display colour of ``n`` sites of one kind, in site order.

    New site i takes catchment colour ``i % 20`` (the colour of its demand on the
    map); existing stations are grey.
    """
    if kind != "new":
        return np.full(n, EXISTING_COLOUR, dtype=object)
    return np.asarray(CATCHMENT_COLOURS, dtype=object)[
        np.arange(n) % len(CATCHMENT_COLOURS)
    ]


def distance_histogram_data(solution: Solution | None, bins: int = 40) -> dict:
    """Weighted histogram of distance to the assigned site, for a quad glyph.

    Returns ``left``, ``right`` (bin edges, km, L1) and ``top`` (vehicles per bin)
    arrays of length ``bins``. The last bin also holds everything beyond the 99.5th
    percentile (or the coverage radius, whichever is further), so one far outlier
    does not squash the chart.
    """
    if solution is None:
        return {"left": np.zeros(0), "right": np.zeros(0), "top": np.zeros(0)}
    d = solution.demand
    dist_km = d["dist_m"].to_numpy() / 1000
    top = max(float(np.percentile(dist_km, 99.5)), solution.scenario.radius_m / 1000)
    counts, edges = np.histogram(
        np.minimum(dist_km, top),
        bins=bins,
        range=(0, top * 1.001),
        weights=d["weight"].to_numpy(),
    )
    return {"left": edges[:-1], "right": edges[1:], "top": counts}


#: Most bars shown in the site-load chart (the busiest sites) so labels stay legible.
MAX_BARS = 60


def bar_frame(solution: Solution | None) -> pd.DataFrame:
    """New sites in bar-chart order: busiest first, at most :data:`MAX_BARS`."""
    frame = site_frame(solution, "new")
    return frame.sort_values("vehicles", ascending=False, kind="stable").head(MAX_BARS)


def site_loads(solution: Solution | None) -> hv.Bars:
    """Vehicles served per new site, busiest first (tap a bar to highlight it)."""
    bokeh_backend()
    return hv.Bars(
        bar_frame(solution), ["site_id"], ["vehicles", "colour", "mean_km"]
    ).opts(
        color="colour",
        xrotation=60,
        tools=["tap", "hover"],
        xlabel="site",
        ylabel="vehicles served",
        title="Site loads (tap a bar to highlight its catchment)",
        backend_opts=CANVAS,
    )


#: Colours of the load-per-port bars: within capacity, overloaded.
WITHIN_COLOUR, OVERLOADED_COLOUR = "#4c78a8", "#d62728"
_LOAD_COLUMNS = [
    "site_id",
    "name",
    "vehicles_per_port",
    "capacity_per_port",
    "load_vehicles",
    "ports",
    "ports_to_add",
    "status",
    "colour",
]


def load_per_port_frame(solution: Solution | None) -> pd.DataFrame:
    """Existing stations in load-per-port order: most vehicles per port first, at
    most :data:`MAX_BARS`, only those that serve any vehicles.

    Columns ``site_id``, ``name``, ``vehicles_per_port`` (the plan's load per
    port), ``capacity_per_port`` (the station's capacity in vehicles over its
    ports: its overload threshold per port under the sizing model),
    ``load_vehicles``, ``ports``, ``ports_to_add``, ``status`` ("overloaded" or
    "within capacity") and the bar ``colour``.
    """
    if solution is None:
        return pd.DataFrame({c: [] for c in _LOAD_COLUMNS})
    s = solution.sites
    e = s[(s["kind"] == "existing") & (s["load_vehicles"] > 0) & (s["ports"] > 0)]
    e = e.sort_values("vehicles_per_port", ascending=False, kind="stable")
    e = e.head(MAX_BARS)
    over = e["overloaded"].to_numpy(bool)
    return pd.DataFrame(
        {
            "site_id": e["site_id"].to_numpy(object),
            "name": e["name"].to_numpy(object),
            "vehicles_per_port": e["vehicles_per_port"].to_numpy("f8"),
            "capacity_per_port": (e["capacity_vehicles"] / e["ports"]).to_numpy("f8"),
            "load_vehicles": e["load_vehicles"].to_numpy("f8"),
            "ports": e["ports"].to_numpy("int64"),
            "ports_to_add": e["ports_to_add"].to_numpy("int64"),
            "status": np.where(over, "overloaded", "within capacity").astype(object),
            "colour": np.where(over, OVERLOADED_COLOUR, WITHIN_COLOUR).astype(object),
        }
    )


def sizing_values(solution: Solution | None) -> dict:
    """The plan's sizing headline figures (``metrics()["sizing"]``), or {}.

    ``overloaded`` (existing stations), ``ports_to_add`` (at them),
    ``unserved`` (vehicles), ``extra_sites`` (suggested), ``new_site_ports``
    (ports the new sites need, in all) and ``capacitated``.
    """
    sizing = None if solution is None else solution.plan.sizing
    if not sizing:
        return {}
    return {
        "overloaded": sizing["n_overloaded"],
        "ports_to_add": sizing["ports_to_add"],
        "unserved": sizing["unserved_vehicles"],
        "extra_sites": sizing["suggested_extra_sites"],
        "new_site_ports": sizing["new_site_ports_needed"],
        "capacitated": sizing["capacitated"],
    }


def coverage_curve(solution: Solution | None) -> hv.Overlay:
    """Share of demand within a radius, new network vs today's network.

    Always the same four layers (today's curve is empty without existing
    stations), so that a DynamicMap can update the plot in place.
    """
    bokeh_backend()
    ylabel = ("share_pct", "demand within radius (%)")
    if solution is None:
        c = pd.DataFrame(
            {"radius_km": [1.0], "share_pct": [np.nan], "base_pct": [np.nan]}
        )
        radius_km = 1.0
    else:
        c = solution.curve.assign(
            share_pct=solution.curve["share"] * 100,
            base_pct=solution.curve["baseline_share"] * 100,
        )
        radius_km = solution.scenario.radius_m / 1000
    new = hv.Curve(c, "radius_km", ylabel, label="with new sites").opts(
        color="#4c78a8", tools=["hover"]
    )
    today = hv.Curve(
        c.assign(share_pct=c["base_pct"]), "radius_km", ylabel, label="today's network"
    ).opts(color=EXISTING_COLOUR, line_dash="dashed", tools=["hover"])
    return hv.Overlay(
        [
            new,
            hv.Scatter(new).opts(color="#4c78a8", size=5),
            today,
            hv.VLine(radius_km).opts(color=HIGHLIGHT_COLOUR, line_dash="dotted"),
        ]
    ).opts(
        title="Coverage vs radius",
        xlabel="radius (km)",
        logx=True,
        legend_position="bottom_right",
        backend_opts=CANVAS,
    )


def elbow_plot(sweep: pd.DataFrame | None, k: int | None = None) -> hv.Layout:
    """Objective and coverage vs k from :func:`evplanner.planning.sweep`."""
    bokeh_backend()
    if sweep is None or len(sweep) == 0:
        return hv.Layout(
            [hv.Curve([]).opts(title="Press 'Compute elbow'", backend_opts=CANVAS)]
        )
    f = sweep.assign(
        objective_vkm=sweep["objective_m"] / 1000,
        coverage_pct=sweep["coverage_share"] * 100,
    )
    f = f.rename(columns={"new_sites": "k"})
    obj = hv.Curve(f, "k", ("objective_vkm", "objective (vehicle-km)")).opts(
        tools=["hover"], title="Objective vs k (elbow)"
    )
    cov = hv.Curve(f, "k", ("coverage_pct", "demand within radius (%)")).opts(
        tools=["hover"], title="Coverage vs k", color="#f58518"
    )
    marks = [hv.VLine(k).opts(color=HIGHLIGHT_COLOUR, line_dash="dotted")] if k else []
    return hv.Layout(
        [
            hv.Overlay([obj, hv.Scatter(obj).opts(size=5), *marks]).opts(
                backend_opts=CANVAS
            ),
            hv.Overlay(
                [cov, hv.Scatter(cov).opts(size=5, color="#f58518"), *marks]
            ).opts(backend_opts=CANVAS),
        ]
    ).cols(2)


def comparison_map(
    points, sites: pd.DataFrame, title: str, basemap: str | None, extent=None
):
    """A small map of one algorithm's sites over the demand density.

    Not redrawn on every solve, so it is built from GeoViews elements that carry
    their CRS (the sites and the tiles in Web Mercator; lon/lat shown on hover);
    the density is aggregated in Web Mercator already. (Sites in PlateCarree would
    be projected by GeoViews too, but GeoViews 1.15 fails on cartopy 0.26's
    PlateCarree, whose parameters no longer carry ``lon_0``.)
    """
    import cartopy.crs as ccrs
    import geoviews as gv

    bokeh_backend()
    dots = gv.Points(
        sites, ["x_web", "y_web"], ["lon", "lat"], crs=ccrs.GOOGLE_MERCATOR
    ).opts(color="black", fill_color="white", size=11, line_width=2, tools=["hover"])
    density = density_layer(points, extent).opts(colorbar=False)
    name = basemap if basemap and basemap != "none" else "CartoLight"
    basemap_tiles = gv.tile_sources.tile_sources[name]().opts(
        alpha=0.0 if basemap in (None, "none") else 0.75
    )
    return (basemap_tiles * density * dots).opts(title=title, backend_opts=CANVAS)
