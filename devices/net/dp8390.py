"""National DP8390D network interface controller: the core of the NE2000.

Registers pages 0-2 (dp8390_registers.py), the receive ring between PSTART and PSTOP,
transmit from TPSR, remote DMA through RSAR/RBCR, the address filters and the tally
counters. The core does not know what memory sits on its local bus: the board
(ne2000.py) hands it a :class:`LocalBus` and moves data-port accesses to
``remote_read``/``remote_write``.

Behaviour follows QEMU's hw/net/ne2000.c where a guest can see it (DESIGN.md: QEMU is
the reference): the power-on CR is 0x00, a reset pulse only sets ISR to RST, STP does
not set ISR.RST, TSR reads PTX after every transmit, the remote DMA runs whatever the CR
remote command bits say (a write with RBCR = 0 is ignored, a read is not), RSAR wraps
from PSTOP to PSTART only when it lands exactly on PSTOP, writes of PSTART/PSTOP beyond
the buffer and of BNRY/CURR at or beyond its end are ignored, received frames are given
byte count = length + 4 and room for a 4-byte CRC that is not stored, RSR.PHY marks
multicast and broadcast destinations, page 0 offsets 0x0A/0x0B read 0x50/0x43 and page 3
reads as QEMU's RTL8029 does.

Where the datasheet and the issue ask for more than QEMU does, the datasheet wins:
- the physical filter compares with PAR0-5 (QEMU compares with the PROM);
- the ring is full when the frame's pages would reach BNRY: the frame is dropped with
  ISR.OVW and ISR.RXE, RSR.MPA and CNTR2 counting it, and unread frames stay intact
  (QEMU drops silently whenever fewer than 1518 bytes are free, whatever the frame).
  A frame is stored only if CURR stays short of BNRY after it, so both driver habits
  work: BNRY one page behind the next frame to read (Linux) or on it (BNRY = CURR is
  then an empty ring);
- CNTR0-2 count (saturating at 192, ISR.CNT when the MSB sets) and clear when read
  (QEMU reads 0); frames addressed to us that arrive while CR.STP is set count as
  missed;
- page 2 reads back TPSR, RCR, TCR, DCR and IMR (QEMU reads 0 there);
- RSAR is a 16-bit register and wraps at 0x10000 (QEMU lets it grow past 0xFFFF).
As in QEMU, the loopback modes of TCR and monitor mode (RCR.MON) are not modelled:
frames always go to the wire and are always stored. The wire never corrupts a frame,
so CNTR0 and CNTR1 stay 0 and RCR.SEP/AR change nothing.
"""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from devices.base import IrqLine
from devices.net.dp8390_registers import (
    COUNTER_MAX,
    COUNTER_MSB,
    CR_PAGE_SHIFT,
    CR_REMOTE_READ_OR_WRITE,
    ISR_INTERRUPTS,
    ISR_WRITE_CLEARABLE,
    PAGE_SIZE,
    QEMU_ID_BYTES,
    QEMU_PAGE3_READS,
    Cr,
    Isr,
    Page0Read,
    Page0Write,
    Page1,
    Page2Read,
    Rcr,
    Rsr,
    Tsr,
)

ADDRESS_MASK = 0xFFFF  # RSAR and the local bus are 16 bits wide
BROADCAST = b"\xff" * 6
MIN_FRAME = 60  # without the FCS: shorter frames are padded with zeros, as QEMU does
RING_HEADER = 4  # receive status, next page, byte count low, byte count high
CRC_ROOM = 4  # the ring keeps room for the FCS after each frame (not written)
MAX_FRAME = 1514


class LocalBus(Protocol):
    """The memory on the DP8390's local bus, as the board wires it."""

    def region(self, addr: int) -> tuple[bytearray | None, int, int]:
        """(backing store or None if nothing answers, first address, end address) of
        the contiguous region holding ``addr``; the backing store is indexed from the
        first address."""
        ...

    def transmit_window(self, addr: int, length: int) -> bytes | None:
        """The bytes a transmit from ``addr`` sends, or None if the board drops it."""
        ...


