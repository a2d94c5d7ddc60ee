"""Volume layouts: how volume offsets map to member devices, and the I/O that follows.

Each layout sees its members through :class:`Members`, which knows which member can be
read (healthy, or rebuilt below the watermark) and written (not failed). A member I/O
error is raised as :class:`MemberError` so the volume can fail that member and retry
degraded. RAID 5 parity is numpy XOR; stripes use md's left-symmetric rotation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .errors import DeviceFailedError, DeviceIOError, VolumeError
from .physical import PhysicalDevice
from .pool import MemberRecord, VolumeRecord


class MemberError(Exception):
    """I/O on member ``index`` failed; the volume decides whether it can go on degraded."""

    def __init__(self, index: int, cause: DeviceIOError) -> None:
        super().__init__(str(cause))
        self.index = index
        self.cause = cause


@dataclass
class Members:
    """A volume's members: their records, open devices (None if missing/failed)."""

    volume: str
    records: list[MemberRecord]
    devices: list[PhysicalDevice | None]
    targets: dict[int, PhysicalDevice] = field(default_factory=dict)  # members being moved
    on_fail: Callable[[int], None] | None = None  # the volume fails a member durably

    def readable(self, i: int, offset: int = 0, size: int = 0) -> bool:
        rec, dev = self.records[i], self.devices[i]
        if dev is None or dev.failed or rec.state == "failed":
            return False
        return rec.state == "ok" or offset + size <= rec.rebuilt

    def writable(self, i: int) -> bool:
        dev = self.devices[i]
        return dev is not None and not dev.failed and self.records[i].state != "failed"

    def _device(self, i: int) -> PhysicalDevice:
        dev = self.devices[i]
        if dev is None:
            raise MemberError(i, DeviceFailedError(self.name(i), "device missing or failed"))
        return dev

    def read(self, i: int, offset: int, size: int) -> bytes:
        """Read ``size`` bytes at ``offset`` inside member ``i``'s extent."""
        try:
            return self._device(i).read(self.records[i].offset + offset, size)
        except DeviceIOError as e:
            raise MemberError(i, e) from None

    def readinto(self, i: int, offset: int, bufs: list[memoryview]) -> None:
        """Fill ``bufs`` back to back from ``offset`` inside member ``i``'s extent."""
        try:
            self._device(i).readinto(self.records[i].offset + offset, bufs)
        except DeviceIOError as e:
            raise MemberError(i, e) from None

    def write(self, i: int, offset: int, data) -> None:
        self._member_write(i, offset, lambda device, at: device.write(at, data))

    def writev(self, i: int, offset: int, bufs: list[memoryview]) -> None:
        """Write ``bufs`` back to back at ``offset`` of member ``i`` in one device write."""
        self._member_write(i, offset, lambda device, at: device.writev(at, bufs))

    def _member_write(self, i: int, offset: int, put) -> None:
        """``put(device, absolute_offset)`` on member ``i``, and on its move target."""
        rec = self.records[i]
        try:
            put(self._device(i), rec.offset + offset)
        except DeviceIOError as e:
            raise MemberError(i, e) from None
        if rec.move is not None and offset < rec.move["copied"] and i in self.targets:
            # Being moved: the copied part must see this write too (the rest will be copied).
            try:
                put(self.targets[i], rec.move["offset"] + offset)
            except DeviceIOError:
                rec.move = None  # the target failed: the move is abandoned, data stays put
                del self.targets[i]

    def writev_survive(self, i: int, offset: int, bufs: list[memoryview]) -> bool:
        """:meth:`writev`, or fail the member and carry on (see :meth:`write_survive`)."""
        return self._survive(i, self.writev, offset, bufs)

    def write_survive(self, i: int, offset: int, data) -> bool:
        """Write, or fail the member and carry on (the caller's stripe stays consistent
        on the survivors); False if the member failed."""
        return self._survive(i, self.write, offset, data)

    def _survive(self, i: int, write, offset: int, data) -> bool:
        try:
            write(i, offset, data)
            return True
        except MemberError:
            if self.on_fail is None:
                raise
            self.on_fail(i)
            return False

    def sync(self) -> None:
        """Make the writes on every working member durable."""
        for i, dev in enumerate(self.devices):
            if dev is not None and not dev.failed:
                try:
                    dev.sync()
                except (DeviceIOError, OSError):
                    pass

    def name(self, i: int) -> str:
        dev = self.devices[i]
        return dev.name if dev is not None else f"device {self.records[i].device[:8]} (missing)"

    def failed(self) -> list[int]:
        """Members not fully usable: failed, missing, or still being rebuilt."""
        return [i for i in range(len(self.records))
                if self.records[i].state != "ok" or not self.writable(i)]


