"""The MC146818 RTC and CMOS RAM, read through ports 0x70/0x71 at chosen virtual times."""

from __future__ import annotations

import calendar
import json

from hypothesis import given, strategies as st

from devices.base import Device, IrqLine, ManualClock, Stateful, TimedDevice
from devices.rtc import CmosRtc
from tests.helpers import assert_plain

NS = 1_000_000_000
# Wednesday 2026-11-25 13:34:56 UTC
EPOCH = calendar.timegm((2026, 11, 25, 13, 34, 56, 0, 0, 0))
REG_A, REG_B, REG_C, REG_D = 0x0A, 0x0B, 0x0C, 0x0D


def make_rtc(start_ns: int = 0) -> tuple[CmosRtc, ManualClock, IrqLine]:
    clock = ManualClock(start_ns)
    irq = IrqLine()
    return CmosRtc(clock, irq, EPOCH), clock, irq


def cmos_read(rtc: CmosRtc, index: int) -> int:
    rtc.write(0, 1, index)
    return rtc.read(1, 1)


def cmos_write(rtc: CmosRtc, index: int, value: int) -> None:
    rtc.write(0, 1, index)
    rtc.write(1, 1, value)


def clock_fields(rtc: CmosRtc) -> list[int]:
    return [cmos_read(rtc, i) for i in (0, 2, 4, 6, 7, 8, 9, 0x32)]


def test_time_reads_in_bcd_by_default() -> None:
    rtc, _, _ = make_rtc()
    assert clock_fields(rtc) == [0x56, 0x34, 0x13, 0x04, 0x25, 0x11, 0x26, 0x20]


def test_time_reads_in_binary_when_dm_set() -> None:
    rtc, _, _ = make_rtc()
    cmos_write(rtc, REG_B, 0x06)
    assert clock_fields(rtc) == [56, 34, 13, 4, 25, 11, 26, 20]


def test_twelve_hour_mode_sets_pm_bit() -> None:
    rtc, _, _ = make_rtc()
    cmos_write(rtc, REG_B, 0x00)
    assert cmos_read(rtc, 4) == 0x81


def test_time_advances_with_virtual_time() -> None:
    rtc, clock, _ = make_rtc()
    clock.ns = 5 * NS - 1
    assert cmos_read(rtc, 0) == 0x00  # 56 + 4 = 60: minute rolled over
    assert cmos_read(rtc, 2) == 0x35


def test_register_a_default_and_uip_window() -> None:
    rtc, clock, _ = make_rtc()
    assert cmos_read(rtc, REG_A) == 0x26
    clock.ns = NS - 244_001
    assert cmos_read(rtc, REG_A) & 0x80 == 0
    clock.ns = NS - 244_000
    assert cmos_read(rtc, REG_A) & 0x80 == 0x80
    clock.ns = NS
    assert cmos_read(rtc, REG_A) & 0x80 == 0


def test_register_d_reports_valid_ram_and_time() -> None:
    rtc, _, _ = make_rtc()
    assert cmos_read(rtc, REG_D) == 0x80


def test_index_bit_7_is_nmi_mask_not_address() -> None:
    rtc, _, _ = make_rtc()
    rtc.write(0, 1, 0x80 | REG_D)
    assert rtc.read(1, 1) == 0x80
    assert rtc.state.nmi_disabled is True


def test_cmos_ram_holds_bytes() -> None:
    rtc, _, _ = make_rtc()
    cmos_write(rtc, 0x40, 0xAB)
    assert cmos_read(rtc, 0x40) == 0xAB


def test_periodic_interrupt_deadline_at_1024hz() -> None:
    rtc, clock, irq = make_rtc()
    cmos_write(rtc, REG_B, 0x42)  # PIE, 24 h
    assert rtc.next_deadline_ns() == 976_563  # 1/1024 s, rounded up to the ns
    rtc.advance_to(976_563)
    assert irq.level is True


def test_reading_register_c_returns_flags_and_lowers_irq8() -> None:
    rtc, clock, irq = make_rtc()
    cmos_write(rtc, REG_B, 0x42)
    clock.ns = 976_563
    rtc.advance_to(clock.ns)
    assert cmos_read(rtc, REG_C) == 0xC0
    assert irq.level is False
    assert cmos_read(rtc, REG_C) == 0x00


