"""RAID 5: rotating parity (md's left-symmetric layout), survives one failed member.

Member layout: a reserved area of ``rec.bitmap_bytes`` (write-intent bitmap, then the
degraded-write log, see :mod:`storage.stripelog`), then one stripe unit per stripe row.
Stripe s has its parity on member (n-1) - s % n and data chunk i on member
(parity + 1 + i) % n. Parity is numpy XOR.

Crash safety: healthy, the write-intent bitmap names the stripes to resync; degraded,
each stripe write is preceded by a durable log of the missing chunk's rows. A member
that fails in the middle of a stripe write is dropped and the write completes on the
others, so the survivors always hold a consistent stripe.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from .errors import VolumeError
from .pool import VolumeRecord
from .raid import GatheredReads, Layout, Members, _xor
from .stripelog import CLEARED, LOG_DATA, LOG_OFFSET, StripeLogEntry


class Raid5(Layout):
    """Rotating parity over n >= 3 members."""

    tolerates = 1

    def __init__(self, rec: VolumeRecord, members: Members) -> None:
        super().__init__(rec, members)
        self.n = len(members.records)
        self.su = rec.stripe_unit
        self.base = rec.bitmap_bytes
        self.stripe_data = (self.n - 1) * self.su
        # Recently seen whole-stripe data (write-through): sequential writes that end
        # and start mid-stripe then need no reads for the shared stripe.
        self.cache: OrderedDict[int, bytearray] = OrderedDict()
        self.cache_size = 8
        # The start of a stripe held back by write() until the next write completes it:
        # (volume offset at a stripe boundary, data). See drain().
        self.held: tuple[int, bytearray] | None = None

    def _cache_put(self, stripe: int, data: bytearray) -> None:
        self.cache[stripe] = data
        self.cache.move_to_end(stripe)
        while len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)

    def parity_disk(self, stripe: int) -> int:
        return (self.n - 1) - stripe % self.n

    def data_disk(self, stripe: int, i: int) -> int:
        return (self.parity_disk(stripe) + 1 + i) % self.n

    def member_offset(self, stripe: int, within: int = 0) -> int:
        return self.base + stripe * self.su + within

    def dirty_range(self, offset: int, size: int) -> tuple[int, int]:
        """Member bytes (after the reserved area) of the stripe rows a write touches."""
        first = offset // self.stripe_data
        last = (offset + size - 1) // self.stripe_data
        return first * self.su, (last + 1) * self.su

    def _unavailable(self, what: str) -> VolumeError:
        return VolumeError(f"volume {self.rec.name}: {what}; RAID 5 survives one failed "
                           f"member: data unavailable")

    # -- reads --------------------------------------------------------------------------

    def _read_chunk(self, stripe: int, disk: int, within: int, size: int) -> bytes:
        """Read part of one member chunk, reconstructing it from the others if needed."""
        moff = self.member_offset(stripe, within)
        if self.m.readable(disk, moff, size):
            return self.m.read(disk, moff, size)
        others = [d for d in range(self.n) if d != disk]
        for d in others:
            if not self.m.readable(d, moff, size):
                raise self._unavailable(f"two members unreadable ({self.m.name(disk)}, "
                                        f"{self.m.name(d)})")
        return _xor([self.m.read(d, moff, size) for d in others]).tobytes()

    def readinto(self, offset: int, out: memoryview) -> None:
        """Fill ``out`` from volume ``offset``: the data chunks go straight from the
        members into it, one read per run of consecutive rows on a member."""
        self.check_redundancy()
        self.drain()  # a held-back stripe start must be read back as written
        healthy = not self.m.failed()  # after the drain: writing it may have failed a member
        su, n, base = self.su, self.n, self.base
        reads = GatheredReads()
        pos, end = offset, offset + len(out)
        while pos < end:
            chunk, within = divmod(pos, su)
            stripe, i = divmod(chunk, n - 1)
            count = min(su - within, end - pos)
            disk = (n - stripe % n + i) % n  # data_disk(stripe, i), inlined: hot loop
            moff = base + stripe * su + within
            view = out[pos - offset:pos - offset + count]
            if healthy or self.m.readable(disk, moff, count):
                reads.add(disk, moff, view)
            else:
                view[:] = self._read_chunk(stripe, disk, within, count)
            pos += count
        reads.read(self.m)

    # -- writes -------------------------------------------------------------------------

    def write(self, offset: int, data: bytes) -> None:
        healthy = not self.check_redundancy()
        view = memoryview(data).cast("B")
        sd = self.stripe_data
        streaming = False  # whole stripes written by this call: a sequential writer
        if self.held is not None:
            h_off, h_data = self.held
            if healthy and offset == h_off + len(h_data):  # the writer carries on
                need = sd - len(h_data)
                if len(view) < need:  # still not a whole stripe: keep holding
                    h_data += view
                    return
                rest = view[need:]
                count = len(rest) // sd
                h_data += view[:need]  # the held buffer is ours: complete it in place
                self._write_full(h_off // sd, count, rest[:count * sd], h_data)
                self.held = None
                streaming = True
                offset, view = offset + need + count * sd, rest[count * sd:]
            else:
                self.drain()
        pos, end = offset, offset + len(view)
        while pos < end:
            stripe, sdoff = divmod(pos, sd)
            if healthy and sdoff == 0 and end - pos >= sd:
                count = (end - pos) // sd
                self._write_full(stripe, count, view[pos - offset:pos - offset + count * sd])
                pos += count * sd
                streaming = True
            elif healthy and sdoff == 0 and streaming:
                # The start of a stripe that a sequential writer will likely finish with
                # its next write: hold it back (not durable before a flush anyway) so the
                # stripe is written once, whole, without reading old rows. Any other
                # access, and flush, write it first (drain). Small writes go out at once.
                self.held = (pos, bytearray(view[pos - offset:]))
                pos = end
            else:
                n = min(sd - sdoff, end - pos)
                self._write_partial(stripe, sdoff, view[pos - offset:pos - offset + n])
                pos += n
        self.check_redundancy()  # a member may have failed during the writes

    def drain(self) -> None:
        """Write a held-back stripe start (before any other access, and on flush)."""
        if self.held is not None:
            h_off, h_data = self.held
            stripe = h_off // self.stripe_data
            self._write_partial(stripe, 0, memoryview(h_data))
            self.held = None  # only once written: a member error retries it degraded

    def _write_full(self, first: int, count: int, data, head=None) -> None:
        """Write ``count`` whole stripes from ``first`` (after ``head``, the data of
        one more whole stripe written first, when given): parity from the new data
        alone, no reads. Each member gets a single gathered write of its rows, taken
        straight from the callers' buffers and the parity."""
        n, su = self.n, self.su
        wide = np.uint64  # XOR 8 bytes at a time: stripe units are multiples of 512
        stripes, parities = [], []
        for part in ([head] if head is not None else []) + ([data] if count else []):
            v = memoryview(part).cast("B")
            arr = np.frombuffer(v, dtype=wide).reshape(-1, n - 1, su // np.dtype(wide).itemsize)
            par = np.bitwise_xor(arr[:, 0], arr[:, 1])
            for i in range(2, n - 1):
                np.bitwise_xor(par, arr[:, i], out=par)
            pv = memoryview(par).cast("B")
            for r in range(len(arr)):
                stripes.append((v, r * (n - 1) * su))
                parities.append(pv[r * su:(r + 1) * su])
        total = len(stripes)
        for s in range(first, first + total):
            self.cache.pop(s, None)
        moff = self.member_offset(first)
        for d in range(n):
            if not self.m.writable(d):
                continue
            bufs = []
            for r in range(total):
                p = (n - 1) - (first + r) % n
                if p == d:
                    bufs.append(parities[r])
                else:
                    v, at = stripes[r]
                    at += ((d - p - 1) % n) * su
                    bufs.append(v[at:at + su])
            self.m.writev_survive(d, moff, bufs)

    def _write_partial(self, stripe: int, sdoff: int, data) -> None:
        """Read-reconstruct-write of the touched rows of one stripe."""
        su, n = self.su, self.n
        first_chunk, last_chunk = sdoff // su, (sdoff + len(data) - 1) // su
        if first_chunk == last_chunk:
            lo, hi = sdoff % su, sdoff % su + len(data)
        else:
            lo, hi = 0, su
        size = hi - lo
        moff = self.member_offset(stripe, lo)
        pdisk = self.parity_disk(stripe)
        missing = next((i for i in range(n - 1)
                        if not self.m.readable(self.data_disk(stripe, i), moff, size)), None)
        cached = self.cache.get(stripe)
        if cached is not None:
            chunks = [cached[i * su + lo:i * su + hi] for i in range(n - 1)]
        else:
            chunks = self._read_rows(stripe, moff, size, pdisk, missing)
        if missing is not None:
            self._log(StripeLogEntry(stripe, lo, hi, missing, bytes(chunks[missing])))
        # Overlay the new bytes on the touched chunks.
        pos, end = sdoff, sdoff + len(data)
        touched = []
        while pos < end:
            ci, within = divmod(pos, su)
            count = min(su - within, end - pos)
            chunks[ci][within - lo:within - lo + count] = data[pos - sdoff:pos - sdoff + count]
            touched.append(ci)
            pos += count
        parity = _xor(chunks)
        if size == su:
            self._cache_put(stripe, bytearray().join(chunks))
        elif cached is not None:
            for i in range(n - 1):
                cached[i * su + lo:i * su + hi] = chunks[i]
        for ci in touched:
            d = self.data_disk(stripe, ci)
            if self.m.writable(d):
                self.m.write_survive(d, moff, chunks[ci])
        if self.m.writable(pdisk):
            self.m.write_survive(pdisk, moff, parity.data)
        if missing is not None:
            self.m.sync()  # the stripe is consistent on disk: the log may go
            self._clear_log()

    def _read_rows(self, stripe: int, moff: int, size: int, pdisk: int,
                   missing: int | None) -> list[bytearray]:
        """The rows [moff, moff+size) of every data chunk of a stripe, old contents."""
        chunks: list[bytearray | None] = []
        for i in range(self.n - 1):
            if i == missing:
                chunks.append(None)
            else:
                chunks.append(bytearray(self.m.read(self.data_disk(stripe, i), moff, size)))
        if missing is not None:
            # Reconstruct the unreadable chunk's old rows from parity and the others.
            if not self.m.readable(pdisk, moff, size):
                raise self._unavailable("two members unreadable")
            rest = [bytes(c) for c in chunks if c is not None]
            chunks[missing] = bytearray(_xor(rest + [self.m.read(pdisk, moff, size)]).tobytes())
        return chunks  # type: ignore[return-value]

    # -- degraded-write log ---------------------------------------------------------------

    def _log(self, entry: StripeLogEntry) -> None:
        """Durably record the missing chunk's rows on every working member."""
        header = entry.pack_header()
        for d in range(self.n):
            if self.m.writable(d):
                self.m.write_survive(d, LOG_DATA, entry.data)
                self.m.write_survive(d, LOG_OFFSET, header)
        self.m.sync()

    def _clear_log(self) -> None:
        for d in range(self.n):
            if self.m.writable(d):
                self.m.write_survive(d, LOG_OFFSET, CLEARED)

    def recover_log(self) -> bool:
        """After a crash while degraded: make the logged stripe consistent again."""
        entry = None
        for d in range(self.n):
            if self.m.readable(d, 0, self.base):
                entry = StripeLogEntry.unpack(self.m.read(d, LOG_OFFSET, 64),
                                              lambda n, d=d: self.m.read(d, LOG_DATA, n))
                if entry is not None:
                    break
        if entry is None:
            return False
        moff = self.member_offset(entry.stripe, entry.lo)
        size = entry.hi - entry.lo
        chunks = [entry.data if i == entry.missing else
                  self.m.read(self.data_disk(entry.stripe, i), moff, size)
                  for i in range(self.n - 1)]
        pdisk = self.parity_disk(entry.stripe)
        if self.m.writable(pdisk):
            self.m.write(pdisk, moff, _xor(chunks).data)
        self.m.sync()
        self._clear_log()
        self.m.sync()
        return True

    # -- parity maintenance -------------------------------------------------------------

    def rebuild_source(self, index: int, offset: int, size: int) -> bytes:
        """Member contents = XOR of all other members over the same range (the caller
        drains a held stripe first, through the volume's member-failure handling)."""
        others = [d for d in range(self.n) if d != index]
        for d in others:
            if not self.m.readable(d, offset, size):
                raise VolumeError(f"volume {self.rec.name}: cannot rebuild "
                                  f"{self.m.name(index)}: {self.m.name(d)} unreadable too")
        if offset < self.base:  # the reserved area is per member, not redundant
            return bytes(min(size, self.base - offset)) + (
                self.rebuild_source(index, self.base, offset + size - self.base)
                if offset + size > self.base else b"")
        return _xor([self.m.read(d, offset, size) for d in others]).tobytes()

    def resync(self, offset: int, size: int) -> None:
        """Recompute parity for member range [offset, offset+size) from the data."""
        self.drain()
        start = max(offset, self.base)
        end = min(offset + size, self.member_length())
        if start >= end:
            return
        first, last = (start - self.base) // self.su, (end - self.base - 1) // self.su
        for stripe in range(first, last + 1):
            moff = self.member_offset(stripe)
            pdisk = self.parity_disk(stripe)
            data = [self.m.read(self.data_disk(stripe, i), moff, self.su) for i in range(self.n - 1)]
            self.m.write(pdisk, moff, _xor(data).data)
