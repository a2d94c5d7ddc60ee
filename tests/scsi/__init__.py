"""Tests of the SCSI targets; shared here: an in-memory block backend and a tiny initiator."""

from __future__ import annotations

from devices.scsi.disk import ScsiDisk
from devices.scsi.sense import parse_fixed_sense
from devices.scsi.target import DataDirection, ScsiStatus
from storage.errors import DeviceIOError


class MemoryBackend:
    """A block device in a bytearray; LBAs in ``bad_blocks`` fail like a dead sector."""

    def __init__(self, num_blocks: int = 64, block_size: int = 512) -> None:
        self.block_size = block_size
        self.num_blocks = num_blocks
        self.data = bytearray(num_blocks * block_size)
        self.bad_blocks: set[int] = set()
        self.fail_flush = False
        self.readonly = False
        self.flushes = 0
        self.discards: list[tuple[int, int]] = []

    def _check(self, lba: int, count: int) -> None:
        assert 0 <= lba and lba + count <= self.num_blocks, "the disk must check ranges"
        if self.bad_blocks & set(range(lba, lba + count)):
            raise DeviceIOError("mem0", f"I/O error at blocks {lba}+{count}")

    def read(self, lba: int, count: int) -> bytes:
        self._check(lba, count)
        return bytes(self.data[lba * self.block_size:(lba + count) * self.block_size])

    def write(self, lba: int, data: bytes) -> None:
        assert len(data) % self.block_size == 0
        self._check(lba, len(data) // self.block_size)
        self.data[lba * self.block_size:lba * self.block_size + len(data)] = data

    def flush(self) -> None:
        if self.fail_flush:
            raise OSError(5, "Input/output error")
        self.flushes += 1

    def discard(self, lba: int, count: int) -> None:
        self._check(lba, count)
        self.discards.append((lba, count))
        self.data[lba * self.block_size:(lba + count) * self.block_size] = bytes(
            count * self.block_size)

    def block(self, lba: int, count: int = 1) -> bytes:
        return bytes(self.data[lba * self.block_size:(lba + count) * self.block_size])


class Result:
    """What an initiator sees of one command."""

    def __init__(self, status: ScsiStatus, data: bytes, sense: bytes) -> None:
        self.status = status
        self.data = data
        self.sense = sense

    @property
    def key_asc(self) -> tuple[int, int, int]:
        s = parse_fixed_sense(self.sense)
        return s.key, s.asc, s.ascq

    @property
    def information(self) -> int | None:
        return parse_fixed_sense(self.sense).information


def run(disk: ScsiDisk, cdb: bytes, data_out: bytes = b"", lun: int = 0) -> Result:
    """Issue ``cdb``, move the data the way a controller would, and collect the outcome."""
    req = disk.request(lun, bytes(cdb))
    data = b""
    if req.direction is DataDirection.FROM_DEVICE:
        length = req.transfer_length
        data = req.data_in()
        assert len(data) == req.transfer_length
        assert len(data) in (0, length)
    elif req.direction is DataDirection.TO_DEVICE:
        assert len(data_out) >= req.transfer_length, "test supplied too little data"
        req.data_out(data_out[:req.transfer_length])
    return Result(req.status, data, req.sense)


def ready_disk(num_blocks: int = 64, block_size: int = 512,
               **kwargs) -> tuple[ScsiDisk, MemoryBackend]:
    """A disk whose power-on unit attention has been consumed by a REQUEST SENSE."""
    backend = MemoryBackend(num_blocks, block_size)
    disk = ScsiDisk(backend, serial=kwargs.pop("serial", "SN0001"), **kwargs)
    run(disk, bytes([0x03, 0, 0, 0, 18, 0]))
    return disk, backend
