"""The evplanner web app (Panel + HoloViews + Datashader).

``create_app()`` returns one session's page; ``apps/planner.py`` serves it with
``panel serve``. The solve pipeline it calls is :mod:`evplanner.app.engine` (no
Panel), the per-session state is :class:`PlannerState`, the page :class:`PlannerApp`.
"""

from evplanner.app.layout import PlannerApp, create_app
from evplanner.app.server import serve
from evplanner.app.state import PlannerState, bundled_store

__all__ = ["PlannerApp", "PlannerState", "bundled_store", "create_app", "serve"]
