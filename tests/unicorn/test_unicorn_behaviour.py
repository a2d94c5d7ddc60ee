"""Unicorn 2.1.4 behaviours the monitor is built on, pinned on a bare engine.

Each test names one behaviour and says why the monitor cares. They use a plain ``Uc``
in flat 32-bit protected mode (no vmm code, except where a test exercises the piece of
vmm that exists because of the behaviour), so an upgrade of Unicorn that changes any of
them fails here, loudly and by name, before it breaks a guest in a way that is hard to
trace. Background: ../shared/research/aesthetics-and-unicorn.md part 2 and
../shared/research/linux-on-unicorn.md.
"""

from __future__ import annotations

import ctypes
import struct

import pytest
import unicorn
from unicorn import (
    UC_ARCH_X86, UC_ERR_INSN_INVALID, UC_HOOK_BLOCK, UC_HOOK_INSN, UC_HOOK_INSN_INVALID,
    UC_HOOK_INTR, UC_HOOK_MEM_WRITE, UC_MODE_32, Uc, UcError,
)
from unicorn import x86_const as X
from unicorn.unicorn_py3.unicorn import uc_hook_h, uclib

from tests.unicorn.asm import assemble
from tests.unicorn.bare import KERNEL_CS, KERNEL_DS, USER_CS, USER_DS, setup_flat
from vmm import native
from vmm.cpu import Cpu, context_offsets
from vmm.native import FastState

CODE = 0x1000
PAGE_DIRECTORY = 0x20000
PAGE_TABLE = 0x21000

# Drops to ring 3 at the label `user` with IOPL 0, the way a kernel does (IRETD).
TO_RING3 = """
    push 0x23
    push 0x8000
    push 0x2
    push 0x1b
    push offset user
    iretd
user:
"""
# Turns paging on with the identity-mapped first MiB built by identity_paging().
PAGING_ON = """
    mov eax, 0x20000
    mov cr3, eax
    mov eax, cr0
    or eax, 0x80000000
    mov cr0, eax
"""


def flat_uc(source: str | None = None):
    """A bare engine with ``source`` assembled at CODE; returns (uc, assembled)."""
    uc = setup_flat(Uc(UC_ARCH_X86, UC_MODE_32))
    code = None
    if source is not None:
        code = assemble(source, CODE)
        uc.mem_write(CODE, code.code)
    return uc, code


def identity_paging(uc: Uc, overrides: dict[int, int] | None = None) -> None:
    """Identity-map the first MiB with user/writable 4 KiB pages; ``overrides`` maps a
    page number to its PTE flags."""
    uc.mem_write(PAGE_DIRECTORY, struct.pack("<I", PAGE_TABLE | 7))
    flags = {page: 7 for page in range(256)} | (overrides or {})
    uc.mem_write(PAGE_TABLE, b"".join(struct.pack("<I", (page << 12) | f) for page, f in flags.items()))


def eip(uc: Uc) -> int:
    return uc.reg_read(X.UC_X86_REG_EIP)


def u32(uc: Uc, address: int) -> int:
    return struct.unpack("<I", uc.mem_read(address, 4))[0]


def context_int(uc: Uc, offset: int) -> int:
    ctx = uc.context_save()
    return struct.unpack_from("<i", ctypes.string_at(ctx.context.value, ctx.size), offset)[0]


class InterruptRecorder:
    """A UC_HOOK_INTR callback that records (vector, EIP, CS) and stops."""

    def __init__(self, uc: Uc, stop: bool = True) -> None:
        self.seen: list[tuple[int, int, int]] = []
        self.stop = stop
        uc.hook_add(UC_HOOK_INTR, self)

    def __call__(self, uc: Uc, vector: int, _user: object) -> None:
        self.seen.append((vector, eip(uc), uc.reg_read(X.UC_X86_REG_CS)))
        if self.stop:
            uc.emu_stop()


def add_native_block_hook(uc: Uc, fast: FastState) -> None:
    """Register fastpath.c's vmm_block_hook the way vmm.runloop.RunLoop does."""
    handle = uc_hook_h()
    status = uclib.uc_hook_add(
        uc._uch, ctypes.byref(handle), UC_HOOK_BLOCK,
        ctypes.c_void_p(native.hook_address("vmm_block_hook")),
        ctypes.cast(ctypes.pointer(fast), ctypes.c_void_p),
        ctypes.c_uint64(1), ctypes.c_uint64(0),
    )
    assert status == 0
    uc._vmm_keepalive = (handle, fast)  # the C hook holds a pointer into `fast`


def test_unicorn_is_the_pinned_version():
    """Every fact below was measured on 2.1.4; pyproject.toml pins it."""
    assert unicorn.__version__ == "2.1.4"


