"""Port I/O from a running guest (vmm/portio.py, vmm/native/fastpath.c, the run loop).

Small guests on a hand-built machine (tests/vmm/rig.py) move strings through a test
device and touch ports from ring 3; the tests check what reaches the device, what lands
in guest memory, and the registers the guest sees afterwards.
"""

from __future__ import annotations

import pytest

from tests.unicorn.asm import assemble
from tests.vmm.rig import CODE, MAILBOX, TSS_SEL, USER_CS, USER_DS, USER_STACK, Rig

PORT = 0x300
BUFFER = 0x40000
GP = 13

# After the code under test: store the registers and a run counter, then exit(0).
RECORD_AND_EXIT = f"""
    inc dword ptr [{MAILBOX + 0x20:#x}]
    mov [{MAILBOX + 0x00:#x}], eax
    mov [{MAILBOX + 0x04:#x}], ebx
    mov [{MAILBOX + 0x08:#x}], ecx
    mov [{MAILBOX + 0x0C:#x}], esi
    mov [{MAILBOX + 0x10:#x}], edi
    mov al, 0
    out 0xf4, al
    hlt
"""
# A #GP handler that records the registers as the fault left them, then exit(13).
GP_RECORDER = f"""
    mov [{MAILBOX + 0x00:#x}], eax
    mov [{MAILBOX + 0x04:#x}], ebx
    mov [{MAILBOX + 0x08:#x}], ecx
    mov [{MAILBOX + 0x0C:#x}], esi
    mov [{MAILBOX + 0x10:#x}], edi
    mov al, 13
    out 0xf4, al
    hlt
"""
GP_RECORDER_AT = 0x30000


class StringDevice:
    """Answers whole strings: one call per ``rep ins/outs``."""

    name = "stringdev"

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def read(self, offset: int, size: int) -> int:
        self.calls.append(("read", offset, size))
        return 0xA5

    def write(self, offset: int, size: int, value: int) -> None:
        self.calls.append(("write", offset, size, value))

    def write_string(self, offset: int, size: int, data: bytes) -> None:
        self.calls.append(("write_string", offset, size, bytes(data)))

    def read_string(self, offset: int, size: int, count: int) -> list[int]:
        self.calls.append(("read_string", offset, size, count))
        return [(0x100 + i) & ((1 << (8 * size)) - 1) for i in range(count)]


class PlainDevice:
    """Only element-wise read/write; reads count up from 1."""

    name = "plaindev"

    def __init__(self) -> None:
        self.writes: list[tuple[int, int, int]] = []
        self.reads = 0

    def read(self, offset: int, size: int) -> int:
        self.reads += 1
        return self.reads

    def write(self, offset: int, size: int, value: int) -> None:
        self.writes.append((offset, size, value))


def machine_with(device, ports_length: int = 8) -> Rig:
    rig = Rig()
    rig.machine.ports.register(PORT, ports_length, device)
    rig.load(assemble(GP_RECORDER, GP_RECORDER_AT))
    rig.set_gate(GP, offset=GP_RECORDER_AT)
    return rig


def recorded(rig: Rig) -> dict[str, int]:
    eax, ebx, ecx, esi, edi = rig.dwords(MAILBOX, 5)
    return {"eax": eax, "ebx": ebx, "ecx": ecx, "esi": esi, "edi": edi, "runs": rig.dwords(MAILBOX + 0x20, 1)[0]}


# -- string I/O in one exit ------------------------------------------------------------------------

def test_rep_outsw_of_757_words_reaches_write_string_in_one_call():
    device = StringDevice()
    rig = machine_with(device)
    words = bytes((i * 7) & 0xFF for i in range(757 * 2))
    rig.memory.write(BUFFER, words)
    rig.load(assemble(f"""
        cld
        mov esi, {BUFFER:#x}
        mov ecx, 757
        mov dx, {PORT + 2:#x}
        rep outsw
    """ + RECORD_AND_EXIT, CODE))
    assert rig.run().status == 0
    assert device.calls == [("write_string", 2, 2, words)]
    regs = recorded(rig)
    assert (regs["ecx"], regs["esi"], regs["runs"]) == (0, BUFFER + 757 * 2, 1)
    assert rig.machine.stats.by_reason["string I/O"] == 1
    assert rig.machine.ports.exits[device.name] == 1


