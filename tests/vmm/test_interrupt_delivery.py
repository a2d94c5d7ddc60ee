"""Interrupt and exception delivery (vmm/interrupts.py) on hand-built GDT, IDT and TSS.

Every test sets up the CPU as a kernel would (tests/vmm/rig.py), delivers one event
through InterruptDelivery, and checks what the SDM (vol. 3, ch. 6) says the CPU does:
which handler runs, at which privilege, on which stack, with which frame.
"""

from __future__ import annotations

import pytest
from unicorn import UC_HOOK_INTR

from tests.unicorn.asm import assemble
from tests.vmm.rig import (
    CODE, CONFORMING_CS, DATA_AS_CS, GATE_INT16, GATE_TASK, GATE_TRAP32, HANDLERS, IDT,
    KERNEL_CS, KERNEL_DS, KERNEL_STACK, NOT_PRESENT_CS, USER_CS, USER_DS, USER_STACK, Rig,
)
from vmm.interrupts import DF, GP, NP, PF, TS, UD, Event, TripleFault, escalate

IF = 1 << 9
TF = 1 << 8
USER_EIP = CODE + 0x100


def handler(vector: int) -> int:
    return HANDLERS + 16 * vector


@pytest.fixture
def rig():
    return Rig()


@pytest.fixture
def user_rig():
    """A rig whose CPU runs ring-3 code at USER_EIP, IOPL 0, interrupts on."""
    r = Rig()
    r.enter_user(USER_EIP, eflags=0x202)
    return r


# -- gates and flags ---------------------------------------------------------------------------

def test_interrupt_gate_clears_if_and_jumps_to_the_handler(rig):
    rig.cpu.eflags = 0x202
    rig.cpu.eip = CODE
    rig.deliver(Event(0x30, external=True))
    assert rig.cpu.eip == handler(0x30)
    assert rig.reg("cs") == KERNEL_CS
    assert not rig.cpu.eflags & IF
    assert rig.stack(3) == [CODE, KERNEL_CS, 0x202]  # the pushed EFLAGS still has IF


def test_trap_gate_keeps_if(rig):
    rig.set_gate(0x30, kind=GATE_TRAP32)
    rig.cpu.eflags = 0x202
    rig.deliver(Event(0x30, external=True))
    assert rig.cpu.eip == handler(0x30)
    assert rig.cpu.eflags & IF


def test_delivery_clears_tf_for_both_gate_kinds(rig):
    rig.set_gate(0x31, kind=GATE_TRAP32)
    rig.cpu.eflags = 0x2 | TF
    rig.deliver(Event(0x31, external=True))
    assert not rig.cpu.eflags & TF
    assert rig.stack(3)[2] & TF


def test_same_privilege_delivery_pushes_on_the_current_stack(rig):
    rig.cpu.set_reg("esp", 0x70000)
    rig.deliver(Event(0x30, external=True))
    assert rig.reg("esp") == 0x70000 - 12
    assert rig.reg("ss") == KERNEL_DS


# -- error codes -------------------------------------------------------------------------------

def test_gp_pushes_its_error_code_below_eip(rig):
    rig.cpu.eflags = 0x2
    rig.cpu.eip = CODE + 5
    rig.deliver(Event(GP, error_code=0x1238))
    assert rig.cpu.eip == handler(GP)
    assert rig.stack(4) == [0x1238, CODE + 5, KERNEL_CS, 0x2]
    assert rig.reg("esp") == KERNEL_STACK - 16


def test_page_fault_pushes_its_error_code_and_sets_cr2(rig):
    rig.cpu.eip = CODE + 7
    rig.deliver(Event(PF, error_code=0b110, cr2=0xC0DE000))
    assert rig.cpu.eip == handler(PF)
    assert rig.stack(2) == [0b110, CODE + 7]
    assert rig.reg("cr2") == 0xC0DE000


