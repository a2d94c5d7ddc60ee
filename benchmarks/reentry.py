"""``python -m benchmarks.reentry [--rounds N]``: what a tick costs when nothing but
Unicorn is involved. Not part of ``make bench``; docs/benchmarks.md, "What a stop costs".

``cpubench timer=1000`` runs on bare Unicorn (benchmarks/core.py) with the block hook of
benchmarks/reentry.c behind our engine's gate, ticked by a 1 kHz POSIX timer. At each
tick the hook does nothing, or rewrites EIP with its own value (Unicorn leaves its
translation-block loop and enters it again), or delivers the guest's timer interrupt in
place without leaving ``emu_start`` (what a native tick in the monitor would do). Every
variant once per round in a shuffled order; medians, against the same run without ticks.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import random
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from unicorn import UC_HOOK_BLOCK
from unicorn import x86_const as X
from unicorn.unicorn_py3.unicorn import uc_hook_h, uclib

from benchmarks.core import CPUBENCH, BareUnicorn

SOURCE = Path(__file__).with_name("reentry.c")
CMDLINE = "iterations=300 timer=1000"
TICK_NS = 1_000_000
MODES = {"no ticks": 0, "tick, hook returns": 1, "tick, EIP rewritten": 2, "tick, interrupt delivered": 3}


class Reentry(ctypes.Structure):
    _fields_ = [("due", ctypes.c_int32), ("gate", ctypes.c_int32), ("mode", ctypes.c_int32),
                ("acted", ctypes.c_int32)]


def build(directory: Path) -> ctypes.CDLL:
    import unicorn

    package = Path(unicorn.__file__).resolve().parent
    library = directory / "reentry.so"
    subprocess.run(["gcc", "-O2", "-Wall", "-shared", "-fPIC", f"-I{package / 'include'}", "-o", str(library),
                    str(SOURCE), f"-L{package / 'lib'}", "-l:libunicorn.so.2", f"-Wl,-rpath,{package / 'lib'}",
                    "-lrt"], check=True, capture_output=True, text=True)
    return ctypes.CDLL(str(library))


def run(library: ctypes.CDLL, mode: int) -> tuple[float, int]:
    """Seconds to cpubench's end and the ticks the hook acted on."""
    gc.collect()
    bare = BareUnicorn(CPUBENCH, CMDLINE)
    state = Reentry(mode=mode)
    handle = uc_hook_h()
    hook = ctypes.cast(library.reentry_block_hook, ctypes.c_void_p)
    if uclib.uc_hook_add(bare.uc._uch, ctypes.byref(handle), UC_HOOK_BLOCK, hook,
                         ctypes.cast(ctypes.pointer(state), ctypes.c_void_p), ctypes.c_uint64(1), ctypes.c_uint64(0)):
        raise RuntimeError("uc_hook_add failed")
    if uclib.uc_set_block_hook_gate(bare.uc._uch, ctypes.c_void_p(ctypes.addressof(state) + Reentry.gate.offset)):
        raise RuntimeError("the engine has no block-hook gate: build it with `make unicorn`")
    library.reentry_ticks(ctypes.byref(state), ctypes.c_long(TICK_NS if mode else 0))
    started = time.perf_counter()
    eip = bare.entry
    try:
        while bare.exit_code is None:  # one emu_start, unless the guest prints and stops
            bare.uc.emu_start(eip, 0)
            eip = bare.uc.reg_read(X.UC_X86_REG_EIP)
    finally:
        elapsed = time.perf_counter() - started
        library.reentry_ticks(ctypes.byref(state), ctypes.c_long(0))
    if b"PASS cpubench" not in bytes(bare.serial):
        raise RuntimeError(f"cpubench did not pass: {bytes(bare.serial)[-200:]!r}")
    return elapsed, state.acted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reentry", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as directory:
        library = build(Path(directory))
        library.reentry_ticks.argtypes = (ctypes.POINTER(Reentry), ctypes.c_long)
        uclib.uc_set_block_hook_gate.argtypes = (ctypes.c_void_p, ctypes.c_void_p)
        times: dict[str, list[float]] = {name: [] for name in MODES}
        ticks: dict[str, int] = {}
        order = list(MODES)
        for round_number in range(args.rounds):
            random.shuffle(order)
            for name in order:
                elapsed, ticks[name] = run(library, MODES[name])
                times[name].append(elapsed)
            print(f"round {round_number + 1}/{args.rounds} done", flush=True)
    base = statistics.median(times["no ticks"])
    print(f"\ncpubench {CMDLINE} on bare Unicorn, median of {args.rounds} rounds")
    print(f"{'variant':28} {'median s':>9} {'min s':>7} {'ticks':>6} {'extra ms':>9} {'µs/tick':>8}")
    for name in MODES:
        median = statistics.median(times[name])
        extra = median - base
        per_tick = f"{extra / ticks[name] * 1e6:8.1f}" if ticks[name] else ""
        print(f"{name:28} {median:9.3f} {min(times[name]):7.3f} {ticks[name]:6} {extra * 1e3:9.0f} {per_tick:>8}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
