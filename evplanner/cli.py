"""Command-line entry point: ``evplanner info | solve | sweep | synth``.

A thin argument layer: parse, build a :class:`~evplanner.planning.Scenario`, call the
planning layer, write, exit. Exit codes: 0 success, 2 bad arguments or input (the
message names the option, file or row), 1 anything else (a one-line message; ``-v``
shows the traceback).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from evplanner._io import check_outputs, write_files
from evplanner.errors import ClusterError, InputError

__all__ = ["main"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2

#: Scenario field -> the option that sets it, for error messages.
FIELD_OPTIONS = {
    "new_sites": "--k", "demand": "--input", "counties": "--county",
    "ev_types": "--ev-type", "model_years": "--model-years",
    "utilities": "--utility", "legislative_districts": "--district",
    "demand_at": "--demand-at", "tract_fallback": "--tract-fallback",
    "residents_share": "--residents-share", "year": "--year",
    "candidates": "--candidates", "objective": "--objective", "snap": "--snap",
    "weighting": "--weighting", "existing": "--existing",
    "radius_m": "--radius-km", "seed": "--seed", "max_iter": "--max-iter",
    "crs": "--crs", "algorithm": "--algorithm",
    "sizing": "--sizing", "vehicles_per_l2_port": "--vehicles-per-l2-port",
    "vehicles_per_dc_port": "--vehicles-per-dc-port",
    "sessions_per_vehicle_day": "--sessions-per-vehicle-day",
    "session_hours": "--session-hours", "hours_per_day": "--hours-per-day",
    "max_wait_probability": "--max-wait-probability",
    "max_mean_wait_hours": "--max-mean-wait-hours",
    "new_site_ports": "--new-site-ports", "capacitated": "--capacitated",
}  # fmt: skip
#: Most values one sweep may try.
MAX_SWEEP_VALUES = 200


class UsageError(Exception):
    """Bad command-line arguments: reported with exit code 2."""


# --------------------------------------------------------------------------- info


def _looks_like_stations(path: Path) -> bool:
    """AFDC exports and station Parquet files are read as stations by ``info``."""
    if not path.is_file() or path.stat().st_size == 0:
        return False
    with path.open("rb") as fh:
        head = fh.read(65536)
    if head[:4] == b"PAR1":
        import pyarrow.parquet as pq

        try:
            return "station_id" in pq.read_schema(path).names
        except Exception:  # noqa: BLE001  (load_vehicles will say what it is)
            return False
    first = head.decode("utf-8-sig", errors="replace").splitlines()[:1]
    return bool(first) and "Fuel Type Code" in first[0]


def cmd_info(args: argparse.Namespace) -> int:
    """Print what a data file holds and what loading it keeps and drops."""
    from evplanner.data import BUNDLED_VEHICLES, load_stations, load_vehicles
    from evplanner.projection import choose_crs

    path = Path(args.path) if args.path else BUNDLED_VEHICLES
    stations = args.stations or _looks_like_stations(path)
    if stations:
        frame, report = load_stations(path)
    else:
        frame, report = load_vehicles(path, keep_out_of_area=args.keep_out_of_area)
    placement = None
    if not stations and report.kind in ("wa-dol-csv", "bundled-vehicles"):
        from evplanner.data import load_tracts
        from evplanner.demand import place_vehicles

        # Where the demand sits: tract centres of population (or ZIP centroids).
        frame, placement = place_vehicles(
            frame,
            load_tracts(),
            demand_at=args.demand_at,
            tract_fallback=args.tract_fallback,
        )
        report = placement.apply_to(report)
    print(report.format())
    if placement is not None:
        print(placement.format())
    if frame.empty:
        print("no usable rows")
        return EXIT_OK
    lon, lat = frame["lon"].to_numpy(), frame["lat"].to_numpy()
    distinct = len(np.unique(np.column_stack([lon, lat]), axis=0))
    crs = _crs_option(lambda: choose_crs(lon, lat, args.crs))
    if stations:
        print(f"stations: {len(frame):,}")
        for col in ("level1_ports", "level2_ports", "dc_fast_ports"):
            print(f"{col.replace('_', ' ')}: {int(frame[col].sum()):,}")
        print(f"stations with DC fast ports: "
              f"{int((frame['dc_fast_ports'] > 0).sum()):,}")  # fmt: skip
    else:
        print(f"total weight: {frame['weight'].sum():,.1f}")
    where = "" if placement is None else f" ({placement.demand_at} demand)"
    print(f"distinct locations{where}: {distinct:,}")
    print(f"bounding box: lon {lon.min():.5f} .. {lon.max():.5f}, "
          f"lat {lat.min():.5f} .. {lat.max():.5f}")  # fmt: skip
    print(f"CRS: {crs.to_string()} ({crs.name})")
    return EXIT_OK


# --------------------------------------------------------------------------- parsing


def _k_values(text: str) -> list[int]:
    """``"5:100:5"`` (start:stop:step, inclusive), ``"5:20"`` or ``"5,10,20"``.

    The count is checked before any list is built, so ``1:1000000000`` is refused at
    once rather than exhausting memory.
    """
    from evplanner.planning.scenario import MAX_NEW_SITES

    try:
        if ":" in text:
            parts = [int(p) for p in text.split(":")]
            if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] < 1):
                raise ValueError
            start, stop = parts[0], parts[1]
            values = range(start, stop + 1, parts[2] if len(parts) == 3 else 1)
        else:
            values = [int(p) for p in text.split(",")]
    except ValueError:
        raise UsageError(f"--k: expected START:STOP[:STEP] or a list like 5,10,20, "
                         f"got {text!r}") from None  # fmt: skip
    # min/max of a range without iterating it (a range can be a billion long).
    low, high = (
        (values[0], values[-1])
        if isinstance(values, range) and len(values)
        else (min(values, default=0), max(values, default=0))
    )
    if len(values) == 0 or low < 1 or high > MAX_NEW_SITES:
        raise UsageError(f"--k: expected numbers of new sites from 1 to "
                         f"{MAX_NEW_SITES}, got {text!r}")  # fmt: skip
    if len(values) > MAX_SWEEP_VALUES:
        raise UsageError(f"--k: {len(values):,} values; a sweep tries at most "
                         f"{MAX_SWEEP_VALUES} (use a larger STEP)")  # fmt: skip
    return list(values)


def _model_years(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        parts = [int(p) for p in text.split(":")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or parts[0] > parts[-1]:
        raise UsageError(f"--model-years: expected FIRST:LAST like 2018:2023 (or one "
                         f"year), got {text!r}")  # fmt: skip
    return parts[0], parts[-1]


def _split(values: list[str] | None) -> list[str]:
    """Repeated and comma-separated option values as one list."""
    return [v.strip() for value in values or [] for v in value.split(",")
            if v.strip()]  # fmt: skip


def _timeout_s(text: str, option: str = "--timeout") -> float:
    from dask.utils import parse_timedelta

    try:
        seconds = float(parse_timedelta(text, default="seconds"))
    except (ValueError, KeyError, TypeError):
        raise UsageError(f"{option}: expected a duration like 10s, got {text!r}"
                         ) from None  # fmt: skip
    if not (math.isfinite(seconds) and seconds > 0):
        raise UsageError(f"{option}: expected a positive duration, got {text!r}")
    return seconds


class _StoreNamed(argparse.Action):
    """Store the value and the option string given, as ``<dest>_option``.

    ``--fixed`` is an alias of ``--existing``: messages name the one the user typed.
    """

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        setattr(namespace, f"{self.dest}_option", option_string)


def _crs_option(choose):
    """``choose()``; a CRS that does not fit the data is an error of ``--crs``."""
    try:
        return choose()
    except ValueError as err:
        text = str(err)
        if not text.startswith(("crs ", "crs: ")):
            raise
        text = text.removeprefix("crs: ").removeprefix("crs ")
        raise UsageError(f"--crs: {text}") from None


def _existing_option(args: argparse.Namespace) -> str:
    return getattr(args, "existing_option", None) or "--existing"


def _existing(args: argparse.Namespace) -> str:
    """``--existing``: none, public, dc-fast or a station file."""
    value = args.existing or "none"
    named = {"none": "none", "public": "public", "dc-fast": "dc_fast",
             "dc_fast": "dc_fast"}  # fmt: skip
    if value in named:
        return named[value]
    if not Path(value).is_file():
        raise InputError(f"file not found ({_existing_option(args)}: none, public, "
                         "dc-fast or a station file)", path=value)  # fmt: skip
    return value


def _scenario(args: argparse.Namespace, new_sites: int):
    """The arguments as a validated Scenario (errors name the option)."""
    from evplanner.planning import Scenario

    if not (math.isfinite(args.radius_km) and args.radius_km > 0):
        raise UsageError(f"--radius-km: expected a finite distance > 0, "
                         f"got {args.radius_km}")  # fmt: skip
    inputs = [args.input] if args.input else []
    return Scenario(
        new_sites=new_sites, demand=inputs, counties=_split(args.county),
        ev_types=_split(args.ev_type), model_years=_model_years(args.model_years),
        utilities=_utilities(args.utility), legislative_districts=_districts(args),
        demand_at=args.demand_at, tract_fallback=args.tract_fallback,
        weighting=args.weighting, residents_share=args.residents_share,
        year=getattr(args, "year", None), keep_out_of_area=args.keep_out_of_area,
        existing=_existing(args), radius_m=args.radius_km * 1000.0,
        candidates=_candidates(args), objective=args.objective, snap=args.snap,
        seed=args.seed, max_iter=args.max_iter, crs=args.crs,
        **_sizing(args),
    )  # fmt: skip


def _sizing(args: argparse.Namespace) -> dict:
    """The sizing options as Scenario fields (defaults: the Scenario's own)."""
    from evplanner.planning import Scenario

    defaults = Scenario()
    out = {"sizing": args.sizing, "capacitated": args.capacitated}
    for name in ("vehicles_per_l2_port", "vehicles_per_dc_port",
                 "sessions_per_vehicle_day", "session_hours", "hours_per_day",
                 "new_site_ports"):  # fmt: skip
        value = getattr(args, name)
        out[name] = getattr(defaults, name) if value is None else value
    if args.max_mean_wait_hours is not None:
        # A mean-wait target replaces the default probability target.
        out["max_mean_wait_hours"] = args.max_mean_wait_hours
        out["max_wait_probability"] = args.max_wait_probability
    elif args.max_wait_probability is not None:
        out["max_wait_probability"] = args.max_wait_probability
    return out


def _candidates(args: argparse.Namespace) -> str:
    """``--candidates``: none, tracts, stations or a file of candidate points."""
    value = args.candidates or "none"
    if value in ("none", "tracts", "stations"):
        return value
    if not Path(value).is_file():
        raise InputError(
            "file not found (--candidates: none, tracts, stations or a "
            "CSV/GeoJSON/GeoParquet file of points)",
            path=value,
        )
    return value


def _utilities(values: list[str] | None) -> list[str]:
    """Repeated ``--utility`` values (names contain commas, so no splitting)."""
    return [v.strip() for v in values or [] if v.strip()]


def _districts(args: argparse.Namespace) -> list[int]:
    try:
        return [int(v) for v in _split(args.district)]
    except ValueError:
        raise UsageError(f"--district: expected district numbers like 1,5,43, got "
                         f"{args.district}") from None  # fmt: skip


def _inputs(args: argparse.Namespace) -> dict[str, str | None]:
    """Files the run reads, by option (never to be written over)."""
    from evplanner.data import BUNDLED_STATIONS, BUNDLED_VEHICLES

    existing = (
        args.existing
        if args.existing not in (None, "none", "public", "dc-fast", "dc_fast")
        else None
    )
    candidates = (
        args.candidates
        if args.candidates not in (None, "none", "tracts", "stations")
        else None
    )
    return {"--input": args.input or str(BUNDLED_VEHICLES),
            _existing_option(args): existing or str(BUNDLED_STATIONS),
            "--candidates": candidates, **_bundled()}  # fmt: skip


def _bundled() -> dict[str, list[str]]:
    """The package's data files: read by some runs (census tracts by tract demand,
    residents and forecasts), destroyed by a write in any run, so never an output."""
    from evplanner.data import BUNDLED_STATIONS, BUNDLED_TRACTS, BUNDLED_VEHICLES

    return {"(bundled data)": [str(BUNDLED_VEHICLES), str(BUNDLED_STATIONS),
                               str(BUNDLED_TRACTS)]}  # fmt: skip


def _check_run_args(args: argparse.Namespace) -> None:
    """Reject bad combinations before any data is read."""
    if args.scheduler and args.workers is not None:
        raise UsageError("give either --scheduler or --workers, not both")
    if args.workers is not None and not 1 <= args.workers <= 256:
        raise UsageError(f"--workers: expected 1 to 256, got {args.workers}")


# --------------------------------------------------------------------------- progress


def _show_progress(args: argparse.Namespace) -> None:
    """Progress lines on stderr: what is read, and each K-Medians iteration."""
    if args.verbose < 2:
        # The cluster's own chatter (worker start/stop at INFO; at ERROR, with a
        # traceback, a lost scheduler) is not for the user: the run reports cluster
        # failures itself, in one line. -v shows its warnings, -vv everything.
        # Importing distributed sets its log levels, so import it first.
        import distributed  # noqa: F401

        level = logging.WARNING if args.verbose else logging.CRITICAL
        for name in ["distributed", *logging.root.manager.loggerDict]:
            if name.startswith("distributed"):
                logging.getLogger(name).setLevel(level)
    if args.quiet:
        # main() may run again in one process (tests, notebooks): undo an earlier
        # run's progress output, or --quiet would still print it.
        progress = logging.getLogger("evplanner")
        for handler in list(progress.handlers):
            if isinstance(handler, _ProgressHandler):
                progress.removeHandler(handler)
        progress.propagate = True
        for name in ("evplanner", "evplanner.kmedians", "evplanner.demand"):
            logging.getLogger(name).setLevel(logging.NOTSET)
        return
    for name, level in (("evplanner", logging.INFO), ("evplanner.kmedians", 10)):
        logger = logging.getLogger(name)
        logger.setLevel(min(level, logger.getEffectiveLevel()))
    progress = logging.getLogger("evplanner")
    if not any(isinstance(h, _ProgressHandler) for h in progress.handlers):
        handler = _ProgressHandler()
        handler.setFormatter(logging.Formatter("[%(asctime)s] %(message)s",
                                               "%H:%M:%S"))  # fmt: skip
        progress.addHandler(handler)
        progress.propagate = False


class _ProgressHandler(logging.Handler):
    """Progress lines to whatever ``sys.stderr`` is when they are logged."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            print(self.format(record), file=sys.stderr, flush=True)
        except Exception:  # noqa: BLE001  (logging must never break a run)
            self.handleError(record)


class ProgressBar:
    """A one-line progress bar on stderr (redrawn in place on a terminal)."""

    def __init__(self, total: int, label: str, *, quiet: bool = False, width=30):
        self.total, self.label, self.quiet, self.width = total, label, quiet, width
        self.start = time.perf_counter()

    def __call__(self, done: int, total: int, note: str = "") -> None:
        if self.quiet:
            return
        filled = int(self.width * done / max(total, 1))
        bar = "#" * filled + "." * (self.width - filled)
        line = (f"{self.label} [{bar}] {done}/{total} {note} "
                f"({time.perf_counter() - self.start:.1f} s)")  # fmt: skip
        end = "\n" if done >= total or not sys.stderr.isatty() else "\r"
        print(line, end=end, file=sys.stderr, flush=True)


def _mode(args: argparse.Namespace) -> str:
    if args.scheduler:
        return f"scheduler {args.scheduler}"
    if args.workers is not None:
        return f"LocalCluster ({args.workers} workers)"
    return "in memory"


# --------------------------------------------------------------------------- solve


def cmd_solve(args: argparse.Namespace) -> int:
    """Place k new sites and write them with their metrics and report."""
    from evplanner.planning import dask_client, site_format, solve, write_plan

    if args.k < 1:
        raise UsageError(f"--k: expected a number of new sites >= 1, got {args.k}")
    _check_run_args(args)
    scenario = _scenario(args, args.k)
    check_outputs({"--out": args.out, "--metrics": args.metrics,
                   "--report": args.report}, _inputs(args))  # fmt: skip
    try:
        site_format(args.out)
    except InputError as err:
        raise UsageError(f"--out {args.out}: {err.message}") from None
    if args.report and Path(args.report).suffix.lower() not in (".html", ".htm"):
        raise UsageError(f"--report {args.report}: expected an .html file")
    if args.metrics and Path(args.metrics).suffix.lower() != ".json":
        raise UsageError(f"--metrics {args.metrics}: expected a .json file")
    timeout_s = _timeout_s(args.timeout)
    no_workers_s = _timeout_s(args.worker_timeout, "--worker-timeout")
    _show_progress(args)
    with dask_client(args.scheduler, args.workers, timeout_s=timeout_s,
                     no_workers_s=no_workers_s) as client:  # fmt: skip
        plan = solve(scenario, client=client, blocksize=args.blocksize)
    write_plan(plan, sites=args.out, metrics=args.metrics, report=args.report)
    for report in (plan.demand_report, plan.existing_report):
        if report is not None:
            print(report.format())
    c = plan.coverage
    print(
        f"{c.n_points:,} demand points (total weight {c.total_weight:,.1f} "
        f"{plan.weight_unit}), CRS {plan.crs.to_string()}, {_mode(args)}"
    )
    print(plan.summary() + f" ({plan.n_iter} iterations, "
          f"{plan.timings['total']:.1f} s)")  # fmt: skip
    if plan.today is not None:
        print(f"today's network alone: mean distance "
              f"{plan.today.mean_distance_m:,.0f} m, "
              f"{100 * plan.today.coverage_share:.1f}% within "
              f"{c.radius_m / 1000:g} km")  # fmt: skip
    if plan.sizing is not None:
        print(_sizing_line(plan.sizing))
    for note in plan.notes:
        print(f"note: {note}")
    written = [f"sites: {args.out}"] + [
        f"{name}: {path}"
        for name, path in (("metrics", args.metrics), ("report", args.report))
        if path
    ]
    print("; ".join(written))
    return EXIT_OK


def _sizing_line(sizing: dict) -> str:
    """One line: overloaded stations, ports to add, new sites' ports, shortfall."""
    return (
        f"sizing ({sizing['model']['method']}): {sizing['n_overloaded']:,} of "
        f"{sizing['existing_with_load']:,} existing stations with load overloaded "
        f"({sizing['ports_to_add']:,} ports to add); new sites need "
        f"{sizing['new_site_ports_needed']:,} ports; unserved "
        f"{sizing['unserved_vehicles']:,.0f} vehicles, suggested extra sites of "
        f"{sizing['new_site_ports']} ports: {sizing['suggested_extra_sites']:,}"
        + (f"; with capacities: mean distance {sizing['mean_distance_m']:,.0f} m"
           if sizing["capacitated"] else "")
    )  # fmt: skip


def cmd_sweep(args: argparse.Namespace) -> int:
    """Objective and coverage for each k, as CSV and a PNG plot."""
    from evplanner.planning import dask_client, sweep

    ks = _k_values(args.k)
    _check_run_args(args)
    scenario = _scenario(args, ks[0])
    out = Path(args.out)
    plot = Path(args.plot) if args.plot else out.with_suffix(".png")
    check_outputs({"--out": str(out), "--plot": str(plot)}, _inputs(args))
    if out.suffix.lower() != ".csv":
        raise UsageError(f"--out {out}: expected a .csv file")
    if plot.suffix.lower() != ".png":
        raise UsageError(f"--plot {plot}: expected a .png file")
    timeout_s = _timeout_s(args.timeout)
    no_workers_s = _timeout_s(args.worker_timeout, "--worker-timeout")
    _show_progress(args)
    bar = ProgressBar(len(ks), "sweep", quiet=args.quiet)
    with dask_client(args.scheduler, args.workers, timeout_s=timeout_s,
                     no_workers_s=no_workers_s) as client:  # fmt: skip
        table = sweep(
            scenario,
            ks,
            client=client,
            blocksize=args.blocksize,
            progress=lambda done, total, plan: bar(
                done, total, f"k={plan.scenario.new_sites}"
            ),
        )
    # Both files or neither.
    write_files({out: table.to_csv(index=False, lineterminator="\n").encode(),
                 plot: _sweep_png(table, args.radius_km)})  # fmt: skip
    print(table[["new_sites", "objective_m", "mean_distance_m", "coverage_share"]]
          .to_string(index=False))  # fmt: skip
    print(f"table: {out}; plot: {plot}")
    return EXIT_OK


def _years(text: str) -> list[int]:
    from evplanner.planning.rollout import MAX_YEARS

    try:
        parts = [int(p) for p in text.split(":")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or parts[0] > parts[-1]:
        raise UsageError(f"--years: expected FIRST:LAST like 2025:2030, got {text!r}")
    if parts[-1] - parts[0] + 1 > MAX_YEARS:
        raise UsageError(f"--years: at most {MAX_YEARS} years, got {text!r}")
    return list(range(parts[0], parts[-1] + 1))


def cmd_rollout(args: argparse.Namespace) -> int:
    """New sites year by year on each year's forecast; sites with their year."""
    from evplanner.planning import site_format
    from evplanner.planning.rollout import rollout
    from evplanner.planning.writers import rollout_bytes

    years = _years(args.years)
    if args.per_year < 1:
        raise UsageError(f"--per-year: expected >= 1, got {args.per_year}")
    if args.scheduler or args.workers is not None:
        raise UsageError("rollout runs in memory (the forecast needs every vehicle): "
                         "drop --scheduler/--workers")  # fmt: skip
    args.year = years[0]
    scenario = _scenario(args, args.per_year)
    check_outputs({"--out": args.out, "--metrics": args.metrics}, _inputs(args))
    try:
        fmt = site_format(args.out)
    except InputError as err:
        raise UsageError(f"--out {args.out}: {err.message}") from None
    if args.metrics and Path(args.metrics).suffix.lower() != ".json":
        raise UsageError(f"--metrics {args.metrics}: expected a .json file")
    _show_progress(args)
    bar = ProgressBar(len(years), "rollout", quiet=args.quiet)
    plan = rollout(
        scenario,
        years,
        progress=lambda done, total, plan: bar(done, total, f"{plan.scenario.year}"),
    )
    files = {Path(args.out): rollout_bytes(plan, fmt)}
    if args.metrics:
        import json

        files[Path(args.metrics)] = (json.dumps(plan.metrics(), indent=2)
                                     + "\n").encode()  # fmt: skip
    write_files(files)
    table = plan.per_year()
    table["coverage_pct"] = (100 * table["coverage_share"]).round(1)
    table["mean_distance_km"] = (table["mean_distance_m"] / 1000).round(2)
    print(
        table[
            [
                "year",
                "new_sites",
                "sites_built",
                "total_vehicles",
                "mean_distance_km",
                "coverage_pct",
            ]
        ].to_string(index=False)
    )
    print(f"sites: {args.out}" + (f"; metrics: {args.metrics}" if args.metrics
                                  else ""))  # fmt: skip
    return EXIT_OK


def _sweep_png(table, radius_km: float) -> bytes:
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(10, 4), layout="constrained")
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(table["new_sites"], table["mean_distance_m"] / 1000.0, marker="o")
    ax1.set(xlabel="new sites k", ylabel="mean L1 distance (km)",
            title="Objective / total weight")  # fmt: skip
    ax2.plot(table["new_sites"], 100 * table["coverage_share"], marker="o",
             color="C2")  # fmt: skip
    ax2.set(xlabel="new sites k", ylabel="demand covered (%)",
            title=f"Coverage within {radius_km:g} km")  # fmt: skip
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    return buffer.getvalue()


def cmd_synth(args: argparse.Namespace) -> int:
    """Write synthetic demand shaped like the real data, in chunks."""
    from evplanner.data import BUNDLED_VEHICLES, load_vehicles
    from evplanner.demand import demand_points, synthesize_demand

    if args.n < 1:
        raise UsageError(f"--n: expected a positive number of points, got {args.n}")
    if args.chunk_rows < 1:
        raise UsageError(f"--chunk-rows: expected >= 1, got {args.chunk_rows}")
    if not (math.isfinite(args.spread_m) and args.spread_m >= 0):
        raise UsageError(f"--spread-m: expected a finite distance >= 0, "
                         f"got {args.spread_m}")  # fmt: skip
    out = Path(args.out)
    if out.suffix.lower() != ".parquet":
        raise UsageError(f"--out {out}: expected a .parquet file")
    # The bundled file is the input when none is given.
    inputs = {"--input": args.input or str(BUNDLED_VEHICLES), **_bundled()}
    check_outputs({"--out": args.out}, inputs)
    if not args.quiet:
        logging.getLogger("evplanner.demand").setLevel(logging.INFO)
    vehicles, report = load_vehicles(args.input)
    demand = demand_points(vehicles)
    if demand.empty:
        raise InputError("no demand points to draw from", path=report.source)
    # Write next to the target, then rename: never a partial or empty output.
    partial = out.with_name(f".{out.name}.partial")
    try:
        _crs_option(lambda: synthesize_demand(
            demand, args.n, seed=args.seed, path=partial, chunk_rows=args.chunk_rows,
            spread_m=args.spread_m, crs=args.crs,
        ))  # fmt: skip
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    print(
        f"wrote {args.n:,} synthetic points to {out} (seed {args.seed}, drawn from "
        f"{len(demand):,} demand points of {report.source})"
    )
    return EXIT_OK


# --------------------------------------------------------------------------- parser


def _add_run_options(sub: argparse.ArgumentParser) -> None:
    """Demand, model and cluster options shared by ``solve`` and ``sweep``."""
    data = sub.add_argument_group("demand and existing sites")
    data.add_argument("--input", help="demand file or glob (default: the bundled "
                      "vehicles)")  # fmt: skip
    data.add_argument(
        "--existing", "--fixed", dest="existing", action=_StoreNamed,
        metavar="none|public|dc-fast|FILE",
        help="existing sites held fixed: none (default), the bundled public stations, "
        "those with DC fast ports, or a station file (AFDC export, lon/lat CSV)",
    )  # fmt: skip
    data.add_argument(
        "--county",
        action="append",
        metavar="NAME",
        help="keep these counties (repeat or comma-separate)",
    )
    data.add_argument(
        "--ev-type", action="append", metavar="BEV|PHEV", help="keep these EV types"
    )
    data.add_argument(
        "--model-years",
        metavar="FIRST:LAST",
        help="inclusive model-year range, e.g. 2018:2023",
    )
    data.add_argument(
        "--utility",
        action="append",
        metavar="NAME",
        help="keep vehicles served by this electric utility (repeat; "
        "a vehicle listing several counts when any is chosen)",
    )
    data.add_argument(
        "--district",
        action="append",
        metavar="N",
        help="keep these legislative districts (repeat or comma-separate)",
    )
    data.add_argument(
        "--demand-at",
        default="tract",
        choices=("tract", "zip"),
        help="where a vehicle's demand sits: its census tract's centre "
        "of population (default) or its ZIP-code centroid",
    )
    data.add_argument(
        "--tract-fallback",
        default="drop",
        choices=("drop", "zip"),
        help="a vehicle without a known tract: left out and counted "
        "(default) or placed at its ZIP centroid",
    )
    data.add_argument(
        "--weighting",
        default="vehicles",
        choices=("vehicles", "bev", "range", "residents"),
        help="what the demand counts: vehicles (default), BEVs only, "
        "electric range in miles, or the tracts' residents",
    )
    data.add_argument(
        "--residents-share",
        type=float,
        default=0.0,
        metavar="A",
        help="blend: weight = (1 - A) vehicles + A residents scaled "
        "to the vehicles' total (default 0)",
    )
    data.add_argument(
        "--keep-out-of-area",
        action="store_true",
        help="keep vehicles registered outside WA, and points or "
        "stations outside the planning area",
    )
    data.add_argument("--crs", default="auto", help="'auto' (UTM zone) or EPSG:n")
    model = sub.add_argument_group("model")
    model.add_argument(
        "--candidates", metavar="none|tracts|stations|FILE",
        help="where new sites may go: anywhere (default), census-tract centres with "
        "residents, today's public stations, or a CSV/GeoJSON/GeoParquet file of "
        "points (optional name, max_ports)",
    )  # fmt: skip
    model.add_argument(
        "--objective",
        default="median",
        choices=("median", "coverage"),
        help="minimise the mean L1 distance (default) or maximise "
        "the demand within --radius-km (needs --candidates)",
    )
    model.add_argument(
        "--snap",
        action="store_true",
        help="with --candidates: place sites freely, then move each to "
        "its nearest candidate",
    )
    model.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    model.add_argument(
        "--radius-km", type=float, default=5.0, help="coverage radius in km (default 5)"
    )
    model.add_argument(
        "--max-iter",
        type=int,
        default=300,
        help="cap on Lloyd iterations (default 300)",
    )
    size = sub.add_argument_group(
        "sizing and capacity",
        "how many ports a site needs for the vehicles it serves (see the README's "
        "capacity model for the defaults and their sources)",
    )
    size.add_argument(
        "--sizing", default="ratio", choices=("ratio", "queue"),
        help="vehicles per port by charger type (default) or an Erlang C queue",
    )  # fmt: skip
    size.add_argument(
        "--vehicles-per-l2-port", type=float, metavar="V",
        help="ratio model: vehicles per public Level 2 port (default 33, NREL 2030)",
    )  # fmt: skip
    size.add_argument(
        "--vehicles-per-dc-port", type=float, metavar="V",
        help="ratio model: vehicles per public DC fast port (default 181, NREL 2030)",
    )  # fmt: skip
    size.add_argument(
        "--sessions-per-vehicle-day", type=float, metavar="S",
        help="queue model: public sessions a vehicle starts per day (default 0.15)",
    )  # fmt: skip
    size.add_argument(
        "--session-hours", type=float, metavar="H",
        help="queue model: mean session length in hours (default 1.5)",
    )  # fmt: skip
    size.add_argument(
        "--hours-per-day", type=float, metavar="H",
        help="queue model: hours a day sessions arrive over (default 18)",
    )  # fmt: skip
    size.add_argument(
        "--max-wait-probability", type=float, metavar="P",
        help="queue model target: probability an arriving vehicle waits "
        "(default 0.2)",
    )  # fmt: skip
    size.add_argument(
        "--max-mean-wait-hours", type=float, metavar="H",
        help="queue model target instead: mean wait in hours",
    )  # fmt: skip
    size.add_argument(
        "--new-site-ports", type=int, metavar="N",
        help="ports of one new site: its capacity with --capacitated, and the size "
        "of the suggested extra sites (default 10)",
    )  # fmt: skip
    size.add_argument(
        "--capacitated", action="store_true",
        help="capacity-aware siting: no site serves more vehicles than its ports "
        "allow (a tract's vehicles may split across sites)",
    )  # fmt: skip
    run = sub.add_argument_group("where to run (default: in memory)")
    run.add_argument(
        "--scheduler", metavar="tcp://HOST:PORT", help="an existing Dask scheduler"
    )
    run.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="start a LocalCluster with N worker processes",
    )
    run.add_argument(
        "--timeout",
        default="10s",
        help="how long to wait for the scheduler (default 10s)",
    )
    run.add_argument(
        "--worker-timeout",
        default="60s",
        help="give up when the cluster has had no worker this long (default 60s)",
    )
    run.add_argument(
        "--blocksize",
        default="64MB",
        help="largest partition when reading on a cluster (default 64MB); a file "
        "is also cut so that every worker thread gets 2 partitions, down to "
        "50,000 rows each",
    )
    sub.add_argument("-q", "--quiet", action="store_true", help="no progress output")


