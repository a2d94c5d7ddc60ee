"""The CPU's whole architectural state as plain data (vmm/cpu_state.py): saved, loaded
into a fresh CPU, saved again: nothing lost, whatever the privilege level."""

from __future__ import annotations

import json

import pytest

from tests.helpers import assert_plain
from tests.vmm.rig import USER_CS, USER_DS, Rig
from vmm.cpu_state import load_cpu_state, save_cpu_state


def round_trip(rig: Rig) -> tuple[dict, dict, Rig]:
    saved = save_cpu_state(rig.cpu)
    fresh = Rig()
    load_cpu_state(fresh.cpu, json.loads(json.dumps(saved)))  # survives a text image too
    return saved, save_cpu_state(fresh.cpu), fresh


def test_a_ring0_state_survives_a_round_trip_into_a_fresh_cpu():
    rig = Rig()
    for name, value in {"eax": 1, "ebx": 2, "ecx": 3, "edx": 4, "esi": 5, "edi": 6, "ebp": 7}.items():
        rig.cpu.set_reg(name, value)
    rig.cpu.set_reg("cr2", 0xDEAD000)
    saved, loaded, _ = round_trip(rig)
    assert loaded == saved
    assert_plain(saved)


def test_a_ring3_state_comes_back_at_cpl3_with_its_selectors():
    rig = Rig()
    rig.enter_user(0x30000)
    saved, loaded, fresh = round_trip(rig)
    assert loaded == saved
    assert fresh.cpu.cpl == 3
    assert (fresh.reg("cs"), fresh.reg("ss"), fresh.reg("ds")) == (USER_CS, USER_DS, USER_DS)


def test_hidden_segment_caches_survive_a_descriptor_changed_after_the_load():
    """What the guest loaded stays loaded, as on a CPU, even if the GDT changed since."""
    rig = Rig()
    before = rig.cpu.segment_caches()
    _, gdt_base, _, _ = rig.cpu.table("gdtr")
    rig.memory.write(gdt_base + (before[3][0] & ~7), bytes(8))  # wipe DS's descriptor
    saved, loaded, fresh = round_trip(rig)
    assert loaded == saved
    assert fresh.cpu.segment_caches()[3] == before[3]


def test_fpu_and_sse_registers_come_back():
    rig = Rig()
    rig.cpu.uc.reg_write(__import__("unicorn").x86_const.UC_X86_REG_XMM3, 0x0123456789ABCDEF_FEDCBA9876543210)
    saved, loaded, _ = round_trip(rig)
    assert loaded["sse"]["xmm"][3] == 0x0123456789ABCDEF_FEDCBA9876543210
    assert loaded == saved


def test_a_state_of_another_version_is_refused():
    rig = Rig()
    saved = save_cpu_state(rig.cpu)
    saved["version"] = 99
    with pytest.raises(ValueError, match="version"):
        load_cpu_state(Rig().cpu, saved)
