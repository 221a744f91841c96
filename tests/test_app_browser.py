"""Drive the served planner in Debian's Chromium through Playwright.

The page is served by ``panel serve apps/planner.py`` on a free loopback port and
every request that leaves the machine (web tiles, web fonts) is aborted, so the test
also proves that the app works with no network and that failing tiles are quiet.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest

from tests.test_app_server import log_errors, serve_planner

playwright = pytest.importorskip("playwright.sync_api")

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log_path = tmp_path_factory.mktemp("server") / "panel_serve.log"
    with serve_planner(log_path) as url:
        yield url, log_path


@pytest.fixture(scope="module")
def browser():
    from pathlib import Path

    if not Path(CHROMIUM).exists():
        pytest.skip(f"Debian chromium not installed at {CHROMIUM}")
    with playwright.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _indicator(page, title: str) -> str:
    """Text of the value under a number indicator's title."""
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
        }""", title)


def _map_sites(page) -> int:
    """Number of new sites in the map's data source, read from BokehJS."""
    return page.evaluate(
        """() => {
            for (const doc of window.Bokeh.documents)
                for (const m of doc.all_models)
                    if (m.data && m.data.site_id && m.data.size && m.data.colour)
                        return m.data.site_id.length;
            return -1;
        }""")


def test_change_k_updates_sites_and_indicators(server, browser, tmp_path):
    url, log_path = server
    host = urlsplit(url).netloc
    context = browser.new_context(viewport={"width": 1500, "height": 1200})
    page = context.new_page()
    console_errors, page_errors, failed = [], [], []
    page.on("console", lambda m: console_errors.append(m.text)
            if m.type == "error" else None)
    page.on("pageerror", lambda e: page_errors.append(str(e)))
    page.on("requestfailed", lambda r: failed.append(r.url))
    # No network beyond the loopback server: tiles and web fonts must fail quietly.
    page.route("**/*", lambda route: route.continue_()
               if urlsplit(route.request.url).netloc == host else route.abort())
    try:
        page.goto(url, timeout=TIMEOUT_MS)
        page.get_by_text("Solved: 7 new sites").wait_for(timeout=TIMEOUT_MS)
        rows = page.locator(".slick-row")
        playwright.expect(rows).to_have_count(7, timeout=TIMEOUT_MS)
        assert _indicator(page, "New sites") == "7"
        assert _map_sites(page) == 7
        covered_before = _indicator(page, "Demand within 5 km (with new sites)")
        objective_before = _indicator(page, "Objective (vehicle-km)")
        assert re.fullmatch(r"\d+\.\d%", covered_before)

        page.get_by_role("button", name="15", exact=True).click()
        page.get_by_text("Solved: 15 new sites (k=15)").wait_for(timeout=TIMEOUT_MS)
        # Locators pierce the components' shadow roots; expect() polls.
        playwright.expect(rows).to_have_count(15, timeout=TIMEOUT_MS)
        assert _indicator(page, "New sites") == "15"
        # The map's own data reached the browser too, not just the table.
        assert _map_sites(page) == 15
        covered_after = _indicator(page, "Demand within 5 km (with new sites)")
        objective_after = _indicator(page, "Objective (vehicle-km)")
        assert covered_after != covered_before
        assert float(covered_after.rstrip("%")) > float(covered_before.rstrip("%"))
        assert (float(objective_after.replace(",", ""))
                < float(objective_before.replace(",", "")))

        shot = tmp_path / "planner_k15.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        page.wait_for_timeout(500)  # let late updates (plot resizes) finish
    finally:
        context.close()

    # Only requests we aborted on purpose (off the machine) may fail, and the only
    # console errors allowed are the browser's notes about those failed loads.
    assert all(urlsplit(u).netloc != host for u in failed), failed
    unexpected = [e for e in console_errors
                  if not e.startswith("Failed to load resource")]
    assert unexpected == []
    assert page_errors == []
    assert log_errors(log_path) == [], log_path.read_text()
