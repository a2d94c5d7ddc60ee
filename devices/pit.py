"""Intel 8254 programmable interval timer (ports 0x40-0x43) and port 0x61.

Counters do not tick: each channel remembers the virtual time its count was loaded
and derives the count and its OUT pin from the clock when asked (datasheet: Intel
order no. 231164, "Modes"). Channel 0's OUT drives IRQ 0; the run loop asks for
``next_deadline_ns`` (the next rising edge of OUT0) and calls ``advance_to``.

Deliberate simplifications:
- BCD counting is refused: the BCD bit is kept (the read-back status shows it) but
  the channel counts in binary;
- a new count written in modes 2 and 3 takes effect at once rather than at the end of
  the current period (as QEMU does); a guest sees at most one period of difference;
- in mode 3 the count read back decrements by two across each half period, for odd
  counts as well, as QEMU reports it.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any

from devices.base import ByteRegisters, Clock, IrqLine, plain_state

PIT_HZ = 1_193_182  # the 8254's input clock on the PC
NS_PER_S = 1_000_000_000
REFRESH_TOGGLE_NS = 15_000  # port 0x61 bit 4 toggles every 15 us


class Port(enum.IntEnum):
    """Offsets from 0x40."""

    COUNTER0 = 0
    COUNTER1 = 1
    COUNTER2 = 2
    CONTROL = 3  # control word, counter latch and read-back commands


class Access(enum.IntEnum):
    """Control word bits 5-4: how the count is read and written."""

    LATCH = 0  # counter latch command, not an access mode
    LOBYTE = 1  # least significant byte only
    HIBYTE = 2  # most significant byte only
    LOHI = 3  # least then most significant byte


class Control(enum.IntFlag):
    """Control word fields (datasheet 'Control Word Format')."""

    BCD = 0x01  # count in BCD (refused: counted in binary)
    MODE = 0x0E  # bits 3-1: mode 0-5 (6 and 7 alias 2 and 3)
    ACCESS = 0x30  # bits 5-4: Access
    SELECT = 0xC0  # bits 7-6: counter 0-2, or 3 = read-back command


READ_BACK = 0xC0  # SELECT value of the read-back command


class ReadBack(enum.IntFlag):
    """Read-back command bits (datasheet 'Read-Back Command')."""

    CNT0 = 0x02  # select counter 0
    CNT1 = 0x04  # select counter 1
    CNT2 = 0x08  # select counter 2
    NOT_STATUS = 0x10  # 0 = latch status of the selected counters
    NOT_COUNT = 0x20  # 0 = latch count of the selected counters


class Status(enum.IntFlag):
    """The status byte latched by read-back."""

    BCD = 0x01  # as programmed
    MODE = 0x0E  # as programmed
    ACCESS = 0x30  # as programmed
    NULL_COUNT = 0x40  # a count was written and not yet loaded into the counter
    OUTPUT = 0x80  # level of the OUT pin


class PortB(enum.IntFlag):
    """System control port B (0x61) as seen by software."""

    GATE2 = 0x01  # gate of counter 2 (read/write)
    SPEAKER = 0x02  # speaker data enable (read/write, stored)
    PARITY_CHECK_OFF = 0x04  # stored only
    CHANNEL_CHECK_OFF = 0x08  # stored only
    REFRESH = 0x10  # toggles every 15 us (read only)
    OUT2 = 0x20  # OUT of counter 2 (read only)


PORT_B_WRITABLE = 0x0F  # bits of port 0x61 a write stores


@dataclass
class ChannelState:
    """One counter of the 8254."""

    mode: int = 0
    access: int = Access.LOHI
    bcd: bool = False
    reload: int = 0  # count register as written, 0 = 65536
    reload_written: bool = False  # a complete count was written since the control word
    armed: bool = False  # a count is loaded and (gate permitting) counting
    load_ns: int = 0  # virtual time of tick 0 of the current count
    gate: bool = True
    paused_ns: int | None = None  # gate low: virtual time counting stopped
    null_count: bool = True
    write_lsb_next: bool = True  # LOHI writes: next byte is the low byte
    write_low: int = 0  # low byte waiting for its high byte
    read_lsb_next: bool = True  # LOHI reads: next byte is the low byte
    latched: list[int] = field(default_factory=list)  # bytes of a latched count
    status_latched: int | None = None  # latched status byte, read first
    edge_tick: int = -1  # last OUT rising edge reported (ticks since load_ns)


def _ticks(delta_ns: int) -> int:
    """Whole PIT clocks in delta_ns of virtual time."""
    return delta_ns * PIT_HZ // NS_PER_S


def _ns_of_tick(tick: int) -> int:
    """Earliest time offset at which tick whole clocks have elapsed."""
    return -((-tick * NS_PER_S) // PIT_HZ)


class Pit8254(ByteRegisters):
    """Three counters; OUT0 pulses irq0 on each rising edge."""

    port_count = 4

    def __init__(self, clock: Clock, irq0: IrqLine, name: str = "pit") -> None:
        self.name = name
        self.clock = clock
        self.irq0 = irq0
        self.channels = [ChannelState() for _ in range(3)]
        self.channels[2].gate = False  # port 0x61 bit 0 is clear at reset

    # --- derived counter state ---------------------------------------------------------

    @staticmethod
    def _period(ch: ChannelState) -> int:
        return ch.reload or 0x10000

    def _elapsed(self, ch: ChannelState, now: int) -> int:
        end = ch.paused_ns if ch.paused_ns is not None else now
        return _ticks(max(0, end - ch.load_ns))

    def _count_at(self, ch: ChannelState, now: int) -> int:
        """What the counting element holds at time now (16 bits)."""
        n = self._period(ch)
        if not ch.armed:
            return ch.reload & 0xFFFF
        d = self._elapsed(ch, now)
        if ch.mode == 2:
            return (n - d % n) & 0xFFFF
        if ch.mode == 3:
            return (n - (2 * d) % n) & 0xFFFE
        return (n - d) & 0xFFFF

    def _out_at(self, ch: ChannelState, now: int) -> bool:
        """Level of the OUT pin at time now."""
        if not ch.armed:
            return ch.mode != 0
        n = self._period(ch)
        if ch.mode in (2, 3) and not ch.gate:
            return True
        d = self._elapsed(ch, now)
        if ch.mode in (0, 1):
            return d >= n
        if ch.mode == 2:
            return d % n != n - 1 or n == 1
        if ch.mode == 3:
            return d % n < (n + 1) // 2
        return d != n  # modes 4 and 5: one clock low at terminal count

    def _next_edge_tick(self, ch: ChannelState, after: int) -> int | None:
        """First tick > after at which OUT rises, or None."""
        if not ch.armed or ch.paused_ns is not None:
            return None
        n = self._period(ch)
        if ch.mode in (2, 3):
            if not ch.gate:
                return None
            return max(1, after // n + 1) * n
        edge = n if ch.mode in (0, 1) else n + 1
        return edge if edge > after else None

    def _last_edge_tick(self, ch: ChannelState, upto: int) -> int | None:
        """Latest rising-edge tick in (edge_tick, upto], or None."""
        first = self._next_edge_tick(ch, ch.edge_tick)
        if first is None or first > upto:
            return None
        if ch.mode in (2, 3):
            n = self._period(ch)
            return (upto // n) * n
        return first

    # --- timed device ----------------------------------------------------------------------

    def next_deadline_ns(self) -> int | None:
        """When OUT0 next rises (IRQ 0 is due), or None if it never will."""
        ch = self.channels[0]
        tick = self._next_edge_tick(ch, ch.edge_tick)
        if tick is None:
            return None
        return ch.load_ns + _ns_of_tick(tick)

    def advance_to(self, now_ns: int) -> None:
        """Pulse IRQ 0 once if OUT0 rose since the last call (the phase stays exact)."""
        ch = self.channels[0]
        if not ch.armed or now_ns < ch.load_ns:
            return
        tick = self._last_edge_tick(ch, self._elapsed(ch, now_ns))
        if tick is not None:
            ch.edge_tick = tick
            self.irq0.pulse()

    # --- gate ---------------------------------------------------------------------------

    def set_gate(self, channel: int, level: bool) -> None:
        """Drive a counter's GATE input (channel 2's comes from port 0x61)."""
        ch = self.channels[channel]
        level = bool(level)
        if level == ch.gate:
            return
        now = self.clock.now_ns()
        ch.gate = level
        if ch.mode in (1, 5):
            if level and ch.reload_written:
                self._start(ch, now)  # rising gate triggers the one-shot
        elif not level:
            ch.paused_ns = now  # counting stops (modes 2/3 also force OUT high)
        elif ch.mode in (0, 4):
            if ch.paused_ns is not None:
                ch.load_ns += now - ch.paused_ns  # resume where it stopped
                ch.paused_ns = None
        elif ch.reload_written:
            self._start(ch, now)  # modes 2/3: rising gate reloads the count

    def out(self, channel: int) -> bool:
        """Level of a counter's OUT pin now."""
        return self._out_at(self.channels[channel], self.clock.now_ns())

    # --- bus interface -----------------------------------------------------------------

    def _read_byte(self, offset: int) -> int:
        if offset == Port.CONTROL:
            return 0xFF  # the control register cannot be read
        ch = self.channels[offset]
        if ch.status_latched is not None:
            value = ch.status_latched
            ch.status_latched = None
            return value
        if ch.latched:
            return ch.latched.pop(0)
        count = self._count_at(ch, self.clock.now_ns())
        if ch.access == Access.LOBYTE:
            return count & 0xFF
        if ch.access == Access.HIBYTE:
            return count >> 8
        low_next = ch.read_lsb_next
        ch.read_lsb_next = not low_next
        return count & 0xFF if low_next else count >> 8

    def _write_byte(self, offset: int, value: int) -> None:
        if offset == Port.CONTROL:
            self._control(value)
            return
        ch = self.channels[offset]
        if ch.access == Access.LOBYTE:
            self._load(ch, value)
        elif ch.access == Access.HIBYTE:
            self._load(ch, value << 8)
        elif ch.write_lsb_next:
            ch.write_low = value
            ch.write_lsb_next = False
            if ch.mode == 0:
                ch.armed = False  # datasheet: first byte of a new count stops mode 0
        else:
            ch.write_lsb_next = True
            self._load(ch, ch.write_low | (value << 8))

    def _control(self, value: int) -> None:
        select = value & Control.SELECT
        if select == READ_BACK:
            self._read_back(value)
            return
        ch = self.channels[select >> 6]
        access = (value & Control.ACCESS) >> 4
        if access == Access.LATCH:
            self._latch_count(ch)
            return
        mode = (value & Control.MODE) >> 1
        ch.mode = mode - 4 if mode >= 6 else mode
        ch.access = access
        ch.bcd = bool(value & Control.BCD)
        ch.armed = False  # datasheet: a control word resets the counter's logic
        ch.reload_written = False
        ch.paused_ns = None
        ch.null_count = True
        ch.write_lsb_next = True
        ch.read_lsb_next = True
        ch.latched = []
        ch.edge_tick = -1

    def _latch_count(self, ch: ChannelState) -> None:
        if ch.latched:
            return  # a second latch before the first is read is ignored
        count = self._count_at(ch, self.clock.now_ns())
        if ch.access == Access.LOBYTE:
            ch.latched = [count & 0xFF]
        elif ch.access == Access.HIBYTE:
            ch.latched = [count >> 8]
        else:
            ch.latched = [count & 0xFF, count >> 8]

    def _status(self, ch: ChannelState) -> int:
        value = (ch.access << 4) | (ch.mode << 1) | int(ch.bcd)
        if ch.null_count:
            value |= Status.NULL_COUNT
        if self._out_at(ch, self.clock.now_ns()):
            value |= Status.OUTPUT
        return value

    def _read_back(self, value: int) -> None:
        for index, select in enumerate((ReadBack.CNT0, ReadBack.CNT1, ReadBack.CNT2)):
            if not value & select:
                continue
            ch = self.channels[index]
            if not value & ReadBack.NOT_COUNT:
                self._latch_count(ch)
            if not value & ReadBack.NOT_STATUS and ch.status_latched is None:
                ch.status_latched = self._status(ch)

    def _load(self, ch: ChannelState, count: int) -> None:
        """A complete count was written: load it and start counting (gate permitting)."""
        ch.reload = count & 0xFFFF
        ch.reload_written = True
        if ch.mode in (1, 5):
            ch.null_count = True  # loaded on the next gate trigger
            ch.armed = False
            return
        self._start(ch, self.clock.now_ns())
        if not ch.gate:
            ch.paused_ns = ch.load_ns  # loaded, but counts only once the gate rises

    def _start(self, ch: ChannelState, now: int) -> None:
        ch.armed = True
        ch.null_count = False
        ch.load_ns = now
        ch.paused_ns = None
        ch.edge_tick = -1

    # --- state --------------------------------------------------------------------------

    def save_state(self) -> dict[str, Any]:
        return {"channels": [dataclasses.asdict(ch, dict_factory=plain_state) for ch in self.channels]}

    def load_state(self, state: dict[str, Any]) -> None:
        self.channels = [ChannelState(**ch) for ch in state["channels"]]


class SpeakerPort:
    """System control port B at 0x61: counter 2's gate and OUT, the refresh toggle."""

    def __init__(self, pit: Pit8254, name: str = "port61") -> None:
        self.name = name
        self.pit = pit
        self.value = 0  # the writable bits last written

    def read(self, offset: int, size: int) -> int:
        now = self.pit.clock.now_ns()
        value = self.value & PORT_B_WRITABLE
        if (now // REFRESH_TOGGLE_NS) & 1:
            value |= PortB.REFRESH
        if self.pit.out(2):
            value |= PortB.OUT2
        return value

    def write(self, offset: int, size: int, value: int) -> None:
        self.value = value & PORT_B_WRITABLE
        self.pit.set_gate(2, bool(value & PortB.GATE2))

    def save_state(self) -> dict[str, Any]:
        return {"value": self.value}

    def load_state(self, state: dict[str, Any]) -> None:
        self.value = state["value"]
