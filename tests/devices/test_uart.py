"""The 16550 UART, register by register, as the Linux 8250 driver would drive it."""

from __future__ import annotations

import json

from hypothesis import given, strategies as st

from devices.base import Device, IrqLine, Stateful
from devices.uart import Uart16550
from tests.helpers import assert_plain

RBR = THR = DLL = 0
IER = DLM = 1
IIR = FCR = 2
LCR, MCR, LSR, MSR, SCR = 3, 4, 5, 6, 7


class Port:
    """A UART with its output and IRQ line recorded."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.irq = IrqLine()
        self.uart = Uart16550(self.irq, self.out.extend)

    def r(self, reg: int) -> int:
        return self.uart.read(reg, 1)

    def w(self, reg: int, value: int) -> None:
        self.uart.write(reg, 1, value)


def test_reset_values() -> None:
    p = Port()
    assert p.r(IER) == 0x00
    assert p.r(IIR) == 0x01
    assert p.r(LCR) == 0x00
    assert p.r(MCR) == 0x08  # OUT2, as QEMU resets it
    assert p.r(LSR) == 0x60
    assert p.r(MSR) == 0xB0
    assert p.irq.level is False


def test_thr_write_goes_to_output_at_once() -> None:
    p = Port()
    for byte in b"hi\n":
        p.w(THR, byte)
    assert bytes(p.out) == b"hi\n"
    assert p.r(LSR) & 0x60 == 0x60


def test_enabling_etbei_with_empty_thr_raises_thre_interrupt() -> None:
    p = Port()
    p.w(IER, 0x02)
    assert p.irq.level is True
    assert p.r(IIR) == 0x02


def test_reading_iir_clears_thre_interrupt() -> None:
    p = Port()
    p.w(IER, 0x02)
    p.r(IIR)
    assert p.irq.level is False
    assert p.r(IIR) == 0x01


def test_thr_write_makes_a_new_thre_interrupt_edge() -> None:
    p = Port()
    levels: list[bool] = []
    p.irq.connect(levels.append)
    p.w(IER, 0x02)
    p.r(IIR)
    p.w(THR, ord("x"))
    assert levels == [True, False, True]
    assert p.r(IIR) == 0x02


def test_rewriting_ier_without_changing_etbei_keeps_thre_cleared() -> None:
    p = Port()
    p.w(IER, 0x02)
    p.r(IIR)
    p.w(IER, 0x03)
    assert p.r(IIR) == 0x01


def test_received_byte_sets_dr_and_rda_interrupt() -> None:
    p = Port()
    p.w(IER, 0x01)
    p.uart.feed_input(b"a")
    assert p.r(LSR) & 0x01 == 0x01
    assert p.r(IIR) == 0x04
    assert p.irq.level is True
    assert p.r(RBR) == ord("a")
    assert p.r(LSR) & 0x01 == 0
    assert p.irq.level is False


def test_second_byte_without_fifo_overruns() -> None:
    p = Port()
    p.uart.feed_input(b"ab")
    assert p.r(LSR) & 0x03 == 0x03
    assert p.r(LSR) & 0x02 == 0  # OE cleared by the read
    assert p.r(RBR) == ord("b")


def test_line_status_interrupt_has_priority_over_received_data() -> None:
    p = Port()
    p.w(IER, 0x07)
    p.uart.feed_input(b"ab")
    assert p.r(IIR) == 0x06
    p.r(LSR)
    assert p.r(IIR) == 0x04
    p.r(RBR)
    assert p.r(IIR) == 0x02


def test_received_data_has_priority_over_thre() -> None:
    p = Port()
    p.w(IER, 0x03)
    p.uart.feed_input(b"z")
    assert p.r(IIR) == 0x04


def test_thre_has_priority_over_modem_status() -> None:
    p = Port()
    p.w(IER, 0x0A)
    p.w(MCR, 0x10 | 0x02)  # loopback with RTS only: DSR and DCD drop
    assert p.r(IIR) == 0x02
    assert p.r(IIR) == 0x00
    assert p.r(MSR) == 0x10 | 0x08 | 0x02  # CTS, delta DCD, delta DSR
    assert p.r(IIR) == 0x01


def test_fifo_enable_shows_in_iir_bits_6_and_7() -> None:
    p = Port()
    p.w(FCR, 0x01)
    assert p.r(IIR) == 0xC1


def test_fifo_holds_sixteen_bytes_in_order() -> None:
    p = Port()
    p.w(FCR, 0x07)
    data = bytes(range(0x41, 0x51))
    p.uart.feed_input(data)
    assert p.r(LSR) & 0x02 == 0
    assert bytes(p.r(RBR) for _ in range(16)) == data
    assert p.r(LSR) & 0x01 == 0


def test_seventeenth_byte_overruns_and_is_lost() -> None:
    p = Port()
    p.w(FCR, 0x01)
    p.uart.feed_input(bytes(range(17)))
    assert p.r(LSR) & 0x02 == 0x02
    assert [p.r(RBR) for _ in range(16)] == list(range(16))


def test_below_trigger_level_reports_character_timeout() -> None:
    p = Port()
    p.w(FCR, 0x81)  # trigger at 8 bytes
    p.w(IER, 0x01)
    p.uart.feed_input(b"1234567")
    assert p.r(IIR) == 0xCC


def test_at_trigger_level_reports_received_data_available() -> None:
    p = Port()
    p.w(FCR, 0x81)
    p.w(IER, 0x01)
    p.uart.feed_input(b"12345678")
    assert p.r(IIR) == 0xC4


def test_trigger_levels_are_1_4_8_14() -> None:
    for fcr, level in ((0x01, 1), (0x41, 4), (0x81, 8), (0xC1, 14)):
        p = Port()
        p.w(FCR, fcr)
        p.w(IER, 0x01)
        p.uart.feed_input(bytes(level - 1))
        assert p.r(IIR) in (0xCC, 0xC1)
        p.uart.feed_input(b"x")
        assert p.r(IIR) == 0xC4


def test_fcr_clear_receive_fifo_drops_waiting_bytes() -> None:
    p = Port()
    p.w(FCR, 0x01)
    p.uart.feed_input(b"abc")
    p.w(FCR, 0x03)
    assert p.r(LSR) & 0x01 == 0
    assert p.uart.input_room() == 16


def test_input_room_tells_how_much_fits() -> None:
    p = Port()
    assert p.uart.input_room() == 1
    p.uart.feed_input(b"a")
    assert p.uart.input_room() == 0
    p.w(FCR, 0x01)
    p.uart.feed_input(b"abcd")
    assert p.uart.input_room() == 12


def test_dlab_exposes_divisor_latch() -> None:
    p = Port()
    p.w(LCR, 0x80)
    p.w(DLL, 0x01)
    p.w(DLM, 0x00)
    assert (p.r(DLL), p.r(DLM)) == (0x01, 0x00)
    p.w(LCR, 0x03)
    assert p.r(IER) == 0x00
    assert bytes(p.out) == b""


def test_default_divisor_is_9600_baud() -> None:
    p = Port()
    p.w(LCR, 0x80)
    assert p.r(DLL) | (p.r(DLM) << 8) == 12


def test_scratch_register_holds_a_byte() -> None:
    p = Port()
    p.w(SCR, 0x5A)
    assert p.r(SCR) == 0x5A


def test_loopback_returns_transmitted_bytes_to_receiver() -> None:
    p = Port()
    p.w(MCR, 0x10)
    p.w(THR, 0x55)
    assert bytes(p.out) == b""
    assert p.r(LSR) & 0x01 == 0x01
    assert p.r(RBR) == 0x55


def test_loopback_msr_reflects_mcr_outputs() -> None:
    p = Port()
    p.w(MCR, 0x10 | 0x0A)  # Linux's probe: OUT2 | RTS
    assert p.r(MSR) & 0xF0 == 0x90
    p.w(MCR, 0x10 | 0x05)  # OUT1 | DTR
    assert p.r(MSR) & 0xF0 == 0x60


def test_loopback_ignores_host_input() -> None:
    p = Port()
    p.w(MCR, 0x10)
    p.uart.feed_input(b"q")
    assert p.r(LSR) & 0x01 == 0


def test_interrupt_is_not_gated_by_out2_as_on_qemu() -> None:
    p = Port()
    p.w(MCR, 0x00)
    p.w(IER, 0x02)
    assert p.irq.level is True


def test_save_load_round_trip_keeps_fifo_and_interrupt() -> None:
    p = Port()
    p.w(FCR, 0xC1)
    p.w(IER, 0x05)
    p.w(LCR, 0x03)
    p.w(SCR, 0x77)
    p.uart.feed_input(b"hello")
    saved = p.uart.save_state()
    assert_plain(saved)
    assert json.loads(json.dumps(saved)) == saved
    q = Port()
    q.uart.load_state(saved)
    assert q.uart.save_state() == saved
    assert q.irq.level is True
    assert q.r(IIR) == p.r(IIR) == 0xCC
    assert bytes(q.r(RBR) for _ in range(5)) == b"hello"


def test_uart_implements_the_device_contract() -> None:
    uart = Port().uart
    assert isinstance(uart, Device) and isinstance(uart, Stateful)


@given(st.lists(st.binary(min_size=1, max_size=8), max_size=10))
def test_fifo_delivers_what_fits_in_order(chunks) -> None:
    p = Port()
    p.w(FCR, 0x01)
    accepted = bytearray()
    for chunk in chunks:
        room = p.uart.input_room()
        accepted += chunk[:room]
        p.uart.feed_input(chunk[:room])
        if p.r(LSR) & 0x01:
            accepted_first = p.r(RBR)
            assert accepted_first == accepted.pop(0)
    got = bytearray()
    while p.r(LSR) & 0x01:
        got.append(p.r(RBR))
    assert got == accepted
    assert p.r(LSR) & 0x02 == 0
