"""Physical devices: fixed-size host files carrying an on-disk label.

The label (first 4 KiB) names the pool and the device, so a pool can be re-assembled
from its devices whatever order or path they come in. Two metadata slots follow it
(the pool's volume table, see :mod:`storage.pool`); data starts at ``DATA_OFFSET``.
The byte layout is documented in docs/storage-formats.md.
"""

from __future__ import annotations

import os
import struct
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from .durability import fdatasync
from .errors import DeviceFailedError, DeviceIOError, LabelError, StorageError

MAGIC = b"PYVMPDEV"
VERSION = 1
LABEL_SIZE = 4096
META_SLOT_SIZE = 512 * 1024
META_OFFSET = LABEL_SIZE
DATA_OFFSET = 2 * 1024 * 1024  # label + 2 metadata slots, rounded up to 2 MiB
MIN_DEVICE_SIZE = DATA_OFFSET + 1024 * 1024
IOV_BATCH = 512  # buffers per preadv/pwritev call, well below the kernel's IOV_MAX

# magic, version, label_size, pool_id, device_id, device_size, data_offset,
# meta_offset, meta_slot_size; then crc32 of everything before it.
_LABEL = struct.Struct("<8sII16s16sQQQQ")
_CRC = struct.Struct("<I")

# Called for every write that reaches a device: (device, absolute offset, data).
WriteHook = Callable[["PhysicalDevice", int, bytes], None]
SyncHook = Callable[["PhysicalDevice"], None]


class TruncatedDeviceError(LabelError):
    """A valid label on a file shorter than it says: e.g. a device whose creation a
    crash interrupted. The label still tells which pool and device it was."""

    def __init__(self, message: str, label: "DeviceLabel") -> None:
        super().__init__(message)
        self.label = label


@dataclass
class Hooks:
    """Process-wide observers of device writes and syncs (crash-consistency tests)."""

    write: WriteHook | None = None
    sync: SyncHook | None = None


GLOBAL_HOOKS = Hooks()


@dataclass(frozen=True)
class DeviceLabel:
    """What a device says about itself: which pool, which device, how big."""

    pool_id: uuid.UUID
    device_id: uuid.UUID
    size: int
    data_offset: int = DATA_OFFSET

    def pack(self) -> bytes:
        body = _LABEL.pack(MAGIC, VERSION, LABEL_SIZE, self.pool_id.bytes,
                           self.device_id.bytes, self.size, self.data_offset,
                           META_OFFSET, META_SLOT_SIZE)
        body += _CRC.pack(zlib.crc32(body))
        return body.ljust(LABEL_SIZE, b"\0")

    @classmethod
    def unpack(cls, raw: bytes, where: str) -> "DeviceLabel":
        """Parse a label; raise :class:`LabelError` naming ``where`` and the damage."""
        need = _LABEL.size + _CRC.size
        if len(raw) < need:
            raise LabelError(f"{where}: label damaged: file too short ({len(raw)} bytes)")
        fields = _LABEL.unpack_from(raw)
        magic, version = fields[0], fields[1]
        if magic != MAGIC:
            raise LabelError(f"{where}: label damaged: bad magic {magic!r} (expected {MAGIC!r})")
        (stored,) = _CRC.unpack_from(raw, _LABEL.size)
        computed = zlib.crc32(raw[:_LABEL.size])
        if stored != computed:
            raise LabelError(f"{where}: label damaged: checksum mismatch "
                             f"(stored {stored:08x}, computed {computed:08x})")
        if version != VERSION:
            raise LabelError(f"{where}: label version {version} not supported (expected {VERSION})")
        _, _, label_size, pool, dev, size, data_off, meta_off, slot = fields
        if (label_size, meta_off, slot) != (LABEL_SIZE, META_OFFSET, META_SLOT_SIZE):
            raise LabelError(f"{where}: label damaged: unexpected geometry "
                             f"(label {label_size}, metadata {meta_off}+2x{slot})")
        return cls(uuid.UUID(bytes=pool), uuid.UUID(bytes=dev), size, data_off)


@dataclass
class Fault:
    """An injected I/O error: fails ops of kind ``op`` overlapping [offset, offset+length)."""

    op: str = "any"  # "read", "write" or "any"
    offset: int = 0
    length: int | None = None  # None: to the end of the device
    count: int | None = None  # None: forever; else fire this many times

    def matches(self, op: str, offset: int, size: int) -> bool:
        if self.op not in ("any", op) or self.count == 0:
            return False
        end = None if self.length is None else self.offset + self.length
        return offset + size > self.offset and (end is None or offset < end)


