"""The monitor's own page walk (vmm/paging.py): 32-bit two-level tables, no PAE.

Interrupt delivery reads the IDT/GDT/TSS and pushes frames through this walk, so it must
translate and refuse exactly as the CPU does: same physical address, same #PF error
code (P = protection, W = write, U = user), same accessed and dirty bits.
"""

from __future__ import annotations

import pytest
from unicorn import UC_ARCH_X86, UC_MODE_32, Uc

from vmm.memory import GuestMemory
from vmm.paging import PDE_PS, PF_P, PF_U, PF_W, PTE_A, PTE_D, PTE_P, PTE_U, PTE_W, Mmu, PageFault

MIB = 1024 * 1024
CR0_PE, CR0_WP, CR0_PG = 1, 1 << 16, 1 << 31
CR4_PSE = 1 << 4
PAGE_DIRECTORY = 0x10000
PAGE_TABLE = 0x11000
PRESENT_RW_USER = PTE_P | PTE_W | PTE_U


class Tables:
    """Guest RAM, page tables in it, and control registers the test sets."""

    def __init__(self) -> None:
        self.memory = GuestMemory(Uc(UC_ARCH_X86, UC_MODE_32), 16 * MIB)
        self.cr0 = CR0_PE | CR0_PG
        self.cr3 = PAGE_DIRECTORY
        self.cr4 = 0
        self.mmu = Mmu(self.memory, lambda: (self.cr0, self.cr3, self.cr4))

    def pde(self, index: int, value: int | None = None) -> int:
        address = PAGE_DIRECTORY + 4 * index
        if value is not None:
            self.memory.write_u32(address, value)
        return self.memory.read_u32(address)

    def pte(self, index: int, value: int | None = None) -> int:
        address = PAGE_TABLE + 4 * index
        if value is not None:
            self.memory.write_u32(address, value)
        return self.memory.read_u32(address)

    def map_4k(self, linear: int, physical: int, pte_flags: int = PRESENT_RW_USER,
               pde_flags: int = PRESENT_RW_USER) -> None:
        """Map one 4 KiB page; every mapping shares the one page table (linear < 4 MiB
        per directory slot is the test's responsibility)."""
        self.pde(linear >> 22, PAGE_TABLE | pde_flags)
        self.pte((linear >> 12) & 0x3FF, (physical & 0xFFFFF000) | pte_flags)


@pytest.fixture
def t():
    tables = Tables()
    yield tables
    tables.memory.close()


def fault_of(call) -> tuple[int, int]:
    with pytest.raises(PageFault) as raised:
        call()
    return raised.value.linear, raised.value.error_code


# -- translation -------------------------------------------------------------------------------

def test_without_paging_linear_is_physical(t):
    t.cr0 = CR0_PE
    assert t.mmu.translate(0xDEADBEEF) == 0xDEADBEEF


def test_4k_page_translates_through_directory_and_table(t):
    t.map_4k(0x00401000, 0x00234000)
    assert t.mmu.translate(0x00401ABC) == 0x00234ABC


def test_4m_page_translates_when_cr4_pse_is_set(t):
    t.cr4 = CR4_PSE
    t.pde(3, 0x00800000 | PDE_PS | PRESENT_RW_USER)
    assert t.mmu.translate(0x00C12345) == 0x00812345
    assert t.mmu.translate(0x00FFFFFF) == 0x00BFFFFF


def test_ps_bit_is_ignored_without_cr4_pse(t):
    t.cr4 = 0
    t.pde(0, PAGE_TABLE | PDE_PS | PRESENT_RW_USER)
    t.pte(5, 0x00345000 | PRESENT_RW_USER)
    assert t.mmu.translate(0x5678) == 0x00345678


def test_low_bits_of_cr3_are_not_part_of_the_directory_address(t):
    t.map_4k(0x1000, 0x7000)
    t.cr3 = PAGE_DIRECTORY | 0x18  # PWT, PCD
    assert t.mmu.translate(0x1004) == 0x7004


def test_read_across_a_page_boundary_stitches_two_physical_pages(t):
    t.map_4k(0x1000, 0x300000)
    t.map_4k(0x2000, 0x200000)
    t.memory.write(0x300FFE, b"ab")
    t.memory.write(0x200000, b"cd")
    assert t.mmu.read(0x1FFE, 4) == b"abcd"
    assert t.mmu.read_u32(0x1FFE) == int.from_bytes(b"abcd", "little")


def test_write_across_a_page_boundary_lands_in_both_physical_pages(t):
    t.map_4k(0x1000, 0x300000)
    t.map_4k(0x2000, 0x200000)
    t.mmu.write(0x1FFD, b"WXYZ")
    assert t.memory.read(0x300FFD, 3) == b"WXY"
    assert t.memory.read(0x200000, 1) == b"Z"


# -- faults ------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "write,user,error_code",
    [(False, False, 0), (True, False, PF_W), (False, True, PF_U), (True, True, PF_W | PF_U)],
    ids=["read", "write", "user-read", "user-write"],
)
def test_not_present_directory_entry_faults_with_p_clear(t, write, user, error_code):
    assert fault_of(lambda: t.mmu.translate(0x00812345, write, user)) == (0x00812345, error_code)


