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
