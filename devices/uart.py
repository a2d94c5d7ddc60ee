"""National/TI PC16550D UART: the PC's serial port (COM1 at 0x3F8, IRQ 4).

Registers after the datasheet (TI SLLS057, "Register Descriptions"). The line is
infinitely fast: a byte written to THR leaves at once through ``output`` and THR is
empty again, so LSR.THRE and LSR.TEMT are always set after a write.

Choices, each made so a guest sees what it sees on QEMU (the reference, DESIGN.md):
- the interrupt output is NOT gated by MCR.OUT2, as in QEMU's serial.c (on a real PC
  board OUT2 enables the IRQ driver); the reset value of MCR is OUT2, as in QEMU;
- without loopback the modem inputs read DCD, DSR and CTS asserted (MSR = 0xB0);
- the character-timeout interrupt is immediate: with FIFOs on and fewer bytes waiting
  than the trigger level, IIR reports a timeout as soon as the bytes arrive;
- receive overrun keeps the FIFO contents and drops the new byte (sets LSR.OE);
- IER.ETBEI newly set while THR is empty raises the THRE interrupt, as QEMU does.
Parity, framing and break never occur: the host side delivers whole bytes.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any, Callable

from devices.base import ByteRegisters, IrqLine, plain_state

FIFO_SIZE = 16


class Reg(enum.IntEnum):
    """Register offsets (DLAB selects the divisor latch at 0 and 1)."""

    RBR_THR_DLL = 0  # receive buffer (read), transmit holding (write), divisor low
    IER_DLM = 1  # interrupt enable, divisor high
    IIR_FCR = 2  # interrupt identification (read), FIFO control (write)
    LCR = 3  # line control
    MCR = 4  # modem control
    LSR = 5  # line status
    MSR = 6  # modem status
    SCR = 7  # scratch


class Ier(enum.IntFlag):
    """Interrupt enable register."""

    ERBFI = 0x01  # received data available (and character timeout)
    ETBEI = 0x02  # transmitter holding register empty
    ELSI = 0x04  # receiver line status
    EDSSI = 0x08  # modem status


IER_WRITABLE = 0x0F


class Iir(enum.IntEnum):
    """Interrupt identification codes, bits 3-0, in priority order."""

    RLS = 0x06  # receiver line status (highest)
    RDA = 0x04  # received data available (trigger level reached)
    CTI = 0x0C  # character timeout
    THRE = 0x02  # transmitter holding register empty
    MS = 0x00  # modem status (lowest)
    NONE = 0x01  # no interrupt pending


IIR_FIFOS_ENABLED = 0xC0  # bits 7-6 of IIR when FCR bit 0 is set


class Fcr(enum.IntFlag):
    """FIFO control register (write only)."""

    ENABLE = 0x01  # enable both FIFOs
    CLEAR_RX = 0x02  # clear the receive FIFO (self-clearing)
    CLEAR_TX = 0x04  # clear the transmit FIFO (self-clearing)
    DMA_MODE = 0x08  # RXRDY/TXRDY pin mode (stored only)
    TRIGGER = 0xC0  # receive trigger level: 1, 4, 8, 14 bytes


FCR_STORED = 0xC9  # bits of FCR that stick
TRIGGER_LEVELS = (1, 4, 8, 14)  # indexed by FCR bits 7-6


class Lcr(enum.IntFlag):
    """Line control register."""

    WORD_LENGTH = 0x03  # 5-8 data bits
    STOP_BITS = 0x04  # 2 stop bits (1.5 for 5-bit words)
    PARITY_ENABLE = 0x08
    EVEN_PARITY = 0x10
    STICK_PARITY = 0x20
    BREAK = 0x40  # set break
    DLAB = 0x80  # divisor latch access


class Mcr(enum.IntFlag):
    """Modem control register."""

    DTR = 0x01  # data terminal ready
    RTS = 0x02  # request to send
    OUT1 = 0x04  # user output 1
    OUT2 = 0x08  # user output 2 (PC: interrupt enable; not modelled, see above)
    LOOP = 0x10  # loopback


MCR_WRITABLE = 0x1F


class Lsr(enum.IntFlag):
    """Line status register."""

    DR = 0x01  # data ready
    OE = 0x02  # overrun error
    PE = 0x04  # parity error (never)
    FE = 0x08  # framing error (never)
    BI = 0x10  # break interrupt (never)
    THRE = 0x20  # transmitter holding register empty
    TEMT = 0x40  # transmitter empty
    RX_FIFO_ERROR = 0x80  # error in receive FIFO (never)


LSR_ERRORS = Lsr.OE | Lsr.PE | Lsr.FE | Lsr.BI  # raise the line-status interrupt


class Msr(enum.IntFlag):
    """Modem status register: deltas in bits 3-0, line levels in bits 7-4."""

    DCTS = 0x01  # CTS changed
    DDSR = 0x02  # DSR changed
    TERI = 0x04  # RI went from on to off
    DDCD = 0x08  # DCD changed
    CTS = 0x10  # clear to send (loopback: RTS)
    DSR = 0x20  # data set ready (loopback: DTR)
    RI = 0x40  # ring indicator (loopback: OUT1)
    DCD = 0x80  # data carrier detect (loopback: OUT2)


MSR_DELTAS = 0x0F
MSR_IDLE_LINES = Msr.DCD | Msr.DSR | Msr.CTS  # what the host side presents


@dataclass
class UartState:
    """Everything the 16550 remembers, FIFO contents included."""

    rbr: int = 0  # receive buffer (non-FIFO mode)
    rx_fifo: list[int] = field(default_factory=list)
    ier: int = 0
    fcr: int = 0
    lcr: int = 0
    mcr: int = Mcr.OUT2
    lsr: int = Lsr.THRE | Lsr.TEMT
    msr: int = MSR_IDLE_LINES
    scr: int = 0
    divisor: int = 12  # 9600 baud from the 1.8432 MHz crystal
    thre_pending: bool = False  # THRE interrupt not yet cleared by IIR read/THR write
    iir_id: int = Iir.NONE


class Uart16550(ByteRegisters):
    """A 16550 with its eight registers at offsets 0-7."""

    port_count = 8

    def __init__(self, irq: IrqLine, output: Callable[[bytes], None],
                 name: str = "uart") -> None:
        self.name = name
        self.irq = irq
        self.output = output
        self.state = UartState()

    # --- interrupts -------------------------------------------------------------------

    def _fifo_enabled(self) -> bool:
        return bool(self.state.fcr & Fcr.ENABLE)

    def _trigger_level(self) -> int:
        return TRIGGER_LEVELS[(self.state.fcr & Fcr.TRIGGER) >> 6]

    def _identify(self) -> int:
        """The highest-priority pending, enabled interrupt (datasheet Table 4)."""
        s = self.state
        if s.ier & Ier.ELSI and s.lsr & LSR_ERRORS:
            return Iir.RLS
        if s.ier & Ier.ERBFI and s.lsr & Lsr.DR:
            if not self._fifo_enabled() or len(s.rx_fifo) >= self._trigger_level():
                return Iir.RDA
            return Iir.CTI
        if s.ier & Ier.ETBEI and s.thre_pending:
            return Iir.THRE
        if s.ier & Ier.EDSSI and s.msr & MSR_DELTAS:
            return Iir.MS
        return Iir.NONE

    def _update_irq(self) -> None:
        self.state.iir_id = self._identify()
        self.irq.set_level(self.state.iir_id != Iir.NONE)

    # --- host side --------------------------------------------------------------------

    def input_room(self) -> int:
        """Bytes the receiver can take now without an overrun (0 in loopback)."""
        s = self.state
        if s.mcr & Mcr.LOOP:
            return 0
        if self._fifo_enabled():
            return FIFO_SIZE - len(s.rx_fifo)
        return 0 if s.lsr & Lsr.DR else 1

    def feed_input(self, data: bytes) -> None:
        """Bytes arriving on the serial line from the host.

        In loopback the line input is disconnected from the receiver, so they are
        dropped, as on the chip. Feed at most ``input_room()`` bytes to lose none.
        """
        if self.state.mcr & Mcr.LOOP:
            return
        for byte in data:
            self._receive(byte)
        self._update_irq()

    def _receive(self, byte: int) -> None:
        s = self.state
        if self._fifo_enabled():
            if len(s.rx_fifo) < FIFO_SIZE:
                s.rx_fifo.append(byte)
            else:
                s.lsr |= Lsr.OE
        else:
            if s.lsr & Lsr.DR:
                s.lsr |= Lsr.OE
            s.rbr = byte
        s.lsr |= Lsr.DR

    def _transmit(self, byte: int) -> None:
        """THR -> shift register -> line, all at once."""
        s = self.state
        s.thre_pending = False
        self._update_irq()  # writing THR clears the THRE interrupt...
        if s.mcr & Mcr.LOOP:
            self._receive(byte)
        else:
            self.output(bytes([byte]))
        s.lsr |= Lsr.THRE | Lsr.TEMT
        s.thre_pending = True  # ...and the now empty THR raises it again
        self._update_irq()

    # --- bus interface ----------------------------------------------------------------

    def _read_byte(self, offset: int) -> int:
        s = self.state
        dlab = bool(s.lcr & Lcr.DLAB)
        if offset == Reg.RBR_THR_DLL:
            return s.divisor & 0xFF if dlab else self._read_rbr()
        if offset == Reg.IER_DLM:
            return s.divisor >> 8 if dlab else s.ier
        if offset == Reg.IIR_FCR:
            value = s.iir_id | (IIR_FIFOS_ENABLED if self._fifo_enabled() else 0)
            if s.iir_id == Iir.THRE:
                s.thre_pending = False
                self._update_irq()
            return value
        if offset == Reg.LCR:
            return s.lcr
        if offset == Reg.MCR:
            return s.mcr
        if offset == Reg.LSR:
            value = s.lsr
            if s.lsr & LSR_ERRORS:
                s.lsr &= ~LSR_ERRORS
                self._update_irq()
            return value
        if offset == Reg.MSR:
            value = s.msr
            if s.msr & MSR_DELTAS:
                s.msr &= ~MSR_DELTAS
                self._update_irq()
            return value
        return s.scr

    def _read_rbr(self) -> int:
        s = self.state
        if self._fifo_enabled():
            value = s.rx_fifo.pop(0) if s.rx_fifo else 0
            if not s.rx_fifo:
                s.lsr &= ~Lsr.DR
        else:
            value = s.rbr
            s.lsr &= ~Lsr.DR
        self._update_irq()
        return value

    def _write_byte(self, offset: int, value: int) -> None:
        s = self.state
        dlab = bool(s.lcr & Lcr.DLAB)
        if offset == Reg.RBR_THR_DLL:
            if dlab:
                s.divisor = (s.divisor & 0xFF00) | value
            else:
                self._transmit(value)
        elif offset == Reg.IER_DLM:
            if dlab:
                s.divisor = (s.divisor & 0x00FF) | (value << 8)
            else:
                self._write_ier(value)
        elif offset == Reg.IIR_FCR:
            self._write_fcr(value)
        elif offset == Reg.LCR:
            s.lcr = value
        elif offset == Reg.MCR:
            self._write_mcr(value)
        elif offset == Reg.SCR:
            s.scr = value
        # LSR and MSR writes are factory-test only: ignored

    def _write_ier(self, value: int) -> None:
        s = self.state
        value &= IER_WRITABLE
        changed = s.ier ^ value
        s.ier = value
        if changed & Ier.ETBEI:
            s.thre_pending = bool(value & Ier.ETBEI and s.lsr & Lsr.THRE)
        self._update_irq()

    def _write_fcr(self, value: int) -> None:
        s = self.state
        if (value ^ s.fcr) & Fcr.ENABLE:
            value |= Fcr.CLEAR_RX | Fcr.CLEAR_TX  # toggling the enable resets both
        if value & Fcr.CLEAR_RX:
            s.rx_fifo.clear()
            if value & Fcr.ENABLE or s.fcr & Fcr.ENABLE:
                s.lsr &= ~Lsr.DR
        s.fcr = value & FCR_STORED
        self._update_irq()

    def _lines(self, mcr: int) -> int:
        """Modem input levels (MSR bits 7-4) for a given MCR."""
        if not mcr & Mcr.LOOP:
            return MSR_IDLE_LINES
        lines = 0
        if mcr & Mcr.RTS:
            lines |= Msr.CTS
        if mcr & Mcr.DTR:
            lines |= Msr.DSR
        if mcr & Mcr.OUT1:
            lines |= Msr.RI
        if mcr & Mcr.OUT2:
            lines |= Msr.DCD
        return lines

    def _write_mcr(self, value: int) -> None:
        s = self.state
        old = s.msr & 0xF0
        s.mcr = value & MCR_WRITABLE
        new = self._lines(s.mcr)
        changed = old ^ new
        deltas = 0
        if changed & Msr.CTS:
            deltas |= Msr.DCTS
        if changed & Msr.DSR:
            deltas |= Msr.DDSR
        if changed & Msr.DCD:
            deltas |= Msr.DDCD
        if old & Msr.RI and not new & Msr.RI:
            deltas |= Msr.TERI
        s.msr = new | (s.msr & MSR_DELTAS) | deltas
        self._update_irq()

    # --- state --------------------------------------------------------------------------

    def save_state(self) -> dict[str, Any]:
        return dataclasses.asdict(self.state, dict_factory=plain_state)

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore registers and FIFO; the IRQ line is set to match."""
        self.state = UartState(**{**state, "rx_fifo": list(state["rx_fifo"])})
        self._update_irq()
