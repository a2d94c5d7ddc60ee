"""Tests of the NE2000 and the network. ``Card`` drives an NE2000 through its ports the
way a driver does (Linux's 8390.c / ne.c conventions), with the wire recorded."""

from __future__ import annotations

from devices.base import IrqLine
from devices.net.link import Link
from devices.net.ne2000 import Ne2000

MAC = bytes.fromhex("525400123456")

# Page 0 / page 1 register offsets, as a driver spells them
CR, PSTART, PSTOP, BNRY, TPSR, TBCR0, TBCR1, ISR = 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07
TSR, CRDA0, CRDA1, RSR, CNTR0, CNTR1, CNTR2 = 0x04, 0x08, 0x09, 0x0C, 0x0D, 0x0E, 0x0F
RSAR0, RSAR1, RBCR0, RBCR1, RCR, TCR, DCR, IMR = 0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F
PAR0, CURR, MAR0 = 0x01, 0x07, 0x08
DATA, RESET = 0x10, 0x1F

# CR values
STOP_PAGE0 = 0x21  # STP | RD2 (no remote DMA)
START_PAGE0 = 0x22  # STA | RD2
PAGE1 = 0x40
PAGE2 = 0x80
REMOTE_READ = 0x0A  # STA | RD0
REMOTE_WRITE = 0x12  # STA | RD1
TRANSMIT = 0x26  # STA | TXP | RD2

DCR_BYTES = 0x48  # normal operation (LS), FIFO threshold, byte transfers
DCR_WORDS = 0x49  # ... word transfers

RING_START, RING_STOP, TX_PAGE = 0x46, 0x80, 0x40  # as Linux's ne driver lays it out


class Card:
    """An NE2000 on a test bench: registers by name, the wire and IRQ line recorded."""

    def __init__(self, mac: bytes = MAC) -> None:
        self.sent: list[bytes] = []
        self.link = Link(self.sent.append)
        self.irq = IrqLine()
        self.nic = Ne2000(self.irq, mac, self.link)

    def r(self, reg: int, size: int = 1) -> int:
        return self.nic.read(reg, size)

    def w(self, reg: int, value: int, size: int = 1) -> None:
        self.nic.write(reg, size, value)

    def page(self, page: int) -> None:
        """Select a register page, keeping the other CR bits."""
        self.w(CR, (self.r(CR) & 0x3F) | (page << 6))

    def read_page(self, page: int, reg: int) -> int:
        self.page(page)
        value = self.r(reg)
        self.page(0)
        return value

    def init(self, ring_start: int = RING_START, ring_stop: int = RING_STOP,
             rcr: int = 0x04, dcr: int = DCR_BYTES) -> None:
        """Linux's NS8390_init: stopped, ring set up, BNRY one behind CURR, started."""
        self.w(CR, STOP_PAGE0)
        self.w(DCR, dcr)
        self.w(RBCR0, 0)
        self.w(RBCR1, 0)
        self.w(RCR, rcr)
        self.w(TCR, 0x02)
        self.w(TPSR, TX_PAGE)
        self.w(PSTART, ring_start)
        self.w(BNRY, ring_stop - 1)
        self.w(PSTOP, ring_stop)
        self.w(ISR, 0xFF)
        self.w(IMR, 0x00)
        self.w(CR, STOP_PAGE0 | PAGE1)
        for i, byte in enumerate(self.nic.mac):
            self.w(PAR0 + i, byte)
        for i in range(8):
            self.w(MAR0 + i, 0)
        self.w(CURR, ring_start)
        self.w(CR, START_PAGE0)
        self.w(TCR, 0x00)

    def setup_dma(self, addr: int, count: int, command: int) -> None:
        self.w(RSAR0, addr & 0xFF)
        self.w(RSAR1, addr >> 8)
        self.w(RBCR0, count & 0xFF)
        self.w(RBCR1, count >> 8)
        self.w(CR, command)

    def dma_read(self, addr: int, count: int) -> bytes:
        """Remote DMA read through the data port, in the width DCR selects."""
        words = self.read_page(2, DCR) & 1  # page 0 offset 0x0E reads CNTR1
        if words:
            count += count & 1
            self.setup_dma(addr, count, REMOTE_READ)
            return b"".join(self.r(DATA, 2).to_bytes(2, "little") for _ in range(count // 2))
        self.setup_dma(addr, count, REMOTE_READ)
        return bytes(self.r(DATA) for _ in range(count))

    def dma_write(self, addr: int, data: bytes) -> None:
        words = self.read_page(2, DCR) & 1
        if words and len(data) & 1:
            data += b"\0"
        self.setup_dma(addr, len(data), REMOTE_WRITE)
        if words:
            for i in range(0, len(data), 2):
                self.w(DATA, int.from_bytes(data[i:i + 2], "little"), 2)
        else:
            for byte in data:
                self.w(DATA, byte)

    def next_frame(self) -> tuple[bytes, bytes] | None:
        """Linux's ei_receive for one frame: (4-byte header, frame) or None if the ring
        is empty; BNRY moves to one page before the next frame."""
        start = self.read_page(2, PSTART)
        stop = self.read_page(2, PSTOP)
        current = self.read_page(1, CURR)
        this = self.r(BNRY) + 1
        if this >= stop:
            this = start
        if this == current:
            return None
        header = self.dma_read(this * 256, 4)
        count = header[2] | (header[3] << 8)
        frame = self.dma_read(this * 256 + 4, count - 4)[:count - 4]
        next_page = header[1]
        self.w(BNRY, (next_page - 1) if next_page > start else stop - 1)
        self.w(ISR, 0x40)  # acknowledge RDC
        return header, frame


def frame_to(destination: bytes, length: int, fill: int = 0) -> bytes:
    """An Ethernet frame of ``length`` bytes for ``destination`` with a recognisable
    payload."""
    head = destination + bytes.fromhex("02aabbccddee") + b"\x88\xb5"
    body = bytes((fill + i) & 0xFF for i in range(max(0, length - len(head))))
    return (head + body)[:length]