def test_int_n_pushes_no_error_code(rig):
    rig.cpu.eip = CODE + 2  # after the `int 0x40`
    rig.set_gate(0x40, dpl=3)
    rig.deliver(Event(0x40, software=True, instruction_eip=CODE))
    assert rig.cpu.eip == handler(0x40)
    assert rig.reg("esp") == KERNEL_STACK - 12
    assert rig.stack(3) == [CODE + 2, KERNEL_CS, 0x2]


def test_sixteen_bit_interrupt_gate_pushes_a_16_bit_frame(rig):
    rig.set_gate(0x32, kind=GATE_INT16, offset=0x1234)
    rig.cpu.eip = 0x5678
    rig.cpu.eflags = 0x202
    rig.deliver(Event(0x32, external=True))
    assert rig.cpu.eip == 0x1234
    assert rig.reg("esp") == KERNEL_STACK - 6
    assert rig.memory.read(KERNEL_STACK - 6, 6) == bytes.fromhex("7856" "0800" "0202")


# -- privilege changes -------------------------------------------------------------------------

def test_ring3_to_ring0_switches_to_the_tss_stack_and_pushes_ss_esp_eflags_cs_eip(user_rig):
    r = user_rig
    r.cpu.set_reg("esp", USER_STACK - 0x40)
    r.deliver(Event(0x30, external=True))
    assert r.cpu.cpl == 0
    assert (r.reg("cs"), r.reg("ss")) == (KERNEL_CS, KERNEL_DS)
    assert r.reg("esp") == KERNEL_STACK - 20
    # Lowest address first: EIP, CS, EFLAGS, ESP, SS (SDM vol. 3, figure 6-4).
    assert r.stack(5) == [USER_EIP, USER_CS, 0x202, USER_STACK - 0x40, USER_DS]
    assert r.cpu.eip == handler(0x30)
    assert not r.cpu.eflags & IF


def test_ring3_fault_with_error_code_pushes_it_below_the_inner_frame(user_rig):
    r = user_rig
    r.deliver(Event(GP, error_code=0))
    assert r.reg("esp") == KERNEL_STACK - 24
    assert r.stack(6) == [0, USER_EIP, USER_CS, 0x202, USER_STACK, USER_DS]


def test_ring3_to_ring0_keeps_cr2_of_a_user_page_fault(user_rig):
    """The ring-3 -> ring-0 segment loads go through real mode; CR2 must survive."""
    user_rig.deliver(Event(PF, error_code=0b111, cr2=0x0804_8123))
    assert user_rig.reg("cr2") == 0x0804_8123
    assert user_rig.stack(2) == [0b111, USER_EIP]


def test_software_int_through_a_dpl3_gate_from_ring3_enters_the_handler(user_rig):
    r = user_rig
    r.set_gate(0x80, dpl=3)
    r.cpu.eip = USER_EIP + 2
    r.deliver(Event(0x80, software=True, instruction_eip=USER_EIP))
    assert r.cpu.eip == handler(0x80)
    assert r.stack(5) == [USER_EIP + 2, USER_CS, 0x202, USER_STACK, USER_DS]


def test_software_int_through_a_dpl0_gate_from_ring3_gives_gp_at_the_instruction(user_rig):
    r = user_rig
    r.cpu.eip = USER_EIP + 2
    r.deliver(Event(0x30, software=True, instruction_eip=USER_EIP))
    assert r.cpu.eip == handler(GP)
    # Error code: IDT index 0x30, IDT bit set; return address is the INT itself.
    assert r.stack(6) == [0x30 * 8 + 2, USER_EIP, USER_CS, 0x202, USER_STACK, USER_DS]


def test_hardware_interrupt_ignores_the_gate_dpl(user_rig):
    """DPL is checked for INT n only; an IRQ through a DPL-0 gate from ring 3 is fine."""
    user_rig.deliver(Event(0x30, external=True))
    assert user_rig.cpu.eip == handler(0x30)


