"""The network: round trips guest to guest through our switch, next to QEMU's ne2k_isa.

Target (issue 5, "How it must be checked"): frames per second and Mbit/s guest to guest
for 60-byte and 1514-byte frames, next to QEMU's ``ne2k_isa`` on the same guests; our
frame rate at least QEMU's.

The guests: ``netbench size=S count=N`` pings (sends frame ``seq``, waits for its echo,
then sends the next) and ``netpong count=N`` echoes, both on an NE2000 at 0x300/IRQ 9
(guests/README.md, "The network guests"). Two ways to connect them, measured in the
same run:

* ours: a ``vmm switch`` of our own in a temporary ``VMM_SWITCH_DIR``, capturing to a
  pcap (``--pcap``), and two ``vmm run`` processes with ``--nic switch:NAME``;
* QEMU (qemu-system-i386, TCG): two instances whose UDP datagram netdevs point at each
  other (crossed ports, distinct MACs), with ``-object filter-dump`` on netbench's
  netdev writing the pcap.

Boot and start-up are left out by timing from the capture: the time from the first echo
(of frame 0) to the last one (of frame N-1) covers N-1 whole round trips. A round trip
is two frames, one each way; Mbit/s counts the frame bytes (Ethernet header included,
no FCS) of both directions. The capture is also checked: every frame 0..N-1 echoed.
Every variant runs once per round; the best of ``runs`` rounds counts.
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from rich.console import Console
from rich.table import Table

from benchmarks import BenchFailure, Row, Sample, Stopwatch, load_average, round_robin
from guests.reference import installed_qemu, qemu_command, qemu_status
from devices.net.pcap import read_pcap
from vmm.netbackend import free_udp_port

AREA = "net"
ROOT = Path(__file__).resolve().parents[1]
GUESTS = ROOT / "guests" / "build"
NETBENCH = GUESTS / "netbench.elf"
NETPONG = GUESTS / "netpong.elf"
MEMORY_MIB = 64
SIZES = (60, 1514)

# Round trips per run, sized for 1-3 s of ping-pong each on the machine in
# docs/benchmarks.md (ours: 350-850 round trips/s at 60 bytes, 280-630 at 1514 bytes;
# QEMU: 9,300-12,800 and 3,300-4,200).
OURS_COUNT = {60: 1_000, 1514: 800}
QEMU_COUNT = {60: 30_000, 1514: 10_000}

PING, PONG = 1, 2  # guests/lib/pingpong.h: byte 16 of the frame
PP_ETHERTYPE = 0x88B5
PING_MAC, PONG_MAC = "52:54:00:12:34:56", "52:54:00:12:34:57"
RUN_TIMEOUT_S = 180
SWITCH_START_TIMEOUT_S = 15

# `vmm run --stats` rows worth a figure per round trip.
STAT_REASONS = ("port I/O", "string I/O", "interrupt", "hlt", "preempt")
_STAT_ROW = re.compile(r"^\W*(port I/O|string I/O|interrupt|hlt|preempt)\W+(\d+)\W*$", re.MULTILINE)


@dataclass
class PingPong:
    """One netbench/netpong run: what the capture says, and the exit counts (ours)."""

    monitor: str
    size: int
    count: int
    span: float  # seconds from the first echo to the last one
    exits_ping: dict[str, int] = field(default_factory=dict)
    exits_pong: dict[str, int] = field(default_factory=dict)

    @property
    def round_trips(self) -> int:
        return self.count - 1

    @property
    def round_trips_per_s(self) -> float:
        return self.round_trips / self.span

    @property
    def frames_per_s(self) -> float:
        return 2 * self.round_trips_per_s

    @property
    def mbit_per_s(self) -> float:
        return self.frames_per_s * self.size * 8 / 1e6


# -- helpers ------------------------------------------------------------------------------


def _echo_span(capture: Path, count: int, who: str) -> float:
    """Seconds from the first echo of frame 0 to the first echo of frame count-1;
    BenchFailure unless every frame 0..count-1 was echoed."""
    try:
        records = list(read_pcap(capture))
    except (OSError, ValueError) as exc:
        raise BenchFailure(f"{who}: cannot read the capture: {exc}") from None
    first: dict[int, float] = {}
    for when, frame in records:
        if len(frame) < 24 or struct.unpack_from(">H", frame, 12)[0] != PP_ETHERTYPE or frame[14:16] != b"NP":
            continue
        if frame[16] == PONG:
            first.setdefault(struct.unpack_from(">I", frame, 20)[0], when)
    missing = [seq for seq in range(count) if seq not in first]
    if missing:
        raise BenchFailure(f"{who}: {len(missing)} of {count} frames never echoed in {capture.name} "
                           f"(first missing: {missing[0]})")
    return first[count - 1] - first[0]


def _exit_counts(stderr: str) -> dict[str, int]:
    return {reason: int(value) for reason, value in _STAT_ROW.findall(stderr)}


def _finish(proc: subprocess.Popen, who: str, deadline: float) -> tuple[str, str, int]:
    try:
        out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise BenchFailure(f"{who} did not finish within {RUN_TIMEOUT_S} s") from None
    return out.decode(errors="replace"), err.decode(errors="replace"), proc.returncode


def _check(who: str, out: str, err: str, status: int, want: str) -> None:
    if status != 0 or want not in out:
        tail = " | ".join(out.strip().splitlines()[-3:])
        why = " | ".join(line for line in err.strip().splitlines()[-2:] if "warning" not in line)
        raise BenchFailure(f"{who} ended with status {status}; serial: {tail!r}" + (f"; stderr: {why!r}" if why else ""))


def _stop(procs: list[subprocess.Popen]) -> None:
    """Whatever is still running of what we started: terminate, then kill."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- the two ways to connect netbench and netpong -------------------------------------------