def multicast_index(destination: bytes) -> int:
    """The MAR bit (0-63) a multicast address hashes to: the top 6 bits of the
    Ethernet CRC-32 of the destination, computed MSB first as the DP8390 does
    (datasheet "Multicast Address Filtering"); bits 5-3 pick MAR0-7, bits 2-0 the bit."""
    reflected = zlib.crc32(destination[:6]) ^ 0xFFFFFFFF  # the shift register, LSB first
    return _REVERSE6[reflected & 0x3F]


_REVERSE6 = [int(f"{i:06b}"[::-1], 2) for i in range(64)]


@dataclass
class Dp8390State:
    """Every DP8390 register; pages are numbers, not byte addresses."""

    cr: int = 0x00  # QEMU's power-on value (the datasheet says 0x21)
    pstart: int = 0
    pstop: int = 0
    bnry: int = 0
    tpsr: int = 0
    tbcr: int = 0
    isr: int = Isr.RST
    rsar: int = 0
    rbcr: int = 0
    rcr: int = 0
    tcr: int = 0
    dcr: int = 0
    imr: int = 0
    tsr: int = 0
    rsr: int = 0
    par: list[int] = field(default_factory=lambda: [0] * 6)
    curr: int = 0
    mar: list[int] = field(default_factory=lambda: [0] * 8)
    counters: list[int] = field(default_factory=lambda: [0, 0, 0])  # CNTR0, 1, 2


