"""The reference machine: QEMU started the way ../shared/DESIGN.md says ("Conventions
shared with QEMU"), so that a guest booted there and on our monitor can be compared line
for line. The tests, the benchmarks and the Linux test VM all start QEMU from here.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterable

QEMU = "qemu-system-i386"
# A write of v to port 0xF4 ends QEMU with status (v << 1) | 1, as on our monitor with v.
EXIT_DEVICE = "isa-debug-exit,iobase=0xf4,iosize=0x04"
# Every reference run: COM1 on stdout, nothing on screen, no monitor, no reboot after a
# triple fault (QEMU then exits with 0), and the exit device.
COMMON_FLAGS = ("-serial", "stdio", "-display", "none", "-monitor", "none", "-no-reboot",
                "-device", EXIT_DEVICE)


def installed_qemu() -> str | None:
    """The path of ``qemu-system-i386`` on PATH, or None where QEMU is absent."""
    return shutil.which(QEMU)


def qemu_command(kernel: Path, append: str = "", memory_mib: int = 128, extra: Iterable[str] = (),
                 qemu: str = QEMU) -> list[str]:
    """The reference command line for a Multiboot ``kernel``: no NIC unless ``extra``
    adds one, SeaBIOS kept off the serial console."""
    command = [qemu, "-kernel", str(kernel), "-m", str(memory_mib), *COMMON_FLAGS,
               "-net", "none", "-fw_cfg", "name=etc/sercon-port,string=0"]
    if append:
        command += ["-append", append]
    return command + list(extra)


def qemu_status(returncode: int) -> int:
    """The value the guest wrote to the exit port, from QEMU's exit status ((v << 1) | 1),
    or -1 when QEMU ended another way (0 after a triple fault)."""
    return returncode >> 1 if returncode & 1 else -1
