"""SCRIPTS programs and memory layout shared by the controller tests: a simple initiator
that runs one SCSI command from selection to bus free, and CDB builders."""

from __future__ import annotations

from devices.scsi import lsi_registers as R
from devices.scsi.lsi_registers import Dstat

from tests.lsi.asm import COMMAND, DATA_IN, DATA_OUT, MSG_IN, MSG_OUT, STATUS, Program
from tests.lsi.fakes import Rig

MSGOUT, CDB, STATUS_BYTE, MSGIN, DATA, TABLE = 0x3000, 0x3100, 0x3200, 0x3300, 0x8000, 0x3800
DONE = 0x600D
IDENTIFY = 0x80


def command_program(cdb_length: int, data_length: int, *, target: int = 0, base: int = 0x1000) -> Program:
    """A simple initiator, phase driven as a driver's SCRIPTS are: select with ATN, send
    IDENTIFY and the CDB, then serve whatever phase the target asks for; on DISCONNECT
    wait for the reselection; after COMMAND COMPLETE wait for bus free and INT DONE."""
    p = Program(base=base)
    p.select(target, "selected", atn=True)
    p.move(1, MSG_OUT, MSGOUT)
    p.move(cdb_length, COMMAND, CDB)
    p.label("dispatch")
    p.jump("data_in", when=DATA_IN)
    p.jump("data_out", if_phase=DATA_OUT)
    p.jump("status", if_phase=STATUS)
    p.jump("msg_in", if_phase=MSG_IN)
    p.int_(0xBAD)
    p.label("data_in").move(data_length or 1, DATA_IN, DATA).jump("dispatch")
    p.label("data_out").move(data_length or 1, DATA_OUT, DATA).jump("dispatch")
    p.label("status").move(1, STATUS, STATUS_BYTE).jump("dispatch")
    p.label("msg_in").move(1, MSG_IN, MSGIN)
    p.jump("complete", data=0x00)
    p.jump("disconnected", data=0x04)
    p.clear(ack=True).jump("dispatch")  # SAVE DATA POINTER, IDENTIFY after reselection
    p.label("disconnected").clear(ack=True).wait_disconnect()
    p.wait_reselect("selected")
    p.jump("dispatch")
    p.label("complete").clear(ack=True).wait_disconnect()
    p.int_(DONE)
    p.label("selected").int_(0xDEAD)  # SELECT lost to a reselection, or SIGP
    return p


def do_command(rig: Rig, cdb: bytes, data_length: int = 0, *, out: bytes = b"", lun: int = 0) -> tuple[int, bytes]:
    """Run one command; returns (status byte, data-in bytes)."""
    rig.poke(MSGOUT, bytes([IDENTIFY | lun]))
    rig.poke(CDB, cdb)
    rig.poke(DATA, out)
    rig.run(command_program(len(cdb), data_length))
    assert rig.dstat() & Dstat.SIR, "the program ends with INT"
    assert rig.r32(R.DSPS) == DONE
    return rig.peek(STATUS_BYTE, 1)[0], rig.peek(DATA, data_length)


def read10(lba: int, blocks: int) -> bytes:
    return bytes([0x28, 0]) + lba.to_bytes(4, "big") + bytes([0]) + blocks.to_bytes(2, "big") + bytes([0])


def write10(lba: int, blocks: int) -> bytes:
    return bytes([0x2A, 0]) + lba.to_bytes(4, "big") + bytes([0]) + blocks.to_bytes(2, "big") + bytes([0])


def connect(rig: Rig, p: Program | None = None, *, atn: bool = True) -> Program:
    """A program that selects target 0 and then continues with what the caller appends."""
    p = p or Program()
    p.select(0, "alt", atn=atn)
    return p


def finish(p: Program) -> Program:
    return p.int_(DONE).label("alt").int_(0xA17)
