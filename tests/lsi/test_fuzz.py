"""Bad input from the guest never crashes the monitor: random SCRIPTS programs, mutated
valid programs and random register traffic end in a status the guest can read (or in a
program still running), never in a Python exception, and every call into the controller
returns within one slice of SCRIPTS instructions.

Reproducers of problems found along the way are kept as named tests at the end.
"""

from __future__ import annotations

import os
import struct

from hypothesis import HealthCheck, given, settings, strategies as st

from devices.base import ManualClock
from devices.scsi import lsi_registers as R
from devices.scsi.lsi_registers import Dstat, Istat
from devices.scsi.scripts import EngineState

from tests.lsi.asm import Program
from tests.lsi.fakes import MMIO_BASE, RAM_BAR_BASE, RAM_SIZE, Rig
from tests.lsi.test_registers import assert_plain
from tests.lsi.programs import CDB, DATA, MSGOUT, command_program, read10, write10

SLICE = 200
BASE = 0x1000
# A few seconds by default; LSI_FUZZ_EXAMPLES=5000 for a long run.
FUZZ = settings(
    max_examples=int(os.environ.get("LSI_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

dwords = st.one_of(
    st.integers(0, 0xFFFFFFFF),  # anything
    st.integers(0, RAM_SIZE - 1),  # an address in RAM
    st.sampled_from([MMIO_BASE + R.ISTAT, MMIO_BASE + R.DSP, RAM_BAR_BASE, BASE, DATA]),  # own BARs
    st.integers(0, 0xFF).map(lambda low: 0x80080000 | low),  # jumps
    st.integers(0, 0x3F).map(lambda op: (op << 26) | 0x00000004),  # every opcode, small count
)


def fuzz_rig() -> Rig:
    rig = Rig(clock=ManualClock())
    rig.chip.slice_instructions = SLICE
    rig.poke(MSGOUT, b"\x80")
    rig.poke(CDB, read10(0, 1))
    return rig


def bounded(rig: Rig, action) -> None:
    """Run one call into the controller and check it stayed within a slice."""
    before = rig.chip.scripts.executed
    action()
    assert rig.chip.scripts.executed - before <= SLICE


def drive(rig: Rig, calls: int = 4) -> None:
    """Let the machine's run loop give the controller a few more slices."""
    for _ in range(calls):
        deadline = rig.chip.next_deadline_ns()
        if deadline is None:
            break
        rig.clock.ns = max(rig.clock.ns, deadline)
        bounded(rig, lambda: rig.chip.advance_to(rig.clock.ns))


def check_state_round_trip(rig: Rig) -> None:
    state = rig.chip.save_state()
    assert_plain(state)
    other = fuzz_rig()
    other.chip.load_state(state)
    assert other.chip.save_state() == state


@FUZZ
@given(
    words=st.lists(dwords, min_size=2, max_size=48),
    dsa=st.sampled_from([0, 0x3800, RAM_SIZE - 4, 0xFFFFFFF0]),
    connected=st.booleans(),
)
def test_random_programs_end_in_a_guest_visible_state(words, dsa, connected):
    rig = fuzz_rig()
    prologue = Program(base=BASE).select(0, BASE).move(1, 6, MSGOUT).assemble() if connected else b""
    rig.poke(BASE, prologue + struct.pack(f"<{len(words)}I", *words))
    rig.w32(R.DSA, dsa)
    bounded(rig, lambda: rig.w32(R.DSP, BASE))
    drive(rig)
    if rig.chip.scripts.state is EngineState.STOPPED:
        assert rig.r8(R.ISTAT) & (Istat.DIP | Istat.SIP | Istat.INTF) or rig.chip.regs.dstat == 0
    check_state_round_trip(rig)


@FUZZ
@given(
    mutations=st.lists(st.tuples(st.integers(0, 63), st.one_of(dwords, st.integers(0, 31).map(lambda b: -1 - b))), min_size=1, max_size=4),
    write=st.booleans(),
)
def test_mutated_command_programs_never_raise(mutations, write):
    rig = fuzz_rig()
    rig.poke(CDB, write10(1, 1) if write else read10(1, 1))
    image = bytearray(command_program(10, 512).assemble())
    words = list(struct.unpack(f"<{len(image) // 4}I", image))
    for index, value in mutations:
        index %= len(words)
        words[index] = words[index] ^ (1 << (-1 - value)) if value < 0 else value  # flip a bit, or replace
    rig.poke(BASE, struct.pack(f"<{len(words)}I", *words))
    bounded(rig, lambda: rig.w32(R.DSP, BASE))
    drive(rig)
    check_state_round_trip(rig)


register_ops = st.lists(
    st.tuples(
        st.sampled_from(["io", "mmio"]),
        st.integers(0, 0x3FF),
        st.sampled_from([1, 2, 4]),
        st.integers(0, 0xFFFFFFFF),
        st.booleans(),  # read instead of write
    ),
    min_size=1,
    max_size=40,
)


@FUZZ
@given(ops=register_ops)
def test_random_register_traffic_never_raises(ops):
    rig = fuzz_rig()
    rig.poke(BASE, command_program(10, 512).assemble())
    for window, offset, size, value, is_read in ops:
        device = rig.io if window == "io" else rig.mmio
        offset %= 0x100 if window == "io" else 0x400
        size = min(size, (0x100 if window == "io" else 0x400) - offset)
        if is_read:
            result = device.read(offset, size)
            assert type(result) is int and 0 <= result < 1 << (8 * size)
        else:
            bounded(rig, lambda: device.write(offset, size, value))
        rig.clock.advance(100_000)
        drive(rig, calls=1)
    check_state_round_trip(rig)


# -- reproducers ---------------------------------------------------------------------------------
def test_a_program_that_resets_and_restarts_itself_does_not_recurse():
    """One memory move over the controller's own registers, ISTAT (SRST) through DSP,
    resets the chip and restarts SCRIPTS at itself from inside the instruction. Without
    a re-entrancy guard every restart nested a call; now it loops within the slice."""
    rig = fuzz_rig()
    image = bytearray(28)
    image[0] = Istat.SRST  # ISTAT at 0x14 ...
    image[24:28] = BASE.to_bytes(4, "little")  # ... DSP at 0x2C, last byte starts SCRIPTS
    rig.poke(0x5014, bytes(image))
    rig.poke(BASE, Program(base=BASE).memory_move(28, 0x5014, MMIO_BASE + R.ISTAT).assemble())
    bounded(rig, lambda: rig.w32(R.DSP, BASE))
    assert rig.chip.scripts.state is EngineState.RUNNING
    assert rig.disk.resets == SLICE  # every instruction reset the bus once
    drive(rig, calls=3)
    assert rig.disk.resets == 4 * SLICE


def test_an_endless_self_jump_in_scripts_ram_yields_every_slice():
    rig = fuzz_rig()
    rig.ram_bar.write(0, 4, 0x80080000)  # JUMP RAM_BAR_BASE
    rig.ram_bar.write(4, 4, RAM_BAR_BASE)
    bounded(rig, lambda: rig.w32(R.DSP, RAM_BAR_BASE))
    drive(rig, calls=10)
    assert rig.chip.scripts.state is EngineState.RUNNING
    rig.w8(R.ISTAT, Istat.ABRT)
    assert rig.r8(R.DSTAT) & Dstat.ABRT


def test_a_dma_that_straddles_ram_and_nothing_is_a_bus_fault():
    rig = fuzz_rig()
    rig.run(Program(base=BASE).memory_move(64, RAM_SIZE - 32, 0x5000).int_(1))
    assert rig.r8(R.DSTAT) & Dstat.BF


@FUZZ
@given(
    cdb=st.one_of(
        st.binary(min_size=1, max_size=16),
        st.tuples(st.sampled_from([0x00, 0x03, 0x12, 0x1A, 0x25, 0x28, 0x2A, 0x2F, 0x35, 0x5A, 0x88, 0x8A, 0x9E, 0xA0]),
                  st.binary(min_size=5, max_size=15)).map(lambda t: bytes([t[0]]) + t[1]),
    ),
    move=st.sampled_from([1, 18, 36, 255, 512, 4096]),
)
def test_random_cdbs_through_scripts_to_the_disk_end_in_a_status(cdb, move):
    from devices.scsi.disk import ScsiDisk

    from tests.lsi.test_commands import MemoryBackend

    rig = Rig({0: ScsiDisk(MemoryBackend(16), serial="FUZZ")}, clock=ManualClock())
    rig.chip.slice_instructions = SLICE
    rig.poke(MSGOUT, b"\x80")
    rig.poke(CDB, cdb)
    rig.poke(BASE, command_program(len(cdb), move).assemble())
    bounded(rig, lambda: rig.w32(R.DSP, BASE))
    drive(rig)
    dstat, (sist0, sist1) = rig.r8(R.DSTAT), (rig.r8(R.SIST0), rig.r8(R.SIST1))
    # Either the command ran to COMMAND COMPLETE, or a data move of the wrong length
    # stopped with a phase mismatch the driver can see.
    assert (dstat & Dstat.SIR and rig.r32(R.DSPS) in (0x600D, 0xBAD)) or sist0 & R.Sist0.MA, (hex(dstat), sist0, sist1)
    check_state_round_trip(rig)
