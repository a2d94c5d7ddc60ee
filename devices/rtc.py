"""Motorola MC146818 real-time clock and CMOS RAM (ports 0x70 index, 0x71 data).

The time is not ticked: it is ``epoch_seconds`` at virtual time 0 plus the virtual
time elapsed, so in deterministic mode the guest reads the same dates on every run.
The update cycle ends on each whole virtual second; UIP is set during the 244 us
before it. Interrupt flags (register C) are worked out lazily from virtual time, and
``next_deadline_ns``/``advance_to`` raise IRQ 8 when an enabled flag comes up.

Simplifications: the divider bits of register A are stored but always behave as the
normal 32.768 kHz time base; the calendar is the proleptic Gregorian one of UTC
(no daylight saving, DSE is stored only); an impossible date written by the guest is
clamped to the nearest valid one (day 31 of April becomes day 30).
"""

from __future__ import annotations

import calendar
import dataclasses
import datetime
import enum
from dataclasses import dataclass, field
from typing import Any

from devices.base import ByteRegisters, Clock, IrqLine, plain_state

NS_PER_S = 1_000_000_000
TIMEBASE_HZ = 32_768  # the crystal behind the periodic interrupt rates
UIP_WINDOW_NS = 244_000  # UIP is set this long before each update
NMI_DISABLE = 0x80  # index port bit 7: NMI mask, not part of the index
INDEX_MASK = 0x7F
CMOS_SIZE = 128


class Index(enum.IntEnum):
    """CMOS addresses with a fixed meaning (datasheet 'Address Map', PC usage)."""

    SECONDS = 0x00
    SECONDS_ALARM = 0x01
    MINUTES = 0x02
    MINUTES_ALARM = 0x03
    HOURS = 0x04
    HOURS_ALARM = 0x05
    DAY_OF_WEEK = 0x06  # 1 = Sunday
    DAY_OF_MONTH = 0x07
    MONTH = 0x08
    YEAR = 0x09  # two digits
    REG_A = 0x0A
    REG_B = 0x0B
    REG_C = 0x0C
    REG_D = 0x0D
    BASE_MEM_LO = 0x15  # base memory in KiB
    BASE_MEM_HI = 0x16
    EXT_MEM_LO = 0x17  # memory above 1 MiB in KiB, capped at 0xFFFF
    EXT_MEM_HI = 0x18
    CHECKSUM_HI = 0x2E  # sum of bytes 0x10-0x2D
    CHECKSUM_LO = 0x2F
    EXT_MEM2_LO = 0x30  # copy of 0x17/0x18
    EXT_MEM2_HI = 0x31
    CENTURY = 0x32
    HIGH_MEM_LO = 0x34  # memory above 16 MiB in 64 KiB units, capped at 0xFFFF
    HIGH_MEM_HI = 0x35


TIME_REGISTERS = (Index.SECONDS, Index.MINUTES, Index.HOURS, Index.DAY_OF_WEEK,
                  Index.DAY_OF_MONTH, Index.MONTH, Index.YEAR, Index.CENTURY)
CHECKSUM_RANGE = range(0x10, 0x2E)


class RegA(enum.IntFlag):
    """Register A."""

    RATE = 0x0F  # periodic interrupt rate select RS3-RS0
    DIVIDER = 0x70  # DV2-DV0 time base (stored only)
    UIP = 0x80  # update in progress (read only)


class RegB(enum.IntFlag):
    """Register B."""

    DSE = 0x01  # daylight saving enable (stored only)
    HOUR_24 = 0x02  # 24-hour mode (else 12-hour with bit 7 = PM)
    DM = 0x04  # data mode: binary (else BCD)
    SQWE = 0x08  # square wave output enable (no pin: stored only)
    UIE = 0x10  # update-ended interrupt enable
    AIE = 0x20  # alarm interrupt enable
    PIE = 0x40  # periodic interrupt enable
    SET = 0x80  # inhibit updates so the time can be set


class RegC(enum.IntFlag):
    """Register C: flags, cleared by reading it."""

    UF = 0x10  # update ended
    AF = 0x20  # alarm
    PF = 0x40  # periodic
    IRQF = 0x80  # an enabled flag is set: the IRQ pin is asserted


class RegD(enum.IntFlag):
    """Register D."""

    VRT = 0x80  # valid RAM and time: the battery is good


PM_BIT = 0x80  # hours register bit 7 in 12-hour mode
ALARM_DONT_CARE = 0xC0  # alarm byte values 0xC0-0xFF match any value
BASE_MEMORY_KIB = 640
DEFAULT_REG_A = 0x26  # 32.768 kHz time base, 1024 Hz periodic rate
DEFAULT_REG_B = RegB.HOUR_24  # BCD, 24-hour, no interrupts


