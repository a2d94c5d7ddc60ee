"""The PCI NE2000: a Realtek RTL8029AS (10ec:8029, QEMU's ``ne2k_pci``), the same board
as ne2000.py behind a PCI function. Linux drives it with ``ne2k-pci``.

What differs from the ISA card is only the bus side: the 32 ports sit in I/O BAR 0 (256
ports wide, as QEMU sizes it; the ports past the board's 32 read all ones), and the
board's interrupt goes out on INTA#, level-triggered, through the function's COMMAND
(Interrupt Disable) and STATUS (Interrupt Status) bits. The RTL8029's own extra
registers (page 3: configuration, full-duplex) are not modelled; neither are they in
QEMU, whose behaviour the guests are compared against.
"""

from __future__ import annotations

from typing import Any

from devices.base import IrqLine
from devices.net.link import Link
from devices.net.ne2000 import IO_SIZE, Ne2000
from devices.pci.function import Bar, BarKind, PciFunction

VENDOR_REALTEK = 0x10EC
DEVICE_RTL8029 = 0x8029
CLASS_ETHERNET = 0x020000
IO_BAR_SIZE = 0x100


class BoardWindow:
    """BAR 0: the board's 32 ports, then ports that nothing decodes."""

    def __init__(self, board: Ne2000) -> None:
        self.board = board
        self.name = board.name

    def read(self, offset: int, size: int) -> int:
        if offset + size > IO_SIZE:
            return (1 << (8 * size)) - 1
        return self.board.read(offset, size)

    def write(self, offset: int, size: int, value: int) -> None:
        if offset + size <= IO_SIZE:
            self.board.write(offset, size, value)

    def read_string(self, offset: int, size: int, count: int) -> list[int]:
        if offset + size > IO_SIZE:
            return [(1 << (8 * size)) - 1] * count
        return self.board.read_string(offset, size, count)

    def write_string(self, offset: int, size: int, data: bytes) -> None:
        if offset + size <= IO_SIZE:
            self.board.write_string(offset, size, data)


class Rtl8029(PciFunction):
    name = "rtl8029"

    def __init__(self, mac: bytes, link: Link) -> None:
        super().__init__(
            vendor_id=VENDOR_REALTEK,
            device_id=DEVICE_RTL8029,
            class_code=CLASS_ETHERNET,
            interrupt_pin=1,
        )
        self.board = Ne2000(IrqLine(self.set_interrupt_status), mac, link, name="rtl8029")
        self.add_bar(Bar(0, BarKind.IO, IO_BAR_SIZE, BoardWindow(self.board)))

    # -- the wire (what the machine hands frames to) -------------------------------------
    def receive(self, frame: bytes) -> bool:
        return self.board.receive(frame)

    def can_receive(self) -> bool:
        return self.board.can_receive()

    # -- saved state -------------------------------------------------------------------------
    def save_state(self) -> dict[str, Any]:
        return {"pci": super().save_state(), "board": self.board.save_state()}

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state["pci"])
        self.board.load_state(state["board"])