def _xor(chunks: list) -> np.ndarray:
    """XOR of equal-length byte strings, as a uint8 array."""
    acc = np.frombuffer(chunks[0], dtype=np.uint8).copy()
    for c in chunks[1:]:
        np.bitwise_xor(acc, np.frombuffer(c, dtype=np.uint8), out=acc)
    return acc


class Layout:
    """Base: subclasses implement read/write of volume byte ranges."""

    tolerates = 0  # how many failed members the layout survives

    def __init__(self, rec: VolumeRecord, members: Members) -> None:
        self.rec = rec
        self.m = members

    def member_length(self) -> int:
        return self.m.records[0].length

    def readinto(self, offset: int, out: memoryview) -> None:
        """Fill the byte view ``out`` from volume ``offset``, the members reading
        straight into it."""
        raise NotImplementedError

    def write(self, offset: int, data: bytes) -> None:
        raise NotImplementedError

    def drain(self) -> None:
        """Write out anything held back in memory (RAID 5 keeps a stripe start)."""

    def rebuild_source(self, index: int, offset: int, size: int) -> bytes:
        """Contents member ``index`` should hold at [offset, offset+size)."""
        raise VolumeError(f"volume {self.rec.name}: layout {self.rec.layout} has no redundancy")

    def check_redundancy(self) -> list[int]:
        """The members not fully usable; raises when more than the layout survives."""
        bad = self.m.failed()
        if len(bad) > self.tolerates:
            names = ", ".join(self.m.name(i) for i in bad)
            raise VolumeError(f"volume {self.rec.name}: {len(bad)} of {len(self.m.records)} "
                              f"members failed ({names}); {self.rec.layout} survives "
                              f"{self.tolerates}: data unavailable")
        return bad


class GatheredReads:
    """The pieces of one volume read, as one gathered ``readinto`` per run of
    consecutive member bytes (a member's stripe units that follow each other)."""

    def __init__(self) -> None:
        self._runs: dict[int, list] = {}  # member -> [[member offset, views, end], ...]

    def add(self, member: int, offset: int, view: memoryview) -> None:
        runs = self._runs.setdefault(member, [])
        if runs and runs[-1][2] == offset:
            runs[-1][1].append(view)
            runs[-1][2] += len(view)
        else:
            runs.append([offset, [view], offset + len(view)])

    def read(self, members: Members) -> None:
        for member, runs in self._runs.items():
            for offset, views, _ in runs:
                members.readinto(member, offset, views)


class Concat(Layout):
    """Members one after another."""

    def _spans(self, offset: int, size: int):
        base = 0
        for i, rec in enumerate(self.m.records):
            lo, hi = max(offset, base), min(offset + size, base + rec.length)
            if lo < hi:
                yield i, lo - base, lo - offset, hi - lo
            base += rec.length

    def readinto(self, offset: int, out: memoryview) -> None:
        self.check_redundancy()
        for i, moff, doff, n in self._spans(offset, len(out)):
            self.m.readinto(i, moff, [out[doff:doff + n]])

    def write(self, offset: int, data: bytes) -> None:
        self.check_redundancy()
        view = memoryview(data)
        for i, moff, doff, n in self._spans(offset, len(data)):
            self.m.write(i, moff, view[doff:doff + n])


