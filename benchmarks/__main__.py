"""``python -m benchmarks [AREA ...] [--runs N]``: run the benchmark modules, then a summary.

Adding an area is one line: its module name in MODULES (the module defines
``run(console, runs) -> list[Row]``).
"""

from __future__ import annotations

import argparse
import importlib
import platform
import sys
import time

from rich.console import Console
from rich.table import Table

from benchmarks import BenchFailure, Row

MODULES = [
    "core",
    "storage",
    "scsi",
    "net",
    "snapshot",
    "linux",
]


def _summary(console: Console, rows: list[Row]) -> None:
    table = Table(title="Summary: targets", title_justify="left")
    for column, justify in (("area", "left"), ("figure", "left"), ("measured", "right"),
                            ("target", "left"), ("result", "left")):
        table.add_column(column, justify=justify)
    for row in rows:
        if row.target is None:
            continue
        result = "[green]PASS[/]" if row.passed else "[red]MISS[/]"
        if row.note:
            result += f" ({row.note})"
        table.add_row(row.area, row.metric, row.formatted(), row.target, result)
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("areas", nargs="*", metavar="AREA", help=f"areas to run (default: {' '.join(MODULES)})")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure; the best counts (default 3)")
    args = parser.parse_args(argv)
    unknown = [a for a in args.areas if a not in MODULES]
    if unknown:
        parser.error(f"unknown area {', '.join(unknown)}; known: {', '.join(MODULES)}")

    console = Console()
    if not console.is_terminal:  # a log file or a pipe: wide enough for the tables
        console = Console(width=140)
    console.print(
        f"[bold]make bench[/] {time.strftime('%Y-%m-%d %H:%M:%S %Z')} on {platform.node()}, "
        f"Python {platform.python_version()}, best of {args.runs} rounds per figure"
    )
    rows: list[Row] = []
    try:
        for name in args.areas or MODULES:
            module = importlib.import_module(f"benchmarks.{name}")
            rows.extend(module.run(console, args.runs))
    except BenchFailure as failure:
        console.print(f"[bold red]benchmark failed:[/] {failure}")
        return 1
    _summary(console, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
