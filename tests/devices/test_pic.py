"""The cascaded 8259A pair, driven through its ports as a guest kernel would."""

from __future__ import annotations

from hypothesis import given, strategies as st

from devices.base import Device, Stateful
from devices.pic import PicPair
from tests.helpers import assert_plain

EOI = 0x20
READ_IRR = 0x0A
READ_ISR = 0x0B
POLL = 0x0C


def linux_init(pair: PicPair, master_base: int = 0x30, slave_base: int = 0x38) -> None:
    """ICW1-ICW4 as Linux's init_8259A writes them, then all inputs unmasked."""
    m, s = pair.master, pair.slave
    m.write(0, 1, 0x11)
    m.write(1, 1, master_base)
    m.write(1, 1, 0x04)
    m.write(1, 1, 0x01)
    s.write(0, 1, 0x11)
    s.write(1, 1, slave_base)
    s.write(1, 1, 0x02)
    s.write(1, 1, 0x01)
    m.write(1, 1, 0x00)
    s.write(1, 1, 0x00)


def isr(chip) -> int:
    chip.write(0, 1, READ_ISR)
    return chip.read(0, 1)


def irr(chip) -> int:
    chip.write(0, 1, READ_IRR)
    return chip.read(0, 1)


def test_no_interrupt_pending_after_initialisation() -> None:
    pair = PicPair()
    linux_init(pair)
    assert pair.interrupt_pending() is False


def test_master_irq_gives_its_vector_and_sets_isr() -> None:
    pair = PicPair()
    linux_init(pair)
    pair.set_irq(4, True)
    assert pair.interrupt_pending()
    assert pair.acknowledge() == 0x34
    assert isr(pair.master) == 0x10
    assert irr(pair.master) == 0x00
    assert pair.interrupt_pending() is False


def test_slave_irq_9_cascades_through_master_irq_2() -> None:
    pair = PicPair()
    linux_init(pair)
    pair.set_irq(9, True)
    assert pair.interrupt_pending()
    assert pair.acknowledge() == 0x39
    assert isr(pair.slave) == 0x02
    assert isr(pair.master) == 0x04


def test_eoi_to_slave_then_master_clears_both_isr_bits() -> None:
    pair = PicPair()
    linux_init(pair)
    pair.set_irq(9, True)
    pair.acknowledge()
    pair.slave.write(0, 1, EOI)
    pair.master.write(0, 1, EOI)
    assert isr(pair.slave) == 0
    assert isr(pair.master) == 0


def test_slave_request_behind_in_service_slave_waits_for_both_eois() -> None:
    pair = PicPair()
    linux_init(pair)
    pair.set_irq(9, True)
    pair.set_irq(10, True)
    assert pair.acknowledge() == 0x39
    assert pair.interrupt_pending() is False
    pair.slave.write(0, 1, EOI)
    assert pair.interrupt_pending() is False  # master's IRQ 2 still in service
    pair.master.write(0, 1, EOI)
    assert pair.interrupt_pending()
    assert pair.acknowledge() == 0x3A


def test_on_intr_change_reports_the_intr_pin() -> None:
    pair = PicPair()
    seen: list[bool] = []
    pair.on_intr_change = seen.append
    linux_init(pair)
    pair.set_irq(1, True)
    pair.acknowledge()
    assert seen == [True, False]


def test_masked_edge_is_latched_and_delivered_when_unmasked() -> None:
    pair = PicPair()
    linux_init(pair)
    pair.master.write(1, 1, 0x08)
    line = pair.irq_line(3)
    line.pulse()
    assert pair.interrupt_pending() is False
    assert irr(pair.master) == 0x08
    pair.master.write(1, 1, 0x00)
    assert pair.acknowledge() == 0x33


def test_imr_reads_back_on_data_port() -> None:
    pair = PicPair()
    linux_init(pair)
    pair.slave.write(1, 1, 0xA5)
    assert pair.slave.read(1, 1) == 0xA5


def test_edge_input_needs_a_new_rising_edge_to_request_again() -> None:
    pair = PicPair()
    linux_init(pair)
    pair.set_irq(3, True)
    pair.acknowledge()
    pair.master.write(0, 1, EOI)
    assert pair.interrupt_pending() is False  # still high, but no new edge
    pair.set_irq(3, False)
    pair.set_irq(3, True)
    assert pair.acknowledge() == 0x33


