"""Sense data: sense keys, additional sense codes and the fixed-format sense builder.

Values after SPC-4 (T10/1731-D): the sense key table and annex D (ASC/ASCQ
assignments), and its fixed-format sense data layout. A target that
ends a command with CHECK CONDITION raises :class:`CheckCondition` internally; the
request turns it into status and sense bytes.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

FIXED_SENSE_LENGTH = 18  # 8-byte header + ADDITIONAL SENSE LENGTH 10
RESPONSE_CODE_CURRENT = 0x70  # fixed format, current error
VALID = 0x80  # byte 0: the INFORMATION field holds a meaningful value


class SenseKey(enum.IntEnum):
    """The sense keys of SPC-4."""

    NO_SENSE = 0x0
    RECOVERED_ERROR = 0x1
    NOT_READY = 0x2
    MEDIUM_ERROR = 0x3
    HARDWARE_ERROR = 0x4
    ILLEGAL_REQUEST = 0x5
    UNIT_ATTENTION = 0x6
    DATA_PROTECT = 0x7
    BLANK_CHECK = 0x8
    VENDOR_SPECIFIC = 0x9
    COPY_ABORTED = 0xA
    ABORTED_COMMAND = 0xB
    VOLUME_OVERFLOW = 0xD
    MISCOMPARE = 0xE


class Asc(NamedTuple):
    """An ADDITIONAL SENSE CODE and its QUALIFIER."""

    asc: int
    ascq: int


# SPC-4 annex D, the codes this disk reports.
NO_ADDITIONAL_SENSE = Asc(0x00, 0x00)
WRITE_ERROR = Asc(0x0C, 0x00)
UNRECOVERED_READ_ERROR = Asc(0x11, 0x00)
PARAMETER_LIST_LENGTH_ERROR = Asc(0x1A, 0x00)
MISCOMPARE_DURING_VERIFY = Asc(0x1D, 0x00)
INVALID_COMMAND_OPERATION_CODE = Asc(0x20, 0x00)
LBA_OUT_OF_RANGE = Asc(0x21, 0x00)
INVALID_FIELD_IN_CDB = Asc(0x24, 0x00)
LOGICAL_UNIT_NOT_SUPPORTED = Asc(0x25, 0x00)
INVALID_FIELD_IN_PARAMETER_LIST = Asc(0x26, 0x00)
WRITE_PROTECTED = Asc(0x27, 0x00)
POWER_ON_RESET_OR_BUS_DEVICE_RESET = Asc(0x29, 0x00)
MODE_PARAMETERS_CHANGED = Asc(0x2A, 0x01)
SAVING_PARAMETERS_NOT_SUPPORTED = Asc(0x39, 0x00)
DATA_PHASE_ERROR = Asc(0x4B, 0x00)


def fixed_sense(key: SenseKey | int, code: Asc, information: int | None = None) -> bytes:
    """Fixed-format sense data (SPC-4), 18 bytes, for a current error.

    ``information`` goes into the 4-byte INFORMATION field with the VALID bit set; a
    value that does not fit (a 64-bit LBA) leaves VALID clear, as SPC-4 requires.
    """
    sense = bytearray(FIXED_SENSE_LENGTH)
    sense[0] = RESPONSE_CODE_CURRENT
    sense[2] = int(key) & 0x0F
    if information is not None and 0 <= information <= 0xFFFFFFFF:
        sense[0] |= VALID
        sense[3:7] = information.to_bytes(4, "big")
    sense[7] = FIXED_SENSE_LENGTH - 8
    sense[12] = code.asc
    sense[13] = code.ascq
    return bytes(sense)


NO_SENSE_DATA = fixed_sense(SenseKey.NO_SENSE, NO_ADDITIONAL_SENSE)


class FixedSense(NamedTuple):
    """The fields of fixed-format sense data that callers look at."""

    key: int
    asc: int
    ascq: int
    information: int | None  # None when the VALID bit is clear


def parse_fixed_sense(sense: bytes) -> FixedSense:
    """Decode fixed-format sense data (response code 70h or 71h); ValueError otherwise."""
    if len(sense) < 14 or sense[0] & 0x7F not in (0x70, 0x71):
        raise ValueError(f"not fixed-format sense data: {bytes(sense[:14]).hex()}")
    info = int.from_bytes(sense[3:7], "big") if sense[0] & VALID else None
    return FixedSense(sense[2] & 0x0F, sense[12], sense[13], info)


class CheckCondition(Exception):
    """A command ends in CHECK CONDITION with this sense (raised inside a target)."""

    def __init__(self, key: SenseKey, code: Asc, information: int | None = None) -> None:
        super().__init__(f"{key.name} {code.asc:02X}/{code.ascq:02X}")
        self.key = key
        self.code = code
        self.information = information

    def sense(self) -> bytes:
        return fixed_sense(self.key, self.code, self.information)


def illegal_request(code: Asc, information: int | None = None) -> CheckCondition:
    """The common case: ILLEGAL REQUEST with an additional sense code."""
    return CheckCondition(SenseKey.ILLEGAL_REQUEST, code, information)
