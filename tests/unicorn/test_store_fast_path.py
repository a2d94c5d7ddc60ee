"""The patched Unicorn (vmm/native/patched_unicorn.py): stores take the fast path, and
self-modifying code is still caught.

The patch lets a store to a page without translated code clear the page's "not dirty"
TLB mark, so later stores skip the slow path. The danger is a TLB entry left on the fast
path when code is later translated from its page: a store through it would then leave a
stale translation running. These guests translate code from a page they wrote before,
then change the code, through the same virtual address and through another one that
maps the same physical page, and check that the new code runs.
"""

from __future__ import annotations

import struct
from pathlib import Path

from unicorn import UC_ARCH_X86, UC_MODE_32, Uc
from unicorn import x86_const as X

from tests.unicorn.asm import assemble
from tests.unicorn.bare import setup_flat
from tests.unicorn.test_unicorn_behaviour import CODE, PAGE_TABLE, PAGING_ON, identity_paging
from vmm.native import patched_unicorn

ROUTINE = 0x5000  # code the guest writes: mov eax, imm32; ret
ALIAS = 0x6000  # with paging on, a second virtual page over ROUTINE's physical page

WRITE_ROUTINE_THEN_CHANGE_IT = """
    mov dword ptr [{data}], 0x000001b8   /* mov eax, 1 */
    mov word ptr [{data} + 4], 0xc300    /* ret */
    mov ecx, {code}
    call ecx
    mov ebx, eax
    mov byte ptr [{data} + 1], 2         /* now: mov eax, 2 */
    call ecx
    hlt
"""


def _run(source: str, paging: bool) -> tuple[int, int]:
    uc = setup_flat(Uc(UC_ARCH_X86, UC_MODE_32))
    if paging:
        identity_paging(uc)
        uc.mem_write(PAGE_TABLE + (ALIAS >> 12) * 4, struct.pack("<I", ROUTINE | 7))
        source = PAGING_ON + source
    uc.mem_write(CODE, assemble(source, CODE).code)
    uc.emu_start(CODE, 0)
    return uc.reg_read(X.UC_X86_REG_EBX), uc.reg_read(X.UC_X86_REG_EAX)


def test_the_installed_libunicorn_is_the_patched_build_and_is_the_one_loaded():
    assert patched_unicorn.is_installed(), "run `make` (python -m vmm.native.patched_unicorn)"
    loaded = {Path(line.split()[-1]).resolve() for line in Path("/proc/self/maps").read_text().splitlines()
              if line.rstrip().endswith("libunicorn.so.2")}
    assert loaded == {patched_unicorn.installed_library().resolve()}


def test_code_written_by_stores_then_changed_by_a_store_runs_the_new_code():
    assert _run(WRITE_ROUTINE_THEN_CHANGE_IT.format(data=ROUTINE, code=ROUTINE), paging=False) == (1, 2)


def test_code_changed_through_another_virtual_address_of_its_page_runs_the_new_code():
    """The alias's TLB entry was on the fast path before the code was translated: the
    translation must put it back on the slow path (QEMU's tlb_protect_code)."""
    assert _run(WRITE_ROUTINE_THEN_CHANGE_IT.format(data=ALIAS, code=ROUTINE), paging=True) == (1, 2)
