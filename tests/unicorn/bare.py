"""A bare Unicorn engine in flat 32-bit protected mode, for tests that need no Machine."""

from __future__ import annotations

import struct

from unicorn import UC_PROT_ALL, Uc
from unicorn import x86_const as X

RAM = 0x100000
STACK = 0x9000
GDT = 0x500
KERNEL_CS, KERNEL_DS, USER_CS, USER_DS = 0x08, 0x10, 0x1B, 0x23
# Null, flat ring-0 code and data, flat ring-3 code and data.
FLAT_GDT = (0, 0x00CF9A000000FFFF, 0x00CF92000000FFFF, 0x00CFFA000000FFFF, 0x00CFF2000000FFFF)


def setup_flat(uc: Uc, map_ram: bool = True) -> Uc:
    """RAM at 0 (unless the caller mapped it), a flat GDT with ring-0 and ring-3
    segments, CR0.PE, and the ring-0 segments loaded."""
    if map_ram:
        uc.mem_map(0, RAM, UC_PROT_ALL)
    gdt = b"".join(struct.pack("<Q", e) for e in FLAT_GDT)
    uc.mem_write(GDT, gdt)
    uc.reg_write(X.UC_X86_REG_GDTR, (0, GDT, len(gdt) - 1, 0))
    uc.reg_write(X.UC_X86_REG_CR0, 0x11)
    uc.reg_write(X.UC_X86_REG_CS, KERNEL_CS)
    for segment in (X.UC_X86_REG_SS, X.UC_X86_REG_DS, X.UC_X86_REG_ES):
        uc.reg_write(segment, KERNEL_DS)
    uc.reg_write(X.UC_X86_REG_ESP, STACK)
    return uc
