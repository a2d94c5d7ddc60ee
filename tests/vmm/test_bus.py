"""The port and MMIO buses (vmm/bus.py): registration, dispatch, unclaimed accesses, counts."""

from __future__ import annotations

import re

import pytest

from vmm.bus import BusError, ExitStats, MmioBus, PortBus


class Recorder:
    """A device that logs every access and reads back ``base_value + offset``."""

    def __init__(self, name: str, base_value: int = 0x40) -> None:
        self.name = name
        self.base_value = base_value
        self.log: list[tuple] = []

    def read(self, offset: int, size: int) -> int:
        self.log.append(("read", offset, size))
        return self.base_value + offset

    def write(self, offset: int, size: int, value: int) -> None:
        self.log.append(("write", offset, size, value))


@pytest.fixture
def ports():
    return PortBus()


def test_overlapping_registration_is_refused_naming_both_devices(ports):
    ports.register(0x3F8, 8, Recorder("com1"))
    with pytest.raises(BusError) as raised:
        ports.register(0x3FC, 4, Recorder("intruder"))
    message = str(raised.value)
    assert "intruder at 0x3fc+0x4" in message
    assert "com1 at 0x3f8+0x8" in message


@pytest.mark.parametrize(
    "base,length",
    [(0x3F0, 0x9), (0x3F8, 1), (0x3FF, 1), (0x3F0, 0x20), (0x3FA, 2)],
    ids=["ends-inside", "first-port", "last-port", "covers-it", "inside"],
)
def test_every_kind_of_overlap_is_refused(ports, base, length):
    ports.register(0x3F8, 8, Recorder("com1"))
    with pytest.raises(BusError, match="overlaps com1"):
        ports.register(base, length, Recorder("other"))


def test_overlap_with_a_device_two_registrations_away_is_refused(ports):
    ports.register(0x100, 4, Recorder("a"))
    ports.register(0x200, 4, Recorder("b"))
    ports.register(0x300, 4, Recorder("c"))
    with pytest.raises(BusError, match="overlaps b"):
        ports.register(0x1FE, 4, Recorder("wide"))
    with pytest.raises(BusError, match="overlaps a"):
        ports.register(0x80, 0x81, Recorder("wide"))


def test_adjacent_ranges_are_accepted(ports):
    left, right = Recorder("left"), Recorder("right")
    ports.register(0x60, 1, left)
    ports.register(0x61, 1, right)
    ports.read(0x60, 1)
    ports.read(0x61, 1)
    assert left.log == [("read", 0, 1)]
    assert right.log == [("read", 0, 1)]


@pytest.mark.parametrize("base,length", [(0xFFFF, 2), (-1, 1), (0x10, 0)])
def test_out_of_range_registration_is_refused(ports, base, length):
    with pytest.raises(BusError, match=re.escape("out of bounds")):
        ports.register(base, length, Recorder("dev"))


def test_a_refused_registration_leaves_the_bus_unchanged(ports):
    first = Recorder("first")
    ports.register(0x1F0, 8, first)
    with pytest.raises(BusError):
        ports.register(0x1F4, 8, Recorder("second"))
    assert [m.device.name for m in ports.mappings] == ["first"]
    assert ports.read(0x1F9, 1) == 0xFF


def test_accesses_reach_the_device_with_offsets_relative_to_its_base(ports):
    device = Recorder("uart", base_value=0x40)
    ports.register(0x3F8, 8, device)
    assert ports.read(0x3FD, 1) == 0x45
    ports.write(0x3F8, 1, 0x41)
    ports.write(0x3FB, 2, 0x1234)
    assert device.log == [("read", 5, 1), ("write", 0, 1, 0x41), ("write", 3, 2, 0x1234)]


@pytest.mark.parametrize("size,value", [(1, 0xFF), (2, 0xFFFF), (4, 0xFFFFFFFF)])
def test_unclaimed_port_reads_all_ones(ports, size, value):
    ports.register(0x3F8, 8, Recorder("com1"))
    assert ports.read(0x2F8, size) == value


def test_unclaimed_port_write_is_ignored_and_counted(ports):
    device = Recorder("com1")
    ports.register(0x3F8, 8, device)
    ports.write(0x2F8, 1, 0x55)
    ports.read(0x2E, 1)
    assert device.log == []
    assert ports.exits["unclaimed"] == 2


