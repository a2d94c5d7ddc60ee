"""The storage stack (issue 3): a virtual disk with one redo overlay, in the file
system, on a RAID 5 volume of four host files, against one raw host file and against
``qemu-img bench`` on a qcow2 overlay; and a RAID 5 member rebuild against the host's
sequential write bandwidth. The measuring code is storage/bench.py."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmarks import Row, load_average
from storage import bench, durability

AREA = "storage"
SIZE = 256 << 20
REBUILD = 1 << 30  # the issue asks for a 1 GiB member


def run(console: Console, runs: int = 3) -> list[Row]:
    console.rule("[bold]storage: the volume stack")
    console.print(f"load average before: {load_average()}")
    durability.HOST_FSYNC = False  # page-cache speeds for the stack and the raw file alike
    work = Path(tempfile.mkdtemp(prefix="vmm-bench-"))
    try:
        best: dict[str, tuple] = {}
        for round_number in range(runs):
            directory = work / f"round{round_number}"
            directory.mkdir()
            for label, stack, raw, peer, unit in bench.measure(directory, SIZE, seconds=1.0):
                if label not in best or stack > best[label][0]:
                    best[label] = (stack, raw, peer, unit)
            shutil.rmtree(directory, ignore_errors=True)
        rebuild, host = bench.measure_rebuild(work, REBUILD)
    finally:
        durability.HOST_FSYNC = True
        shutil.rmtree(work, ignore_errors=True)
    table = Table(title=f"volume stack, best of {runs} (256 MiB disk, page cache)")
    for column in ("work", "stack", "raw file", "stack/raw", "qemu-img", "stack/qemu-img"):
        table.add_column(column, justify="right")
    rows: list[Row] = []
    for label, (stack, raw, peer, unit) in best.items():
        table.add_row(label, f"{stack:,.0f} {unit}", f"{raw:,.0f}", f"{stack / raw:.2f}",
                      "-" if peer is None else f"{peer:,.0f}", "-" if peer is None else f"{stack / peer:.2f}")
        if peer is None:
            rows.append(Row(AREA, f"{label}: stack / raw file", stack / raw, "x",
                            target=">= 0.50x", passed=stack >= 0.5 * raw))
        else:
            rows.append(Row(AREA, f"{label}: stack / qemu-img bench", stack / peer, "x",
                            target=">= 0.25x", passed=stack >= 0.25 * peer))
    table.add_row("rebuild 1 GiB member", f"{rebuild:,.0f} MiB/s", f"{host:,.0f}", f"{rebuild / host:.2f}", "-", "-")
    rows.append(Row(AREA, "RAID 5 rebuild / host sequential write", rebuild / host, "x",
                    target=">= 0.10x", passed=rebuild >= 0.1 * host))
    console.print(table)
    console.print(f"load average after: {load_average()}")
    return rows