@dataclass(eq=False)
class PhysicalDevice:
    """One labelled host file of fixed size; data offsets are relative to the data area."""

    path: Path
    label: DeviceLabel
    fd: int
    failed: bool = False
    faults: list[Fault] = field(default_factory=list)
    write_hook: WriteHook | None = None
    sync_hook: SyncHook | None = None

    # -- creation and opening -------------------------------------------------

    @classmethod
    def create(cls, path: str | os.PathLike, size: int, pool_id: uuid.UUID,
               device_id: uuid.UUID | None = None, force: bool = False) -> "PhysicalDevice":
        """Make ``path`` a device of ``size`` bytes; refuse to overwrite another label."""
        path = Path(path)
        if size < MIN_DEVICE_SIZE:
            raise StorageError(f"{path}: device size {size} below the minimum {MIN_DEVICE_SIZE}")
        if not force and path.exists() and path.stat().st_size >= len(MAGIC):
            with open(path, "rb") as f:
                if f.read(len(MAGIC)) == MAGIC:
                    raise StorageError(f"{path}: already carries a device label (use force)")
        label = DeviceLabel(pool_id, device_id or uuid.uuid4(), size)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        dev = cls(path, label, fd)
        try:
            os.ftruncate(fd, size)
            # Through _pwrite, so crash-consistency recordings see a device being born.
            dev._pwrite(0, bytes(META_OFFSET + 2 * META_SLOT_SIZE))  # clear old metadata
            dev._pwrite(size - 1, b"\0")  # the size, as a write a recording can replay
            dev._pwrite(0, label.pack())
            dev.sync()
        except (OSError, DeviceIOError) as e:
            os.close(fd)
            raise StorageError(f"{path}: cannot create device: {e}") from None
        return dev

    @classmethod
    def open(cls, path: str | os.PathLike) -> "PhysicalDevice":
        """Open a labelled device; a damaged label is refused (and never written)."""
        path = Path(path)
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError as e:
            raise LabelError(f"{path}: cannot open: {e.strerror}") from None
        try:
            raw = os.pread(fd, LABEL_SIZE, 0)
            label = DeviceLabel.unpack(raw, str(path))
            actual = os.fstat(fd).st_size
            if actual < label.size:
                raise TruncatedDeviceError(
                    f"{path}: device truncated: {actual} bytes, label says {label.size}", label)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, label, fd)

    @property
    def device_id(self) -> uuid.UUID:
        return self.label.device_id

    @property
    def pool_id(self) -> uuid.UUID:
        return self.label.pool_id

    @property
    def data_size(self) -> int:
        """Bytes usable for volumes."""
        return self.label.size - self.label.data_offset

    @property
    def name(self) -> str:
        return f"{self.path.name} ({str(self.device_id)[:8]})"

    # -- failures --------------------------------------------------------------

    def mark_failed(self) -> None:
        """Refuse every further I/O, as a dead disk would."""
        self.failed = True

    def inject_error(self, op: str = "any", offset: int = 0, length: int | None = None,
                     count: int | None = None) -> Fault:
        """Make matching data-area I/O raise :class:`DeviceIOError` (for tests)."""
        fault = Fault(op, offset, length, count)
        self.faults.append(fault)
        return fault

    def clear_errors(self) -> None:
        self.faults.clear()

    def _check(self, op: str, offset: int, size: int) -> None:
        if self.failed:
            raise DeviceFailedError(self.name, "device failed")
        for fault in self.faults:
            if fault.matches(op, offset, size):
                if fault.count is not None:
                    fault.count -= 1
                raise DeviceIOError(self.name, f"I/O error ({op} of {size} bytes at {offset})")
        if offset < 0 or offset + size > self.data_size:
            raise DeviceIOError(self.name, f"{op} of {size} bytes at {offset} beyond the "
                                           f"data area ({self.data_size} bytes)")

    # -- data area I/O ----------------------------------------------------------

    def read(self, offset: int, size: int) -> bytes:
        """Read ``size`` bytes at ``offset`` of the data area."""
        self._check("read", offset, size)
        try:
            data = os.pread(self.fd, size, self.label.data_offset + offset)
        except OSError as e:
            raise DeviceIOError(self.name, f"read failed: {e.strerror}") from None
        if len(data) != size:
            raise DeviceIOError(self.name, f"short read at {offset}")
        return data

    def readinto(self, offset: int, bufs: list[memoryview]) -> None:
        """Fill ``bufs`` (byte views) in order from ``offset`` of the data area: one
        system call straight into the caller's memory, no intermediate bytes."""
        size = sum(len(b) for b in bufs)
        self._check("read", offset, size)
        self._vectored(os.preadv, "read", bufs, size, self.label.data_offset + offset)

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        """Write ``data`` at ``offset`` of the data area."""
        if not isinstance(data, bytes):
            data = memoryview(data).cast("B")  # numpy buffers: count bytes, not rows
        self._check("write", offset, len(data))
        self._pwrite(self.label.data_offset + offset, data)

    def writev(self, offset: int, bufs: list[memoryview]) -> None:
        """Write ``bufs`` (byte views) back to back from ``offset``: one write, gathered
        by the kernel from the caller's buffers (RAID 5 rows and parity, no assembly)."""
        size = sum(len(b) for b in bufs)
        self._check("write", offset, size)
        absolute = self.label.data_offset + offset
        hook = self.write_hook or GLOBAL_HOOKS.write
        if hook is not None:
            hook(self, absolute, b"".join(bufs))  # observers see it as the one write it is
        self._vectored(os.pwritev, "write", bufs, size, absolute)

    def _vectored(self, call, what: str, bufs: list[memoryview], size: int, absolute: int) -> None:
        """``os.preadv``/``os.pwritev`` of ``bufs`` at ``absolute``, IOV_BATCH buffers a
        call; anything short of the whole is an error naming the device."""
        for k in range(0, len(bufs), IOV_BATCH):
            group = bufs[k:k + IOV_BATCH]
            want = sum(len(b) for b in group) if len(bufs) > IOV_BATCH else size
            try:
                done = call(self.fd, group, absolute)
            except OSError as e:
                raise DeviceIOError(self.name, f"{what} failed: {e.strerror}") from None
            if done != want:
                raise DeviceIOError(self.name, f"short {what} at {absolute}")
            absolute += want

    def _pwrite(self, absolute: int, data: bytes | bytearray | memoryview) -> None:
        hook = self.write_hook or GLOBAL_HOOKS.write
        if hook is not None:
            hook(self, absolute, bytes(data))
        try:
            done = os.pwrite(self.fd, data, absolute)
        except OSError as e:
            raise DeviceIOError(self.name, f"write failed: {e.strerror}") from None
        if done != len(data):
            raise DeviceIOError(self.name, f"short write at {absolute}")

    def sync(self) -> None:
        """Make every write so far durable (fdatasync)."""
        if self.failed:
            return
        hook = self.sync_hook or GLOBAL_HOOKS.sync
        if hook is not None:
            hook(self)
        fdatasync(self.fd)

    # -- metadata slots ---------------------------------------------------------

    def read_meta_slot(self, slot: int) -> bytes:
        if self.failed:
            raise DeviceFailedError(self.name, "device failed")
        return os.pread(self.fd, META_SLOT_SIZE, META_OFFSET + slot * META_SLOT_SIZE)

    def write_meta_slot(self, slot: int, data: bytes) -> None:
        if self.failed:
            raise DeviceFailedError(self.name, "device failed")
        if len(data) > META_SLOT_SIZE:
            raise StorageError(f"{self.name}: pool metadata too large ({len(data)} bytes)")
        self._pwrite(META_OFFSET + slot * META_SLOT_SIZE, data)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def has_label_magic(path: Path) -> bool:
    """True when ``path`` starts with the device magic (it may still be damaged)."""
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def scan(paths: Iterable[str | os.PathLike],
         truncated: list[TruncatedDeviceError] | None = None) -> dict[uuid.UUID, list[PhysicalDevice]]:
    """Open every labelled file among ``paths`` (directories are listed), grouped by pool.

    Files without the magic are skipped; a file with the magic but a damaged label is
    refused with a :class:`LabelError` naming it, because it is probably a pool member.
    Truncated devices go to ``truncated`` when given (the pool decides), else refused.
    """
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(q for q in p.iterdir() if q.is_file()))
        else:
            files.append(p)
    found: dict[uuid.UUID, list[PhysicalDevice]] = {}
    seen: dict[uuid.UUID, Path] = {}
    try:
        for f in files:
            if not has_label_magic(f):
                continue
            try:
                dev = PhysicalDevice.open(f)
            except TruncatedDeviceError as e:
                if truncated is None:
                    raise
                truncated.append(e)
                continue
            if dev.device_id in seen:
                dev.close()
                raise LabelError(f"{f}: same device id as {seen[dev.device_id]} "
                                 f"(a copied device file?)")
            seen[dev.device_id] = f
            found.setdefault(dev.pool_id, []).append(dev)
    except BaseException:
        for devs in found.values():
            for d in devs:
                d.close()
        raise
    return found