def test_level_input_requests_again_after_eoi_while_asserted() -> None:
    pair = PicPair()
    linux_init(pair)
    pair.elcr.write(1, 1, 0x08)  # IRQ 11 level-triggered
    pair.set_irq(11, True)
    assert pair.acknowledge() == 0x3B
    pair.slave.write(0, 1, EOI)
    pair.master.write(0, 1, EOI)
    assert pair.interrupt_pending()
    assert pair.acknowledge() == 0x3B


def test_level_input_drops_its_request_when_the_level_drops() -> None:
    pair = PicPair()
    linux_init(pair)
    pair.elcr.write(0, 1, 0x20)  # IRQ 5 level-triggered
    pair.set_irq(5, True)
    pair.set_irq(5, False)
    assert irr(pair.master) == 0
    assert pair.interrupt_pending() is False


def test_elcr_cannot_make_irq_0_1_2_8_13_level() -> None:
    pair = PicPair()
    pair.elcr.write(0, 1, 0xFF)
    pair.elcr.write(1, 1, 0xFF)
    assert pair.elcr.read(0, 1) == 0xF8
    assert pair.elcr.read(1, 1) == 0xDE
    assert pair.elcr.read(0, 2) == 0xDEF8


def test_spurious_master_interrupt_gives_vector_7_and_no_isr() -> None:
    pair = PicPair()
    linux_init(pair)
    pair.elcr.write(0, 1, 0x20)  # IRQ 5 level
    pair.set_irq(5, True)
    assert pair.interrupt_pending()
    pair.set_irq(5, False)  # request withdrawn before INTA
    assert pair.acknowledge() == 0x37
    assert isr(pair.master) == 0


def test_spurious_slave_interrupt_gives_slave_vector_7_and_master_isr_2() -> None:
    pair = PicPair()
    linux_init(pair)
    pair.elcr.write(1, 1, 0x08)  # IRQ 11 level
    pair.set_irq(11, True)
    pair.set_irq(11, False)  # slave INT fell, master kept its IRQ 2 edge
    assert pair.interrupt_pending()
    assert pair.acknowledge() == 0x3F
    assert isr(pair.slave) == 0
    assert isr(pair.master) == 0x04


def test_lower_number_has_priority_by_default() -> None:
    pair = PicPair()
    linux_init(pair)
    pair.set_irq(6, True)
    pair.set_irq(3, True)
    assert pair.acknowledge() == 0x33


def test_higher_priority_request_nests_over_lower_in_service() -> None:
    pair = PicPair()
    linux_init(pair)
    pair.set_irq(6, True)
    assert pair.acknowledge() == 0x36
    pair.set_irq(3, True)
    assert pair.acknowledge() == 0x33
    assert isr(pair.master) == 0x48


def test_non_specific_eoi_clears_highest_priority_in_service() -> None:
    pair = PicPair()
    linux_init(pair)
    pair.set_irq(6, True)
    pair.acknowledge()
    pair.set_irq(3, True)
    pair.acknowledge()
    pair.master.write(0, 1, EOI)
    assert isr(pair.master) == 0x40


def test_specific_eoi_clears_the_named_level() -> None:
    pair = PicPair()
    linux_init(pair)
    pair.set_irq(6, True)
    pair.acknowledge()
    pair.set_irq(3, True)
    pair.acknowledge()
    pair.master.write(0, 1, 0x66)
    assert isr(pair.master) == 0x08


def test_lower_priority_request_waits_for_eoi() -> None:
    pair = PicPair()
    linux_init(pair)
    pair.set_irq(3, True)
    pair.acknowledge()
    pair.set_irq(6, True)
    assert pair.interrupt_pending() is False
    pair.master.write(0, 1, EOI)
    assert pair.acknowledge() == 0x36


def test_rotate_on_non_specific_eoi_makes_served_level_lowest() -> None:
    pair = PicPair()
    linux_init(pair)
    pair.set_irq(3, True)
    pair.acknowledge()
    pair.master.write(0, 1, 0xA0)
    pair.set_irq(1, True)
    pair.set_irq(4, True)
    assert pair.acknowledge() == 0x34  # 4 is now highest priority, 3 lowest


def test_set_priority_command_rotates_priority() -> None:
    pair = PicPair()
    linux_init(pair)
    pair.master.write(0, 1, 0xC5)  # IRQ 5 lowest, IRQ 6 highest
    pair.set_irq(1, True)
    pair.set_irq(7, True)
    assert pair.acknowledge() == 0x37


