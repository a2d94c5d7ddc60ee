"""One PCI function's configuration space, as the PCI Local Bus Specification 3.0 ch. 6
defines the type-0 header, and the BARs a device declares.

A device model subclasses :class:`PciFunction`, declares its identity and BARs, and
implements its register files as ordinary bus devices (``read``/``write`` with offsets
relative to the BAR). The host bridge (devices/pci/host_bridge.py) routes configuration
cycles here; when the guest (or the firmware step of the monitor) moves a BAR or
toggles decoding in COMMAND, :attr:`PciFunction.on_bar_change` tells the machine, which
maps the BAR's device onto the port or MMIO bus. The device never knows where it sits.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field
from typing import Any, Callable

from devices.base import Device, IrqLine

# Type-0 header offsets (PCI 3.0, figure 6-1).
VENDOR_ID = 0x00
DEVICE_ID = 0x02
COMMAND = 0x04
STATUS = 0x06
REVISION_ID = 0x08
CLASS_CODE = 0x09  # 3 bytes: programming interface, subclass, base class
CACHE_LINE_SIZE = 0x0C
LATENCY_TIMER = 0x0D
HEADER_TYPE = 0x0E
BAR0 = 0x10
SUBSYSTEM_VENDOR_ID = 0x2C
SUBSYSTEM_ID = 0x2E
EXPANSION_ROM = 0x30
CAPABILITIES = 0x34
INTERRUPT_LINE = 0x3C
INTERRUPT_PIN = 0x3D
MIN_GNT = 0x3E
MAX_LAT = 0x3F


class Command(enum.IntFlag):
    IO_SPACE = 1 << 0
    MEMORY_SPACE = 1 << 1
    BUS_MASTER = 1 << 2
    PARITY_ERROR_RESPONSE = 1 << 6
    SERR = 1 << 8
    INTX_DISABLE = 1 << 10


class Status(enum.IntFlag):
    INTERRUPT = 1 << 3
    CAPABILITIES_LIST = 1 << 4
    MASTER_DATA_PARITY_ERROR = 1 << 8
    SIGNALED_TARGET_ABORT = 1 << 11
    RECEIVED_TARGET_ABORT = 1 << 12
    RECEIVED_MASTER_ABORT = 1 << 13
    SIGNALED_SYSTEM_ERROR = 1 << 14
    DETECTED_PARITY_ERROR = 1 << 15


STATUS_WRITE_ONE_TO_CLEAR = 0xF900


class BarKind(enum.Enum):
    IO = "io"
    MEMORY = "memory"


@dataclass(frozen=True)
class Bar:
    """A base address register the device decodes: kind, size (a power of two), and the
    register file behind it."""

    index: int
    kind: BarKind
    size: int
    device: Device
    prefetchable: bool = False

    def __post_init__(self) -> None:
        if self.size & (self.size - 1) or self.size < (4 if self.kind is BarKind.IO else 16):
            raise ValueError(f"BAR{self.index} size {self.size:#x} is not a valid power of two")


@dataclass
class PciState:
    config: bytes
    bar_addresses: list[int] = field(default_factory=lambda: [0] * 6)


class PciFunction:
    """Configuration space of one function with BAR sizing and relocation."""

    name = "pci-function"

    def __init__(
        self,
        vendor_id: int,
        device_id: int,
        class_code: int,  # base class << 16 | subclass << 8 | programming interface
        revision: int = 0,
        interrupt_pin: int = 0,  # 0 none, 1 INTA# ... 4 INTD#
        subsystem_vendor_id: int = 0,
        subsystem_id: int = 0,
    ) -> None:
        self.config = bytearray(256)
        struct.pack_into("<HH", self.config, VENDOR_ID, vendor_id, device_id)
        self.config[REVISION_ID] = revision
        self.config[CLASS_CODE : CLASS_CODE + 3] = class_code.to_bytes(3, "little")
        struct.pack_into("<HH", self.config, SUBSYSTEM_VENDOR_ID, subsystem_vendor_id, subsystem_id)
        self.config[INTERRUPT_PIN] = interrupt_pin
        self.bars: dict[int, Bar] = {}
        self.bar_addresses = [0] * 6
        self.intx = IrqLine()  # the INTx# wire; the machine connects it to a PIC input
        self.on_bar_change: Callable[[PciFunction], None] | None = None
        # Bumped whenever what the function decodes may have changed (BARs, COMMAND),
        # so devices can cache their own address windows.
        self.decoding_generation = 0

    # -- declared by subclasses ---------------------------------------------------------
    def add_bar(self, bar: Bar) -> None:
        self.bars[bar.index] = bar
        self._store_bar_register(bar.index, 0)

    # -- decoding state, for the machine ----------------------------------------------------
    @property
    def command(self) -> int:
        return struct.unpack_from("<H", self.config, COMMAND)[0]

    def decoded_bars(self) -> list[tuple[Bar, int]]:
        """(bar, address) for every BAR the device currently decodes."""
        command = self.command
        out = []
        for index, bar in self.bars.items():
            enabled = command & (Command.IO_SPACE if bar.kind is BarKind.IO else Command.MEMORY_SPACE)
            address = self.bar_addresses[index]
            if enabled and address:
                out.append((bar, address))
        return out

    @property
    def bus_master(self) -> bool:
        return bool(self.command & Command.BUS_MASTER)

    def set_interrupt_status(self, asserted: bool) -> None:
        """Drive INTx# (unless COMMAND.INTX_DISABLE) and mirror it in STATUS."""
        status = struct.unpack_from("<H", self.config, STATUS)[0]
        status = status | Status.INTERRUPT if asserted else status & ~Status.INTERRUPT
        struct.pack_into("<H", self.config, STATUS, status)
        self.intx.set_level(asserted and not self.command & Command.INTX_DISABLE)

    # -- configuration cycles -------------------------------------------------------------
    def config_read(self, offset: int, size: int) -> int:
        return int.from_bytes(self.config[offset : offset + size], "little")

    def config_write(self, offset: int, size: int, value: int) -> None:
        decoding_changed = False
        touched_bars: set[int] = set()
        for i in range(size):
            byte_offset = offset + i
            byte = (value >> (8 * i)) & 0xFF
            if BAR0 <= byte_offset < BAR0 + 24:
                self.config[byte_offset] = byte
                touched_bars.add((byte_offset - BAR0) // 4)
            elif byte_offset in (COMMAND, COMMAND + 1):
                self.config[byte_offset] = byte
                decoding_changed = True
            elif byte_offset in (STATUS, STATUS + 1):
                mask = (STATUS_WRITE_ONE_TO_CLEAR >> (8 * (byte_offset - STATUS))) & 0xFF
                self.config[byte_offset] &= ~(byte & mask) & 0xFF
            elif byte_offset in (CACHE_LINE_SIZE, LATENCY_TIMER, INTERRUPT_LINE):
                self.config[byte_offset] = byte
            elif byte_offset >= 0x40:
                self.config_write_device(byte_offset, byte)
        for index in sorted(touched_bars):
            # Sizing writes all ones and reads back the size mask; an address keeps
            # only the bits above the BAR's size.
            self._write_bar(index, self.config_read(BAR0 + 4 * index, 4))
        if decoding_changed:
            status = struct.unpack_from("<H", self.config, STATUS)[0]
            self.intx.set_level(bool(status & Status.INTERRUPT) and not self.command & Command.INTX_DISABLE)
        if decoding_changed or touched_bars:
            self.decoding_generation += 1
            if self.on_bar_change is not None:
                self.on_bar_change(self)

    def config_write_device(self, offset: int, value: int) -> None:
        """Device-specific registers above 0x40: read-only unless a subclass says so."""

    def _write_bar(self, index: int, value: int) -> None:
        bar = self.bars.get(index)
        if bar is None:
            struct.pack_into("<I", self.config, BAR0 + 4 * index, 0)  # unimplemented: reads 0
            return
        address = value & ~(bar.size - 1) & 0xFFFFFFFF
        self.bar_addresses[index] = address
        self._store_bar_register(index, address)
        self.decoding_generation += 1

    def _store_bar_register(self, index: int, address: int) -> None:
        bar = self.bars[index]
        if bar.kind is BarKind.IO:
            register = (address & ~0x3) | 0x1
        else:
            register = (address & ~0xF) | (0x8 if bar.prefetchable else 0)
        struct.pack_into("<I", self.config, BAR0 + 4 * index, register & 0xFFFFFFFF)

    def place_bar(self, index: int, address: int) -> None:
        """Firmware's job at power-on: assign a BAR an address (the machine calls this)."""
        self._write_bar(index, address)

    # -- saved state ---------------------------------------------------------------------
    def save_state(self) -> dict[str, Any]:
        return {"config": bytes(self.config), "bar_addresses": list(self.bar_addresses)}

    def load_state(self, state: dict[str, Any]) -> None:
        self.config[:] = state["config"]
        self.bar_addresses = list(state["bar_addresses"])
        self.decoding_generation += 1
        if self.on_bar_change is not None:
            self.on_bar_change(self)
