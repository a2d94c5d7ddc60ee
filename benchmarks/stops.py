"""``python -m benchmarks.stops [--rounds N]``: what stopping the guest costs, apart from
everything the monitor does between slices. Not part of ``make bench``: an instrument
for the open question in docs/benchmarks.md ("What a stop costs").

cpubench (no guest timer) runs to the end while the guest is stopped and restarted at
a fixed host-time rate, in three ways:

* our monitor, ``Machine.run(preempt_every_ns=...)``: the POSIX timer raises the stop,
  the run loop does its usual work between slices (no interrupt is delivered);
* bare Unicorn with our native block hook, the stop raised by our POSIX timer
  (``PreemptionTimer``), nothing between slices;
* the same, the stop raised from a Python thread (``threading.Timer``) instead.

Every variant runs once per round, in a new random order each round. The table gives
each variant's median wall time (on a shared machine the fastest round alone misleads:
one lucky baseline makes every other variant look slow), its extra time over the same
engine run without stops, and that extra time per stop.
"""

from __future__ import annotations

import argparse
import gc
import io
import random
import statistics
import threading
import time
from typing import Callable

from unicorn import x86_const as X

from benchmarks.core import CPUBENCH, MEMORY_MIB, BareUnicorn

CMDLINE = "iterations=300"
RATES_HZ = (5, 100, 1000)


def run_monitor(rate_hz: int | None) -> tuple[float, int]:
    """Seconds of ``machine.run()`` and slices run, stopped ``rate_hz`` times a second."""
    from vmm.machine import Machine, MachineConfig

    gc.collect()
    machine = Machine(MachineConfig(memory_mib=MEMORY_MIB, cmdline=CMDLINE), serial_out=io.BytesIO())
    machine.load(CPUBENCH)
    started = time.perf_counter()
    result = machine.run(preempt_every_ns=None if rate_hz is None else 1_000_000_000 // rate_hz)
    elapsed = time.perf_counter() - started
    slices = machine.stats.by_reason.get("preempt", 0) + 1
    machine.close()
    if result.status != 0:
        raise RuntimeError(f"cpubench ended with status {result.status}: {result.reason}")
    return elapsed, slices


def run_bare(rate_hz: int | None, by_timer: bool) -> tuple[float, int]:
    """Bare Unicorn and our block hook; the stop comes from our timer or a thread."""
    from vmm.clock import PreemptionTimer

    gc.collect()
    bare = BareUnicorn(CPUBENCH, CMDLINE, block_hook=True)
    fast = bare._fast
    timer = PreemptionTimer(fast)

    def stop_from_thread() -> None:
        fast.stop_requested = 1
        fast.hook_gate = 1

    slices, eip = 0, bare.entry
    started = time.perf_counter()
    try:
        while bare.exit_code is None:
            if rate_hz is not None and by_timer:
                timer.arm(time.monotonic() + 1 / rate_hz)
            elif rate_hz is not None:
                threading.Timer(1 / rate_hz, stop_from_thread).start()
            fast.first_block = 1
            fast.hook_gate = 1
            bare.uc.emu_start(eip, 0)
            slices += 1
            eip = bare.uc.reg_read(X.UC_X86_REG_EIP)
    finally:
        timer.close()
    return time.perf_counter() - started, slices


def variants() -> dict[tuple[str, int | None], Callable[[], tuple[float, int]]]:
    table: dict[tuple[str, int | None], Callable[[], tuple[float, int]]] = {}
    for rate in (None, *RATES_HZ):
        table[("our monitor", rate)] = lambda rate=rate: run_monitor(rate)
        table[("bare, our timer", rate)] = lambda rate=rate: run_bare(rate, by_timer=True)
        if rate is not None:
            table[("bare, Python thread", rate)] = lambda rate=rate: run_bare(rate, by_timer=False)
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stops", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args(argv)
    runs = variants()
    times: dict[tuple[str, int | None], list[float]] = {key: [] for key in runs}
    slices: dict[tuple[str, int | None], int] = {}
    order = list(runs)
    for round_number in range(args.rounds):
        random.shuffle(order)
        for key in order:
            elapsed, slices[key] = runs[key]()
            times[key].append(elapsed)
        print(f"round {round_number + 1}/{args.rounds} done", flush=True)
    median = {key: statistics.median(values) for key, values in times.items()}
    print(f"\ncpubench {CMDLINE}, median of {args.rounds} rounds")
    print(f"{'variant':22} {'stops/s':>8} {'median s':>9} {'min s':>7} {'slices':>7} {'extra ms':>9} {'µs/stop':>8}")
    for key in sorted(runs, key=lambda k: (k[0], k[1] or 0)):
        who, rate = key
        engine = "our monitor" if who == "our monitor" else "bare, our timer"
        extra = median[key] - median[(engine, None)]
        per_stop = "" if rate is None else f"{extra / max(slices[key] - 1, 1) * 1e6:8.0f}"
        print(f"{who:22} {rate or 0:8} {median[key]:9.3f} {min(times[key]):7.3f} {slices[key]:7} "
              f"{extra * 1e3:9.0f} {per_stop:>8}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
