"""Kernel loaders. Each one turns a file into guest memory contents and a BootState."""

from __future__ import annotations

from pathlib import Path

from vmm.loaders.boot_state import BootState, LoaderError
from vmm.loaders.linux import is_bzimage, load_linux
from vmm.loaders.multiboot import is_multiboot, load_multiboot
from vmm.memory import GuestMemory

__all__ = ["BootState", "LoaderError", "load_kernel"]


def load_kernel(path: Path, memory: GuestMemory, cmdline: str = "", initrds: list[Path] | None = None) -> BootState:
    """Recognise the kernel format and load it."""
    path = Path(path)
    try:
        head = path.read_bytes()[:8192]
    except OSError as exc:
        raise LoaderError(f"cannot read kernel {path}: {exc.strerror}") from None
    if is_bzimage(head):
        return load_linux(path, memory, cmdline, initrds)
    if is_multiboot(head) or head[:4] == b"\x7fELF":
        return load_multiboot(path, memory, cmdline, initrds)
    raise LoaderError(f"{path}: neither a Linux bzImage nor a Multiboot kernel (no HdrS header, "
                      "no Multiboot header in the first 8 KiB)")
