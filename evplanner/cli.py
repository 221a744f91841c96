"""Command-line entry point: ``evplanner info | solve | sweep | synth``.

Exit codes: 0 success, 2 bad arguments or input (the message names the problem),
1 anything else.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from evplanner.data import BUNDLED_VEHICLES, load_stations, load_vehicles
from evplanner.errors import InputError

__all__ = ["main"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad command-line arguments: reported with exit code 2."""


def _looks_like_stations(path: Path) -> bool:
    """AFDC exports and station Parquet files are read as stations by ``info``."""
    from evplanner.data import _is_parquet

    if not path.is_file() or path.stat().st_size == 0:
        return False
    if _is_parquet(path):
        import pyarrow.parquet as pq

        try:
            names = pq.read_schema(path).names
        except Exception:  # noqa: BLE001  (load_vehicles will say what it is)
            return False
        return "station_id" in names
    with path.open("rb") as fh:
        header = fh.readline(65536).decode("utf-8-sig", errors="replace")
    return "Fuel Type Code" in header


def cmd_info(args: argparse.Namespace) -> int:
    """Print what a data file holds and what loading it keeps and drops."""
    from evplanner.projection import choose_crs

    path = Path(args.path) if args.path else BUNDLED_VEHICLES
    stations = args.stations or _looks_like_stations(path)
    if stations:
        frame, report = load_stations(path)
    else:
        frame, report = load_vehicles(path, keep_out_of_area=args.keep_out_of_area)
    print(report.format())
    if frame.empty:
        print("no usable rows")
        return EXIT_OK
    lon, lat = frame["lon"].to_numpy(), frame["lat"].to_numpy()
    distinct = len(np.unique(np.column_stack([lon, lat]), axis=0))
    crs = choose_crs(lon, lat, args.crs)
    if stations:
        print(f"stations: {len(frame):,}")
        for col in ("level1_ports", "level2_ports", "dc_fast_ports"):
            print(f"{col.replace('_', ' ')}: {int(frame[col].sum()):,}")
        print(
            f"stations with DC fast ports: {int((frame['dc_fast_ports'] > 0).sum()):,}"
        )
    else:
        print(f"total weight: {frame['weight'].sum():,.1f}")
    print(f"distinct locations: {distinct:,}")
    print(
        f"bounding box: lon {lon.min():.5f} .. {lon.max():.5f}, "
        f"lat {lat.min():.5f} .. {lat.max():.5f}"
    )
    print(f"CRS: {crs.to_string()} ({crs.name})")
    return EXIT_OK


# --------------------------------------------------------------------------- solve


