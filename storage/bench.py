"""Storage benchmark: the whole stack against a raw host file and qemu-img on qcow2.

Run with ``python -m storage.bench [--size 256M] [--dir DIR]``. It prints, for
sequential 1 MiB I/O and strided 4 KiB I/O at queue depth 1 (stride 64 KiB): a virtual
disk with one redo overlay, in the file system, on a RAID 5 volume of four host files;
the same work on one raw host file; ``qemu-img bench`` on a qcow2 overlay over a raw
base; and a RAID 5 member rebuild against the host's sequential file bandwidth.
Host fsync is off for the stack and the raw file alike (page-cache speeds).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from . import durability
from .cli import parse_size
from .fs import FileSystem
from .fsfile import FSDirectory
from .pool import Pool
from .vdisk import VirtualDisk
from .volume import VolumeManager

MiB = 1 << 20
STRIDE = 64 * 1024


class RawDisk:
    """The ceiling: the same block API straight on one host file."""

    def __init__(self, path: Path, size: int) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        os.ftruncate(self.fd, size)
        self.block_size = 512

    def read(self, lba: int, count: int) -> bytes:
        return os.pread(self.fd, count * 512, lba * 512)

    def write(self, lba: int, data: bytes) -> None:
        os.pwrite(self.fd, data, lba * 512)

    def flush(self) -> None:
        pass


def run_pattern(disk, size: int, kind: str, write: bool, seconds: float = 2.0) -> float:
    """MiB/s (sequential 1 MiB) or IOPS (strided 4 KiB), for about ``seconds``."""
    if kind == "seq":
        unit, step = MiB, MiB
    else:
        unit, step = 4096, STRIDE
    buf = os.urandom(unit)
    slots = size // step
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or done == 0:
        for i in range(min(256, slots)):
            lba = ((done + i) % slots) * step // 512
            if write:
                disk.write(lba, buf)
            else:
                disk.read(lba, unit // 512)
        done += min(256, slots)
        disk.flush()  # as a guest would now and then: lets the overlay reuse space
    dt = time.perf_counter() - t0
    return done * unit / MiB / dt if kind == "seq" else done / dt


def qemu_img(workdir: Path, size: int, write: bool) -> float | None:
    """IOPS of ``qemu-img bench -d 1 -s 4k -S 64k`` on a qcow2 overlay, or None."""
    exe = shutil.which("qemu-img")
    if exe is None:
        return None
    base, top = workdir / "q-base.raw", workdir / "q-top.qcow2"
    if not top.exists():
        subprocess.run([exe, "create", "-q", "-f", "raw", str(base), str(size)], check=True)
        subprocess.run([exe, "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(base),
                        str(top)], check=True)
    count = size // STRIDE
    args = [exe, "bench", "-f", "qcow2", "-d", "1", "-s", "4k", "-S", "64k", "-c", str(count),
            "-t", "writeback"] + (["-w"] if write else []) + [str(top)]
    # writeback: through the page cache, like the stack and the raw file here
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    m = re.search(r"Run completed in ([\d.]+) seconds", out)
    return count / float(m.group(1)) if m else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m storage.bench")
    ap.add_argument("--size", type=parse_size, default=parse_size("256M"), help="virtual disk size")
    ap.add_argument("--rebuild", type=parse_size, default=parse_size("256M"),
                    help="RAID 5 member size for the rebuild test (the issue asks 1G)")
    ap.add_argument("--dir", type=Path, default=None, help="scratch directory (default /tmp)")
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args(argv)
    durability.HOST_FSYNC = False
    work = Path(tempfile.mkdtemp(prefix="vmm-bench-", dir=args.dir))
    try:
        return _bench(work, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure(work: Path, size: int, seconds: float = 2.0) -> list[tuple[str, float, float, float | None, str]]:
    """(label, stack, raw file, qemu-img or None, unit) for the four I/O patterns."""
    dev_size = size * 4 // 3 + 16 * MiB  # room for the base, the overlay and its copies
    vm = VolumeManager(Pool.create(work / "pool", 4, dev_size))
    vm.create_volume("r5", dev_size * 3 - 24 * MiB, "raid5", members=4)
    fs = FileSystem.mkfs(vm, ["r5"])
    disk = VirtualDisk.create_in(FSDirectory(fs, "/"), "bench.dsk", size // 512)
    disk.write(0, bytes(MiB))  # touch the base
    disk.snapshot()
    raw = RawDisk(work / "raw.img", size)
    rows = []
    for label, kind, write in [("seq 1 MiB write", "seq", True), ("seq 1 MiB read", "seq", False),
                               ("4 KiB strided write", "4k", True),
                               ("4 KiB strided read", "4k", False)]:
        stack = run_pattern(disk, size, kind, write, seconds)
        ceiling = run_pattern(raw, size, kind, write, seconds)
        peer = qemu_img(work, size, write) if kind == "4k" else None
        rows.append((label, stack, ceiling, peer, "MiB/s" if kind == "seq" else "IOPS"))
    disk.close()
    fs.close()
    vm.close()
    return rows


def _bench(work: Path, args) -> int:
    rows = measure(work, args.size, args.seconds)
    print(f"{'':22}{'stack':>12}{'raw file':>12}{'ratio':>8}{'qemu-img':>12}{'ratio':>8}")
    for label, stack, ceiling, peer, unit in rows:
        p = f"{peer:12.0f}{stack / peer:8.2f}" if peer else f"{'-':>12}{'-':>8}"
        print(f"{label:22}{stack:12.0f}{ceiling:12.0f}{stack / ceiling:8.2f}{p}  {unit}")
    rebuild, host = measure_rebuild(work, args.rebuild)
    print(f"{'rebuild ' + str(args.rebuild // MiB) + ' MiB member':22}{rebuild:12.0f}{host:12.0f}"
          f"{rebuild / host:8.2f}  MiB/s (target >= 0.10)")
    return 0


def measure_rebuild(work: Path, member: int) -> tuple[float, float]:
    """Rebuild of one RAID 5 member of ``member`` bytes vs. host sequential bandwidth."""
    d = work / "rb"
    vm = VolumeManager(Pool.create(d, 4, member + 8 * MiB))
    vol = vm.create_volume("r", member * 3 - 3 * MiB, "raid5", members=4)
    chunk = os.urandom(4 * MiB)
    for off in range(0, vol.size - 4 * MiB, 4 * MiB):
        vol.write(off, chunk)
    vol.flush()
    victim = vol.rec.members[1].device
    vm.fail_device(victim)
    vm.replace_device(victim, d / "spare.img")
    t0 = time.perf_counter()
    vm.rebuild(step=16 * MiB)
    rebuild = member / MiB / (time.perf_counter() - t0)
    fd = os.open(d / "host-seq.img", os.O_RDWR | os.O_CREAT)
    t0 = time.perf_counter()
    for off in range(0, member, 4 * MiB):
        os.pwrite(fd, chunk, off)
    host = member / MiB / (time.perf_counter() - t0)
    os.close(fd)
    vm.close()
    return rebuild, host


if __name__ == "__main__":
    raise SystemExit(main())