def test_conforming_handler_runs_at_the_current_privilege_without_a_stack_switch(user_rig):
    r = user_rig
    r.set_gate(0x33, selector=CONFORMING_CS)
    r.deliver(Event(0x33, external=True))
    assert r.cpu.cpl == 3
    assert r.reg("ss") == USER_DS
    assert r.reg("esp") == USER_STACK - 12
    assert r.stack(3) == [USER_EIP, USER_CS | 0, 0x202]


def test_tss_too_short_for_the_ring0_stack_ends_in_a_triple_fault_when_every_handler_needs_it(user_rig):
    r = user_rig
    r.cpu.set_reg("tr", (0x28, 0x3000, 0x8, 0x8B))  # too short to hold ESP0/SS0
    with pytest.raises(TripleFault):
        # #TS while delivering a benign IRQ is delivered as #TS, which needs the same
        # ring-0 stack (#TS again: contributory twice -> #DF, which needs it too).
        r.deliver(Event(0x30, external=True))


def test_short_tss_during_a_software_interrupt_reports_ts_with_the_tss_selector():
    r = Rig()
    r.enter_user(USER_EIP, eflags=0x202)
    r.set_gate(0x80, dpl=3)
    r.set_gate(TS, selector=CONFORMING_CS)  # #TS handler that needs no stack switch
    r.cpu.set_reg("tr", (0x28, 0x3000, 0x8, 0x8B))
    r.cpu.eip = USER_EIP + 2
    r.deliver(Event(0x80, software=True, instruction_eip=USER_EIP))
    assert r.cpu.eip == handler(TS)
    assert r.stack(2) == [0x28, USER_EIP]


# -- faults while delivering ------------------------------------------------------------------

def test_not_present_gate_gives_np_with_the_idt_error_code(rig):
    rig.set_gate(0x30, present=False)
    rig.cpu.eip = CODE + 2
    rig.deliver(Event(0x30, software=True, instruction_eip=CODE))
    assert rig.cpu.eip == handler(NP)
    assert rig.stack(2) == [0x30 * 8 + 2, CODE]


def test_not_present_gate_for_an_external_interrupt_sets_ext_in_the_error_code(rig):
    rig.set_gate(0x30, present=False)
    rig.deliver(Event(0x30, external=True))
    assert rig.cpu.eip == handler(NP)
    assert rig.stack(1) == [0x30 * 8 + 2 + 1]


def test_gate_to_a_not_present_code_segment_gives_np_with_its_selector(rig):
    rig.set_gate(0x30, selector=NOT_PRESENT_CS)
    rig.deliver(Event(0x30, software=True, instruction_eip=rig.cpu.eip - 2))
    assert rig.cpu.eip == handler(NP)
    assert rig.stack(1) == [NOT_PRESENT_CS]


def test_gate_to_a_data_segment_gives_gp_with_its_selector(rig):
    rig.set_gate(0x30, selector=DATA_AS_CS)
    rig.deliver(Event(0x30, software=True, instruction_eip=rig.cpu.eip - 2))
    assert rig.cpu.eip == handler(GP)
    assert rig.stack(1) == [DATA_AS_CS]


def test_gate_of_a_wrong_type_gives_gp(rig):
    rig.set_gate(0x30, kind=0x2)  # an LDT descriptor type, not a gate
    rig.deliver(Event(0x30, software=True, instruction_eip=rig.cpu.eip - 2))
    assert rig.cpu.eip == handler(GP)
    assert rig.stack(1) == [0x30 * 8 + 2]


def test_idt_limit_too_small_for_the_vector_gives_gp(rig):
    rig.cpu.set_reg("idtr", (0, IDT, 0x30 * 8 + 6, 0))  # last gate byte of 0x30 is outside
    rig.deliver(Event(0x30, software=True, instruction_eip=rig.cpu.eip - 2))
    assert rig.cpu.eip == handler(GP)
    assert rig.stack(1) == [0x30 * 8 + 2]


