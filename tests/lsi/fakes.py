"""Stand-ins for what surrounds the controller: guest RAM behind a Dma, an IRQ line that
records its level, and a small SCSI disk that speaks just enough SBC/SPC for the tests."""

from __future__ import annotations

from dataclasses import dataclass, field

from devices.base import DmaError, ManualClock
from devices.scsi import lsi_registers as R
from devices.scsi.lsi53c895a import Lsi53c895a
from devices.scsi.target import DataDirection, ScsiStatus

from tests.lsi.asm import Program

RAM_SIZE = 0x40000
IO_BASE = 0xC000
MMIO_BASE = 0xFEBF0000
RAM_BAR_BASE = 0xFEBE0000
BLOCK = 512


class FakeDma:
    """Guest RAM as a bytearray; anything past its end is not RAM."""

    def __init__(self, size: int = RAM_SIZE) -> None:
        self.ram = bytearray(size)

    def read(self, gpa: int, length: int) -> bytes:
        if gpa < 0 or gpa + length > len(self.ram):
            raise DmaError(f"read {gpa:#x}+{length:#x} outside RAM")
        return bytes(self.ram[gpa : gpa + length])

    def write(self, gpa: int, data: bytes) -> None:
        if gpa < 0 or gpa + len(data) > len(self.ram):
            raise DmaError(f"write {gpa:#x}+{len(data):#x} outside RAM")
        self.ram[gpa : gpa + len(data)] = data


@dataclass
class FakeRequest:
    direction: DataDirection
    transfer_length: int
    payload: bytes = b""
    status: ScsiStatus = ScsiStatus.GOOD
    sense: bytes = b""
    written: bytes | None = None
    on_write: object = None

    def data_in(self) -> bytes:
        return self.payload

    def data_out(self, data: bytes) -> None:
        self.written = data
        if self.on_write is not None:
            self.on_write(data)


@dataclass
class FakeDisk:
    """A target at one ID with LUN 0: TEST UNIT READY, INQUIRY, REQUEST SENSE, READ(10),
    WRITE(10); a unit attention after a bus reset; CHECK CONDITION for anything else."""

    blocks: int = 64
    data: bytearray = field(default_factory=bytearray)
    resets: int = 0
    unit_attention: bool = False
    cdbs: list[tuple[int, bytes]] = field(default_factory=list)
    sense_data: bytes = bytes(18)

    def __post_init__(self) -> None:
        if not self.data:
            self.data = bytearray(bytes(range(256)) * (self.blocks * BLOCK // 256))

    def luns(self) -> list[int]:
        return [0]

    def bus_reset(self) -> None:
        self.resets += 1
        self.unit_attention = True

    def _check(self, key: int, asc: int, ascq: int = 0) -> FakeRequest:
        self.sense_data = bytes([0x70, 0, key, 0, 0, 0, 0, 10, 0, 0, 0, 0, asc, ascq, 0, 0, 0, 0])
        return FakeRequest(DataDirection.NONE, 0, status=ScsiStatus.CHECK_CONDITION)

    def request(self, lun: int, cdb: bytes) -> FakeRequest:
        self.cdbs.append((lun, bytes(cdb)))
        opcode = cdb[0]
        if opcode == 0x03:  # REQUEST SENSE
            sense, self.sense_data = self.sense_data, bytes(18)
            return FakeRequest(DataDirection.FROM_DEVICE, min(cdb[4], 18), sense[: cdb[4]])
        if self.unit_attention and opcode != 0x12:
            self.unit_attention = False
            return self._check(0x06, 0x29)
        if lun != 0:
            return self._check(0x05, 0x25)
        if opcode == 0x00:  # TEST UNIT READY
            return FakeRequest(DataDirection.NONE, 0)
        if opcode == 0x12:  # INQUIRY
            inquiry = bytes([0, 0, 5, 2, 31, 0, 0, 0]) + b"FAKE    " + b"DISK            " + b"0001"
            length = min(cdb[4], len(inquiry))
            return FakeRequest(DataDirection.FROM_DEVICE, length, inquiry[:length])
        if opcode in (0x28, 0x2A):  # READ(10) / WRITE(10)
            lba, count = int.from_bytes(cdb[2:6], "big"), int.from_bytes(cdb[7:9], "big")
            if lba + count > self.blocks:
                return self._check(0x05, 0x21)
            start, end = lba * BLOCK, (lba + count) * BLOCK
            if opcode == 0x28:
                return FakeRequest(DataDirection.FROM_DEVICE, end - start, bytes(self.data[start:end]))

            def store(data: bytes, start: int = start, end: int = end) -> None:
                self.data[start:end] = data

            return FakeRequest(DataDirection.TO_DEVICE, end - start, on_write=store)
        return self._check(0x05, 0x20)


class Rig:
    """A controller on a fake bus: BARs placed and decoded, RAM, a disk at ID 0."""

    def __init__(
        self,
        targets: dict | None = None,
        *,
        clock: ManualClock | None = None,
        ram: int = RAM_SIZE,
        disconnect_reads: bool = True,
    ) -> None:
        self.dma = FakeDma(ram)
        self.disk = FakeDisk()
        self.targets = {0: self.disk} if targets is None else targets
        self.clock = clock
        self.chip = Lsi53c895a(self.dma, self.targets, clock=clock, disconnect_reads=disconnect_reads)
        self.irq_levels: list[bool] = []
        self.chip.intx.connect(self.irq_levels.append)
        self.chip.place_bar(0, IO_BASE)
        self.chip.place_bar(1, MMIO_BASE)
        self.chip.place_bar(2, RAM_BAR_BASE)
        self.chip.config_write(0x04, 2, 0x0007)  # I/O, memory, bus master
        self.io = self.chip.bars[0].device
        self.mmio = self.chip.bars[1].device
        self.ram_bar = self.chip.bars[2].device

    # register access as a driver does it, through the I/O BAR
    def r8(self, offset: int) -> int:
        return self.io.read(offset, 1)

    def w8(self, offset: int, value: int) -> None:
        self.io.write(offset, 1, value)

    def r32(self, offset: int) -> int:
        return self.io.read(offset, 4)

    def w32(self, offset: int, value: int) -> None:
        self.io.write(offset, 4, value)

    @property
    def irq(self) -> bool:
        return self.chip.intx.level

    def poke(self, address: int, data: bytes) -> None:
        self.dma.ram[address : address + len(data)] = data

    def peek(self, address: int, length: int) -> bytes:
        return bytes(self.dma.ram[address : address + length])

    def run(self, program: Program, *, dsa: int | None = None, start: str | int | None = None) -> None:
        """Load ``program`` into RAM at its base and start it by writing DSP."""
        self.poke(program.base, program.assemble())
        if dsa is not None:
            self.w32(R.DSA, dsa)
        entry = program.base if start is None else program.labels[start] if isinstance(start, str) else start
        self.w32(R.DSP, entry)

    def dstat(self) -> int:
        return self.r8(R.DSTAT)

    def sist(self) -> tuple[int, int]:
        return self.r8(R.SIST0), self.r8(R.SIST1)
