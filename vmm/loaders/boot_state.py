"""What every loader hands the machine: where to start and in which CPU state."""

from __future__ import annotations

from dataclasses import dataclass


class LoaderError(Exception):
    """The file cannot be booted; the message says why (``vmm run`` exits 103)."""


@dataclass(frozen=True)
class BootState:
    entry: int
    eax: int = 0
    ebx: int = 0
    esi: int = 0
    protected: bool = True  # flat 4 GiB code/data segments, CR0.PE, paging off
    code_selector: int = 0x08  # where the boot GDT puts its flat code segment
    data_selector: int = 0x10  # and its flat data segment (Linux wants 0x10 / 0x18)
