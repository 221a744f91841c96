"""The planner map: datashaded demand, site glyph data, updates of one session's map."""

from __future__ import annotations

import datashader as ds
import datashader.transfer_functions as tf
import numpy as np
import pandas as pd
import pytest
from bokeh.events import RangesUpdate

from evplanner.app import live_views, views
from evplanner.app.live_views import (
    PIXEL_RATIO,
    PLOT_HEIGHT_PX,
    SELECTED_SIZE_PX,
    DemandMap,
    grid_shape,
    pixel_cells,
    shade_demand,
)
from evplanner.app.state import PlannerState, bundled_store


def _demand(n=400, n_sites=23, seed=3):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_sites, n)
    return pd.DataFrame(
        {
            "x_web": rng.uniform(-13.5e6, -13.0e6, n),
            "y_web": rng.uniform(5.7e6, 6.0e6, n),
            "weight": rng.integers(1, 500, n).astype("float64"),
            # 20 new sites' colours cycle; labels >= 20 stand for existing stations.
            "colour": views.site_colour(labels, n_new=20),
        }
    )


X_RANGE, Y_RANGE = (-13.5e6, -13.0e6), (5.7e6, 6.0e6)


@pytest.fixture(scope="module")
def state():
    s = PlannerState(store=bundled_store())
    yield s
    s.close()


def test_grid_keeps_cells_square_and_follows_the_plot_height():
    width, height = grid_shape(X_RANGE, Y_RANGE)
    assert height == int(PLOT_HEIGHT_PX * PIXEL_RATIO)
    cell_w = (X_RANGE[1] - X_RANGE[0]) / width
    cell_h = (Y_RANGE[1] - Y_RANGE[0]) / height
    assert cell_w == pytest.approx(cell_h, rel=0.01)
    assert grid_shape((0, 1e9), (0, 1))[0] <= 1200  # capped for very wide views


@pytest.mark.parametrize("sparse_max", [200_000, 0], ids=["cell-sums", "datashader"])
def test_catchment_image_equals_datashaders_full_categorical_shading(
    monkeypatch, sparse_max
):
    # Both aggregation paths (filled cells summed here, or Datashader's grid)
    # must give exactly the image of Datashader's whole pipeline.
    monkeypatch.setattr(live_views, "SPARSE_MAX_POINTS", sparse_max)
    frame = _demand()
    # A point on the far corner and one outside: edge rules must match too.
    frame.loc[0, ["x_web", "y_web"]] = X_RANGE[1], Y_RANGE[1]
    frame.loc[1, ["x_web", "y_web"]] = X_RANGE[1] + 10, Y_RANGE[0]
    width, height = grid_shape(X_RANGE, Y_RANGE)
    image = shade_demand(frame, X_RANGE, Y_RANGE, width, height, by_site=True)

    canvas = ds.Canvas(
        plot_width=width, plot_height=height, x_range=X_RANGE, y_range=Y_RANGE
    )
    agg = canvas.points(frame, "x_web", "y_web", agg=ds.by("colour", ds.sum("weight")))
    reference = tf.dynspread(
        tf.shade(agg, color_key=views.COLOUR_KEY, min_alpha=90),
        threshold=0.6,
        max_px=3,
        shape="circle",
    )
    assert image.shape == (height, width) and image.dtype == np.uint32
    assert np.array_equal(image, reference.data)
    assert (image != 0).sum() >= frame[["x_web", "y_web"]].round(
        -3
    ).drop_duplicates().shape[0] * 0.5


def test_pixel_cells_follow_datashaders_mapping():
    x = np.array([X_RANGE[0], X_RANGE[1], X_RANGE[1] + 1, np.nan, -13.25e6])
    y = np.array([Y_RANGE[0], Y_RANGE[1], Y_RANGE[0], Y_RANGE[0], 5.85e6])
    cells = pixel_cells(x, y, X_RANGE, Y_RANGE, 10, 4)
    assert cells[0] == 0  # bottom-left corner: first cell
    assert cells[1] == 3 * 10 + 9  # top-right corner: last cell, not outside
    assert cells[2] == -1 and cells[3] == -1  # outside, NaN
    assert cells[4] == 2 * 10 + 5  # the centre: row 2, column 5


def test_density_image_and_empty_demand():
    frame = _demand()
    image = shade_demand(frame, X_RANGE, Y_RANGE, 200, 100, by_site=False)
    assert image.shape == (100, 200) and (image != 0).any()
    empty = shade_demand(frame.iloc[:0], X_RANGE, Y_RANGE, 200, 100)
    assert empty.shape == (100, 200) and not empty.any()
    # Points outside the view leave the image empty rather than failing.
    far = frame.assign(x_web=frame["x_web"] + 1e7)
    assert not shade_demand(far, X_RANGE, Y_RANGE, 200, 100).any()


def test_map_follows_solutions_selection_zoom_and_basemap(state):
    sol = state.solution
    demand_map = DemandMap(state.store.web_extent())
    demand_map.show(sol)
    new = sol.sites[sol.sites["kind"] == "new"]
    assert list(demand_map._new.data["site_id"]) == list(new["site_id"])
    image = demand_map._image.data["image"][0]
    assert image.any()

    site = str(new["site_id"].iloc[1])
    demand_map.select(site)
    sizes = demand_map._new.data["size"]
    assert sizes[1] == SELECTED_SIZE_PX
    assert (np.delete(sizes, 1) < SELECTED_SIZE_PX).all()
    served = (sol.demand["site_id"] == site).sum()
    assert len(demand_map._highlight.data["x_web"]) == served

    # Zooming in re-renders the demand for the visible range only.
    x0, y0, x1, y1 = state.store.web_extent()
    xm, ym = (x0 + x1) / 2, (y0 + y1) / 2
    event = RangesUpdate(
        demand_map.figure, x0=xm, x1=xm + (x1 - x0) / 8, y0=ym, y1=ym + (y1 - y0) / 8
    )
    demand_map._on_ranges(event)
    data = demand_map._image.data
    assert data["x"] == [xm] and data["dw"][0] == pytest.approx((x1 - x0) / 8)
    assert not np.array_equal(data["image"][0], image)

    demand_map.layer = "Demand density"
    assert not np.array_equal(demand_map._image.data["image"][0], data["image"][0])
    demand_map.basemap = "OSM"
    assert "openstreetmap" in demand_map._tiles.tile_source.url
    demand_map.basemap = "none"
    assert demand_map._tiles.visible is False

    demand_map.show(None)
    assert len(demand_map._new.data["site_id"]) == 0
    assert not demand_map._image.data["image"][0].any()
