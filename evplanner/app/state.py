"""Per-session state of the planner: the controls as parameters, the solution, solving.

:class:`PlannerState` holds every control as a ``param`` parameter and the latest
:class:`~evplanner.app.engine.Solution`. Any change of a control re-solves off the
server's event loop: the scenario is snapshotted, handed to a one-thread executor
owned by the session, and the result comes back on the event loop (Bokeh's
``add_next_tick_callback``, through ``pn.state.execute``). A generation counter makes
a newer change supersede an older one: a queued stale solve is cancelled (or skipped
when its thread has just picked it up), a running one finishes but its result is
dropped. The elbow, the K-Means comparison and the staged rollout
(:func:`evplanner.app.engine.rollout`, on request) run the same way, each kind with
its own counter.

The only object shared between sessions is the
:class:`~evplanner.app.engine.DataStore`, loaded once with ``pn.cache``: read-only
data, plus the process-wide cache of solutions (a new session whose controls some
session has solved before gets its first solution from it without solving) and the
compute lanes that keep one session's heavy solve from stalling the others' k
changes.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial

import panel as pn
import param

from evplanner.app import engine
from evplanner.app.engine import (
    ALGORITHMS,
    CANDIDATES,
    DEMAND_AT,
    EXISTING,
    OBJECTIVES,
    WEIGHTINGS,
    DataStore,
    RolloutView,
    Solution,
)
from evplanner.errors import InputError
from evplanner.planning import ExistingSites, Scenario
from evplanner.planning.inputs import CandidateSites
from evplanner.planning.scenario import MAX_SITE_PORTS

__all__ = ["QUICK_K", "PlannerState", "bundled_store"]

log = logging.getLogger(__name__)

#: The original project's choices of k, offered as one-click picks.
QUICK_K = (3, 5, 7, 10, 15)
#: The ks of the elbow sweep (those above the number of demand points are skipped).
SWEEP_K = (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 15, 20, 25, 30, 40, 50)
#: Largest k offered: several hundred; the bundled data has ~1,770 tract locations.
K_MAX = 500
#: How many years past the newest model year the forecast and the rollout offer.
FORECAST_YEARS = 15
#: Weightings that count vehicles (the residents blend and the forecast apply).
VEHICLE_WEIGHTINGS = ("vehicles", "bev", "range")
#: Sizing methods: UI label -> scenario value (:mod:`evplanner.sizing`).
SIZING_METHODS = {
    "Vehicles per port (ratio)": "ratio",
    "Queue (Erlang C)": "queue",
}
#: Controls of the capacity model (all re-solve; the queue's only mean something
#: with the queue method).
SIZING_PARAMS = (
    "sizing",
    "vehicles_per_l2_port",
    "vehicles_per_dc_port",
    "sessions_per_vehicle_day",
    "session_hours",
    "hours_per_day",
    "max_wait_probability",
    "new_site_ports",
    "capacitated",
)
QUEUE_PARAMS = (
    "sessions_per_vehicle_day",
    "session_hours",
    "hours_per_day",
    "max_wait_probability",
)


@pn.cache
def bundled_store() -> DataStore:
    """The bundled vehicles and stations, loaded once per server process.

    Cached across sessions with ``pn.cache``: the store is read-only, so sharing it
    is safe, and loading it per session would cost ~1 s and ~100 MB each time.
    """
    return DataStore.from_files()


class Superseded(Exception):
    """A queued job whose request a newer one of the same session replaced."""


class PlannerState(param.Parameterized):
    """Controls, solution and solving of one planner session.

    Parameters
    ----------
    store : DataStore, optional
        The data to plan on; default :func:`bundled_store`.
    **params
        Initial values of the controls.

    Notes
    -----
    Every control in ``_SOLVE_PARAMS`` re-solves when it changes. Results (or the
    message of a failed solve) are applied only if no newer change came in
    meanwhile; a failed solve keeps the previous solution on screen.
    """

    # --- controls ---------------------------------------------------------------
    k = param.Integer(
        default=7,
        bounds=(1, K_MAX),
        label="New sites (k)",
        doc="Number of new charging sites to place.",
    )
    quick_k = param.Selector(
        default=7,
        objects=list(QUICK_K),
        allow_None=True,
        label="Quick pick",
        doc="One-click choices of k.",
    )
    counties = param.ListSelector(
        default=[],
        objects=[],
        label="Counties",
        doc="Counties whose vehicles count (empty = all).",
    )
    ev_types = param.ListSelector(
        default=["BEV", "PHEV"], objects=["BEV", "PHEV"], label="EV type"
    )
    model_years = param.Range(
        default=(2000, 2025), bounds=(2000, 2025), label="Model years", step=1
    )
    demand_at = param.Selector(
        default="tract",
        objects=DEMAND_AT,
        label="Demand at",
        doc="Where a vehicle's demand sits: its census tract or its ZIP centroid.",
    )
    weighting = param.Selector(
        default="vehicles", objects=WEIGHTINGS, label="Demand weighting"
    )
    residents_share = param.Number(
        default=0.0,
        bounds=(0.0, 1.0),
        step=0.05,
        label="Residents share of demand",
        doc="Blend: weight = (1 - a) vehicles + a residents scaled to the vehicles' "
        "total. Applies to a vehicle weighting on tract demand only.",
    )
    utilities = param.ListSelector(
        default=[],
        objects=[],
        label="Electric utilities",
        doc="Keep vehicles served by any of these utilities (empty = all).",
    )
    legislative_districts = param.ListSelector(
        default=[],
        objects=[],
        label="Legislative districts",
        doc="Keep vehicles in these districts (empty = all).",
    )
    year = param.Selector(
        default=None,
        objects={"Today (registrations)": None},
        allow_None=True,
        label="Plan for year",
        doc="Plan on the demand forecast for this year (None: today's vehicles).",
    )
    candidates = param.Selector(
        default="none", objects=CANDIDATES, label="New sites may go"
    )
    objective = param.Selector(default="median", objects=OBJECTIVES, label="Objective")
    radius_km = param.Number(
        default=5.0, bounds=(0.5, 100.0), step=0.5, label="Coverage radius (km)"
    )
    algorithm = param.Selector(
        default="kmedians", objects=ALGORITHMS, label="Algorithm"
    )
    seed = param.Integer(default=0, bounds=(0, 2**31 - 1), label="Random seed")
    existing = param.Selector(
        default="public", objects=EXISTING, label="Existing stations (kept fixed)"
    )

    # --- capacity and sizing (evplanner.sizing) ---------------------------------
    sizing = param.Selector(
        default="ratio",
        objects=SIZING_METHODS,
        label="Sizing method",
        doc="How the ports a site needs follow from the vehicles it serves.",
    )
    vehicles_per_l2_port = param.Number(
        default=33.0,
        bounds=(1.0, 10_000.0),
        step=1.0,
        label="Vehicles per Level 2 port",
        doc="Ratio model (default: NREL's 2030 national network).",
    )
    vehicles_per_dc_port = param.Number(
        default=181.0,
        bounds=(1.0, 10_000.0),
        step=1.0,
        label="Vehicles per DC fast port",
        doc="Ratio model (default: NREL's 2030 national network).",
    )
    sessions_per_vehicle_day = param.Number(
        default=0.15,
        bounds=(0.001, 10.0),
        step=0.01,
        label="Public sessions per vehicle per day",
        doc="Queue model: public charging sessions a vehicle starts per day.",
    )
    session_hours = param.Number(
        default=1.5,
        bounds=(0.05, 24.0),
        step=0.25,
        label="Mean session (hours)",
        doc="Queue model: mean length of a charging session.",
    )
    hours_per_day = param.Number(
        default=18.0,
        bounds=(1.0, 24.0),
        step=1.0,
        label="Charging hours per day",
        doc="Queue model: hours a day over which the sessions arrive.",
    )
    max_wait_probability = param.Number(
        default=0.2,
        bounds=(0.01, 0.99),
        step=0.01,
        label="Target probability of waiting",
        doc="Queue model: a site gets the fewest ports that keep the probability "
        "that an arriving vehicle waits at or below this.",
    )
    new_site_ports = param.Integer(
        default=10,
        bounds=(1, MAX_SITE_PORTS),
        label="Ports per new site",
        doc="A new site's ports: its capacity with capacity-aware siting, and the "
        "size of the extra sites suggested for unserved vehicles.",
    )
    capacitated = param.Boolean(
        default=False,
        label="Capacity-aware siting",
        doc="No site serves more vehicles than its ports can (a tract's vehicles "
        "may split across sites). K-Medians with the mean-distance objective, on "
        "demand counted in vehicles, only.",
    )

    # --- staged rollout ---------------------------------------------------------
    rollout_years = param.Range(
        default=(2025, 2030), bounds=(2025, 2040), step=1, label="Rollout years"
    )
    per_year = param.Integer(default=5, bounds=(1, 100), label="New sites per year")
    run_rollout = param.Event(label="Plan staged rollout")
    rollout_year = param.Integer(
        default=2025, bounds=(2025, 2040), label="Network as of year"
    )

    selected_site = param.String(
        default=None, allow_None=True, doc="Site id whose catchment is highlighted."
    )
    compute_sweep = param.Event(label="Compute elbow (objective vs k)")
    run_compare = param.Event(label="Compare K-Medians vs K-Means")

    # --- outputs ----------------------------------------------------------------
    solution = param.ClassSelector(
        class_=Solution,
        default=None,
        allow_None=True,
        doc="The latest applied solution.",
    )
    sweep = param.DataFrame(
        default=None, allow_None=True, doc="Objective/coverage vs k, once computed."
    )
    comparison = param.Parameter(
        default=None, doc="(KMeansComparison, sites dict) on request."
    )
    rollout = param.ClassSelector(
        class_=RolloutView,
        default=None,
        allow_None=True,
        doc="The latest staged rollout, on request.",
    )
    busy = param.Boolean(default=False, doc="A solve is running.")
    rollout_busy = param.Boolean(default=False, doc="A rollout is being planned.")
    status = param.String(default="", doc="One line about the latest solve.")
    jobs_done = param.Integer(
        default=0,
        bounds=(0, None),
        doc="Jobs (solves, elbow, comparison, rollout) whose result or error was "
        "applied in this session: tells a new status line from an equal old one.",
    )
    message = param.String(default="", doc="Problem to show to the user.")
    message_level = param.Selector(
        default="warning", objects=["info", "warning", "danger"]
    )
    generation = param.Integer(default=0, doc="Number of solves requested so far.")

    _SOLVE_PARAMS = (
        "k",
        "counties",
        "ev_types",
        "model_years",
        "weighting",
        "radius_km",
        "algorithm",
        "seed",
        "existing",
        "demand_at",
        "residents_share",
        "utilities",
        "legislative_districts",
        "year",
        "candidates",
        "objective",
        *SIZING_PARAMS,
    )

    def __init__(self, store: DataStore | None = None, **params):
        self._store = store if store is not None else bundled_store()
        counties = self._store.counties
        years = self._store.model_year_range
        self.param.counties.objects = counties
        self.param.model_years.bounds = years
        params.setdefault("model_years", years)
        self.param.utilities.objects = self._store.utilities
        self.param.legislative_districts.objects = self._store.legislative_districts
        # Forecast years start after the newest model year (the last, partial
        # one of the extract is still "today").
        first = years[1] + 1
        future = range(first, first + FORECAST_YEARS)
        self.param.year.objects = {
            "Today (registrations)": None,
            **{str(y): y for y in future},
        }
        last = future[-1]
        self.param.rollout_years.bounds = (first, last)
        self.param.rollout_year.bounds = (first, last)
        params.setdefault("rollout_years", (first, min(first + 5, last)))
        params.setdefault("rollout_year", first)
        super().__init__(**params)
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="evplanner-solve"
        )
        self._cond = threading.Condition()
        kinds = ("solve", "sweep", "compare", "rollout")
        self._latest = dict.fromkeys(kinds, 0)
        self._applied = dict.fromkeys(kinds, 0)
        self._pending: dict[str, Future] = {}
        self._closed = False
        self._message_at = 0
        self._uploaded: ExistingSites | None = None
        self._upload_existing = ""  # "upload:<content hash>" of the last upload
        self._uploaded_candidates: CandidateSites | None = None
        self._upload_candidates = ""  # the same for the last candidate file
        # The first solution, through the process-wide cache: every new session
        # starts from the default controls, so only a process's first session
        # solves here (on the event loop, once); every later one is served from
        # the cache at once. The page is then built around a solution (the
        # HoloViews tabs cannot start from an empty one).
        scenario = self.scenario()
        first = engine.cached_solution(self._store, scenario)
        try:
            if first is None:
                first = engine.solve(self._store, scenario)
            self.solution = first
            self.param.update(status=self._solved_text(first), jobs_done=1)
        except ValueError as err:
            self._set_message(str(err), "warning")

    # --- public helpers -----------------------------------------------------------
    @property
    def store(self) -> DataStore:
        return self._store

    @property
    def uploaded_stations(self):
        """Stations of the last valid upload (a DataFrame), or None."""
        return None if self._uploaded is None else self._uploaded.stations

    @property
    def uploaded_candidates(self):
        """Candidate sites of the last valid candidate file (a DataFrame), or None."""
        c = self._uploaded_candidates
        return None if c is None else c.sites

    def scenario(self) -> Scenario:
        """The controls as a :class:`~evplanner.planning.Scenario`.

        Raises
        ------
        InputError
            Controls that make no scenario (the uploaded candidate set chosen
            before any file was uploaded, a forecast year with ZIP demand, ...).
        """
        if self.candidates == "upload" and self._uploaded_candidates is None:
            raise InputError(
                "upload a candidate file first (CSV with lon, lat columns, GeoJSON "
                "or GeoParquet of points)",
                field="candidates",
            )
        years = tuple(int(y) for y in self.model_years)
        full = years == tuple(self.param.model_years.bounds)
        return Scenario(
            new_sites=int(self.k),
            counties=tuple(sorted(self.counties)),
            ev_types=tuple(sorted(self.ev_types)),
            model_years=None if full else years,
            utilities=tuple(sorted(self.utilities)),
            legislative_districts=tuple(sorted(self.legislative_districts)),
            demand_at=self.demand_at,
            weighting=self.weighting,
            # The blend's slider is disabled where it means nothing (residents
            # already, or ZIP demand, which has no residents): it counts as 0.
            residents_share=(
                float(self.residents_share) if self.residents_share_applies else 0.0
            ),
            year=None if self.year is None else int(self.year),
            radius_m=float(self.radius_km) * 1000.0,
            candidates=(
                self._upload_candidates
                if self.candidates == "upload"
                else self.candidates
            ),
            objective=self.objective,
            algorithm=self.algorithm,
            seed=int(self.seed),
            existing=(
                self._upload_existing if self.existing == "upload" else self.existing
            ),
            **self._sizing_fields(),
        )

    def _sizing_fields(self) -> dict:
        """The capacity-model fields of the scenario. The queue's parameters go in
        as set (they only count with the queue method); capacity-aware siting only
        where the scenario accepts it (its toggle is disabled elsewhere)."""
        return {
            "sizing": self.sizing,
            "vehicles_per_l2_port": float(self.vehicles_per_l2_port),
            "vehicles_per_dc_port": float(self.vehicles_per_dc_port),
            "sessions_per_vehicle_day": float(self.sessions_per_vehicle_day),
            "session_hours": float(self.session_hours),
            "hours_per_day": float(self.hours_per_day),
            "max_wait_probability": float(self.max_wait_probability),
            "new_site_ports": int(self.new_site_ports),
            "capacitated": bool(self.capacitated) and self.capacitated_refusal is None,
        }

    @property
    def capacitated_refusal(self) -> str | None:
        """Why capacity-aware siting does not apply to the current controls (the
        scenario refuses it), or None when it does."""
        if self.algorithm != "kmedians":
            return "K-Means cannot honour capacities: choose K-Medians."
        if self.objective != "median":
            return (
                "Capacity-aware siting minimises distance: choose the mean-distance "
                "objective, not maximal coverage."
            )
        share = self.residents_share if self.residents_share_applies else 0.0
        if self.weighting != "vehicles" or share > 0:
            return (
                "Capacities are in vehicles: choose 'All vehicles' weighting and "
                "no residents share."
            )
        return None

    @property
    def residents_share_applies(self) -> bool:
        """Whether the residents blend means something for the current controls:
        a vehicle weighting on census-tract demand."""
        return self.demand_at == "tract" and self.weighting in VEHICLE_WEIGHTINGS

    def rollout_scenario(self) -> Scenario:
        """The controls as the rollout's scenario: ``per_year`` new sites a year."""
        return self.scenario().replace(new_sites=int(self.per_year), year=None)

    def wait(self, timeout: float = 60.0) -> Solution | None:
        """Block until the latest requested solve has been applied.

        For tests and scripts without a server; in a served session results arrive
        on the event loop, which this method must not be called from.
        """
        with self._cond:
            done = self._cond.wait_for(
                lambda: all(self._applied[k] >= self._latest[k] for k in self._latest),
                timeout=timeout,
            )
        if not done:
            raise TimeoutError(f"requests not applied within {timeout} s")
        return self.solution

    def close(self) -> None:
        """Stop the session's solver thread (called when the session ends)."""
        self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)

    # --- reacting to the controls --------------------------------------------------
    @param.depends("quick_k", watch=True)
    def _on_quick_k(self):
        if self.quick_k is not None:
            self.k = int(self.quick_k)

    @param.depends("k", watch=True)
    def _sync_quick_k(self):
        self.quick_k = self.k if self.k in QUICK_K else None

    @param.depends(*_SOLVE_PARAMS, watch=True)
    def _on_change(self):
        if not self.ev_types:
            self._set_message(
                "Choose at least one EV type (BEV, PHEV); the current solution stays.",
                "warning",
            )
            return
        if self.existing == "upload" and self._uploaded is None:
            self._set_message(
                "Upload a CSV of existing stations (lon, lat columns) "
                "to use them; the current solution stays.",
                "info",
            )
            return
        if self.candidates == "upload" and self._uploaded_candidates is None:
            self._set_message(
                "Upload a candidate file (CSV with lon, lat columns, GeoJSON or "
                "GeoParquet of points) to site on it; the current solution stays.",
                "info",
            )
            return
        if not self._scenario_or_message():
            return
        self._request_solve()

    def _scenario_or_message(self) -> Scenario | None:
        """The scenario, or None after saying why the controls do not make one
        (a forecast year with ZIP demand, say); the current solution stays."""
        try:
            return self.scenario()
        except InputError as err:
            self._set_message(f"{err} The current solution stays.", "warning")
            return None

    def upload_stations(self, data: bytes | None, filename: str | None) -> None:
        """Take an uploaded CSV of existing stations (the file chooser calls this).

        A valid file becomes the fixed stations (and selects "Uploaded CSV"); a bad
        or empty one gets a message naming the file and changes nothing.
        """
        name = filename or "upload.csv"
        try:
            sites, existing = engine.parse_uploaded_stations(data or b"", name)
        except InputError as err:
            # Keep the previous upload and solution: the bad file changes nothing.
            self._set_message(f"Upload rejected: {err}", "danger")
            return
        self._uploaded, self._upload_existing = sites, existing
        log.info("uploaded %d stations from %s", len(sites), name)
        self._use_upload("existing", f"{len(sites)} existing stations from {name}")

    def upload_candidates(self, data: bytes | None, filename: str | None) -> None:
        """Take an uploaded file of candidate sites (the second file chooser).

        A valid file becomes the candidate set (and selects "Uploaded candidate
        file"); a bad one gets a message naming the file and every bad row, and
        changes nothing.
        """
        name = filename or "candidates.csv"
        try:
            sites, token = engine.parse_uploaded_candidates(data or b"", name)
        except InputError as err:
            self._set_message(f"Candidate file rejected: {err}", "danger")
            return
        self._uploaded_candidates, self._upload_candidates = sites, token
        log.info("uploaded %d candidate sites from %s", len(sites), name)
        self._use_upload("candidates", f"{len(sites)} candidate sites from {name}")

    def _use_upload(self, control: str, what: str) -> None:
        """Select a new upload in ``control`` (or re-solve if it is selected)."""
        if getattr(self, control) == "upload":
            self._on_change()
        else:
            setattr(self, control, "upload")  # triggers the solve
        # After the request, so that applying that solve does not clear it.
        self._set_message(f"Uploaded {what}.", "info")

    def refuse_upload(self, filename: str | None, size_bytes: int) -> None:
        """Say that a station file over the size limit was refused (by the
        browser)."""
        err = engine.upload_too_large(filename or "upload.csv", size_bytes)
        self._set_message(f"Upload rejected: {err}", "danger")

    def refuse_candidate_upload(self, filename: str | None, size_bytes: int) -> None:
        """Say that a candidate file over the size limit was refused."""
        err = engine.upload_too_large(
            filename or "candidates.csv", size_bytes, what="a candidate file"
        )
        self._set_message(f"Candidate file rejected: {err}", "danger")

    @param.depends("compute_sweep", watch=True)
    def _on_sweep(self):
        scenario = self._scenario_or_message()
        if scenario is None:
            return
        self._submit(
            "sweep",
            partial(
                engine.sweep,
                self._store,
                scenario,
                SWEEP_K,
                self._uploaded,
                self._uploaded_candidates,
            ),
        )

    @param.depends("run_compare", watch=True)
    def _on_compare(self):
        scenario = self._scenario_or_message()
        if scenario is None:
            return
        self._submit("compare", partial(engine.compare, self._store, scenario))

    @param.depends("run_rollout", watch=True)
    def _on_rollout(self):
        if not self._scenario_or_message():
            return
        first, last = (int(y) for y in self.rollout_years)
        self.rollout_busy = True
        self._submit(
            "rollout",
            partial(
                engine.rollout,
                self._store,
                self.rollout_scenario(),
                range(first, last + 1),
                self._uploaded,
                self._uploaded_candidates,
            ),
        )

    # --- solving off the event loop -------------------------------------------------
    def _request_solve(self):
        scenario = self.scenario()
        previous = self.solution
        self._submit(
            "solve",
            partial(
                engine.solve,
                self._store,
                scenario,
                self._uploaded,
                previous,
                self._uploaded_candidates,
            ),
        )

    def _submit(self, kind: str, job):
        """Run ``job`` on the session's solver thread; apply its result later.

        Each kind ("solve", "sweep", "compare") has its own generation counter: the
        latest request of a kind supersedes the earlier ones of that kind.
        """
        if self._closed:  # the session ended (e.g. before its first solve started)
            return
        with self._cond:
            self._latest[kind] += 1
            gen = self._latest[kind]
            if kind == "solve":
                self.generation = gen
        stale = self._pending.get(kind)
        if stale is not None:
            stale.cancel()  # only succeeds if it has not started yet
        self.param.update(
            busy=True, status="Solving…" if kind == "solve" else f"Computing {kind}…"
        )
        doc = pn.state.curdoc
        future = self._executor.submit(self._run_if_latest, kind, gen, job)
        self._pending[kind] = future
        future.add_done_callback(partial(self._deliver, kind, gen, doc))

    def _run_if_latest(self, kind: str, gen: int, job):
        # On the solver thread. A request that a newer one of its kind replaced
        # while it waited in the queue is skipped, not computed: cancel() above
        # can miss it when the thread has just picked it up.
        with self._cond:
            if gen != self._latest[kind]:
                raise Superseded(f"{kind} {gen}")
        return job()

    def _deliver(self, kind: str, gen: int, doc, future: Future):
        # Runs on the solver thread (or wherever the future completed). Model
        # changes must happen on the session's event loop when there is one.
        if future.cancelled() or isinstance(future.exception(), Superseded):
            # A newer request of the kind is outstanding: it clears "busy".
            self._mark_applied(kind, gen)
            return
        callback = partial(self._apply, kind, gen, future)
        if doc is not None and doc.session_context is not None:
            # Bokeh's documented way to change a document from another thread:
            # the callback runs on the session's event loop, holding its lock.
            doc.add_next_tick_callback(callback)
        else:
            callback()

    def _apply(self, kind: str, gen: int, future: Future):
        # No panel.io.document.hold() here: under it, the changes of plain Bokeh
        # models (the map's and histogram's data sources, the status Div) were
        # dropped instead of sent (Panel 1.9; the browser test catches it).
        status = None
        try:
            status = self._apply_result(kind, gen, future)
        finally:
            self._mark_applied(kind, gen)
            # busy and status together: the status line re-renders once.
            update = {"busy": self._outstanding()}
            if status is not None:
                update["status"] = status
                update["jobs_done"] = self.jobs_done + 1
            self.param.update(**update)

    def _apply_result(self, kind: str, gen: int, future: Future) -> str | None:
        """Apply a finished job's result or error; return the new status line."""
        if kind == "rollout" and gen == self._latest[kind]:
            self.rollout_busy = False
        if gen != self._latest[kind]:
            log.debug(
                "dropping stale %s result %d (latest %d)", kind, gen, self._latest[kind]
            )
            return None
        error = future.exception()
        if error is None:
            result = future.result()
            if kind == "solve":
                self._apply_solution(result, gen)
                return self._solved_text(result)
            if kind == "sweep":
                self.sweep = result
                return f"Elbow computed for {len(result)} values of k."
            if kind == "rollout":
                return self._apply_rollout(result)
            self.comparison = result
            return "K-Medians vs K-Means computed."
        if isinstance(error, ValueError):  # InputError is a ValueError
            # Bad input or an impossible request: say why, keep the solution.
            self._set_message(str(error), "warning")
        else:
            log.error("%s failed", kind, exc_info=error)
            self._set_message(
                f"The {kind} failed unexpectedly ({type(error).__name__}: "
                f"{error}); the previous solution is kept.",
                "danger",
            )
        return "Kept the previous solution."

    def _apply_solution(self, solution: Solution, gen: int):
        if self.selected_site is not None and self.selected_site not in set(
            solution.sites["site_id"]
        ):
            self.selected_site = None
        if solution.notes:
            text = " ".join(solution.notes)
            if self._message_at >= gen and self.message_level == "info":
                # Said for this very solve (an upload was taken): keep it too.
                text = f"{self.message} {text}"
            self._set_message(text, "info")
        elif self._message_at < gen:
            # The message was about an earlier state of the controls.
            self.message = ""
        self.solution = solution

    def _apply_rollout(self, result: RolloutView) -> str:
        first, last = result.years[0], result.years[-1]
        # The year slider spans the planned years and starts on the last one.
        self.param.rollout_year.bounds = (first, last)
        # Together: views of the rollout see the new result with its year.
        self.param.update(rollout_year=last, rollout=result)
        per_year = result.rollout.scenario.new_sites
        return (
            f"Rollout planned: {per_year} new sites a year, {first}-{last} "
            f"({per_year * len(result.years)} sites)."
        )

    @staticmethod
    def _solved_text(solution: Solution) -> str:
        k, year = solution.scenario.new_sites, solution.scenario.year
        forecast = "" if year is None else f" Demand forecast for {year}."
        return (
            f"Solved: {solution.n_new} new sites (k={k}) on "
            f"{len(solution.demand)} demand points in {solution.solve_s:.2f} s."
            f"{forecast}"
        )

    def _mark_applied(self, kind: str, gen: int):
        with self._cond:
            self._applied[kind] = max(self._applied[kind], gen)
            self._cond.notify_all()

    def _outstanding(self) -> bool:
        with self._cond:
            return any(self._applied[k] < self._latest[k] for k in self._latest)

    def _set_message(self, text: str, level: str = "warning"):
        self._message_at = self._latest["solve"]
        self.message_level = level
        self.message = text
