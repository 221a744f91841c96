"""What follows every solution: the map, the distance histogram, the status text.

They are on screen whenever a solve lands, so their update must be cheap. Each is
built once per session from Bokeh models, and a solution only replaces the data of
their data sources: for the map, the sites, the highlighted catchment and one RGBA
image that Datashader renders from the demand points (coloured by site, or by
weight; zooming or panning re-renders it for the visible range); for the histogram,
its bars and the radius marker.

Why not HoloViews ``DynamicMap``s, like the plots on the other tabs? Each refreshed
HoloViews layer cost 30-80 ms of server CPU per solution (re-running the element
pipeline, re-syncing the plot's Bokeh models, then a walk over every model of the
page), 245 ms for the five map layers, against a few ms to set the data of a few
sources; with ten sessions in one server process that was the difference between
a k change taking a second and ten (``benchmarks/app_load.py``,
``benchmarks/README.md``).

Coordinates are Web Mercator metres (``x_web``, ``y_web``) so that web tiles fit
underneath; the solver never uses them.
"""

from __future__ import annotations

import logging

import colorcet
import datashader as ds
import datashader.transfer_functions as tf
import numpy as np
import pandas as pd
import panel as pn
import param
import xarray as xr
from bokeh.events import RangesUpdate
from bokeh.models import (
    ColorBar,
    ColumnDataSource,
    Div,
    EqHistColorMapper,
    FactorRange,
    HoverTool,
    LabelSet,
    LogColorMapper,
    Range1d,
    Span,
    TapTool,
    WMTSTileSource,
)
from bokeh.plotting import figure
from holoviews.element import tiles as hv_tiles

from evplanner.app import views
from evplanner.app.engine import RolloutView, Solution

__all__ = [
    "BASEMAPS",
    "LAYERS",
    "DemandMap",
    "DistanceHistogram",
    "LoadPerPortPlot",
    "LiveText",
    "RolloutMap",
    "RolloutPlots",
    "candidate_data",
    "shade_demand",
    "tract_data",
    "year_colours",
]

log = logging.getLogger(__name__)

#: Web-tile basemaps: UI label -> HoloViews tile-source name (``"none"`` = off).
#: The tiles load in the browser, so with no network they stay blank, quietly.
BASEMAPS = views.BASEMAPS
#: How the demand is drawn: by the site that serves it, by its weight, or (census
#: tracts) as EVs per 1,000 residents.
LAYERS = ("Catchments", "Demand density", "EVs per 1,000 residents")
#: Columns of the EVs-per-1,000-residents layer's data source.
_TRACT_COLUMNS = ["x_web", "y_web", "tract_id", "county", "population", "vehicles",
                  "evs_per_1000"]  # fmt: skip
_TRACT_TOOLTIPS = [
    ("tract", "@tract_id (@county)"),
    ("residents", "@population{0,0}"),
    ("EVs", "@vehicles{0,0}"),
    ("EVs per 1,000 residents", "@evs_per_1000{0.0}"),
]

#: Demand is aggregated at this many pixels per screen pixel: the points are spread
#: into dots anyway, and half the resolution is a quarter of the image bytes sent
#: to the browser on every solution.
PIXEL_RATIO = 0.5
#: Plot height in screen pixels; the aggregation grid follows the visible range's
#: aspect ratio from it (the map keeps metres square).
PLOT_HEIGHT_PX = 600
#: Widest aggregation grid, in grid cells, for very wide views.
MAX_GRID_PX = 1200

#: Columns of a site data source taken from ``Solution.sites``, and all of them
#: with the display colour and marker size added.
_SOLUTION_COLUMNS = [
    "x_web",
    "y_web",
    "site_id",
    "kind",
    "name",
    "lon",
    "lat",
    "vehicles",
    "mean_km",
    "max_km",
]
#: Sizing columns of the sites (the plan's site table), shown on hover.
_SIZING_COLUMNS = ["ports", "ports_to_add", "vehicles_per_port", "overloaded"]
#: Display columns derived per kind: the load per port the colour mapper reads
#: (NaN: no load, grey), the outline (red: overloaded) and a new site's label.
_DISPLAY_COLUMNS = ["load_per_port", "line_colour", "line_width", "ports_label"]
_SITE_COLUMNS = [*_SOLUTION_COLUMNS, "colour", "size"]
_MAP_SITE_COLUMNS = [*_SITE_COLUMNS, *_SIZING_COLUMNS, *_DISPLAY_COLUMNS]
_TEXT_COLUMNS = ("site_id", "kind", "name", "colour", "line_colour", "ports_label")
_SITE_TOOLTIPS = [
    ("site", "@site_id"),
    ("lon, lat", "@lon{0.0000}, @lat{0.0000}"),
    ("vehicles served", "@vehicles{0,0}"),
    ("mean distance", "@mean_km{0.0} km"),
    ("max distance", "@max_km{0.0} km"),
]
_NEW_SITE_TOOLTIPS = [
    ("site", "@site_id @name"),  # a candidate's name when sited on candidates
    *_SITE_TOOLTIPS[1:],
    ("ports needed", "@ports"),
]
_STATION_TOOLTIPS = [
    ("station", "@site_id @name"),
    *_SITE_TOOLTIPS[1:],
    ("ports", "@ports"),
    ("vehicles per port", "@vehicles_per_port{0.0}"),
    ("overloaded", "@overloaded"),
    ("ports to add", "@ports_to_add"),
]
#: Outline of an existing station's marker: overloaded (red, thick) or not.
OVERLOAD_LINE = ("#d62728", 3.0)
STATION_LINE = ("#424242", 1.0)
#: Colours of the load per port (vehicles per port, log scale) of the stations.
LOAD_PALETTE = colorcet.palette["CET_L18"]
LOAD_RANGE = (1.0, 1000.0)
#: Size (screen pixels) of a new site's marker, and of the selected one.
SITE_SIZE_PX, SELECTED_SIZE_PX = 14.0, 26.0
#: Size (screen pixels) of an existing station's marker.
STATION_SIZE_PX = 8.0
#: Candidate sites: small dots (there may be thousands), a darker grey than the
#: stations with no load; the chosen ones are ringed by a square under their new
#: site's marker.
CANDIDATE_COLOUR, CANDIDATE_SIZE_PX = "#616161", 5.0
CHOSEN_COLOUR, CHOSEN_SIZE_PX = "#d95f02", 24.0
#: Columns of the candidate data sources (:func:`candidate_data`).
_CANDIDATE_COLUMNS = ["x_web", "y_web", "lon", "lat", "candidate_id", "name",
                      "max_ports_text", "chosen"]  # fmt: skip