def build_parser() -> argparse.ArgumentParser:
    """The ``evplanner`` argument parser with one sub-parser per command."""
    parser = argparse.ArgumentParser(
        prog="evplanner",
        description="Place EV charging stations with weighted K-Medians (L1, metres).",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    info = commands.add_parser("info", help="summarise a vehicle or station file")
    info.add_argument(
        "path", nargs="?", help="data file (default: the bundled vehicle data)"
    )
    info.add_argument(
        "--stations", action="store_true", help="read PATH as a station file"
    )
    info.add_argument(
        "--keep-out-of-area",
        action="store_true",
        help="keep vehicles registered outside WA",
    )
    info.add_argument("--crs", default="auto", help="'auto' (UTM zone) or EPSG:n")
    info.add_argument(
        "--demand-at",
        default="tract",
        choices=("tract", "zip"),
        help="where vehicles' demand sits (default: tract centres)",
    )
    info.add_argument(
        "--tract-fallback",
        default="drop",
        choices=("drop", "zip"),
        help="vehicles without a known tract: drop or ZIP centroid",
    )
    info.set_defaults(func=cmd_info)

    solve = commands.add_parser(
        "solve", help="place k new charging sites",
        description="Place k new charging sites with weighted K-Medians (L1 metres), "
        "in memory or on a Dask cluster, and write them with their coverage.",
    )  # fmt: skip
    solve.add_argument("--k", type=int, required=True, help="number of new sites")
    solve.add_argument(
        "--out",
        required=True,
        help="sites file: .geojson, .parquet (GeoParquet) or .csv",
    )
    solve.add_argument("--metrics", metavar="FILE.json", help="write metrics JSON")
    solve.add_argument(
        "--report", metavar="FILE.html", help="write the one-page HTML report"
    )
    solve.add_argument(
        "--year",
        type=int,
        metavar="YEAR",
        help="plan for the demand forecast for this year "
        "(default: today's registrations)",
    )
    _add_run_options(solve)
    solve.set_defaults(func=cmd_solve)

    stages = commands.add_parser(
        "rollout", help="a staged rollout: new sites year by year",
        description="Place --per-year new sites in each year on that year's forecast "
        "demand, holding today's sites and all earlier years' sites fixed.",
    )  # fmt: skip
    stages.add_argument(
        "--years",
        required=True,
        metavar="FIRST:LAST",
        help="years to plan, e.g. 2025:2030 (inclusive)",
    )
    stages.add_argument(
        "--per-year", type=int, required=True, metavar="K", help="new sites per year"
    )
    stages.add_argument(
        "--out",
        required=True,
        help="sites file (.csv, .geojson, .parquet) with a year column",
    )
    stages.add_argument(
        "--metrics", metavar="FILE.json", help="each year's coverage and mean distance"
    )
    _add_run_options(stages)
    stages.set_defaults(func=cmd_rollout)

    sweep = commands.add_parser(
        "sweep", help="objective and coverage for a range of k (elbow plot)"
    )
    sweep.add_argument(
        "--k",
        required=True,
        metavar="START:STOP[:STEP]",
        help="k values, e.g. 5:100:5 (inclusive) or 5,10,20",
    )
    sweep.add_argument("--out", required=True, help="CSV table")
    sweep.add_argument("--plot", help="PNG plot (default: --out with .png)")
    _add_run_options(sweep)
    sweep.set_defaults(func=cmd_sweep)

    synth = commands.add_parser(
        "synth", help="write synthetic demand shaped like the real data"
    )
    synth.add_argument("--n", type=int, required=True, help="number of points")
    synth.add_argument("--out", required=True, help="Parquet file to write")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    synth.add_argument("--input", help="vehicle file to draw from (default: bundled)")
    synth.add_argument(
        "--spread-m",
        type=float,
        default=3000.0,
        help="scatter around each location, metres (default 3000)",
    )
    synth.add_argument(
        "--chunk-rows",
        type=int,
        default=1_000_000,
        help="rows per written chunk (default 1,000,000)",
    )
    synth.add_argument("--crs", default="auto", help="CRS of the scatter")
    synth.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    synth.set_defaults(func=cmd_synth)
    return parser


def _message(err: BaseException) -> str:
    """The error as one line, naming the CLI option instead of a scenario field."""
    if isinstance(err, InputError) and err.field in FIELD_OPTIONS:
        err = InputError(
            err.message,
            path=err.path,
            row=err.row,
            column=err.column,
            value=err.value,
            field=FIELD_OPTIONS[err.field],
        )
    return " ".join(str(err).split())


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad arguments, 0 on --help
        return int(exc.code or 0)
    logging.basicConfig(level=logging.WARNING - 10 * min(args.verbose, 2),
                        format="%(levelname)s %(name)s: %(message)s")  # fmt: skip
    try:
        return args.func(args)
    except (InputError, UsageError, ValueError) as err:
        print(f"evplanner {args.command}: error: {_message(err)}", file=sys.stderr)
        return EXIT_USAGE
    except ClusterError as err:
        print(f"evplanner {args.command}: cluster error: {_message(err)}",
              file=sys.stderr)  # fmt: skip
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"evplanner {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # the last resort: a message, not a traceback
        logging.getLogger(__name__).debug("unexpected error", exc_info=True)
        print(f"evplanner {args.command}: unexpected error: {type(err).__name__}: "
              f"{_message(err)}", file=sys.stderr)  # fmt: skip
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