@pytest.mark.parametrize(
    "write,user,error_code",
    [(False, False, 0), (True, True, PF_W | PF_U)],
    ids=["read", "user-write"],
)
def test_not_present_table_entry_faults_with_p_clear(t, write, user, error_code):
    t.map_4k(0x3000, 0x3000, pte_flags=PTE_W | PTE_U)  # P clear
    assert fault_of(lambda: t.mmu.translate(0x3010, write, user)) == (0x3010, error_code)


def test_user_read_of_a_supervisor_page_is_a_protection_fault(t):
    t.map_4k(0x3000, 0x3000, pte_flags=PTE_P | PTE_W)
    assert fault_of(lambda: t.mmu.translate(0x3000, False, True)) == (0x3000, PF_P | PF_U)


def test_user_bit_must_be_set_at_both_levels(t):
    t.map_4k(0x3000, 0x3000, pte_flags=PRESENT_RW_USER, pde_flags=PTE_P | PTE_W)
    assert fault_of(lambda: t.mmu.translate(0x3000, False, True)) == (0x3000, PF_P | PF_U)


def test_user_write_to_a_read_only_page_is_a_protection_fault(t):
    t.map_4k(0x3000, 0x3000, pte_flags=PTE_P | PTE_U)
    assert fault_of(lambda: t.mmu.translate(0x3000, True, True)) == (0x3000, PF_P | PF_W | PF_U)


def test_read_only_directory_entry_makes_the_whole_table_read_only_for_users(t):
    t.map_4k(0x3000, 0x3000, pte_flags=PRESENT_RW_USER, pde_flags=PTE_P | PTE_U)
    assert fault_of(lambda: t.mmu.translate(0x3000, True, True)) == (0x3000, PF_P | PF_W | PF_U)


def test_supervisor_write_to_a_read_only_page_is_allowed_without_cr0_wp(t):
    t.map_4k(0x3000, 0x5000, pte_flags=PTE_P)
    t.cr0 &= ~CR0_WP
    assert t.mmu.translate(0x3004, write=True) == 0x5004


def test_supervisor_write_to_a_read_only_page_faults_with_cr0_wp(t):
    t.map_4k(0x3000, 0x5000, pte_flags=PTE_P)
    t.cr0 |= CR0_WP
    assert fault_of(lambda: t.mmu.translate(0x3004, write=True)) == (0x3004, PF_P | PF_W)


def test_4m_page_rights_come_from_the_directory_entry(t):
    t.cr4 = CR4_PSE
    t.pde(1, 0x00400000 | PDE_PS | PTE_P | PTE_U)  # read-only, user
    assert t.mmu.translate(0x00400010, False, True) == 0x00400010
    assert fault_of(lambda: t.mmu.translate(0x00400010, True, True)) == (0x00400010, PF_P | PF_W | PF_U)


def test_write_that_faults_on_its_second_page_changes_nothing(t):
    t.map_4k(0x1000, 0x300000)
    t.map_4k(0x2000, 0x200000, pte_flags=PTE_W | PTE_U)  # not present
    t.memory.write(0x300FFC, b"keep")
    assert fault_of(lambda: t.mmu.write(0x1FFC, b"12345678")) == (0x2000, PF_W)
    assert t.memory.read(0x300FFC, 4) == b"keep"


def test_user_flag_of_a_read_is_passed_through_mmu_read(t):
    t.map_4k(0x3000, 0x3000, pte_flags=PTE_P | PTE_W)
    assert t.mmu.read(0x3000, 4) == bytes(4)
    assert fault_of(lambda: t.mmu.read(0x3000, 4, user=True)) == (0x3000, PF_P | PF_U)


# -- accessed and dirty ----------------------------------------------------------------------------

def test_read_sets_accessed_on_both_levels_and_not_dirty(t):
    t.map_4k(0x3000, 0x5000)
    t.mmu.translate(0x3000)
    assert t.pde(0) & PTE_A
    assert t.pte(3) & (PTE_A | PTE_D) == PTE_A


def test_write_sets_dirty_on_the_table_entry_only(t):
    t.map_4k(0x3000, 0x5000)
    t.mmu.translate(0x3000, write=True)
    assert t.pte(3) & (PTE_A | PTE_D) == PTE_A | PTE_D
    assert t.pde(0) & (PTE_A | PTE_D) == PTE_A


def test_write_to_a_4m_page_sets_accessed_and_dirty_in_the_directory_entry(t):
    t.cr4 = CR4_PSE
    t.pde(2, 0x00800000 | PDE_PS | PRESENT_RW_USER)
    t.mmu.translate(0x00800000, write=True)
    assert t.pde(2) & (PTE_A | PTE_D) == PTE_A | PTE_D


def test_faulting_access_sets_no_accessed_bits(t):
    t.map_4k(0x3000, 0x5000, pte_flags=PTE_P | PTE_U)
    fault_of(lambda: t.mmu.translate(0x3000, True, True))
    assert not t.pde(0) & PTE_A
    assert not t.pte(3) & PTE_A


def test_accessed_and_dirty_bits_keep_the_rest_of_the_entry(t):
    t.map_4k(0x3000, 0x5000, pte_flags=PRESENT_RW_USER | 0xE00)  # available bits set
    t.mmu.translate(0x3000, write=True)
    assert t.pte(3) == 0x5000 | PRESENT_RW_USER | 0xE00 | PTE_A | PTE_D
