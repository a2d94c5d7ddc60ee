"""Command descriptor blocks: operation codes and decoding into named fields.

Decoding is pure: it looks at the CDB bytes only (no disk state), so the target can
learn the direction and length of a command before any data moves. Field positions are
those of SPC-4 (T10/1731-D) and SBC-3 (T10/1799-D), named per command below. A CDB
that the standard says must be refused raises :class:`CheckCondition`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from devices.scsi.sense import (
    INVALID_COMMAND_OPERATION_CODE,
    INVALID_FIELD_IN_CDB,
    CheckCondition,
    illegal_request,
)


class Op(enum.IntEnum):
    """Operation codes this disk implements (SPC-4 annex E, SBC-3)."""

    TEST_UNIT_READY = 0x00
    REQUEST_SENSE = 0x03
    READ_6 = 0x08
    WRITE_6 = 0x0A
    INQUIRY = 0x12
    MODE_SELECT_6 = 0x15
    MODE_SENSE_6 = 0x1A
    START_STOP_UNIT = 0x1B
    READ_CAPACITY_10 = 0x25
    READ_10 = 0x28
    WRITE_10 = 0x2A
    VERIFY_10 = 0x2F
    SYNCHRONIZE_CACHE_10 = 0x35
    UNMAP = 0x42
    MODE_SELECT_10 = 0x55
    MODE_SENSE_10 = 0x5A
    READ_16 = 0x88
    WRITE_16 = 0x8A
    SYNCHRONIZE_CACHE_16 = 0x91
    SERVICE_ACTION_IN_16 = 0x9E
    REPORT_LUNS = 0xA0
    READ_12 = 0xA8
    WRITE_12 = 0xAA


SA_READ_CAPACITY_16 = 0x10  # SERVICE ACTION IN(16), SBC-3

READS = frozenset({Op.READ_6, Op.READ_10, Op.READ_12, Op.READ_16})
WRITES = frozenset({Op.WRITE_6, Op.WRITE_10, Op.WRITE_12, Op.WRITE_16})

# CONTROL byte (SAM-5): NACA and the obsolete LINK bit, neither supported.
CONTROL_NACA = 0x04
CONTROL_LINK = 0x01

# START STOP UNIT POWER CONDITION values (SBC-3) that are accepted.
POWER_CONDITIONS = frozenset({0x0, 0x1, 0x2, 0x3, 0x7, 0xA, 0xB})


def cdb_length(opcode: int) -> int | None:
    """CDB length from the group code (SPC-4); None for reserved/vendor groups."""
    return {0: 6, 1: 10, 2: 10, 4: 16, 5: 12}.get(opcode >> 5)


@dataclass(frozen=True)
class Cdb:
    """A decoded CDB: the fields of every implemented command, unused ones left at 0."""

    op: Op
    lba: int = 0
    blocks: int = 0  # TRANSFER / VERIFICATION LENGTH, NUMBER OF LOGICAL BLOCKS
    length: int = 0  # ALLOCATION LENGTH or PARAMETER LIST LENGTH, in bytes
    fua: bool = False  # READ/WRITE(10/12/16): force unit access
    evpd: bool = False  # INQUIRY
    page: int = 0  # INQUIRY page code, MODE SENSE page code
    subpage: int = 0  # MODE SENSE
    pc: int = 0  # MODE SENSE page control: 0 current, 1 changeable, 2 default, 3 saved
    dbd: bool = False  # MODE SENSE: disable block descriptors
    llbaa: bool = False  # MODE SENSE(10): long LBA block descriptors accepted
    bytchk: int = 0  # VERIFY: 0 medium only, 1 compare blocks, 3 compare one block to all
    desc: bool = False  # REQUEST SENSE: descriptor format requested
    pf: bool = False  # MODE SELECT: page format
    sp: bool = False  # MODE SELECT: save pages
    start: bool = False  # START STOP UNIT
    loej: bool = False  # START STOP UNIT
    no_flush: bool = False  # START STOP UNIT
    power_condition: int = 0  # START STOP UNIT
    select_report: int = 0  # REPORT LUNS


def _be(data: bytes, start: int, end: int) -> int:
    return int.from_bytes(data[start:end], "big")


def _invalid() -> CheckCondition:
    return illegal_request(INVALID_FIELD_IN_CDB)


def _protect(c: bytes) -> None:
    """RDPROTECT / WRPROTECT / VRPROTECT (byte 1 bits 7-5): no protection information."""
    if c[1] >> 5:
        raise _invalid()


def decode(cdb: bytes) -> Cdb:
    """Decode ``cdb``; raises CheckCondition for an unknown opcode or an invalid field.

    Bytes past the command's CDB length are ignored (controllers may pad to 12 or 16).
    """
    if not cdb:
        raise illegal_request(INVALID_COMMAND_OPERATION_CODE)
    try:
        op = Op(cdb[0])
    except ValueError:
        raise illegal_request(INVALID_COMMAND_OPERATION_CODE) from None
    n = cdb_length(op)
    assert n is not None  # every implemented opcode is in a defined group
    if len(cdb) < n:
        raise _invalid()
    c = bytes(cdb[:n])
    if c[-1] & (CONTROL_NACA | CONTROL_LINK):
        raise _invalid()

    if op is Op.TEST_UNIT_READY:  # SPC-4
        return Cdb(op)
    if op is Op.REQUEST_SENSE:  # SPC-4
        return Cdb(op, desc=bool(c[1] & 0x01), length=c[4])
    if op in (Op.READ_6, Op.WRITE_6):  # SBC-3: length 0 means 256 blocks
        return Cdb(op, lba=_be(c, 1, 4) & 0x1FFFFF, blocks=c[4] or 256)
    if op is Op.INQUIRY:  # SPC-4
        evpd = bool(c[1] & 0x01)
        if c[1] & 0x02 or (not evpd and c[2] != 0):  # CMDDT (obsolete), page without EVPD
            raise _invalid()
        return Cdb(op, evpd=evpd, page=c[2], length=_be(c, 3, 5))
    if op in (Op.MODE_SELECT_6, Op.MODE_SELECT_10):  # SPC-4
        length = c[4] if op is Op.MODE_SELECT_6 else _be(c, 7, 9)
        return Cdb(op, pf=bool(c[1] & 0x10), sp=bool(c[1] & 0x01), length=length)
    if op in (Op.MODE_SENSE_6, Op.MODE_SENSE_10):  # SPC-4
        length = c[4] if op is Op.MODE_SENSE_6 else _be(c, 7, 9)
        llbaa = op is Op.MODE_SENSE_10 and bool(c[1] & 0x10)
        return Cdb(op, dbd=bool(c[1] & 0x08), llbaa=llbaa, pc=c[2] >> 6, page=c[2] & 0x3F,
                   subpage=c[3], length=length)
    if op is Op.START_STOP_UNIT:  # SBC-3
        power = c[4] >> 4
        if power not in POWER_CONDITIONS:
            raise _invalid()
        return Cdb(op, power_condition=power, no_flush=bool(c[4] & 0x04),
                   loej=bool(c[4] & 0x02), start=bool(c[4] & 0x01))
    if op is Op.READ_CAPACITY_10:  # SBC-3: LBA must be zero unless PMI
        lba = _be(c, 2, 6)
        if lba and not c[8] & 0x01:
            raise _invalid()
        return Cdb(op, lba=lba)
    if op in (Op.READ_10, Op.WRITE_10):  # SBC-3
        _protect(c)
        return Cdb(op, fua=bool(c[1] & 0x08), lba=_be(c, 2, 6), blocks=_be(c, 7, 9))
    if op in (Op.READ_12, Op.WRITE_12):  # SBC-3
        _protect(c)
        return Cdb(op, fua=bool(c[1] & 0x08), lba=_be(c, 2, 6), blocks=_be(c, 6, 10))
    if op in (Op.READ_16, Op.WRITE_16):  # SBC-3
        _protect(c)
        return Cdb(op, fua=bool(c[1] & 0x08), lba=_be(c, 2, 10), blocks=_be(c, 10, 14))
    if op is Op.VERIFY_10:  # SBC-3 (BYTCHK as the 2-bit field of SBC-4; 10b reserved)
        _protect(c)
        bytchk = (c[1] >> 1) & 0x03
        if bytchk == 2:
            raise _invalid()
        return Cdb(op, bytchk=bytchk, lba=_be(c, 2, 6), blocks=_be(c, 7, 9))
    if op is Op.SYNCHRONIZE_CACHE_10:  # SBC-3
        return Cdb(op, lba=_be(c, 2, 6), blocks=_be(c, 7, 9))
    if op is Op.SYNCHRONIZE_CACHE_16:  # SBC-3
        return Cdb(op, lba=_be(c, 2, 10), blocks=_be(c, 10, 14))
    if op is Op.UNMAP:  # SBC-3: ANCHOR needs ANC_SUP, which this disk does not set
        if c[1] & 0x01:
            raise _invalid()
        return Cdb(op, length=_be(c, 7, 9))
    if op is Op.SERVICE_ACTION_IN_16:  # SBC-3 READ CAPACITY(16), the one service action
        if c[1] & 0x1F != SA_READ_CAPACITY_16:
            raise _invalid()
        lba = _be(c, 2, 10)
        if lba and not c[14] & 0x01:
            raise _invalid()
        return Cdb(op, lba=lba, length=_be(c, 10, 14))
    if op is Op.REPORT_LUNS:  # SPC-4 (allocation length below 16 refused, as SPC-3)
        length = _be(c, 6, 10)
        if length < 16:
            raise _invalid()
        return Cdb(op, select_report=c[2], length=length)
    raise AssertionError(f"opcode {op!r} has no decoder")  # pragma: no cover
