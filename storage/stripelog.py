"""RAID 5 degraded-write log: keeps the missing member's data recoverable.

With a member gone, its data exists only as parity XOR the other chunks. A crash in
the middle of a stripe write would leave that XOR wrong and lose data nobody wrote to.
So before a degraded stripe write, the missing chunk's current rows are logged (on
every surviving member, made durable); the log is cleared once the stripe write is
durable. Recovery recomputes the logged stripe's parity from the data chunks and the
logged rows (the partial parity log idea of md's PPL).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

LOG_MAGIC = b"PYVMSLOG"
LOG_OFFSET = 4096  # in each RAID 5 member, after the write-intent bitmap
LOG_HEADER = 4096
LOG_DATA = LOG_OFFSET + LOG_HEADER
# magic, version, stripe, first row, end row, missing data chunk index, data crc32;
# then crc32 of these.
_HDR = struct.Struct("<8sIQIIII")
_CRC = struct.Struct("<I")


def reserved_bytes(stripe_unit: int) -> int:
    """Bytes at the start of each RAID 5 member: bitmap, log header, log data, rounded
    up to whole stripe units so that stripe rows stay aligned in the device files (the
    host's page cache serves aligned runs faster). The volume table records the value,
    so volumes made with the unrounded size keep working."""
    return -(-(LOG_DATA + stripe_unit) // stripe_unit) * stripe_unit


@dataclass
class StripeLogEntry:
    """The rows [lo, hi) of data chunk ``missing`` of ``stripe`` before a degraded write."""

    stripe: int
    lo: int
    hi: int
    missing: int
    data: bytes

    def pack_header(self) -> bytes:
        hdr = _HDR.pack(LOG_MAGIC, 1, self.stripe, self.lo, self.hi, self.missing,
                        zlib.crc32(self.data))
        return hdr + _CRC.pack(zlib.crc32(hdr))

    @classmethod
    def unpack(cls, header: bytes, read_data) -> "StripeLogEntry | None":
        """A valid entry, or None (cleared, torn or damaged: nothing to recover)."""
        magic, version, stripe, lo, hi, missing, dcrc = _HDR.unpack_from(header)
        if magic != LOG_MAGIC or version != 1 or hi <= lo:
            return None
        if _CRC.unpack_from(header, _HDR.size)[0] != zlib.crc32(header[:_HDR.size]):
            return None
        data = read_data(hi - lo)
        if zlib.crc32(data) != dcrc:
            return None
        return cls(stripe, lo, hi, missing, data)


CLEARED = bytes(_HDR.size + _CRC.size)