_CANDIDATE_TOOLTIPS = [
    ("candidate", "@candidate_id @name"),
    ("lon, lat", "@lon{0.0000}, @lat{0.0000}"),
    ("max ports", "@max_ports_text"),
    ("chosen", "@chosen"),
]


# --------------------------------------------------------------------------------------
# Pure functions: demand -> image, solution -> glyph data
# --------------------------------------------------------------------------------------
def grid_shape(
    x_range, y_range, height_px: int = PLOT_HEIGHT_PX, pixel_ratio: float = PIXEL_RATIO
) -> tuple[int, int]:
    """(width, height) in cells of the aggregation grid for a view.

    The height follows the plot; the width keeps cells square in metres.
    """
    height = max(int(height_px * pixel_ratio), 2)
    dx, dy = x_range[1] - x_range[0], y_range[1] - y_range[0]
    width = int(round(height * dx / dy)) if dy > 0 else height
    return min(max(width, 2), MAX_GRID_PX), height


def shade_demand(
    frame: pd.DataFrame, x_range, y_range, width: int, height: int, by_site: bool = True
) -> np.ndarray:
    """Datashade demand points into an RGBA image for Bokeh's ``image_rgba``.

    Parameters
    ----------
    frame : pd.DataFrame
        ``x_web``, ``y_web`` (metres), ``weight`` and the categorical ``colour``
        key of :func:`evplanner.app.views.demand_frame`.
    x_range, y_range : (float, float)
        Visible range in Web Mercator metres.
    width, height : int
        Grid size in cells.
    by_site : bool
        Colour by catchment (categorical, alpha by weight) when True; otherwise
        by demand weight (histogram-equalised fire colour map).

    Returns
    -------
    np.ndarray of uint32, shape (height, width)
        Packed RGBA, row 0 at the bottom as ``image_rgba`` expects.

    Notes
    -----
    Catchments are Datashader's categorical shading (``ds.by`` colour key, sum of
    weights; ``tf.shade`` with the colour key; ``tf.dynspread``). Its cost is in
    the (height x width x colours) aggregate, 21 MB for the default view, although
    sparse demand fills under 1% of it. Below :data:`SPARSE_MAX_POINTS` points
    only the filled (pixel, colour) cells are summed and shaded (same image,
    tested against the full pipeline); above it Datashader aggregates.
    """
    if len(frame) == 0:
        return np.zeros((height, width), dtype=np.uint32)
    if not by_site:
        canvas = ds.Canvas(
            plot_width=width,
            plot_height=height,
            x_range=tuple(x_range),
            y_range=tuple(y_range),
        )
        agg = canvas.points(frame, "x_web", "y_web", agg=ds.sum("weight"))
        img = tf.shade(agg, cmap=colorcet.fire[40:], how="eq_hist", min_alpha=90)
    else:
        if len(frame) <= SPARSE_MAX_POINTS:
            cells, sums = _sparse_categorical_sums(
                frame, x_range, y_range, width, height
            )
        else:
            canvas = ds.Canvas(
                plot_width=width,
                plot_height=height,
                x_range=tuple(x_range),
                y_range=tuple(y_range),
            )
            agg = canvas.points(
                frame, "x_web", "y_web", agg=ds.by("colour", ds.sum("weight"))
            ).data
            # fmax ignores NaN: NaN only where every category is (empty pixel).
            filled = ~np.isnan(np.fmax.reduce(agg, axis=2))
            cells = np.flatnonzero(filled)
            sums = agg.reshape(-1, agg.shape[2])[cells]
        img = _shade_cells(cells, sums, width, height)
    img = tf.dynspread(img, threshold=0.6, max_px=3, shape="circle")
    return np.ascontiguousarray(img.data, dtype=np.uint32)


#: Largest number of demand points aggregated cell by cell (sorting the points'
#: cell keys); above it Datashader's compiled aggregation is faster.
SPARSE_MAX_POINTS = 200_000


def pixel_cells(
    x: np.ndarray, y: np.ndarray, x_range, y_range, width: int, height: int
) -> np.ndarray:
    """Flat grid cell (``row * width + col``, row 0 at the bottom) of each point.

    Datashader's mapping for points: scale ``n / (end - start)``, translate
    ``-start * scale``, truncate; a point on the far edge goes in the last cell,
    and points outside the ranges (or NaN) get -1.
    """
    (x0, x1), (y0, y1) = x_range, y_range
    sx, sy = width / (x1 - x0), height / (y1 - y0)
    tx, ty = -x0 * sx, -y0 * sy
    inside = (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)
    col = (x[inside] * sx + tx).astype(np.int64)
    row = (y[inside] * sy + ty).astype(np.int64)
    col[col == round(x1 * sx + tx)] = width - 1
    row[row == round(y1 * sy + ty)] = height - 1
    cells = np.full(len(x), -1, dtype=np.int64)
    cells[inside] = row * width + col
    return cells