# -- HLT, INT n, faults, invalid opcodes ------------------------------------------------------

def test_hlt_returns_from_emu_start_without_error_with_eip_after_the_hlt():
    """The run loop recognises HLT by a clean return with the byte at EIP-1 being 0xF4:
    Unicorn gives no stop reason for it."""
    uc, code = flat_uc("""
        mov eax, 1
    halt:
        hlt
    after:
        mov eax, 2
    """)
    uc.emu_start(CODE, 0)  # no `until`: HLT alone ends the run, without an exception
    assert eip(uc) == code["after"] == code["halt"] + 1
    assert uc.reg_read(X.UC_X86_REG_EAX) == 1
    assert uc.mem_read(eip(uc) - 1, 1) == b"\xf4"


def test_int_n_reaches_the_intr_hook_with_eip_already_after_the_instruction():
    """For INT n the frame's return address is EIP as the hook sees it; the monitor
    computes the instruction's own address (for #GP on a DPL check) as EIP - 2."""
    uc, code = flat_uc("""
        nop
    soft:
        int 0x30
    after:
        hlt
    """)
    hook = InterruptRecorder(uc)
    uc.emu_start(CODE, 0)
    assert hook.seen == [(0x30, code["after"], KERNEL_CS)]
    assert code["after"] == code["soft"] + 2


def test_gp_from_a_bad_segment_load_reaches_the_hook_with_eip_at_the_faulting_instruction():
    """Faults restart the instruction: the pushed EIP must be the instruction's address."""
    uc, code = flat_uc("""
        mov ax, 0x1238
    fault:
        mov ds, ax
        hlt
    """)
    hook = InterruptRecorder(uc)
    uc.emu_start(CODE, 0)
    assert hook.seen == [(13, code["fault"], KERNEL_CS)]


def test_page_fault_reaches_the_hook_with_eip_at_the_faulting_instruction_and_cr2_set():
    """The monitor takes CR2 from the CPU when it delivers #PF, and returns to the
    faulting instruction once the guest has mapped the page."""
    uc, code = flat_uc(PAGING_ON + """
        mov ebx, 0x400000
    fault:
        mov eax, [ebx]
        hlt
    """)
    identity_paging(uc)
    hook = InterruptRecorder(uc)
    uc.emu_start(CODE, 0)
    assert hook.seen == [(14, code["fault"], KERNEL_CS)]
    assert uc.reg_read(X.UC_X86_REG_CR2) == 0x400000


@pytest.mark.parametrize(
    "access,pte_flags,error_code",
    [
        ("mov eax, [0x5000]", 0, 0b100),  # user read, not present
        ("mov dword ptr [0x5000], 1", 0b101, 0b111),  # user write, read-only page
        ("mov eax, [0x5000]", 0b011, 0b101),  # user read of a supervisor page
    ],
    ids=["user-read-not-present", "user-write-read-only", "user-read-supervisor"],
)
def test_page_fault_error_code_is_in_the_context_error_code_field(access, pte_flags, error_code):
    """Unicorn's API gives no #PF error code; the monitor reads it from the saved
    context (Cpu.raised_exception), where QEMU's page walk left it."""
    uc, code = flat_uc(PAGING_ON + TO_RING3 + f"fault: {access}\n")
    identity_paging(uc, {5: pte_flags})
    hook = InterruptRecorder(uc)
    uc.emu_start(CODE, 0)
    assert hook.seen == [(14, code["fault"], USER_CS)]
    assert context_int(uc, context_offsets().error_code) == error_code
    assert uc.reg_read(X.UC_X86_REG_CR2) == 0x5000


def test_invalid_opcode_calls_the_insn_invalid_hook_at_it_then_emu_start_raises():
    """#UD never reaches UC_HOOK_INTR: the monitor learns of it from
    UC_HOOK_INSN_INVALID and must deliver vector 6 itself, at the ud2's address."""
    uc, code = flat_uc("""
        nop
    bad:
        ud2
        hlt
    """)
    seen: list[int] = []

    def on_invalid(uc: Uc, _user: object) -> bool:
        seen.append(eip(uc))
        return False

    uc.hook_add(UC_HOOK_INSN_INVALID, on_invalid)
    hook = InterruptRecorder(uc)
    with pytest.raises(UcError) as raised:
        uc.emu_start(CODE, 0)
    assert raised.value.errno == UC_ERR_INSN_INVALID
    assert seen == [code["bad"]]
    assert eip(uc) == code["bad"]
    assert hook.seen == []


# -- port I/O ---------------------------------------------------------------------------------