def test_rep_outsw_to_a_device_without_write_string_is_757_writes_in_one_exit():
    device = PlainDevice()
    rig = machine_with(device)
    rig.memory.write(BUFFER, b"".join(i.to_bytes(2, "little") for i in range(757)))
    rig.load(assemble(f"""
        cld
        mov esi, {BUFFER:#x}
        mov ecx, 757
        mov dx, {PORT:#x}
        rep outsw
    """ + RECORD_AND_EXIT, CODE))
    assert rig.run().status == 0
    assert device.writes == [(0, 2, i) for i in range(757)]
    regs = recorded(rig)
    assert (regs["ecx"], regs["esi"], regs["runs"]) == (0, BUFFER + 757 * 2, 1)
    assert rig.machine.stats.by_reason["string I/O"] == 1


def test_rep_insw_fills_memory_from_read_string_in_one_call():
    device = StringDevice()
    rig = machine_with(device)
    rig.load(assemble(f"""
        cld
        mov edi, {BUFFER:#x}
        mov ecx, 300
        mov dx, {PORT:#x}
        rep insw
    """ + RECORD_AND_EXIT, CODE))
    assert rig.run().status == 0
    assert device.calls == [("read_string", 0, 2, 300)]
    assert rig.memory.read(BUFFER, 600) == b"".join((0x100 + i).to_bytes(2, "little") for i in range(300))
    assert rig.memory.read(BUFFER + 600, 2) == bytes(2)
    regs = recorded(rig)
    assert (regs["ecx"], regs["edi"], regs["runs"]) == (0, BUFFER + 600, 1)


def test_rep_insb_with_df_set_fills_memory_downward():
    device = PlainDevice()  # reads 1, 2, 3, ...
    rig = machine_with(device)
    top = BUFFER + 0x100
    rig.memory.write(top - 0x20, b"\xee" * 0x40)
    rig.load(assemble(f"""
        std
        mov edi, {top:#x}
        mov ecx, 16
        mov dx, {PORT:#x}
        rep insb
        cld
    """ + RECORD_AND_EXIT, CODE))
    assert rig.run().status == 0
    assert rig.memory.read(top - 15, 16) == bytes(range(16, 0, -1))  # first element at EDI
    assert rig.memory.read(top - 16, 1) == b"\xee"
    assert rig.memory.read(top + 1, 1) == b"\xee"
    regs = recorded(rig)
    assert (regs["ecx"], regs["edi"], regs["runs"]) == (0, top - 16, 1)


def test_rep_outsb_with_df_set_sends_bytes_in_descending_address_order():
    device = StringDevice()
    rig = machine_with(device)
    rig.memory.write(BUFFER, b"abcdefgh")
    rig.load(assemble(f"""
        std
        mov esi, {BUFFER + 7:#x}
        mov ecx, 8
        mov dx, {PORT:#x}
        rep outsb
        cld
    """ + RECORD_AND_EXIT, CODE))
    assert rig.run().status == 0
    assert device.calls == [("write_string", 0, 1, b"hgfedcba")]
    regs = recorded(rig)
    assert (regs["ecx"], regs["esi"]) == (0, BUFFER - 1)