def _vmm() -> list[str]:
    script = Path(sys.executable).with_name("vmm")
    return [str(script)] if script.exists() else [sys.executable, "-m", "vmm"]


def run_ours(size: int, count: int, workdir: Path) -> Sample:
    """Two ``vmm run`` processes on a fresh ``vmm switch`` that captures every frame."""
    from devices.net.switch import socket_paths

    who = f"netbench size={size} count={count} on our monitor"
    name = f"bench{size}"
    capture = workdir / f"ours-{size}.pcap"
    data_path, _ = socket_paths(name)  # in $VMM_SWITCH_DIR, which run() points at workdir
    data_path.unlink(missing_ok=True)
    quiet = dict(stdin=subprocess.DEVNULL, cwd=ROOT)
    procs: list[subprocess.Popen] = []
    try:
        switch = subprocess.Popen(_vmm() + ["switch", name, "--pcap", str(capture)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **quiet)
        procs.append(switch)
        started = time.monotonic()
        while not data_path.exists():
            if switch.poll() is not None or time.monotonic() - started > SWITCH_START_TIMEOUT_S:
                raise BenchFailure(f"vmm switch {name} did not start: {switch.stderr.read().decode(errors='replace')!r}")
            time.sleep(0.02)
        vm = _vmm() + ["run", "--memory", str(MEMORY_MIB), "--stats", "--max-seconds", str(RUN_TIMEOUT_S)]
        watch = Stopwatch()
        pong = subprocess.Popen(vm + [str(NETPONG), "--append", f"count={count}", "--nic", f"switch:{name},mac={PONG_MAC}"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, **quiet)
        procs.append(pong)
        ping = subprocess.Popen(vm + [str(NETBENCH), "--append", f"size={size} count={count}",
                                      "--nic", f"switch:{name},mac={PING_MAC}"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, **quiet)
        procs.append(ping)
        deadline = time.monotonic() + RUN_TIMEOUT_S
        ping_out, ping_err, ping_status = _finish(ping, who, deadline)
        pong_out, pong_err, pong_status = _finish(pong, f"netpong count={count} on our monitor", deadline)
        timed = watch.stop(None)
    finally:
        _stop(procs)
    _check(who, ping_out, ping_err, ping_status, "PASS netbench")
    _check(f"netpong count={count} on our monitor", pong_out, pong_err, pong_status, "PASS netpong")
    result = PingPong("ours", size, count, _echo_span(capture, count, who),
                      _exit_counts(ping_err), _exit_counts(pong_err))
    capture.unlink(missing_ok=True)
    return Sample(timed.wall, timed.cpu, result)


def run_qemu(size: int, count: int, workdir: Path) -> Sample:
    """Two QEMU instances on crossed UDP datagram netdevs; netbench's side captured."""
    who = f"netbench size={size} count={count} on QEMU"
    capture = workdir / f"qemu-{size}.pcap"
    capture.unlink(missing_ok=True)
    ping_port, pong_port = free_udp_port(), free_udp_port()

    def nic(mac: str, local: int, remote: int) -> list[str]:
        return [
            "-device", f"ne2k_isa,iobase=0x300,irq=9,netdev=n0,mac={mac}",
            "-netdev", "dgram,id=n0,local.type=inet,local.host=127.0.0.1,"
            f"local.port={local},remote.type=inet,remote.host=127.0.0.1,remote.port={remote}",
        ]

    quiet = dict(stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    procs: list[subprocess.Popen] = []
    try:
        watch = Stopwatch()
        pong = subprocess.Popen(qemu_command(NETPONG, f"count={count}", MEMORY_MIB,
                                             nic(PONG_MAC, pong_port, ping_port)), **quiet)
        procs.append(pong)
        ping = subprocess.Popen(qemu_command(NETBENCH, f"size={size} count={count}", MEMORY_MIB,
                                             nic(PING_MAC, ping_port, pong_port)
                                             + ["-object", f"filter-dump,id=f0,netdev=n0,file={capture}"]),
                                **quiet)
        procs.append(ping)
        deadline = time.monotonic() + RUN_TIMEOUT_S
        ping_out, ping_err, ping_status = _finish(ping, who, deadline)
        pong_out, pong_err, pong_status = _finish(pong, f"netpong count={count} on QEMU", deadline)
        timed = watch.stop(None)
    finally:
        _stop(procs)
    _check(who, ping_out, ping_err, qemu_status(ping_status), "PASS netbench")
    _check(f"netpong count={count} on QEMU", pong_out, pong_err, qemu_status(pong_status), "PASS netpong")
    result = PingPong("QEMU", size, count, _echo_span(capture, count, who))
    capture.unlink(missing_ok=True)
    return Sample(timed.wall, timed.cpu, result)


# -- the report ---------------------------------------------------------------------------


def _best(samples: list[Sample]) -> PingPong:
    return min((s.result for s in samples), key=lambda r: r.span)


def run(console: Console, runs: int = 3) -> list[Row]:
    """Measure round trips guest to guest on our switch and on QEMU; return the rows."""
    for kernel in (NETBENCH, NETPONG):
        if not kernel.exists():
            raise BenchFailure(f"{kernel} is missing: build the guests with `make guests`")
    qemu = installed_qemu() is not None
    console.rule("[bold]net: guest to guest")
    console.print(f"load average before: {load_average()}")
    saved_dir = os.environ.get("VMM_SWITCH_DIR")
    with tempfile.TemporaryDirectory(prefix="vmm-bench-net-") as tmp:
        workdir = Path(tmp)
        os.environ["VMM_SWITCH_DIR"] = str(workdir / "switches")  # our switches, and only ours
        variants: dict[str, Callable[[], Sample]] = {}
        for size in SIZES:
            variants[f"ours {size}"] = lambda size=size: run_ours(size, OURS_COUNT[size], workdir)
            if qemu:
                variants[f"QEMU {size}"] = lambda size=size: run_qemu(size, QEMU_COUNT[size], workdir)
        try:
            with console.status("") as status:
                samples = round_robin(runs, variants, lambda text: status.update(f"netbench: {text}"))
        finally:
            if saved_dir is None:
                os.environ.pop("VMM_SWITCH_DIR", None)
            else:
                os.environ["VMM_SWITCH_DIR"] = saved_dir
    best = {label: _best(s) for label, s in samples.items()}
    process = {label: min(x.wall for x in s) for label, s in samples.items()}

    table = Table(title=f"netbench against netpong, guest to guest: best of {runs} rounds; "
                  "timed from the first echo to the last in the capture", title_justify="left")
    for column in ("run", "frame", "round trips", "time", "round trips/s", "frames/s", "Mbit/s",
                   "vs QEMU", "processes"):
        table.add_column(column, justify="left" if column == "run" else "right")
    for size in SIZES:
        reference = best.get(f"QEMU {size}")
        for label, name in ((f"ours {size}", "our monitor, our switch"), (f"QEMU {size}", "QEMU TCG, UDP dgram")):
            if label not in best:
                continue
            r = best[label]
            table.add_row(name, f"{size} B", f"{r.round_trips:,}", f"{r.span:.3f} s", f"{r.round_trips_per_s:,.0f}",
                          f"{r.frames_per_s:,.0f}", f"{r.mbit_per_s:.3f}",
                          f"{r.frames_per_s / reference.frames_per_s:.3f}x" if reference else "-",
                          f"{process[label]:.2f} s")
    if not qemu:
        table.add_row("QEMU", "-", "-", "-", "-", "-", "-", "-", "qemu-system-i386 not installed: skipped")
    console.print(table)

    exits = Table(title="our monitor, netbench's VM (`vmm run --stats`): per round trip, i.e. per frame sent "
                  "plus frame received; boot included", title_justify="left")
    exits.add_column("VM")
    for reason in STAT_REASONS:
        exits.add_column(reason, justify="right")
    exits.add_column("slices (string I/O + hlt + preempt)", justify="right")
    exits.add_column("µs per round trip", justify="right")
    for size in SIZES:
        r = best[f"ours {size}"]
        per = {k: r.exits_ping.get(k, 0) / r.count for k in STAT_REASONS}
        exits.add_row(f"netbench size={size}", *(f"{per[k]:.1f}" for k in STAT_REASONS),
                      f"{per['string I/O'] + per['hlt'] + per['preempt']:.1f}", f"{1e6 / r.round_trips_per_s:,.0f}")
    console.print(exits)
    console.print("netpong's VM shows about the same per round trip, plus its 1 s of linger after the last frame "
                  "(1,000 timer ticks). QEMU: "
                  + ", ".join(f"{1e6 / best[f'QEMU {size}'].round_trips_per_s:,.0f} µs per round trip at {size} B"
                              for size in SIZES if f"QEMU {size}" in best) + ".")
    console.print(f"load average after: {load_average()}")

    rows: list[Row] = []
    for size in SIZES:
        ours = best[f"ours {size}"]
        rows += [
            Row(AREA, f"{size} B frames/s, ours (2 per round trip)", ours.frames_per_s, "/s"),
            Row(AREA, f"{size} B Mbit/s, ours (both directions)", ours.mbit_per_s, "Mbit/s"),
        ]
        reference = best.get(f"QEMU {size}")
        if reference is None:
            continue
        ratio = ours.frames_per_s / reference.frames_per_s
        rows += [
            Row(AREA, f"{size} B frames/s, QEMU ne2k_isa", reference.frames_per_s, "/s"),
            Row(AREA, f"{size} B Mbit/s, QEMU ne2k_isa", reference.mbit_per_s, "Mbit/s"),
            Row(AREA, f"{size} B frame rate ours/QEMU", ratio, "x", target=">= 1.000x (QEMU's frame rate)",
                passed=ratio >= 1.0, note=f"{ours.frames_per_s:,.0f} vs {reference.frames_per_s:,.0f} frames/s"),
        ]
    return rows