class PortRecorder:
    """IN/OUT hooks that record (direction, port, size, value, EIP, CS); IN reads ``value``."""

    def __init__(self, uc: Uc, value: int = 0x5A, on_in=None) -> None:
        self.log: list[tuple] = []
        self.value = value
        self.on_in = on_in
        uc.hook_add(UC_HOOK_INSN, self._in, None, 1, 0, X.UC_X86_INS_IN)
        uc.hook_add(UC_HOOK_INSN, self._out, None, 1, 0, X.UC_X86_INS_OUT)

    def _in(self, uc: Uc, port: int, size: int, _user: object) -> int:
        self.log.append(("in", port, size, None, eip(uc), uc.reg_read(X.UC_X86_REG_CS)))
        if self.on_in is not None:
            self.on_in(uc)
        return self.value

    def _out(self, uc: Uc, port: int, size: int, value: int, _user: object) -> None:
        self.log.append(("out", port, size, value, eip(uc), uc.reg_read(X.UC_X86_REG_CS)))


def test_in_and_out_hooks_see_eip_at_the_instruction():
    """The native port hooks read the instruction at EIP to recognise INS/OUTS, and a
    refused access must leave EIP on the instruction for #GP."""
    uc, code = flat_uc("""
        mov eax, 0x11223344
        mov dx, 0x1f0
    in_at:
        in ax, dx
    out_at:
        out 0x80, al
        hlt
    """)
    ports = PortRecorder(uc, value=0xBEEF)
    uc.emu_start(CODE, 0)
    assert ports.log == [
        ("in", 0x1F0, 2, None, code["in_at"], KERNEL_CS),
        ("out", 0x80, 1, 0xEF, code["out_at"], KERNEL_CS),
    ]
    assert uc.reg_read(X.UC_X86_REG_EAX) == 0x1122BEEF


def test_ring3_in_and_out_execute_without_gp_because_unicorn_skips_the_iopl_check():
    """Unicorn allows all I/O (translate.c gen_check_io returns at once), so the
    monitor's port hooks must check CPL against IOPL and the TSS bitmap themselves."""
    uc, code = flat_uc(TO_RING3 + """
    in_at:
        in al, 0x60
    out_at:
        out 0x61, al
    done:
        int 0x30
    """)
    ports = PortRecorder(uc, value=0x5A)
    hook = InterruptRecorder(uc)
    uc.emu_start(CODE, 0)
    assert uc.reg_read(X.UC_X86_REG_EFLAGS) & 0x3000 == 0  # IOPL 0
    assert ports.log == [
        ("in", 0x60, 1, None, code["in_at"], USER_CS),
        ("out", 0x61, 1, 0x5A, code["out_at"], USER_CS),
    ]
    assert hook.seen == [(0x30, code["done"] + 2, USER_CS)]  # no #GP on the way


@pytest.mark.parametrize("instruction", ["cli", "hlt"])
def test_ring3_cli_and_hlt_do_raise_gp(instruction):
    """Unlike IN/OUT, the other IOPL/CPL checks are Unicorn's: the monitor only has to
    deliver the #GP it reports."""
    uc, code = flat_uc(TO_RING3 + f"""
    privileged:
        {instruction}
    after:
        nop
    """)
    hook = InterruptRecorder(uc)
    uc.emu_start(CODE, 0)
    assert hook.seen == [(13, code["privileged"], USER_CS)]
    assert context_int(uc, context_offsets().error_code) == 0


def test_in_hook_stop_takes_effect_only_at_the_next_memory_access_or_block_end():
    """emu_stop() from an I/O hook does not stop at the instruction: register-only
    instructions after it in the same block still run, and an EIP written by the hook
    is lost when the block ends with a jump. This is why a refused IN/OUT cannot simply
    be undone from the hook (see the next test and tests/vmm/test_portio.py)."""
    uc, code = flat_uc("""
        mov ebx, 0
    io:
        in al, 0x60
        mov ebx, 7
        jmp next
    next:
        mov ebx, 9
        hlt
    """)

    def rewind_and_stop(uc: Uc) -> None:
        uc.reg_write(X.UC_X86_REG_EIP, code["io"])
        uc.emu_stop()

    PortRecorder(uc, on_in=rewind_and_stop)
    uc.emu_start(CODE, 0)
    assert uc.reg_read(X.UC_X86_REG_EBX) == 7  # ran after the stop request
    assert eip(uc) == code["next"]  # the block's jump overwrote the rewound EIP


