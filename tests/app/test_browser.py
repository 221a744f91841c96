"""Use the served planner as a person does, in Debian's Chromium through Playwright.

The page is served by ``panel serve apps/planner.py`` on a free loopback port and
every request that leaves the machine (web tiles, web fonts) is aborted, so the tests
also prove that the app works with no network and that failing tiles are quiet.

Every test clicks, types, selects and uploads through the real widgets and checks
what the page shows (text, the plots' own data in BokehJS, downloaded files). The
``page`` fixture fails a test on any error in the page or in the server's log.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.app.test_server import log_errors, serve_planner

playwright = pytest.importorskip("playwright.sync_api")

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
TIMEOUT_MS = 120_000
#: The two file choosers (``FileUpload``'s ``kind``).
STATIONS_CHOOSER = "input[type='file'][data-upload='stations']"
CANDIDATES_CHOOSER = "input[type='file'][data-upload='candidates']"
# Console noise about the tiles and fonts we block on purpose, and two warnings
# of the widgets' own libraries about options they do not use.
ALLOWED_CONSOLE = re.compile(
    r"^Failed to load resource|unable to load https?://|attempting to load https?://"
    r"|jquery-ui is required to enable DataTable.reorderable|allowHTML will default"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log_path = tmp_path_factory.mktemp("server") / "panel_serve.log"
    with serve_planner(log_path) as url:
        yield url, log_path


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Debian chromium not installed at {CHROMIUM}")
    with playwright.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def open_solved(pg, url: str) -> None:
    """Open the planner in ``pg`` and wait for its first solution.

    Requests off the server's host are aborted: the tests never reach the network
    (map tiles included).
    """
    host = urlsplit(url).netloc
    pg.route(
        "**/*",
        lambda route: (
            route.continue_()
            if urlsplit(route.request.url).netloc == host
            else route.abort()
        ),
    )
    pg.goto(url, timeout=TIMEOUT_MS)
    pg.get_by_text("Solved: 7 new sites").wait_for(timeout=TIMEOUT_MS)


@pytest.fixture
def page(server, browser):
    """A new session's page, opened and solved; fails the test on any error."""
    url, log_path = server
    host = urlsplit(url).netloc
    log_start = len(log_path.read_text())
    context = browser.new_context(
        viewport={"width": 1500, "height": 1200}, accept_downloads=True
    )
    pg = context.new_page()
    console, page_errors, failed = [], [], []
    pg.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: page_errors.append(str(e)))
    pg.on("requestfailed", lambda r: failed.append(r.url))
    open_solved(pg, url)
    yield pg
    pg.wait_for_timeout(300)  # let late updates land before judging the logs
    context.close()
    time.sleep(0.5)  # let the server flush its log
    # Only requests we aborted on purpose (off the machine) may fail.
    assert all(urlsplit(u).netloc != host for u in failed), failed
    assert [e for e in console if not ALLOWED_CONSOLE.search(e)] == []
    assert page_errors == []
    new_log = log_path.read_text()[log_start:]
    scratch = log_path.with_name("since_test.log")
    scratch.write_text(new_log)
    assert log_errors(scratch) == [], new_log


# --------------------------------------------------------------------------- reading


def indicator(page, title: str) -> str:
    """Text of the value under a headline number's title."""
    return page.evaluate(
        """(title) => {
            const walk = (root) => {
                for (const el of root.querySelectorAll('*')) {
                    if (el.shadowRoot) {
                        const r = walk(el.shadowRoot);
                        if (r) return r;
                    }
                    if (el.children.length === 0 && el.textContent.trim() === title) {
                        const value = el.nextElementSibling;
                        if (value) return value.textContent.trim();
                    }
                }
                return null;
            };
            return walk(document);
        }""",
        title,
    )


def status(page) -> str:
    """The status line's text (under the busy light)."""
    return page.locator(".status-text").first.text_content().strip()


def map_new_sites(page) -> int:
    """Number of new sites in the map's data source, read from BokehJS."""
    return page.evaluate(
        """() => {
            for (const doc of window.Bokeh.documents)
                for (const m of doc.all_models)
                    if (m.data && m.data.site_id && m.data.size && m.data.colour)
                        return m.data.site_id.length;
            return -1;
        }"""
    )


def table_kinds(page) -> dict[str, int]:
    """Rows of the site table per kind ("new", "existing"), read from BokehJS."""
    return page.evaluate(
        """() => {
            for (const doc of window.Bokeh.documents)
                for (const m of doc.all_models)
                    if (m.data && m.data.share_pct && m.data.kind) {
                        const out = {};
                        for (const k of m.data.kind) out[k] = (out[k] || 0) + 1;
                        return out;
                    }
            return null;
        }"""
    )


def source_column(page, marker: str, column: str) -> list | None:
    """Column ``column`` of the first BokehJS data source that has a column
    ``marker`` (as a plain list), or None."""
    return page.evaluate(
        """([marker, column]) => {
            for (const doc of window.Bokeh.documents)
                for (const m of doc.all_models)
                    if (m.data && m.data[marker] !== undefined
                        && m.data[column] !== undefined)
                        return Array.from(m.data[column]);
            return null;
        }""",
        [marker, column],
    )


VISIBLE_PLOTS_JS = """() => {
    // Every Bokeh plot with a title whose view is drawn and visible in the page:
    // title -> [width, height] in CSS pixels.
    const out = {};
    const roots = Object.values(window.Bokeh.index);
    for (const doc of window.Bokeh.documents)
        for (const m of doc.all_models) {
            if (m.renderers === undefined || !m.title || m.title.text === undefined)
                continue;
            for (const root of roots) {
                const view = root.owner.find_one(m);
                if (!view) continue;
                const box = view.el.getBoundingClientRect();
                if (view.el.checkVisibility({checkOpacity: true,
                                             checkVisibilityCSS: true}))
                    out[m.title.text] = [Math.round(box.width),
                                         Math.round(box.height)];
            }
        }
    return out;
}"""


