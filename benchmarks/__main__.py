"""``python -m benchmarks run [--quick] [--rows B1,B2,...] [--json PATH] [--uvloop]``.

Runs the rows against rtwidgets, a raw ``websockets`` server and python-socketio, prints
the table and writes the JSON document (default ``benchmarks/results/latest.json``, or
``benchmarks/results/quick.json`` with ``--quick``). Exit code 0 when every row ran
(goals missed are reported, not failures of the command), 1 when a row could not run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .runner import ALL_ROWS, FLAVORS, row_errors, run_benchmarks


def _rows(text: str) -> list[str]:
    rows = [r.strip().upper() for r in text.split(",") if r.strip()]
    unknown = [r for r in rows if r not in ALL_ROWS]
    if not rows or unknown:
        raise argparse.ArgumentTypeError(f"rows must be a comma list of {','.join(ALL_ROWS)}, got {text!r}")
    return rows


def _flavors(text: str) -> tuple[str, ...]:
    names = tuple(f.strip() for f in text.split(",") if f.strip())
    unknown = [f for f in names if f not in FLAVORS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"servers must be a comma list of {','.join(FLAVORS)}, got {text!r}")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run benchmark rows and print the table")
    run.add_argument("--quick", action="store_true", help="tiny loads (a smoke test; figures mean nothing)")
    run.add_argument("--rows", type=_rows, default=list(ALL_ROWS), help="comma list, default all: B1,...,B13")
    run.add_argument("--servers", type=_flavors, default=FLAVORS, help="comma list of rtwidgets,raw,socketio")
    run.add_argument("--json", type=Path, default=None, help="where to write the results JSON")
    run.add_argument("--uvloop", action="store_true", help="run every server under test on uvloop")
    args = parser.parse_args(argv)
    json_path = args.json or Path("benchmarks/results") / ("quick.json" if args.quick else "latest.json")
    doc = run_benchmarks(
        args.rows, quick=args.quick, uvloop=args.uvloop, flavors=args.servers, json_path=json_path
    )
    failed = [
        f"{row}/{flavor}" for row, data in doc["rows"].items() for flavor in row_errors(data["details"])
    ]
    if failed:
        print(f"could not measure: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
