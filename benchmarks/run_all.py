"""Run every benchmark script in ``benchmarks/`` in turn (``make bench``).

Run:  .venv/bin/python benchmarks/run_all.py [--only NAME ...] [--list]

Each script runs in its own process with the same Python, one after the other (the
benchmarks time parallel code, so they must not overlap), its output streamed and
also saved to ``benchmarks/out/<name>.log``. Scripts are found by name: every
``benchmarks/*.py`` except this runner and files starting with ``_``; the order is
alphabetical. The exit status is non-zero if any script failed (a missed speed
target is reported in the output, not as a failure).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
OUT_DIR = BENCH_DIR / "out"


def scripts() -> list[Path]:
    return sorted(
        p
        for p in BENCH_DIR.glob("*.py")
        if not p.name.startswith("_") and p.name != Path(__file__).name
    )


def run(script: Path) -> tuple[int, float]:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    log = OUT_DIR / f"{script.stem}.log"
    start = time.perf_counter()
    with log.open("w") as handle:
        proc = subprocess.Popen(
            [sys.executable, str(script)],
            cwd=BENCH_DIR.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            handle.write(line)
        code = proc.wait()
    return code, time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        nargs="*",
        default=None,
        help="script names (with or without .py) to run",
    )
    parser.add_argument("--list", action="store_true", help="list and exit")
    args = parser.parse_args(argv)

    chosen = scripts()
    if args.only:
        wanted = {name.removesuffix(".py") for name in args.only}
        unknown = wanted - {p.stem for p in chosen}
        if unknown:
            parser.error(
                f"no benchmark named {sorted(unknown)}; have {[p.stem for p in chosen]}"
            )
        chosen = [p for p in chosen if p.stem in wanted]
    if args.list:
        print("\n".join(p.stem for p in chosen))
        return 0

    summary = []
    for script in chosen:
        print(f"\n=== {script.name} ===", flush=True)
        code, seconds = run(script)
        summary.append((script.name, code, seconds))
    print("\n=== summary ===")
    for name, code, seconds in summary:
        status = "ok" if code == 0 else f"FAILED (exit {code})"
        print(f"{name:<28s} {status:<18s} {seconds:8.0f} s")
    return 0 if all(code == 0 for _, code, _ in summary) else 1


if __name__ == "__main__":
    sys.exit(main())