def visible_plots(page) -> dict[str, list[int]]:
    return page.evaluate(VISIBLE_PLOTS_JS)


def wait_for_plot(page, title_start: str, min_w: int = 200, min_h: int = 150) -> list:
    """Wait until a plot whose title starts with ``title_start`` is drawn, sized."""
    deadline = time.monotonic() + 60
    while True:
        for title, size in visible_plots(page).items():
            if title.startswith(title_start) and size[0] >= min_w and size[1] >= min_h:
                return size
        if time.monotonic() > deadline:
            raise AssertionError(
                f"no visible plot titled {title_start!r}: {visible_plots(page)}"
            )
        page.wait_for_timeout(250)


def wait_until(page, predicate, what: str, timeout_s: float = TIMEOUT_MS / 1000):
    """Poll ``predicate`` until it holds; on a timeout, say what the page showed."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout_s:.0f} s waiting for {what}; the status "
                f"line reads {status(page)!r} ({busy_word(page)}, "
                f"{jobs_done(page)} jobs done)"
            )
        page.wait_for_timeout(200)


def open_tab(page, name: str) -> None:
    page.locator(".bk-tab", has_text=name).first.click()


def solved_for(page, k: int) -> None:
    page.get_by_text(f"Solved: {k} new sites (k={k})").wait_for(timeout=TIMEOUT_MS)


def set_rollout(page, per_year: int, steps_left: int) -> None:
    """Type the new sites per year; move the rollout's last year (2030) left."""
    field = page.get_by_label("New sites per year")
    field.fill(str(per_year))
    field.press("Enter")
    years = page.locator(".bk-input-group", has_text="Rollout years")
    upper = years.get_by_role("slider").nth(1)
    upper.focus()
    for _ in range(steps_left):
        upper.press("ArrowLeft")
    page.wait_for_timeout(500)  # the slider's value reaches the server


def jobs_done(page) -> int:
    """Jobs the session has finished (the status line's ``data-jobs-done``)."""
    value = page.locator(".status-text").first.get_attribute("data-jobs-done")
    return int(value or 0)


def busy_word(page) -> str:
    """The status light's word: "busy" while a job runs, else "idle"."""
    return page.locator(".status-text").first.evaluate(
        "el => el.previousElementSibling ? el.previousElementSibling.title : '?'"
    )


def solve_mark(page) -> tuple[str, int]:
    """The status line and the jobs finished, taken before an action."""
    return status(page), jobs_done(page)


def wait_new_solution(page, before: tuple[str, int]) -> None:
    """Wait for a status line that reports a solve finished after ``before``.

    ``before`` is :func:`solve_mark` taken before the action. A line equal to the
    old one counts when the session finished another job since (two solves can
    end with the same words: same demand, same time to 0.01 s).
    """
    text, done = before
    wait_until(
        page,
        lambda: (
            (status(page) != text or jobs_done(page) > done)
            and status(page).startswith(("Solved", "Kept"))
        ),
        "a new solve",
    )


def pct(text: str) -> float:
    return float(text.rstrip("%"))


# --------------------------------------------------------------------------- tests


def test_quick_pick_k_updates_sites_indicators_and_map(page, tmp_path):
    # The page opens with today's public stations fixed: the table lists the 7
    # new sites and the 2,473 stations with their loads.
    assert table_kinds(page) == {"new": 7, "existing": 2473}
    assert indicator(page, "New sites") == "7"
    assert map_new_sites(page) == 7
    covered_before = indicator(page, "Demand within 5 km (with new sites)")
    objective_before = indicator(page, "Objective (vehicle-km)")
    assert re.fullmatch(r"\d+\.\d%", covered_before)

    page.get_by_role("button", name="15", exact=True).click()
    solved_for(page, 15)
    wait_until(page, lambda: table_kinds(page)["new"] == 15, "15 new sites listed")
    assert indicator(page, "New sites") == "15"
    assert map_new_sites(page) == 15  # the map's own data, not just the table
    assert pct(indicator(page, "Demand within 5 km (with new sites)")) > pct(
        covered_before
    )
    assert float(indicator(page, "Objective (vehicle-km)").replace(",", "")) < float(
        objective_before.replace(",", "")
    )
    shot = tmp_path / "planner_k15.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


def test_k_typed_and_slider_keys(page):
    # The editable slider's number box (the first text box of the sidebar).
    k_box = page.get_by_role("textbox").first
    assert k_box.input_value() == "7"
    k_box.fill("12")
    k_box.press("Enter")
    solved_for(page, 12)
    assert map_new_sites(page) == 12
    slider = page.get_by_role("slider").first
    slider.focus()
    slider.press("ArrowRight")
    solved_for(page, 13)
    assert indicator(page, "New sites") == "13"


