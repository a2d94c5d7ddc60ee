"""The PCI host bridge at 00:00.0 and configuration mechanism #1 (ports 0xCF8-0xCFF).

CONFIG_ADDRESS (0xCF8, dword) selects enable bit 31, bus 23:16, device 15:11, function
10:8 and register 7:2; CONFIG_DATA (0xCFC-0xCFF) then reads or writes that function's
configuration space at any width. Only bus 0 exists; absent functions read all ones.
The bridge itself is an i440FX-like host bridge (class 0x0600), which Linux's conf1
sanity check looks for.
"""

from __future__ import annotations

from typing import Any

from devices.pci.function import PciFunction

CONFIG_ENABLE = 1 << 31
HOST_BRIDGE_VENDOR = 0x8086
HOST_BRIDGE_DEVICE = 0x1237  # the 440FX, what QEMU's pc machine presents
CLASS_HOST_BRIDGE = 0x060000


class HostBridgeFunction(PciFunction):
    name = "pci-host-bridge"

    def __init__(self) -> None:
        super().__init__(HOST_BRIDGE_VENDOR, HOST_BRIDGE_DEVICE, CLASS_HOST_BRIDGE, revision=2)


class PciHostBridge:
    """Configuration mechanism #1 over bus 0: ports 0xCF8-0xCFF (offsets 0-7)."""

    name = "pci-conf1"

    def __init__(self) -> None:
        self.address = 0
        self.functions: dict[tuple[int, int], PciFunction] = {}
        self.attach(0, 0, HostBridgeFunction())

    def attach(self, device: int, function: int, pci_function: PciFunction) -> None:
        if not 0 <= device < 32 or not 0 <= function < 8:
            raise ValueError(f"no PCI slot {device:02x}.{function}")
        if (device, function) in self.functions:
            raise ValueError(f"PCI slot 00:{device:02x}.{function} is taken")
        self.functions[(device, function)] = pci_function

    def _selected(self) -> tuple[PciFunction | None, int]:
        if not self.address & CONFIG_ENABLE or (self.address >> 16) & 0xFF != 0:
            return None, 0
        device = (self.address >> 11) & 0x1F
        function = (self.address >> 8) & 0x7
        return self.functions.get((device, function)), self.address & 0xFC

    def read(self, offset: int, size: int) -> int:
        if offset < 4:
            if offset == 0 and size == 4:
                return self.address
            return (1 << (8 * size)) - 1
        target, register = self._selected()
        if target is None:
            return (1 << (8 * size)) - 1
        position = register + (offset - 4)
        return target.config_read(position, min(size, 256 - position))

    def write(self, offset: int, size: int, value: int) -> None:
        if offset < 4:
            if offset == 0 and size == 4:
                self.address = value & 0x80FFFFFC
            return  # byte writes to 0xCF8-0xCFB (e.g. PIIX reset control) are ignored
        target, register = self._selected()
        if target is not None:
            target.config_write(register + (offset - 4), size, value)

    def save_state(self) -> dict[str, Any]:
        return {"address": self.address}

    def load_state(self, state: dict[str, Any]) -> None:
        self.address = int(state["address"])
