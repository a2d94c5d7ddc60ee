"""The 8254 timer and port 0x61, driven through their ports at chosen virtual times."""

from __future__ import annotations

import json

from hypothesis import given, strategies as st

from devices.base import Device, IrqLine, ManualClock, Stateful, TimedDevice
from devices.pit import PIT_HZ, Pit8254, SpeakerPort
from tests.helpers import assert_plain

CONTROL = 3
NS = 1_000_000_000
DIVISOR_100HZ = 11932


class Recorder:
    """An IRQ sink that counts rising edges."""

    def __init__(self) -> None:
        self.edges = 0
        self.level = False

    def __call__(self, level: bool) -> None:
        if level and not self.level:
            self.edges += 1
        self.level = level


def make_pit(start_ns: int = 0) -> tuple[Pit8254, ManualClock, Recorder]:
    clock = ManualClock(start_ns)
    rec = Recorder()
    return Pit8254(clock, IrqLine(rec)), clock, rec


def program(pit: Pit8254, channel: int, mode: int, count: int) -> None:
    """Control word with lobyte/hibyte access, then the count."""
    pit.write(CONTROL, 1, (channel << 6) | 0x30 | (mode << 1))
    pit.write(channel, 1, count & 0xFF)
    pit.write(channel, 1, (count >> 8) & 0xFF)


