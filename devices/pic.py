"""Intel 8259A programmable interrupt controllers, cascaded as on the PC, plus the ELCR.

The master sits at ports 0x20-0x21, the slave at 0xA0-0xA1 on the master's input 2, and
the PIIX edge/level control registers at 0x4D0-0x4D1. The model follows the 8259A
datasheet (Intel order no. 231468): initialisation words ICW1-ICW4, operation words
OCW1-OCW3, fully nested priority with rotation, special mask mode, poll mode, auto-EOI.

Deliberate simplifications, none of which a PC guest can observe:
- only 8086 mode (ICW4 bit 0); the 8080/85 call-address bytes are not produced;
- buffered mode and the master/slave pin of ICW4 are stored but have no effect;
- on an edge-triggered input the IRR bit is latched by the rising edge and stays set
  even if the wire drops before INTA (as QEMU does); a level-triggered input (ELCR or
  ICW1.LTIM) drops its IRR bit when the level drops.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Any, Callable

from devices.base import ByteRegisters, IrqLine, plain_state


class Icw1(enum.IntFlag):
    """Initialisation command word 1, written to the command port with bit 4 set."""

    IC4 = 0x01  # ICW4 will follow
    SNGL = 0x02  # single chip, no ICW3
    ADI = 0x04  # call address interval (8080 mode only; ignored)
    LTIM = 0x08  # all inputs level-triggered
    INIT = 0x10  # marks the byte as ICW1


class Icw4(enum.IntFlag):
    """Initialisation command word 4, the last byte of the init sequence."""

    UPM = 0x01  # 8086/88 mode (the only mode modelled)
    AEOI = 0x02  # automatic end of interrupt
    MS = 0x04  # buffered-mode master/slave select (stored only)
    BUF = 0x08  # buffered mode (stored only)
    SFNM = 0x10  # special fully nested mode


class Ocw2(enum.IntEnum):
    """OCW2 commands: bits 7-5 (R, SL, EOI); bits 2-0 carry the level where SL=1."""

    ROTATE_AEOI_CLEAR = 0x00  # stop rotating priority on auto-EOI
    NON_SPECIFIC_EOI = 0x20  # clear the highest-priority ISR bit
    NOP = 0x40  # no operation
    SPECIFIC_EOI = 0x60  # clear the ISR bit named by the level
    ROTATE_AEOI_SET = 0x80  # rotate priority on each auto-EOI
    ROTATE_NON_SPECIFIC_EOI = 0xA0  # non-specific EOI, serviced level becomes lowest
    SET_PRIORITY = 0xC0  # the named level becomes lowest priority
    ROTATE_SPECIFIC_EOI = 0xE0  # specific EOI, named level becomes lowest


OCW2_COMMAND_MASK = 0xE0  # bits of OCW2 that select the command
OCW2_LEVEL_MASK = 0x07  # bits of OCW2 that name an IR level
OCW3_MARKER = 0x08  # bit 3 set (and bit 4 clear) marks a command-port byte as OCW3


class Ocw3(enum.IntFlag):
    """Operation command word 3: read-register select, poll, special mask mode."""

    RIS = 0x01  # read ISR (1) or IRR (0) on the next command-port read
    RR = 0x02  # act on RIS
    P = 0x04  # poll: the next read is the poll word and acknowledges
    SMM = 0x20  # special mask mode value
    ESMM = 0x40  # act on SMM


POLL_INTERRUPT = 0x80  # poll word bit 7: an interrupt was pending
SPURIOUS_LEVEL = 7  # the level whose vector a spurious INTA returns
CASCADE_INPUT = 2  # master input the slave's INT drives on the PC
ELCR_MASTER_MASK = 0xF8  # IRQ 0, 1, 2 are always edge-triggered (PIIX)
ELCR_SLAVE_MASK = 0xDE  # IRQ 8 and 13 are always edge-triggered (PIIX)


@dataclass
class PicState:
    """Everything one 8259A remembers."""

    irr: int = 0  # interrupt request register
    isr: int = 0  # in-service register
    imr: int = 0  # interrupt mask register (OCW1)
    inputs: int = 0  # current levels of the IR wires
    elcr: int = 0  # per-input level-trigger bits (from the ELCR)
    vector_base: int = 0  # ICW2 with bits 2-0 cleared
    icw3: int = 0  # cascade configuration byte
    init_step: int = 0  # 0 = ready, 2/3/4 = next byte expected is ICW2/ICW3/ICW4
    icw4_needed: bool = False
    single: bool = False
    ltim: bool = False  # ICW1.LTIM: every input level-triggered
    auto_eoi: bool = False
    rotate_on_auto_eoi: bool = False
    special_fully_nested: bool = False
    buffered: int = 0  # ICW4 bits 3-2, stored only
    lowest_priority: int = 7  # level with the lowest priority (rotation point)
    read_isr: bool = False  # OCW3: command-port reads return ISR, else IRR
    poll: bool = False  # OCW3: next read is a poll
    special_mask: bool = False
    int_output: bool = False  # the INT pin


class Pic8259(ByteRegisters):
    """One 8259A: offset 0 is the command port, offset 1 the data port."""

    port_count = 2

    def __init__(self, name: str = "pic", output: Callable[[bool], None] | None = None,
                 elcr_mask: int = 0xFF) -> None:
        self.name = name
        self.output = output  # called when the INT pin changes
        self.elcr_mask = elcr_mask  # inputs whose ELCR bit may be set
        self.state = PicState()

    # --- priority resolution -------------------------------------------------------

    def _priority(self, bits: int) -> int:
        """Rank (0 = highest) of the highest-priority level set in bits; 8 if none."""
        if bits == 0:
            return 8
        for rank in range(8):
            if bits & (1 << ((rank + self.state.lowest_priority + 1) & 7)):
                return rank
        return 8

    def _level_of(self, rank: int) -> int:
        return (rank + self.state.lowest_priority + 1) & 7

    def pending_level(self) -> int | None:
        """The IR level the chip would present on INTA now, or None."""
        s = self.state
        requests = s.irr & ~s.imr & 0xFF
        rank = self._priority(requests)
        if rank == 8:
            return None
        in_service = s.isr
        if s.special_mask:
            in_service &= ~s.imr  # masked in-service levels do not block others
        if s.special_fully_nested and not s.single:
            in_service &= ~s.icw3  # a slave input can interrupt its own service
        if rank < self._priority(in_service):
            return self._level_of(rank)
        return None

    def _update(self) -> None:
        level = self.pending_level() is not None
        if level != self.state.int_output:
            self.state.int_output = level
            if self.output is not None:
                self.output(level)

    # --- inputs ----------------------------------------------------------------------

    def _level_triggered(self, bit: int) -> bool:
        return self.state.ltim or bool(self.state.elcr & bit)

    def set_input(self, level_no: int, level: bool) -> None:
        """Drive IR wire level_no (0-7) to level."""
        s = self.state
        bit = 1 << level_no
        was_high = bool(s.inputs & bit)
        if level:
            s.inputs |= bit
            if self._level_triggered(bit) or not was_high:
                s.irr |= bit
        else:
            s.inputs &= ~bit
            if self._level_triggered(bit):
                s.irr &= ~bit
        self._update()

    def set_elcr(self, value: int) -> None:
        """Load this chip's ELCR byte: set bits make inputs level-triggered."""
        s = self.state
        s.elcr = value & self.elcr_mask
        level_bits = 0xFF if s.ltim else s.elcr
        s.irr = (s.irr & ~level_bits) | (s.inputs & level_bits)
        self._update()

    # --- INTA -------------------------------------------------------------------------

    def acknowledge_level(self, level_no: int) -> None:
        """Second INTA pulse for level_no: IRR -> ISR (or auto-EOI)."""
        s = self.state
        bit = 1 << level_no
        if s.auto_eoi:
            if s.rotate_on_auto_eoi:
                s.lowest_priority = level_no
        else:
            s.isr |= bit
        s.irr &= ~bit
        if self._level_triggered(bit) and s.inputs & bit:
            s.irr |= bit  # a level still asserted requests again at once
        self._update()

    # --- bus interface ---------------------------------------------------------------

    def _read_byte(self, offset: int) -> int:
        s = self.state
        if s.poll:
            return self._poll()
        if offset == 0:
            return s.isr if s.read_isr else s.irr
        return s.imr

    def _poll(self) -> int:
        """Poll word: bit 7 = request pending, bits 2-0 its level; acts as an INTA."""
        self.state.poll = False
        level_no = self.pending_level()
        if level_no is None:
            return 0
        self.acknowledge_level(level_no)
        return POLL_INTERRUPT | level_no

    def _write_byte(self, offset: int, value: int) -> None:
        if offset == 0:
            if value & Icw1.INIT:
                self._icw1(value)
            elif value & OCW3_MARKER:
                self._ocw3(value)
            else:
                self._ocw2(value)
        else:
            self._data_write(value)
        self._update()

    def _icw1(self, value: int) -> None:
        """Start initialisation: datasheet 'Initialization Command Words'."""
        s = self.state
        s.icw4_needed = bool(value & Icw1.IC4)
        s.single = bool(value & Icw1.SNGL)
        s.ltim = bool(value & Icw1.LTIM)
        s.imr = 0
        s.isr = 0
        level_bits = 0xFF if s.ltim else s.elcr
        s.irr = s.inputs & level_bits  # edge-sense latches are reset
        s.lowest_priority = 7
        s.special_mask = False
        s.read_isr = False
        s.poll = False
        s.auto_eoi = False
        s.rotate_on_auto_eoi = False
        s.special_fully_nested = False
        s.buffered = 0
        s.init_step = 2

    def _data_write(self, value: int) -> None:
        s = self.state
        if s.init_step == 2:
            s.vector_base = value & 0xF8
            s.init_step = 3 if not s.single else (4 if s.icw4_needed else 0)
        elif s.init_step == 3:
            s.icw3 = value
            s.init_step = 4 if s.icw4_needed else 0
        elif s.init_step == 4:
            s.auto_eoi = bool(value & Icw4.AEOI)
            s.special_fully_nested = bool(value & Icw4.SFNM)
            s.buffered = int(value & (Icw4.BUF | Icw4.MS))
            s.init_step = 0
        else:
            s.imr = value  # OCW1

    def _ocw2(self, value: int) -> None:
        s = self.state
        command = value & OCW2_COMMAND_MASK
        level_no = value & OCW2_LEVEL_MASK
        if command in (Ocw2.NON_SPECIFIC_EOI, Ocw2.ROTATE_NON_SPECIFIC_EOI):
            rank = self._priority(s.isr)
            if rank != 8:
                served = self._level_of(rank)
                s.isr &= ~(1 << served)
                if command == Ocw2.ROTATE_NON_SPECIFIC_EOI:
                    s.lowest_priority = served
        elif command in (Ocw2.SPECIFIC_EOI, Ocw2.ROTATE_SPECIFIC_EOI):
            s.isr &= ~(1 << level_no)
            if command == Ocw2.ROTATE_SPECIFIC_EOI:
                s.lowest_priority = level_no
        elif command == Ocw2.SET_PRIORITY:
            s.lowest_priority = level_no
        elif command == Ocw2.ROTATE_AEOI_SET:
            s.rotate_on_auto_eoi = True
        elif command == Ocw2.ROTATE_AEOI_CLEAR:
            s.rotate_on_auto_eoi = False

    def _ocw3(self, value: int) -> None:
        s = self.state
        if value & Ocw3.RR:
            s.read_isr = bool(value & Ocw3.RIS)
        if value & Ocw3.P:
            s.poll = True
        if value & Ocw3.ESMM:
            s.special_mask = bool(value & Ocw3.SMM)

    # --- state -------------------------------------------------------------------------

    def save_state(self) -> dict[str, Any]:
        return dataclasses.asdict(self.state, dict_factory=plain_state)

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore; the INT pin is re-announced so the wire matches the state."""
        self.state = PicState(**state)
        level = self.state.int_output
        if self.output is not None:
            self.output(level)


class Elcr:
    """PIIX edge/level control registers at 0x4D0 (IRQ 0-7) and 0x4D1 (IRQ 8-15).

    The bits live in the chips (they decide how IRR latches); this is their window.
    """

    def __init__(self, master: Pic8259, slave: Pic8259, name: str = "elcr") -> None:
        self.name = name
        self._chips = (master, slave)

    def read(self, offset: int, size: int) -> int:
        value = 0
        for i in range(size):
            if offset + i < 2:
                value |= self._chips[offset + i].state.elcr << (8 * i)
        return value

    def write(self, offset: int, size: int, value: int) -> None:
        for i in range(size):
            if offset + i < 2:
                self._chips[offset + i].set_elcr((value >> (8 * i)) & 0xFF)

    def save_state(self) -> dict[str, Any]:
        return {}  # held by the chips

    def load_state(self, state: dict[str, Any]) -> None:
        pass


class PicPair:
    """The PC's two cascaded 8259As: IRQ 0-7 on the master, 8-15 on the slave."""

    def __init__(self) -> None:
        self.on_intr_change: Callable[[bool], None] | None = None
        self.intr = False
        self.master = Pic8259("pic-master", self._master_output, ELCR_MASTER_MASK)
        self.slave = Pic8259("pic-slave", self._slave_output, ELCR_SLAVE_MASK)
        self.elcr = Elcr(self.master, self.slave)
        self._lines: dict[int, IrqLine] = {}

    def _master_output(self, level: bool) -> None:
        if level != self.intr:
            self.intr = level
            if self.on_intr_change is not None:
                self.on_intr_change(level)

    def _slave_output(self, level: bool) -> None:
        self.master.set_input(CASCADE_INPUT, level)

    def _chip(self, irq: int) -> tuple[Pic8259, int]:
        if not 0 <= irq < 16:
            raise ValueError(f"IRQ {irq} is not 0..15")
        return (self.master, irq) if irq < 8 else (self.slave, irq - 8)

    def set_irq(self, irq: int, level: bool) -> None:
        """Drive ISA interrupt request line irq (0-15)."""
        chip, level_no = self._chip(irq)
        chip.set_input(level_no, bool(level))

    def irq_line(self, irq: int) -> IrqLine:
        """The IrqLine wired to input irq; one per input, made on first request."""
        self._chip(irq)
        if irq not in self._lines:
            line = IrqLine()
            line.connect(lambda level, irq=irq: self.set_irq(irq, level))
            self._lines[irq] = line
        return self._lines[irq]

    def interrupt_pending(self) -> bool:
        """The master's INT pin: the CPU's INTR input."""
        return self.master.state.int_output

    def acknowledge(self) -> int:
        """The INTA cycle: the vector the CPU receives.

        With nothing to deliver (the request went away, or was masked, after INTR
        rose) the chip concerned answers with its level-7 vector and sets no ISR bit
        of its own: the spurious interrupt the datasheet describes.
        """
        master, slave = self.master, self.slave
        level_no = master.pending_level()
        if level_no is None:
            return master.state.vector_base | SPURIOUS_LEVEL
        if level_no == CASCADE_INPUT and not master.state.single:
            slave_level = slave.pending_level()
            if slave_level is None:
                vector = slave.state.vector_base | SPURIOUS_LEVEL
            else:
                slave.acknowledge_level(slave_level)
                vector = slave.state.vector_base | slave_level
            master.acknowledge_level(level_no)
            return vector
        master.acknowledge_level(level_no)
        return master.state.vector_base | level_no

    def save_state(self) -> dict[str, Any]:
        return {"master": self.master.save_state(), "slave": self.slave.save_state()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.slave.state = PicState(**state["slave"])
        self.master.state = PicState(**state["master"])
        self._master_output(self.master.state.int_output)
