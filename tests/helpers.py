"""Shared helpers: build guests, boot them on our monitor and on QEMU, compare output."""

from __future__ import annotations

import io
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from guests.reference import qemu_status
from guests.reference import installed_qemu
from guests.reference import qemu_command as reference_command
from vmm.netbackend import free_udp_port  # noqa: F401  (the tests import it from here)

REPO = Path(__file__).resolve().parent.parent
GUEST_BUILD = REPO / "guests" / "build"
QEMU = installed_qemu()
# Lines that hold platform values, not behaviour (../shared/DESIGN.md): memory sizes
# reported by firmware, QEMU's habit of putting the kernel path on the command line, PCI
# slots/BARs/IRQs, INQUIRY vendor and product strings, MAC addresses.
PLATFORM_LINE_PREFIXES = ("mem:", "cmdline:", "pci:", "inquiry:", "mac:")


@dataclass
class Boot:
    output: str
    status: int
    stderr: str = ""


def guest(name: str) -> Path:
    path = GUEST_BUILD / f"{name}.elf"
    if not path.exists():
        subprocess.run(["make", "-C", str(REPO / "guests")], check=True, capture_output=True)
    return path


def run_vmm(*args: str, timeout: float = 300) -> Boot:
    """``vmm run ARGS`` as a separate process, the way a user runs it."""
    proc = subprocess.run(
        [sys.executable, "-m", "vmm", "run", *args],
        capture_output=True, stdin=subprocess.DEVNULL, timeout=timeout, cwd=REPO,
    )
    return Boot(proc.stdout.decode(errors="replace"), proc.returncode, proc.stderr.decode(errors="replace"))


def boot_in_process(
    kernel: Path,
    cmdline: str = "",
    memory_mib: int = 128,
    deterministic: bool = True,
    max_seconds: float = 120,
    preempt_every_ns: int | None = None,
) -> tuple[Boot, object]:
    """Boot on a Machine in this process; returns the result and the machine."""
    from vmm.machine import Machine, MachineConfig

    out = io.BytesIO()
    machine = Machine(
        MachineConfig(memory_mib=memory_mib, deterministic=deterministic, cmdline=cmdline),
        serial_out=out,
    )
    machine.load(kernel)
    result = machine.run(max_seconds=max_seconds, preempt_every_ns=preempt_every_ns)
    return Boot(out.getvalue().decode(errors="replace"), result.status, result.reason), machine


def qemu_command(kernel: Path, append: str = "", memory_mib: int = 128, extra: list[str] = ()) -> list[str]:
    """The reference command line (guests/reference.py) with the QEMU found on PATH."""
    return reference_command(kernel, append, memory_mib, extra, qemu=QEMU)


def run_qemu(
    kernel: Path, append: str = "", memory_mib: int = 128, timeout: float = 300, extra: list[str] = ()
) -> Boot:
    """Boot on qemu-system-i386 (TCG); status is the guest's port-0xF4 value."""
    cmd = qemu_command(kernel, append, memory_mib, extra)
    proc = subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL, timeout=timeout)
    return Boot(proc.stdout.decode(errors="replace"), qemu_status(proc.returncode), proc.stderr.decode(errors="replace"))


def qemu_nic(local: int, remote: int, mac: str = "52:54:00:12:34:56") -> list[str]:
    """QEMU's ISA NE2000 at 0x300/IRQ 9 on a UDP datagram netdev."""
    return [
        "-device", f"ne2k_isa,iobase=0x300,irq=9,netdev=n0,mac={mac}",
        "-netdev", "dgram,id=n0,local.type=inet,local.host=127.0.0.1,"
        f"local.port={local},remote.type=inet,remote.host=127.0.0.1,remote.port={remote}",
    ]


def behaviour_lines(output: str) -> list[str]:
    """The serial output without lines that hold platform values."""
    return [line for line in output.splitlines() if not line.startswith(PLATFORM_LINE_PREFIXES)]


MULTIBOOT_HEADER = """
.text
.align 4
.long 0x1BADB002, 0x3, -(0x1BADB002 + 0x3)
.globl _start
_start:
"""


def build_kernel(directory: Path, body: str, name: str = "kernel") -> Path:
    """A Multiboot ELF from a few lines of AT&T assembly, linked at 1 MiB."""
    source = directory / f"{name}.S"
    obj = directory / f"{name}.o"
    elf = directory / f"{name}.elf"
    source.write_text(MULTIBOOT_HEADER + body + "\n")
    subprocess.run(["gcc", "-m32", "-c", "-o", str(obj), str(source)], check=True)
    subprocess.run(
        ["ld", "-m", "elf_i386", "-Ttext", "0x100000", "-e", "_start", "-o", str(elf), str(obj)],
        check=True,
    )
    return elf


def assert_plain(value) -> None:
    """Saved state holds only plain Python data (no enum members, no objects), so one
    generic walk can write it into a VM image."""
    if isinstance(value, dict):
        for key, item in value.items():
            assert type(key) is str
            assert_plain(item)
    elif isinstance(value, list):
        for item in value:
            assert_plain(item)
    else:
        assert value is None or type(value) in (int, bool, str, bytes), repr(value)