def test_rep_insw_whose_first_hook_stops_ends_at_the_instruction_with_ecx_and_edi_unadvanced():
    """The monitor serves a whole INS string from the first element's hook, stops, and
    then sets ECX/EDI/EIP itself; Unicorn must not have moved past the first element.
    Unicorn has already stored that first element (the same value the monitor stores)."""
    uc, code = flat_uc("""
        cld
        mov edi, 0x3000
        mov ecx, 10
        mov dx, 0x1f0
    string:
        rep insw
        hlt
    """)

    def stop(uc: Uc) -> None:
        uc.emu_stop()

    ports = PortRecorder(uc, value=0xBEEF, on_in=stop)
    uc.emu_start(CODE, 0)
    assert [entry[:3] for entry in ports.log] == [("in", 0x1F0, 2)]
    assert eip(uc) == code["string"]
    assert uc.reg_read(X.UC_X86_REG_ECX) == 10
    assert uc.reg_read(X.UC_X86_REG_EDI) == 0x3000
    assert uc.mem_read(0x3000, 4) == b"\xef\xbe\x00\x00"


def test_ins_stores_a_zero_at_edi_before_its_in_hook_runs():
    """QEMU's INS writes a dummy 0 to ES:EDI first (to be restartable on #PF), so a hook
    that reads the destination sees 0, not the old contents: the monitor cannot save
    the old bytes from the hook to undo a refused INS."""
    uc, code = flat_uc("""
        cld
        mov edi, 0x3000
        mov ecx, 2
        mov dx, 0x300
        rep insb
        hlt
    """)
    uc.mem_write(0x3000, b"\xee\xee\xee")
    seen: list[bytes] = []

    def look(uc: Uc) -> None:
        seen.append(bytes(uc.mem_read(0x3000, 3)))

    PortRecorder(uc, value=0x5A, on_in=look)
    uc.emu_start(CODE, 0)
    assert seen == [b"\x00\xee\xee", b"\x5a\x00\xee"]
    assert uc.mem_read(0x3000, 3) == b"\x5a\x5a\xee"


def test_rep_outsb_whose_hook_stops_ends_at_the_instruction_with_one_element_consumed():
    """Unlike INS, a stop from the first OUTS element's hook lands after Unicorn has
    advanced ECX and ESI for that element (the monitor's string fixup overwrites them;
    a refused OUTS would have to put them back)."""
    uc, code = flat_uc("""
        cld
        mov esi, 0x3000
        mov ecx, 5
        mov dx, 0x300
    string:
        rep outsb
        hlt
    """)
    uc.mem_write(0x3000, b"abcde")
    sent: list[int] = []

    def on_out(uc: Uc, port: int, size: int, value: int, _user: object) -> None:
        sent.append(value)
        uc.emu_stop()

    uc.hook_add(UC_HOOK_INSN, on_out, None, 1, 0, X.UC_X86_INS_OUT)
    uc.emu_start(CODE, 0)
    assert sent == [ord("a")]
    assert eip(uc) == code["string"]
    assert (uc.reg_read(X.UC_X86_REG_ECX), uc.reg_read(X.UC_X86_REG_ESI)) == (4, 0x3001)


# -- the exception bookkeeping the monitor reaches through the context -------------------------

TWO_GPS = """
    mov ax, 0x1238
first:
    mov ds, ax
    mov ax, 0x2470
second:
    mov es, ax
    hlt
"""


def _two_gps(reset_old_exception: bool) -> tuple[list[tuple[int, int, int]], object]:
    uc, code = flat_uc(TWO_GPS)
    offsets = context_offsets()
    seen: list[tuple[int, int, int]] = []

    def on_interrupt(uc: Uc, vector: int, _user: object) -> None:
        seen.append((vector, eip(uc), context_int(uc, offsets.error_code)))
        if reset_old_exception:  # what Cpu.end_exception does after a delivery
            ctx = uc.context_save()
            ctypes.c_int32.from_address(ctx.context.value + offsets.old_exception).value = -1
            uc.context_restore(ctx)
        uc.reg_write(X.UC_X86_REG_EIP, eip(uc) + 2)  # skip the 2-byte `mov sreg, ax`

    uc.hook_add(UC_HOOK_INTR, on_interrupt)
    uc.emu_start(CODE, 0, count=20)
    return seen, code


def test_second_unrelated_gp_reaches_the_hook_as_double_fault_when_old_exception_is_stale():
    """Unicorn never runs QEMU's delivery, which resets old_exception; so a second,
    unrelated fault is reported as #DF (linux-on-unicorn.md item 1)."""
    seen, code = _two_gps(reset_old_exception=False)
    assert seen == [(13, code["first"], 0x1238), (8, code["second"], 0)]


