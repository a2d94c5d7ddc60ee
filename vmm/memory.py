"""Guest RAM: one host buffer mapped into Unicorn at guest-physical address 0.

The monitor owns the buffer (``mem_map_ptr``), so loaders, devices' DMA and the
interrupt-delivery code read and write it directly as a memoryview: no Unicorn call
per access. Every write that does not come from the CPU invalidates Unicorn's
translated code for the range, or Unicorn would keep running the old code (unicorn
issue #2258; pinned by tests/unicorn).

The invalidation must be by *physical* address. Unicorn's ``ctl_remove_cache`` takes a
virtual address and translates it through the guest's page tables at the current CPL
(a DMA target the guest has not mapped there is missed, and a failed translation even
sets CR2), so the monitor calls QEMU's own ``tb_invalidate_phys_range``, which the
library exports, with RAM offsets: RAM is the engine's first and only RAM block, mapped
at 0, so its RAM offsets are its guest-physical addresses.
"""

from __future__ import annotations

import ctypes
import mmap

from unicorn import UC_PROT_ALL, Uc
from unicorn.unicorn_py3.unicorn import uclib

from devices.base import DmaError

PAGE_SIZE = 4096


_invalidate_physical_range = uclib.tb_invalidate_phys_range_x86_64
_invalidate_physical_range.argtypes = (ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64)
_invalidate_physical_range.restype = None


class GuestMemory:
    """RAM of ``size`` bytes from guest-physical 0, with a DMA interface for devices."""

    def __init__(self, uc: Uc, size: int) -> None:
        if size <= 0 or size % PAGE_SIZE:
            raise ValueError(f"RAM size must be a positive multiple of 4 KiB, not {size}")
        self.size = size
        self._uc = uc
        # Anonymous mmap: zero-filled and lazily committed, so untouched RAM costs nothing.
        self._map = mmap.mmap(-1, size)
        self.view = memoryview(self._map)
        address = ctypes.addressof(ctypes.c_char.from_buffer(self._map))
        uc.mem_map_ptr(0, size, UC_PROT_ALL, address)
        self._engine = ctypes.c_void_p(uc._uch.value)

    # -- access from the monitor and devices ------------------------------------
    def check_range(self, gpa: int, length: int) -> None:
        """Refuse a range that is not entirely guest RAM."""
        if gpa < 0 or length < 0 or gpa + length > self.size:
            raise DmaError(
                f"guest-physical range {gpa:#x}+{length:#x} is outside RAM (0..{self.size:#x})"
            )

    def read(self, gpa: int, length: int) -> bytes:
        """Copy ``length`` bytes of guest RAM at ``gpa``."""
        self.check_range(gpa, length)
        return bytes(self.view[gpa : gpa + length])

    def write(self, gpa: int, data: bytes | bytearray | memoryview) -> None:
        """Store ``data`` at ``gpa`` and drop translated code that covered it."""
        length = len(data)
        self.check_range(gpa, length)
        self.view[gpa : gpa + length] = data
        self.invalidate_code(gpa, length)

    def invalidate_code(self, gpa: int, length: int) -> None:
        if length:
            _invalidate_physical_range(self._engine, gpa, gpa + length)

    def read_u32(self, gpa: int) -> int:
        self.check_range(gpa, 4)
        return int.from_bytes(self.view[gpa : gpa + 4], "little")

    def write_u32(self, gpa: int, value: int) -> None:
        self.write(gpa, (value & 0xFFFFFFFF).to_bytes(4, "little"))


    def close(self) -> None:
        self.view.release()
        self._map.close()
