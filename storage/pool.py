"""A pool: the set of physical devices plus the volume table they all carry.

The volume table (pool metadata) is JSON in two alternating slots on every device,
each slot with a generation number and CRC32, so a crash in the middle of an update
leaves the previous generation readable. On assembly the newest valid slot wins.
"""

from __future__ import annotations

import json
import os
import struct
import uuid
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

from .errors import DeviceIOError, LabelError, StorageError
from .physical import META_SLOT_SIZE, PhysicalDevice, TruncatedDeviceError, scan

META_MAGIC = b"PYVMPMET"
META_VERSION = 1
# magic, version, generation, body length, body crc32; then crc32 of these 28 bytes.
_META_HDR = struct.Struct("<8sIQII")
_CRC = struct.Struct("<I")
META_HDR_SIZE = _META_HDR.size + _CRC.size


@dataclass
class DeviceRecord:
    """A pool member as the volume table knows it (paths are not stored: they change)."""

    id: str
    size: int
    state: str = "active"  # "active" or "failed"


@dataclass
class MemberRecord:
    """One volume's extent on one device; ``rebuilt`` is the resume point of a rebuild."""

    device: str
    offset: int
    length: int
    state: str = "ok"  # "ok", "failed" or "rebuilding"
    rebuilt: int = 0
    move: dict | None = None  # {"device", "offset", "copied"} while being moved


@dataclass
class VolumeRecord:
    """A volume's attributes and where its members live."""

    name: str
    size: int
    layout: str  # "concat", "raid0", "raid1", "raid5"
    tier: str = "default"
    stripe_unit: int = 64 * 1024
    members: list[MemberRecord] = field(default_factory=list)
    bitmap_bytes: int = 0  # RAID 5: write-intent bitmap at the start of each member
    bitmap_region: int = 0  # member bytes covered by one bitmap bit


@dataclass
class PoolMetadata:
    """The volume table: everything needed to re-assemble the pool after a restart."""

    pool_id: str
    name: str
    generation: int = 0
    devices: list[DeviceRecord] = field(default_factory=list)
    volumes: list[VolumeRecord] = field(default_factory=list)

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_dict(cls, d: dict) -> "PoolMetadata":
        vols = [VolumeRecord(**{**v, "members": [MemberRecord(**m) for m in v["members"]]})
                for v in d["volumes"]]
        return cls(d["pool_id"], d["name"], d["generation"],
                   [DeviceRecord(**r) for r in d["devices"]], vols)


def pack_slot(meta: PoolMetadata) -> bytes:
    body = meta.to_bytes()
    hdr = _META_HDR.pack(META_MAGIC, META_VERSION, meta.generation, len(body), zlib.crc32(body))
    return hdr + _CRC.pack(zlib.crc32(hdr)) + body


def unpack_slot(raw: bytes, where: str) -> PoolMetadata:
    """Parse one metadata slot or raise :class:`LabelError` naming the damage."""
    hdr = raw[:_META_HDR.size]
    magic, version, gen, length, body_crc = _META_HDR.unpack(hdr)
    if magic != META_MAGIC:
        raise LabelError(f"{where}: pool metadata damaged: bad magic {magic[:8]!r}")
    (hcrc,) = _CRC.unpack_from(raw, _META_HDR.size)
    if hcrc != zlib.crc32(hdr):
        raise LabelError(f"{where}: pool metadata damaged: header checksum mismatch")
    if version != META_VERSION:
        raise LabelError(f"{where}: pool metadata version {version} not supported")
    if length > META_SLOT_SIZE - META_HDR_SIZE:
        raise LabelError(f"{where}: pool metadata damaged: length {length} too large")
    body = raw[META_HDR_SIZE:META_HDR_SIZE + length]
    if zlib.crc32(body) != body_crc:
        raise LabelError(f"{where}: pool metadata damaged: body checksum mismatch")
    meta = PoolMetadata.from_dict(json.loads(body))
    if meta.generation != gen:
        raise LabelError(f"{where}: pool metadata damaged: generation mismatch")
    return meta