def test_selects_change_the_plan(page):
    # The page opens with today's public network held fixed, and measured.
    network = pct(indicator(page, "Today's network within 5 km"))
    before = solve_mark(page)
    page.get_by_label("Existing stations (kept fixed)").select_option(label="None")
    wait_new_solution(page, before)
    wait_until(
        page,
        lambda: indicator(page, "Today's network within 5 km") == "–",
        "no network without stations",
    )
    before = solve_mark(page)
    page.get_by_label("Existing stations (kept fixed)").select_option(
        label="Public stations (all)"
    )
    wait_new_solution(page, before)
    wait_until(
        page,
        lambda: indicator(page, "Today's network within 5 km") == f"{network:.1f}%",
        "today's network coverage",
    )
    assert 50 < network < 100
    assert pct(indicator(page, "Demand within 5 km (with new sites)")) >= network

    before = solve_mark(page)
    page.get_by_label("Existing stations (kept fixed)").select_option(
        label="Public stations (DC fast only)"
    )
    wait_new_solution(page, before)
    wait_until(
        page,
        lambda: indicator(page, "Today's network within 5 km") != (f"{network:.1f}%"),
        "DC fast coverage",
    )
    assert pct(indicator(page, "Today's network within 5 km")) < network

    objective = indicator(page, "Objective (vehicle-km)")
    before = solve_mark(page)
    page.get_by_label("Demand weighting").select_option(label="BEV only")
    wait_new_solution(page, before)
    wait_until(
        page,
        lambda: indicator(page, "Objective (vehicle-km)") != objective,
        "a BEV-only objective",
    )

    before = solve_mark(page)
    page.get_by_label("Algorithm").select_option(label="K-Means (comparison)")
    wait_new_solution(page, before)
    # K-Means cannot hold stations fixed: the page says so.
    page.get_by_text("K-Means cannot hold existing stations fixed").wait_for(
        timeout=TIMEOUT_MS
    )

    # Display-only controls: basemap and the demand layer.
    page.get_by_label("Basemap").select_option(index=1)
    page.get_by_role("button", name="Demand density").click()
    page.wait_for_timeout(1000)
    assert map_new_sites(page) == 7


def test_filters_seed_and_radius(page):
    demand_points = int(re.search(r"on (\d+) demand points", status(page)).group(1))
    before = solve_mark(page)
    counties = page.locator("input.choices__input--cloned").first  # its search box
    counties.click()
    page.keyboard.type("Spokane")
    page.keyboard.press("Enter")
    page.keyboard.press("Escape")  # close the drop-down
    wait_new_solution(page, before)
    fewer = int(re.search(r"on (\d+) demand points", status(page)).group(1))
    assert 0 < fewer < demand_points

    objective = indicator(page, "Objective (vehicle-km)")
    before = solve_mark(page)
    phev = page.get_by_role("button", name="PHEV", exact=True)
    active = re.compile(r"\bbk-active\b")
    playwright.expect(phev).to_have_class(active)
    phev.click()  # BEV only now
    playwright.expect(phev).not_to_have_class(active, timeout=TIMEOUT_MS)
    wait_new_solution(page, before)
    wait_until(
        page,
        lambda: indicator(page, "Objective (vehicle-km)") != objective,
        "an objective without PHEVs",
    )

    before = solve_mark(page)
    seed = page.get_by_label("Random seed")
    seed.fill("3")
    seed.press("Enter")
    wait_new_solution(page, before)

    # Radius: only the metrics change (the headline titles follow the radius).
    radius = page.get_by_role("slider").nth(1)
    radius.focus()
    radius.press("ArrowRight")
    page.get_by_text("Demand within 5.5 km (with new sites)").wait_for(
        timeout=TIMEOUT_MS
    )


def test_upload_through_the_file_chooser(page, tmp_path):
    first = tmp_path / "my_stations.csv"
    first.write_text("lon,lat\n-122.33,47.61\n-122.20,47.50\n-117.42,47.66\n")
    page.locator(STATIONS_CHOOSER).set_input_files(str(first))
    page.get_by_text("Uploaded 3 existing stations from my_stations.csv").wait_for(
        timeout=TIMEOUT_MS
    )
    rows = page.locator(".slick-row")
    playwright.expect(rows).to_have_count(10, timeout=TIMEOUT_MS)  # 7 new + 3

    # A second file under another name: this failed for every user before.
    second = tmp_path / "depots.csv"
    second.write_text("name,lon,lat\nDepot A,-122.30,47.60\nDepot B,-122.45,47.25\n")
    page.locator(STATIONS_CHOOSER).set_input_files(str(second))
    page.get_by_text("Uploaded 2 existing stations from depots.csv").wait_for(
        timeout=TIMEOUT_MS
    )
    playwright.expect(rows).to_have_count(9, timeout=TIMEOUT_MS)
    page.get_by_text("Depot B").first.wait_for(timeout=TIMEOUT_MS)

    # An empty file and a file with a bad row: a message, and nothing changes.
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    page.locator(STATIONS_CHOOSER).set_input_files(str(empty))
    page.get_by_text("Upload rejected: empty.csv").wait_for(timeout=TIMEOUT_MS)
    bad = tmp_path / "bad rows.csv"
    bad.write_text("lon,lat\n-122.3,47.6\nxx,47.5\n")
    page.locator(STATIONS_CHOOSER).set_input_files(str(bad))
    page.get_by_text("Upload rejected: bad rows.csv").wait_for(timeout=TIMEOUT_MS)
    playwright.expect(rows).to_have_count(9, timeout=TIMEOUT_MS)

    # Markdown in a file's header is shown as text, not as a link or an image.
    evil = tmp_path / "evil.csv"
    evil.write_text(
        "[log in again](http://evil.example/login),"
        "![t](http://evil.example/t.png)\n1,2\n"
    )
    page.locator(STATIONS_CHOOSER).set_input_files(str(evil))
    page.get_by_text("Upload rejected: evil.csv").wait_for(timeout=TIMEOUT_MS)
    assert page.locator("a[href^='http://evil.example']").count() == 0
    assert page.locator("img[src^='http://evil.example']").count() == 0