def ns_for_ticks(ticks: int) -> int:
    """Earliest virtual time at which ticks PIT clocks have elapsed since 0."""
    return -((-ticks * NS) // PIT_HZ)


def read_latched(pit: Pit8254, channel: int) -> int:
    pit.write(CONTROL, 1, channel << 6)
    low = pit.read(channel, 1)
    return low | (pit.read(channel, 1) << 8)


def test_channel_0_has_no_deadline_until_programmed() -> None:
    pit, _, _ = make_pit()
    assert pit.next_deadline_ns() is None


def test_mode_2_100hz_first_deadline_is_one_period_after_load() -> None:
    pit, _, _ = make_pit()
    program(pit, 0, 2, DIVISOR_100HZ)
    assert pit.next_deadline_ns() == ns_for_ticks(DIVISOR_100HZ)


def test_mode_2_deadline_counts_from_the_load_time() -> None:
    pit, clock, _ = make_pit(5_000)
    program(pit, 0, 2, DIVISOR_100HZ)
    assert pit.next_deadline_ns() == 5_000 + ns_for_ticks(DIVISOR_100HZ)


def test_advance_to_deadline_raises_one_irq0_edge() -> None:
    pit, clock, rec = make_pit()
    program(pit, 0, 2, DIVISOR_100HZ)
    clock.ns = pit.next_deadline_ns()
    pit.advance_to(clock.ns)
    assert rec.edges == 1
    assert pit.next_deadline_ns() == ns_for_ticks(2 * DIVISOR_100HZ)


def test_advance_before_deadline_raises_nothing() -> None:
    pit, clock, rec = make_pit()
    program(pit, 0, 2, DIVISOR_100HZ)
    pit.advance_to(pit.next_deadline_ns() - 1)
    assert rec.edges == 0


def test_many_missed_periods_give_one_edge_and_keep_phase() -> None:
    pit, clock, rec = make_pit()
    program(pit, 0, 2, DIVISOR_100HZ)
    pit.advance_to(ns_for_ticks(5 * DIVISOR_100HZ) + 10)
    assert rec.edges == 1
    assert pit.next_deadline_ns() == ns_for_ticks(6 * DIVISOR_100HZ)


def test_divisor_11932_gives_99_edges_in_the_first_second() -> None:
    pit, clock, rec = make_pit()
    program(pit, 0, 2, DIVISOR_100HZ)
    while (deadline := pit.next_deadline_ns()) <= NS:
        pit.advance_to(deadline)
    assert rec.edges == 99  # 1193182 / 11932 = 99.998 Hz: edge 100 lands at 1.00002 s


def test_latched_count_at_known_time_mode_2() -> None:
    pit, clock, _ = make_pit()
    program(pit, 0, 2, 1000)
    clock.ns = ns_for_ticks(300)
    assert read_latched(pit, 0) == 700


def test_latched_count_stays_until_read_while_time_moves() -> None:
    pit, clock, _ = make_pit()
    program(pit, 0, 2, 1000)
    clock.ns = ns_for_ticks(100)
    pit.write(CONTROL, 1, 0x00)
    clock.ns = ns_for_ticks(400)
    assert pit.read(0, 1) | (pit.read(0, 1) << 8) == 900


def test_mode_2_count_reloads_after_each_period() -> None:
    pit, clock, _ = make_pit()
    program(pit, 0, 2, 1000)
    clock.ns = ns_for_ticks(1250)
    assert read_latched(pit, 0) == 750


def test_unlatched_read_alternates_low_and_high_byte() -> None:
    pit, clock, _ = make_pit()
    program(pit, 1, 2, 0x1234)
    assert pit.read(1, 1) == 0x34
    assert pit.read(1, 1) == 0x12


def test_lobyte_only_access_mode() -> None:
    pit, clock, _ = make_pit()
    pit.write(CONTROL, 1, 0x14)  # channel 0, lobyte, mode 2
    pit.write(0, 1, 200)
    clock.ns = ns_for_ticks(50)
    assert pit.read(0, 1) == 150
    assert pit.read(0, 1) == 150


def test_hibyte_only_access_mode() -> None:
    pit, clock, _ = make_pit()
    pit.write(CONTROL, 1, 0x24)  # channel 0, hibyte, mode 2
    pit.write(0, 1, 0x10)
    assert pit.next_deadline_ns() == ns_for_ticks(0x1000)


def test_mode_3_square_wave_interrupt_rate_and_output() -> None:
    pit, clock, rec = make_pit()
    program(pit, 0, 3, 1000)
    assert pit.next_deadline_ns() == ns_for_ticks(1000)
    clock.ns = ns_for_ticks(499)
    assert pit.out(0) is True
    clock.ns = ns_for_ticks(500)
    assert pit.out(0) is False
    clock.ns = ns_for_ticks(1000)
    assert pit.out(0) is True


def test_mode_3_count_decrements_by_two() -> None:
    pit, clock, _ = make_pit()
    program(pit, 0, 3, 1000)
    clock.ns = ns_for_ticks(100)
    assert read_latched(pit, 0) == 800


def test_mode_4_one_shot_fires_once_after_count_plus_one() -> None:
    pit, clock, rec = make_pit()
    program(pit, 0, 4, 500)
    assert pit.next_deadline_ns() == ns_for_ticks(501)
    pit.advance_to(ns_for_ticks(501))
    assert rec.edges == 1
    assert pit.next_deadline_ns() is None


def test_mode_0_output_rises_at_terminal_count_and_stays() -> None:
    pit, clock, rec = make_pit()
    program(pit, 0, 0, 500)
    clock.ns = ns_for_ticks(499)
    assert pit.out(0) is False
    clock.ns = ns_for_ticks(500)
    assert pit.out(0) is True
    pit.advance_to(clock.ns)
    assert rec.edges == 1
    assert pit.next_deadline_ns() is None
    clock.ns = ns_for_ticks(600)
    assert read_latched(pit, 0) == 0x10000 - 100


def test_mode_0_first_byte_of_new_count_stops_counting() -> None:
    pit, clock, _ = make_pit()
    program(pit, 0, 0, 500)
    pit.write(0, 1, 0x10)
    assert pit.next_deadline_ns() is None
    pit.write(0, 1, 0x00)
    assert pit.next_deadline_ns() == ns_for_ticks(0x10)


def test_control_word_stops_channel_until_count_written() -> None:
    pit, clock, _ = make_pit()
    program(pit, 0, 2, 1000)
    pit.write(CONTROL, 1, 0x34)
    assert pit.next_deadline_ns() is None


def test_read_back_status_reports_mode_access_and_out() -> None:
    pit, clock, _ = make_pit()
    program(pit, 0, 2, 1000)
    pit.write(CONTROL, 1, 0xE2)  # read-back status only, counter 0
    assert pit.read(0, 1) == 0x80 | 0x30 | (2 << 1)


def test_read_back_status_shows_null_count_before_count_written() -> None:
    pit, clock, _ = make_pit()
    pit.write(CONTROL, 1, 0xB0)  # channel 2, lobyte/hibyte, mode 0
    pit.write(CONTROL, 1, 0xE8)
    assert pit.read(2, 1) == 0x40 | 0x30


def test_read_back_status_then_count() -> None:
    pit, clock, _ = make_pit()
    program(pit, 1, 2, 1000)
    clock.ns = ns_for_ticks(10)
    pit.write(CONTROL, 1, 0xC4)  # status and count of counter 1
    clock.ns = ns_for_ticks(20)
    assert pit.read(1, 1) == 0x80 | 0x34
    assert pit.read(1, 1) | (pit.read(1, 1) << 8) == 990


def test_bcd_is_counted_in_binary_and_shown_in_status() -> None:
    pit, clock, _ = make_pit()
    pit.write(CONTROL, 1, 0x35)  # channel 0, lobyte/hibyte, mode 2, BCD
    pit.write(0, 1, 0x00)
    pit.write(0, 1, 0x10)
    assert pit.next_deadline_ns() == ns_for_ticks(0x1000)
    pit.write(CONTROL, 1, 0xE2)
    assert pit.read(0, 1) & 0x01 == 0x01


def test_linux_tsc_calibration_sees_out2_rise_when_count_expires() -> None:
    pit, clock, _ = make_pit()
    port61 = SpeakerPort(pit)
    port61.write(0, 1, (port61.read(0, 1) & ~0x02) | 0x01)  # gate on, speaker off
    pit.write(CONTROL, 1, 0xB0)  # channel 2, lobyte/hibyte, mode 0
    latch = PIT_HZ // 20  # 50 ms
    pit.write(2, 1, latch & 0xFF)
    pit.write(2, 1, latch >> 8)
    clock.ns = ns_for_ticks(latch) - 1
    assert port61.read(0, 1) & 0x20 == 0
    clock.ns = ns_for_ticks(latch)
    assert port61.read(0, 1) & 0x20 == 0x20


def test_channel_2_does_not_count_with_gate_low() -> None:
    pit, clock, _ = make_pit()
    port61 = SpeakerPort(pit)
    pit.write(CONTROL, 1, 0xB0)
    pit.write(2, 1, 100)
    pit.write(2, 1, 0)
    clock.ns = ns_for_ticks(1000)
    assert port61.read(0, 1) & 0x20 == 0
    assert read_latched(pit, 2) == 100
    port61.write(0, 1, 0x01)
    clock.ns += ns_for_ticks(100) + 1
    assert port61.read(0, 1) & 0x20 == 0x20


def test_mode_2_gate_low_holds_count_and_rising_gate_reloads() -> None:
    pit, clock, _ = make_pit()
    port61 = SpeakerPort(pit)
    port61.write(0, 1, 0x01)
    program(pit, 2, 2, 1000)
    clock.ns = ns_for_ticks(300)
    port61.write(0, 1, 0x00)
    clock.ns = ns_for_ticks(600)
    assert read_latched(pit, 2) == 700
    assert port61.read(0, 1) & 0x20 == 0x20  # OUT forced high
    port61.write(0, 1, 0x01)
    clock.ns += ns_for_ticks(10)
    assert read_latched(pit, 2) == 990


def test_mode_1_one_shot_starts_on_rising_gate() -> None:
    pit, clock, _ = make_pit()
    port61 = SpeakerPort(pit)
    program(pit, 2, 1, 100)
    assert pit.out(2) is True
    port61.write(0, 1, 0x01)
    assert pit.out(2) is False
    clock.ns = ns_for_ticks(100)
    assert pit.out(2) is True


def test_port61_keeps_gate_and_speaker_bits() -> None:
    pit, clock, _ = make_pit()
    port61 = SpeakerPort(pit)
    port61.write(0, 1, 0x03)
    assert port61.read(0, 1) & 0x03 == 0x03


def test_port61_refresh_bit_toggles_every_15us() -> None:
    pit, clock, _ = make_pit()
    port61 = SpeakerPort(pit)
    first = port61.read(0, 1) & 0x10
    clock.advance(15_000)
    second = port61.read(0, 1) & 0x10
    clock.advance(15_000)
    assert first != second
    assert port61.read(0, 1) & 0x10 == first


def test_save_load_round_trip_keeps_counting_the_same() -> None:
    pit, clock, rec = make_pit()
    program(pit, 0, 2, DIVISOR_100HZ)
    program(pit, 2, 0, 5000)
    clock.ns = ns_for_ticks(3000)
    pit.write(CONTROL, 1, 0x80)  # latch counter 2, left unread
    saved = pit.save_state()
    assert_plain(saved)
    assert json.loads(json.dumps(saved)) == saved
    rec2 = Recorder()
    restored = Pit8254(clock, IrqLine(rec2))
    restored.load_state(saved)
    assert restored.save_state() == saved
    assert restored.next_deadline_ns() == pit.next_deadline_ns()
    assert restored.read(2, 1) == pit.read(2, 1)
    clock.ns = ns_for_ticks(5000)
    assert read_latched(restored, 0) == read_latched(pit, 0)


def test_pit_and_port61_implement_the_device_contract() -> None:
    pit, _, _ = make_pit()
    port61 = SpeakerPort(pit)
    assert isinstance(pit, Device) and isinstance(pit, TimedDevice)
    assert isinstance(pit, Stateful) and isinstance(port61, Stateful)
    assert isinstance(port61, Device)


@given(st.integers(2, 0xFFFF), st.lists(st.integers(0, 10 * NS), min_size=2, max_size=20))
def test_mode_2_count_stays_in_range_and_falls_within_a_period(count, times) -> None:
    pit, clock, _ = make_pit()
    program(pit, 0, 2, count)
    previous = None
    for t in sorted(times):
        clock.ns = t
        value = read_latched(pit, 0)
        assert 1 <= value <= count
        period = (t * PIT_HZ // NS) // count
        if previous is not None and previous[0] == period:
            assert value <= previous[1]
        previous = (period, value)


@given(st.integers(1, 0xFFFF), st.integers(0, 10 * NS))
def test_mode_2_deadline_is_the_next_whole_period(count, now) -> None:
    pit, clock, rec = make_pit()
    program(pit, 0, 2, count)
    pit.advance_to(now)
    deadline = pit.next_deadline_ns()
    assert deadline > now
    ticks_at_deadline = deadline * PIT_HZ // NS
    assert ticks_at_deadline % count == 0
    assert ((deadline - 1) * PIT_HZ // NS) < ticks_at_deadline
