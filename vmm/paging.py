"""Linear-to-physical translation for the monitor's own accesses to guest memory.

Delivering an interrupt reads the IDT, GDT and TSS and pushes a frame on the guest
stack: all linear addresses. The monitor walks the guest's 32-bit two-level page tables
itself (no PAE, 4 MiB pages when CR4.PSE) with the access rights of the access it makes,
and reports a fault the way the CPU would (#PF with CR2 and an error code).
"""

from __future__ import annotations

import struct

from vmm.memory import GuestMemory

PTE_P = 1 << 0
PTE_W = 1 << 1
PTE_U = 1 << 2
PTE_A = 1 << 5
PTE_D = 1 << 6
PDE_PS = 1 << 7

PF_P = 1 << 0  # the page was present: a protection violation
PF_W = 1 << 1  # the access was a write
PF_U = 1 << 2  # the access was made at CPL 3

CR0_WP = 1 << 16
CR0_PG = 1 << 31
CR4_PSE = 1 << 4


class PageFault(Exception):
    """A monitor access that the guest's page tables refuse: deliver #PF."""

    def __init__(self, linear: int, error_code: int) -> None:
        super().__init__(f"#PF at {linear:#x} (error code {error_code:#x})")
        self.linear = linear
        self.error_code = error_code


class Mmu:
    """Translates linear addresses using the current CR0/CR3/CR4."""

    def __init__(self, memory: GuestMemory, read_control) -> None:
        self.memory = memory
        self._read_control = read_control  # () -> (cr0, cr3, cr4)
        self._control: tuple[int, int, int] | None = None

    def hold_control_registers(self) -> None:
        """Read CR0/CR3/CR4 once until :meth:`release_control_registers`: between slices
        only the monitor runs, and it changes none of them."""
        self._control = self._read_control()

    def release_control_registers(self) -> None:
        self._control = None

    def translate(self, linear: int, write: bool = False, user: bool = False) -> int:
        cr0, cr3, cr4 = self._control or self._read_control()
        linear &= 0xFFFFFFFF
        if not cr0 & CR0_PG:
            return linear
        mem = self.memory
        fault_bits = (PF_W if write else 0) | (PF_U if user else 0)
        pde_addr = (cr3 & 0xFFFFF000) + ((linear >> 22) << 2)
        pde = self._entry(pde_addr)
        if not pde & PTE_P:
            raise PageFault(linear, fault_bits)
        if pde & PDE_PS and cr4 & CR4_PSE:
            rights = pde
            phys = (pde & 0xFFC00000) | (linear & 0x3FFFFF)
            entries = [(pde_addr, pde)]
        else:
            pte_addr = (pde & 0xFFFFF000) + (((linear >> 12) & 0x3FF) << 2)
            pte = self._entry(pte_addr)
            if not pte & PTE_P:
                raise PageFault(linear, fault_bits)
            rights = pde & pte
            phys = (pte & 0xFFFFF000) | (linear & 0xFFF)
            entries = [(pde_addr, pde), (pte_addr, pte)]
        if user and not rights & PTE_U:
            raise PageFault(linear, fault_bits | PF_P)
        if write and not rights & PTE_W and (user or cr0 & CR0_WP):
            raise PageFault(linear, fault_bits | PF_P)
        # Set accessed (and dirty on the last level) as the CPU's walk would.
        for i, (addr, entry) in enumerate(entries):
            flags = PTE_A | (PTE_D if write and i == len(entries) - 1 else 0)
            if entry & flags != flags and addr + 4 <= mem.size:
                mem.write_u32(addr, entry | flags)
        return phys

    def read(self, linear: int, length: int, user: bool = False) -> bytes:
        """Read as the CPU would: physical addresses outside RAM float to all ones."""
        out = bytearray()
        while length:
            chunk = min(length, 0x1000 - (linear & 0xFFF))
            out += self._physical_read(self.translate(linear, False, user), chunk)
            linear += chunk
            length -= chunk
        return bytes(out)

    def _physical_read(self, phys: int, length: int) -> bytes:
        size = self.memory.size
        if phys + length <= size:
            return self.memory.read(phys, length)
        inside = max(0, size - phys)
        return (self.memory.read(phys, inside) if inside else b"") + b"\xff" * (length - inside)

    def write(self, linear: int, data: bytes, user: bool = False) -> None:
        # Translate every page first, so a fault leaves memory untouched.
        spans = []
        offset = 0
        while offset < len(data):
            chunk = min(len(data) - offset, 0x1000 - ((linear + offset) & 0xFFF))
            spans.append((self.translate(linear + offset, True, user), offset, chunk))
            offset += chunk
        for phys, offset, chunk in spans:
            inside = max(0, min(chunk, self.memory.size - phys))
            if inside:  # beyond RAM nothing decodes the write: it is lost
                self.memory.write(phys, data[offset : offset + inside])

    def _entry(self, phys: int) -> int:
        """A page-table entry; tables outside RAM read all ones, as the bus floats."""
        return struct.unpack("<I", self._physical_read(phys, 4))[0]

    def read_u32(self, linear: int) -> int:
        return struct.unpack("<I", self.read(linear, 4))[0]