class Dp8390:
    """The controller; ``buffer_end_page`` is the first page past the board's buffer
    RAM (PSTART/PSTOP/BNRY/CURR writes beyond it are ignored, as in QEMU)."""

    def __init__(self, irq: IrqLine, bus: LocalBus, transmit: Callable[[bytes], None],
                 buffer_end_page: int) -> None:
        self.irq = irq
        self.bus = bus
        self.transmit = transmit
        self.buffer_end_page = buffer_end_page
        self.state = Dp8390State()

    # --- interrupts ----------------------------------------------------------------------

    def _update_irq(self) -> None:
        s = self.state
        self.irq.set_level(bool(s.isr & s.imr & ISR_INTERRUPTS))

    def reset(self) -> None:
        """The board's reset pulse, as QEMU models it: ISR becomes RST, nothing else
        changes. (QEMU leaves the IRQ line as it was; here it follows ISR & IMR.)"""
        self.state.isr = Isr.RST
        self._update_irq()

    # --- registers -----------------------------------------------------------------------

    def read_register(self, offset: int) -> int:
        """One byte from register ``offset`` (0-15) of the page CR selects."""
        s = self.state
        offset &= 0x0F
        if offset == 0:
            return s.cr
        page = s.cr >> CR_PAGE_SHIFT
        if page == 0:
            return self._read_page0(offset)
        if page == 1:
            if offset == Page1.CURR:
                return s.curr
            if offset < Page1.CURR:
                return s.par[offset - Page1.PAR0]
            return s.mar[offset - Page1.MAR0]
        if page == 2:
            return self._read_page2(offset)
        return QEMU_PAGE3_READS.get(offset, 0)

    def _read_page0(self, offset: int) -> int:
        s = self.state
        if offset == Page0Read.BNRY:
            return s.bnry
        if offset == Page0Read.TSR:
            return s.tsr
        if offset == Page0Read.ISR:
            return s.isr
        if offset == Page0Read.CRDA0:
            return s.rsar & 0xFF
        if offset == Page0Read.CRDA1:
            return s.rsar >> 8
        if offset == Page0Read.ID0:
            return QEMU_ID_BYTES[0]
        if offset == Page0Read.ID1:
            return QEMU_ID_BYTES[1]
        if offset == Page0Read.RSR:
            return s.rsr
        if offset >= Page0Read.CNTR0:
            index = offset - Page0Read.CNTR0
            value = s.counters[index]
            s.counters[index] = 0  # tally counters clear when read
            return value
        return 0  # CLDA0/1, NCR, FIFO: QEMU reads 0

    def _read_page2(self, offset: int) -> int:
        s = self.state
        return {
            Page2Read.PSTART: s.pstart,
            Page2Read.PSTOP: s.pstop,
            Page2Read.TPSR: s.tpsr,
            Page2Read.RCR: s.rcr,
            Page2Read.TCR: s.tcr,
            Page2Read.DCR: s.dcr,
            Page2Read.IMR: s.imr,
        }.get(offset, 0)  # RNPP, LNPP, address counter: 0 as in QEMU

    def write_register(self, offset: int, value: int) -> None:
        """One byte to register ``offset`` (0-15) of the page CR selects."""
        offset &= 0x0F
        value &= 0xFF
        if offset == 0:
            self._write_cr(value)
            return
        page = self.state.cr >> CR_PAGE_SHIFT
        if page == 0:
            self._write_page0(offset, value)
        elif page == 1:
            self._write_page1(offset, value)
        # pages 2 and 3: writes are ignored, as in QEMU

    def _write_cr(self, value: int) -> None:
        s = self.state
        s.cr = value
        if not value & Cr.STP:
            s.isr &= ~Isr.RST
            if value & CR_REMOTE_READ_OR_WRITE and s.rbcr == 0:
                s.isr |= Isr.RDC  # a zero-length remote DMA completes at once
            if value & Cr.TXP:
                self._transmit_frame()
        self._update_irq()

    def _write_page0(self, offset: int, value: int) -> None:
        s = self.state
        if offset == Page0Write.PSTART:
            if value <= self.buffer_end_page:
                s.pstart = value
        elif offset == Page0Write.PSTOP:
            if value <= self.buffer_end_page:
                s.pstop = value
        elif offset == Page0Write.BNRY:
            if value < self.buffer_end_page:
                s.bnry = value
        elif offset == Page0Write.TPSR:
            s.tpsr = value
        elif offset == Page0Write.TBCR0:
            s.tbcr = (s.tbcr & 0xFF00) | value
        elif offset == Page0Write.TBCR1:
            s.tbcr = (s.tbcr & 0x00FF) | (value << 8)
        elif offset == Page0Write.ISR:
            s.isr &= ~(value & ISR_WRITE_CLEARABLE)
            self._update_irq()
        elif offset == Page0Write.RSAR0:
            s.rsar = (s.rsar & 0xFF00) | value
        elif offset == Page0Write.RSAR1:
            s.rsar = (s.rsar & 0x00FF) | (value << 8)
        elif offset == Page0Write.RBCR0:
            s.rbcr = (s.rbcr & 0xFF00) | value
        elif offset == Page0Write.RBCR1:
            s.rbcr = (s.rbcr & 0x00FF) | (value << 8)
        elif offset == Page0Write.RCR:
            s.rcr = value
        elif offset == Page0Write.TCR:
            s.tcr = value  # stored for page 2; loopback is not modelled (QEMU neither)
        elif offset == Page0Write.DCR:
            s.dcr = value
        elif offset == Page0Write.IMR:
            s.imr = value
            self._update_irq()

    def _write_page1(self, offset: int, value: int) -> None:
        s = self.state
        if offset == Page1.CURR:
            if value < self.buffer_end_page:
                s.curr = value
        elif offset < Page1.CURR:
            s.par[offset - Page1.PAR0] = value
        else:
            s.mar[offset - Page1.MAR0] = value

    # --- transmit ------------------------------------------------------------------------

    def _transmit_frame(self) -> None:
        """CR.TXP: TBCR bytes from page TPSR go to the wire, at once and without error."""
        s = self.state
        frame = self.bus.transmit_window(s.tpsr * PAGE_SIZE, s.tbcr)
        if frame:
            self.transmit(frame)
        s.tsr = Tsr.PTX
        s.isr |= Isr.PTX
        s.cr &= ~Cr.TXP

    # --- remote DMA ----------------------------------------------------------------------

    def _load(self, addr: int, width: int) -> int:
        """``width`` bytes at ``addr`` of the local bus, little endian; all ones where
        nothing answers or the access would leave its region."""
        backing, base, end = self.bus.region(addr)
        if backing is None or addr + width > end:
            return (1 << (8 * width)) - 1
        start = addr - base
        return int.from_bytes(backing[start:start + width], "little")

    def _store(self, addr: int, width: int, value: int) -> None:
        backing, base, end = self.bus.region(addr)
        if backing is None or addr + width > end:
            return
        start = addr - base
        backing[start:start + width] = value.to_bytes(width, "little")

    def _advance(self, count: int, width: int) -> None:
        """RSAR and RBCR after ``count`` transfers of ``width`` bytes, exactly as that
        many single transfers leave them (the caller keeps RSAR from passing PSTOP or
        0x10000 except on the last transfer)."""
        s = self.state
        total = count * width
        rsar = s.rsar + total
        if rsar > ADDRESS_MASK:
            rsar &= ADDRESS_MASK
        if rsar == s.pstop * PAGE_SIZE:
            rsar = s.pstart * PAGE_SIZE  # only an exact hit wraps, as in QEMU
        s.rsar = rsar
        if s.rbcr <= total:
            s.rbcr = 0
            s.isr |= Isr.RDC
            self._update_irq()
        else:
            s.rbcr -= total

    @staticmethod
    def _address(rsar: int, width: int) -> int:
        return rsar if width == 1 else rsar & ~1  # word transfers ignore address bit 0

    def remote_read(self, width: int) -> int:
        """One data-port read: ``width`` (1, 2 or 4) bytes at RSAR, then RSAR/RBCR move."""
        value = self._load(self._address(self.state.rsar, width), width)
        self._advance(1, width)
        return value

    def remote_write(self, width: int, value: int) -> None:
        """One data-port write of the low ``width`` bytes of ``value``; ignored once RBCR
        is 0 (QEMU)."""
        if self.state.rbcr == 0:
            return
        value &= (1 << (8 * width)) - 1
        self._store(self._address(self.state.rsar, width), width, value)
        self._advance(1, width)

    def _run_length(self, width: int, limit: int) -> tuple[int, bytearray | None, int]:
        """How many of the next ``limit`` transfers stay in one region without RSAR
        wrapping before the last of them, and where they go: (count, backing, index)."""
        s = self.state
        rsar = s.rsar
        count = min(limit, -(-(ADDRESS_MASK + 1 - rsar) // width))
        stop = s.pstop * PAGE_SIZE
        if stop > rsar and (stop - rsar) % width == 0:
            count = min(count, (stop - rsar) // width)
        addr = self._address(rsar, width)
        backing, base, end = self.bus.region(addr)
        count = min(count, -(-(end - addr) // width))
        return count, backing, addr - base

    def remote_read_string(self, width: int, count: int) -> bytes:
        """``count`` data-port reads of ``width`` (1 or 2) bytes, as the bytes they
        return in order: equal to ``count`` calls of ``remote_read``, in slices."""
        out = bytearray()
        while count > 0:
            run, backing, index = self._run_length(width, count)
            size = run * width
            if backing is None:
                out += b"\xff" * size
            else:
                out += backing[index:index + size]
            self._advance(run, width)
            count -= run
        return bytes(out)

    def remote_write_string(self, width: int, data: bytes) -> None:
        """``len(data) // width`` data-port writes of ``width`` (1 or 2) bytes each:
        equal to as many calls of ``remote_write``, in slices."""
        s = self.state
        count = len(data) // width
        if s.rbcr == 0:
            return
        count = min(count, -(-s.rbcr // width))  # transfers after RBCR reaches 0 are lost
        offset = 0
        while count > 0:
            run, backing, index = self._run_length(width, count)
            size = run * width
            if backing is not None:
                backing[index:index + size] = data[offset:offset + size]
            offset += size
            self._advance(run, width)
            count -= run

    # --- receive -------------------------------------------------------------------------

    def accepts(self, frame: bytes) -> bool:
        """The address filter (datasheet "Address Matching"), in QEMU's order."""
        s = self.state
        if s.rcr & Rcr.PRO:
            return True
        destination = frame[:6]
        if destination == BROADCAST:
            return bool(s.rcr & Rcr.AB)
        if destination[0] & 0x01:
            if not s.rcr & Rcr.AM:
                return False
            index = multicast_index(destination)
            return bool(s.mar[index >> 3] & (1 << (index & 7)))
        return destination == bytes(s.par)

    def _ring_ok(self) -> bool:
        s = self.state
        return s.pstart < s.pstop and s.pstart <= s.curr < s.pstop

    def _free_pages(self) -> int:
        """Pages from CURR up to BNRY (the whole ring when they are equal, or when BNRY
        points outside the ring and protects nothing)."""
        s = self.state
        ring = s.pstop - s.pstart
        if not s.pstart <= s.bnry < s.pstop:
            return ring
        return (s.bnry - s.curr) % ring or ring

    @staticmethod
    def _pages_for(length: int) -> int:
        return (length + RING_HEADER + CRC_ROOM + PAGE_SIZE - 1) // PAGE_SIZE

    def can_receive(self) -> bool:
        """True if a maximum-size frame addressed to us would be stored now."""
        if self.state.cr & Cr.STP or not self._ring_ok():
            return False
        return self._pages_for(MAX_FRAME) < self._free_pages()

    def receive(self, frame: bytes) -> bool:
        """A frame from the wire: filter it and store it in the ring. False when it is
        not for us, the chip is stopped, the ring is not set up or has no room."""
        if len(frame) < MIN_FRAME:
            frame = bytes(frame) + bytes(MIN_FRAME - len(frame))
        if not self.accepts(frame):
            return False
        s = self.state
        if s.cr & Cr.STP:
            self._missed()
            return False
        if not self._ring_ok():
            return False
        pages = self._pages_for(len(frame))
        if pages >= self._free_pages():  # CURR must never run into BNRY
            s.isr |= Isr.OVW | Isr.RXE
            self._missed()
            return False
        ring = s.pstop - s.pstart
        next_page = s.curr + pages
        if next_page >= s.pstop:
            next_page -= ring
        status = Rsr.PRX | (Rsr.PHY if frame[0] & 0x01 else 0)
        count = len(frame) + RING_HEADER
        header = bytes((status, next_page, count & 0xFF, (count >> 8) & 0xFF))
        self._ring_store(s.curr * PAGE_SIZE, header + frame)
        s.rsr = status
        s.curr = next_page
        s.isr |= Isr.PRX
        self._update_irq()
        return True

    def _ring_store(self, addr: int, data: bytes) -> None:
        """Local DMA: ``data`` from ``addr`` on, wrapping from PSTOP to PSTART."""
        s = self.state
        stop = s.pstop * PAGE_SIZE
        first = data[:stop - addr]
        self._bus_write(addr, first)
        if len(first) < len(data):
            self._bus_write(s.pstart * PAGE_SIZE, data[len(first):])

    def _bus_write(self, addr: int, data: bytes) -> None:
        offset = 0
        while offset < len(data):
            backing, base, end = self.bus.region(addr + offset)
            size = min(len(data) - offset, end - (addr + offset))
            if backing is not None:
                index = addr + offset - base
                backing[index:index + size] = data[offset:offset + size]
            offset += size

    def _missed(self) -> None:
        """A frame for us that could not be stored: RSR.MPA, CNTR2."""
        s = self.state
        s.rsr = Rsr.MPA
        self._count(2)
        self._update_irq()

    def _count(self, index: int) -> None:
        s = self.state
        if s.counters[index] < COUNTER_MAX:
            s.counters[index] += 1
        if s.counters[index] & COUNTER_MSB:
            s.isr |= Isr.CNT

    # --- state ---------------------------------------------------------------------------

    def save_state(self) -> dict[str, Any]:
        state = dataclasses.asdict(self.state)
        return {key: (list(value) if isinstance(value, list) else int(value))
                for key, value in state.items()}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore every register; the IRQ line is set to match."""
        self.state = Dp8390State(**{key: (list(value) if isinstance(value, list) else value)
                                    for key, value in state.items()})
        self._update_irq()