def _k_values(text: str) -> list[int]:
    """``"5:100:5"`` (start:stop:step, inclusive), ``"5:20"`` or ``"5,10,20"``."""
    try:
        if ":" in text:
            parts = [int(p) for p in text.split(":")]
            if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] < 1):
                raise ValueError
            start, stop = parts[0], parts[1]
            step = parts[2] if len(parts) == 3 else 1
            values = list(range(start, stop + 1, step))
        else:
            values = [int(p) for p in text.split(",")]
    except ValueError:
        raise UsageError(
            f"--k: expected START:STOP[:STEP] or a list like 5,10,20, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise UsageError(f"--k: expected numbers of sites >= 1, got {text!r}")
    return values


def _model_years(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        parts = [int(p) for p in text.split(":")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or parts[0] > parts[-1]:
        raise UsageError(
            f"--model-years: expected FIRST:LAST like 2018:2023 (or one year), "
            f"got {text!r}"
        )
    return parts[0], parts[-1]


def _split(values: list[str] | None) -> list[str] | None:
    """Repeated and comma-separated option values as one list."""
    if not values:
        return None
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def _timeout_s(text: str) -> float:
    from dask.utils import parse_timedelta

    try:
        seconds = float(parse_timedelta(text, default="seconds"))
    except (ValueError, KeyError, TypeError):
        raise UsageError(
            f"--timeout: expected a duration like 10s, got {text!r}"
        ) from None
    if not seconds > 0:
        raise UsageError(f"--timeout: expected a positive duration, got {text!r}")
    return seconds


def _check_run_args(args: argparse.Namespace) -> None:
    """Reject bad combinations before any data is read."""
    if args.scheduler and args.workers is not None:
        raise UsageError("give either --scheduler or --workers, not both")
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers: expected >= 1, got {args.workers}")
    if not args.radius_km > 0:
        raise UsageError(f"--radius-km: expected > 0, got {args.radius_km}")
    if args.fixed and not Path(args.fixed).is_file():
        raise InputError("file not found (--fixed)", path=args.fixed)


def _demand_options(args: argparse.Namespace):
    from evplanner.pipeline import DemandOptions

    ev_types = _split(args.ev_type)
    if ev_types:
        ev_types = [t.upper() for t in ev_types]
        unknown = sorted(set(ev_types) - {"BEV", "PHEV"})
        if unknown:
            raise UsageError(f"--ev-type: expected BEV or PHEV, got {unknown}")
    return DemandOptions(
        inputs=args.input,
        counties=_split(args.county),
        ev_types=ev_types,
        model_years=_model_years(args.model_years),
        weighting=args.weighting,
        keep_out_of_area=args.keep_out_of_area,
        crs=args.crs,
        blocksize=args.blocksize,
    )


def _show_progress(args: argparse.Namespace) -> None:
    """Progress lines on stderr: what is read, and each K-Medians iteration."""
    if args.verbose < 2:
        # The cluster's own INFO chatter (worker start/stop) is not progress.
        # Importing distributed sets its log levels, so import it first.
        import distributed  # noqa: F401

        logging.getLogger("distributed").setLevel(logging.WARNING)
    if args.quiet:
        return
    for name, level in (("evplanner", logging.INFO), ("evplanner.kmedians", 10)):
        logger = logging.getLogger(name)
        logger.setLevel(min(level, logger.getEffectiveLevel()))
    progress = logging.getLogger("evplanner")
    if not any(isinstance(h, _ProgressHandler) for h in progress.handlers):
        handler = _ProgressHandler()
        handler.setFormatter(
            logging.Formatter("[%(asctime)s] %(message)s", "%H:%M:%S")
        )
        progress.addHandler(handler)
        progress.propagate = False


class _ProgressHandler(logging.Handler):
    """Progress lines to whatever ``sys.stderr`` is when they are logged."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            print(self.format(record), file=sys.stderr, flush=True)
        except Exception:  # noqa: BLE001  (logging must never break a run)
            self.handleError(record)


def _prepare(args: argparse.Namespace, client):
    """Demand and fixed sites, read as the mode requires."""
    from evplanner.pipeline import load_demand, load_fixed_sites

    demand = load_demand(_demand_options(args), client=client)
    fixed_m = stations = None
    if args.fixed:
        fixed_m, stations = load_fixed_sites(args.fixed, demand.crs)
    return demand, fixed_m, stations


def _mode(args: argparse.Namespace) -> str:
    if args.scheduler:
        return f"scheduler {args.scheduler}"
    if args.workers is not None:
        return f"LocalCluster ({args.workers} workers)"
    return "in memory"


def cmd_solve(args: argparse.Namespace) -> int:
    """Place k new sites and write them with their coverage metrics."""
    import time

    from evplanner.pipeline import (
        check_sites_path,
        dask_client,
        solve,
        write_metrics,
        write_sites,
    )

    start = time.perf_counter()
    if args.k < 1:
        raise UsageError(f"--k: expected a number of new sites >= 1, got {args.k}")
    _check_run_args(args)
    out = check_sites_path(args.out)
    if args.metrics and not Path(args.metrics).parent.exists():
        raise UsageError(f"--metrics {args.metrics}: directory does not exist")
    timeout_s = _timeout_s(args.timeout)
    _show_progress(args)
    with dask_client(args.scheduler, args.workers, timeout_s=timeout_s) as client:
        demand, fixed_m, stations = _prepare(args, client)
        solution = solve(
            demand, args.k, fixed_m=fixed_m, fixed_stations=stations,
            seed=args.seed, radius_m=args.radius_km * 1000.0,
            max_iter=args.max_iter,
        )  # fmt: skip
        n_partitions = demand.X.numblocks[0] if demand.is_dask else 1
    write_sites(solution.sites, out)
    s = solution.summary
    seconds = time.perf_counter() - start
    metrics = {
        "input": demand.source,
        "mode": _mode(args),
        "n_partitions": n_partitions,
        "aggregated": demand.aggregated,
        "n_points": s.n_points,
        "total_weight": s.total_weight,
        "total_vehicles": s.total_vehicles,
        "weighting": args.weighting,
        "k": solution.k,
        "n_fixed": solution.n_fixed,
        "seed": args.seed,
        "objective_m": s.objective_m,
        "mean_distance_m": s.mean_distance_m,
        "max_distance_m": s.max_distance_m,
        "radius_m": s.radius_m,
        "coverage_share": s.coverage_share,
        "coverage_curve": [
            {"radius_m": r, "share": x} for r, x in s.coverage_curve.items()
        ],
        "n_iter": solution.n_iter,
        "fit_seconds": solution.fit_seconds,
        "seconds": seconds,
        "crs": demand.crs.to_string(),
        "load_report": demand.report.to_dict(),
    }
    if args.metrics:
        write_metrics(metrics, args.metrics)
    print(demand.report.format())
    print(
        f"{s.n_points:,} demand points (total weight {s.total_weight:,.1f}), "
        f"CRS {metrics['crs']}, {_mode(args)}"
    )
    print(
        f"{solution.k} new sites"
        + (f" + {solution.n_fixed} fixed" if solution.n_fixed else "")
        + f": objective {s.objective_m:,.0f} m, mean distance "
        f"{s.mean_distance_m:,.0f} m, {100 * s.coverage_share:.1f}% of demand "
        f"within {s.radius_m / 1000:g} km ({solution.n_iter} iterations, "
        f"{seconds:.1f} s)"
    )
    print(f"sites: {out}" + (f"; metrics: {args.metrics}" if args.metrics else ""))
    return EXIT_OK


def cmd_sweep(args: argparse.Namespace) -> int:
    """Objective and coverage for each k, as CSV and a PNG plot."""
    from evplanner.pipeline import dask_client, sweep

    ks = _k_values(args.k)
    _check_run_args(args)
    out = Path(args.out)
    if out.suffix.lower() != ".csv":
        raise UsageError(f"--out {out}: expected a .csv file")
    plot = Path(args.plot) if args.plot else out.with_suffix(".png")
    if plot.suffix.lower() != ".png":
        raise UsageError(f"--plot {plot}: expected a .png file")
    for path in (out, plot):
        if not path.parent.exists():
            raise UsageError(f"{path}: directory {path.parent} does not exist")
    timeout_s = _timeout_s(args.timeout)
    _show_progress(args)
    with dask_client(args.scheduler, args.workers, timeout_s=timeout_s) as client:
        demand, fixed_m, _ = _prepare(args, client)
        table = sweep(
            demand, ks, fixed_m=fixed_m, seed=args.seed,
            radius_m=args.radius_km * 1000.0, max_iter=args.max_iter,
        )  # fmt: skip
    table.to_csv(out, index=False)
    _plot_sweep(table, plot, args.radius_km)
    print(table[["k", "objective_m", "mean_distance_m", "coverage_share"]]
          .to_string(index=False))  # fmt: skip
    print(f"table: {out}; plot: {plot}")
    return EXIT_OK


def _plot_sweep(table, path: Path, radius_km: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    ax1.plot(table["k"], table["mean_distance_m"] / 1000.0, marker="o")
    ax1.set(xlabel="new sites k", ylabel="mean L1 distance (km)",
            title="Objective / total weight")  # fmt: skip
    ax2.plot(table["k"], 100 * table["coverage_share"], marker="o", color="C2")
    ax2.set(xlabel="new sites k", ylabel="demand covered (%)",
            title=f"Coverage within {radius_km:g} km")  # fmt: skip
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def cmd_synth(args: argparse.Namespace) -> int:
    """Write synthetic demand shaped like the real data, in chunks."""
    from evplanner.demand import demand_points, synthesize_demand

    if args.n < 1:
        raise UsageError(f"--n: expected a positive number of points, got {args.n}")
    if args.chunk_rows < 1:
        raise UsageError(f"--chunk-rows: expected >= 1, got {args.chunk_rows}")
    out = Path(args.out)
    if out.suffix.lower() != ".parquet":
        raise UsageError(f"--out {out}: expected a .parquet file")
    if not out.parent.exists():
        raise UsageError(f"--out {out}: directory {out.parent} does not exist")
    if not args.quiet:
        logging.getLogger("evplanner.demand").setLevel(logging.INFO)
    vehicles, report = load_vehicles(args.input)
    demand = demand_points(vehicles)
    if demand.empty:
        raise InputError("no demand points to draw from", path=report.source)
    synthesize_demand(
        demand, args.n, seed=args.seed, path=out, chunk_rows=args.chunk_rows,
        spread_m=args.spread_m, crs=args.crs,
    )  # fmt: skip
    print(
        f"wrote {args.n:,} synthetic points to {out} (seed {args.seed}, drawn from "
        f"{len(demand):,} demand points of {report.source})"
    )
    return EXIT_OK


def _add_run_options(sub: argparse.ArgumentParser) -> None:
    """Input, filter and cluster options shared by ``solve`` and ``sweep``."""
    data = sub.add_argument_group("demand")
    data.add_argument("--input", help="file or glob (default: the bundled vehicles)")
    data.add_argument(
        "--fixed", metavar="FILE",
        help="existing stations (AFDC export, bundled or lon/lat CSV) kept as sites",
    )  # fmt: skip
    data.add_argument("--county", action="append", metavar="NAME",
                      help="keep these counties (repeat or comma-separate)")
    data.add_argument("--ev-type", action="append", metavar="BEV|PHEV",
                      help="keep these EV types")
    data.add_argument("--model-years", metavar="FIRST:LAST",
                      help="inclusive model-year range, e.g. 2018:2023")
    data.add_argument("--weighting", default="vehicles",
                      choices=("vehicles", "bev", "range"),
                      help="demand weight of one vehicle (default: vehicles)")
    data.add_argument("--keep-out-of-area", action="store_true",
                      help="keep vehicles registered outside WA")
    data.add_argument("--crs", default="auto", help="'auto' (UTM zone) or EPSG:n")
    model = sub.add_argument_group("model")
    model.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    model.add_argument("--radius-km", type=float, default=5.0,
                       help="coverage radius in km (default 5)")
    model.add_argument("--max-iter", type=int, default=300,
                       help="cap on Lloyd iterations (default 300)")
    run = sub.add_argument_group("where to run (default: in memory)")
    run.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                     help="an existing Dask scheduler")
    run.add_argument("--workers", type=int, metavar="N",
                     help="start a LocalCluster with N worker processes")
    run.add_argument("--timeout", default="10s",
                     help="how long to wait for the scheduler (default 10s)")
    run.add_argument("--blocksize", default="64MB",
                     help="partition size when reading on a cluster (default 64MB)")
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
    info.set_defaults(func=cmd_info)

    solve = commands.add_parser(
        "solve", help="place k new charging sites",
        description="Place k new charging sites with weighted K-Medians (L1 metres), "
        "in memory or on a Dask cluster, and write them with their coverage.",
    )  # fmt: skip
    solve.add_argument("--k", type=int, required=True, help="number of new sites")
    solve.add_argument("--out", required=True,
                       help="sites file: .geojson, .parquet (GeoParquet) or .csv")
    solve.add_argument("--metrics", metavar="FILE.json", help="write metrics JSON")
    _add_run_options(solve)
    solve.set_defaults(func=cmd_solve)

    sweep = commands.add_parser(
        "sweep", help="objective and coverage for a range of k (elbow plot)"
    )
    sweep.add_argument("--k", required=True, metavar="START:STOP[:STEP]",
                       help="k values, e.g. 5:100:5 (inclusive) or 5,10,20")
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
    synth.add_argument("--spread-m", type=float, default=3000.0,
                       help="scatter around each location, metres (default 3000)")
    synth.add_argument("--chunk-rows", type=int, default=1_000_000,
                       help="rows per written chunk (default 1,000,000)")
    synth.add_argument("--crs", default="auto", help="CRS of the scatter")
    synth.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    synth.set_defaults(func=cmd_synth)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad arguments, 0 on --help
        return int(exc.code or 0)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except (InputError, UsageError, ValueError) as err:
        print(f"evplanner {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as err:  # the last resort: a message, not a traceback
        logging.getLogger(__name__).debug("unexpected error", exc_info=True)
        print(
            f"evplanner {args.command}: unexpected error: {type(err).__name__}: {err}",
            file=sys.stderr,
        )
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