def test_second_gp_arrives_as_gp_when_old_exception_is_reset_through_the_context():
    """Resetting old_exception to -1 in the context, as Cpu.end_exception does after
    every delivery, makes each fault arrive as itself."""
    seen, code = _two_gps(reset_old_exception=True)
    assert seen == [(13, code["first"], 0x1238), (13, code["second"], 0x2470)]


def test_cpu_end_exception_resets_old_exception():
    """Cpu.end_exception is the monitor's form of the reset above."""
    cpu = Cpu()
    setup_flat(cpu.uc)
    code = assemble(TWO_GPS, CODE)
    cpu.uc.mem_write(CODE, code.code)
    seen: list[int] = []

    def on_interrupt(uc: Uc, vector: int, _user: object) -> None:
        seen.append(vector)
        cpu.end_exception()
        cpu.eip = cpu.eip + 2

    cpu.uc.hook_add(UC_HOOK_INTR, on_interrupt)
    cpu.uc.emu_start(CODE, 0, count=20)
    assert seen == [13, 13]
    assert context_int(cpu.uc, cpu.offsets.old_exception) == -1


def test_context_offsets_find_error_code_is_int_and_old_exception():
    """vmm.cpu.context_offsets() locates the three fields; their contents mean what
    the monitor reads them as: the #GP selector, 1 for INT n, the last exception."""
    offsets = context_offsets()
    assert len({offsets.error_code, offsets.exception_is_int, offsets.old_exception}) == 3
    assert offsets.exception_is_int == offsets.error_code + 4

    uc, _ = flat_uc("mov ax, 0x5678\nmov fs, ax\nhlt\n")
    InterruptRecorder(uc)
    uc.emu_start(CODE, 0)
    assert context_int(uc, offsets.error_code) == 0x5678  # the refused selector
    assert context_int(uc, offsets.exception_is_int) == 0
    assert context_int(uc, offsets.old_exception) == 13
    assert uc.context_save().size == offsets.size

    uc, _ = flat_uc("int 0x30\nhlt\n")
    InterruptRecorder(uc)
    uc.emu_start(CODE, 0)
    assert context_int(uc, offsets.exception_is_int) == 1
    assert context_int(uc, offsets.old_exception) == -1


def test_cpu_raised_exception_reports_vector_eip_error_code_and_software():
    """Cpu.raised_exception is how the run loop reads the fields above."""
    cpu = Cpu()
    setup_flat(cpu.uc)
    code = assemble("mov ax, 0x1238\nfault: mov ds, ax\nsoft: int 0x31\nhlt\n", CODE)
    cpu.uc.mem_write(CODE, code.code)
    raised = []

    def on_interrupt(uc: Uc, vector: int, _user: object) -> None:
        raised.append(cpu.raised_exception(vector))
        cpu.end_exception()
        if vector == 13:
            cpu.eip = code["soft"]
        else:
            uc.emu_stop()

    cpu.uc.hook_add(UC_HOOK_INTR, on_interrupt)
    cpu.uc.emu_start(CODE, 0)
    assert [(r.vector, r.eip, r.error_code, r.software) for r in raised] == [
        (13, code["fault"], 0x1238, False),
        (0x31, code["soft"] + 2, 0, True),
    ]


# -- the translation cache ---------------------------------------------------------------------

def test_host_mem_write_over_executed_code_runs_old_code_until_ctl_remove_cache():
    """Unicorn issue #2258: a host write does not invalidate translated blocks, so every
    DMA and loader write must call ctl_remove_cache (GuestMemory.write does)."""
    uc, _ = flat_uc("mov eax, 1\nhlt\n")
    uc.emu_start(CODE, 0)
    assert uc.reg_read(X.UC_X86_REG_EAX) == 1

    new = assemble("mov eax, 2\nhlt\n", CODE)
    uc.mem_write(CODE, new.code)
    uc.emu_start(CODE, 0)
    assert uc.reg_read(X.UC_X86_REG_EAX) == 1  # the stale translation ran

    uc.ctl_remove_cache(CODE, CODE + len(new.code))
    uc.emu_start(CODE, 0)
    assert uc.reg_read(X.UC_X86_REG_EAX) == 2


# -- ending a slice ------------------------------------------------------------------------------

@pytest.mark.parametrize("count", [1, 2, 101, 1000])
def test_emu_start_with_count_stops_after_exactly_that_many_instructions(count):
    """Counted slices are the exact, deterministic (and slow) way to end a slice."""
    uc, code = flat_uc("""
        xor eax, eax
    loop:
        inc eax
        jmp loop
    """)
    uc.emu_start(CODE, 0, count=count)
    executed_in_loop = count - 1  # after the xor
    assert uc.reg_read(X.UC_X86_REG_EAX) == (executed_in_loop + 1) // 2
    assert eip(uc) == (code["loop"] if executed_in_loop % 2 == 0 else code["loop"] + 1)