def test_fault_while_delivering_a_page_fault_becomes_double_fault(rig):
    rig.set_gate(PF, present=False)
    rig.cpu.eip = CODE + 3
    rig.deliver(Event(PF, error_code=0b10, cr2=0x123456))
    assert rig.cpu.eip == handler(DF)
    assert rig.stack(2) == [0, CODE + 3]  # #DF's error code is always 0


def test_gp_while_delivering_gp_becomes_double_fault(rig):
    rig.set_gate(GP, selector=DATA_AS_CS)
    rig.deliver(Event(GP, error_code=0))
    assert rig.cpu.eip == handler(DF)
    assert rig.stack(1) == [0]


def test_np_while_delivering_a_benign_exception_is_delivered_as_np(rig):
    rig.set_gate(UD, present=False)
    rig.cpu.eip = CODE
    rig.deliver(Event(UD))
    assert rig.cpu.eip == handler(NP)
    assert rig.stack(2) == [UD * 8 + 2, CODE]


def test_fault_while_delivering_double_fault_is_a_triple_fault(rig):
    rig.set_gate(PF, present=False)
    rig.set_gate(DF, present=False)
    with pytest.raises(TripleFault, match="while delivering #DF"):
        rig.deliver(Event(PF, error_code=0, cr2=0x1000))


def test_task_gate_stops_the_machine_with_a_clear_message(rig):
    rig.set_gate(DF, kind=GATE_TASK, selector=0x28)
    with pytest.raises(TripleFault, match="task gate"):
        rig.deliver(Event(DF, error_code=0))


def test_delivering_a_cpu_raised_fault_resets_unicorns_previous_exception_record(rig):
    """After delivering a fault Unicorn raised, the next one must reach the monitor as
    itself, not as #DF (../shared/research/linux-on-unicorn.md item 1)."""
    code = assemble("mov ax, 0x1238\nfirst: mov ds, ax\nsecond: mov es, ax\n", CODE)
    rig.load(code)
    seen = []

    def on_interrupt(uc, vector, _user):
        seen.append(vector)
        uc.emu_stop()

    rig.cpu.uc.hook_add(UC_HOOK_INTR, on_interrupt)
    rig.cpu.uc.emu_start(CODE, 0)
    rig.set_gate(GP, offset=code["second"])  # the "handler" retries with ES
    rig.deliver(Event(GP, error_code=0x1238, from_cpu=True))
    rig.cpu.uc.emu_start(rig.cpu.eip, 0)
    assert seen == [GP, GP]


def test_escalation_table_follows_the_sdm():
    assert escalate(Event(GP, 0), NP) == DF
    assert escalate(Event(PF, 0), PF) == DF
    assert escalate(Event(PF, 0), GP) == DF
    assert escalate(Event(GP, 0), PF) == PF  # contributory then #PF: serially
    assert escalate(Event(UD), GP) == GP  # benign first
    assert escalate(Event(DF, 0), GP) is None
    assert escalate(Event(GP, software=True), GP) == GP  # INT 13 is not a #GP
    assert escalate(Event(DF, external=True), GP) == GP  # nor is IRQ 0 at vector 8


# -- bugs ------------------------------------------------------------------------------------

def test_software_int_13_through_a_dpl0_gate_from_ring3_gives_gp_not_double_fault(user_rig):
    r = user_rig
    r.cpu.eip = USER_EIP + 2
    r.deliver(Event(GP, software=True, instruction_eip=USER_EIP))
    assert r.cpu.eip == handler(GP)
    assert r.stack(2) == [GP * 8 + 2, USER_EIP]


def test_external_interrupt_at_vector_8_with_a_not_present_gate_gives_np(rig):
    rig.set_gate(8, present=False)
    rig.deliver(Event(8, external=True))
    assert rig.cpu.eip == handler(NP)
    assert rig.stack(1) == [8 * 8 + 2 + 1]