def test_rep_outsd_gathers_a_buffer_spread_over_discontiguous_physical_pages():
    device = StringDevice()
    rig = machine_with(device)
    page_directory, page_table = 0x100000, 0x101000
    rig.memory.write_u32(page_directory, page_table | 3)
    for page in range(1024):
        rig.memory.write_u32(page_table + 4 * page, (page << 12) | 3)
    # Linear 0x80000-0x81fff -> physical 0x1F0000 and 0x170000.
    rig.memory.write_u32(page_table + 4 * 0x80, 0x1F0000 | 3)
    rig.memory.write_u32(page_table + 4 * 0x81, 0x170000 | 3)
    rig.memory.write(0x1F0FF8, b"ABCDEFGH")
    rig.memory.write(0x170000, b"IJKLMNOP")
    rig.cpu.set_reg("cr3", page_directory)
    rig.cpu.set_reg("cr0", rig.reg("cr0") | 0x80000000)
    rig.load(assemble(f"""
        cld
        mov esi, 0x80ff8
        mov ecx, 4
        mov dx, {PORT:#x}
        rep outsd
    """ + RECORD_AND_EXIT, CODE))
    assert rig.run().status == 0
    assert device.calls == [("write_string", 0, 4, b"ABCDEFGHIJKLMNOP")]
    assert recorded(rig)["esi"] == 0x81008


def test_rep_with_ecx_zero_touches_no_port():
    device = StringDevice()
    rig = machine_with(device)
    rig.load(assemble(f"""
        cld
        mov esi, {BUFFER:#x}
        xor ecx, ecx
        mov dx, {PORT:#x}
        rep outsb
    """ + RECORD_AND_EXIT, CODE))
    assert rig.run().status == 0
    assert device.calls == []
    assert recorded(rig)["esi"] == BUFFER


def test_single_insb_stores_one_element_and_advances_edi_once():
    device = PlainDevice()
    rig = machine_with(device)
    rig.load(assemble(f"""
        cld
        mov edi, {BUFFER:#x}
        mov ecx, 77
        mov dx, {PORT:#x}
        insb
    """ + RECORD_AND_EXIT, CODE))
    assert rig.run().status == 0
    assert device.reads == 1
    assert rig.memory.read(BUFFER, 2) == b"\x01\x00"
    regs = recorded(rig)
    assert (regs["ecx"], regs["edi"], regs["runs"]) == (77, BUFFER + 1, 1)


def test_single_outsb_followed_by_register_instructions_runs_them_once():
    device = PlainDevice()
    rig = machine_with(device)
    rig.memory.write(BUFFER, b"Z")
    rig.load(assemble(f"""
        cld
        mov esi, {BUFFER:#x}
        xor ebx, ebx
        mov dx, {PORT:#x}
        outsb
        inc ebx
        inc ebx
        jmp record
    record:
    """ + RECORD_AND_EXIT, CODE))
    assert rig.run().status == 0
    assert device.writes == [(0, 1, ord("Z"))]
    regs = recorded(rig)
    assert (regs["esi"], regs["ebx"]) == (BUFFER + 1, 2)


# -- plain IN/OUT ----------------------------------------------------------------------------------

def test_in_and_out_reach_the_device_with_the_access_width():
    device = PlainDevice()
    rig = machine_with(device)
    rig.load(assemble(f"""
        mov dx, {PORT + 4:#x}
        mov eax, 0x12345678
        out dx, eax
        out dx, ax
        out dx, al
        xor eax, eax
        in ax, dx
        mov ebx, eax
        mov eax, 0xffffffff
        in al, dx
    """ + RECORD_AND_EXIT, CODE))
    assert rig.run().status == 0
    assert device.writes == [(4, 4, 0x12345678), (4, 2, 0x5678), (4, 1, 0x78)]
    regs = recorded(rig)
    assert regs["ebx"] == 1
    assert regs["eax"] & 0xFFFFFF00 == 0xFFFFFF00 and regs["eax"] & 0xFF == 2


def test_guest_reads_all_ones_from_an_unclaimed_port():
    rig = machine_with(PlainDevice())
    rig.load(assemble("""
        xor eax, eax
        mov dx, 0x2e
        in eax, dx
        mov ebx, eax
        xor eax, eax
        in al, 0x79
    """ + RECORD_AND_EXIT, CODE))
    assert rig.run().status == 0
    regs = recorded(rig)
    assert (regs["ebx"], regs["eax"]) == (0xFFFFFFFF, 0xFF)


# -- the I/O permission check at ring 3 -------------------------------------------------------------