def test_elbow_and_comparison_buttons(page):
    page.get_by_role("button", name="Compute elbow (objective vs k)").click()
    page.get_by_text("Elbow computed for").wait_for(timeout=TIMEOUT_MS)
    open_tab(page, "Elbow (choose k)")
    wait_for_plot(page, "Objective vs k")
    wait_for_plot(page, "Coverage vs k")

    page.get_by_role("button", name="Compare K-Medians vs K-Means").click()
    page.get_by_text("K-Medians vs K-Means computed.").wait_for(timeout=TIMEOUT_MS)
    open_tab(page, "K-Medians vs K-Means")
    wait_for_plot(page, "K-Medians: mean")
    wait_for_plot(page, "K-Means: mean")


def test_every_tab_shows_its_plot(page):
    assert wait_for_plot(page, "Demand and sites")[1] >= 400
    for tab, title in [
        ("Site loads", "Site loads"),
        ("Coverage vs radius", "Coverage vs radius"),
        ("Elbow (choose k)", "Press 'Compute elbow'"),
        ("Distance", "Distance to the nearest site"),
    ]:
        open_tab(page, tab)
        wait_for_plot(page, title)
    open_tab(page, "K-Medians vs K-Means")
    page.get_by_text("to fit both on the same demand").wait_for(timeout=TIMEOUT_MS)
    open_tab(page, "Data load report")
    page.get_by_text("rows kept: 150,137").wait_for(timeout=TIMEOUT_MS)


def _download(page, label: str, tmp_path: Path) -> Path:
    with page.expect_download(timeout=TIMEOUT_MS) as info:
        page.get_by_role("button", name=label).click()
    target = tmp_path / info.value.suggested_filename
    info.value.save_as(target)
    return target


def test_every_download(page, tmp_path):
    import pandas as pd

    n_sites = 7 + 2473  # new sites and today's public stations
    csv = _download(page, "Sites (CSV)", tmp_path).read_text()
    lines = csv.strip().splitlines()
    assert len(lines) == 1 + n_sites and lines[0].startswith("site_id,kind,name")
    geojson = json.loads(_download(page, "Sites (GeoJSON)", tmp_path).read_text())
    assert geojson["type"] == "FeatureCollection"
    assert len(geojson["features"]) == n_sites
    parquet = pd.read_parquet(_download(page, "Sites (GeoParquet)", tmp_path))
    assert len(parquet) == n_sites and "geometry" in parquet
    metrics = json.loads(_download(page, "Metrics (JSON)", tmp_path).read_text())
    assert metrics["schema"] == "evplanner.plan/1"
    assert 0 < metrics["coverage"]["coverage_share"] <= 1
    report = _download(page, "Data load report", tmp_path).read_text()
    assert "rows kept: 150,137" in report

    # The one-page report opens in the browser with its map and site table.
    html = _download(page, "Report (HTML)", tmp_path)
    report_page = page.context.new_page()
    report_page.goto(html.as_uri())
    image = report_page.locator("img#map")
    playwright.expect(image).to_be_visible()
    width = image.evaluate("img => img.naturalWidth")
    assert width > 400  # the PNG decoded, it is not a broken image
    # New sites' rows: the kind column says "new" (station names may hold it).
    rows = report_page.locator(
        "table#sites tbody tr:has(td:nth-child(2):text-is('new'))"
    )
    playwright.expect(rows).to_have_count(7)
    assert rows.first.locator("td").first.text_content() == "N1"
    report_page.close()


# --------------------------------------------------------------------------- issue 11


def demand_points_in_status(page) -> int:
    return int(re.search(r"on (\d+) demand points", status(page)).group(1))


def test_demand_controls(page):
    assert demand_points_in_status(page) == 1767  # census tracts by default
    before = solve_mark(page)
    page.get_by_label("Demand at").select_option(label="ZIP-code centroid")
    wait_new_solution(page, before)
    assert demand_points_in_status(page) == 537
    share = page.locator(".bk-input-group", has_text="Residents share of demand")

    def share_disabled() -> bool:
        # noUiSlider marks a disabled slider with disabled="true".
        return share.locator(".noUi-target").get_attribute("disabled") == "true"

    # No residents at ZIP centroids: the blend's slider is disabled.
    wait_until(page, share_disabled, "the residents share disabled")
    before = solve_mark(page)
    page.get_by_label("Demand at").select_option(
        label="Census tract (centre of population)"
    )
    wait_new_solution(page, before)
    assert demand_points_in_status(page) == 1767

    # The blend: two steps of 0.05 to the right re-solve with residents mixed in.
    handle = share.get_by_role("slider")
    wait_until(page, lambda: not share_disabled(), "the residents share enabled")
    objective = indicator(page, "Objective (vehicle-km)")
    before = solve_mark(page)
    handle.focus()
    handle.press("ArrowRight")
    handle.press("ArrowRight")
    wait_new_solution(page, before)
    wait_until(
        page,
        lambda: indicator(page, "Objective (vehicle-km)") != objective,
        "a blended objective",
    )
    page.get_by_text("Residents share of demand: 0.1").wait_for(timeout=TIMEOUT_MS)

    before = solve_mark(page)
    page.get_by_label("Demand weighting").select_option(
        label="Residents (tract population)"
    )
    wait_new_solution(page, before)
    wait_until(page, share_disabled, "the residents share disabled")
    # A forecast counts vehicles: with residents weighting the page says why not.
    page.get_by_label("Plan for year").select_option(label="2030")
    page.get_by_text("a forecast year plans for the vehicles").wait_for(
        timeout=TIMEOUT_MS
    )
    before = solve_mark(page)
    page.get_by_label("Demand weighting").select_option(label="All vehicles")
    wait_new_solution(page, before)
    wait_until(
        page,
        lambda: status(page).endswith("Demand forecast for 2030."),
        "a solve on the 2030 forecast",
    )