def test_periodic_flag_is_set_without_pie_but_irq_stays_low() -> None:
    rtc, clock, irq = make_rtc()
    clock.ns = 2_000_000
    assert rtc.next_deadline_ns() is None
    assert cmos_read(rtc, REG_C) == 0x40
    assert irq.level is False


def test_no_deadline_while_irq8_waits_for_register_c() -> None:
    rtc, clock, _ = make_rtc()
    cmos_write(rtc, REG_B, 0x42)
    rtc.advance_to(976_563)
    assert rtc.next_deadline_ns() is None
    cmos_read(rtc, REG_C)
    assert rtc.next_deadline_ns() == 1_953_125


def test_periodic_rate_select_changes_period() -> None:
    rtc, clock, _ = make_rtc()
    cmos_write(rtc, REG_A, 0x2F)  # 2 Hz
    cmos_write(rtc, REG_B, 0x42)
    assert rtc.next_deadline_ns() == NS // 2


def test_rate_zero_disables_periodic_interrupt() -> None:
    rtc, clock, _ = make_rtc()
    cmos_write(rtc, REG_A, 0x20)
    cmos_write(rtc, REG_B, 0x42)
    assert rtc.next_deadline_ns() is None


def test_update_ended_interrupt_each_second() -> None:
    rtc, clock, irq = make_rtc(NS // 4)
    cmos_write(rtc, REG_A, 0x20)  # no periodic flag, to see UF alone
    cmos_write(rtc, REG_B, 0x12)  # UIE
    assert rtc.next_deadline_ns() == NS
    clock.ns = NS
    rtc.advance_to(NS)
    assert irq.level is True
    assert cmos_read(rtc, REG_C) == 0x90


def test_alarm_interrupt_at_matching_time() -> None:
    rtc, clock, irq = make_rtc()
    cmos_write(rtc, 0x01, 0x58)  # alarm at hh:mm:58, any hour and minute
    cmos_write(rtc, 0x03, 0xFF)
    cmos_write(rtc, 0x05, 0xFF)
    cmos_write(rtc, REG_B, 0x22)  # AIE
    rtc.advance_to(NS)
    assert irq.level is False
    rtc.advance_to(2 * NS)
    assert irq.level is True
    assert cmos_read(rtc, REG_C) & 0xA0 == 0xA0


def test_set_bit_freezes_the_time_and_allows_setting_it() -> None:
    rtc, clock, _ = make_rtc()
    cmos_write(rtc, REG_B, 0x82)
    clock.ns = 10 * NS
    assert cmos_read(rtc, 0) == 0x56
    cmos_write(rtc, 4, 0x08)
    cmos_write(rtc, 2, 0x00)
    cmos_write(rtc, 0, 0x00)
    cmos_write(rtc, REG_B, 0x02)
    clock.ns = 13 * NS
    assert [cmos_read(rtc, i) for i in (4, 2, 0)] == [0x08, 0x00, 0x03]


def test_set_bit_clears_uie() -> None:
    rtc, _, _ = make_rtc()
    cmos_write(rtc, REG_B, 0x92)
    assert cmos_read(rtc, REG_B) == 0x82


def test_writing_year_keeps_the_rest_of_the_date() -> None:
    rtc, _, _ = make_rtc()
    cmos_write(rtc, 9, 0x30)
    assert clock_fields(rtc) == [0x56, 0x34, 0x13, 0x02, 0x25, 0x11, 0x30, 0x20]


def test_impossible_date_is_clamped() -> None:
    rtc, _, _ = make_rtc()
    cmos_write(rtc, 7, 0x31)  # 31 November
    assert cmos_read(rtc, 7) == 0x30


def test_memory_size_bytes_for_32_mib() -> None:
    rtc, _, _ = make_rtc()
    rtc.set_memory_size(32 << 20)
    assert [cmos_read(rtc, i) for i in (0x15, 0x16)] == [0x80, 0x02]  # 640 KiB
    assert [cmos_read(rtc, i) for i in (0x17, 0x18, 0x30, 0x31)] == [0x00, 0x7C] * 2
    assert [cmos_read(rtc, i) for i in (0x34, 0x35)] == [0x00, 0x01]  # 256 x 64 KiB


def test_extended_memory_bytes_cap_at_0xffff_kib_for_128_mib() -> None:
    rtc, _, _ = make_rtc()
    rtc.set_memory_size(128 << 20)
    assert [cmos_read(rtc, i) for i in (0x17, 0x18, 0x30, 0x31)] == [0xFF] * 4
    assert [cmos_read(rtc, i) for i in (0x34, 0x35)] == [0x00, 0x07]  # 112 MiB


def test_memory_size_bytes_are_capped() -> None:
    rtc, _, _ = make_rtc()
    rtc.set_memory_size(8 << 30)
    assert [cmos_read(rtc, i) for i in (0x17, 0x18, 0x34, 0x35)] == [0xFF] * 4


def test_checksum_covers_bytes_0x10_to_0x2d() -> None:
    rtc, _, _ = make_rtc()
    rtc.set_memory_size(64 << 20)
    total = sum(cmos_read(rtc, i) for i in range(0x10, 0x2E))
    assert (cmos_read(rtc, 0x2E) << 8) | cmos_read(rtc, 0x2F) == total


def test_save_load_round_trip_keeps_time_ram_and_flags() -> None:
    rtc, clock, irq = make_rtc()
    rtc.set_memory_size(64 << 20)
    cmos_write(rtc, 0x50, 0x12)
    cmos_write(rtc, REG_B, 0x42)
    clock.ns = 3 * NS + 5
    rtc.advance_to(clock.ns)
    saved = rtc.save_state()
    assert_plain(saved)
    assert json.loads(json.dumps(saved)) == saved
    irq2 = IrqLine()
    restored = CmosRtc(clock, irq2, 0)
    restored.load_state(saved)
    assert restored.save_state() == saved
    assert irq2.level is True
    assert clock_fields(restored) == clock_fields(rtc)
    assert cmos_read(restored, 0x50) == 0x12
    assert cmos_read(restored, REG_C) == cmos_read(rtc, REG_C) == 0xD0  # IRQF, PF, UF
    assert restored.next_deadline_ns() == rtc.next_deadline_ns()


def test_rtc_implements_the_device_contract() -> None:
    rtc, _, _ = make_rtc()
    assert isinstance(rtc, Device) and isinstance(rtc, TimedDevice)
    assert isinstance(rtc, Stateful)


@given(st.integers(0, 10**6 * NS))
def test_time_registers_match_the_calendar(now) -> None:
    rtc, clock, _ = make_rtc()
    cmos_write(rtc, REG_B, 0x06)
    clock.ns = now
    t = EPOCH + now // NS
    year, month, day, hour, minute, second = __import__("time").gmtime(t)[:6]
    assert clock_fields(rtc)[:3] == [second, minute, hour]
    assert clock_fields(rtc)[4:] == [day, month, year % 100, year // 100]


@given(st.integers(0, 100 * NS))
def test_periodic_deadline_is_the_next_1024hz_tick(now) -> None:
    rtc, clock, _ = make_rtc()
    cmos_write(rtc, REG_B, 0x42)
    rtc.advance_to(now)
    clock.ns = now
    cmos_read(rtc, REG_C)
    deadline = rtc.next_deadline_ns()
    assert deadline > now
    assert deadline - now <= 976_563
    assert deadline * 1024 // NS > (deadline - 1) * 1024 // NS


@given(st.one_of(st.none(), st.integers(0, 59)), st.one_of(st.none(), st.integers(0, 59)),
       st.one_of(st.none(), st.integers(0, 23)), st.integers(0, 3 * 86_400 * NS),
       st.integers(1, 3 * 3600 * NS))
def test_alarm_flag_is_set_iff_a_passed_second_matches(sec, minute, hour, start, gap) -> None:
    rtc, clock, _ = make_rtc()
    cmos_write(rtc, REG_B, 0x06)  # binary, 24 h
    for index, value in ((1, sec), (3, minute), (5, hour)):
        cmos_write(rtc, index, 0xFF if value is None else value)
    clock.ns = start
    cmos_read(rtc, REG_C)
    clock.ns = start + gap
    flags = cmos_read(rtc, REG_C)
    passed = range(EPOCH + start // NS + 1, EPOCH + (start + gap) // NS + 1)
    expected = any((sec is None or t % 60 == sec) and (minute is None or t // 60 % 60 == minute)
                   and (hour is None or t // 3600 % 24 == hour) for t in passed)
    assert bool(flags & 0x20) == expected