def test_rotate_on_specific_eoi() -> None:
    pair = PicPair()
    linux_init(pair)
    pair.set_irq(1, True)
    pair.acknowledge()
    pair.master.write(0, 1, 0xE1)  # EOI level 1, which becomes lowest
    assert isr(pair.master) == 0
    pair.set_irq(0, True)
    pair.set_irq(3, True)
    assert pair.acknowledge() == 0x33  # priority now runs 2, 3, ..., 7, 0, 1


def test_auto_eoi_leaves_isr_clear() -> None:
    pair = PicPair()
    m = pair.master
    m.write(0, 1, 0x13)  # single, ICW4 needed
    m.write(1, 1, 0x20)
    m.write(1, 1, 0x03)  # 8086 mode, auto-EOI
    m.write(1, 1, 0x00)
    pair.set_irq(5, True)
    assert pair.acknowledge() == 0x25
    assert isr(m) == 0


def test_poll_returns_level_and_acknowledges() -> None:
    pair = PicPair()
    linux_init(pair)
    pair.set_irq(5, True)
    pair.master.write(0, 1, POLL)
    assert pair.master.read(0, 1) == 0x85
    assert isr(pair.master) == 0x20
    assert pair.interrupt_pending() is False


def test_poll_without_request_returns_zero() -> None:
    pair = PicPair()
    linux_init(pair)
    pair.master.write(0, 1, POLL)
    assert pair.master.read(0, 1) == 0x00


def test_special_mask_mode_lets_lower_priority_in() -> None:
    pair = PicPair()
    linux_init(pair)
    pair.set_irq(3, True)
    pair.acknowledge()
    pair.master.write(1, 1, 0x08)  # mask the level being serviced
    pair.master.write(0, 1, 0x68)  # set special mask mode
    pair.set_irq(6, True)
    assert pair.acknowledge() == 0x36
    pair.master.write(0, 1, 0x48)  # reset special mask mode
    pair.set_irq(7, True)
    assert pair.interrupt_pending() is False


def test_icw1_clears_mask_and_in_service() -> None:
    pair = PicPair()
    linux_init(pair)
    pair.master.write(1, 1, 0xFF)
    pair.set_irq(0, True)
    pair.master.write(1, 1, 0x00)
    pair.acknowledge()
    linux_init(pair, 0x08, 0x70)
    assert pair.master.read(1, 1) == 0
    assert isr(pair.master) == 0


def test_irq_line_drives_the_input() -> None:
    pair = PicPair()
    linux_init(pair)
    pair.irq_line(12).raise_()
    assert pair.acknowledge() == 0x3C
    assert pair.irq_line(12) is pair.irq_line(12)


def test_save_load_round_trip() -> None:
    pair = PicPair()
    linux_init(pair)
    pair.elcr.write(1, 1, 0x08)
    pair.set_irq(11, True)
    pair.set_irq(4, True)
    pair.set_irq(3, True)
    pair.acknowledge()
    saved = pair.save_state()
    assert_plain(saved)
    restored = PicPair()
    restored.load_state(saved)
    assert restored.save_state() == saved
    assert restored.interrupt_pending() == pair.interrupt_pending()
    pair.master.write(0, 1, EOI)
    restored.master.write(0, 1, EOI)
    assert restored.acknowledge() == pair.acknowledge() == 0x33


def test_chips_and_elcr_are_bus_devices_and_the_pair_is_stateful() -> None:
    pair = PicPair()
    for device in (pair.master, pair.slave, pair.elcr):
        assert isinstance(device, Device)
    assert isinstance(pair, Stateful)
    assert (pair.master.name, pair.slave.name, pair.elcr.name) == \
        ("pic-master", "pic-slave", "elcr")


@given(st.lists(st.tuples(st.integers(0, 15), st.booleans()), max_size=40))
def test_acknowledged_vectors_belong_to_raised_irqs(events) -> None:
    pair = PicPair()
    linux_init(pair)
    raised = set()
    for irq, level in events:
        pair.set_irq(irq, level)
        if level:
            raised.add(irq)
        if pair.interrupt_pending():
            vector = pair.acknowledge()
            irq_no = vector - 0x30
            assert irq_no in raised or irq_no in (7, 15)
            if irq_no >= 8:
                pair.slave.write(0, 1, EOI)
            pair.master.write(0, 1, EOI)
