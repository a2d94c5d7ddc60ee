"""The monitor core: CPU-bound guest speed, port-I/O exit rate, string I/O cost.

Targets (issue 2, "How it must be checked"):

* cpubench on our monitor, with preemption active (the guest's 1 kHz PIT interrupt,
  ``timer=1000``), at most 1.10x bare Unicorn running the same ELF;
* at least 500,000 port-I/O exits per second through the bus (iobench ``outs=N``);
* one ``rep outsw`` of 757 words in under 1/10 of the per-element cost, i.e. of 757
  times the cost of one port exit measured above (iobench ``reps=M``).

Three ways to run a guest are compared in the same run:

* ours: :class:`vmm.machine.Machine` in this process; only ``machine.run()`` is timed.
  The whole ``vmm run`` process is timed once as well, start-up included;
* bare Unicorn, the ceiling: the same ELF loaded by :class:`BareUnicorn` (PT_LOAD
  segments, a flat GDT, the Multiboot magic and an info structure with the command
  line) with Python IN/OUT hooks for COM1 and the exit port only;
* QEMU (qemu-system-i386, TCG): process wall time minus QEMU's own start-up, which is
  measured as the best wall time of the same guest with ``iterations=1``.

Every variant runs once per round, best of ``runs`` rounds. Wall time is the figure the
targets use; CPU time is shown beside it because the machine is shared.
"""

from __future__ import annotations

import ctypes
import gc
import io
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from elftools.elf.elffile import ELFFile
from rich.console import Console
from rich.table import Table
from unicorn import UC_ARCH_X86, UC_HOOK_BLOCK, UC_HOOK_INSN, UC_MODE_32, Uc
from unicorn import x86_const as X

from benchmarks import BenchFailure, Row, Sample, Stopwatch, load_average, round_robin
from guests.reference import installed_qemu, qemu_command, qemu_status

AREA = "core"
ROOT = Path(__file__).resolve().parents[1]
GUESTS = ROOT / "guests" / "build"
CPUBENCH = GUESTS / "cpubench.elf"
IOBENCH = GUESTS / "iobench.elf"
MEMORY_MIB = 128

# Sized for about 5-10 s per run on our monitor on the machine in docs/benchmarks.md.
CPU_ITERATIONS = 300
TIMER_HZ = 1000
IO_OUTS = 1_000_000  # single `out` instructions, for the exit rate
IO_REPS = 2_000  # `rep outsw` of STRING_WORDS words each
STRING_WORDS = 757  # as in guests/iobench/iobench.c

# Targets.
MAX_OURS_OVER_BARE = 1.10
MIN_EXITS_PER_S = 500_000
MAX_STRING_SHARE = 0.10  # of the per-element cost

RUN_TIMEOUT_S = 600

_CHECKSUM = re.compile(r"^checksum: (0x[0-9a-f]{8})$", re.MULTILINE)


@dataclass
class Outcome:
    """What one run of a guest printed and how it ended."""

    monitor: str
    cmdline: str
    status: int  # the guest's port-0xF4 value (QEMU's (v<<1)|1 already decoded)
    serial: str
    interrupts: int | None = None  # external interrupts delivered (ours only)
    stderr: str = ""

    def check(self, guest: str) -> None:
        """Fail loudly unless the guest passed."""
        if self.status != 0 or f"PASS {guest}" not in self.serial:
            tail = " | ".join(self.serial.strip().splitlines()[-3:])
            why = " | ".join(self.stderr.strip().splitlines()[-2:])
            raise BenchFailure(
                f"{guest} on {self.monitor} ({self.cmdline!r}) ended with status {self.status}; "
                f"serial: {tail!r}" + (f"; stderr: {why!r}" if why else "")
            )

    def checksum(self) -> str:
        found = _CHECKSUM.search(self.serial)
        if found is None:
            raise BenchFailure(f"cpubench on {self.monitor} ({self.cmdline!r}) printed no checksum")
        return found.group(1)


# -- the ways to run a guest ---------------------------------------------------------------


