"""Serve the planner with ``panel serve`` as a subprocess and fetch the page.

The server runs exactly as a user starts it (``panel serve apps/planner.py``) on a
free loopback port; its log must show no errors after a session has been built.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "apps" / "planner.py"
# Lines of a panel/bokeh/tornado log that mean something went wrong.
ERROR_RE = re.compile(r"Traceback|\bERROR\b|Exception|Error:|error running", re.I)

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serve_planner(log_path: Path, *extra: str, startup_s: float = 120.0):
    """Run ``panel serve apps/planner.py`` on a free port; yield its page URL."""
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "panel",
        "serve",
        str(APP),
        "--port",
        str(port),
        "--address",
        "127.0.0.1",
        "--allow-websocket-origin",
        f"127.0.0.1:{port}",
        *extra,
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env
        )
    url = f"http://127.0.0.1:{port}/planner"
    try:
        deadline = time.monotonic() + startup_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"panel serve exited with {proc.returncode}:\n"
                    + log_path.read_text()
                )
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5):
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        "panel serve did not start:\n" + log_path.read_text()
                    ) from None
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# A browser that closes while the server is still writing makes tornado log these;
# they are about the closed socket, not the app.
DISCONNECT_RE = re.compile(r"WebSocketClosedError|StreamClosedError|Stream is closed")


def log_errors(log_path: Path) -> list[str]:
    """Lines of the server log that report errors (traceback blocks included)."""
    text = log_path.read_text()
    # A block is a log record with its traceback: it starts at a timestamped line
    # (or asyncio's "Task exception ...") and runs to the next one. Blocks about a
    # client disconnect are dropped whole.
    blocks = re.split(r"\n(?=\d{4}-\d\d-\d\d |Task exception|[A-Z]+:[\w.]+:)", text)
    kept = [b for b in blocks if not DISCONNECT_RE.search(b)]
    return [line for b in kept for line in b.splitlines() if ERROR_RE.search(line)]


def test_panel_serve_gets_page_without_errors(tmp_path):
    log_path = tmp_path / "panel_serve.log"
    with serve_planner(log_path) as url:
        # The GET builds a whole session server-side: data load, first solve,
        # template and plots; errors in any of them land in the log.
        with urllib.request.urlopen(url, timeout=180) as response:
            assert response.status == 200
            html = response.read().decode("utf-8")
        time.sleep(1.0)  # let the server flush its log
    assert "<title>evplanner" in html
    assert "bokeh" in html.lower() and "docs_json" in html
    log = log_path.read_text()
    assert "solved: 7 new sites" in log  # the session solved on the bundled data
    assert log_errors(log_path) == [], log


def _client_session(url: str):
    """A Panel session over Bokeh's Python client (a websocket, no browser)."""
    import asyncio

    import panel  # noqa: F401 - registers Panel's Bokeh models for the client
    from bokeh.client import pull_session
    from tornado.ioloop import IOLoop

    asyncio.set_event_loop(asyncio.new_event_loop())
    return pull_session(url=url, io_loop=IOLoop.current())


def _status_div(session):
    """The status line's Div (its first solution may still be on the way)."""
    return next(
        m
        for m in session.document.models
        if "status-text" in str(getattr(m, "text", ""))
    )


def test_server_websocket_limit_drops_only_the_oversize_client(tmp_path):
    """Started with the planner's options, the server disconnects a client whose
    message is over the websocket limit, before reading it whole, and the other
    sessions carry on (a client that skips the browser's upload check)."""
    from concurrent.futures import ThreadPoolExecutor

    from bokeh.models import Slider

    from evplanner.app.server import SERVE_OPTIONS
    from evplanner.app.upload import WEBSOCKET_MAX_MESSAGE_BYTES

    log_path = tmp_path / "panel_serve.log"

    def oversize(url):
        session = _client_session(url)
        status = _status_div(session)
        session._connection._loop_until(lambda: "Solved:" in status.text)
        status.text = "x" * (WEBSOCKET_MAX_MESSAGE_BYTES + 1000)  # sent as a patch
        session._connection._loop_until(lambda: not session.connected)
        return session.connected

    def k_change(url):
        session = _client_session(url)
        status = _status_div(session)
        session._connection._loop_until(lambda: "Solved:" in status.text)
        slider = next(
            m
            for m in session.document.models
            if isinstance(m, Slider) and m.step == 1 and m.start == 1
        )
        slider.value = 11
        session._connection._loop_until(lambda: "(k=11)" in status.text)
        text = status.text
        session.close()
        return text

    with serve_planner(log_path, *SERVE_OPTIONS) as url:
        # One thread each: the Bokeh client runs a Tornado loop in its thread.
        with ThreadPoolExecutor(1) as one, ThreadPoolExecutor(1) as two:
            assert one.submit(oversize, url).result(timeout=300) is False
            text = two.submit(k_change, url).result(timeout=300)
        time.sleep(1.0)
    assert "Solved: 11 new sites (k=11)" in text
    log = log_path.read_text()
    assert f"websocket_max_message_size set to {WEBSOCKET_MAX_MESSAGE_BYTES}" in log
    assert log_errors(log_path) == [], log
