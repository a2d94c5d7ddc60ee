"""Volume manager: named volumes with attributes over the devices of a pool.

A :class:`Volume` serves byte-range reads and writes through its layout (see
:mod:`storage.raid`), fails a member whose I/O errors and carries on degraded when the
layout allows, keeps per-volume statistics and, for RAID 1 and 5, a write-intent bitmap.
:class:`VolumeManager` creates, opens and rebuilds volumes and owns the pool.
"""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .bitmap import BITMAP_BYTES, WriteIntentBitmap, region_size
from .errors import StorageError, VolumeError
from .physical import DATA_OFFSET
from .pool import Pool, VolumeRecord
from .raid import Concat, Layout, MemberError, Members, Raid0, Raid1, member_length
from .raid5 import Raid5
from .stripelog import reserved_bytes

LAYOUTS: dict[str, type[Layout]] = {"concat": Concat, "raid0": Raid0, "raid1": Raid1, "raid5": Raid5}

MIN_MEMBERS = {"concat": 1, "raid0": 1, "raid1": 2, "raid5": 3}
ZERO_STEP = 4 * 1024 * 1024


@dataclass
class VolumeStats:
    """Operation and byte counts, and recent latencies for percentiles."""

    reads: int = 0
    writes: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    read_latency: deque = field(default_factory=lambda: deque(maxlen=8192))
    write_latency: deque = field(default_factory=lambda: deque(maxlen=8192))

    def percentiles(self, kind: str = "read") -> dict[str, float]:
        """p50/p90/p99 latency in microseconds of the last few thousand ops."""
        lat = self.read_latency if kind == "read" else self.write_latency
        if not lat:
            return {"p50": 0.0, "p90": 0.0, "p99": 0.0}
        p = np.percentile(np.fromiter(lat, dtype=np.float64), [50, 90, 99]) * 1e6
        return {"p50": float(p[0]), "p90": float(p[1]), "p99": float(p[2])}


