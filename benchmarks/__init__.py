"""``make bench``: performance figures of the monitor, with their targets.

Each benchmarked area is one module here (``core``, later ``storage``, ...) with a
``run(console, runs) -> list[Row]`` function that prints its own table and returns the
rows; ``python -m benchmarks`` runs the modules listed in ``benchmarks.__main__.MODULES``
and prints a summary of every row that has a target. Benchmarks report, they do not
fail: a missed target still exits 0; a run that fails or prints the wrong result exits 1.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass
from typing import Any, Callable


class BenchFailure(RuntimeError):
    """A benchmarked run failed or printed a different result from the others."""


@dataclass
class Row:
    """One measured figure; ``target``/``passed`` are set when the issue names a target."""

    area: str
    metric: str
    value: float
    unit: str
    target: str | None = None
    passed: bool | None = None
    note: str = ""

    def formatted(self) -> str:
        return format_value(self.value, self.unit)


def format_value(value: float, unit: str) -> str:
    if unit == "x":
        return f"{value:.3f}x"
    if unit == "s":
        return f"{value:.3f} s"
    if unit == "µs":
        return f"{value:,.2f} µs"
    if unit == "/s":
        return f"{value:,.0f} /s"
    return f"{value:g} {unit}".strip()


@dataclass
class Sample:
    """One timed run: wall seconds, CPU seconds (this process and its children), result."""

    wall: float
    cpu: float
    result: Any


class Stopwatch:
    """Wall time and CPU time of whatever runs between start and :meth:`stop`.

    CPU time counts this process (all threads) and the children it waited for, so it
    works for in-process runs and subprocesses alike; on a shared, busy machine it is
    the steadier of the two figures, wall time the one users feel.
    """

    def __init__(self) -> None:
        self._wall = time.perf_counter()
        self._cpu = self._cpu_now()

    @staticmethod
    def _cpu_now() -> float:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.process_time() + children.ru_utime + children.ru_stime

    def stop(self, result: Any) -> Sample:
        return Sample(time.perf_counter() - self._wall, self._cpu_now() - self._cpu, result)


def round_robin(
    runs: int, variants: dict[str, Callable[[], Sample]], progress: Callable[[str], None] | None = None
) -> dict[str, list[Sample]]:
    """Run every variant once per round, ``runs`` rounds: load from other users of the
    machine then hits all variants alike instead of the few that ran while it lasted."""
    samples: dict[str, list[Sample]] = {name: [] for name in variants}
    for round_number in range(runs):
        for name, measure in variants.items():
            if progress is not None:
                progress(f"round {round_number + 1}/{runs}: {name}")
            samples[name].append(measure())
    return samples


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"