def run_ours(kernel: Path, cmdline: str) -> Sample:
    """Our monitor, in this process; the time of ``machine.run()`` only."""
    from vmm.machine import Machine, MachineConfig

    gc.collect()  # the previous machine's 128 MiB go now, not during this run
    serial = io.BytesIO()
    machine = Machine(MachineConfig(memory_mib=MEMORY_MIB, cmdline=cmdline), serial_out=serial)
    machine.load(kernel)
    watch = Stopwatch()
    result = machine.run()
    interrupts = machine.stats.by_reason.get("interrupt", 0)
    text = serial.getvalue().decode(errors="replace")
    return watch.stop(Outcome("our monitor", cmdline, result.status, text, interrupts, result.reason))


def run_ours_process(kernel: Path, cmdline: str) -> Sample:
    """The whole ``vmm run`` process, Python start-up included."""
    script = Path(sys.executable).with_name("vmm")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "vmm"]
    command += ["run", str(kernel), "--memory", str(MEMORY_MIB), "--append", cmdline]
    return _timed_process(command, "vmm run", cmdline, decode_status=lambda rc: rc)


class BareUnicorn:
    """The ceiling: a Multiboot ELF on Unicorn with nothing but COM1 and the exit port.

    Not a monitor: no devices, no interrupts, no time. IN from the line status register
    says "transmitter empty", every other IN reads all ones, OUT to COM1's data register
    (DLAB clear) is console output, OUT to 0xF4 stops with that exit value.
    """

    GDT = 0x8000
    INFO = 0x9000
    CMDLINE = 0x9100
    STACK = 0x7FF0

    def __init__(self, kernel: Path, cmdline: str, block_hook: bool = False) -> None:
        uc = self.uc = Uc(UC_ARCH_X86, UC_MODE_32)
        uc.mem_map(0, MEMORY_MIB << 20)
        with open(kernel, "rb") as f:
            elf = ELFFile(f)
            self.entry = elf.header.e_entry
            for segment in elf.iter_segments("PT_LOAD"):
                data = segment.data()
                uc.mem_write(segment["p_paddr"], data + bytes(segment["p_memsz"] - len(data)))
        gdt = b"".join(d.to_bytes(8, "little") for d in (0, 0x00CF9A000000FFFF, 0x00CF92000000FFFF))
        uc.mem_write(self.GDT, gdt)
        uc.mem_write(self.CMDLINE, cmdline.encode() + b"\0")
        # flags: mem_lower/mem_upper (bit 0) and cmdline (bit 2); 639 KiB, RAM above 1 MiB.
        info = [1 | 4, 639, (MEMORY_MIB << 10) - 1024, 0, self.CMDLINE]
        uc.mem_write(self.INFO, b"".join(v.to_bytes(4, "little") for v in info) + bytes(32))
        uc.reg_write(X.UC_X86_REG_GDTR, (0, self.GDT, len(gdt) - 1, 0))
        uc.reg_write(X.UC_X86_REG_CR0, 0x11)
        uc.reg_write(X.UC_X86_REG_CS, 0x08)
        for segment in (X.UC_X86_REG_SS, X.UC_X86_REG_DS, X.UC_X86_REG_ES, X.UC_X86_REG_FS, X.UC_X86_REG_GS):
            uc.reg_write(segment, 0x10)
        uc.reg_write(X.UC_X86_REG_ESP, self.STACK)
        uc.reg_write(X.UC_X86_REG_EAX, 0x2BADB002)
        uc.reg_write(X.UC_X86_REG_EBX, self.INFO)
        self.serial = bytearray()
        self.exit_code: int | None = None
        self._dlab = False
        uc.hook_add(UC_HOOK_INSN, self._in, None, 1, 0, X.UC_X86_INS_IN)
        uc.hook_add(UC_HOOK_INSN, self._out, None, 1, 0, X.UC_X86_INS_OUT)
        if block_hook:
            self._add_native_block_hook()

    def _in(self, uc: Uc, port: int, size: int, _user: object) -> int:
        if port == 0x3FD:
            return 0x60  # LSR: THR and transmitter empty
        return (1 << (8 * size)) - 1

    def _out(self, uc: Uc, port: int, size: int, value: int, _user: object) -> None:
        if port == 0x3F8 and not self._dlab:
            self.serial.append(value & 0xFF)
        elif port == 0x3FB:
            self._dlab = bool(value & 0x80)
        elif port == 0xF4:
            self.exit_code = value
            uc.emu_stop()

    def _add_native_block_hook(self) -> None:
        """Our monitor's native block hook (vmm/native/fastpath.c), never asked to stop:
        what the hook alone costs, apart from everything else the monitor does."""
        from unicorn.unicorn_py3.unicorn import uc_hook_h, uclib

        from vmm import native

        self._fast = native.FastState()
        self._fast.stop_at_bytes = (1 << 64) - 1
        handle = uc_hook_h()
        status = uclib.uc_hook_add(
            self.uc._uch, ctypes.byref(handle), UC_HOOK_BLOCK,
            ctypes.c_void_p(native.hook_address("vmm_block_hook")),
            ctypes.cast(ctypes.pointer(self._fast), ctypes.c_void_p),
            ctypes.c_uint64(1), ctypes.c_uint64(0),
        )
        if status:
            raise BenchFailure(f"cannot add the native block hook: Unicorn error {status}")
        # As the monitor runs it in wall-clock mode: behind the gate, which stays closed.
        self._fast.hook_always = int(not native.gate_block_hook(self.uc, self._fast))

    def run(self) -> None:
        self.uc.emu_start(self.entry, 0)