class Volume:
    """A volume: read/write byte ranges, flush, statistics, degraded operation."""

    def __init__(self, manager: "VolumeManager", rec: VolumeRecord) -> None:
        self.manager = manager
        self.rec = rec
        self.stats = VolumeStats()
        self.members = Members(rec.name, rec.members,
                               [manager.pool.device(m.device) for m in rec.members])
        for i, m in enumerate(rec.members):
            target = manager.pool.device(m.move["device"]) if m.move else None
            if target is not None:  # a move to resume: writes must reach the copy too
                self.members.targets[i] = target
        self.members.on_fail = self._member_failed
        self.layout: Layout = LAYOUTS[rec.layout](rec, self.members)
        self.bitmap: WriteIntentBitmap | None = None
        if rec.layout in ("raid1", "raid5"):
            nbits = -(-(rec.members[0].length - rec.bitmap_bytes) // rec.bitmap_region)
            self.bitmap = WriteIntentBitmap(rec.bitmap_region, nbits)

    @property
    def name(self) -> str:
        return self.rec.name

    @property
    def size(self) -> int:
        return self.rec.size

    def _check_range(self, offset: int, size: int) -> None:
        if offset < 0 or size < 0 or offset + size > self.rec.size:
            raise VolumeError(f"volume {self.name}: range {offset}+{size} outside its "
                              f"{self.rec.size} bytes")

    def _member_failed(self, index: int) -> None:
        """A member's I/O failed: drop it, durably, so the others stay consistent.

        The survivors are synced before the failure is recorded: a crash in between
        then finds either a healthy array (the write-intent bitmap covers it) or a
        degraded one whose survivors hold consistent stripes.
        """
        dev = self.members.devices[index]
        if dev is not None:
            dev.mark_failed()
        if isinstance(self.layout, Raid5):
            self.layout.cache.clear()  # it may hold data that never reached disk
        self.members.sync()
        self.manager.pool.fail_device(self.rec.members[index].device)

    def _retry(self, op: Callable[[], object]) -> object:
        """Run ``op``; on a member I/O error fail that member and retry degraded."""
        while True:
            try:
                return op()
            except MemberError as e:
                self._member_failed(e.index)
                try:
                    self.layout.check_redundancy()
                except VolumeError as gone:
                    raise VolumeError(f"{gone} (after {e.cause})") from None

    def read(self, offset: int, size: int) -> bytes:
        """Read ``size`` bytes at volume ``offset``."""
        self._check_range(offset, size)
        buf = bytearray(size)
        self.readinto(offset, memoryview(buf))
        return bytes(buf)

    def readinto(self, offset: int, out: memoryview) -> None:
        """Fill the byte view ``out`` from volume ``offset`` (no intermediate copy)."""
        size = len(out)
        self._check_range(offset, size)
        t = time.perf_counter()
        self._retry(lambda: self.layout.readinto(offset, out))
        self.stats.read_latency.append(time.perf_counter() - t)
        self.stats.reads += 1
        self.stats.bytes_read += size

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        """Write ``data`` at volume ``offset``; durable only after :meth:`flush`."""
        self._check_range(offset, len(data))
        t = time.perf_counter()
        if self.bitmap is not None and len(data):
            self._mark_dirty(offset, len(data))
        self._retry(lambda: self.layout.write(offset, data))
        self.stats.write_latency.append(time.perf_counter() - t)
        self.stats.writes += 1
        self.stats.bytes_written += len(data)

    def drain(self) -> None:
        """Write what the layout holds back in memory (a RAID 5 stripe start); a member
        that fails doing so is failed and the write retried degraded. If too many
        members fail, this raises rather than pretend the data landed."""
        self._retry(self.layout.drain)

    def flush(self) -> None:
        """Make every write so far durable, then clear the write-intent bitmap."""
        self.drain()
        for i, dev in enumerate(self.members.devices):
            if dev is not None and not dev.failed:
                dev.sync()
        if self.bitmap is not None and self.bitmap.dirty:
            self.bitmap.dirty.clear()
            self._store_bitmap()

    # -- write-intent bitmap (RAID 1 and 5) -------------------------------------------------------

    def _mark_dirty(self, offset: int, size: int) -> None:
        start, end = self.layout.dirty_range(offset, size)  # type: ignore[attr-defined]
        bits = self.bitmap.bits_for(start, end)
        if not all(b in self.bitmap.dirty for b in bits):
            self.bitmap.dirty.update(bits)
            self._store_bitmap(sync=True)

    def _store_bitmap(self, sync: bool = False) -> None:
        raw = self.bitmap.pack()
        for i in range(len(self.rec.members)):
            if self.members.writable(i):
                try:
                    self.members.write(i, 0, raw)
                    if sync:
                        self.members.devices[i].sync()
                except MemberError:
                    pass  # the data write that follows will fail this member properly

    def recover_write_hole(self) -> int:
        """After assembly: make stripes a crash may have left inconsistent consistent.

        Healthy: recompute the parity of regions the write-intent bitmap marks dirty
        (returns how many). Degraded: replay the degraded-write log (every other
        stripe was durable before the member's failure was recorded, see
        :meth:`_member_failed`); returns 1 if a logged stripe was repaired.
        """
        if self.bitmap is None:
            return 0
        if isinstance(self.layout, Raid1):
            return self._resync_mirrors()
        lay = self.layout
        assert isinstance(lay, Raid5)
        recs = self.rec.members
        rebuilding = [i for i, m in enumerate(recs)
                      if m.state == "rebuilding" and self.members.writable(i)]
        if len(self.members.failed()) > len(rebuilding):  # a member is failed or missing
            self._warn_dirty_degraded()
            repaired = int(lay.recover_log())
            self.bitmap.dirty.clear()
            self._store_bitmap(sync=True)
            return repaired
        # Healthy, or rebuilding: below the rebuild watermark every member is good.
        repaired = int(lay.recover_log())
        limit = min((recs[i].rebuilt for i in rebuilding), default=recs[0].length)
        dirty: set[int] = set()
        for i in range(len(recs)):
            if i not in rebuilding:
                raw = self.members.read(i, 0, BITMAP_BYTES)
                bits = WriteIntentBitmap.unpack(raw, self.bitmap.region, self.bitmap.nbits)
                dirty |= set(range(self.bitmap.nbits)) if bits is None else bits
        for b in sorted(dirty):
            start = lay.base + b * self.bitmap.region
            end = min(start + self.bitmap.region, limit)
            end -= (end - lay.base) % lay.su  # whole stripe rows only
            if end > start:
                lay.resync(start, end - start)
        if dirty or repaired:
            self.flush()
            self._store_bitmap(sync=True)
        return len(dirty) + repaired

    def _dirty_bits(self, members) -> set[int]:
        """OR of the stored bitmaps of ``members`` (a damaged one counts as all set)."""
        dirty: set[int] = set()
        for i in members:
            if self.members.readable(i, 0, BITMAP_BYTES):
                bits = WriteIntentBitmap.unpack(self.members.read(i, 0, BITMAP_BYTES),
                                                self.bitmap.region, self.bitmap.nbits)
                dirty |= set(range(self.bitmap.nbits)) if bits is None else bits
        return dirty

    def _resync_mirrors(self) -> int:
        """RAID 1 after a crash: copy dirty regions from a complete mirror to the rest."""
        lay = self.layout
        complete = [i for i, m in enumerate(self.rec.members)
                    if m.state == "ok" and self.members.readable(i)]
        dirty = self._dirty_bits(complete)
        for b in sorted(dirty):
            lay.resync(lay.base + b * self.bitmap.region, self.bitmap.region)  # type: ignore[attr-defined]
        if dirty:
            self.flush()
            self._store_bitmap(sync=True)
        return len(dirty)

    def _warn_dirty_degraded(self) -> None:
        """A member vanished without its failure being recorded, while writes were in
        flight: those regions' parity may be stale (md would refuse to start)."""
        lost = [i for i, m in enumerate(self.rec.members)
                if m.state == "ok" and self.members.devices[i] is None]
        if not lost:
            return
        dirty: set[int] = set()
        for i in range(len(self.rec.members)):
            if i not in lost and self.members.readable(i, 0, BITMAP_BYTES):
                bits = WriteIntentBitmap.unpack(self.members.read(i, 0, BITMAP_BYTES),
                                                self.bitmap.region, self.bitmap.nbits)
                dirty |= set(range(self.bitmap.nbits)) if bits is None else bits
        if dirty:
            self.manager.pool.warnings.append(
                f"volume {self.name}: {len(dirty)} region(s) were being written when the pool "
                f"stopped and {self.members.name(lost[0])} is now missing: their data may be "
                f"inconsistent")

    # -- status -------------------------------------------------------------------------

    def state(self) -> str:
        """"ok", "degraded", "rebuilding" or "failed"."""
        bad = self.members.failed()
        if not bad:
            return "ok"
        if len(bad) > self.layout.tolerates:
            return "failed"
        if any(self.rec.members[i].state == "rebuilding" for i in bad):
            return "rebuilding"
        return "degraded"


class VolumeManager:
    """Volumes of one pool: create, open, fail, replace and rebuild."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.volumes: dict[str, Volume] = {}
        for rec in pool.meta.volumes:
            vol = Volume(self, rec)
            self.volumes[rec.name] = vol
            vol.recover_write_hole()

    @classmethod
    def open(cls, paths, pool_id: str | None = None) -> "VolumeManager":
        """Re-assemble the pool from its device files and open every volume."""
        return cls(Pool.open(paths, pool_id))

    def create_volume(self, name: str, size: int, layout: str = "concat", tier: str = "default",
                      members: int | None = None, stripe_unit: int = 64 * 1024) -> Volume:
        """Allocate a new volume; its contents read as zeros."""
        if name in self.volumes:
            raise StorageError(f"volume {name} already exists")
        if layout not in LAYOUTS:
            raise StorageError(f"unknown layout {layout!r} (concat, raid0, raid1, raid5)")
        if size <= 0:
            raise StorageError(f"volume size must be positive, not {size}")
        if stripe_unit <= 0 or stripe_unit % 512:
            raise StorageError(f"stripe unit {stripe_unit} is not a positive multiple of 512")
        count = members or {"concat": 1, "raid0": 2, "raid1": 2, "raid5": 3}[layout]
        if count < MIN_MEMBERS[layout]:
            raise StorageError(f"{layout} needs at least {MIN_MEMBERS[layout]} members, not {count}")
        bitmap_bytes = {"raid5": reserved_bytes(stripe_unit), "raid1": BITMAP_BYTES}.get(layout, 0)
        lengths = member_length(layout, size, count, stripe_unit, bitmap_bytes)
        recs = self.pool.allocate(max(lengths), count, align=stripe_unit)
        for r, ln in zip(recs, lengths):
            r.length = ln
        rec = VolumeRecord(name, size, layout, tier, stripe_unit, recs, bitmap_bytes)
        if bitmap_bytes:
            rec.bitmap_region = region_size(lengths[0] - bitmap_bytes, stripe_unit)
        for r in recs:
            _zero_extent(self.pool.devices[r.device], r.offset, r.length)
        self.pool.meta.volumes.append(rec)
        self.pool.save()
        vol = Volume(self, rec)
        if vol.bitmap is not None:
            vol._store_bitmap(sync=True)
        self.volumes[name] = vol
        return vol

    def volume(self, name: str) -> Volume:
        try:
            return self.volumes[name]
        except KeyError:
            raise StorageError(f"no volume {name} in pool {self.pool.meta.name}") from None

    def fail_device(self, device_id: str) -> None:
        """Mark a device failed: its volumes go degraded (or unavailable)."""
        rec = self.pool.device_record(device_id)
        for vol in self.volumes.values():  # survivors durable first (see _member_failed)
            if any(m.device == rec.id for m in vol.rec.members):
                vol.members.sync()
        self.pool.fail_device(rec.id)  # member records and the device are marked
        for vol in self.volumes.values():
            if isinstance(vol.layout, Raid5):
                vol.layout.cache.clear()

    def replace_device(self, old_id: str, new_path: str | os.PathLike,
                       size: int | None = None) -> str:
        """Put a new device file in place of ``old_id``; its members start rebuilding.

        Returns the new device's id. Call :meth:`rebuild` (or :func:`storage.rebuild`)
        to copy the data back.
        """
        old = self.pool.device_record(old_id)
        dev = self.pool.add_device(new_path, size or old.size + DATA_OFFSET)
        new_id = str(dev.device_id)
        for vol in self.volumes.values():
            for i, m in enumerate(vol.rec.members):
                if m.device == old.id:
                    if dev.data_size < m.offset + m.length:
                        raise StorageError(f"{new_path}: too small to replace {old.id[:8]}")
                    m.device, m.state, m.rebuilt = new_id, "rebuilding", 0
                    vol.members.devices[i] = dev
        old.state = "failed"
        self.pool.meta.devices.remove(old)
        gone = self.pool.devices.pop(old.id, None)
        if gone is not None:
            gone.close()
        self.pool.save()
        return new_id

    def readd_device(self, device_id: str) -> None:
        """Take a failed device back (e.g. after a transient error), like mdadm --re-add.

        Its members on redundant volumes are rebuilt from the others (call
        :meth:`rebuild`); on concat/RAID 0 nothing was written while it was out, so
        they simply come back.
        """
        rec = self.pool.device_record(device_id)
        dev = self.pool.devices.get(rec.id)
        if dev is None:
            raise StorageError(f"device {rec.id[:8]} is missing: replace it instead")
        if rec.state != "failed":
            raise StorageError(f"device {rec.id[:8]} is not failed")
        dev.failed = False
        dev.clear_errors()
        rec.state = "active"
        for vol in self.volumes.values():
            for m in vol.rec.members:
                if m.device == rec.id:
                    redundant = vol.layout.tolerates > 0
                    m.state, m.rebuilt = ("rebuilding", 0) if redundant else ("ok", 0)
            if isinstance(vol.layout, Raid5):
                vol.layout.cache.clear()
        self.pool.save()

    def rebuild(self, progress: Callable[[int, int], None] | None = None,
                step: int = 4 * 1024 * 1024) -> int:
        """Rebuild every member in state "rebuilding"; returns bytes rebuilt."""
        from .rebuild import Rebuild
        total = 0
        for vol in self.volumes.values():
            for i, m in enumerate(vol.rec.members):
                if m.state == "rebuilding":
                    total += Rebuild(vol, i, step=step).run(progress)
        return total

    def resize_volume(self, name: str, size: int) -> None:
        """Grow or shrink a volume in place (see :mod:`storage.reshape`)."""
        from .reshape import resize
        resize(self, name, size)

    grow_volume = resize_volume

    def move_member(self, name: str, source: str, target: str,
                    progress: Callable[[int, int], None] | None = None) -> None:
        """Move the part of volume ``name`` on device ``source`` to device ``target``."""
        from .reshape import move_member
        move_member(self, name, source, target, progress)

    def resume(self, progress: Callable[[int, int], None] | None = None) -> None:
        """Finish moves and rebuilds that a restart interrupted."""
        from .reshape import pending_moves, resume_move
        for name, idx in pending_moves(self):
            resume_move(self, self.volume(name), idx, progress)
        self.rebuild(progress)

    def status(self) -> list[dict]:
        """One row per volume: attributes, state, statistics."""
        rows = []
        for vol in self.volumes.values():
            rows.append({"name": vol.name, "size": vol.size, "layout": vol.rec.layout,
                         "tier": vol.rec.tier, "members": len(vol.rec.members),
                         "state": vol.state(), "reads": vol.stats.reads,
                         "writes": vol.stats.writes, "bytes_read": vol.stats.bytes_read,
                         "bytes_written": vol.stats.bytes_written,
                         "read_latency_us": vol.stats.percentiles("read"),
                         "write_latency_us": vol.stats.percentiles("write")})
        return rows

    def flush(self) -> None:
        for vol in self.volumes.values():
            vol.flush()

    def close(self) -> None:
        self.flush()
        self.pool.close()


def _zero_extent(dev, offset: int, length: int) -> None:
    """Make a fresh extent read as zeros, skipping holes of sparse device files."""
    pos, end = offset, offset + length
    base = dev.label.data_offset
    while pos < end:
        try:
            data_at = os.lseek(dev.fd, base + pos, os.SEEK_DATA) - base
        except OSError:  # ENXIO: only holes from here to the end of the file
            return
        if data_at >= end:
            return
        pos = max(pos, data_at - data_at % 4096)
        n = min(ZERO_STEP, end - pos)
        dev.write(pos, bytes(n))
        pos += n