def test_utility_and_district_filters(page):
    all_points = demand_points_in_status(page)
    choices = page.locator("input.choices__input--cloned")
    before = solve_mark(page)
    choices.nth(1).click()  # electric utilities (after counties)
    page.keyboard.type("AVISTA")
    page.keyboard.press("Enter")
    page.keyboard.press("Escape")
    wait_new_solution(page, before)
    avista = demand_points_in_status(page)
    assert 0 < avista < all_points
    chosen = page.locator(".choices__list--multiple .choices__item")
    playwright.expect(chosen.filter(has_text="AVISTA CORP")).to_have_count(1)

    before = solve_mark(page)
    choices.nth(2).click()  # legislative districts
    page.keyboard.type("4")
    page.keyboard.press("Enter")
    page.keyboard.press("Escape")
    wait_new_solution(page, before)
    both = demand_points_in_status(page)
    assert 0 < both < avista


def test_rollout_timeline(page):
    # Three years: the rollout's upper year three steps to the left of 2030.
    set_rollout(page, per_year=2, steps_left=3)

    page.get_by_role("button", name="Plan staged rollout").click()
    # Busy while it runs (the light and the text), then done.
    page.get_by_text("Computing rollout").wait_for(timeout=TIMEOUT_MS)
    assert page.locator("[aria-label='busy']").count() == 1
    page.get_by_text(
        "Rollout planned: 2 new sites a year, 2025-2027 (6 sites)."
    ).wait_for(timeout=TIMEOUT_MS)
    playwright.expect(page.locator("[aria-label='idle']")).to_have_count(1)

    open_tab(page, "Rollout")
    wait_for_plot(page, "Rollout network in 2027: 6 new sites built", min_h=300)
    wait_for_plot(page, "Coverage per year")
    wait_for_plot(page, "Mean distance per year")
    # The per-year table and plot hold each year's figures.
    assert source_column(page, "sites_built", "year") == [2025, 2026, 2027]
    assert source_column(page, "sites_built", "sites_built") == [2, 4, 6]
    coverage = source_column(page, "sites_built", "coverage_pct")
    assert all(50 < c <= 100 for c in coverage)
    page.get_by_text("built so far").first.wait_for(timeout=TIMEOUT_MS)
    # The map shows every site built by 2027, coloured by the year it is built.
    assert (
        sorted(source_column(page, "label", "year"))
        == [2025] * 2 + [2026] * 2 + [2027] * 2
    )
    assert len(set(source_column(page, "label", "colour"))) == 3

    # Back to 2026 on the year slider: the network of that year.
    slider = page.locator(".bk-input-group", has_text="Network as of year")
    handle = slider.get_by_role("slider")
    handle.focus()
    handle.press("ArrowLeft")
    page.get_by_text("Network in 2026: 4 new sites built").wait_for(timeout=TIMEOUT_MS)
    wait_for_plot(page, "Rollout network in 2026: 4 new sites built", min_h=300)
    assert sorted(source_column(page, "label", "year")) == [2025, 2025, 2026, 2026]


def test_evs_per_1000_residents_layer(page):
    assert source_column(page, "tract_id", "evs_per_1000") == []
    page.get_by_role("button", name="EVs per 1,000 residents").click()
    wait_until(
        page,
        lambda: len(source_column(page, "tract_id", "evs_per_1000")) > 1700,
        "the tracts' EVs per 1,000 residents on the map",
    )
    values = source_column(page, "tract_id", "evs_per_1000")
    vehicles = source_column(page, "tract_id", "vehicles")
    population = source_column(page, "tract_id", "population")
    assert values[0] == pytest.approx(1000 * vehicles[0] / population[0])
    assert wait_for_plot(page, "Demand and sites")[1] >= 400
    # The site table has the column.
    page.get_by_text("EVs / 1,000 residents").first.wait_for(timeout=TIMEOUT_MS)


def test_candidates_and_objective(page):
    # Maximal coverage needs candidate sites: the page says so and keeps the plan.
    page.get_by_label("Objective").select_option(
        label="Demand within radius (max coverage)"
    )
    page.get_by_text("a candidate set for the coverage objective").wait_for(
        timeout=TIMEOUT_MS
    )
    covered = indicator(page, "Demand within 5 km (with new sites)")
    before = solve_mark(page)
    page.get_by_label("New sites may go").select_option(label="Census-tract centres")
    wait_new_solution(page, before)
    wait_until(
        page,
        lambda: indicator(page, "Demand within 5 km (with new sites)") != covered,
        "the coverage of sites chosen for coverage",
    )
    # Sites chosen for coverage cover at least as much as the median's sites.
    assert pct(indicator(page, "Demand within 5 km (with new sites)")) >= pct(covered)
    assert map_new_sites(page) == 7

    # A staged rollout among the same candidates: its map draws the candidates
    # not opened by the year shown, and each built site stands on one of them.
    candidates = _map_points(page, "candidate_id", "d.opens === undefined")
    set_rollout(page, per_year=2, steps_left=4)  # 2025-2026
    page.get_by_role("button", name="Plan staged rollout").click()
    page.get_by_text(
        "Rollout planned: 2 new sites a year, 2025-2026 (4 sites)."
    ).wait_for(timeout=TIMEOUT_MS)
    open_tab(page, "Rollout")
    wait_for_plot(page, "Rollout network in 2026: 4 new sites built", min_h=300)
    not_opened = _map_points(page, "opens", "true")
    assert len(not_opened) == len(candidates) - 4
    built = list(zip(source_column(page, "label", "lon"),
                     source_column(page, "label", "lat"), strict=True))  # fmt: skip
    assert len(built) == 4 and _members(built, candidates)
    assert not any(_members([p], not_opened) for p in built)


