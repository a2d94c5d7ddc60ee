"""RAID 5 write-intent bitmap: closes the write hole.

Before a stripe region is written, its bit is set and made durable on every member;
bits are cleared once a flush has made the data and parity durable. After a crash, the
regions whose bits are set are the only ones whose parity can be stale, and assembly
recomputes exactly those (md's internal bitmap does the same).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

BITMAP_MAGIC = b"PYVMWIB1"
BITMAP_BYTES = 4096
# magic, version, region bytes, bit count, crc32 of the bit array; then header crc32.
_HDR = struct.Struct("<8sIQII")
_CRC = struct.Struct("<I")
HDR_SIZE = 32
MAX_BITS = (BITMAP_BYTES - HDR_SIZE) * 8
MIN_REGION = 16 * 1024 * 1024


def region_size(member_data: int, stripe_unit: int) -> int:
    """Bytes of each member covered by one bit: at least 4 MiB, whole stripe units."""
    region = max(MIN_REGION, -(-member_data // MAX_BITS))
    return -(-region // stripe_unit) * stripe_unit


@dataclass
class WriteIntentBitmap:
    """The in-memory bitmap; ``dirty`` holds indices of set bits."""

    region: int
    nbits: int
    dirty: set[int] = field(default_factory=set)

    def bits_for(self, start: int, end: int) -> range:
        """Bits covering member data bytes [start, end)."""
        return range(start // self.region, (end - 1) // self.region + 1)

    def pack(self) -> bytes:
        bits = bytearray(-(-self.nbits // 8))
        for b in self.dirty:
            bits[b >> 3] |= 1 << (b & 7)
        hdr = _HDR.pack(BITMAP_MAGIC, 1, self.region, self.nbits, zlib.crc32(bits))
        return (hdr + _CRC.pack(zlib.crc32(hdr))).ljust(HDR_SIZE, b"\0") + bytes(bits)

    @staticmethod
    def unpack(raw: bytes, region: int, nbits: int) -> set[int] | None:
        """Set bits of a stored bitmap, or None when it is damaged (caller assumes all)."""
        magic, version, reg, bits_n, bcrc = _HDR.unpack_from(raw)
        if magic != BITMAP_MAGIC or version != 1 or (reg, bits_n) != (region, nbits):
            return None
        (hcrc,) = _CRC.unpack_from(raw, _HDR.size)
        if hcrc != zlib.crc32(raw[:_HDR.size]):
            return None
        bits = raw[HDR_SIZE:HDR_SIZE + -(-nbits // 8)]
        if zlib.crc32(bits) != bcrc:
            return None
        return {i for i in range(nbits) if bits[i >> 3] & (1 << (i & 7))}
