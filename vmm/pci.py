"""PCI on the machine: slots, firmware's power-on work, and BARs on the buses.

Devices declare BARs (devices/pci/function.py); this module puts them where the
configuration says: I/O BARs on the port bus, memory BARs on the MMIO bus and into
Unicorn as MMIO pages. At power-on it does what firmware would ("The machine and the
`vmm run` contract", ../shared/DESIGN.md): assigns BARs (I/O from 0xC000, memory below
0xFEC00000), enables decoding and bus mastering, writes the Interrupt Line, and makes
the line level-triggered in the ELCR. The guest may move BARs later; Unicorn's memory
map is changed between slices only, never inside a hook.
"""

from __future__ import annotations

from typing import Callable

from unicorn import Uc
from devices.pci.function import INTERRUPT_LINE, Bar, BarKind, Command, PciFunction
from devices.pci.host_bridge import PciHostBridge
from devices.pic import PicPair
from devices.base import TimedDevice
from vmm.bus import Mapping, MmioBus, NotifyOnDeadlineChange, PortBus
from vmm.cpu import Cpu
from vmm.open_bus import OpenBus

PAGE = 0x1000
IO_WINDOW = (0xC000, 0x10000)
MEMORY_WINDOW = (0xFE000000, 0xFEC00000)
# INTA# of each slot to a PIC input, as a fixed $PIR-less routing would wire it.
SLOT_IRQ = {3: 11, 4: 10, 5: 11, 6: 10, 7: 11, 8: 10}


class PciPlatform:
    def __init__(
        self,
        cpu: Cpu,
        ports: PortBus,
        mmio: MmioBus,
        open_bus: OpenBus,
        pic: PicPair,
        request_stop: Callable[[], None],
        request_rearm: Callable[[], None],
    ) -> None:
        self.cpu = cpu
        self.uc = cpu.uc
        self.ports = ports
        self.mmio = mmio
        self.open_bus = open_bus
        self.pic = pic
        self._request_stop = request_stop
        self._request_rearm = request_rearm
        self.host = PciHostBridge()
        ports.register(0xCF8, 8, self.host)
        self._port_mappings: dict[int, list[Mapping]] = {}
        self._mmio_mappings: dict[int, list[Mapping]] = {}
        self._mapped_pages: set[int] = set()
        self._remap_pending = False
        self._in_slice = False
        self._next_io = IO_WINDOW[0]
        self._next_memory = MEMORY_WINDOW[0]

    # -- plugging ------------------------------------------------------------------------
    def attach(self, slot: int, function: PciFunction) -> None:
        """Put a function at 00:slot.0, assign its resources as firmware would."""
        self.host.attach(slot, 0, function)
        function.on_bar_change = self._bar_changed
        for bar in sorted(function.bars.values(), key=lambda b: -b.size):
            function.place_bar(bar.index, self._allocate(bar))
        irq = SLOT_IRQ.get(slot)
        if irq is not None and function.config[0x3D]:
            function.config[INTERRUPT_LINE] = irq
            function.intx.connect(self.pic.irq_line(irq).set_level)
            self._make_level_triggered(irq)
        command = Command.IO_SPACE | Command.MEMORY_SPACE | Command.BUS_MASTER
        function.config_write(0x04, 2, function.command | command)

    def _allocate(self, bar: Bar) -> int:
        if bar.kind is BarKind.IO:
            address = (self._next_io + bar.size - 1) & ~(bar.size - 1)
            self._next_io = address + bar.size
            if self._next_io > IO_WINDOW[1]:
                raise RuntimeError("PCI I/O window exhausted")
            return address
        size = max(bar.size, PAGE)  # a page of its own: Unicorn maps whole pages
        address = (self._next_memory + size - 1) & ~(size - 1)
        self._next_memory = address + size
        if self._next_memory > MEMORY_WINDOW[1]:
            raise RuntimeError("PCI memory window exhausted")
        return address

    def _make_level_triggered(self, irq: int) -> None:
        port, bit = (0, irq) if irq < 8 else (1, irq - 8)
        elcr = self.pic.elcr
        elcr.write(port, 1, elcr.read(port, 1) | (1 << bit))

    # -- BAR changes -----------------------------------------------------------------------
    def _bar_changed(self, function: PciFunction) -> None:
        key = id(function)
        for mapping in self._port_mappings.pop(key, []):
            self.ports.unregister(mapping)
        for mapping in self._mmio_mappings.pop(key, []):
            self.mmio.unregister(mapping)
        ports, memory = [], []
        timed = isinstance(function, TimedDevice)
        for bar, address in function.decoded_bars():
            bus, bucket = (self.ports, ports) if bar.kind is BarKind.IO else (self.mmio, memory)
            device = NotifyOnDeadlineChange(bar.device, self._request_rearm, function) if timed else bar.device
            try:
                bucket.append(bus.register(address, bar.size, device))
            except ValueError:
                pass  # overlapping another device: the PCI bus would not decode it either
        self._port_mappings[key] = ports
        self._mmio_mappings[key] = memory
        self._remap_pending = True
        if self._in_slice:
            self._request_stop()  # Unicorn's map changes between slices
        else:
            self.apply_pending()

    def begin_slice(self) -> None:
        self._in_slice = True

    def end_slice(self) -> None:
        self._in_slice = False
        self.apply_pending()

    def apply_pending(self) -> None:
        """Make Unicorn's MMIO pages match the MMIO bus."""
        if not self._remap_pending:
            return
        self._remap_pending = False
        wanted: set[int] = set()
        for mapping in self.mmio.mappings:
            first = mapping.base & ~(PAGE - 1)
            wanted.update(range(first, mapping.end, PAGE))
        for page in sorted(self._mapped_pages - wanted):
            self.cpu.unmap(page, PAGE)
            self._mapped_pages.discard(page)
        for page in sorted(wanted - self._mapped_pages):
            self.open_bus.release(page, PAGE)
            self.uc.mmio_map(page, PAGE, self._mmio_read, page, self._mmio_write, page)
            self._mapped_pages.add(page)

    def _mmio_read(self, uc: Uc, offset: int, size: int, page: int) -> int:
        return self.mmio.read(page + offset, size)

    def _mmio_write(self, uc: Uc, offset: int, size: int, value: int, page: int) -> None:
        self.mmio.write(page + offset, size, value)

    # -- saved state -------------------------------------------------------------------------
    def save_state(self) -> dict:
        return {"conf1": self.host.save_state()}

    def load_state(self, state: dict) -> None:
        self.host.load_state(state["conf1"])
