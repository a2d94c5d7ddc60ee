"""The ISA NE2000 board: a DP8390 (dp8390.py), 32 KiB of buffer RAM, the station
address PROM, and the data and reset ports, in 32 I/O ports (QEMU's ``ne2k_isa``;
DESIGN.md puts it at 0x300, IRQ 9).

The I/O map, as QEMU decodes it (hw/net/ne2000.c, ne2000_read/ne2000_write):
- 0x00-0x0F: the DP8390 registers, byte accesses only;
- 0x10: the data port. Every access of 1 or 2 bytes moves one remote-DMA transfer,
  a byte or a word as DCR.WTS says (not as the access width says); 4-byte accesses move
  4 bytes;
- 0x1F: the reset port. A byte read pulses reset (ISR = RST, PROM reloaded) and reads 0;
  a write ends the pulse and does nothing;
- anything else (other widths, 0x11-0x1E) reads all ones and ignores writes. A real
  board also decodes 0x11-0x17 as data and 0x18-0x1E as reset; QEMU does not, and guests
  are compared against QEMU, so neither do we (DATA_PORT / RESET_PORT below).

The DP8390's 16-bit local bus: the PROM at 0x0000-0x001F, buffer RAM at 0x4000-0xBFFF
(32 KiB, pages 0x40-0xBF, as QEMU; an original NE2000 has 16 KiB at 0x4000-0x7FFF);
nothing else answers (reads 0xFF, writes vanish). The PROM is writable through remote
DMA and reloaded by the next reset, as in QEMU.
"""

from __future__ import annotations

import struct
from typing import Any

from devices.base import IrqLine
from devices.net.dp8390 import Dp8390
from devices.net.dp8390_registers import PAGE_SIZE, Dcr
from devices.net.link import Link

IO_SIZE = 32
REGISTERS_END = 0x10
DATA_PORT = 0x10
RESET_PORT = 0x1F

PROM_SIZE = 32
PROM_SIGNATURE = 0x57  # 'W': bytes 14-15 before doubling mark an NE2000 in word mode
RAM_START = 0x4000
RAM_SIZE = 32 * 1024
RAM_END = RAM_START + RAM_SIZE
BUS_END = 0x10000


def _ones(size: int) -> int:
    return (1 << (8 * size)) - 1


class Ne2000Memory:
    """The local bus of the NE2000: PROM, hole, buffer RAM, hole."""

    def __init__(self) -> None:
        self.prom = bytearray(PROM_SIZE)
        self.ram = bytearray(RAM_SIZE)

    def region(self, addr: int) -> tuple[bytearray | None, int, int]:
        if addr < PROM_SIZE:
            return self.prom, 0, PROM_SIZE
        if addr < RAM_START:
            return None, PROM_SIZE, RAM_START
        if addr < RAM_END:
            return self.ram, RAM_START, RAM_END
        return None, RAM_END, BUS_END

    def transmit_window(self, addr: int, length: int) -> bytes | None:
        """QEMU's rule: pages past the RAM fold back by 32 KiB (NetWare 3.11 relies on
        it), and a frame that would run past the RAM is not sent."""
        if addr >= RAM_END:
            addr -= RAM_SIZE
        if addr + length > RAM_END:
            return None
        out = bytearray()
        while len(out) < length:
            backing, base, end = self.region(addr + len(out))
            size = min(length - len(out), end - (addr + len(out)))
            if backing is None:
                out += bytes(size)  # QEMU's buffer holds zeros where no memory answers
            else:
                start = addr + len(out) - base
                out += backing[start:start + size]
        return bytes(out)

    def load_prom(self, mac: bytes) -> None:
        """What QEMU's reset writes: the MAC in bytes 0-5 and 'WW' in bytes 14-15 of a
        16-byte image whose bytes 6-13 are what the PROM held at 6-13, then every byte
        of the image doubled so a word-mode read sees it in the low byte. Bytes 12-27
        therefore change over the first resets, exactly as on QEMU."""
        image = bytearray(self.prom[:16])
        image[0:6] = mac
        image[14] = image[15] = PROM_SIGNATURE
        self.prom[:] = bytes(b for byte in image for b in (byte, byte))


