"""Guest RAM (vmm/memory.py): the DMA interface devices use, and code invalidation."""

from __future__ import annotations

import re

import pytest
from unicorn import UC_ARCH_X86, UC_MODE_32, Uc
from unicorn import x86_const as X

from devices.base import DmaError
from tests.unicorn.asm import assemble
from tests.unicorn.bare import setup_flat
from vmm.memory import GuestMemory

MIB = 1024 * 1024


@pytest.fixture
def memory():
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    mem = GuestMemory(uc, 2 * MIB)
    yield mem
    mem.close()


def test_dma_write_then_read_round_trips_the_bytes(memory):
    data = bytes(range(256)) * 20
    memory.write(0x12345, data)
    assert memory.read(0x12345, len(data)) == data


def test_dma_write_is_visible_to_the_cpu_at_the_same_guest_physical_address(memory):
    memory.write(0x8000, b"\x78\x56\x34\x12")
    assert memory._uc.mem_read(0x8000, 4) == b"\x78\x56\x34\x12"
    memory._uc.mem_write(0x9000, b"abcd")
    assert memory.read(0x9000, 4) == b"abcd"


def test_u32_helpers_are_little_endian(memory):
    memory.write_u32(0x100, 0xA1B2C3D4)
    assert memory.read(0x100, 4) == b"\xd4\xc3\xb2\xa1"
    assert memory.read_u32(0x100) == 0xA1B2C3D4


def test_untouched_ram_reads_as_zero(memory):
    assert memory.read(2 * MIB - 16, 16) == bytes(16)
    assert memory.read(0x1000, 4096) == bytes(4096)


def test_last_byte_of_ram_is_reachable(memory):
    memory.write(2 * MIB - 1, b"\x99")
    assert memory.read(2 * MIB - 1, 1) == b"\x99"


@pytest.mark.parametrize(
    "gpa,length,named",
    [
        (2 * MIB, 4, "0x200000+0x4"),
        (2 * MIB - 2, 4, "0x1ffffe+0x4"),
        (0xFEC00000, 0x100, "0xfec00000+0x100"),
    ],
    ids=["just-past-the-end", "straddling-the-end", "far-above"],
)
def test_dma_outside_ram_raises_dma_error_naming_the_range(memory, gpa, length, named):
    with pytest.raises(DmaError, match=re.escape(named)):
        memory.read(gpa, length)
    with pytest.raises(DmaError, match=re.escape(named)) as raised:
        memory.write(gpa, bytes(length))
    assert "outside RAM" in str(raised.value)


def test_refused_dma_write_changes_nothing(memory):
    memory.write(2 * MIB - 4, b"keep")
    with pytest.raises(DmaError):
        memory.write(2 * MIB - 4, b"overwrite")
    assert memory.read(2 * MIB - 4, 4) == b"keep"


def test_ram_size_must_be_a_positive_multiple_of_4k():
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    with pytest.raises(ValueError, match="multiple of 4 KiB"):
        GuestMemory(uc, 4096 + 1)
    with pytest.raises(ValueError):
        GuestMemory(uc, 0)


def test_dma_write_over_code_that_already_ran_makes_the_cpu_run_the_new_code():
    """Unicorn keeps translated code across host writes (issue #2258); GuestMemory.write
    drops it, so a disk read into a code page is what the guest then executes."""
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    memory = GuestMemory(uc, 1 * MIB)
    setup_flat(uc, map_ram=False)
    old = assemble("mov eax, 1\nhlt\n", 0x4000)
    new = assemble("mov eax, 2\nhlt\n", 0x4000)
    memory.write(0x4000, old.code)
    uc.emu_start(0x4000, 0)
    assert uc.reg_read(X.UC_X86_REG_EAX) == 1

    memory.write(0x4000, new.code)
    uc.emu_start(0x4000, 0)
    assert uc.reg_read(X.UC_X86_REG_EAX) == 2
    memory.close()


def test_write_into_the_middle_of_a_translated_block_is_seen():
    """Invalidation covers a block that merely contains the written bytes."""
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    memory = GuestMemory(uc, 1 * MIB)
    setup_flat(uc, map_ram=False)
    code = assemble("mov eax, 1\npatch: mov ebx, 1\nmov ecx, 1\nhlt\n", 0x4000)
    memory.write(0x4000, code.code)
    uc.emu_start(0x4000, 0)
    memory.write(code["patch"] + 1, (5).to_bytes(4, "little"))  # mov ebx, 5
    uc.emu_start(0x4000, 0)
    assert uc.reg_read(X.UC_X86_REG_EBX) == 5
    memory.close()



def _map_page(memory: GuestMemory, directory: int, table: int, virtual: int, physical: int) -> None:
    """One 4 KiB mapping (present, writable, supervisor) in a two-level page table."""
    memory.write_u32(directory + (virtual >> 22) * 4, table | 0x3)
    memory.write_u32(table + ((virtual >> 12) & 0x3FF) * 4, physical | 0x3)


def test_dma_invalidation_is_by_physical_address_when_code_runs_at_another_virtual_one():
    """The CPU runs code at virtual 0x400000 that lives at physical 0x200000. A DMA write
    (by physical address) over it must drop the translation: Unicorn's own
    ctl_remove_cache would have translated 0x200000 as a virtual address instead."""
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    memory = GuestMemory(uc, 4 * MIB)
    setup_flat(uc, map_ram=False)
    directory, table_low, table_code = 0x10000, 0x11000, 0x12000
    for page in range(0, 0x100000, 0x1000):  # identity for the GDT and the stack
        _map_page(memory, directory, table_low, page, page)
    _map_page(memory, directory, table_code, 0x400000, 0x200000)
    uc.reg_write(X.UC_X86_REG_CR3, directory)
    uc.reg_write(X.UC_X86_REG_CR0, 0x80000011)
    old = assemble("mov eax, 1\nhlt\n", 0x400000)
    new = assemble("mov eax, 2\nhlt\n", 0x400000)
    memory.write(0x200000, old.code)
    uc.emu_start(0x400000, 0)
    assert uc.reg_read(X.UC_X86_REG_EAX) == 1
    cr2_before = uc.reg_read(X.UC_X86_REG_CR2)

    memory.write(0x200000, new.code)
    uc.emu_start(0x400000, 0)
    assert uc.reg_read(X.UC_X86_REG_EAX) == 2
    assert uc.reg_read(X.UC_X86_REG_CR2) == cr2_before  # no fault on the monitor's side
    memory.close()
