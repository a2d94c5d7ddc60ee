"""Debian's Linux (issue 7): wall time from process start to /init's "verdict: PASS" on
our monitor and on QEMU TCG, the same kernel, initramfs and checks (guests/linux), with
the times at which each machine printed the kernel banner and reached /init, so the
table shows where the difference lies: the kernel's self-decompression runs before the
banner, the kernel's own boot between banner and /init, the drivers and checks after.

Target: ours at most 3x QEMU. Needs the Debian packages in .cache/debian
(``python -m guests.linux.debian fetch --setup``); without them the area says so.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmarks import BenchFailure, Row, load_average
from guests.linux import debian, testvm
from guests.linux.peer import Peer
from guests.reference import installed_qemu
from vmm.netbackend import free_udp_port

AREA = "linux"
RATIO = "boot to verdict, ours / QEMU TCG"
TARGET = "<= 3.0x"
MARKS = {"banner": "Linux version", "init": "Run /init as init process", "verdict": "verdict: PASS"}


@dataclass
class Timeline:
    """Seconds from process start to each mark (None if never printed)."""

    banner: float | None = None
    init: float | None = None
    verdict: float | None = None


def _timed_run(command: list[str], limit: float) -> tuple[Timeline, str]:
    timeline = Timeline()
    lines = []
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               stdin=subprocess.DEVNULL, text=True, errors="replace", cwd=testvm.REPO)
    watchdog = threading.Timer(limit, process.kill)  # a guest that hangs silently ends too
    watchdog.start()
    try:
        for line in process.stdout:
            lines.append(line)
            for name, mark in MARKS.items():
                if mark in line and getattr(timeline, name) is None:
                    setattr(timeline, name, time.perf_counter() - start)
    finally:
        watchdog.cancel()
        process.kill()
        process.wait()
    return timeline, "".join(lines)


def _complete(timeline: Timeline, who: str, output: str) -> Timeline:
    if None in (timeline.banner, timeline.init, timeline.verdict):
        raise BenchFailure(f"Linux did not pass on {who}:\n{output[-2000:]}")
    return timeline


def _ours(linux, initramfs: Path, layout: testvm.DiskLayout, pool: Path) -> Timeline:
    with testvm.switch_with_peer("bench-linux"):
        timeline, output = _timed_run(testvm.vmm_command(linux, initramfs, layout, pool, "bench-linux", 600), 600)
    return _complete(timeline, "our monitor", output)


def _qemu(qemu: str, linux, initramfs: Path, layout: testvm.DiskLayout, work: Path) -> Timeline:
    disk = work / "qemu-disk.img"
    disk.write_bytes(testvm.disk_image(layout))
    local, remote = free_udp_port(), free_udp_port()
    peer = Peer(("127.0.0.1", remote), ("127.0.0.1", local)).start()
    try:
        timeline, output = _timed_run(testvm.qemu_command(qemu, linux, initramfs, layout, disk, local, remote), 300)
    finally:
        peer.close()
    return _complete(timeline, "QEMU", output)


def _best(timelines: list[Timeline]) -> Timeline:
    return min(timelines, key=lambda t: t.verdict)


def run(console: Console, runs: int = 3) -> list[Row]:
    console.rule("[bold]linux: Debian's kernel to /init's verdict")
    linux = debian.find_cached()
    qemu = installed_qemu()
    if linux is None or qemu is None:
        console.print(f"skipped: needs the Debian packages ({debian.SETUP_FETCH_COMMAND}) and qemu-system-i386")
        return [Row(AREA, RATIO, float("nan"), "x", target=TARGET, passed=False, note="not run")]
    console.print(f"load average before: {load_average()}")
    layout = testvm.DiskLayout()
    switch_dir = os.environ.get("VMM_SWITCH_DIR")
    with tempfile.TemporaryDirectory(prefix="vmm-bench-linux-") as scratch:
        work = Path(scratch)
        os.environ["VMM_SWITCH_DIR"] = str(work / "switch")
        try:
            initramfs = testvm.initramfs(linux, work)
            pool = work / "pool"
            testvm.make_pool(pool, layout)
            ours, theirs = [], []
            for _ in range(runs):
                ours.append(_ours(linux, initramfs, layout, pool))
                theirs.append(_qemu(qemu, linux, initramfs, layout, work))
        finally:
            if switch_dir is None:
                os.environ.pop("VMM_SWITCH_DIR", None)
            else:
                os.environ["VMM_SWITCH_DIR"] = switch_dir
    best_ours, best_qemu = _best(ours), _best(theirs)
    table = Table(title=f"{linux.kernel_package.name} {linux.kernel_package.version}, best of {runs} (s from start)")
    for column in ("machine", "kernel banner", "/init", "verdict: PASS"):
        table.add_column(column, justify="right")
    for name, t in (("ours", best_ours), ("QEMU TCG", best_qemu)):
        table.add_row(name, f"{t.banner:.2f}", f"{t.init:.2f}", f"{t.verdict:.2f}")
    table.add_row("ours / QEMU", f"{best_ours.banner / best_qemu.banner:.1f}x",
                  f"{best_ours.init / best_qemu.init:.1f}x", f"{best_ours.verdict / best_qemu.verdict:.2f}x")
    console.print(table)
    console.print(
        f"before the banner (the kernel decompressing itself, one slice with interrupts off): "
        f"ours {best_ours.banner:.1f} s, QEMU {best_qemu.banner:.1f} s; "
        f"after it: ours {best_ours.verdict - best_ours.banner:.1f} s, "
        f"QEMU {best_qemu.verdict - best_qemu.banner:.1f} s"
    )
    console.print(f"load average after: {load_average()}")
    ratio = best_ours.verdict / best_qemu.verdict
    after_banner = (best_ours.verdict - best_ours.banner) / (best_qemu.verdict - best_qemu.banner)
    return [
        Row(AREA, RATIO, ratio, "x", target=TARGET, passed=ratio <= 3.0),
        Row(AREA, "banner to verdict, ours / QEMU TCG", after_banner, "x"),
    ]
