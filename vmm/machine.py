"""The PC: which devices exist, where they are plugged, and how the VM is started.

The layout is "The machine and the `vmm run` contract" in ../shared/DESIGN.md: RAM from
0, no firmware, 8259A pair (+ ELCR), 8254 with port 0x61, CMOS/RTC, COM1, QEMU's debug
exit at 0xF4 and the POST port 0x80. Everything else the guest touches is an unclaimed
port that reads all ones.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from devices.debug_exit import DebugExit, PostCodePort
from devices.net.link import Link
from devices.pic import PicPair
from devices.pit import Pit8254, SpeakerPort
from devices.rtc import CmosRtc
from devices.uart import Uart16550
from vmm.bus import ExitStats, MmioBus, NotifyOnDeadlineChange, NotifyOnWrite, PortBus
from vmm.clock import VirtualClock
from vmm.cpu import CR0_PE, Cpu
from vmm.disks import DiskError, DiskSet
from vmm.loaders import BootState, load_kernel
from vmm.memory import GuestMemory
from vmm.native import FastState
from vmm.open_bus import OpenBus
from vmm.paging import Mmu
from vmm.pci import PciPlatform
from vmm.runloop import RunLoop, RunResult

COM1 = 0x3F8
LSI_SLOT = 3  # 00:03.0, where QEMU puts it with -net none
NIC_SLOT = 4  # 00:04.0 for the PCI NE2000, after the LSI as on QEMU
NIC_MODELS = ("ne2000", "rtl8029")
LSI_OWN_ID = 7
SERIAL_CHARACTER_NS = 87_000  # one 10-bit character at 115,200 baud
BOOT_GDT = 0x8000
BOOT_STACK = 0x7FF0
# Flat 4 GiB 32-bit ring-0 code and data, at the selectors the boot protocol names.
FLAT_CODE_DESCRIPTOR = 0x00CF9A000000FFFF
FLAT_DATA_DESCRIPTOR = 0x00CF92000000FFFF
# Deterministic mode's wall clock for the RTC: 2000-01-01 00:00:00 UTC.
DETERMINISTIC_EPOCH = 946684800


@dataclass
class NicConfig:
    """``--nic BACKEND[,model=ne2000|rtl8029,io=0x300,irq=9,mac=52:54:00:12:34:56]``."""

    backend: str
    io: int = 0x300  # the ISA card's; the PCI card gets its port and IRQ from the PCI bus
    irq: int = 9
    mac: bytes | None = None  # None: QEMU's first-NIC MAC, made distinct on a switch
    pcap: str | None = None
    model: str = "ne2000"  # the ISA NE2000, or "rtl8029": the PCI NE2000 at 00:04.0

    def __post_init__(self) -> None:
        if self.model not in NIC_MODELS:
            raise ValueError(f"model must be one of {', '.join(NIC_MODELS)}, not {self.model}")


@dataclass
class MachineConfig:
    memory_mib: int = 128
    deterministic: bool = False
    serial: str = "stdio"  # "stdio" or a file path
    cmdline: str = ""
    initrds: list[Path] = field(default_factory=list)
    nic: NicConfig | None = None
    disks: list[str] = field(default_factory=list)  # raw image paths or pool:NAME
    pool: str | None = None  # the pool directory for pool: disks
    redo: bool = False  # writes land in a fresh overlay beside each disk


class Machine:
    def __init__(self, config: MachineConfig, serial_out: BinaryIO | None = None) -> None:
        self.config = config
        self.exit_code: int | None = None
        self.stop_pending = False  # the monitor stopped the guest to change the machine
        self.in_slice = False  # the guest is running (device callbacks come from hooks)
        self._has_run = False
        self.stats = ExitStats()
        self.cpu = Cpu()
        self.memory = GuestMemory(self.cpu.uc, config.memory_mib * 1024 * 1024)
        self.mmu = Mmu(self.memory, self._control_registers)
        self.ports = PortBus()
        self.mmio = MmioBus()
        self.open_bus = OpenBus(self.cpu.uc, self.cpu.unmap, self.memory.size)
        self.fast = FastState()
        self.clock = VirtualClock(self.fast, config.deterministic)
        self._serial_out = serial_out or self._open_serial(config.serial)
        self._input: queue.Queue[bytes] = queue.Queue()
        self._input_backlog = b""  # host input the UART has no room for yet
        self._input_open = False
        self._frames: queue.Queue[bytes] = queue.Queue()
        self._external = threading.Event()  # set when a frame or host input arrives
        self.nic = None
        self.nic_backend = None
        self.lsi = None
        self.lsi_targets: dict = {}
        self.disk_set: DiskSet | None = None
        self._build_pc()
        try:
            if config.disks:
                self._attach_scsi(config)
            if config.nic is not None:
                self._attach_nic(config.nic)
        except BaseException:
            self.close()
            raise

    # -- assembly ----------------------------------------------------------------------
    def _build_pc(self) -> None:
        self.pic = PicPair()
        self.pit = Pit8254(self.clock, self.pic.irq_line(0))
        self.speaker = SpeakerPort(self.pit)
        self.uart = Uart16550(self.pic.irq_line(4), self._serial_write)
        epoch = DETERMINISTIC_EPOCH if self.config.deterministic else int(time.time())
        self.rtc = CmosRtc(self.clock, self.pic.irq_line(8), epoch)
        self.rtc.set_memory_size(self.memory.size)
        self.pic.on_intr_change = self._interrupt_line_changed
        self.debug_exit = DebugExit(self._guest_exit)
        self.post = PostCodePort()
        for base, length, device in (
            (0x20, 2, self.pic.master),
            (0xA0, 2, self.pic.slave),
            (0x4D0, 2, self.pic.elcr),
            (0x40, 4, NotifyOnDeadlineChange(self.pit, self.request_rearm)),
            (0x61, 1, self.speaker),
            (0x70, 2, NotifyOnWrite(self.rtc, self.request_rearm)),
            (0x80, 1, self.post),
            (0xF4, 4, self.debug_exit),
            (COM1, 8, self.uart),
        ):
            self.ports.register(base, length, device)
        self.timed_devices = [self.pit, self.rtc]
        self.pci = PciPlatform(
            self.cpu, self.ports, self.mmio, self.open_bus, self.pic,
            self.request_stop, self.request_rearm,
        )

    def _attach_scsi(self, config: MachineConfig) -> None:
        """The LSI 53C895A at 00:03.0 with one SCSI disk per --disk at target IDs 0, 1,
        ... (7 is the controller's own), LUN 0."""
        from devices.scsi.disk import ScsiDisk
        from devices.scsi.lsi53c895a import Lsi53c895a

        target_ids = [i for i in range(16) if i != LSI_OWN_ID]
        if len(config.disks) > len(target_ids):
            raise DiskError(f"at most {len(target_ids)} disks fit on the SCSI bus")
        self.disk_set = DiskSet(config.pool)
        targets = {}
        for target_id, spec in zip(target_ids, config.disks):
            opened = self.disk_set.open(spec, redo=config.redo)
            targets[target_id] = ScsiDisk(
                opened.disk, serial=f"VMM-{target_id:02d}-{_disk_tag(spec)}",
                wwn=0x5000C50000000000 | target_id,
            )
        self.lsi_targets = targets
        self.lsi = Lsi53c895a(self.memory, targets, clock=self.clock)
        self.pci.attach(LSI_SLOT, self.lsi)
        self.timed_devices.append(self.lsi)

    def _attach_nic(self, config: NicConfig) -> None:
        from devices.net.ne2000 import Ne2000
        from devices.net.rtl8029 import Rtl8029
        from vmm.netbackend import default_mac, open_backend

        backend = open_backend(config.backend, config.pcap)
        mac = config.mac or default_mac(config.backend)
        if config.model == "rtl8029":
            self.nic = Rtl8029(mac, Link(backend.send))
            self.pci.attach(NIC_SLOT, self.nic)
        else:
            self.nic = Ne2000(self.pic.irq_line(config.irq), mac, Link(backend.send))
            self.ports.register(config.io, 32, self.nic)
        self.nic_backend = backend
        backend.start(self._frame_arrived)

    def _frame_arrived(self, frame: bytes) -> None:
        """From the backend's thread: queue, and stop the guest at the next block."""
        self._frames.put(frame)
        self.fast.request_stop()
        self._external.set()

    def close(self) -> None:
        """Release host resources: flush and close the disks, leave the network."""
        if self.nic_backend is not None:
            self.nic_backend.close()
            self.nic_backend = None
        if self.disk_set is not None:
            self.disk_set.close()
            self.disk_set = None

    def stateful_parts(self) -> dict:
        """Every part whose state a VM image keeps, by a name stable across versions."""
        parts = {
            "pic": self.pic,
            "pit": self.pit,
            "port61": self.speaker,
            "uart": self.uart,
            "rtc": self.rtc,
            "port80": self.post,
            "pci-conf1": self.pci.host,
            "pci-00:00.0": self.pci.host.functions[(0, 0)],
        }
        if self.lsi is not None:
            parts["lsi53c895a"] = self.lsi
            for target_id, target in self.lsi_targets.items():
                parts[f"scsi-{target_id}"] = target
        if self.nic is not None:
            parts[self.nic.name] = self.nic  # "ne2000" or "rtl8029"
        return parts

    def load(self, kernel: Path) -> BootState:
        """Load a kernel and put the CPU in the state its boot protocol requires."""
        boot = load_kernel(kernel, self.memory, self.config.cmdline, self.config.initrds)
        self._enter(boot)
        return boot

    def _enter(self, boot: BootState) -> None:
        cpu = self.cpu
        entries = [0] * (max(boot.code_selector, boot.data_selector) // 8 + 1)
        entries[boot.code_selector // 8] = FLAT_CODE_DESCRIPTOR
        entries[boot.data_selector // 8] = FLAT_DATA_DESCRIPTOR
        gdt = b"".join(entry.to_bytes(8, "little") for entry in entries)
        self.memory.write(BOOT_GDT, gdt)
        cpu.set_reg("gdtr", (0, BOOT_GDT, len(gdt) - 1, 0))
        cpu.set_reg("cr0", CR0_PE | 0x10)  # PE, and ET as on every CPU since the 486
        cpu.set_reg("cs", boot.code_selector)
        for segment in ("ss", "ds", "es", "fs", "gs"):
            cpu.set_reg(segment, boot.data_selector)
        cpu.eflags = 0x2
        cpu.set_reg("esp", BOOT_STACK)
        cpu.set_reg("eax", boot.eax)
        cpu.set_reg("ebx", boot.ebx)
        cpu.set_reg("esi", boot.esi)
        cpu.eip = boot.entry

    def run(
        self,
        max_seconds: float | None = None,
        preempt_every_ns: int | None = None,
        suspend_image: str | None = None,
        suspend_after: int | None = None,
        control_socket: str | None = None,
    ) -> RunResult:
        """Run until the guest exits, halts for good, a limit passes or it is
        suspended (to ``suspend_image`` after ``suspend_after`` exits or on SIGUSR1, or
        wherever a request on ``control_socket`` says)."""
        from vmm.control import ControlServer

        if self._has_run:
            raise RuntimeError("a Machine runs once (its hooks are installed); use RunLoop to continue one")
        self._has_run = True
        loop = RunLoop(self, max_seconds)
        loop.extra_stop_interval_ns = preempt_every_ns
        loop.suspend_image = suspend_image
        loop.suspend_after = suspend_after if suspend_image else None
        control = ControlServer(control_socket, loop.request_suspend) if control_socket else None
        loop.watch_suspend_signal = bool(suspend_image)
        self._start_input()
        try:
            result = loop.run()
        finally:
            loop.close()
            if control is not None:
                control.finished(
                    {"suspended": loop.suspended} if loop.suspended else {"error": "the VM ended without suspending"}
                )
                control.close()
        self.stats.merge_device_counts("port I/O", dict(self.ports.exits))
        self.stats.merge_device_counts("MMIO", dict(self.mmio.exits))
        return result

    # -- what the run loop asks of the machine -------------------------------------------
    def advance_devices(self, now_ns: int) -> None:
        while not self._input.empty():
            self._input_backlog += self._input.get_nowait()
        if self._input_backlog:
            self._feed_uart()
        while self.nic is not None and not self._frames.empty():
            self.nic.receive(self._frames.get_nowait())
        for device in self.timed_devices:
            device.advance_to(now_ns)

    def next_deadline_ns(self) -> int | None:
        deadlines = [d for d in (dev.next_deadline_ns() for dev in self.timed_devices) if d is not None]
        if self._input_backlog:  # offer the next byte one character time later
            deadlines.append(self.clock.now_ns() + SERIAL_CHARACTER_NS)
        return min(deadlines, default=None)

    def external_input_possible(self) -> bool:
        """Can something outside the VM (a frame, a key) still wake the guest?"""
        return self._input_open or self.nic_backend is not None

    def pending_frames(self) -> list[bytes]:
        """Frames that arrived for the NIC but were not handed to it yet (queued, or
        still in the backend's socket). A suspend keeps them in the image, so no frame
        in flight is lost; they stay queued here too, for a VM that goes on (a
        checkpoint)."""
        if self.nic_backend is None:
            return []
        with self.nic_backend.delivery_lock:
            frames = []
            while not self._frames.empty():
                frames.append(self._frames.get_nowait())
            frames += self.nic_backend.drain()
            for frame in frames:
                self._frames.put(frame)
        return frames

    def queue_frames(self, frames: list[bytes]) -> None:
        for frame in frames:
            self._frames.put(frame)

    def wake(self) -> None:
        """End a wait for a frame or a key now (a park or a suspend wants the loop)."""
        self._external.set()

    def wait_for_external(self, timeout: float | None) -> bool:
        """Sleep until a frame or host input arrives (True) or ``timeout`` passes."""
        arrived = self._external.wait(timeout)
        self._external.clear()
        return arrived

    def _feed_uart(self) -> None:
        """Give the UART what it can take without an overrun, as a serial line would."""
        room = self.uart.input_room()
        if room:
            data, self._input_backlog = self._input_backlog[:room], self._input_backlog[room:]
            self.uart.feed_input(data)

    def flush_output(self) -> None:
        if self._serial_out is None:
            return
        try:
            self._serial_out.flush()
        except (OSError, ValueError):
            self._serial_out = None
            _silence_stdout()

    # -- callbacks from devices ------------------------------------------------------------
    def _control_registers(self) -> tuple[int, int, int]:
        cpu = self.cpu
        return cpu.reg("cr0"), cpu.reg("cr3"), cpu.reg("cr4")

    def begin_slice(self) -> None:
        self.in_slice = True
        self.mmu.release_control_registers()
        self.pci.begin_slice()

    def end_slice(self) -> None:
        self.in_slice = False
        self.pci.end_slice()
        self.mmu.hold_control_registers()

    def _interrupt_line_changed(self, asserted: bool) -> None:
        # Raised by a device while the guest runs: deliver at the next block boundary.
        # Between slices the run loop delivers anyway: a stop would only cost a slice.
        if asserted and self.in_slice:
            self.fast.request_stop()

    def request_rearm(self) -> None:
        """A timed device was written: its deadline may have moved, so end the slice
        at the next block boundary and let the run loop re-arm it."""
        self.fast.request_stop()

    def request_stop(self) -> None:
        """Stop the guest now, from inside a port hook (never from an MMIO callback:
        a stop there can split a read-modify-write instruction)."""
        self.stop_pending = True
        self.cpu.uc.emu_stop()

    def _guest_exit(self, value: int) -> None:
        # The first write ends the VM, as on QEMU: instructions the CPU still runs
        # before the stop lands (up to the next memory access) cannot change it.
        if self.exit_code is None:
            self.exit_code = value
        self.cpu.uc.emu_stop()

    def _serial_write(self, data: bytes) -> None:
        out = self._serial_out
        if out is None:
            return
        try:
            out.write(data)
            if b"\n" in data:
                out.flush()
        except (BrokenPipeError, ValueError):
            # Whoever read the console is gone (`vmm run ... | head`): the UART goes
            # on sending into the void, as a real one with its cable pulled out.
            self._serial_out = None
            _silence_stdout()

    def _open_serial(self, serial: str) -> BinaryIO:
        if serial == "stdio":
            return sys.stdout.buffer
        return open(serial, "wb")

    def _start_input(self) -> None:
        """Feed stdin to COM1 when the console is stdio and the run is not deterministic."""
        if self.config.serial != "stdio" or self.config.deterministic:
            return
        try:
            fd = sys.stdin.fileno()
        except (AttributeError, OSError, ValueError):
            return
        if not os.isatty(fd):
            return
        self._input_open = True
        threading.Thread(target=self._read_input, args=(fd,), name="vmm-stdin", daemon=True).start()

    def _read_input(self, fd: int) -> None:
        while True:
            data = os.read(fd, 256)
            if not data:
                self._input_open = False
                self._external.set()
                return
            self._input.put(data)
            self.fast.request_stop()
            self._external.set()


def _disk_tag(spec: str) -> str:
    """A printable serial-number part from a --disk argument."""
    name = Path(spec.split(":", 1)[-1]).name
    tag = "".join(c for c in name if c.isalnum())[:32]
    return tag or "DISK"


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so Python's own flush at exit finds no broken pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass

