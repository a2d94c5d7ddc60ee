"""The SCSI path: the ``scsibench`` guest through the LSI 53C895A, ours next to QEMU's.

Targets (issue 4, "How it must be checked"):

* our guest-visible sequential read and write throughput at least equal to QEMU's
  ``lsi53c895a`` on the same guest over the same image (a copy of it);
* for 64 KiB commands through a redo overlay on a RAID 5 volume, at least 25% of the raw
  host file's sequential throughput measured in the same run.

``scsibench mib=N write=0|1`` moves N MiB in 64 KiB READ(10)s or WRITE(10)s from LBA 0
up, polling ISTAT (guests/README.md); ``mib=0`` does the set-up only (probe, reset, unit
attention, capacity). Guest-visible throughput is N MiB / (time of the run - time of the
``mib=0`` run), so boot and set-up drop out. MB/s are 10^6 bytes per second.

Five things are measured in the same run, every variant once per round, best of
``runs`` rounds:

* ours, raw image: :class:`vmm.machine.Machine` in this process with ``--disk IMG``
  (the image is the ``.dsk`` base, written in place); only ``machine.run()`` is timed;
* QEMU (qemu-system-i386, TCG) with ``-device lsi53c895a -device scsi-hd`` over a copy
  of the same image (``format=raw``, QEMU's default writeback cache); process wall time;
* ours, ``--disk pool:/vms/bench --redo``: the same disk contents as a virtual disk in
  the file system of a pool of four host files holding one RAID 5 volume (set up through
  the storage API); each run's writes land in a fresh overlay, reverted after the run,
  outside the timing;
* the storage stack alone, no guest: the same 64 KiB ``VirtualDisk`` reads and writes the
  SCSI disk makes, on the same pool disk through a fresh overlay, to tell the monitor's
  share from the storage stack's;
* the raw host file: ``os.pread``/``os.pwrite`` of 64 KiB chunks over as many bytes as
  the guest moves on our monitor, from the page cache (the footing the stack's own
  files are on: no guest command here asks for a flush), and past it: writes timed
  with their ``fsync``, reads after ``posix_fadvise(DONTNEED)`` dropped the file's pages.

Nothing flushes inside a timed guest run: ``scsibench`` sends no SYNCHRONIZE CACHE, our
monitor flushes its disks when it closes them, QEMU not at all. One more run per
configuration and round wraps the controller's methods to split the cost of a 64 KiB command
into its parts (guest and exits, SCRIPTS fetches, data DMA, storage, the rest of the
SCRIPTS interpreter).
"""

from __future__ import annotations

import gc
import io
import os
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from rich.console import Console
from rich.table import Table

from benchmarks import BenchFailure, Row, Sample, Stopwatch, load_average, round_robin
from guests.reference import installed_qemu, qemu_command, qemu_status

AREA = "scsi"
ROOT = Path(__file__).resolve().parents[1]
SCSIBENCH = ROOT / "guests" / "build" / "scsibench.elf"
MEMORY_MIB = 64
MiB = 1 << 20
CHUNK = 64 << 10  # one scsibench command
BLOCK = 512

# Sized for about 2 s per run on our monitor (about 50-70 MB/s here) and 1-1.5 s on QEMU
# (500-800 MB/s here; its start-up alone takes 0.1-0.3 s). OURS_MIB stays within the disk,
# so an overlay never sees the same cluster twice in one run.
DISK_MIB = 128
OURS_MIB = 96
QEMU_MIB = 1024
BREAKDOWN_MIB = 32

# Targets.
MIN_OURS_OVER_QEMU = 1.0
MIN_STACK_OVER_RAW = 0.25

POOL_DEVICES = 4
POOL_DISK = "/vms/bench"  # pool:NAME; the file is /vms/bench.dsk
RUN_TIMEOUT_S = 300
FILL_KEY = 0x5A5A5A5A  # the images start as the `scsi` guest's pattern, not scsibench's



@dataclass
class GuestRun:
    """What one scsibench run printed and how it ended."""

    monitor: str
    cmdline: str
    status: int
    serial: str
    stderr: str = ""

    def check(self) -> None:
        if self.status != 0 or "PASS scsibench" not in self.serial:
            tail = " | ".join(self.serial.strip().splitlines()[-3:])
            why = " | ".join(self.stderr.strip().splitlines()[-2:])
            raise BenchFailure(f"scsibench on {self.monitor} ({self.cmdline!r}) ended with status "
                               f"{self.status}; serial: {tail!r}" + (f"; stderr: {why!r}" if why else ""))


# -- the disks ----------------------------------------------------------------------------


def _fill_pattern() -> bytes:
    """DISK_MIB MiB in which the word at byte offset X holds X ^ FILL_KEY."""
    offsets = np.arange(0, DISK_MIB * MiB, 4, dtype=np.uint32)
    return (offsets ^ np.uint32(FILL_KEY)).astype("<u4").tobytes()


def guest_chunk() -> bytes:
    """The 64 KiB scsibench writes with write=1: word i holds i * 0x9E3779B9 (mod 2^32)."""
    words = np.arange(CHUNK // 4, dtype=np.uint32) * np.uint32(0x9E3779B9)
    return words.astype("<u4").tobytes()


class Disks:
    """The images of one benchmark run, in a temporary directory: ours and QEMU's raw
    images, the pool, and the raw host file."""

    def __init__(self, work: Path) -> None:
        from storage.fs import FileSystem
        from storage.fsfile import FSDirectory
        from storage.pool import Pool
        from storage.vdisk import VirtualDisk
        from storage.volume import VolumeManager

        self.work = work
        fill = _fill_pattern()
        self.ours = work / "ours.img"
        self.qemu = work / "qemu.img"
        self.ours.write_bytes(fill)
        shutil.copyfile(self.ours, self.qemu)
        self.pool = work / "pool"
        disk_bytes = DISK_MIB * MiB
        # Room for the base, one overlay as large as a run writes, and the metadata.
        manager = VolumeManager(Pool.create(self.pool, POOL_DEVICES, disk_bytes + 16 * MiB))
        try:
            manager.create_volume("r5", 3 * disk_bytes, "raid5", members=POOL_DEVICES)
            fs = FileSystem.mkfs(manager, ["r5"])
            try:
                parent, _, name = POOL_DISK.rpartition("/")
                fs.mkdir(parent)
                disk = VirtualDisk.create_in(FSDirectory(fs, parent), name + ".dsk", disk_bytes // BLOCK)
                step = 4 * MiB
                for offset in range(0, disk_bytes, step):
                    disk.write(offset // BLOCK, fill[offset:offset + step])
                disk.close()
            finally:
                fs.close()
        finally:
            manager.close()
        self.raw = work / "raw.img"
        self.raw.write_bytes(fill)

    @contextmanager
    def pool_disk(self) -> Iterator[Any]:
        """The pool's virtual disk, opened through the storage API (pool, file system)."""
        from storage.fs import FileSystem
        from storage.fsfile import FSDirectory
        from storage.vdisk import VirtualDisk
        from storage.volume import VolumeManager

        manager = VolumeManager.open(self.pool)
        try:
            fs = FileSystem.mount(manager)
            try:
                parent, _, name = POOL_DISK.rpartition("/")
                disk = VirtualDisk.open_in(FSDirectory(fs, parent), name + ".dsk")
                try:
                    yield disk
                finally:
                    disk.close()
            finally:
                fs.close()
        finally:
            manager.close()

    def pool_chain(self, revert: bool, check_written: bool) -> list[str]:
        """The pool disk's chain; optionally check the overlay holds the guest's chunks,
        then revert it. BenchFailure unless exactly one overlay is there."""
        with self.pool_disk() as disk:
            chain = disk.chain()
            if len(chain) != 2:
                raise BenchFailure(f"pool disk: expected the base and one redo overlay, found {chain}")
            if check_written:
                chunk = guest_chunk()
                for lba in (0, (OURS_MIB * MiB - CHUNK) // BLOCK):
                    if disk.read(lba, CHUNK // BLOCK) != chunk:
                        raise BenchFailure(f"pool disk: LBA {lba} does not hold the written chunks")
            if revert:
                disk.revert()
        return chain


# -- the ways to run the guest ----------------------------------------------------------


def _machine(cmdline: str, disk: str, pool: Path | None = None) -> tuple[Any, io.BytesIO]:
    """A loaded machine with scsibench and one disk, and its serial output."""
    from vmm.machine import Machine, MachineConfig

    gc.collect()  # the previous machine's RAM goes now, not during this run
    config = MachineConfig(memory_mib=MEMORY_MIB, cmdline=cmdline, disks=[disk],
                           pool=str(pool) if pool else None, redo=pool is not None)
    serial = io.BytesIO()
    machine = Machine(config, serial_out=serial)
    machine.load(SCSIBENCH)
    return machine, serial


def run_ours(cmdline: str, disk: str, pool: Path | None = None, label: str = "our monitor") -> Sample:
    """Our monitor in this process; the time of ``machine.run()`` only."""
    machine, serial = _machine(cmdline, disk, pool)
    try:
        watch = Stopwatch()
        result = machine.run(max_seconds=RUN_TIMEOUT_S)
        sample = watch.stop(None)
        sample.result = GuestRun(label, cmdline, result.status, serial.getvalue().decode(errors="replace"),
                                 result.reason or "")
    finally:
        machine.close()
    return sample


def run_pool(disks: Disks, cmdline: str, check_written: bool) -> Sample:
    """Ours on the pool disk with --redo; the overlay is reverted after the run."""
    sample = run_ours(cmdline, f"pool:{POOL_DISK}", disks.pool, "our monitor, pool + redo")
    sample.result.check()
    disks.pool_chain(revert=True, check_written=check_written)
    return sample


def run_qemu(cmdline: str, image: Path) -> Sample:
    """QEMU TCG, the whole process (the caller subtracts the mib=0 run)."""
    command = qemu_command(SCSIBENCH, cmdline, MEMORY_MIB, [
        "-device", "lsi53c895a,id=scsi0",
        "-drive", f"file={image},if=none,id=d0,format=raw",
        "-device", "scsi-hd,drive=d0,bus=scsi0.0,scsi-id=0",
    ])
    watch = Stopwatch()
    try:
        done = subprocess.run(command, capture_output=True, timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise BenchFailure(f"QEMU ({cmdline!r}) did not finish in {RUN_TIMEOUT_S} s") from None
    return watch.stop(GuestRun("QEMU", cmdline, qemu_status(done.returncode),
                               done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")))


def run_stack(disks: Disks, write: bool) -> Sample:
    """The storage stack alone, no guest: 64 KiB VirtualDisk.read/write over OURS_MIB MiB
    of the pool disk through a fresh redo overlay (reverted afterwards), as the SCSI disk
    would call them."""
    chunk, blocks = guest_chunk(), CHUNK // BLOCK
    with disks.pool_disk() as disk:
        disk.snapshot()
        gc.collect()
        watch = Stopwatch()
        for lba in range(0, OURS_MIB * MiB // BLOCK, blocks):
            if write:
                disk.write(lba, chunk)
            elif len(disk.read(lba, blocks)) != CHUNK:
                raise BenchFailure(f"pool disk: short read at LBA {lba}")
        sample = watch.stop(None)
    disks.pool_chain(revert=True, check_written=write)
    return sample


def run_host(path: Path, write: bool, cached: bool) -> Sample:
    """64 KiB os.pread/os.pwrite over OURS_MIB MiB of the raw host file, from LBA 0 up.

    Cached: the file's pages stay in the page cache (writes are not flushed).
    Uncached: writes are timed together with their fsync; reads start after the file
    was synced and its pages dropped (posix_fadvise DONTNEED).
    """
    total = OURS_MIB * MiB
    chunk = guest_chunk()
    fd = os.open(path, os.O_RDWR)
    try:
        if not write:
            if cached:
                for offset in range(0, total, CHUNK):  # make sure it is all in the cache
                    os.pread(fd, CHUNK, offset)
            else:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        gc.collect()
        watch = Stopwatch()
        if write:
            for offset in range(0, total, CHUNK):
                if os.pwrite(fd, chunk, offset) != CHUNK:
                    raise BenchFailure(f"{path}: short write at {offset}")
            if not cached:
                os.fsync(fd)
        else:
            for offset in range(0, total, CHUNK):
                if len(os.pread(fd, CHUNK, offset)) != CHUNK:
                    raise BenchFailure(f"{path}: short read at {offset}")
        return watch.stop(None)
    finally:
        os.close(fd)


# -- where a command's time goes ----------------------------------------------------------


@dataclass
class Breakdown:
    """Seconds spent in each part over one run of ``commands`` 64 KiB commands."""

    label: str
    commands: int
    total: float
    scripts: float = 0.0  # inside the SCRIPTS engine, everything it triggers included
    fetch: float = 0.0  # bus reads/writes under 512 bytes: instructions, tables, status
    fetches: int = 0
    dma: float = 0.0  # bus reads/writes of data: the DMA copy to or from guest RAM
    storage: float = 0.0  # the virtual disk's read/write (overlay, file system, RAID)
    exits: dict[str, int] = field(default_factory=dict)
    instructions: int = 0
    timed: float = 0.0  # seconds per command in the timed (unwrapped) runs

    def per_command_us(self, seconds: float) -> float:
        return seconds / self.commands * 1e6


class _Meter:
    """Time spent in wrapped calls, kept lean: a wrapped call costs about a microsecond
    more, which the breakdown's whole-command figure includes."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def add(self, key: str, seconds: float) -> None:
        self.seconds[key] = self.seconds.get(key, 0.0) + seconds
        self.calls[key] = self.calls.get(key, 0) + 1

    def plain(self, key: str, function: Callable[..., Any]) -> Callable[..., Any]:
        clock, add = time.perf_counter, self.add

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = clock()
            try:
                return function(*args, **kwargs)
            finally:
                add(key, clock() - start)
        return wrapper

    def bus(self, function: Callable[..., Any], length_of: Callable[[Any], int]) -> Callable[..., Any]:
        """A bus access: data moves (a block or more) apart from fetches, tables, status."""
        clock, add = time.perf_counter, self.add

        def wrapper(address: int, what: Any, **kwargs: Any) -> Any:
            start = clock()
            try:
                return function(address, what, **kwargs)
            finally:
                add("bus:data" if length_of(what) >= BLOCK else "bus:small", clock() - start)
        return wrapper


def breakdown(label: str, write: bool, disk: str, pool: Path | None, disks: Disks) -> Breakdown:
    """One run with the controller's and the disk's methods wrapped (not a timed run)."""
    cmdline = f"mib={BREAKDOWN_MIB} write={int(write)}"
    machine, serial = _machine(cmdline, disk, pool)
    meter = _Meter()
    lsi = machine.lsi
    backend = machine.disk_set.disks[0].disk
    lsi.scripts.run = meter.plain("scripts", lsi.scripts.run)
    lsi.bus_read = meter.bus(lsi.bus_read, int)
    lsi.bus_write = meter.bus(lsi.bus_write, len)
    backend.read = meter.plain("storage", backend.read)
    backend.write = meter.plain("storage", backend.write)
    try:
        start = time.perf_counter()
        result = machine.run(max_seconds=RUN_TIMEOUT_S)
        total = time.perf_counter() - start
        GuestRun(label, cmdline, result.status, serial.getvalue().decode(errors="replace"),
                 result.reason or "").check()
        exits = dict(machine.stats.by_reason)
        instructions = lsi.scripts.executed
    finally:
        machine.close()
    if pool is not None:
        disks.pool_chain(revert=True, check_written=False)
    seconds = meter.seconds
    return Breakdown(label, BREAKDOWN_MIB * MiB // CHUNK, total, seconds.get("scripts", 0.0),
                     seconds.get("bus:small", 0.0), meter.calls.get("bus:small", 0),
                     seconds.get("bus:data", 0.0), seconds.get("storage", 0.0), exits, instructions)


# -- the measurement -------------------------------------------------------------------------


def _best(samples: list[Sample]) -> float:
    for sample in samples:
        if isinstance(sample.result, GuestRun):
            sample.result.check()
    return min(s.wall for s in samples)


def _check_image(path: Path, mib: int, who: str) -> None:
    """The first ``mib`` MiB (all of the disk if more) hold scsibench's chunk."""
    span = min(mib, DISK_MIB) * MiB
    with open(path, "rb") as f:
        data = f.read(span)
    if data != guest_chunk() * (span // CHUNK):
        raise BenchFailure(f"{who}: {path.name} does not hold what scsibench wrote")


def _mbps(mib: int, seconds: float) -> float:
    return mib * MiB / seconds / 1e6 if seconds > 0 else float("inf")


def run(console: Console, runs: int = 3) -> list[Row]:
    """Measure the SCSI figures; print the tables; return the rows."""
    if not SCSIBENCH.exists():
        raise BenchFailure(f"{SCSIBENCH} is missing: build the guests with `make guests`")
    qemu = installed_qemu() is not None
    console.rule("[bold]scsi: the LSI 53C895A and its disks")
    console.print(f"load average before: {load_average()}")
    work = Path(tempfile.mkdtemp(prefix="vmm-bench-scsi-"))
    try:
        with console.status("scsi: making the images and the pool"):
            disks = Disks(work)
        return _measure(console, runs, disks, qemu)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        console.print(f"load average after: {load_average()}")


def _measure(console: Console, runs: int, disks: Disks, qemu: bool) -> list[Row]:
    ours_img, pool_spec = str(disks.ours), f"pool:{POOL_DISK}"
    setup, reads, writes = "mib=0 write=0", f"mib={OURS_MIB} write=0", f"mib={OURS_MIB} write=1"
    q_reads, q_writes = f"mib={QEMU_MIB} write=0", f"mib={QEMU_MIB} write=1"
    first_pool_write = [True]

    def pool_write() -> Sample:
        check, first_pool_write[0] = first_pool_write[0], False
        return run_pool(disks, writes, check_written=check)

    variants: dict[str, Callable[[], Sample]] = {
        "ours raw set-up": lambda: run_ours(setup, ours_img),
        "ours raw read": lambda: run_ours(reads, ours_img),
        "ours raw write": lambda: run_ours(writes, ours_img),
        "pool set-up": lambda: run_pool(disks, setup, check_written=False),
        "pool read": lambda: run_pool(disks, reads, check_written=False),
        "pool write": pool_write,
        "stack read": lambda: run_stack(disks, write=False),
        "stack write": lambda: run_stack(disks, write=True),
        "host read cached": lambda: run_host(disks.raw, write=False, cached=True),
        "host write cached": lambda: run_host(disks.raw, write=True, cached=True),
        "host read uncached": lambda: run_host(disks.raw, write=False, cached=False),
        "host write+fsync": lambda: run_host(disks.raw, write=True, cached=False),
    }
    if qemu:
        variants.update({
            "qemu set-up": lambda: run_qemu(setup, disks.qemu),
            "qemu read": lambda: run_qemu(q_reads, disks.qemu),
            "qemu write": lambda: run_qemu(q_writes, disks.qemu),
        })
    with console.status("") as status:
        samples = round_robin(runs, variants, lambda text: status.update(f"scsibench: {text}"))
        wrapped: dict[str, list[Breakdown]] = {}
        for round_number in range(runs):
            status.update(f"scsibench: where a command's time goes, round {round_number + 1}/{runs}")
            for label, write, disk, pool in (
                ("raw image, read", False, ours_img, None),
                ("raw image, write", True, ours_img, None),
                ("pool + redo, read", False, pool_spec, disks.pool),
                ("pool + redo, write", True, pool_spec, disks.pool),
            ):
                wrapped.setdefault(label, []).append(breakdown(label, write, disk, pool, disks))
        parts = [min(runs_of_one, key=lambda part: part.total) for runs_of_one in wrapped.values()]
    best = {name: _best(s) for name, s in samples.items()}
    commands = OURS_MIB * MiB // CHUNK
    for part, kind, what in zip(parts, ("ours raw", "ours raw", "pool", "pool"), ("read", "write") * 2):
        part.total -= best[f"{kind} set-up"]  # the set-up, as in the timed figures
        part.timed = (best[f"{kind} {what}"] - best[f"{kind} set-up"]) / commands
    _check_image(disks.ours, OURS_MIB, "our monitor")
    if qemu:
        _check_image(disks.qemu, QEMU_MIB, "QEMU")

    def net(kind: str, what: str) -> float:
        return best[f"{kind} {what}"] - best[f"{kind} set-up"]

    ours_r, ours_w = _mbps(OURS_MIB, net("ours raw", "read")), _mbps(OURS_MIB, net("ours raw", "write"))
    pool_r, pool_w = _mbps(OURS_MIB, net("pool", "read")), _mbps(OURS_MIB, net("pool", "write"))
    stack_r, stack_w = _mbps(OURS_MIB, best["stack read"]), _mbps(OURS_MIB, best["stack write"])
    host = {name: _mbps(OURS_MIB, best[f"host {name}"])
            for name in ("read cached", "write cached", "read uncached", "write+fsync")}
    qemu_r = _mbps(QEMU_MIB, net("qemu", "read")) if qemu else None
    qemu_w = _mbps(QEMU_MIB, net("qemu", "write")) if qemu else None

    table = Table(title=f"scsibench: sequential 64 KiB commands, best of {runs} rounds; "
                  "MB/s = bytes / (run - mib=0 run) / 10^6", title_justify="left")
    for column in ("run", "MiB", "set-up run", "read run", "read MB/s", "write run", "write MB/s", "note"):
        table.add_column(column, justify="left" if column in ("run", "note") else "right")
    table.add_row("ours, raw image", str(OURS_MIB), f"{best['ours raw set-up']:.3f} s",
                  f"{best['ours raw read']:.3f} s", f"{ours_r:,.1f}", f"{best['ours raw write']:.3f} s",
                  f"{ours_w:,.1f}",
                  "in this process: machine.run() only")
    if qemu:
        table.add_row("QEMU TCG lsi53c895a, same image", str(QEMU_MIB), f"{best['qemu set-up']:.3f} s",
                      f"{best['qemu read']:.3f} s", f"{qemu_r:,.1f}", f"{best['qemu write']:.3f} s",
                      f"{qemu_w:,.1f}", "whole processes")
    else:
        table.add_row("QEMU TCG", "-", "-", "-", "-", "-", "-", "qemu-system-i386 not installed: skipped")
    table.add_row("ours, pool:NAME --redo, RAID 5 of 4 files", str(OURS_MIB),
                  f"{best['pool set-up']:.3f} s", f"{best['pool read']:.3f} s", f"{pool_r:,.1f}",
                  f"{best['pool write']:.3f} s", f"{pool_w:,.1f}", "overlay reverted after each run")
    table.add_row("storage stack alone: the same pool disk + redo", str(OURS_MIB), "-",
                  f"{best['stack read']:.3f} s", f"{stack_r:,.0f}", f"{best['stack write']:.3f} s",
                  f"{stack_w:,.0f}", "64 KiB VirtualDisk calls, no guest")
    table.add_row("host file, 64 KiB pread/pwrite, cached", str(OURS_MIB), "-",
                  f"{best['host read cached']:.3f} s", f"{host['read cached']:,.0f}",
                  f"{best['host write cached']:.3f} s", f"{host['write cached']:,.0f}", "")
    table.add_row("host file, read after DONTNEED, write+fsync", str(OURS_MIB), "-",
                  f"{best['host read uncached']:.3f} s", f"{host['read uncached']:,.0f}",
                  f"{best['host write+fsync']:.3f} s", f"{host['write+fsync']:,.0f}", "")
    console.print(table)
    _print_breakdown(console, parts, runs)

    rows: list[Row] = [
        Row(AREA, "scsibench read, ours, raw image (MB/s)", ours_r, "MB/s"),
        Row(AREA, "scsibench write, ours, raw image (MB/s)", ours_w, "MB/s"),
    ]
    if qemu:
        rows += [
            Row(AREA, "scsibench read, QEMU lsi53c895a (MB/s)", qemu_r, "MB/s"),
            Row(AREA, "scsibench write, QEMU lsi53c895a (MB/s)", qemu_w, "MB/s"),
            Row(AREA, "scsibench read ours/QEMU", ours_r / qemu_r, "x", target=f">= {MIN_OURS_OVER_QEMU:.3f}x",
                passed=ours_r / qemu_r >= MIN_OURS_OVER_QEMU),
            Row(AREA, "scsibench write ours/QEMU", ours_w / qemu_w, "x", target=f">= {MIN_OURS_OVER_QEMU:.3f}x",
                passed=ours_w / qemu_w >= MIN_OURS_OVER_QEMU),
        ]
    rows += [
        Row(AREA, "scsibench read, ours, pool + redo on RAID 5 (MB/s)", pool_r, "MB/s"),
        Row(AREA, "scsibench write, ours, pool + redo on RAID 5 (MB/s)", pool_w, "MB/s"),
        Row(AREA, "storage stack alone read, pool + redo (MB/s)", stack_r, "MB/s"),
        Row(AREA, "storage stack alone write, pool + redo (MB/s)", stack_w, "MB/s"),
        Row(AREA, "raw host file read, page cache (MB/s)", host["read cached"], "MB/s"),
        Row(AREA, "raw host file write, page cache (MB/s)", host["write cached"], "MB/s"),
        Row(AREA, "raw host file read after DONTNEED (MB/s)", host["read uncached"], "MB/s"),
        Row(AREA, "raw host file write + fsync (MB/s)", host["write+fsync"], "MB/s"),
    ]
    for what, guest, alone in (("read", pool_r, stack_r), ("write", pool_w, stack_w)):
        cached = host[f"{what} cached"]
        uncached = host["read uncached" if what == "read" else "write+fsync"]
        past = "after DONTNEED" if what == "read" else "+ fsync"
        rows += [
            Row(AREA, f"guest on pool + redo, {what} / host file {what} (both cached)", guest / cached, "x",
                target=f">= {MIN_STACK_OVER_RAW:.2f}x", passed=guest / cached >= MIN_STACK_OVER_RAW),
            Row(AREA, f"guest on pool + redo, {what} / host file {what} {past}", guest / uncached, "x"),
            Row(AREA, f"storage stack alone, {what} / host file {what} (both cached)", alone / cached, "x"),
            Row(AREA, f"storage stack alone, {what} / host file {what} {past}", alone / uncached, "x"),
        ]
    return rows


def _print_breakdown(console: Console, parts: list[Breakdown], runs: int) -> None:
    table = Table(title=f"Where a 64 KiB command's time goes on our monitor (µs per command; the fastest of "
                  f"{runs} runs of mib={BREAKDOWN_MIB} with the controller's methods wrapped, the set-up run subtracted)",
                  title_justify="left")
    for column in ("run", "timed", "wrapped", "guest, exits, loop", "fetches, tables", "data DMA",
                   "storage", "rest of SCRIPTS", "SCRIPTS insns", "small bus accesses", "port exits"):
        table.add_column(column, justify="left" if column == "run" else "right")
    for part in parts:
        us = part.per_command_us
        rest = part.scripts - part.fetch - part.dma - part.storage
        table.add_row(
            part.label, f"{part.timed * 1e6:,.0f}", f"{us(part.total):,.0f}", f"{us(part.total - part.scripts):,.0f}",
            f"{us(part.fetch):,.0f}", f"{us(part.dma):,.0f}", f"{us(part.storage):,.0f}", f"{us(rest):,.0f}",
            f"{part.instructions / part.commands:.1f}", f"{part.fetches / part.commands:.1f}",
            f"{part.exits.get('port I/O', 0) / part.commands:.1f}",
        )
    console.print(table)
    console.print(
        "timed: (run - mib=0 run) / commands in the rounds above; wrapped: the same in the wrapped run. "
        "Guest, exits, loop: outside the SCRIPTS engine (guest code, the port exits that start and poll a "
        "command, the run loop). Fetches, tables: bus accesses under 512 bytes (instructions, table entries, "
        "CDB, status, messages), each through the controller's address decode. Data DMA: the 64 KiB copy "
        "to or from guest RAM. Storage: the virtual disk's read/write. Rest of SCRIPTS: the interpreter."
    )