class Ne2000:
    """An ISA NE2000 with ``mac`` in its PROM, frames out through ``link``."""

    def __init__(self, irq: IrqLine, mac: bytes, link: Link, name: str = "ne2000") -> None:
        if len(mac) != 6:
            raise ValueError(f"{name}: a MAC address has 6 bytes, not {len(mac)}")
        self.name = name
        self.irq = irq
        self.mac = bytes(mac)
        self.link = link
        self.memory = Ne2000Memory()
        self.core = Dp8390(irq, self.memory, link.transmit, RAM_END // PAGE_SIZE)
        self.memory.load_prom(self.mac)  # QEMU resets the card once when it is created

    # --- the wire ------------------------------------------------------------------------

    def receive(self, frame: bytes) -> bool:
        """A frame arriving from the wire; True if it was stored in the receive ring."""
        return self.core.receive(frame)

    def can_receive(self) -> bool:
        """True if a maximum-size frame for this card would be stored now."""
        return self.core.can_receive()

    # --- bus interface -------------------------------------------------------------------

    def reset(self) -> None:
        """The reset pulse from a read of the reset port."""
        self.memory.load_prom(self.mac)
        self.core.reset()

    def _width(self, size: int) -> int:
        if size == 4:
            return 4
        return 2 if self.core.state.dcr & Dcr.WTS else 1

    def read(self, offset: int, size: int) -> int:
        if offset < REGISTERS_END:
            return self.core.read_register(offset) if size == 1 else _ones(size)
        if offset == DATA_PORT:
            return self.core.remote_read(self._width(size)) & _ones(size)
        if offset == RESET_PORT and size == 1:
            self.reset()
            return 0
        return _ones(size)

    def write(self, offset: int, size: int, value: int) -> None:
        if offset < REGISTERS_END:
            if size == 1:
                self.core.write_register(offset, value)
        elif offset == DATA_PORT:
            self.core.remote_write(self._width(size), value & _ones(size))
        # the reset port: a write ends the pulse, nothing to do

    # --- string I/O: one exit for a whole rep ins/outs -------------------------------------

    def read_string(self, offset: int, size: int, count: int) -> list[int]:
        """``count`` reads of ``size`` bytes at ``offset``: what as many ``read`` calls
        return, with the data port served in slices of the buffer."""
        if offset != DATA_PORT or size not in (1, 2):
            return [self.read(offset, size) for _ in range(count)]
        width = self._width(size)
        data = self.core.remote_read_string(width, count)
        if width == 1:
            return list(data)
        words = struct.unpack(f"<{count}H", data)
        return list(words) if size == 2 else [w & 0xFF for w in words]

    def write_string(self, offset: int, size: int, data: bytes) -> None:
        """``len(data) // size`` writes of ``size`` bytes each (little endian) at
        ``offset``: what as many ``write`` calls do, in slices."""
        count = len(data) // size
        if offset != DATA_PORT or size not in (1, 2):
            for i in range(count):
                self.write(offset, size, int.from_bytes(data[i * size:(i + 1) * size], "little"))
            return
        width = self._width(size)
        data = bytes(data[:count * size])
        if width == size:
            stream = data
        elif width == 1:  # word accesses in byte mode: the low byte of each
            stream = data[0::2]
        else:  # byte accesses in word mode: each byte becomes a word with a zero high byte
            stream = bytes(b for byte in data for b in (byte, 0))
        self.core.remote_write_string(width, stream)

    # --- state ---------------------------------------------------------------------------

    def save_state(self) -> dict[str, Any]:
        return {
            "core": self.core.save_state(),
            "prom": bytes(self.memory.prom),
            "ram": bytes(self.memory.ram),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore registers, buffer RAM and PROM; the IRQ line is set to match."""
        prom, ram = bytes(state["prom"]), bytes(state["ram"])
        if len(prom) != PROM_SIZE or len(ram) != RAM_SIZE:
            raise ValueError(f"{self.name}: saved PROM/RAM sizes {len(prom)}/{len(ram)}, "
                             f"expected {PROM_SIZE}/{RAM_SIZE}")
        self.memory.prom[:] = prom
        self.memory.ram[:] = ram
        self.core.load_state(state["core"])
