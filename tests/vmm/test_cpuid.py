"""CPUID as the guest sees it (vmm/cpuid.py): Unicorn's model without the APIC, SYSENTER,
SYSCALL, x2APIC and the AVX/XSAVE family, which this machine does not provide."""

from __future__ import annotations

import io

from tests.helpers import build_kernel
from vmm.cpuid import answer, cpuid_table, vendor
from vmm.machine import Machine, MachineConfig

APIC, SEP, FPU, TSC, CX8, CMOV = 1 << 9, 1 << 11, 1 << 0, 1 << 4, 1 << 8, 1 << 15


def test_leaf_1_offers_what_linux_686_needs_and_no_apic_or_sysenter():
    _, _, ecx, edx = answer(1)
    assert edx & (FPU | TSC | CX8 | CMOV) == FPU | TSC | CX8 | CMOV
    assert not edx & (APIC | SEP)
    assert not ecx & ((1 << 21) | (1 << 26) | (1 << 27) | (1 << 28))


def test_family_is_at_least_5():
    eax = answer(1)[0]
    assert (eax >> 8) & 0xF >= 5


def test_no_syscall_in_the_extended_leaf_and_vendor_is_kept():
    assert not answer(0x80000001)[3] & (1 << 11)
    assert vendor(cpuid_table()) == b"GenuineIntel"


def test_a_guest_executing_cpuid_gets_the_table(tmp_path):
    kernel = build_kernel(tmp_path, """
        mov $1, %eax
        cpuid
        mov $0xf4, %dx
        mov %edx, %eax
        shr $9, %eax
        and $1, %eax            /* the APIC bit: 0 expected */
        mov %eax, %esi
        mov $1, %eax
        cpuid
        shr $11, %edx
        and $1, %edx            /* the SEP bit: 0 expected */
        or %edx, %esi
        add $40, %esi           /* exit 40 when both are clear */
        mov %esi, %eax
        mov $0xf4, %dx
        out %eax, %dx
    """)
    machine = Machine(MachineConfig(memory_mib=16), serial_out=io.BytesIO())
    machine.load(kernel)
    result = machine.run(max_seconds=30)
    assert result.status == 40
    assert machine.stats.by_reason["cpuid"] == 2


def test_cache_parameter_subleaves_end_with_a_null_cache_type():
    """Linux walks CPUID(4, i) until the cache type is 0: sub-leaves must differ."""
    types = [answer(4, i)[0] & 0x1F for i in range(16)]
    assert 0 in types
    assert types[0] != 0