class Raid0(Layout):
    """Stripe units dealt round-robin over the members."""

    def _chunks(self, offset: int, size: int):
        su, n = self.rec.stripe_unit, len(self.m.records)
        pos, end = offset, offset + size
        while pos < end:
            chunk, within = divmod(pos, su)
            count = min(su - within, end - pos)
            yield chunk % n, (chunk // n) * su + within, pos - offset, count
            pos += count

    def readinto(self, offset: int, out: memoryview) -> None:
        """One gathered read per run of consecutive stripe units on a member."""
        self.check_redundancy()
        reads = GatheredReads()
        for i, mo, do, n in self._chunks(offset, len(out)):
            reads.add(i, mo, out[do:do + n])
        reads.read(self.m)

    def write(self, offset: int, data: bytes) -> None:
        self.check_redundancy()
        view = memoryview(data)
        for i, mo, do, n in self._chunks(offset, len(data)):
            self.m.write(i, mo, view[do:do + n])


class Raid1(Layout):
    """n-way mirror: writes go to every writable member, reads to a readable one.

    Member layout: the write-intent bitmap (``rec.bitmap_bytes``), then the volume.
    """

    def __init__(self, rec: VolumeRecord, members: Members) -> None:
        super().__init__(rec, members)
        self.base = rec.bitmap_bytes

    @property
    def tolerates(self) -> int:  # type: ignore[override]
        return len(self.m.records) - 1

    def readinto(self, offset: int, out: memoryview) -> None:
        self.check_redundancy()
        moff, size = self.base + offset, len(out)
        for i in range(len(self.m.records)):
            if self.m.readable(i, moff, size):
                self.m.readinto(i, moff, [out])
                return
        raise VolumeError(f"volume {self.rec.name}: no readable mirror for {size} bytes at {offset}")

    def write(self, offset: int, data: bytes) -> None:
        self.check_redundancy()
        for i in range(len(self.m.records)):
            if self.m.writable(i):
                self.m.write(i, self.base + offset, data)

    def dirty_range(self, offset: int, size: int) -> tuple[int, int]:
        """Member bytes (after the bitmap) a volume write touches."""
        return offset, offset + size

    def rebuild_source(self, index: int, offset: int, size: int) -> bytes:
        for i in range(len(self.m.records)):
            if i != index and self.m.readable(i, offset, size):
                return self.m.read(i, offset, size)
        raise VolumeError(f"volume {self.rec.name}: no readable mirror to rebuild from")

    def resync(self, offset: int, size: int) -> None:
        """Make the mirrors agree on member range [offset, offset+size): the first
        complete mirror wins (a crash may have caught a write between mirrors)."""
        end = min(offset + size, self.member_length())
        src = next((i for i, r in enumerate(self.m.records)
                    if r.state == "ok" and self.m.readable(i)), None)
        if src is None or offset >= end:
            return
        for pos in range(offset, end, 4 * 1024 * 1024):
            n = min(4 * 1024 * 1024, end - pos)
            data = self.m.read(src, pos, n)
            for i in range(len(self.m.records)):
                if i != src and self.m.writable(i):
                    self.m.write(i, pos, data)


def member_length(layout: str, size: int, count: int, stripe_unit: int, bitmap_bytes: int = 0) -> list[int]:
    """Extent length each member needs for a volume of ``size`` bytes."""
    if layout == "concat":
        per = -(-size // count)
        return [per] * (count - 1) + [size - per * (count - 1)]
    if layout == "raid0":
        rows = -(-size // (count * stripe_unit))
        return [rows * stripe_unit] * count
    if layout == "raid1":
        return [bitmap_bytes + size] * count
    if layout == "raid5":
        rows = -(-size // ((count - 1) * stripe_unit))
        return [bitmap_bytes + rows * stripe_unit] * count
    raise VolumeError(f"unknown layout {layout!r} (concat, raid0, raid1, raid5)")