class Pool:
    """Physical devices of one pool, their volume table, and extent allocation."""

    def __init__(self, meta: PoolMetadata, devices: dict[str, PhysicalDevice],
                 directory: Path | None = None) -> None:
        self.meta = meta
        self.devices = devices  # present devices, by device id (str)
        self.directory = directory
        self.warnings: list[str] = []

    # -- creation and assembly ---------------------------------------------------

    @classmethod
    def create(cls, directory: str | os.PathLike, count: int, size: int,
               name: str = "pool") -> "Pool":
        """Create ``count`` device files of ``size`` bytes in ``directory`` as a new pool."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        pool_id = uuid.uuid4()
        meta = PoolMetadata(str(pool_id), name)
        pool = cls(meta, {}, directory)
        for i in range(count):
            pool._add(PhysicalDevice.create(directory / f"dev{i}.img", size, pool_id))
        pool.save()
        return pool

    @classmethod
    def open(cls, paths: str | os.PathLike | Iterable[str | os.PathLike],
             pool_id: str | None = None) -> "Pool":
        """Re-assemble a pool from its device files (a directory or a list of paths)."""
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        paths = [Path(p) for p in paths]
        truncated: list[TruncatedDeviceError] = []
        found = scan(paths, truncated)
        if pool_id is not None:
            for pid in [p for p in found if str(p) != pool_id]:
                for d in found.pop(pid):
                    d.close()
        if not found:
            raise StorageError(f"no pool devices found in {', '.join(map(str, paths))}")
        if len(found) > 1:
            ids = ", ".join(sorted(str(p) for p in found))
            for devs in found.values():
                for d in devs:
                    d.close()
            raise StorageError(f"several pools found ({ids}): name one with its pool id")
        (pid, devs), = found.items()
        best, damage = None, []
        for dev in devs:
            for slot in (0, 1):
                try:
                    m = unpack_slot(dev.read_meta_slot(slot), f"{dev.path} slot {slot}")
                except LabelError as e:
                    damage.append(str(e))
                    continue
                if best is None or m.generation > best.generation:
                    best = m
        if best is None:
            for d in devs:
                d.close()
            raise LabelError("no valid pool metadata on any device: " + "; ".join(damage))
        directory = paths[0] if len(paths) == 1 and paths[0].is_dir() else None
        pool = cls(best, {}, directory)
        known = {r.id: r for r in best.devices}
        for err in truncated:
            if str(err.label.pool_id) != best.pool_id:
                continue
            if str(err.label.device_id) in known:  # a member: its damage is the pool's
                for d in devs:
                    d.close()
                raise err
            pool.warnings.append(f"{err} (not a pool member: an unfinished device creation; ignored)")
        for dev in devs:
            rec = known.get(str(dev.device_id))
            if rec is None:  # removed from the pool earlier; not ours any more
                pool.warnings.append(f"{dev.path}: device not in the pool's table (ignored)")
                dev.close()
                continue
            if rec.state == "failed":
                dev.mark_failed()  # stale contents: it must be replaced, never read
            pool.devices[rec.id] = dev
        for rec in best.devices:
            if rec.id not in pool.devices and rec.state != "failed":
                pool.warnings.append(f"device {rec.id[:8]} is missing: treated as failed")
        return pool

    def _add(self, dev: PhysicalDevice) -> DeviceRecord:
        rec = DeviceRecord(str(dev.device_id), dev.data_size)
        self.meta.devices.append(rec)
        self.devices[rec.id] = dev
        return rec

    # -- persistence -----------------------------------------------------------------

    def save(self) -> None:
        """Write the volume table to the next slot of every working device, durably."""
        self.meta.generation += 1
        raw = pack_slot(self.meta)
        if len(raw) > META_SLOT_SIZE:
            raise StorageError(f"pool metadata too large ({len(raw)} bytes)")
        slot = self.meta.generation % 2
        written = 0
        for dev in self.devices.values():
            if dev.failed:
                continue
            try:
                dev.write_meta_slot(slot, raw)
                dev.sync()
                written += 1
            except (DeviceIOError, OSError):
                continue
        if written == 0:
            raise StorageError("pool metadata could not be written to any device")

    # -- devices ---------------------------------------------------------------------

    def device_record(self, device_id: str) -> DeviceRecord:
        for rec in self.meta.devices:
            if rec.id == device_id or rec.id.startswith(device_id):
                return rec
        raise StorageError(f"no device {device_id} in pool {self.meta.name}")

    def device(self, device_id: str) -> PhysicalDevice | None:
        """The open device, or None if it is missing or failed."""
        dev = self.devices.get(device_id)
        return None if dev is None or dev.failed else dev

    def usable(self, device_id: str) -> bool:
        rec = self.device_record(device_id)
        return rec.state == "active" and self.device(device_id) is not None

    def fail_device(self, device_id: str) -> None:
        """Mark a device failed in the table (and refuse its I/O) until it is replaced."""
        rec = self.device_record(device_id)
        rec.state = "failed"
        dev = self.devices.get(rec.id)
        if dev is not None:
            dev.mark_failed()
        for vol in self.meta.volumes:
            for m in vol.members:
                if m.device == rec.id:
                    m.state, m.rebuilt = "failed", 0
        self.save()

    def add_device(self, path: str | os.PathLike, size: int) -> PhysicalDevice:
        """Create a new device file and add it to the pool."""
        dev = PhysicalDevice.create(path, size, uuid.UUID(self.meta.pool_id))
        self._add(dev)
        self.save()
        return dev

    def remove_device(self, device_id: str) -> None:
        """Drop a device no volume uses any more from the table."""
        rec = self.device_record(device_id)
        users = [v.name for v in self.meta.volumes for m in v.members
                 if rec.id in (m.device, (m.move or {}).get("device"))]
        if users:
            raise StorageError(f"device {rec.id[:8]} still holds volume(s) {', '.join(users)}")
        self.meta.devices.remove(rec)
        dev = self.devices.pop(rec.id, None)
        self.save()
        if dev is not None:
            dev.close()

    # -- extent allocation -------------------------------------------------------------

    def free_extents(self, device_id: str) -> list[tuple[int, int]]:
        """Free (offset, length) ranges of a device's data area, in order."""
        rec = self.device_record(device_id)
        used = sorted([(m.offset, m.length) for v in self.meta.volumes
                       for m in v.members if m.device == rec.id]
                      + [(m.move["offset"], m.length) for v in self.meta.volumes
                         for m in v.members if m.move and m.move["device"] == rec.id])
        free, pos = [], 0
        for off, length in used:
            if off > pos:
                free.append((pos, off - pos))
            pos = max(pos, off + length)
        if rec.size > pos:
            free.append((pos, rec.size - pos))
        return free

    def free_bytes(self, device_id: str) -> int:
        return sum(length for _, length in self.free_extents(device_id))

    def allocate(self, length: int, count: int, exclude: Iterable[str] = (),
                 align: int = 512) -> list[MemberRecord]:
        """Pick ``count`` distinct usable devices, each with a free extent of ``length``
        starting at a multiple of ``align`` in the data area (the volume's stripe unit:
        the rows of a striped volume then sit on stripe-unit boundaries of the files)."""
        excluded = set(exclude)
        choices = []
        for rec in self.meta.devices:
            if rec.id in excluded or not self.usable(rec.id):
                continue
            starts = [start for off, ln in self.free_extents(rec.id)
                      if off + ln - (start := -(-off // align) * align) >= length]
            if starts:
                choices.append((-self.free_bytes(rec.id), rec.id, starts[0]))
        if len(choices) < count:
            raise StorageError(f"not enough space: need {count} device(s) with "
                               f"{length} free bytes each, {len(choices)} have it")
        choices.sort()
        return [MemberRecord(dev_id, off, length) for _, dev_id, off in choices[:count]]

    def close(self) -> None:
        for dev in self.devices.values():
            dev.close()
        self.devices.clear()