def test_block_hook_emu_stop_stops_before_the_block_first_instruction():
    """The monitor preempts only from a block hook: the stop lands before the block
    runs, so no instruction is ever half done."""
    uc, code = flat_uc("""
        mov eax, 1
        jmp block
    block:
        mov dword ptr [0x3000], 0x55
        mov eax, 2
        hlt
    """)
    entered: list[int] = []

    def on_block(uc: Uc, address: int, size: int, _user: object) -> None:
        entered.append(address)
        if address == code["block"]:
            uc.emu_stop()

    uc.hook_add(UC_HOOK_BLOCK, on_block)
    uc.emu_start(CODE, 0)
    assert entered == [CODE, code["block"]]
    assert eip(uc) == code["block"]
    assert u32(uc, 0x3000) == 0
    assert uc.reg_read(X.UC_X86_REG_EAX) == 1


RMW_LOOP = """
    mov ecx, {n}
loop:
    inc dword ptr [0x3000]
    dec ecx
    jnz loop
done:
    hlt
"""


def test_rmw_loop_stopped_by_the_native_block_hook_thousands_of_times_counts_exactly():
    """vmm_block_hook (fastpath.c) stops at a block start whenever the code-byte budget
    runs out, as the run loop's preemption does: every `inc [m]` still happens once."""
    iterations = 20_000
    uc, code = flat_uc(RMW_LOOP.format(n=iterations))
    fast = FastState()
    add_native_block_hook(uc, fast)
    stops = 0
    address = CODE
    while True:
        fast.stop_at_bytes = fast.code_bytes + 1  # let exactly one block run
        fast.stopped_in_block_hook = 0
        uc.emu_start(address, 0)
        address = eip(uc)
        if not fast.stopped_in_block_hook:
            break
        stops += 1
    assert address == code["done"] + 1
    assert u32(uc, 0x3000) == iterations
    assert stops >= iterations
    assert fast.blocks == stops + 1


def test_native_block_hook_stops_when_stop_requested_is_raised():
    """The timer thread and devices only raise `stop_requested`; the hook turns it
    into a stop at the next block and lowers it again."""
    uc, code = flat_uc(RMW_LOOP.format(n=10))
    fast = FastState()
    fast.stop_at_bytes = (1 << 64) - 1
    fast.stop_requested = 1
    add_native_block_hook(uc, fast)
    uc.emu_start(CODE, 0)
    assert (eip(uc), fast.stopped_in_block_hook, fast.stop_requested, fast.blocks) == (CODE, 1, 0, 0)
    fast.stopped_in_block_hook = 0
    uc.emu_start(CODE, 0)
    assert eip(uc) == code["done"] + 1
    assert u32(uc, 0x3000) == 10
    assert fast.stopped_in_block_hook == 0


@pytest.mark.parametrize("interrupts_enabled, waits_for_if, stops", [
    (False, True, False),  # a timer tick the guest cannot take yet: keep running
    (True, True, True),
    (False, False, True),  # a forced stop or the wall-clock limit: stop anyway
])
def test_native_block_hook_lets_a_due_timer_wait_for_eflags_if(interrupts_enabled, waits_for_if, stops):
    """A device deadline that comes due while IF is clear can deliver nothing: the hook
    leaves `timer_due` raised until IF is set (Linux's PIT calibration of the TSC runs
    with interrupts off and fails when a stop stretches one loop iteration)."""
    uc, code = flat_uc(RMW_LOOP.format(n=10))
    fast = FastState()
    fast.stop_at_bytes = (1 << 64) - 1
    fast.timer_due = 1
    fast.timer_waits_for_if = int(waits_for_if)
    add_native_block_hook(uc, fast)
    uc.reg_write(X.UC_X86_REG_EFLAGS, 0x202 if interrupts_enabled else 0x2)
    uc.emu_start(CODE, 0)
    assert fast.stopped_in_block_hook == int(stops)
    assert fast.timer_due == int(not stops)
    assert eip(uc) == (CODE if stops else code["done"] + 1)


def test_native_block_hook_stops_at_the_first_block_after_sti_when_an_interrupt_waits():
    """The interrupt window: with `irq_window` raised, blocks run while IF is clear and
    the slice ends at the first block start that sees IF set (STI ends a block)."""
    uc, code = flat_uc("cli\nmov eax, 1\nadd eax, 2\nsti\nwindow:\nnop\nhlt\n")
    fast = FastState()
    fast.stop_at_bytes = (1 << 64) - 1
    fast.irq_window = 1
    add_native_block_hook(uc, fast)
    uc.emu_start(CODE, 0)
    assert (eip(uc), fast.stopped_in_block_hook, fast.irq_window) == (code["window"], 1, 0)
    assert uc.reg_read(X.UC_X86_REG_EAX) == 3


