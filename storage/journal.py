"""The file system's metadata journal: checksummed, sequenced records on a volume.

Each metadata change is one record (a JSON operation). Records are appended in batches
that end with a commit record and are padded to 512 bytes, so a committed record is
never rewritten and a batch applies whole or not at all. Replay stops at the first
record that is torn (checksum wrong, sequence not the next one). A record that is
damaged while a valid record follows it is real damage, and mounting is refused.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field


from .errors import FormatError, StorageError

REC_MAGIC = b"PJRN"
# magic, payload length, sequence number, crc32 of (length, seq, payload)
_REC = struct.Struct("<4sIQI")
SECTOR = 512


class JournalFull(StorageError):
    """No room for the pending records: the caller checkpoints and resets the journal."""


def _crc(length: int, seq: int, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(struct.pack("<IQ", length, seq)))


def pack_record(seq: int, op: dict) -> bytes:
    payload = json.dumps(op, sort_keys=True, separators=(",", ":")).encode()
    return _REC.pack(REC_MAGIC, len(payload), seq, _crc(len(payload), seq, payload)) + payload


@dataclass
class Journal:
    """Appends records at ``offset`` of ``volume`` within ``size`` bytes."""

    volume: object  # storage.volume.Volume (duck-typed: read/write/flush)
    offset: int
    size: int
    next_seq: int = 1
    pos: int = 0  # bytes used, always a multiple of SECTOR
    pending: list[bytes] = field(default_factory=list)

    def append(self, op: dict) -> None:
        """Queue one operation; it is durable after :meth:`commit`."""
        self.pending.append(pack_record(self.next_seq, op))
        self.next_seq += 1

    def pending_bytes(self) -> int:
        raw = sum(len(r) for r in self.pending)
        return -(-raw // SECTOR) * SECTOR

    def fits(self) -> bool:
        return self.pos + self.pending_bytes() <= self.size

    def commit(self) -> None:
        """Write the queued records (padded to a sector) and flush the volume."""
        if not self.pending:
            return
        self.append({"op": "commit"})  # the batch counts only if this record made it
        if not self.fits():
            self.pending.pop()
            self.next_seq -= 1
            raise JournalFull("journal full")
        batch = b"".join(self.pending)
        batch += bytes(-len(batch) % SECTOR)
        self.volume.write(self.offset + self.pos, batch)
        self.volume.flush()
        self.pos += len(batch)
        self.pending.clear()

    def reset(self, next_seq: int) -> None:
        """Start an empty journal whose first record will carry ``next_seq``."""
        self.pos, self.next_seq = 0, next_seq
        self.pending.clear()


def scan(volume, offset: int, size: int, first_seq: int, where: str):
    """Yield (seq, op, end position) of every complete batch, commit records included.

    A batch counts only up to and including its commit record: the operations of a
    batch torn by a crash are never applied, so a batch is atomic. Raises
    :class:`FormatError` on damage that is not a torn tail.
    """
    batch: list[tuple[int, dict, int]] = []
    for seq, op, pos in _records(volume, offset, size, first_seq, where):
        batch.append((seq, op, pos))
        if op.get("op") == "commit":
            yield from batch
            batch = []


def _records(volume, offset: int, size: int, first_seq: int, where: str):
    """Every intact record from ``first_seq`` on, with the byte position after it."""
    raw = volume.read(offset, size)
    pos, seq = 0, first_seq
    while pos + _REC.size <= size:
        magic, length, rseq, crc = _REC.unpack_from(raw, pos)
        if magic == b"\0\0\0\0":
            if pos % SECTOR == 0:
                return  # end of the journal
            pos = -(-pos // SECTOR) * SECTOR  # batch padding
            continue
        ok = (magic == REC_MAGIC and pos + _REC.size + length <= size and rseq == seq
              and crc == _crc(length, rseq, raw[pos + _REC.size:pos + _REC.size + length]))
        if not ok:
            if magic == REC_MAGIC and rseq == seq and _valid_after(raw, pos, length, seq + 1, size):
                raise FormatError(f"{where}: journal damaged: record {seq} checksum mismatch "
                                  f"(later records are intact)")
            return  # a torn tail (or a stale record of an earlier journal)
        payload = raw[pos + _REC.size:pos + _REC.size + length]
        try:
            op = json.loads(payload)
        except ValueError:
            raise FormatError(f"{where}: journal damaged: record {seq} is not valid JSON") from None
        pos += _REC.size + length
        yield seq, op, -(-pos // SECTOR) * SECTOR
        seq += 1


def _valid_after(raw: bytes, pos: int, length: int, seq: int, size: int) -> bool:
    """Is there an intact record with sequence ``seq`` right after a damaged one?"""
    for nxt in (pos + _REC.size + length, -(-(pos + _REC.size + length) // SECTOR) * SECTOR):
        if nxt + _REC.size > size or length > size:
            continue
        magic, ln, rseq, crc = _REC.unpack_from(raw, nxt)
        if (magic == REC_MAGIC and rseq == seq and nxt + _REC.size + ln <= size
                and crc == _crc(ln, rseq, raw[nxt + _REC.size:nxt + _REC.size + ln])):
            return True
    return False
