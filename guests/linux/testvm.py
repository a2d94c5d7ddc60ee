"""The Linux test machine: Debian's kernel, an initramfs of our own whose /init
(init.sh) checks a SCSI disk and the network, a disk with known contents, and the
command line that tells /init what to expect.

The same pieces boot on our monitor (the disk in a RAID 5 pool, the NIC on a switch
whose uplink reaches :mod:`guests.linux.peer`) and on QEMU (a raw copy of the disk, the
NIC straight on the peer); tests/linux and benchmarks/linux.py put them together.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from devices.net.switch import socket_paths
from guests.linux.debian import DebianLinux
from guests.linux.initramfs import build_initramfs
from guests.linux.modules import ModuleTree
from guests.linux.peer import PEER_IP, Peer
from guests.reference import COMMON_FLAGS
from storage.fs import FileSystem
from storage.fsfile import FSDirectory
from storage.pool import Pool
from storage.vdisk import VirtualDisk
from storage.volume import VolumeManager
from vmm.netbackend import free_udp_port

REPO = Path(__file__).resolve().parents[2]

INIT_SCRIPT = Path(__file__).with_name("init.sh")
# What /init loads: the SCSI host adapter, the SCSI disk, and the driver of the NIC the
# machine has (ne: the ISA NE2000; ne2k-pci: the RTL8029). Their dependencies come from
# the modules' own .modinfo.
WANTED_MODULES = ["sym53c8xx", "sd_mod", "ne", "ne2k-pci"]
# --nic model of our monitor, QEMU's -device, and what /init is told (vmm.nic=...)
NICS = {
    "isa": ("ne2000", "ne2k_isa,iobase=0x300,irq=9"),
    "pci": ("rtl8029", "ne2k_pci"),
}
GUEST_IP = "10.0.2.15"
MEMORY_MIB = 128
# No ACPI, APIC or MP table on our machine; the same switches keep QEMU's boot alike.
# panic=-1 turns a kernel panic into a reboot, which ends the VM on both.
BASE_APPEND = "console=ttyS0 panic=-1 nokaslr acpi=off noapic nolapic nosmp pci=conf1 cryptomgr.notests"
# The guest's write, as init.sh makes it: `yes TEXT | head -c 65536`.
WRITTEN_TEXT = b"written by Linux through sym53c8xx\n"
WRITTEN_BYTES = 65536


@dataclass(frozen=True)
class DiskLayout:
    """The test disk: its size, the known prefix /init checks, where /init writes."""

    sectors: int = 32 << 11  # 32 MiB of 512-byte sectors
    known_bytes: int = 4 << 20
    write_at: int = 8 << 20

    @property
    def size(self) -> int:
        return self.sectors * 512


def known_contents(length: int) -> bytes:
    """Every little-endian word at byte offset X holds X * 2654435761 (mod 2**32):
    no two sectors alike, so a misplaced sector changes the checksum."""
    offsets = np.arange(0, length, 4, dtype=np.uint64)
    return ((offsets * 2654435761) & 0xFFFFFFFF).astype("<u4").tobytes()


def guest_write() -> bytes:
    """The 64 KiB /init writes at ``DiskLayout.write_at``."""
    copies = WRITTEN_BYTES // len(WRITTEN_TEXT) + 1
    return (WRITTEN_TEXT * copies)[:WRITTEN_BYTES]


def disk_image(layout: DiskLayout) -> bytes:
    """The whole disk before the guest runs: the known prefix, zeros after it."""
    return known_contents(layout.known_bytes).ljust(layout.size, b"\0")


def append(layout: DiskLayout, nic: str = "isa", extra: str = "") -> str:
    """The kernel command line: the base switches and what /init checks against."""
    known_md5 = hashlib.md5(known_contents(layout.known_bytes)).hexdigest()
    parameters = (
        f"vmm.disk_sectors={layout.sectors} vmm.known_bytes={layout.known_bytes} "
        f"vmm.known_md5={known_md5} vmm.write_at={layout.write_at} "
        f"vmm.ip={GUEST_IP} vmm.peer={PEER_IP} vmm.nic={nic}"
    )
    return " ".join(part for part in (BASE_APPEND, parameters, extra) if part)


def initramfs(debian: DebianLinux, directory: Path) -> Path:
    """Build (once per set of inputs) the initramfs in ``directory``; returns its path.

    The name carries a digest of the kernel release, busybox, the modules, init.sh and
    the writer's own code, so a changed input makes a new image and an unchanged one is
    reused.
    """
    modules = ModuleTree(debian.modules_dir).load_order(WANTED_MODULES)
    init = INIT_SCRIPT.read_text()
    digest = hashlib.sha256()
    digest.update(json.dumps([debian.kernel_release, [m.name for m in modules]]).encode())
    digest.update(debian.busybox.read_bytes())
    digest.update(init.encode())
    digest.update(Path(sys.modules[build_initramfs.__module__].__file__).read_bytes())
    for module in modules:
        digest.update(module.path.read_bytes())
    path = Path(directory) / f"initramfs-{digest.hexdigest()[:16]}.cpio.gz"
    if not path.exists():
        partial = path.with_suffix(".partial")
        build_initramfs(partial, debian.busybox, [m.path for m in modules], init)
        partial.rename(path)
    return path


def verdict_lines(output: str) -> list[str]:
    """The lines /init printed about its checks, in order."""
    return [line.strip() for line in output.splitlines() if line.strip().startswith("verdict:")]


# -- the disk in a pool, the network with its peer --------------------------------------
POOL_DEVICES = 4
POOL_DEVICE_BYTES = 24 << 20
DISK_PATH = "/linux.dsk"


def make_pool(directory: Path, layout: DiskLayout) -> None:
    """Four host files, a RAID 5 volume, a file system, and ``DISK_PATH`` in it holding
    :func:`disk_image`."""
    manager = VolumeManager(Pool.create(directory, POOL_DEVICES, POOL_DEVICE_BYTES))
    try:
        # Each member keeps some room for labels and logs: 20 of its 24 MiB hold data.
        manager.create_volume("r5", (POOL_DEVICES - 1) * (20 << 20), "raid5", members=POOL_DEVICES)
        fs = FileSystem.mkfs(manager, ["r5"])
        try:
            disk = VirtualDisk.create_in(FSDirectory(fs, "/"), DISK_PATH.lstrip("/"), layout.sectors)
            disk.write(0, disk_image(layout))
            disk.close()
        finally:
            fs.close()
    finally:
        manager.close()


@contextlib.contextmanager
def switch_with_peer(name: str) -> Iterator[Peer]:
    """Run ``vmm switch NAME`` (in $VMM_SWITCH_DIR) with its UDP uplink on a
    :class:`Peer`; VMs join with ``--nic switch:NAME``. Yields the peer."""
    switch_port, peer_port = free_udp_port(), free_udp_port()
    peer = Peer(("127.0.0.1", peer_port), ("127.0.0.1", switch_port)).start()
    switch = subprocess.Popen(
        [sys.executable, "-m", "vmm", "switch", name,
         "--uplink", f"udp:127.0.0.1:{switch_port}:127.0.0.1:{peer_port}"],
        cwd=REPO, stdin=subprocess.DEVNULL, env=dict(os.environ),
    )
    try:
        data, _ = socket_paths(name)
        deadline = time.monotonic() + 20
        while not data.exists():
            if switch.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the switch {name} did not start")
            time.sleep(0.05)
        yield peer
    finally:
        switch.terminate()
        try:
            switch.wait(timeout=10)
        except subprocess.TimeoutExpired:
            switch.kill()
            switch.wait()
        finally:
            peer.close()


# -- the two machines ---------------------------------------------------------------------
def vmm_command(linux: DebianLinux, initramfs: Path, layout: DiskLayout, pool: Path, switch: str,
                max_seconds: float, *extra: str, nic: str = "isa", append_extra: str = "") -> list[str]:
    """``vmm run`` of the test machine: the disk in ``pool``, the NIC (``isa`` or
    ``pci``) on ``switch``; ``append_extra`` goes on the kernel command line."""
    model, _ = NICS[nic]
    return [
        sys.executable, "-m", "vmm", "run", str(linux.vmlinuz), "--initrd", str(initramfs),
        "--append", append(layout, nic, append_extra), "--memory", str(MEMORY_MIB),
        "--disk", f"pool:{DISK_PATH}", "--pool", str(pool), "--nic", f"switch:{switch},model={model}",
        "--max-seconds", str(max_seconds), *extra,
    ]


def qemu_command(qemu: str, linux: DebianLinux, initramfs: Path, layout: DiskLayout, disk: Path,
                 local_port: int, peer_port: int, nic: str = "isa") -> list[str]:
    """The same machine on QEMU: the LSI with a raw copy of the disk, the NE2000 (``isa``
    or ``pci``) on a datagram netdev whose other end is a :class:`Peer` at ``peer_port``."""
    _, device = NICS[nic]
    return [
        qemu, "-kernel", str(linux.vmlinuz), "-initrd", str(initramfs), "-append", append(layout, nic),
        "-m", str(MEMORY_MIB), "-machine", "acpi=off", *COMMON_FLAGS,
        "-device", "lsi53c895a,id=scsi0", "-drive", f"file={disk},if=none,id=d0,format=raw",
        "-device", "scsi-hd,drive=d0,bus=scsi0.0,scsi-id=0",
        "-device", f"{device},netdev=n0",
        "-netdev", "dgram,id=n0,local.type=inet,local.host=127.0.0.1,"
        f"local.port={local_port},remote.type=inet,remote.host=127.0.0.1,remote.port={peer_port}",
    ]