def user_io(rig: Rig, body: str, eflags: int = 0x202):
    code = assemble(body + "\nint 0x30\n", CODE)  # vector 0x30: exits with status 48
    rig.load(code)
    rig.set_gate(0x30, dpl=3)
    rig.enter_user(CODE, eflags=eflags)
    return code, rig.run()


def test_ring3_in_allowed_by_the_tss_bitmap_with_iopl_0_reads_the_device():
    device = PlainDevice()
    rig = machine_with(device)
    rig.allow_port(PORT)
    code, result = user_io(rig, f"mov dx, {PORT:#x}\nxor eax, eax\nin al, dx\nmov ebx, eax\n")
    assert result.status == 0x30
    assert device.reads == 1
    assert rig.reg("ebx") == 1


def test_ring3_in_denied_by_the_tss_bitmap_gives_gp_0_at_the_instruction():
    device = PlainDevice()
    rig = machine_with(device)
    rig.allow_port(PORT + 1)  # a neighbour, not the port used
    code, result = user_io(rig, f"mov dx, {PORT:#x}\nmov eax, 0x11111111\nrefused: in al, dx\n")
    assert result.status == GP
    assert device.reads == 0
    assert recorded(rig)["eax"] == 0x11111111
    frame = rig.stack(6)
    assert frame == [0, code["refused"], USER_CS, 0x202, USER_STACK, USER_DS]


def test_ring3_out_denied_writes_nothing():
    device = PlainDevice()
    rig = machine_with(device)
    code, result = user_io(rig, f"mov dx, {PORT:#x}\nrefused: out dx, al\n")
    assert result.status == GP
    assert device.writes == []
    assert rig.stack(2) == [0, code["refused"]]


def test_ring3_word_access_needs_the_bits_of_both_ports():
    device = PlainDevice()
    rig = machine_with(device)
    rig.allow_port(PORT + 7)  # the word at 0x307 also covers 0x308 (denied, next byte)
    code, result = user_io(rig, f"mov dx, {PORT + 7:#x}\nrefused: in ax, dx\n")
    assert result.status == GP
    assert rig.stack(2) == [0, code["refused"]]
    rig2 = machine_with(PlainDevice())
    rig2.allow_port(PORT + 7)
    rig2.allow_port(PORT + 8)
    _, result2 = user_io(rig2, f"mov dx, {PORT + 7:#x}\nin ax, dx\n")
    assert result2.status == 0x30


def test_ring3_with_iopl_3_needs_no_bitmap():
    device = PlainDevice()
    rig = machine_with(device)  # every bitmap bit set
    _, result = user_io(rig, f"mov dx, {PORT:#x}\nin al, dx\nout dx, al\n", eflags=0x3202)
    assert result.status == 0x30
    assert (device.reads, device.writes) == (1, [(0, 1, 1)])


def test_tss_without_an_io_bitmap_denies_every_port_at_ring3():
    rig = machine_with(PlainDevice())
    rig.allow_port(PORT)
    _, tss_base, _, flags = rig.cpu.table("tr")
    rig.cpu.set_reg("tr", (TSS_SEL, tss_base, 0x67, flags))  # limit ends before the bitmap
    code, result = user_io(rig, f"mov dx, {PORT:#x}\nrefused: in al, dx\n")
    assert result.status == GP
    assert rig.stack(2) == [0, code["refused"]]


def test_ring3_rep_insw_allowed_by_the_bitmap_is_served_in_one_exit():
    device = StringDevice()
    rig = machine_with(device)
    rig.allow_port(PORT)
    rig.allow_port(PORT + 1)  # a word at PORT covers PORT + 1 too
    _, result = user_io(rig, f"cld\nmov edi, {BUFFER:#x}\nmov ecx, 64\nmov dx, {PORT:#x}\nrep insw\n")
    assert result.status == 0x30
    assert device.calls == [("read_string", 0, 2, 64)]
    assert rig.memory.read(BUFFER, 4) == bytes.fromhex("0001" "0101")
    assert (rig.reg("ecx"), rig.reg("edi")) == (0, BUFFER + 128)