def test_page_fault_escalated_to_double_fault_leaves_cr2_at_the_faulting_address(rig):
    rig.cpu.set_reg("cr2", 0)
    rig.set_gate(PF, present=False)
    rig.deliver(Event(PF, error_code=0b10, cr2=0x123456))
    assert rig.cpu.eip == handler(DF)
    assert rig.reg("cr2") == 0x123456


# -- real mode -------------------------------------------------------------------------------

@pytest.fixture
def real_mode_rig():
    r = Rig()
    cpu = r.cpu
    cpu.set_reg("cr0", 0x10)
    cpu.set_reg("idtr", (0, 0, 0x3FF, 0))  # the IVT at 0, as after reset
    for segment in ("cs", "ss", "ds", "es"):
        cpu.set_reg(segment, 0)
    cpu.set_reg("esp", 0x7000)
    cpu.eip = 0x0500
    cpu.eflags = 0x202 | TF
    r.memory.write(0x21 * 4, (0x0010).to_bytes(2, "little") + (0x1234).to_bytes(2, "little"))
    return r


def test_real_mode_delivery_pushes_flags_cs_ip_and_jumps_through_the_ivt(real_mode_rig):
    r = real_mode_rig
    r.cpu.set_reg("cs", 0x0050)
    r.cpu.eip = 0x0002
    r.deliver(Event(0x21, software=True))
    assert (r.reg("cs"), r.cpu.eip) == (0x1234, 0x0010)
    assert r.reg("esp") == 0x7000 - 6
    # IP, CS, FLAGS from the lowest address up.
    assert r.memory.read(0x7000 - 6, 6) == bytes.fromhex("0200" "5000" "0203")
    assert not r.cpu.eflags & (IF | TF)


def test_real_mode_handler_runs_at_cs_times_16_plus_ip(real_mode_rig):
    r = real_mode_rig
    r.deliver(Event(0x21, software=True))
    code = assemble(".code16\nmov ax, 0x55AA\nhlt\n", 0x10)
    r.memory.write(0x12340 + 0x10, code.code)
    r.cpu.uc.emu_start(r.cpu.eip, 0)
    assert r.reg("eax") & 0xFFFF == 0x55AA


def test_real_mode_stack_wraps_within_its_64k_segment(real_mode_rig):
    r = real_mode_rig
    r.cpu.set_reg("ss", 0x2000)
    r.cpu.set_reg("esp", 0x0002)
    r.deliver(Event(0x21, software=True))
    assert r.reg("esp") == 0xFFFC
    assert r.memory.read(0x20000 + 0xFFFC, 4) == bytes.fromhex("0005" "0000")


def test_real_mode_delivery_uses_the_idtr_base(real_mode_rig):
    r = real_mode_rig
    r.cpu.set_reg("idtr", (0, 0x8000, 0x3FF, 0))
    r.memory.write(0x8000 + 0x21 * 4, (0x0020).to_bytes(2, "little") + (0x2000).to_bytes(2, "little"))
    r.deliver(Event(0x21, software=True))
    assert (r.reg("cs"), r.cpu.eip) == (0x2000, 0x0020)


# -- through the run loop: the CPU raises, the monitor delivers ---------------------------------

GP_HANDLER_SKIPPING_2_BYTES = """
    add dword ptr [esp + 4], 2
    add esp, 4
    inc dword ptr [0x6000]
    iretd
"""


def test_two_unrelated_gps_in_a_row_both_reach_the_guest_as_gp():
    r = Rig()
    handler_code = assemble(GP_HANDLER_SKIPPING_2_BYTES, 0x30000)
    r.load(handler_code)
    r.set_gate(GP, offset=0x30000)
    r.load(assemble("""
        mov ax, 0x1238
        mov ds, ax
        mov es, ax
        mov al, 0
        out 0xf4, al
    """, CODE))
    result = r.run()
    assert result.status == 0
    assert r.dwords(0x6000, 1) == [2]