def _map_points(page, marker: str, where: str) -> list[list[float]]:
    """``[lon, lat]`` of the rows of the map's data sources that have a column
    ``marker`` and a ``size`` or ``chosen`` column, kept where the JavaScript
    test ``where`` (on ``d``, the source's data, and ``i``, the row) holds."""
    return page.evaluate(
        """([marker, where]) => {
            const keep = new Function("d", "i", "return " + where + ";");
            const out = [];
            for (const doc of window.Bokeh.documents)
                for (const m of doc.all_models) {
                    const d = m.data;
                    if (!d || d[marker] === undefined || d.lon === undefined
                        || (d.size === undefined && d.chosen === undefined))
                        continue;
                    for (let i = 0; i < d.lon.length; i++)
                        if (keep(d, i)) out.push([d.lon[i], d.lat[i]]);
                }
            return out;
        }""",
        [marker, where],
    )


def map_chosen_candidates(page) -> list[list[float]]:
    """``[lon, lat]`` of the candidate sites the map shows as chosen."""
    return _map_points(page, "candidate_id", "d.chosen[i] === 'yes'")


def map_new_site_points(page) -> list[list[float]]:
    """``[lon, lat]`` of the new sites on the map."""
    return _map_points(page, "site_id", "d.kind[i] === 'new' && d.colour")


def candidate_layer_visible(page) -> list[bool]:
    """Whether each of the map's candidate glyphs (sites, chosen) is drawn (the
    rollout map's, whose source has an ``opens`` column, left out)."""
    return page.evaluate(
        """() => {
            const out = [];
            for (const doc of window.Bokeh.documents)
                for (const m of doc.all_models)
                    if (m.data_source && m.data_source.data
                        && m.data_source.data.candidate_id !== undefined
                        && m.data_source.data.opens === undefined
                        && m.visible !== undefined)
                        out.push(m.visible);
            return out;
        }"""
    )


def _members(points, candidates) -> bool:
    return all(
        any(abs(x - cx) < 1e-6 and abs(y - cy) < 1e-6 for cx, cy in candidates)
        for x, y in points
    )


