"""Port-I/O and MMIO buses: address ranges mapped to devices, with exit statistics.

A device is registered over ``[base, base+length)`` and is called with offsets relative
to ``base``. Overlapping registrations are refused. The port bus answers a read nobody
claims with all ones, as a floating ISA bus does, and ignores such a write.
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass
from typing import Callable

from devices.base import Device


class BusError(ValueError):
    """A registration that overlaps another, or is out of the bus's range."""


@dataclass(frozen=True)
class Mapping:
    base: int
    length: int
    device: Device

    @property
    def end(self) -> int:
        return self.base + self.length


class ExitStats:
    """Exit counts per reason and per device, as ``vmm run --stats`` prints them."""

    def __init__(self) -> None:
        self.by_reason: Counter[str] = Counter()
        self.by_device: Counter[str] = Counter()

    def count(self, reason: str, device: str | None = None, n: int = 1) -> None:
        self.by_reason[reason] += n
        if device is not None:
            self.by_device[device] += n

    def merge_device_counts(self, reason: str, counts: dict[str, int]) -> None:
        for device, n in counts.items():
            if n:
                self.count(reason, device, n)


class NotifyOnWrite:
    """Bus adapter for a device with deadlines (a timer, a SCRIPTS engine): a write may
    move its deadline or start work, so ``notify`` tells the run loop to re-arm."""

    def __init__(self, device: Device, notify: Callable[[], None]) -> None:
        self.device = device
        self.name = device.name
        self._notify = notify

    def read(self, offset: int, size: int) -> int:
        return self.device.read(offset, size)

    def write(self, offset: int, size: int, value: int) -> None:
        self.device.write(offset, size, value)
        self._notify()


class NotifyOnDeadlineChange(NotifyOnWrite):
    """Only a write that moves the next deadline of ``timed`` (the device itself, or the
    chip behind a register window) needs a re-arm. Linux programs PIT channel 2 (no
    interrupt) while it calibrates the TSC, and a slice stop there would look like a
    stall in its measuring loop; the LSI's SCRATCH, MBOX and SCRIPTS RAM writes start
    nothing, and only a write that starts SCRIPTS or the GEN timer does."""

    def __init__(self, device: Device, notify: Callable[[], None], timed=None) -> None:
        super().__init__(device, notify)
        self._timed = timed if timed is not None else device

    def write(self, offset: int, size: int, value: int) -> None:
        before = self._timed.next_deadline_ns()
        self.device.write(offset, size, value)
        after = self._timed.next_deadline_ns()
        if after is not None and after != before:
            self._notify()


class Bus:
    """A range map from addresses to devices, shared by the port and MMIO buses."""

    def __init__(self, name: str, limit: int) -> None:
        self.name = name
        self.limit = limit
        self._bases: list[int] = []
        self._mappings: list[Mapping] = []

    def register(self, base: int, length: int, device: Device) -> Mapping:
        if length <= 0 or base < 0 or base + length > self.limit:
            raise BusError(f"{self.name}: range {base:#x}+{length:#x} is out of bounds")
        i = bisect.bisect_left(self._bases, base)
        for neighbour in self._mappings[max(0, i - 1) : i + 1]:
            if base < neighbour.end and neighbour.base < base + length:
                raise BusError(
                    f"{self.name}: {device.name} at {base:#x}+{length:#x} overlaps "
                    f"{neighbour.device.name} at {neighbour.base:#x}+{neighbour.length:#x}"
                )
        mapping = Mapping(base, length, device)
        self._bases.insert(i, base)
        self._mappings.insert(i, mapping)
        self._changed()
        return mapping

    def unregister(self, mapping: Mapping) -> None:
        i = self._mappings.index(mapping)
        del self._mappings[i]
        del self._bases[i]
        self._changed()

    def find(self, address: int) -> Mapping | None:
        i = bisect.bisect_right(self._bases, address) - 1
        if i >= 0:
            mapping = self._mappings[i]
            if address < mapping.end:
                return mapping
        return None

    @property
    def mappings(self) -> list[Mapping]:
        return list(self._mappings)

    def _changed(self) -> None:
        """Hook for subclasses that keep a faster index."""


class PortBus(Bus):
    """The 64 KiB x86 I/O space. Lookup is one dict access per port: it is the hot path."""

    def __init__(self) -> None:
        super().__init__("port bus", 0x10000)
        self._by_port: dict[int, tuple[Device, int]] = {}
        self.exits: Counter[str] = Counter()

    def _changed(self) -> None:
        self._by_port = {
            port: (m.device, m.base)
            for m in self._mappings
            for port in range(m.base, m.end)
        }

    def read(self, port: int, size: int) -> int:
        entry = self._by_port.get(port)
        if entry is None:
            self.exits["unclaimed"] += 1
            return (1 << (8 * size)) - 1
        device, base = entry
        self.exits[device.name] += 1
        return device.read(port - base, size)

    def write(self, port: int, size: int, value: int) -> None:
        entry = self._by_port.get(port)
        if entry is None:
            self.exits["unclaimed"] += 1
            return
        device, base = entry
        self.exits[device.name] += 1
        device.write(port - base, size, value)

    def device_at(self, port: int) -> tuple[Device, int] | None:
        return self._by_port.get(port)


class MmioBus(Bus):
    """Guest-physical MMIO ranges (PCI BARs). The machine maps each into Unicorn."""

    def __init__(self) -> None:
        super().__init__("MMIO bus", 1 << 32)
        self.exits: Counter[str] = Counter()
        self.count = 0

    def read(self, address: int, size: int) -> int:
        self.count += 1
        mapping = self.find(address)
        if mapping is None:
            return (1 << (8 * size)) - 1
        self.exits[mapping.device.name] += 1
        return mapping.device.read(address - mapping.base, size)

    def write(self, address: int, size: int, value: int) -> None:
        self.count += 1
        mapping = self.find(address)
        if mapping is None:
            return
        self.exits[mapping.device.name] += 1
        mapping.device.write(address - mapping.base, size, value)