def test_stop_from_a_memory_write_callback_makes_inc_mem_run_twice():
    """The hazard the block hook avoids (linux-on-unicorn.md item 6): a stop that is
    pending when the store of `inc [m]` completes puts EIP back on the instruction, so
    it runs again on resume. 100 increments, stopped at every 10th store, end at 111."""
    uc, code = flat_uc(RMW_LOOP.format(n=100))
    stores = [0]

    def on_write(uc: Uc, _access: int, address: int, _size: int, _value: int, _user: object) -> None:
        stores[0] += 1
        if stores[0] % 10 == 0:
            uc.emu_stop()

    uc.hook_add(UC_HOOK_MEM_WRITE, on_write)
    address = CODE
    for _ in range(1000):
        uc.emu_start(address, 0)
        address = eip(uc)
        if address == code["done"] + 1:
            break
    assert u32(uc, 0x3000) == 111  # 11 stops, each re-ran one `inc [m]`


# -- privilege changes -------------------------------------------------------------------------

def _cpu_at_ring3() -> Cpu:
    cpu = Cpu()
    setup_flat(cpu.uc)
    code = assemble(TO_RING3 + "nop\n", CODE)
    cpu.uc.mem_write(CODE, code.code)
    cpu.uc.emu_start(CODE, code["user"])
    assert cpu.cpl == 3
    return cpu


@pytest.mark.parametrize("register,selector", [("ss", KERNEL_DS), ("cs", KERNEL_CS)])
def test_reg_write_of_a_dpl0_segment_at_cpl3_raises_ucerror(register, selector):
    """The architecture allows this during delivery, Unicorn's checked load does not
    (linux-on-unicorn.md item 2): hence Cpu.load_segments_for_privilege."""
    cpu = _cpu_at_ring3()
    with pytest.raises(UcError):
        cpu.set_reg(register, selector)
    assert cpu.cpl == 3
    assert (cpu.reg("cs"), cpu.reg("ss")) == (USER_CS, USER_DS)


def test_load_segments_for_privilege_enters_ring0_from_ring3_keeping_cr0_and_cr2():
    """The monitor's way round it: SS through real mode, then CS. CR0 and CR2 survive
    and ring-0 code then runs with ring-0 privileges (CLI is allowed)."""
    cpu = _cpu_at_ring3()
    cpu.set_reg("cr2", 0xDEAD000)
    cr0 = cpu.reg("cr0")
    cpu.load_segments_for_privilege(KERNEL_CS, KERNEL_DS)
    assert cpu.cpl == 0
    assert (cpu.reg("cs"), cpu.reg("ss")) == (KERNEL_CS, KERNEL_DS)
    assert cpu.reg("cr0") == cr0
    assert cpu.reg("cr2") == 0xDEAD000
    code = assemble("mov eax, 0x77\ncli\nhlt\n", 0x4000)
    cpu.uc.mem_write(0x4000, code.code)
    hook = InterruptRecorder(cpu.uc)
    cpu.uc.emu_start(0x4000, 0)
    assert hook.seen == []
    assert cpu.reg("eax") == 0x77


# -- exits -----------------------------------------------------------------------------------------

def test_until_stops_emulation_by_default():
    """The contrast for the next test."""
    uc, code = flat_uc("mov eax, 1\nstop_here: mov eax, 2\nmov eax, 3\nhlt\n")
    uc.emu_start(CODE, code["stop_here"])
    assert (eip(uc), uc.reg_read(X.UC_X86_REG_EAX)) == (code["stop_here"], 1)


def test_until_is_ignored_with_exits_enabled_and_an_empty_exit_list():
    """The run loop enables exits with an empty list so that no stale `until` can stop a
    slice early or late (#2341): slices end only by hooks and HLT."""
    uc, code = flat_uc("mov eax, 1\nstop_here: mov eax, 2\nmov eax, 3\nhlt\n")
    uc.ctl_exits_enabled(True)
    uc.ctl_set_exits([])
    uc.emu_start(CODE, code["stop_here"])
    assert uc.reg_read(X.UC_X86_REG_EAX) == 3
    assert uc.mem_read(eip(uc) - 1, 1) == b"\xf4"