def _sparse_categorical_sums(frame, x_range, y_range, width, height):
    """Filled cells and their (cells, colours) weight sums (NaN where none)."""
    n_cats = len(frame["colour"].cat.categories)
    cells = pixel_cells(
        frame["x_web"].to_numpy("f8"),
        frame["y_web"].to_numpy("f8"),
        x_range,
        y_range,
        width,
        height,
    )
    ok = cells >= 0
    key = cells[ok] * n_cats + frame["colour"].cat.codes.to_numpy()[ok]
    keys, index = np.unique(key, return_inverse=True)
    weight = np.bincount(index, weights=frame["weight"].to_numpy("f8")[ok])
    filled, row = np.unique(keys // n_cats, return_inverse=True)
    sums = np.full((len(filled), n_cats), np.nan)
    sums[row, keys % n_cats] = weight
    return filled, sums


def _shade_cells(
    cells: np.ndarray, sums: np.ndarray, width: int, height: int
) -> tf.Image:
    """Categorical ``tf.shade`` of the filled cells only, put back on the grid.

    Empty cells neither get a colour nor enter the alpha scaling, so shading a
    one-row strip of the filled cells gives the same image as shading the grid.
    """
    values = np.zeros(height * width, dtype=np.uint32)
    if len(cells):
        strip = xr.DataArray(
            sums[np.newaxis],
            dims=("y", "x", "colour"),
            coords={
                "y": [0.0],
                "x": np.arange(len(cells), dtype="f8"),
                "colour": list(views.COLOUR_KEY),
            },
        )
        values[cells] = tf.shade(strip, color_key=views.COLOUR_KEY, min_alpha=90).data[
            0
        ]
    return tf.Image(
        values.reshape(height, width),
        dims=("y", "x"),
        coords={"y": np.arange(height, dtype="f8"), "x": np.arange(width, dtype="f8")},
    )


def site_data(
    solution: Solution | None, kind: str, selected_site: str | None = None
) -> dict:
    """Columns of a site data source: ``"new"`` or ``"existing"`` sites.

    Plain NumPy columns straight from ``solution.sites`` (a data-frame copy per
    solve costs more than the rest of the update).
    """
    if solution is None:
        return {
            c: np.zeros(0, dtype=object if c in _TEXT_COLUMNS else "f8")
            for c in _MAP_SITE_COLUMNS
        }
    sites = solution.sites
    mask = (sites["kind"] == kind).to_numpy()
    data = {c: sites[c].to_numpy()[mask] for c in _SOLUTION_COLUMNS}
    n = int(mask.sum())
    data["colour"] = views.site_colours(n, kind)
    data["size"] = np.full(n, SITE_SIZE_PX if kind == "new" else STATION_SIZE_PX)
    if selected_site is not None:
        data["size"][data["site_id"] == selected_site] = SELECTED_SIZE_PX
    for c in _SIZING_COLUMNS:
        data[c] = sites[c].to_numpy()[mask]
    per_port = data["vehicles_per_port"].astype("f8")
    data["load_per_port"] = np.where(per_port > 0, per_port, np.nan)
    over = data["overloaded"].astype(bool)
    line = np.where(over, OVERLOAD_LINE[0], STATION_LINE[0]).astype(object)
    data["line_colour"] = line
    data["line_width"] = np.where(over, OVERLOAD_LINE[1], STATION_LINE[1])
    data["ports_label"] = (
        np.array([f"{int(p)} ports" for p in data["ports"]], dtype=object)
        if kind == "new"
        else np.full(n, "", dtype=object)
    )
    return data


def candidate_data(solution: Solution | None, chosen: bool) -> dict:
    """Columns of a candidate data source: the candidate sites that were
    ``chosen`` for new sites, or the others. Empty when sites may go anywhere.

    ``chosen`` is a text column (``"yes"``/``"no"``) for the hover;
    ``max_ports_text`` is the file's ``max_ports`` (``"-"`` when not given).
    """
    if solution is None or solution.candidates.empty:
        return _candidate_columns(None, None, chosen)
    frame = solution.candidates
    return _candidate_columns(frame, frame["chosen"].to_numpy(bool) == chosen, chosen)


def _candidate_columns(frame: pd.DataFrame | None, mask, chosen: bool) -> dict:
    """The rows ``mask`` of a :func:`~evplanner.app.engine.candidate_frame` as
    the columns of a candidate data source (empty for None)."""
    text = ("candidate_id", "name", "max_ports_text", "chosen")
    if frame is None:
        return {c: np.zeros(0, dtype=object if c in text else "f8")
                for c in _CANDIDATE_COLUMNS}  # fmt: skip
    data = {c: frame[c].to_numpy()[mask] for c in ("x_web", "y_web", "lon", "lat")}
    data["candidate_id"] = frame["candidate_id"].astype(str).to_numpy(object)[mask]
    data["name"] = frame["name"].astype("string").fillna("").to_numpy(object)[mask]
    ports = frame["max_ports"].to_numpy("f8")[mask]
    data["max_ports_text"] = np.array(
        ["-" if np.isnan(p) else f"{int(p)}" for p in ports], dtype=object
    )
    data["chosen"] = np.full(int(mask.sum()), "yes" if chosen else "no", object)
    return data


def _is_station(site_id: str | None) -> bool:
    return site_id is not None and site_id.startswith("E")


def highlight_data(solution: Solution | None, selected_site: str | None) -> dict:
    """Columns (``x_web``, ``y_web``) of the demand served by ``selected_site``."""
    frame = views.catchment_frame(solution, selected_site)
    return {"x_web": frame["x_web"].to_numpy(), "y_web": frame["y_web"].to_numpy()}


def tract_data(tracts: pd.DataFrame | None) -> dict:
    """Columns of the EVs-per-1,000-residents layer from
    :meth:`~evplanner.app.engine.DataStore.tract_layer` (tracts with residents)."""
    if tracts is None:
        return {c: np.zeros(0, dtype=object if c in ("tract_id", "county") else "f8")
                for c in _TRACT_COLUMNS}  # fmt: skip
    shown = tracts[tracts["population"] > 0]
    return {c: shown[c].to_numpy() for c in _TRACT_COLUMNS}


def _tile_source(basemap: str) -> WMTSTileSource:
    name = basemap if basemap != "none" else "CartoLight"
    tiles = hv_tiles.tile_sources[name]()
    return WMTSTileSource(url=tiles.data, attribution=_ATTRIBUTION.get(name, ""))


_ATTRIBUTION = {
    "CartoLight": "&copy; OpenStreetMap contributors &copy; CARTO",
    "OSM": "&copy; OpenStreetMap contributors",
    "EsriImagery": "Tiles &copy; Esri",
}


def _map_figure(x_range, y_range, height_px: int, title: str, basemap: str):
    """An empty Web Mercator map with its tile layer: ``(figure, tile renderer)``.

    ``x_range``/``y_range`` are ``(low, high)`` in Web Mercator metres; the tiles
    are hidden when ``basemap`` is ``"none"``.
    """
    fig = figure(
        x_range=Range1d(*x_range),
        y_range=Range1d(*y_range),
        height=height_px,
        sizing_mode="stretch_width",
        match_aspect=True,
        x_axis_type=None,
        y_axis_type=None,
        tools="pan,wheel_zoom,box_zoom,reset,save",
        active_scroll="wheel_zoom",
        output_backend="canvas",
        title=title,
        toolbar_location="above",
    )
    fig.grid.visible = False
    tiles = fig.add_tile(_tile_source(basemap), alpha=0.75)
    show_basemap(tiles, basemap)
    return fig, tiles


def show_basemap(tiles, basemap: str) -> None:
    """Point a tile renderer at ``basemap``; ``"none"`` hides the tiles."""
    tiles.tile_source = _tile_source(basemap)
    tiles.visible = basemap != "none"


# --------------------------------------------------------------------------------------
# The map of one session
# --------------------------------------------------------------------------------------
class DemandMap(param.Parameterized):
    """The map of one session: tiles, demand image, catchment highlight, sites.

    Parameters
    ----------
    extent : (x0, y0, x1, y1)
        Initial view in Web Mercator metres.
    **params
        ``basemap`` and ``layer``.

    Attributes
    ----------
    figure : bokeh.plotting.figure
        The Bokeh figure; wrap it in ``pn.pane.Bokeh`` to show it.
    tapped_site : str or None
        Site id of the new site last tapped on the map (None when cleared).

    Notes
    -----
    :meth:`show` replaces the data of the figure's sources; the figure itself is
    never rebuilt. Range changes in the browser (``RangesUpdate``) re-render the
    demand image for the visible range.
    """

    basemap = param.Selector(default="CartoLight", objects=BASEMAPS, label="Basemap")
    layer = param.Selector(
        default=LAYERS[0], objects=list(LAYERS), label="Demand shown as"
    )
    tapped_site = param.String(default=None, allow_None=True)

    def __init__(self, extent, tracts=None, **params):
        super().__init__(**params)
        # tracts(solution) -> the EVs-per-1,000 layer's frame; asked for only while
        # that layer is shown.
        self._tracts_of = tracts
        x0, y0, x1, y1 = extent
        self._x_range, self._y_range = (x0, x1), (y0, y1)
        self._solution: Solution | None = None
        self._selected: str | None = None
        self._frame = views.demand_frame(None)
        self.figure = self._build_figure()
        self.param.watch(self._on_basemap, "basemap")
        self.param.watch(lambda _: self._show_layer(), "layer")

    # --- building ------------------------------------------------------------------
    def _build_figure(self):
        fig, self._tiles = _map_figure(
            self._x_range,
            self._y_range,
            PLOT_HEIGHT_PX,
            "Demand and sites",
            self.basemap,
        )
        self._image = ColumnDataSource(self._image_data())
        self._image_glyph = fig.image_rgba(
            image="image", x="x", y="y", dw="dw", dh="dh", source=self._image
        )
        self._tract_source = ColumnDataSource(tract_data(None))
        mapper = EqHistColorMapper(palette=colorcet.bmy, nan_color="#bdbdbd")
        self._tract_glyph = fig.scatter(
            "x_web",
            "y_web",
            source=self._tract_source,
            size=7,
            fill_color={"field": "evs_per_1000", "transform": mapper},
            line_color=None,
            fill_alpha=0.85,
            visible=False,
        )
        self._tract_bar = ColorBar(
            color_mapper=mapper, title="EVs per 1,000 residents", visible=False
        )
        fig.add_layout(self._tract_bar, "right")
        self._highlight = ColumnDataSource(highlight_data(None, None))
        fig.scatter(
            "x_web",
            "y_web",
            source=self._highlight,
            size=9,
            fill_color=None,
            line_color=views.HIGHLIGHT_COLOUR,
            line_width=2,
        )
        # Candidate sites (where new sites may go): grey dots; the chosen ones
        # ringed by a square drawn under the new sites' markers.
        self._candidates = ColumnDataSource(candidate_data(None, chosen=False))
        candidates = fig.scatter(
            "x_web",
            "y_web",
            source=self._candidates,
            size=CANDIDATE_SIZE_PX,
            fill_color=CANDIDATE_COLOUR,
            fill_alpha=0.6,
            line_color=None,
            legend_label="candidate sites",
            visible=False,
        )
        self._chosen = ColumnDataSource(candidate_data(None, chosen=True))
        chosen = fig.scatter(
            "x_web",
            "y_web",
            source=self._chosen,
            size=CHOSEN_SIZE_PX,
            marker="square",
            fill_color=None,
            line_color=CHOSEN_COLOUR,
            line_width=3,
            legend_label="chosen candidates (new sites)",
            visible=False,
        )
        self._candidate_glyphs = (candidates, chosen)
        self._existing = ColumnDataSource(site_data(None, "existing"))

        # Existing stations coloured by their load per port (log scale; grey: no
        # vehicles), overloaded ones ringed in red; the selected one larger.
        def load_mapper():
            return LogColorMapper(
                palette=LOAD_PALETTE,
                low=LOAD_RANGE[0],
                high=LOAD_RANGE[1],
                nan_color=views.EXISTING_COLOUR,
            )

        existing = fig.scatter(
            "x_web",
            "y_web",
            source=self._existing,
            size="size",
            marker="triangle",
            fill_color={"field": "load_per_port", "transform": load_mapper()},
            line_color="line_colour",
            line_width="line_width",
            legend_label="existing (colour: vehicles per port; red: overloaded)",
        )
        # The colour bar has a mapper of its own, used by no glyph: BokehJS scans
        # the data of a bar's mapper's glyphs, and scanning while the stations'
        # source is being replaced failed ("Size mismatch" in the browser).
        fig.add_layout(
            ColorBar(color_mapper=load_mapper(), title="vehicles per port (existing)"),
            "right",
        )
        self._new = ColumnDataSource(site_data(None, "new"))
        new = fig.scatter(
            "x_web",
            "y_web",
            source=self._new,
            size="size",
            fill_color="colour",
            line_color="black",
            line_width=2,
            nonselection_fill_alpha=1.0,
            nonselection_line_alpha=1.0,
            selection_line_color=views.HIGHLIGHT_COLOUR,
            legend_label="new sites",
        )
        # Each new site's label: the ports it needs under the sizing model.
        fig.add_layout(
            LabelSet(
                x="x_web",
                y="y_web",
                text="ports_label",
                source=self._new,
                x_offset=10,
                y_offset=6,
                text_font_size="10pt",
                text_font_style="bold",
                background_fill_color="white",
                background_fill_alpha=0.7,
            )
        )
        fig.legend.location = "top_left"
        fig.legend.background_fill_alpha = 0.7
        fig.add_tools(
            HoverTool(renderers=[new], tooltips=_NEW_SITE_TOOLTIPS),
            HoverTool(renderers=[existing], tooltips=_STATION_TOOLTIPS),
            HoverTool(renderers=[self._tract_glyph], tooltips=_TRACT_TOOLTIPS),
            HoverTool(renderers=[candidates, chosen], tooltips=_CANDIDATE_TOOLTIPS),
            TapTool(renderers=[new]),
        )
        self._new.selected.on_change("indices", self._on_tap)
        fig.on_event(RangesUpdate, self._on_ranges)
        return fig

    # --- updates -------------------------------------------------------------------
    def show(self, solution: Solution | None, selected_site: str | None = None):
        """Draw ``solution`` (None clears the map) with ``selected_site`` marked."""
        self._solution, self._selected = solution, selected_site
        self._frame = views.demand_frame(solution)
        self._show_layer()
        self._show_candidates()
        self.select(selected_site, force=True)

    def _show_candidates(self):
        """Draw the solution's candidate sites; hide them (glyphs and legend
        entries) when new sites may go anywhere."""
        self._candidates.data = candidate_data(self._solution, chosen=False)
        self._chosen.data = candidate_data(self._solution, chosen=True)
        shown = self._solution is not None and not self._solution.candidates.empty
        for item in self.figure.legend[0].items:
            if any(r in self._candidate_glyphs for r in item.renderers):
                item.visible = shown
        for glyph in self._candidate_glyphs:
            glyph.visible = shown

    def select(self, selected_site: str | None, force: bool = False):
        """Mark ``selected_site`` and ring the demand points it serves."""
        if selected_site == self._selected and not force:
            return
        previous, self._selected = self._selected, selected_site
        self._new.data = site_data(self._solution, "new", selected_site)
        # An existing station selected (from the load-per-port plot or the table)
        # is drawn larger; its data is redrawn only when it is or was selected.
        if force or _is_station(previous) or _is_station(selected_site):
            self._existing.data = site_data(self._solution, "existing", selected_site)
        self._highlight.data = highlight_data(self._solution, selected_site)
        sites = self._new.data["site_id"]
        indices = [int(i) for i in np.flatnonzero(sites == selected_site)]
        if list(self._new.selected.indices) != indices:
            self._new.selected.indices = indices

    def _image_data(self) -> dict:
        width, height = grid_shape(self._x_range, self._y_range)
        image = shade_demand(
            self._frame,
            self._x_range,
            self._y_range,
            width,
            height,
            by_site=self.layer == LAYERS[0],
        )
        (x0, x1), (y0, y1) = self._x_range, self._y_range
        return {
            "image": [image],
            "x": [x0],
            "y": [y0],
            "dw": [x1 - x0],
            "dh": [y1 - y0],
        }

    def _render_demand(self):
        if self.layer != LAYERS[2]:
            self._image.data = self._image_data()

    @property
    def shows_tracts(self) -> bool:
        """Whether the EVs-per-1,000-residents layer is on."""
        return self.layer == LAYERS[2]

    def _show_layer(self):
        tracts = self.shows_tracts
        self._image_glyph.visible = not tracts
        self._tract_glyph.visible = self._tract_bar.visible = tracts
        if tracts:
            frame = None
            if self._solution is not None and self._tracts_of is not None:
                frame = self._tracts_of(self._solution)
            self._tract_source.data = tract_data(frame)
        else:
            self._render_demand()

    # --- browser events --------------------------------------------------------------
    def _on_ranges(self, event):
        if None in (event.x0, event.x1, event.y0, event.y1):
            return
        ranges = (event.x0, event.x1), (event.y0, event.y1)
        if ranges == (self._x_range, self._y_range):
            return
        self._x_range, self._y_range = ranges
        self._render_demand()

    def _on_tap(self, attr, old, new):
        sites = self._new.data["site_id"]
        tapped = str(sites[new[0]]) if new and new[0] < len(sites) else None
        if tapped != self._selected:
            self.tapped_site = tapped

    def _on_basemap(self, event):
        show_basemap(self._tiles, event.new)


# --------------------------------------------------------------------------------------
# The distance histogram of one session
# --------------------------------------------------------------------------------------
class DistanceHistogram:
    """Weighted histogram of distance to the nearest site, with the radius marked.

    Attributes
    ----------
    figure : bokeh.plotting.figure
        Wrap it in ``pn.pane.Bokeh`` to show it.
    """

    def __init__(self, height_px: int = 320):
        self._bars = ColumnDataSource(views.distance_histogram_data(None))
        fig = figure(
            height=height_px,
            sizing_mode="stretch_width",
            title="Distance to the nearest site (weighted)",
            x_axis_label="distance to site (km, L1)",
            y_axis_label="demand (vehicles)",
            tools="save,reset",
            toolbar_location="above",
            output_backend="canvas",
        )
        bars = fig.quad(
            left="left",
            right="right",
            bottom=0,
            top="top",
            source=self._bars,
            fill_color="#4c78a8",
            line_color=None,
        )
        fig.add_tools(
            HoverTool(
                renderers=[bars],
                tooltips=[
                    ("distance", "@left{0.0}-@right{0.0} km"),
                    ("vehicles", "@top{0,0}"),
                ],
            )
        )
        self._radius = Span(
            location=0,
            dimension="height",
            line_color=views.HIGHLIGHT_COLOUR,
            line_dash="dashed",
            line_width=2,
        )
        fig.add_layout(self._radius)
        fig.y_range.start = 0
        self.figure = fig

    def show(self, solution: Solution | None):
        """Draw the histogram of ``solution`` (None empties it)."""
        self._bars.data = views.distance_histogram_data(solution)
        if solution is not None:
            self._radius.location = solution.scenario.radius_m / 1000


# --------------------------------------------------------------------------------------
# Load per port of the most loaded stations
# --------------------------------------------------------------------------------------
def load_data(solution: Solution | None) -> dict:
    """Columns of the load-per-port plot's source
    (:func:`evplanner.app.views.load_per_port_frame`)."""
    frame = views.load_per_port_frame(solution)
    return {c: frame[c].to_numpy() for c in frame.columns}


class LoadPerPortPlot(param.Parameterized):
    """Vehicles per port of the most loaded existing stations (bars; red:
    overloaded) against each one's capacity per port (black dashes).

    A Bokeh figure whose source each solution replaces, like the histogram: as a
    HoloViews ``Bars`` in a DynamicMap, fewer bars than before made BokehJS fail
    ("Size mismatch") while the page closed.

    Attributes
    ----------
    figure : bokeh.plotting.figure
    tapped_site : str or None
        Site id of the station whose bar was tapped last.
    """

    tapped_site = param.String(default=None, allow_None=True)

    def __init__(self, height_px: int = 360, **params):
        super().__init__(**params)
        self._source = ColumnDataSource(load_data(None))
        fig = figure(
            x_range=FactorRange(factors=[]),
            height=height_px,
            sizing_mode="stretch_width",
            title="Load per port (bars; red: overloaded) against capacity per port "
            "(dashes); tap a bar",
            x_axis_label="existing station (most loaded first)",
            y_axis_label="vehicles per port",
            tools="tap,save,reset",
            toolbar_location="above",
            output_backend="canvas",
        )
        bars = fig.vbar(
            x="site_id",
            top="vehicles_per_port",
            width=0.8,
            source=self._source,
            fill_color="colour",
            line_color=None,
            nonselection_fill_alpha=0.5,
        )
        fig.scatter(
            "site_id",
            "capacity_per_port",
            source=self._source,
            marker="dash",
            size=16,
            line_color="black",
            line_width=3,
        )
        fig.add_tools(
            HoverTool(
                renderers=[bars],
                tooltips=[
                    ("station", "@site_id @name"),
                    ("vehicles per port", "@vehicles_per_port{0.0}"),
                    ("capacity per port", "@capacity_per_port{0.0}"),
                    ("ports", "@ports"),
                    ("ports to add", "@ports_to_add"),
                    ("", "@status"),
                ],
            )
        )
        fig.xaxis.major_label_orientation = 1.05
        fig.y_range.start = 0
        fig.xgrid.visible = False
        self._source.selected.on_change("indices", self._on_tap)
        self.figure = fig

    def show(self, solution: Solution | None):
        """Draw the stations of ``solution`` (None empties the plot)."""
        data = load_data(solution)
        self._source.selected.indices = []
        self.figure.x_range.factors = [str(s) for s in data["site_id"]]
        self._source.data = data

    def _on_tap(self, attr, old, new):
        sites = self._source.data["site_id"]
        if new and new[0] < len(sites):
            self.tapped_site = str(sites[new[0]])


# --------------------------------------------------------------------------------------
# Text that changes with every solve
# --------------------------------------------------------------------------------------
def in_document(change) -> None:
    """Apply ``change`` (a callable that edits plain Bokeh models) safely.

    Panel runs some callbacks (button clicks among them) without the Bokeh
    document lock; Panel's own models cope with that, plain Bokeh models do not
    (Bokeh raises "_pending_writes should be non-None..."). In a served session the
    change is therefore scheduled on the session's event loop, where the lock is
    held; without a server (tests, notebooks) it runs at once.
    """
    doc = pn.state.curdoc
    if doc is not None and doc.session_context is not None:
        pn.state.execute(change, schedule=True)
    else:
        change()


class LiveText:
    """A block of HTML that changes with every solve: a Bokeh ``Div`` set directly.

    Panel's HTML pane re-derives its styling on every update (a few ms of server
    CPU per update, and on its first update a walk over every model of the page,
    ~70 ms); setting a Div's text is one property change.

    Parameters
    ----------
    html : str
        Initial content.
    height_px, min_height_px : int, optional
        Fixed or minimum height in pixels.

    Attributes
    ----------
    div : bokeh.models.Div
        Wrap it in ``pn.pane.Bokeh`` to show it.
    """

    def __init__(
        self,
        html: str = "",
        height_px: int | None = None,
        min_height_px: int | None = None,
    ):
        self.div = Div(
            text=html,
            sizing_mode="stretch_width",
            height=height_px,
            min_height=min_height_px,
        )

    def show(self, html: str):
        """Replace the content (nothing is sent when it is unchanged)."""
        if html != self.div.text:
            self.div.text = html


# --------------------------------------------------------------------------------------
# The staged rollout: the network as of a year, and coverage per year
# --------------------------------------------------------------------------------------
#: Colours of the rollout's years (dark to bright through the years).
YEAR_PALETTE = colorcet.palette["bmy"]


def year_colours(years) -> dict[int, str]:
    """A colour per rollout year, spread evenly over :data:`YEAR_PALETTE`.

    Examples
    --------
    >>> colours = year_colours([2025, 2026, 2027])
    >>> len(colours), colours[2025] != colours[2027]
    (3, True)
    """
    years = sorted(int(y) for y in years)
    if len(years) == 1:
        return {years[0]: YEAR_PALETTE[0]}
    last = len(YEAR_PALETTE) - 1
    return {
        y: YEAR_PALETTE[round(i * last / (len(years) - 1))] for i, y in enumerate(years)
    }


_ROLLOUT_COLUMNS = ["x_web", "y_web", "site_id", "name", "year", "lon", "lat",
                    "vehicles"]  # fmt: skip


def rollout_site_data(view: RolloutView | None, year: int | None) -> dict:
    """Columns of the rollout map's new sites built by ``year``, coloured by the
    year each is built (``colour``; ``label`` for the legend)."""
    if view is None or year is None:
        data = {c: np.zeros(0, dtype="f8") for c in _ROLLOUT_COLUMNS}
        data.update(site_id=np.zeros(0, object), name=np.zeros(0, object),
                    colour=np.zeros(0, object), label=np.zeros(0, object))  # fmt: skip
        return data
    built = view.built_by(year)
    years = built["year"].to_numpy(dtype="int64")
    colours = year_colours(view.years)
    return {
        "x_web": built["x_web"].to_numpy(),
        "y_web": built["y_web"].to_numpy(),
        "site_id": built["site_id"].to_numpy(dtype=object),
        # A candidate's name when the rollout sites on candidates, else "".
        "name": built["name"].astype("string").fillna("").to_numpy(dtype=object),
        "year": years,
        "lon": built["lon"].to_numpy(),
        "lat": built["lat"].to_numpy(),
        # Loads of the last planned year (the rollout's site table).
        "vehicles": built["vehicles_served"].to_numpy("f8"),
        "colour": np.array([colours[y] for y in years], dtype=object),
        "label": np.array([f"built {y}" for y in years], dtype=object),
    }


def rollout_candidate_data(view: RolloutView | None, year: int | None) -> dict:
    """Columns of the rollout map's candidate sites not opened by ``year`` (the
    opened ones are the new sites); empty when sites may go anywhere."""
    if view is None or year is None or view.candidates.empty:
        return {**_candidate_columns(None, None, chosen=False),
                "opens": np.zeros(0, dtype=object)}  # fmt: skip
    frame = view.candidates
    years = frame["year"].to_numpy("f8")
    later = ~(years <= year)  # NaN (never opened) compares False
    data = _candidate_columns(frame, later, chosen=False)
    # For the hover: the year a candidate opens later in the rollout, if any.
    data["opens"] = np.array(
        ["not in this rollout" if np.isnan(y) else f"{int(y)}" for y in years[later]],
        dtype=object,
    )
    return data


class RolloutMap:
    """Map of a staged rollout: today's stations and the new sites built by a year.

    Attributes
    ----------
    figure : bokeh.plotting.figure
        Wrap it in ``pn.pane.Bokeh``; its title names the year shown.
    """

    def __init__(self, extent, height_px: int = 520):
        x0, y0, x1, y1 = extent
        fig, self._tiles = _map_figure(
            (x0, x1),
            (y0, y1),
            height_px,
            "Rollout: press 'Plan staged rollout'",
            "CartoLight",
        )
        self._existing = ColumnDataSource(site_data(None, "existing"))
        fig.scatter("x_web", "y_web", source=self._existing, size=6,
                    marker="triangle", fill_color=views.EXISTING_COLOUR,
                    line_color="#424242", legend_label="today's stations")  # fmt: skip
        # Candidate sites not opened by the year shown (when the rollout sites
        # on candidates): grey dots under the sites, hidden otherwise.
        self._candidates = ColumnDataSource(rollout_candidate_data(None, None))
        self._candidate_glyph = fig.scatter(
            "x_web", "y_web", source=self._candidates, size=CANDIDATE_SIZE_PX,
            fill_color=CANDIDATE_COLOUR, fill_alpha=0.6, line_color=None,
            legend_label="candidate sites (not yet opened)", visible=False,
        )  # fmt: skip
        self._new = ColumnDataSource(rollout_site_data(None, None))
        new = fig.scatter("x_web", "y_web", source=self._new, size=14,
                          fill_color="colour", line_color="black", line_width=2,
                          legend_field="label")  # fmt: skip
        fig.add_tools(
            HoverTool(
                renderers=[new],
                tooltips=[
                    ("site", "@site_id @name"),
                    ("built", "@year"),
                    ("lon, lat", "@lon{0.0000}, @lat{0.0000}"),
                    ("vehicles served (last year)", "@vehicles{0,0}"),
                ],
            ),
            HoverTool(
                renderers=[self._candidate_glyph],
                tooltips=[*_CANDIDATE_TOOLTIPS[:-1], ("opens", "@opens")],
            ),
        )
        fig.legend.location = "top_left"
        fig.legend.background_fill_alpha = 0.7
        self.figure = fig
        self._view: RolloutView | None = None

    def show(self, view: RolloutView | None, year: int | None):
        """Draw the network of ``view`` as of ``year``."""
        if view is not self._view:
            self._view = view
            self._existing.data = _rollout_existing(view)
        self._new.data = rollout_site_data(view, year)
        self._candidates.data = rollout_candidate_data(view, year)
        shown = view is not None and not view.candidates.empty
        for item in self.figure.legend[0].items:
            if self._candidate_glyph in item.renderers:
                item.visible = shown
        self._candidate_glyph.visible = shown
        if view is not None and year is not None:
            row = view.row(year)
            self.figure.title.text = (
                f"Rollout network in {year}: {int(row['sites_built'])} new sites "
                f"built, {row['coverage_pct']:.1f}% within {view.radius_km:g} km"
            )

    def set_basemap(self, basemap: str):
        show_basemap(self._tiles, basemap)


def _rollout_existing(view: RolloutView | None) -> dict:
    if view is None:
        return site_data(None, "existing")
    s = view.sites[view.sites["kind"] == "existing"]
    data = {c: np.zeros(len(s), "f8") for c in _SOLUTION_COLUMNS}
    for c in ("x_web", "y_web", "lon", "lat"):
        data[c] = s[c].to_numpy("f8")
    for c in ("site_id", "kind", "name"):
        data[c] = s[c].to_numpy(dtype=object)
    data["vehicles"] = s["vehicles_served"].to_numpy("f8")
    data["mean_km"] = s["mean_distance_m"].to_numpy("f8") / 1000
    data["max_km"] = s["max_distance_m"].to_numpy("f8") / 1000
    data["colour"] = views.site_colours(len(s), "existing")
    data["size"] = np.full(len(s), SITE_SIZE_PX)
    return data


class RolloutPlots(param.Parameterized):
    """Coverage and mean distance per rollout year, with the shown year marked.

    Two figures sharing the year axis; tapping a year's point on either selects
    that year (``tapped_year``).

    Attributes
    ----------
    coverage, distance : bokeh.plotting.figure
    """

    tapped_year = param.Integer(default=None, allow_None=True)

    def __init__(self, height_px: int = 250, **params):
        super().__init__(**params)
        self._source = ColumnDataSource(_per_year_data(None))
        common = dict(
            height=height_px,
            sizing_mode="stretch_width",
            tools="tap,save,reset",
            toolbar_location="above",
            output_backend="canvas",
            x_axis_label="year",
        )
        self.coverage = figure(
            title="Coverage per year", y_axis_label="demand within radius (%)",
            **common,
        )  # fmt: skip
        self.distance = figure(
            title="Mean distance per year", y_axis_label="mean distance (km, L1)",
            x_range=self.coverage.x_range, **common,
        )  # fmt: skip
        self.coverage.line("year", "coverage_pct", source=self._source,
                           color="#4c78a8", line_width=2,
                           legend_label="with the rollout's sites")  # fmt: skip
        self.coverage.line("year", "today_pct", source=self._source,
                           color=views.EXISTING_COLOUR, line_dash="dashed",
                           line_width=2, legend_label="today's network")  # fmt: skip
        dots = self.coverage.scatter("year", "coverage_pct", source=self._source,
                                     size=9, color="#4c78a8")  # fmt: skip
        self.distance.line("year", "mean_km", source=self._source, color="#f58518",
                           line_width=2)  # fmt: skip
        dist_dots = self.distance.scatter("year", "mean_km", source=self._source,
                                          size=9, color="#f58518")  # fmt: skip
        self.coverage.legend.location = "bottom_right"
        self.coverage.xaxis.ticker.desired_num_ticks = 10
        hover = [("year", "@year"), ("within radius", "@coverage_pct{0.0}%"),
                 ("today's network", "@today_pct{0.0}%"),
                 ("mean distance", "@mean_km{0.00} km"),
                 ("new sites built", "@sites_built")]  # fmt: skip
        self.coverage.add_tools(HoverTool(renderers=[dots], tooltips=hover))
        self.distance.add_tools(HoverTool(renderers=[dist_dots], tooltips=hover))
        self._marks = []
        for fig in (self.coverage, self.distance):
            mark = Span(location=0, dimension="height", line_dash="dotted",
                        line_color=views.HIGHLIGHT_COLOUR, line_width=2,
                        visible=False)  # fmt: skip
            fig.add_layout(mark)
            self._marks.append(mark)
        # Both scatters draw the same source: a tap on either selects its index.
        self._source.selected.on_change("indices", self._on_tap)

    def show(self, view: RolloutView | None, year: int | None):
        """Draw ``view``'s years (if new) and mark ``year``."""
        data = _per_year_data(view)
        if list(data["year"]) != list(self._source.data["year"]) or any(
            not np.array_equal(data[c], self._source.data[c], equal_nan=True)
            for c in ("coverage_pct", "mean_km")
        ):
            self._source.data = data
        for mark in self._marks:
            mark.visible = year is not None and view is not None
            if year is not None:
                mark.location = year

    def _on_tap(self, attr, old, new):
        years = self._source.data["year"]
        if new and new[0] < len(years):
            self.tapped_year = int(years[new[0]])


def _per_year_data(view: RolloutView | None) -> dict:
    columns = ("year", "coverage_pct", "today_pct", "mean_km", "sites_built")
    if view is None:
        return {c: np.zeros(0, "f8") for c in columns}
    f = view.per_year
    return {c: f[c].to_numpy("f8") for c in columns}
