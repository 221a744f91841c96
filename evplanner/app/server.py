"""Serving the planner from Python (a portal's own process) with its limits.

``panel serve apps/planner.py`` takes the same limits as command-line options
(``make serve`` and README.md give them); :func:`serve` is the same for
``pn.serve``.
"""

from __future__ import annotations

from evplanner.app.upload import WEBSOCKET_MAX_MESSAGE_BYTES

__all__ = ["SERVE_OPTIONS", "serve", "serve_command"]

#: Options of ``panel serve`` that the planner needs, as command-line arguments.
SERVE_OPTIONS = ("--websocket-max-message-size", str(WEBSOCKET_MAX_MESSAGE_BYTES))


def serve_command(app_path, port: int, *extra: str) -> list[str]:
    """``panel serve`` of ``app_path`` on 127.0.0.1:``port`` as an argument list.

    For a local server that only pages from that address may open (tests and
    benchmarks); ``extra`` adds options, e.g. :data:`SERVE_OPTIONS`.
    """
    import sys

    return [
        sys.executable, "-m", "panel", "serve", str(app_path),
        "--port", str(port), "--address", "127.0.0.1",
        "--allow-websocket-origin", f"127.0.0.1:{port}",
        *extra,
    ]  # fmt: skip


def serve(port: int = 5006, address: str = "127.0.0.1",
          websocket_origin: str | list[str] | None = None,
          show: bool = False, **kwargs):  # fmt: skip
    """Serve the planner with ``pn.serve``: a new page per browser session.

    Parameters
    ----------
    port, address : int, str
        Where to listen.
    websocket_origin : str or list of str, optional
        Host names (``host[:port]``) whose pages may open the app's websocket.
    show : bool
        Open a browser.
    **kwargs
        More options of ``pn.serve`` / Bokeh's ``Server`` (e.g. ``prefix``,
        ``num_procs``, ``threaded``).

    Returns
    -------
    The server (``pn.serve`` with ``start=False`` returns it without blocking).

    Notes
    -----
    The websocket message limit is :data:`WEBSOCKET_MAX_MESSAGE_BYTES` unless
    given: the largest message the page sends is an upload at the size limit
    (:data:`~evplanner.app.engine.MAX_UPLOAD_BYTES`, base64), and a client that
    sends more is disconnected by Tornado before the message is read whole.
    """
    import panel as pn

    from evplanner.app.layout import create_app

    kwargs.setdefault("websocket_max_message_size", WEBSOCKET_MAX_MESSAGE_BYTES)
    return pn.serve({"planner": create_app}, port=port, address=address,
                    websocket_origin=websocket_origin, show=show,
                    **kwargs)  # fmt: skip
