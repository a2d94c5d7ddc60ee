"""What CPUID tells the guest: Unicorn's CPU model, less what this machine does not have.

The machine has no local APIC (only the 8259A pair), and Unicorn executes SYSENTER and
SYSCALL as no-ops (../shared/research/linux-on-unicorn.md, item 5), so CPUID must not
offer them: Linux would program an APIC that is not there and make its vDSO use
SYSENTER. The AVX/XSAVE family and x2APIC go too (state the image format does not
carry, an APIC mode that does not exist). The values are Unicorn's own, read once per
process from a scratch engine, then masked; a guest's CPUID is served from that table.
"""

from __future__ import annotations

import functools
import struct

from unicorn import UC_ARCH_X86, UC_MODE_32, UC_PROT_ALL, Uc
from unicorn import x86_const as X

LEAF1_EDX_HIDDEN = (1 << 9) | (1 << 11)  # APIC, SEP
LEAF1_ECX_HIDDEN = (1 << 21) | (1 << 24) | (1 << 26) | (1 << 27) | (1 << 28)  # x2APIC, TSC deadline, XSAVE, OSXSAVE, AVX
EXT1_EDX_HIDDEN = 1 << 11  # SYSCALL
BASIC_LEAVES = 7
EXTENDED_LEAVES = (0x80000000, 0x80000001, 0x80000002, 0x80000003, 0x80000004)


@functools.cache
def _probe(leaf: int, subleaf: int = 0) -> tuple[int, int, int, int]:
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    uc.mem_map(0, 0x2000, UC_PROT_ALL)
    uc.mem_write(0x1000, b"\x0f\xa2\xf4")  # cpuid; hlt
    uc.reg_write(X.UC_X86_REG_EAX, leaf)
    uc.reg_write(X.UC_X86_REG_ECX, subleaf)
    uc.emu_start(0x1000, 0x1003)
    return tuple(uc.reg_read(r) for r in (X.UC_X86_REG_EAX, X.UC_X86_REG_EBX, X.UC_X86_REG_ECX, X.UC_X86_REG_EDX))


@functools.cache
def cpuid_table() -> dict[int, tuple[int, int, int, int]]:
    """leaf -> (EAX, EBX, ECX, EDX) as this machine's guests see them."""
    table = {leaf: _probe(leaf) for leaf in range(BASIC_LEAVES + 1)}
    table.update({leaf: _probe(leaf) for leaf in EXTENDED_LEAVES})
    eax, ebx, ecx, edx = table[0]
    table[0] = (min(eax, BASIC_LEAVES), ebx, ecx, edx)
    eax, ebx, ecx, edx = table[1]
    table[1] = (eax, ebx & 0x0000FFFF, ecx & ~LEAF1_ECX_HIDDEN, edx & ~LEAF1_EDX_HIDDEN)  # one logical CPU, no APIC ID
    if 7 in table:
        table[7] = (0, 0, 0, 0)  # no AVX2/AVX-512/... extended features
    eax, ebx, ecx, edx = table[0x80000001]
    table[0x80000001] = (eax, ebx, ecx, edx & ~EXT1_EDX_HIDDEN)
    return table


# Leaves whose answer depends on ECX (cache parameters): asked of Unicorn per sub-leaf,
# or a guest walking the sub-leaves until "no more caches" would never finish.
SUBLEAF_LEAVES = frozenset({4})


def answer(leaf: int, subleaf: int = 0) -> tuple[int, int, int, int]:
    """CPUID for ``leaf`` (and ``subleaf`` in ECX); leaves beyond the table answer as the
    highest basic leaf, as Intel CPUs do."""
    table = cpuid_table()
    if leaf in SUBLEAF_LEAVES and leaf <= table[0][0]:
        return _probe(leaf, subleaf & 0xFF)
    if leaf in table:
        return table[leaf]
    if leaf >= 0x80000000:
        return (0, 0, 0, 0)
    return table[max(k for k in table if k < 0x80000000)]


def vendor(table: dict[int, tuple[int, int, int, int]]) -> bytes:
    _, ebx, ecx, edx = table[0]
    return struct.pack("<III", ebx, edx, ecx)