@dataclass
class RtcState:
    """The CMOS RAM plus how the time relates to virtual time."""

    cmos: list[int] = field(default_factory=lambda: [0] * CMOS_SIZE)
    index: int = 0
    nmi_disabled: bool = False
    base_seconds: int = 0  # calendar time (Unix seconds) at base_ns
    base_ns: int = 0  # virtual time of a whole-second boundary
    frozen_seconds: int | None = None  # the time held while register B.SET is on
    flags: int = 0  # register C flags (PF, AF, UF) raised and not yet read
    checked_ns: int = 0  # flags account for events up to this virtual time


def _bcd(value: int) -> int:
    return ((value // 10) << 4) | (value % 10)


def _from_bcd(value: int) -> int:
    return (value >> 4) * 10 + (value & 0x0F)


def _periodic_period_cycles(rate: int) -> int | None:
    """Periodic interrupt period in 32.768 kHz cycles for rate bits RS3-RS0."""
    if rate == 0:
        return None
    if rate <= 2:
        return 1 << (rate + 6)  # rates 1 and 2 repeat 8 and 9 (256 Hz, 128 Hz)
    return 1 << (rate - 1)


# Plain int: tested between every two slices, where enum arithmetic would show.
_INTERRUPT_ENABLES = int(RegB.PIE | RegB.AIE | RegB.UIE)


class CmosRtc(ByteRegisters):
    """The RTC at ports 0x70-0x71; offset 0 = index, offset 1 = data."""

    port_count = 2

    def __init__(self, clock: Clock, irq8: IrqLine, epoch_seconds: int,
                 name: str = "rtc") -> None:
        self.name = name
        self.clock = clock
        self.irq8 = irq8
        self.state = RtcState(base_seconds=epoch_seconds, base_ns=0,
                              checked_ns=clock.now_ns())
        self.state.cmos[Index.REG_A] = DEFAULT_REG_A
        self.state.cmos[Index.REG_B] = DEFAULT_REG_B
        self.state.cmos[Index.REG_D] = RegD.VRT
        self.set_memory_size(0)

    # --- memory size bytes ------------------------------------------------------------

    def set_memory_size(self, total_bytes: int) -> None:
        """Fill the memory-size bytes firmware would, and the 0x10-0x2D checksum."""
        cmos = self.state.cmos
        ext_kib = min(max(0, total_bytes - (1 << 20)) // 1024, 0xFFFF)
        high_64k = min(max(0, total_bytes - (16 << 20)) // 65536, 0xFFFF)
        for lo, value in ((Index.BASE_MEM_LO, BASE_MEMORY_KIB),
                          (Index.EXT_MEM_LO, ext_kib), (Index.EXT_MEM2_LO, ext_kib),
                          (Index.HIGH_MEM_LO, high_64k)):
            cmos[lo] = value & 0xFF
            cmos[lo + 1] = value >> 8
        checksum = sum(cmos[i] for i in CHECKSUM_RANGE)
        cmos[Index.CHECKSUM_HI] = (checksum >> 8) & 0xFF
        cmos[Index.CHECKSUM_LO] = checksum & 0xFF

    # --- time -----------------------------------------------------------------------

    def _seconds(self, now: int) -> int:
        """Calendar time (Unix seconds) shown by the time registers at now."""
        s = self.state
        if s.frozen_seconds is not None:
            return s.frozen_seconds
        return s.base_seconds + (now - s.base_ns) // NS_PER_S

    def _encode(self, value: int) -> int:
        return value if self.state.cmos[Index.REG_B] & RegB.DM else _bcd(value)

    def _decode(self, value: int) -> int:
        return value if self.state.cmos[Index.REG_B] & RegB.DM else _from_bcd(value)

    def _encode_hours(self, hour: int) -> int:
        if self.state.cmos[Index.REG_B] & RegB.HOUR_24:
            return self._encode(hour)
        pm = PM_BIT if hour >= 12 else 0
        return self._encode(hour % 12 or 12) | pm

    def _decode_hours(self, value: int) -> int:
        if self.state.cmos[Index.REG_B] & RegB.HOUR_24:
            return self._decode(value)
        hour = self._decode(value & ~PM_BIT) % 12
        return hour + 12 if value & PM_BIT else hour

    def _time_register(self, index: int, now: int) -> int:
        t = datetime.datetime.fromtimestamp(self._seconds(now), datetime.timezone.utc)
        if index == Index.SECONDS:
            return self._encode(t.second)
        if index == Index.MINUTES:
            return self._encode(t.minute)
        if index == Index.HOURS:
            return self._encode_hours(t.hour)
        if index == Index.DAY_OF_WEEK:
            return self._encode((t.isoweekday() % 7) + 1)
        if index == Index.DAY_OF_MONTH:
            return self._encode(t.day)
        if index == Index.MONTH:
            return self._encode(t.month)
        if index == Index.YEAR:
            return self._encode(t.year % 100)
        return self._encode(t.year // 100)

    def _write_time_register(self, index: int, value: int, now: int) -> None:
        """Change one field of the time; an impossible date is clamped."""
        t = datetime.datetime.fromtimestamp(self._seconds(now), datetime.timezone.utc)
        fields = {"year": t.year, "month": t.month, "day": t.day, "hour": t.hour,
                  "minute": t.minute, "second": t.second}
        if index == Index.SECONDS:
            fields["second"] = min(self._decode(value), 59)
        elif index == Index.MINUTES:
            fields["minute"] = min(self._decode(value), 59)
        elif index == Index.HOURS:
            fields["hour"] = min(self._decode_hours(value), 23)
        elif index == Index.DAY_OF_MONTH:
            fields["day"] = self._decode(value)
        elif index == Index.MONTH:
            fields["month"] = min(max(self._decode(value), 1), 12)
        elif index == Index.YEAR:
            fields["year"] = t.year // 100 * 100 + min(self._decode(value), 99)
        elif index == Index.CENTURY:
            fields["year"] = min(max(self._decode(value), 1), 99) * 100 + t.year % 100
        else:
            return  # day of week follows from the date
        last_day = calendar.monthrange(fields["year"], fields["month"])[1]
        fields["day"] = min(max(fields["day"], 1), last_day)
        seconds = calendar.timegm(datetime.datetime(**fields).timetuple())
        self._set_seconds(seconds, now)

    def _set_seconds(self, seconds: int, now: int) -> None:
        s = self.state
        if s.frozen_seconds is not None:
            s.frozen_seconds = seconds
        else:
            s.base_seconds = seconds - (now - s.base_ns) // NS_PER_S

    def _update_in_progress(self, now: int) -> bool:
        s = self.state
        if s.frozen_seconds is not None:
            return False
        return (now - s.base_ns) % NS_PER_S >= NS_PER_S - UIP_WINDOW_NS

    # --- interrupt flags -----------------------------------------------------------

    def _periodic_ns(self) -> int | None:
        cycles = _periodic_period_cycles(self.state.cmos[Index.REG_A] & RegA.RATE)
        return None if cycles is None else cycles * NS_PER_S // TIMEBASE_HZ

    def _periodic_index(self, t: int) -> int:
        """Periodic ticks since base_ns up to t (their phase follows the seconds)."""
        cycles = _periodic_period_cycles(self.state.cmos[Index.REG_A] & RegA.RATE)
        assert cycles is not None
        return (t - self.state.base_ns) * TIMEBASE_HZ // (cycles * NS_PER_S)

    def _periodic_tick_time(self, k: int) -> int:
        cycles = _periodic_period_cycles(self.state.cmos[Index.REG_A] & RegA.RATE)
        assert cycles is not None
        return self.state.base_ns - ((-k * cycles * NS_PER_S) // TIMEBASE_HZ)

    def _alarm_field(self, index: int) -> int | None:
        """Decoded alarm byte, or None for 'don't care' (0xC0-0xFF)."""
        value = self.state.cmos[index]
        if value >= ALARM_DONT_CARE:
            return None
        return self._decode_hours(value) if index == Index.HOURS_ALARM else self._decode(value)

    def _alarm_in(self, first: int, last: int) -> bool:
        """Whether a second in [first, last] (Unix seconds) matches the alarm.

        Walks minutes, not seconds, so a day without reading register C costs
        at most 1440 steps.
        """
        want_s = self._alarm_field(Index.SECONDS_ALARM)
        want_m = self._alarm_field(Index.MINUTES_ALARM)
        want_h = self._alarm_field(Index.HOURS_ALARM)
        last = min(last, first + 86_399)
        for minute in range(first // 60, last // 60 + 1):
            if want_m is not None and minute % 60 != want_m:
                continue
            if want_h is not None and minute // 60 % 24 != want_h:
                continue
            low = max(first, minute * 60) % 60
            high = min(last, minute * 60 + 59) % 60
            if want_s is None or low <= want_s <= high:
                return True
        return False

    def _catch_up(self, now: int) -> None:
        """Raise the register C flags for events in (checked_ns, now]; drive IRQ 8."""
        s = self.state
        last = s.checked_ns
        if now > last:
            if self._periodic_ns() is not None and \
                    self._periodic_index(now) > self._periodic_index(last):
                s.flags |= RegC.PF
            if s.frozen_seconds is None:
                first = (last - s.base_ns) // NS_PER_S + 1
                final = (now - s.base_ns) // NS_PER_S
                if final >= first:
                    s.flags |= RegC.UF
                    if self._alarm_in(s.base_seconds + first, s.base_seconds + final):
                        s.flags |= RegC.AF
            s.checked_ns = now
        self._update_irq()

    def _irqf(self) -> bool:
        """IRQF = PF.PIE + AF.AIE + UF.UIE (the enable bits line up with the flags)."""
        s = self.state
        return bool(s.flags & s.cmos[Index.REG_B] & (RegB.PIE | RegB.AIE | RegB.UIE))

    def _update_irq(self) -> None:
        self.irq8.set_level(self._irqf())

    def next_deadline_ns(self) -> int | None:
        """When an enabled interrupt flag next comes up (None while IRQ 8 is held)."""
        s = self.state
        if not s.cmos[Index.REG_B] & _INTERRUPT_ENABLES:
            return None
        if self._irqf():
            return None  # nothing changes until the guest reads register C
        b = s.cmos[Index.REG_B]
        deadlines = []
        if b & RegB.PIE and self._periodic_ns() is not None:
            deadlines.append(self._periodic_tick_time(self._periodic_index(s.checked_ns) + 1))
        if b & (RegB.UIE | RegB.AIE) and s.frozen_seconds is None:
            k = (s.checked_ns - s.base_ns) // NS_PER_S + 1
            deadlines.append(s.base_ns + k * NS_PER_S)
        return min(deadlines) if deadlines else None

    def advance_to(self, now_ns: int) -> None:
        """Bring the flags up to now_ns and raise IRQ 8 if an enabled one is set.

        With no interrupt enabled nothing can reach the IRQ line, and register C
        catches up by itself when read: the run loop calls this between every two
        slices, so that case costs one test.
        """
        if self.state.cmos[Index.REG_B] & _INTERRUPT_ENABLES or self.irq8.level:
            self._catch_up(now_ns)

    # --- bus interface -------------------------------------------------------------

    def _read_byte(self, offset: int) -> int:
        s = self.state
        if offset == 0:
            return 0xFF  # the index register is write-only
        now = self.clock.now_ns()
        index = s.index
        if index in TIME_REGISTERS:
            return self._time_register(index, now)
        if index == Index.REG_A:
            uip = RegA.UIP if self._update_in_progress(now) else 0
            return (s.cmos[index] & ~RegA.UIP) | uip
        if index == Index.REG_C:
            self._catch_up(now)
            value = s.flags | (RegC.IRQF if self._irqf() else 0)
            s.flags = 0
            self._update_irq()
            return value
        if index == Index.REG_D:
            return RegD.VRT
        return s.cmos[index]

    def _write_byte(self, offset: int, value: int) -> None:
        s = self.state
        if offset == 0:
            s.index = value & INDEX_MASK
            s.nmi_disabled = bool(value & NMI_DISABLE)
            return
        now = self.clock.now_ns()
        index = s.index
        if index in TIME_REGISTERS:
            self._write_time_register(index, value, now)
        elif index == Index.REG_A:
            self._catch_up(now)
            s.cmos[index] = value & ~RegA.UIP
            self._update_irq()
        elif index == Index.REG_B:
            self._write_reg_b(value, now)
        elif index in (Index.REG_C, Index.REG_D):
            pass  # read-only
        else:
            s.cmos[index] = value

    def _write_reg_b(self, value: int, now: int) -> None:
        s = self.state
        self._catch_up(now)
        if value & RegB.SET:
            value &= ~RegB.UIE  # datasheet: SET clears UIE
            if s.frozen_seconds is None:
                s.frozen_seconds = self._seconds(now)
        elif s.frozen_seconds is not None:
            phase = (now - s.base_ns) % NS_PER_S
            s.base_ns = now - phase  # keep the update cycle's phase
            s.base_seconds = s.frozen_seconds
            s.frozen_seconds = None
        s.cmos[Index.REG_B] = value
        self._update_irq()

    # --- state --------------------------------------------------------------------------

    def save_state(self) -> dict[str, Any]:
        return dataclasses.asdict(self.state, dict_factory=plain_state)

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore RAM and time base; IRQ 8 is set to match."""
        self.state = RtcState(**{**state, "cmos": list(state["cmos"])})
        self._update_irq()
