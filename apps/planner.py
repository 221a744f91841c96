"""The evplanner web app: ``panel serve apps/planner.py``.

Each browser session runs this script and gets its own page and state; the bundled
data is loaded once per server process and shared read-only.
"""

import logging

from evplanner.app import create_app

logging.getLogger("evplanner").setLevel(logging.INFO)

create_app().servable(title="evplanner")
