"""Suspend and resume: time and image size for a 64 MiB and a 256 MiB guest with 10%
of RAM written with random data (guests/build/memfill.elf), next to the host's own
sequential file write and read bandwidth measured in the same run.

Targets (issue 6): suspend and resume each move the 256 MiB guest's RAM at no less than
half the host's sequential write (and read) bandwidth; the image under 1.2x the RAM
written.
"""

from __future__ import annotations

import io
import os
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmarks import BenchFailure, Row, load_average
from vmm.machine import Machine, MachineConfig
from vmm.snapshot import resume, suspend

AREA = "snapshot"
MEMFILL = Path(__file__).resolve().parent.parent / "guests" / "build" / "memfill.elf"
SIZES_MIB = (64, 256)
CHUNK = 1 << 20


def _filled_machine(memory_mib: int) -> tuple[Machine, int]:
    fill_mib = memory_mib // 10
    out = io.BytesIO()
    machine = Machine(MachineConfig(memory_mib=memory_mib, cmdline=f"mib={fill_mib}"), serial_out=out)
    machine.load(MEMFILL)
    result = machine.run(max_seconds=300)
    if result.status != 101 or b"filled" not in out.getvalue():
        raise BenchFailure(f"memfill did not fill its RAM: {out.getvalue()!r} {result}")
    return machine, fill_mib


def _drop_cache(path: Path) -> None:
    """Evict a file's (clean) pages, so that reading it measures the disk, not RAM."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _file_bandwidth(directory: Path, size: int) -> tuple[float, float]:
    """Sequential write (with fsync, as an image is written) and read, in bytes/s."""
    path = directory / "bandwidth.bin"
    block = os.urandom(CHUNK)
    start = time.perf_counter()
    with open(path, "wb") as out:
        for _ in range(size // CHUNK):
            out.write(block)
        out.flush()
        os.fsync(out.fileno())
    write = size / (time.perf_counter() - start)
    _drop_cache(path)
    start = time.perf_counter()
    with open(path, "rb") as source:
        while source.read(CHUNK):
            pass
    read = size / (time.perf_counter() - start)
    path.unlink()
    return write, read


def _measure(memory_mib: int, directory: Path, runs: int) -> dict[str, float]:
    machine, fill_mib = _filled_machine(memory_mib)
    ram = machine.memory.size
    image = directory / f"vm-{memory_mib}.image"
    best = {"suspend": float("inf"), "resume": float("inf")}
    size = 0
    for _ in range(runs):
        start = time.perf_counter()
        size = suspend(machine, image)
        best["suspend"] = min(best["suspend"], time.perf_counter() - start)
        _drop_cache(image)  # resume reads the image from the disk, as after a reboot
        start = time.perf_counter()
        resumed = resume(image, serial_out=io.BytesIO())
        best["resume"] = min(best["resume"], time.perf_counter() - start)
        resumed.close()
    machine.close()
    image.unlink()
    return {
        "ram": ram,
        "written": fill_mib * 1024 * 1024,
        "image": size,
        "suspend_s": best["suspend"],
        "resume_s": best["resume"],
    }


def run(console: Console, runs: int = 3) -> list[Row]:
    if not MEMFILL.exists():
        raise BenchFailure(f"{MEMFILL} is missing: build the guests with `make guests`")
    console.rule("[bold]snapshot: suspend and resume")
    console.print(f"load average before: {load_average()}")
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("VMM_BENCH_DIR")) as tmp:
        directory = Path(tmp)
        write_bw, read_bw = _file_bandwidth(directory, 256 * CHUNK)
        table = Table(title="suspend / resume (best of %d)" % runs)
        for column in ("guest RAM", "written", "image", "image / written", "suspend", "RAM/s",
                       "resume", "RAM/s"):
            table.add_column(column, justify="right")
        for memory_mib in SIZES_MIB:
            m = _measure(memory_mib, directory, runs)
            suspend_rate = m["ram"] / m["suspend_s"]
            resume_rate = m["ram"] / m["resume_s"]
            ratio = m["image"] / m["written"]
            table.add_row(
                f"{memory_mib} MiB", f"{m['written'] >> 20} MiB", f"{m['image'] / 2**20:.1f} MiB",
                f"{ratio:.3f}", f"{m['suspend_s']:.3f} s", f"{suspend_rate / 2**20:,.0f} MiB/s",
                f"{m['resume_s']:.3f} s", f"{resume_rate / 2**20:,.0f} MiB/s",
            )
            rows.append(Row(AREA, f"image size / RAM written, {memory_mib} MiB guest", ratio, "x",
                            target="< 1.2x", passed=ratio < 1.2))
            if memory_mib == 256:
                rows.append(Row(AREA, "suspend RAM rate / host file write", suspend_rate / write_bw, "x",
                                target=">= 0.5x", passed=suspend_rate >= 0.5 * write_bw,
                                note=f"{suspend_rate / 2**20:,.0f} vs {write_bw / 2**20:,.0f} MiB/s"))
                rows.append(Row(AREA, "resume RAM rate / host file read", resume_rate / read_bw, "x",
                                target=">= 0.5x", passed=resume_rate >= 0.5 * read_bw,
                                note=f"{resume_rate / 2**20:,.0f} vs {read_bw / 2**20:,.0f} MiB/s"))
        console.print(table)
        console.print(f"host file: sequential write {write_bw / 2**20:,.0f} MiB/s (with fsync), "
                      f"read {read_bw / 2**20:,.0f} MiB/s")
    rows += run_units(console, runs)
    console.print(f"load average after: {load_average()}")
    return rows


CPUBENCH = MEMFILL.parent / "cpubench.elf"
UNITS_CMDLINE = "iterations=120"


def _units_wall(count: int, directory: Path) -> float:
    """Wall time for ``count`` cpubench VMs started together on a host of two units."""
    from vmm.host import Host

    host = Host(units=2, state_dir=directory / f"host-{count}-{time.monotonic_ns()}")
    try:
        start = time.perf_counter()
        names = [
            host.start(CPUBENCH, MachineConfig(memory_mib=32, cmdline=UNITS_CMDLINE,
                                            serial=str(directory / f"console{count}-{i}.txt")),
                       name=f"bench{i}").name
            for i in range(count)
        ]
        for name in names:
            vm = host.wait(name, timeout=600)
            if vm.status != 0:
                raise BenchFailure(f"cpubench on a unit ended with status {vm.status}")
        return time.perf_counter() - start
    finally:
        host.shutdown()


def run_units(console: Console, runs: int = 3) -> list[Row]:
    """Two cpubench VMs on two processing units against one alone (target <= 1.3x)."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        one = min(_units_wall(1, directory) for _ in range(runs))
        two = min(_units_wall(2, directory) for _ in range(runs))
    ratio = two / one
    console.print(f"units: one cpubench VM {one:.3f} s, two on two units {two:.3f} s: {ratio:.3f}x")
    return [Row("units", "two VMs on two units / one alone (wall)", ratio, "x",
                target="<= 1.3x", passed=ratio <= 1.3, note=f"{two:.2f} s vs {one:.2f} s")]