def test_port_bus_counts_exits_per_device(ports):
    pic, pit = Recorder("pic"), Recorder("pit")
    ports.register(0x20, 2, pic)
    ports.register(0x40, 4, pit)
    for _ in range(3):
        ports.read(0x21, 1)
    ports.write(0x43, 1, 0x34)
    assert ports.exits == {"pic": 3, "pit": 1}


def test_unregister_frees_the_range(ports):
    mapping = ports.register(0x300, 0x20, Recorder("ne2000"))
    ports.unregister(mapping)
    assert ports.read(0x300, 1) == 0xFF
    replacement = Recorder("replacement")
    ports.register(0x310, 4, replacement)
    ports.read(0x312, 1)
    assert replacement.log == [("read", 2, 1)]


def test_find_returns_the_mapping_holding_an_address(ports):
    device = Recorder("dev")
    mapping = ports.register(0x1000, 0x10, device)
    assert ports.find(0x1000) is mapping
    assert ports.find(0x100F) is mapping
    assert ports.find(0x1010) is None
    assert ports.find(0x0FFF) is None


def test_mmio_bus_dispatches_relative_offsets_and_counts_exits():
    mmio = MmioBus()
    bar1, bar2 = Recorder("lsi-regs", 0), Recorder("lsi-ram", 0x1000)
    mmio.register(0xFEBF0000, 0x400, bar1)
    mmio.register(0xFEBF2000, 0x2000, bar2)
    assert mmio.read(0xFEBF2010, 4) == 0x1010
    mmio.write(0xFEBF0014, 4, 0xCAFE)
    assert bar1.log == [("write", 0x14, 4, 0xCAFE)]
    assert bar2.log == [("read", 0x10, 4)]
    assert mmio.read(0xFEBF1000, 4) == 0xFFFFFFFF
    assert mmio.exits == {"lsi-regs": 1, "lsi-ram": 1}


def test_mmio_bus_refuses_ranges_above_4gib():
    with pytest.raises(BusError, match="out of bounds"):
        MmioBus().register(0xFFFFF000, 0x2000, Recorder("bar"))


def test_exit_stats_merge_device_counts_by_reason_and_device():
    stats = ExitStats()
    stats.count("hlt")
    stats.merge_device_counts("port I/O", {"uart": 5, "pic": 2, "idle": 0})
    assert stats.by_reason == {"hlt": 1, "port I/O": 7}
    assert stats.by_device == {"uart": 5, "pic": 2}


def test_a_timer_write_asks_for_a_rearm_only_when_its_next_deadline_moves():
    """Programming PIT counter 2 (no interrupt; Linux calibrates the TSC with it) must
    not end the slice; reprogramming counter 0 must."""
    from devices.base import IrqLine, ManualClock
    from devices.pit import Pit8254
    from vmm.bus import NotifyOnDeadlineChange

    rearms = []
    pit = NotifyOnDeadlineChange(Pit8254(ManualClock(), IrqLine()), lambda: rearms.append(1))
    pit.write(3, 1, 0xB0)  # counter 2, LSB then MSB, mode 0
    pit.write(2, 1, 0xFF)
    pit.write(2, 1, 0xFF)
    assert rearms == []
    pit.write(3, 1, 0x34)  # counter 0, mode 2
    pit.write(0, 1, 0x9C)
    pit.write(0, 1, 0x2E)
    assert rearms  # the first tick is now due at a new time


def test_a_register_window_asks_for_a_rearm_only_when_its_chip_gets_a_deadline():
    """The LSI's BARs: a write to SCRATCH, MBOX or SCRIPTS RAM starts nothing and must
    not end the slice; the write that starts SCRIPTS gives the chip a deadline."""
    from vmm.bus import NotifyOnDeadlineChange

    class Chip:
        deadline = None

        def next_deadline_ns(self):
            return self.deadline

    class Window(Recorder):
        def write(self, offset, size, value):
            super().write(offset, size, value)
            if offset == 0x2C:  # "DSP": start
                chip.deadline = 0

    chip, rearms = Chip(), []
    window = NotifyOnDeadlineChange(Window("lsi-mmio"), lambda: rearms.append(1), chip)
    window.write(0x34, 4, 0x12345678)  # "SCRATCHA"
    assert rearms == []
    window.write(0x2C, 4, 0x1000)
    assert rearms == [1]
