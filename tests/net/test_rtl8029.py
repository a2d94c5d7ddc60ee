"""The PCI NE2000 (RTL8029, QEMU's ne2k_pci): the ISA board's registers behind I/O BAR 0,
its interrupt on INTA# through COMMAND and STATUS."""

from __future__ import annotations

import struct

from devices.base import IrqLine
from devices.net.link import Link
from devices.net.rtl8029 import IO_BAR_SIZE, Rtl8029
from devices.pci.function import COMMAND, STATUS, Command, Status

MAC = bytes.fromhex("525400123456")
CR, ISR, RBCR0, RBCR1, IMR = 0x00, 0x07, 0x0A, 0x0B, 0x0F
RDC = 0x40  # ISR: remote DMA complete


def card() -> tuple[Rtl8029, list[bool]]:
    levels: list[bool] = []
    nic = Rtl8029(MAC, Link(lambda frame: None))
    nic.intx = IrqLine(levels.append)
    return nic, levels


def window(nic: Rtl8029):
    return nic.bars[0].device


def test_identifies_as_a_realtek_8029_ethernet_controller_with_inta():
    nic, _ = card()
    vendor, device = struct.unpack_from("<HH", nic.config, 0)
    assert (vendor, device) == (0x10EC, 0x8029)
    assert nic.config[0x09:0x0C] == bytes([0x00, 0x00, 0x02])  # class 02/00: Ethernet
    assert nic.config[0x3D] == 1  # INTA#
    assert nic.bars[0].size == IO_BAR_SIZE == 0x100


def test_bar_0_holds_the_board_registers_and_ones_past_them():
    nic, _ = card()
    io = window(nic)
    io.write(CR, 1, 0x21)  # page 0, stop, no remote DMA
    assert io.read(CR, 1) == 0x21
    assert io.read(0x1F, 1) == 0  # the reset port
    assert io.read(0x20, 1) == 0xFF and io.read(0xFE, 2) == 0xFFFF


def test_the_board_interrupt_drives_inta_and_the_status_bit_unless_disabled():
    nic, levels = card()
    io = window(nic)
    io.write(CR, 1, 0x21)  # page 0, stopped, remote DMA aborted
    io.write(ISR, 1, 0xFF)
    io.write(IMR, 1, RDC)
    io.write(RBCR0, 1, 0)
    io.write(RBCR1, 1, 0)
    io.write(CR, 1, 0x0A)  # start a zero-length remote read: it completes at once
    assert levels[-1] is True
    assert status(nic) & Status.INTERRUPT
    nic.config_write(COMMAND, 2, nic.command | Command.INTX_DISABLE)
    assert levels[-1] is False  # masked on the wire, still pending in STATUS
    assert status(nic) & Status.INTERRUPT
    nic.config_write(COMMAND, 2, nic.command & ~Command.INTX_DISABLE)
    assert levels[-1] is True  # still pending: the wire follows again
    io.write(ISR, 1, RDC)
    assert levels[-1] is False
    assert not status(nic) & Status.INTERRUPT


def status(nic: Rtl8029) -> int:
    return struct.unpack_from("<H", nic.config, STATUS)[0]