def test_candidate_file_upload_sites_on_it_under_both_objectives(page, tmp_path):
    lots = [
        (f"Lot {i}", round(-122.45 + 0.05 * (i % 6), 4),
         round(47.25 + 0.08 * (i // 6), 4), 4 + i % 5)
        for i in range(30)
    ]  # fmt: skip
    path = tmp_path / "parking lots.csv"
    path.write_text("name,lon,lat,max_ports\n" + "".join(
        f"{n},{lon},{lat},{p}\n" for n, lon, lat, p in lots))  # fmt: skip
    points = [(lon, lat) for _, lon, lat, _ in lots]
    assert candidate_layer_visible(page) == [False, False]  # sites go anywhere
    # Through the browser's own file chooser (the click opens it).
    with page.expect_file_chooser(timeout=TIMEOUT_MS) as chooser:
        page.locator(CANDIDATES_CHOOSER).click()
    chooser.value.set_files(str(path))
    page.get_by_text("Uploaded 30 candidate sites from parking lots.csv").wait_for(
        timeout=TIMEOUT_MS
    )
    select = page.get_by_label("New sites may go")
    playwright.expect(select).to_have_value("Uploaded candidate file")

    def sited_on_the_lots():
        chosen = map_chosen_candidates(page)
        new = map_new_site_points(page)
        return (len(chosen) == 7 and len(new) == 7 and _members(new, points)
                and _members(chosen, new))  # fmt: skip

    wait_until(page, sited_on_the_lots, "7 new sites on the uploaded lots")
    assert candidate_layer_visible(page) == [True, True]
    assert map_new_sites(page) == 7

    def new_site_names():
        kinds = source_column(page, "share_pct", "kind") or []
        names = source_column(page, "share_pct", "name") or []
        return [n for k, n in zip(kinds, names, strict=True) if k == "new"]

    # The site table names each new site after the lot it stands on.
    lot_names = {name for name, *_ in lots}
    wait_until(
        page,
        lambda: len(new_site_names()) == 7 and set(new_site_names()) <= lot_names,
        "the lots' names on the new sites",
    )

    # Maximal coverage among the same lots.
    before = solve_mark(page)
    page.get_by_label("Objective").select_option(
        label="Demand within radius (max coverage)"
    )
    wait_new_solution(page, before)
    assert status(page).startswith("Solved: 7 new sites")
    wait_until(page, sited_on_the_lots, "7 coverage sites on the uploaded lots")

    # A bad file: a message naming every bad row; the lots stay the candidates.
    bad = tmp_path / "bad lots.csv"
    bad.write_text("name,lon,lat,max_ports\nA,-122.3,47.6,4\nB,xx,47.5,2\n"
                   "C,-122.2,47.5,3\nD,-122.1,47.4,many\n")  # fmt: skip
    with page.expect_file_chooser(timeout=TIMEOUT_MS) as chooser:
        page.locator(CANDIDATES_CHOOSER).click()
    chooser.value.set_files(str(bad))
    page.get_by_text("Candidate file rejected: bad lots.csv, row 2").wait_for(
        timeout=TIMEOUT_MS
    )
    page.get_by_text("bad rows: 2, 4").wait_for(timeout=TIMEOUT_MS)
    playwright.expect(select).to_have_value("Uploaded candidate file")
    assert sited_on_the_lots()


# --------------------------------------------------------------------- limits, load


def _second_page(server, browser):
    """Another session's page (its own browser context), opened and solved."""
    url, _ = server
    context = browser.new_context(viewport={"width": 1500, "height": 1200})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    open_solved(pg, url)
    return context, pg, errors


def test_oversize_upload_is_refused_in_the_browser_and_the_page_lives(page, tmp_path):
    from evplanner.app.engine import MAX_UPLOAD_BYTES

    huge = tmp_path / "huge.csv"
    row = b"-122.3,47.6\n"
    huge.write_bytes(b"lon,lat\n" + row * (int(1.5 * MAX_UPLOAD_BYTES) // len(row)))
    size_mb = huge.stat().st_size / 1e6
    page.locator(STATIONS_CHOOSER).set_input_files(str(huge))
    # The alert (from the server: only the name and size were sent) ...
    page.get_by_text(
        f"Upload rejected: huge.csv: the file is {size_mb:.1f} MB, larger than the "
        f"{MAX_UPLOAD_BYTES / 1e6:.1f} MB limit"
    ).wait_for(timeout=TIMEOUT_MS)
    # ... and the chooser's own note, written in the browser.
    page.get_by_text("huge.csv is 3.0 MB, larger than the 2.0 MB limit").wait_for(
        timeout=TIMEOUT_MS
    )
    # The session is alive: its websocket still carries a k change both ways.
    page.get_by_role("button", name="10", exact=True).click()
    solved_for(page, 10)
    assert map_new_sites(page) == 10


def test_too_many_stations_are_refused_with_a_message(page, tmp_path):
    from evplanner.app.engine import MAX_UPLOAD_STATIONS

    many = tmp_path / "many.csv"
    many.write_bytes(b"lon,lat\n" + b"-122.3,47.6\n" * (MAX_UPLOAD_STATIONS + 1))
    page.locator(STATIONS_CHOOSER).set_input_files(str(many))
    page.get_by_text(
        f"Upload rejected: many.csv: {MAX_UPLOAD_STATIONS + 1:,} rows, more than "
        f"the {MAX_UPLOAD_STATIONS:,} stations"
    ).wait_for(timeout=TIMEOUT_MS)
    assert indicator(page, "New sites") == "7"  # nothing changed
    page.get_by_role("button", name="5", exact=True).click()
    solved_for(page, 5)


def test_k_change_completes_while_another_session_solves_a_heavy_upload(
    page, server, browser, tmp_path
):
    """Session B uploads the largest station list allowed (a heavy solve); session
    A's k change, made after B's solve started, is shown while B still solves."""
    import numpy as np

    from evplanner.app.engine import MAX_UPLOAD_STATIONS

    rng = np.random.default_rng(9)
    lon = rng.uniform(-124.0, -117.5, MAX_UPLOAD_STATIONS)
    lat = rng.uniform(45.8, 48.8, MAX_UPLOAD_STATIONS)
    heavy = tmp_path / "state_wide.csv"
    heavy.write_text(
        "lon,lat\n"
        + "".join(f"{a:.5f},{b:.5f}\n" for a, b in zip(lon, lat, strict=True))
    )
    # A plans without fixed stations: its k change is a light solve.
    before = solve_mark(page)
    page.get_by_label("Existing stations (kept fixed)").select_option(label="None")
    wait_new_solution(page, before)
    context, other, errors = _second_page(server, browser)
    try:
        # B will plan 50 sites among the 20,000 stations (about 4 s of solving
        # on the 2-core machine, against ~0.03 s for A's k change): B's solve
        # with k = 7 (about 1 s) could end before A's page had shown its own.
        # First without stations, so that B's k change itself is light.
        before = solve_mark(other)
        other.get_by_label("Existing stations (kept fixed)").select_option(label="None")
        wait_new_solution(other, before)
        k_box = other.get_by_role("textbox").first
        k_box.fill("50")
        k_box.press("Enter")
        solved_for(other, 50)
        other.locator(STATIONS_CHOOSER).set_input_files(str(heavy))
        other.get_by_text(
            f"Uploaded {MAX_UPLOAD_STATIONS} existing stations from state_wide.csv"
        ).wait_for(timeout=TIMEOUT_MS)
        assert status(other) == "Solving…"  # B's heavy solve is running
        page.get_by_role("button", name="15", exact=True).click()
        solved_for(page, 15)
        assert map_new_sites(page) == 15
        # A's change was served while B's solve was still running ...
        assert status(other) == "Solving…"
        # ... and B's finishes too, with its 20,000 fixed stations.
        solved_for(other, 50)
        assert errors == []
    finally:
        context.close()


def test_second_identical_session_is_served_from_the_cache(page, server, browser):
    """A new session with the default controls gets the solution some session
    computed before: no new solve runs (the server logs each solve)."""
    _, log_path = server
    start = len(log_path.read_text())
    first = status(page)
    context, other, errors = _second_page(server, browser)
    try:
        assert status(other) == first  # the same solution, its same solve time
        assert map_new_sites(other) == 7
        time.sleep(0.5)
        assert "solved: 7 new sites" not in log_path.read_text()[start:]
        assert errors == []
    finally:
        context.close()


# --------------------------------------------------------------------------- issue 12


def number(text: str) -> float:
    return float(text.replace(",", ""))


def site_labels(page) -> list:
    """Labels of the map's new sites (the ports each needs), read from BokehJS."""
    return page.evaluate(
        """() => {
            for (const doc of window.Bokeh.documents)
                for (const m of doc.all_models)
                    if (m.data && m.data.ports_label && m.data.kind
                        && m.data.kind[0] === 'new')
                        return Array.from(m.data.ports_label);
            return null;
        }"""
    )


def overloaded_on_map(page) -> int:
    """Existing stations ringed red on the map, read from BokehJS."""
    return page.evaluate(
        """() => {
            for (const doc of window.Bokeh.documents)
                for (const m of doc.all_models)
                    if (m.data && m.data.line_colour && m.data.kind
                        && m.data.kind.length > 100)
                        return Array.from(m.data.line_colour)
                            .filter(c => c === '#d62728').length;
            return -1;
        }"""
    )


def test_capacity_controls_change_the_sizing(page):
    overloaded = number(indicator(page, "Overloaded stations"))
    ports_to_add = number(indicator(page, "Ports to add"))
    assert overloaded > 0 and ports_to_add > 0
    assert overloaded_on_map(page) == overloaded
    labels = site_labels(page)
    assert len(labels) == 7 and all(re.fullmatch(r"\d+ ports", t) for t in labels)

    # The queue model: its parameters appear, the ratio's go, the sizing changes.
    assert not page.get_by_label("Mean session (hours)").is_visible()
    before = solve_mark(page)
    page.get_by_label("Sizing method").select_option(label="Queue (Erlang C)")
    wait_new_solution(page, before)
    playwright.expect(page.get_by_label("Mean session (hours)")).to_be_visible()
    playwright.expect(page.get_by_label("Vehicles per Level 2 port")).to_be_hidden()
    wait_until(
        page,
        lambda: number(indicator(page, "Ports to add")) != ports_to_add,
        "the queue's ports to add",
    )
    before = solve_mark(page)
    page.get_by_label("Sizing method").select_option(label="Vehicles per port (ratio)")
    wait_new_solution(page, before)
    wait_until(
        page,
        lambda: number(indicator(page, "Ports to add")) == ports_to_add,
        "the ratio's ports to add again",
    )

    # Fewer vehicles per Level 2 port: more stations overloaded, on the map too.
    box = page.get_by_label("Vehicles per Level 2 port")
    before = solve_mark(page)
    box.fill("10")
    box.press("Enter")
    wait_new_solution(page, before)
    wait_until(
        page,
        lambda: number(indicator(page, "Overloaded stations")) > overloaded,
        "more overloaded stations",
    )
    wait_until(
        page,
        lambda: (
            overloaded_on_map(page) == number(indicator(page, "Overloaded stations"))
        ),
        "the map's overloaded stations",
    )
    box.fill("33")
    box.press("Enter")

    # Capacity-aware siting (on one county, so that the solve is quick): no
    # station is overloaded any more.
    before = solve_mark(page)
    counties = page.locator("input.choices__input--cloned").first
    counties.click()
    page.keyboard.type("Spokane")
    page.keyboard.press("Enter")
    page.keyboard.press("Escape")
    wait_new_solution(page, before)
    wait_until(
        page,
        lambda: status(page).startswith("Solved") and not page.locator(
            "[aria-label='busy']").count(),
        "the county's plan",
    )  # fmt: skip
    assert number(indicator(page, "Overloaded stations")) > 0
    toggle = page.locator(".bk-Checkbox input[type=checkbox]")
    playwright.expect(page.locator(".bk-Checkbox")).to_contain_text(
        "Capacity-aware siting"
    )
    before = solve_mark(page)
    toggle.check()
    wait_new_solution(page, before)
    wait_until(
        page,
        lambda: indicator(page, "Overloaded stations") == "0",
        "no overloaded station with capacity-aware siting",
    )
    assert indicator(page, "Ports to add") == "0"

    # K-Means cannot honour capacities: the toggle is disabled, and says why.
    before = solve_mark(page)
    page.get_by_label("Algorithm").select_option(label="K-Means (comparison)")
    wait_new_solution(page, before)
    page.get_by_text("K-Means cannot honour capacities").wait_for(timeout=TIMEOUT_MS)
    playwright.expect(toggle).to_be_disabled()


def test_load_per_port_plot_and_site_table(page):
    open_tab(page, "Load per port")
    width, height = wait_for_plot(page, "Load per port", min_w=400, min_h=250)
    per_port = source_column(page, "capacity_per_port", "vehicles_per_port")
    status_ = source_column(page, "capacity_per_port", "status")
    assert len(per_port) == 60
    assert per_port == sorted(per_port, reverse=True)
    assert "overloaded" in status_
    # The site table has the sizing columns, with the plan's actions.
    actions = source_column(page, "share_pct", "action")
    assert actions.count("build new site") == 7
    assert actions.count("add ports") == number(indicator(page, "Overloaded stations"))
    for title in ("ports needed", "ports to add", "vehicles / port", "overloaded"):
        page.locator(".slick-header-column", has_text=title).first.wait_for(
            timeout=TIMEOUT_MS
        )


def test_downloads_carry_the_sizing(page, tmp_path):
    import pandas as pd

    overloaded = number(indicator(page, "Overloaded stations"))
    sites = pd.read_csv(_download(page, "Sites (CSV)", tmp_path))
    for column in ("ports", "ports_needed", "ports_to_add", "vehicles_per_port",
                   "overloaded", "action"):  # fmt: skip
        assert column in sites
    assert int(sites["overloaded"].sum()) == overloaded
    assert (sites["action"] == "build new site").sum() == 7
    metrics = json.loads(_download(page, "Metrics (JSON)", tmp_path).read_text())
    sizing = metrics["sizing"]
    assert sizing["n_overloaded"] == overloaded
    assert f"{sizing['ports_to_add']:,}" == indicator(page, "Ports to add")
    assert f"{sizing['suggested_extra_sites']:,}" == indicator(
        page, "Suggested extra sites"
    )
    html = _download(page, "Report (HTML)", tmp_path).read_text()
    assert "Sizing: ports and capacity" in html
    assert f"{sizing['n_overloaded']:,} of" in html
