"""``make run``: the demo machine. A storage pool of four host files with a RAID 5
volume, a file system on it, and in it the virtual disk ``/demo.dsk`` holding the
pattern the `scsi` guest checks (guests/README.md); then the guest boots with that disk
and reads and writes it through the LSI 53C895A.

``python -m vmm.demo [--pool DIR]`` sets the pool up (once) and runs the guest.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from storage.fs import FileSystem
from storage.fsfile import FSDirectory
from storage.pool import Pool
from storage.vdisk import VirtualDisk
from storage.volume import VolumeManager

DEVICES = 4
DEVICE_BYTES = 16 << 20
DISK_BYTES = 8 << 20
DISK_NAME = "demo.dsk"
GUEST = Path(__file__).resolve().parent.parent / "guests" / "build" / "scsi.elf"


def pattern() -> bytes:
    """Every little-endian word at byte offset X holds X ^ 0x5A5A5A5A."""
    offsets = np.arange(0, DISK_BYTES, 4, dtype=np.uint32)
    return (offsets ^ np.uint32(0x5A5A5A5A)).astype("<u4").tobytes()


def make_pool(directory: Path) -> None:
    """Four devices, one RAID 5 volume, a file system, and the demo disk in it."""
    print(f"demo: creating a pool of {DEVICES} devices in {directory}/ with a RAID 5 volume", file=sys.stderr)
    manager = VolumeManager(Pool.create(directory, DEVICES, DEVICE_BYTES))
    try:
        manager.create_volume("r5", (DEVICE_BYTES - (4 << 20)) * (DEVICES - 1), "raid5", members=DEVICES)
        fs = FileSystem.mkfs(manager, ["r5"])
        try:
            disk = VirtualDisk.create_in(FSDirectory(fs, "/"), DISK_NAME, DISK_BYTES // 512)
            disk.write(0, pattern())
            disk.flush()
            disk.close()
        finally:
            fs.close()
    finally:
        manager.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vmm.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--pool", default=os.environ.get("VMM_POOL") or "pool")
    args = parser.parse_args(argv)
    directory = Path(args.pool)
    if not directory.exists() or not any(directory.iterdir()):
        make_pool(directory)
    from vmm.cli import main as vmm

    print(f"demo: booting {GUEST.name} with pool:/{DISK_NAME} (RAID 5 in {directory}/)", file=sys.stderr)
    return vmm(["run", str(GUEST), "--memory", "64", "--disk", f"pool:/{DISK_NAME}",
                "--pool", str(directory), "--max-seconds", "120"])


if __name__ == "__main__":
    sys.exit(main())
