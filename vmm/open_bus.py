"""Physical addresses that nothing decodes: reads float to all ones, writes vanish.

Unicorn stops with an error when the guest touches an unmapped physical page. A PC
answers such an access from the open bus instead, so the first access to such a page
maps it as an MMIO page with those semantics and lets the instruction retry. Executing
from unassigned memory is not emulated: the run loop reports it.
"""

from __future__ import annotations

from typing import Callable

from unicorn import UC_HOOK_MEM_READ_UNMAPPED, UC_HOOK_MEM_WRITE_UNMAPPED, Uc

PAGE = 0x1000
ADDRESS_LIMIT = (1 << 64) - 1


class OpenBus:
    def __init__(self, uc: Uc, unmap: Callable[[int, int], None], ram_end: int) -> None:
        self._uc = uc
        self._unmap = unmap  # Cpu.unmap: keeps the guest's CR2
        self.pages: set[int] = set()
        # Bounded to the addresses above RAM: Unicorn treats any memory hook that
        # covers a RAM page as a reason to keep every store to it on the slow path.
        uc.hook_add(UC_HOOK_MEM_READ_UNMAPPED | UC_HOOK_MEM_WRITE_UNMAPPED, self._on_unmapped,
                    begin=ram_end, end=ADDRESS_LIMIT)

    def _on_unmapped(self, uc: Uc, access: int, address: int, size: int, value: int, _user) -> bool:
        first = address & ~(PAGE - 1)
        last = (address + max(size, 1) - 1) & ~(PAGE - 1)
        for page in range(first, last + PAGE, PAGE):
            if page not in self.pages and page < (1 << 32):
                uc.mmio_map(page, PAGE, _read_all_ones, None, _ignore_write, None)
                self.pages.add(page)
        return True

    def release(self, base: int, length: int) -> None:
        """Give a range back to a device (a PCI BAR placed over open-bus pages)."""
        for page in range(base & ~(PAGE - 1), base + length, PAGE):
            if page in self.pages:
                self._unmap(page, PAGE)
                self.pages.discard(page)


def _read_all_ones(uc: Uc, offset: int, size: int, _user) -> int:
    return (1 << (8 * size)) - 1


def _ignore_write(uc: Uc, offset: int, size: int, value: int, _user) -> None:
    return None