DENIED_REP_INSB = f"""
    cld
    mov eax, 0x41424344
    mov edi, {BUFFER:#x}
    mov ecx, 4
    mov dx, {PORT:#x}
refused:
    rep insb
"""


def test_ring3_rep_insb_denied_gives_gp_with_ecx_and_edi_untouched():
    device = StringDevice()
    rig = machine_with(device)
    code, result = user_io(rig, DENIED_REP_INSB)
    assert result.status == GP
    assert device.calls == []
    regs = recorded(rig)
    assert (regs["eax"], regs["ecx"], regs["edi"]) == (0x41424344, 4, BUFFER)
    assert rig.stack(2) == [0, code["refused"]]


@pytest.mark.xfail(strict=True, reason=(
    "known gap: Unicorn (QEMU's gen_ins) stores a dummy 0 to ES:EDI before the IN hook runs, "
    "so a refused INS leaves a 0 element in guest memory (here b'\\x00eep'): the old "
    "byte is gone before the monitor can see the access (docs/monitor.md, known gaps)"
))
def test_ring3_rep_insb_denied_leaves_memory_untouched():
    rig = machine_with(StringDevice())
    rig.memory.write(BUFFER, b"keep")
    _, result = user_io(rig, DENIED_REP_INSB)
    assert result.status == GP
    assert rig.memory.read(BUFFER, 4) == b"keep"


def test_ring3_in_denied_runs_no_instruction_after_it():
    rig = machine_with(PlainDevice())
    user_io(rig, f"""
        xor ebx, ebx
        mov dx, {PORT:#x}
        in al, dx
        mov ebx, 7
        mov ebx, 8
    """)
    assert recorded(rig)["ebx"] == 0


def test_ring3_in_denied_lets_no_later_out_reach_a_device():
    device = PlainDevice()
    rig = machine_with(device)
    rig.allow_port(PORT + 1)
    code, result = user_io(rig, f"""
        mov dx, {PORT:#x}
    refused:
        in al, dx
        mov dx, {PORT + 1:#x}
        out dx, al
    """)
    assert result.status == GP
    assert rig.stack(2) == [0, code["refused"]]
    assert device.writes == []


def test_ring3_rep_outsb_denied_leaves_ecx_and_esi_untouched():
    device = StringDevice()
    rig = machine_with(device)
    code, result = user_io(rig, f"""
        cld
        mov esi, {BUFFER:#x}
        mov ecx, 5
        mov dx, {PORT:#x}
    refused:
        rep outsb
    """)
    assert result.status == GP
    assert device.calls == []
    regs = recorded(rig)
    assert (regs["ecx"], regs["esi"]) == (5, BUFFER)


# -- strings that run past the end of RAM -------------------------------------------------------

RAM_END = 4 * 1024 * 1024  # the rig's RAM


def test_rep_insb_running_past_the_end_of_ram_stores_what_fits_and_continues():
    device = PlainDevice()
    rig = machine_with(device)
    rig.load(assemble(f"""
        cld
        mov edi, {RAM_END - 4:#x}
        mov ecx, 16
        mov dx, {PORT:#x}
        rep insb
    """ + RECORD_AND_EXIT, CODE))
    assert rig.run().status == 0
    assert rig.memory.read(RAM_END - 4, 4) == bytes([1, 2, 3, 4])
    assert device.reads == 16  # the rest went to the open bus
    regs = recorded(rig)
    assert (regs["ecx"], regs["edi"]) == (0, RAM_END + 12)


def test_rep_outsb_running_past_the_end_of_ram_sends_all_ones_for_the_missing_part():
    device = PlainDevice()
    rig = machine_with(device)
    rig.memory.write(RAM_END - 4, b"tail")
    rig.load(assemble(f"""
        cld
        mov esi, {RAM_END - 4:#x}
        mov ecx, 16
        mov dx, {PORT:#x}
        rep outsb
    """ + RECORD_AND_EXIT, CODE))
    assert rig.run().status == 0
    assert bytes(value for _, _, value in device.writes) == b"tail" + b"\xff" * 12
    assert recorded(rig)["esi"] == RAM_END + 12