def test_ctl_remove_cache_translates_its_address_through_the_guest_page_tables():
    """Why GuestMemory invalidates with tb_invalidate_phys_range instead: Unicorn's
    ctl_remove_cache takes a virtual address and looks it up through the guest's page
    tables with the current privilege; a physical address the guest has not mapped at
    the same virtual address leaves the old translation in place."""
    from vmm.memory import GuestMemory

    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    memory = GuestMemory(uc, 4 * 1024 * 1024)
    setup_flat(uc, map_ram=False)
    directory, table_low, table_code = 0x10000, 0x11000, 0x12000
    for page in range(0, 0x100000, 0x1000):
        memory.write_u32(directory, table_low | 3)
        memory.write_u32(table_low + (page >> 12) * 4, page | 3)
    memory.write_u32(directory + (0x400000 >> 22) * 4, table_code | 3)
    memory.write_u32(table_code, 0x200000 | 3)
    uc.reg_write(X.UC_X86_REG_CR3, directory)
    uc.reg_write(X.UC_X86_REG_CR0, 0x80000011)
    memory.view[0x200000 : 0x200000 + 6] = assemble("mov eax, 1\nhlt\n", 0x400000).code
    uc.emu_start(0x400000, 0)
    memory.view[0x200000 : 0x200000 + 6] = assemble("mov eax, 2\nhlt\n", 0x400000).code
    uc.ctl_remove_cache(0x200000, 0x200006)  # physical address: not what it takes
    uc.emu_start(0x400000, 0)
    assert uc.reg_read(X.UC_X86_REG_EAX) == 1  # the stale translation ran
    memory.close()


# -- mem_unmap with paging on ---------------------------------------------------------------
UNMAPPED_PHYSICAL = 0xFE002000  # where our PCI window puts a BAR; no page table maps it


def _paged_uc() -> tuple[Uc, object]:
    uc, code = flat_uc(PAGING_ON + "hlt\n")
    identity_paging(uc)
    uc.emu_start(CODE, 0, count=6)  # paging is on
    uc.mmio_map(UNMAPPED_PHYSICAL, 0x1000, lambda *a: 0, None, lambda *a: None, None)
    return uc, code


def test_mem_unmap_with_paging_on_sets_cr2_and_records_a_page_fault_as_previous_exception():
    """Unicorn 2.1.4 looks the unmapped physical range up in the guest's page tables as a
    linear address: where that misses, CR2 takes the address and old_exception becomes
    14, so the guest's next fault arrives as #DF (Linux sizing a PCI BAR met this)."""
    uc, _ = _paged_uc()
    offsets = context_offsets()
    assert uc.reg_read(X.UC_X86_REG_CR2) == 0
    uc.mem_unmap(UNMAPPED_PHYSICAL, 0x1000)
    assert uc.reg_read(X.UC_X86_REG_CR2) == UNMAPPED_PHYSICAL
    assert context_int(uc, offsets.old_exception) == 14


def test_cpu_unmap_keeps_cr2_and_the_previous_exception_clear():
    cpu = Cpu()
    setup_flat(cpu.uc)
    code = assemble(PAGING_ON + "hlt\n", CODE)
    cpu.uc.mem_write(CODE, code.code)
    identity_paging(cpu.uc)
    cpu.uc.emu_start(CODE, 0, count=6)
    cpu.set_reg("cr2", 0x1234)
    cpu.uc.mmio_map(UNMAPPED_PHYSICAL, 0x1000, lambda *a: 0, None, lambda *a: None, None)
    cpu.unmap(UNMAPPED_PHYSICAL, 0x1000)
    assert not any(begin <= UNMAPPED_PHYSICAL <= end for begin, end, _ in cpu.uc.mem_regions())
    assert cpu.reg("cr2") == 0x1234
    assert context_int(cpu.uc, cpu.offsets.old_exception) == -1


def test_cpu_reads_the_sti_shadow_from_unicorn_and_not_from_the_code_bytes():
    """QEMU keeps the shadow in hflags (HF_INHIBIT_IRQ): set after STI, gone one
    instruction later. A 0xFB byte before EIP that is not an STI means nothing."""
    cpu = Cpu()
    setup_flat(cpu.uc)
    code = assemble("cli\nsti\nnop\nnop\nmov al, 0xfb\nnop\nhlt\n", CODE)
    cpu.uc.mem_write(CODE, code.code)
    cpu.uc.emu_start(CODE, 0, count=2)  # cli; sti
    assert cpu.in_interrupt_shadow()
    cpu.uc.emu_start(cpu.eip, 0, count=1)  # the shadowed nop
    assert not cpu.in_interrupt_shadow()
    cpu.uc.emu_start(cpu.eip, 0, count=2)  # nop; mov al, 0xfb (B0 FB)
    assert cpu.uc.mem_read(cpu.eip - 1, 1) == b"\xfb"  # what the old guess took for STI
    assert not cpu.in_interrupt_shadow()