def run_bare(kernel: Path, cmdline: str, block_hook: bool = False) -> Sample:
    gc.collect()
    bare = BareUnicorn(kernel, cmdline, block_hook)
    watch = Stopwatch()
    bare.run()
    status = -1 if bare.exit_code is None else bare.exit_code
    name = "bare Unicorn + native block hook" if block_hook else "bare Unicorn"
    return watch.stop(Outcome(name, cmdline, status, bare.serial.decode(errors="replace")))


def run_qemu(kernel: Path, cmdline: str) -> Sample:
    """QEMU TCG, the whole process (the caller subtracts start-up)."""
    command = qemu_command(kernel, cmdline, MEMORY_MIB)
    return _timed_process(command, "QEMU", cmdline, decode_status=qemu_status)


def _timed_process(command: list[str], monitor: str, cmdline: str, decode_status: Callable[[int], int]) -> Sample:
    watch = Stopwatch()
    try:
        done = subprocess.run(command, capture_output=True, timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise BenchFailure(f"{monitor} ({cmdline!r}) did not finish in {RUN_TIMEOUT_S} s") from None
    sample = watch.stop(Outcome(monitor, cmdline, decode_status(done.returncode),
                                done.stdout.decode(errors="replace"), stderr=done.stderr.decode(errors="replace")))
    return sample


# -- measurements ----------------------------------------------------------------------


@dataclass
class Timing:
    """The best of several runs of one variant, every run checked."""

    label: str
    samples: list[Sample]

    @property
    def wall(self) -> float:
        return min(s.wall for s in self.samples)

    @property
    def cpu(self) -> float:
        return min(s.cpu for s in self.samples)

    @property
    def outcomes(self) -> list[Outcome]:
        return [s.result for s in self.samples]


def _measure_all(
    console: Console, runs: int, guest: str, variants: dict[str, Callable[[], Sample]]
) -> dict[str, Timing]:
    with console.status("") as status:
        samples = round_robin(runs, variants, lambda text: status.update(f"{guest}: {text}"))
    timings = {label: Timing(label, s) for label, s in samples.items()}
    for timing in timings.values():
        for outcome in timing.outcomes:
            outcome.check(guest)
    return timings


def _same_checksum(timings: list[Timing]) -> str:
    """The checksum every run printed; BenchFailure naming the odd one out otherwise."""
    seen: dict[str, str] = {}
    for timing in timings:
        for outcome in timing.outcomes:
            seen.setdefault(outcome.checksum(), f"{outcome.monitor} ({outcome.cmdline!r})")
    if len(seen) != 1:
        raise BenchFailure("cpubench checksums differ: " + ", ".join(f"{c} from {who}" for c, who in seen.items()))
    return next(iter(seen))


def _cpubench(console: Console, runs: int) -> list[Row]:
    n = CPU_ITERATIONS
    plain = f"iterations={n}"
    timed = f"iterations={n} timer={TIMER_HZ}"
    qemu = installed_qemu() is not None

    ours_plain, ours_timed, bare_label, hooked = (
        "our monitor, no timer", f"our monitor, timer={TIMER_HZ}",
        "bare Unicorn", "bare Unicorn + our native block hook",
    )
    qemu_run, qemu_start = "QEMU TCG, whole process", "QEMU start-up (iterations=1)"
    variants: dict[str, Callable[[], Sample]] = {
        ours_plain: lambda: run_ours(CPUBENCH, plain),
        ours_timed: lambda: run_ours(CPUBENCH, timed),
        bare_label: lambda: run_bare(CPUBENCH, plain),
        hooked: lambda: run_bare(CPUBENCH, plain, block_hook=True),
    }
    if qemu:
        variants[qemu_run] = lambda: run_qemu(CPUBENCH, plain)
        variants[qemu_start] = lambda: run_qemu(CPUBENCH, "iterations=1")
    t = _measure_all(console, runs, "cpubench", variants)
    process = "vmm run process, start-up included (1 run)"
    t.update(_measure_all(console, 1, "cpubench", {process: lambda: run_ours_process(CPUBENCH, timed)}))
    checksum = _same_checksum([timing for label, timing in t.items() if label != qemu_start])

    bare = t[bare_label].wall
    expected = TIMER_HZ * t[ours_timed].wall
    delivered = min(o.interrupts or 0 for o in t[ours_timed].outcomes)
    preemption_active = delivered >= expected / 2
    qemu_net = t[qemu_run].wall - t[qemu_start].wall if qemu else None
    notes = {
        ours_timed: f"{delivered} timer interrupts delivered (~{expected:.0f} due)"
        + ("" if preemption_active else ": preemption NOT active"),
        hooked: "the hook alone, never stopping",
        process: "Python and monitor start-up included",
    }

    table = Table(title=f"cpubench iterations={n}: best of {runs} rounds (checksum {checksum} on every run)",
                  title_justify="left")
    for column in ("run", "wall", "vs bare", "vs QEMU", "CPU", "CPU vs bare", "note"):
        table.add_column(column, justify="left" if column in ("run", "note") else "right")

    def ratio(seconds: float, base: float | None) -> str:
        return f"{seconds / base:.3f}x" if base else "-"

    for label in (ours_plain, ours_timed, process, hooked, bare_label):
        timing = t[label]
        table.add_row(label, f"{timing.wall:.3f} s", ratio(timing.wall, bare), ratio(timing.wall, qemu_net),
                      f"{timing.cpu:.3f} s", ratio(timing.cpu, t[bare_label].cpu), notes.get(label, ""))
    if qemu_net is not None:
        table.add_row("QEMU TCG, start-up subtracted", f"{qemu_net:.3f} s", ratio(qemu_net, bare), "1.000x",
                      f"{t[qemu_run].cpu - t[qemu_start].cpu:.3f} s", "",
                      f"process {t[qemu_run].wall:.3f} s - start-up {t[qemu_start].wall:.3f} s (iterations=1)")
    else:
        table.add_row("QEMU TCG", "-", "-", "-", "-", "-", "qemu-system-i386 not installed: skipped")
    console.print(table)

    ours_ratio = t[ours_timed].wall / bare
    rows = [
        Row(AREA, "cpubench ours, no timer (s)", t[ours_plain].wall, "s"),
        Row(AREA, f"cpubench ours, timer={TIMER_HZ} (s)", t[ours_timed].wall, "s", note=notes[ours_timed]),
        Row(AREA, "cpubench vmm run process (s)", t[process].wall, "s"),
        Row(AREA, "cpubench bare Unicorn (s)", bare, "s"),
        Row(AREA, "cpubench (bare + block hook)/bare", t[hooked].wall / bare, "x"),
        Row(AREA, "cpubench ours/bare, no timer", t[ours_plain].wall / bare, "x"),
        Row(AREA, f"cpubench ours/bare, timer={TIMER_HZ} (preemption)", ours_ratio, "x",
            target=f"<= {MAX_OURS_OVER_BARE:.2f}x", passed=preemption_active and ours_ratio <= MAX_OURS_OVER_BARE,
            note="" if preemption_active else "no timer interrupt reached the guest"),
        Row(AREA, f"cpubench ours/bare CPU time, timer={TIMER_HZ}", t[ours_timed].cpu / t[bare_label].cpu, "x"),
    ]
    if qemu_net is not None:
        rows += [
            Row(AREA, "cpubench QEMU TCG, start-up subtracted (s)", qemu_net, "s"),
            Row(AREA, "cpubench bare/QEMU", bare / qemu_net, "x", note="issue: about 1.3x"),
            Row(AREA, f"cpubench ours/QEMU, timer={TIMER_HZ}", t[ours_timed].wall / qemu_net, "x"),
        ]
    return rows


def _iobench(console: Console, runs: int) -> list[Row]:
    idle, outs, reps = "outs=0 reps=0", f"outs={IO_OUTS} reps=0", f"outs=0 reps={IO_REPS}"
    variants: dict[str, Callable[[], Sample]] = {}
    for name, run in (("ours", run_ours), ("bare", run_bare)):
        for cmdline in (idle, outs, reps):
            variants[f"{name} {cmdline}"] = lambda run=run, cmdline=cmdline: run(IOBENCH, cmdline)
    t = _measure_all(console, runs, "iobench", variants)

    def figures(name: str) -> tuple[float, float]:
        """Seconds per single exit and per rep outsw: (run - idle run) / count."""
        base = t[f"{name} {idle}"].wall
        return (t[f"{name} {outs}"].wall - base) / IO_OUTS, (t[f"{name} {reps}"].wall - base) / IO_REPS

    ours_exit, ours_rep = figures("ours")
    bare_exit, bare_rep = figures("bare")
    per_element = STRING_WORDS * ours_exit

    table = Table(title=f"iobench: port I/O to port 0x80, best of {runs} rounds; "
                  "each figure is (run - idle run) / count", title_justify="left")
    for column in ("run", "idle run", f"{IO_OUTS:,} out", "exits/s", "µs per exit",
                   f"{IO_REPS:,} rep outsw", "µs per rep outsw"):
        table.add_column(column, justify="left" if column == "run" else "right")
    for name, label, exit_s, rep_s in (("ours", "our monitor", ours_exit, ours_rep),
                                       ("bare", "bare Unicorn, do-nothing Python hook", bare_exit, bare_rep)):
        table.add_row(label, f"{t[f'{name} {idle}'].wall:.3f} s", f"{t[f'{name} {outs}'].wall:.3f} s",
                      f"{1 / exit_s:,.0f}", f"{exit_s * 1e6:.3f}", f"{t[f'{name} {reps}'].wall:.3f} s",
                      f"{rep_s * 1e6:,.1f}")
    console.print(table)
    console.print(
        f"One rep outsw of {STRING_WORDS} words on our monitor: {ours_rep * 1e6:,.1f} µs; the same words as "
        f"single exits: {STRING_WORDS} x {ours_exit * 1e6:.3f} µs = {per_element * 1e6:,.1f} µs; "
        f"ratio {ours_rep / per_element:.3f} (target < {MAX_STRING_SHARE}). Bare Unicorn calls its hook "
        f"once per word: {bare_rep * 1e6:,.1f} µs per rep outsw."
    )
    return [
        Row(AREA, "port-I/O exits/s, ours", 1 / ours_exit, "/s", target=f">= {MIN_EXITS_PER_S:,}/s",
            passed=1 / ours_exit >= MIN_EXITS_PER_S),
        Row(AREA, "port-I/O exits/s, bare Unicorn hook", 1 / bare_exit, "/s", note="issue: about 3,000,000"),
        Row(AREA, f"rep outsw x{STRING_WORDS}, ours (µs)", ours_rep * 1e6, "µs",
            target=f"< {MAX_STRING_SHARE * per_element * 1e6:,.1f} µs (1/10 of {STRING_WORDS} exits)",
            passed=ours_rep < MAX_STRING_SHARE * per_element,
            note=f"{ours_rep / per_element:.2f} of per-element"),
        Row(AREA, f"{STRING_WORDS} single exits, ours (µs)", per_element * 1e6, "µs"),
        Row(AREA, f"rep outsw x{STRING_WORDS}, bare Unicorn (µs)", bare_rep * 1e6, "µs"),
    ]


def run(console: Console, runs: int = 3) -> list[Row]:
    """Measure the core figures; print a table per benchmark; return the rows."""
    for kernel in (CPUBENCH, IOBENCH):
        if not kernel.exists():
            raise BenchFailure(f"{kernel} is missing: build the guests with `make guests`")
    console.rule("[bold]core: the monitor")
    console.print(f"load average before: {load_average()}")
    rows = _cpubench(console, runs) + _iobench(console, runs)
    console.print(f"load average after: {load_average()}")
    return rows