def test_ring3_int_through_a_dpl0_gate_reaches_the_gp_handler_with_eip_at_the_int():
    r = Rig()
    code = assemble("nop\nsoft: int 0x30\n", CODE)
    r.load(code)
    r.enter_user(CODE, eflags=0x202)
    assert r.run().status == GP
    assert r.stack(6) == [0x30 * 8 + 2, code["soft"], USER_CS, 0x202, USER_STACK, USER_DS]


def test_ring3_int_through_a_dpl3_gate_pushes_the_next_eip():
    r = Rig()
    r.set_gate(0x40, dpl=3)
    code = assemble("soft: int 0x40\nafter: nop\n", CODE)
    r.load(code)
    r.enter_user(CODE, eflags=0x202)
    assert r.run().status == 0x40
    assert r.stack(5) == [code["after"], USER_CS, 0x202, USER_STACK, USER_DS]


@pytest.mark.parametrize(
    "encoding,length", [("int3", 1), (".byte 0xcd, 0x03", 2)], ids=["int3-cc", "int-imm8-3"],
)
def test_ring3_breakpoint_through_a_dpl0_gate_gives_gp_at_the_instruction(encoding, length):
    """The run loop finds where INT3 (one byte) or INT 3 (two bytes) began."""
    r = Rig()
    code = assemble(f"nop\nsoft: {encoding}\nafter: nop\n", CODE)
    assert code["after"] - code["soft"] == length
    r.load(code)
    r.enter_user(CODE, eflags=0x202)
    assert r.run().status == GP
    assert r.stack(2) == [3 * 8 + 2, code["soft"]]


def test_ring3_int3_through_a_dpl3_gate_pushes_the_address_after_it():
    r = Rig()
    r.set_gate(3, dpl=3)
    code = assemble("nop\nsoft: int3\nafter: nop\n", CODE)
    r.load(code)
    r.enter_user(CODE, eflags=0x202)
    assert r.run().status == 3
    assert r.stack(2) == [code["after"], USER_CS]


def test_ud2_is_delivered_as_ud_at_the_instruction():
    r = Rig()
    code = assemble("nop\nbad: ud2\n", CODE)
    r.load(code)
    r.cpu.eflags = 0x202
    assert r.run().status == UD
    assert r.stack(3) == [code["bad"], KERNEL_CS, 0x202]


def test_ring3_privileged_instruction_is_delivered_as_gp_0_on_the_ring0_stack():
    r = Rig()
    code = assemble("nop\npriv: cli\n", CODE)
    r.load(code)
    r.enter_user(CODE, eflags=0x202)
    assert r.run().status == GP
    assert r.reg("esp") == KERNEL_STACK - 24
    assert r.stack(6) == [0, code["priv"], USER_CS, 0x202, USER_STACK, USER_DS]


def test_user_page_fault_is_delivered_with_error_code_and_cr2():
    r = Rig()
    page_directory, page_table = 0x100000, 0x101000
    r.memory.write_u32(page_directory, page_table | 7)
    for page in range(1024):
        flags = 7 if page != 0x50 else 5  # page 0x50 is read-only for everyone
        r.memory.write_u32(page_table + 4 * page, (page << 12) | flags)
    code = assemble("nop\nfault: mov dword ptr [0x50010], 1\n", CODE)
    r.load(code)
    r.cpu.set_reg("cr3", page_directory)
    r.cpu.set_reg("cr0", r.reg("cr0") | 0x80000000)
    r.enter_user(CODE, eflags=0x202)
    assert r.run().status == PF
    assert r.reg("cr2") == 0x50010
    assert r.stack(6) == [0b111, code["fault"], USER_CS, 0x202, USER_STACK, USER_DS]


def test_idt_outside_ram_ends_the_run_with_a_triple_fault_not_an_exception():
    r = Rig()
    r.cpu.set_reg("idtr", (0, 0xF0000000, 0x7FF, 0))
    r.load(assemble("int 0x30\n", CODE))
    assert r.run().status == 100  # ExitStatus.TRIPLE_FAULT
