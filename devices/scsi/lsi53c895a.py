"""The LSI53C895A PCI SCSI controller: configuration identity, the register file (through
BAR0 I/O and BAR1 memory), the SCRIPTS RAM (BAR2), interrupts and saved state.

Sources: the LSI53C895A technical manual (chapter 5, operating registers; chapter 6,
SCRIPTS) and QEMU's hw/scsi/lsi53c895a.c, the reference our guests are compared against.
The rule where they differ: what a guest validated on QEMU can observe follows QEMU
(register values such as GPREG, MACNTL, STEST4, ISTAT without CON; MSG OUT after every
selection; READ commands that disconnect and reselect; lenient COMMAND/STATUS/MSG IN move
lengths; SELECT timeouts that halt at the next bus instruction); what QEMU leaves out or
gets wrong follows the manual (illegal instruction checks, SELECT's ATN in bit 24, DCNTL.IRQD,
self-clearing CLF/CSF, storage behaviour of SLPAR, SWIDE, STIME1, SODL, CTEST0, DFIFO).
The SCRIPTS processor is devices/scsi/scripts.py; the SCSI bus is devices/scsi/lsi_bus.py.

Left out: target mode, low-level mode (SCNTL0.START, SCNTL1.SST), reselection announced
by the SIST0.RSL interrupt (reselection happens at WAIT RESELECT), the handshake-to-
handshake timer, parity, interrupt stacking, PCI bus-master enable (DMA works without it,
as firmware would have set it), DMA addresses above 4 GiB (they give a bus fault).

Machine hook-up: ``bars[0].device`` (``io_registers``, 256 bytes of ports),
``bars[1].device`` (``mmio_registers``, 1 KiB) and ``bars[2].device`` (``scripts_ram``,
8 KiB) go on the port and MMIO buses wherever the BARs are placed; ``intx`` goes to a PIC
input; the controller is a TimedDevice (``next_deadline_ns`` / ``advance_to``) so a
SCRIPTS program longer than one slice keeps running between guest slices. A SCRIPTS
program reaches the controller's own BARs (registers, SCRIPTS RAM) by their bus
addresses, as Linux's sym53c8xx relies on.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from devices.base import Clock, Dma, DmaError, plain_value
from devices.pci.function import LATENCY_TIMER, Bar, BarKind, PciFunction
from devices.scsi import lsi_registers as R
from devices.scsi.lsi_bus import ScsiBus
from devices.scsi.lsi_registers import READ_ONLY, RESERVED, STORAGE, Dstat, Istat, LsiRegisters, Sist0, Sist1
from devices.scsi.scripts import EngineState, ScriptsProcessor
from devices.scsi.target import ScsiTarget

VENDOR_LSI = 0x1000
DEVICE_53C895A = 0x0012
CLASS_SCSI = 0x010000
SUBSYSTEM_ID = 0x1000  # QEMU: subsystem vendor 0, subsystem 0x1000; revision 0
IO_BAR_SIZE = 0x100
MMIO_BAR_SIZE = 0x400  # QEMU's size; the 256-byte register file repeats in it
SCRIPTS_RAM_SIZE = 0x2000  # QEMU models 8 KiB (2048 dwords)
SCRIPTS_SLICE = 1000  # instructions per call before the engine yields to the guest
GEN_TIMER_BASE_NS = 125_000  # STIME1 GEN code 1 is 125 us; each code doubles it


class RegisterWindow:
    """BAR0 or BAR1: the byte-wide register file; wider accesses are split into byte
    registers, lowest address first, as the chip does."""

    def __init__(self, chip: Lsi53c895a, name: str) -> None:
        self.chip = chip
        self.name = name

    def read(self, offset: int, size: int) -> int:
        value = 0
        for index in range(size):
            value |= self.chip.read_register((offset + index) & 0xFF) << (8 * index)
        return value

    def write(self, offset: int, size: int, value: int) -> None:
        for index in range(size):
            self.chip.write_register((offset + index) & 0xFF, (value >> (8 * index)) & 0xFF)


class ScriptsRam:
    """BAR2: 8 KiB of on-chip RAM where a driver may keep its SCRIPTS program."""

    def __init__(self, name: str = "lsi53c895a-ram") -> None:
        self.name = name
        self.data = bytearray(SCRIPTS_RAM_SIZE)

    def read(self, offset: int, size: int) -> int:
        offset %= SCRIPTS_RAM_SIZE
        return int.from_bytes(self.read_bytes(offset, size), "little")

    def write(self, offset: int, size: int, value: int) -> None:
        self.write_bytes(offset % SCRIPTS_RAM_SIZE, (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little"))

    def read_bytes(self, offset: int, length: int) -> bytes:
        return bytes(self.data[offset : offset + length])

    def write_bytes(self, offset: int, data: bytes) -> None:
        end = min(offset + len(data), SCRIPTS_RAM_SIZE)
        self.data[offset:end] = data[: end - offset]


class Lsi53c895a(PciFunction):
    """The controller. ``targets`` maps SCSI IDs (0-15; IDs above 7 need SCNTL3.EWS) to
    the devices on its bus; ``dma`` is guest memory as a bus master sees it."""

    name = "lsi53c895a"

    def __init__(
        self,
        dma: Dma,
        targets: dict[int, ScsiTarget],
        *,
        clock: Clock | None = None,
        disconnect_reads: bool = True,
    ) -> None:
        super().__init__(
            vendor_id=VENDOR_LSI,
            device_id=DEVICE_53C895A,
            class_code=CLASS_SCSI,
            revision=0,
            interrupt_pin=1,
            subsystem_vendor_id=0,
            subsystem_id=SUBSYSTEM_ID,
        )
        self.config[LATENCY_TIMER] = 0xFF  # as QEMU sets it
        self.dma = dma
        self.clock = clock
        self.bus = ScsiBus(targets, disconnect_reads=disconnect_reads)
        self.regs = LsiRegisters()
        self.scripts = ScriptsProcessor(self)
        self.io_registers = RegisterWindow(self, "lsi53c895a-io")
        self.mmio_registers = RegisterWindow(self, "lsi53c895a-mmio")
        self.scripts_ram = ScriptsRam()
        self.add_bar(Bar(0, BarKind.IO, IO_BAR_SIZE, self.io_registers))
        self.add_bar(Bar(1, BarKind.MEMORY, MMIO_BAR_SIZE, self.mmio_registers))
        self.add_bar(Bar(2, BarKind.MEMORY, SCRIPTS_RAM_SIZE, self.scripts_ram))
        self.gen_deadline_ns: int | None = None
        self._windows_generation = -1  # _own_windows' cache
        self._windows: dict[bool, list[tuple[int, int, str]]] = {True: [], False: []}
        self._lowest_memory_window = 1 << 32
        self.slice_instructions = SCRIPTS_SLICE

    # -- the register file --------------------------------------------------------------------
    def read_register(self, offset: int) -> int:
        """One byte register, with the side effects a read has (DSTAT/SIST clear)."""
        return int(self._read_register(offset))

    def _read_register(self, offset: int) -> int:
        r = self.regs
        bus = self.bus
        if offset == R.SCNTL1:
            return r.scntl1 | (R.Scntl1.CON if bus.connected else 0)
        if offset == R.GPREG:
            return R.GPREG_VALUE
        if offset == R.SBCL:
            return self._sbcl()
        if offset == R.DSTAT:
            value = r.dstat | Dstat.DFE
            if not r.istat & Istat.INTF:  # QEMU keeps DSTAT while INTF is pending
                r.dstat = 0
            self.update_irq()
            return value
        if offset == R.SSTAT0:
            return r.sstat0
        if offset == R.SSTAT1:
            return bus.phase if bus.connected else 0
        if offset == R.SSTAT2:
            return 0 if bus.connected else R.Sstat2.LDSC
        if offset == R.ISTAT:
            return r.istat
        if offset == R.ISTAT1:
            return R.Istat1.SRUN if self.scripts.state is not EngineState.STOPPED else 0
        if offset == R.CTEST1:
            return R.CTEST1_VALUE
        if offset == R.CTEST2:
            value = r.ctest2 | R.Ctest2.DACK | R.Ctest2.CM
            if r.istat & Istat.SIGP:  # reading CTEST2 is how a driver clears SIGP
                r.istat &= ~Istat.SIGP
                value |= R.Ctest2.SIGP
            return value
        if offset == R.CTEST6:
            return 0
        if offset == R.SIST0 or offset == R.SIST1:
            if offset == R.SIST0:
                value, r.sist0 = r.sist0, 0
            else:
                value, r.sist1 = r.sist1, 0
            self.update_irq()
            return value
        if offset == R.MACNTL:
            return R.MACNTL_VALUE
        if offset == R.STEST0:
            return R.STEST0_VALUE
        if offset == R.STEST4:
            return R.STEST4_VALUE
        if offset == R.SBDL:
            return bus.peek_msg_in()  # some drivers peek at the bus during MSG IN
        if offset in (R.SIDL + 1, R.SBDL + 1, R.STEST4 + 1):
            return 0
        if R.SCRATCHA <= offset < R.SCRATCHA + 4 or R.SCRATCHB <= offset < R.SCRATCH_END:
            index, byte = self._scratch_slot(offset)
            return (r.scratch[index] >> (8 * byte)) & 0xFF
        entry = STORAGE.get(offset)
        if entry is not None:
            name, byte = entry
            return (getattr(r, name) >> (8 * byte)) & 0xFF
        return 0xFF

    def write_register(self, offset: int, value: int) -> None:
        """One byte register, with the side effects a write has (start, reset, abort)."""
        r = self.regs
        value &= 0xFF
        if offset == R.SCNTL1:
            self._write_scntl1(value)
        elif offset == R.SCNTL2:
            r.scntl2 = value & ~(R.Scntl2.WSR | R.Scntl2.WSS)  # write-one-to-clear status
        elif offset == R.SDID:
            r.sdid = value & 0x0F
        elif offset == R.ISTAT:
            self._write_istat(value)
        elif offset == R.CTEST2:
            r.ctest2 = value & R.Ctest2.PCICIE
        elif offset == R.CTEST3:
            r.ctest3 = value & 0x0F & ~R.Ctest3.CLF  # CLF clears itself
        elif offset in (R.DIEN, R.SIEN0, R.SIEN1):
            setattr(r, STORAGE[offset][0], value)
            self.update_irq()
        elif offset == R.DCNTL:
            r.dcntl = value & ~(R.Dcntl.PFF | R.Dcntl.STD)
            self.update_irq()
            if value & R.Dcntl.STD:
                self.start_scripts()
        elif offset == R.STIME1:
            r.stime1 = value
            self._arm_gen_timer()
        elif offset == R.STEST3:
            r.stest3 = value & ~R.Stest3.CSF  # CSF clears itself
        elif offset in READ_ONLY or offset in RESERVED:
            pass
        elif R.SCRATCHA <= offset < R.SCRATCHA + 4 or R.SCRATCHB <= offset < R.SCRATCH_END:
            index, byte = self._scratch_slot(offset)
            shift = 8 * byte
            r.scratch[index] = (r.scratch[index] & ~(0xFF << shift)) | (value << shift)
        elif offset in STORAGE:
            name, byte = STORAGE[offset]
            shift = 8 * byte
            setattr(r, name, (getattr(r, name) & ~(0xFF << shift)) | (value << shift))
            if offset == R.DSP + 3 and not r.dmode & R.Dmode.MAN:
                self.start_scripts()  # writing DSP's last byte starts SCRIPTS

    @staticmethod
    def _scratch_slot(offset: int) -> tuple[int, int]:
        if offset < R.SCRATCHA + 4:
            return 0, offset - R.SCRATCHA
        return 1 + (offset - R.SCRATCHB) // 4, offset & 3

    def _sbcl(self) -> int:
        conn = self.bus.conn
        if not conn.connected:
            return 0
        value = R.Sbcl.REQ | R.Sbcl.BSY | conn.phase
        if conn.atn:
            value |= R.Sbcl.ATN
        if self.regs.ack:
            value |= R.Sbcl.ACK
        return value

    def _write_scntl1(self, value: int) -> None:
        r = self.regs
        # CON reads as the bus state; writing it changes nothing (in QEMU a transfer in
        # progress carries on whatever is written here).
        r.scntl1 = value & ~(R.Scntl1.SST | R.Scntl1.CON)
        if value & R.Scntl1.RST:
            if not r.sstat0 & R.Sstat0.RST:
                self.bus.reset()
                r.sstat0 |= R.Sstat0.RST
                self.scsi_interrupt(sist0=Sist0.RST)
        else:
            r.sstat0 &= ~R.Sstat0.RST

    def _write_istat(self, value: int) -> None:
        r = self.regs
        r.istat = (r.istat & 0x0F) | (value & 0xF0)
        if value & Istat.ABRT:
            self.dma_interrupt(Dstat.ABRT)
        if value & Istat.INTF:  # write one to clear
            r.istat &= ~Istat.INTF
            self.update_irq()
        if value & Istat.SIGP and self.scripts.state is EngineState.WAIT_RESELECT:
            r.dsp = r.dnad  # SIGP ends WAIT RESELECT with a jump to its alternate address
            self.scripts.state = EngineState.RUNNING
            self.run_scripts()
        if value & Istat.SRST:
            self.soft_reset()

    def reselected(self, target_id: int) -> None:
        """A target reselected us: SSID names it; in 53C700 compatibility mode (DCNTL.COM
        clear) SFBR holds its ID bit, as QEMU does (manual 4-73)."""
        self.regs.ssid = 0x80 | target_id
        if not self.regs.dcntl & R.Dcntl.COM:
            self.regs.sfbr = 1 << (target_id & 7)

    # -- reset --------------------------------------------------------------------------------
    def soft_reset(self) -> None:
        """ISTAT.SRST: registers to their reset values, SCRIPTS stopped, and (as QEMU) a
        SCSI bus reset, so every target reports a unit attention next."""
        self.regs = LsiRegisters()
        self.scripts.stop()
        self.gen_deadline_ns = None
        self.bus.reset()
        self.update_irq()

    # -- interrupts -----------------------------------------------------------------------------
    def update_irq(self) -> None:
        """ISTAT.DIP/SIP follow DSTAT/SIST; INTA is asserted for an enabled source."""
        r = self.regs
        if r.dstat:
            r.istat |= Istat.DIP
        else:
            r.istat &= ~Istat.DIP
        if r.sist0 or r.sist1:
            r.istat |= Istat.SIP
        else:
            r.istat &= ~Istat.SIP
        level = bool(
            (r.dstat & r.dien & R.DSTAT_INTERRUPTS)
            or (r.sist0 & r.sien0)
            or (r.sist1 & r.sien1)
            or (r.istat & Istat.INTF)
        )
        if r.dcntl & R.Dcntl.IRQD:
            level = False
        self.set_interrupt_status(level)

    def dma_interrupt(self, bits: int) -> None:
        """A DSTAT condition: SCRIPTS stop and DIP is raised."""
        self.regs.dstat |= bits
        self.scripts.stop()
        self.update_irq()

    def scsi_interrupt(self, sist0: int = 0, sist1: int = 0) -> None:
        """A SIST0/SIST1 condition. Fatal ones halt SCRIPTS even when masked; non-fatal
        ones only when enabled. A selection timeout halts at the next instruction that
        needs the bus (QEMU and the Linux driver's expectations)."""
        r = self.regs
        r.sist0 |= sist0
        r.sist1 |= sist1
        halt0 = (sist0 & ~R.SIST0_NONFATAL) | (sist0 & r.sien0)
        halt1 = ((sist1 & ~R.SIST1_NONFATAL) | (sist1 & r.sien1)) & ~Sist1.STO
        if halt0 or halt1:
            self.scripts.stop()
        self.update_irq()

    # -- SCRIPTS --------------------------------------------------------------------------------
    def start_scripts(self) -> None:
        """Begin executing at DSP, unless SCRIPTS are already running or waiting."""
        if self.scripts.state is EngineState.STOPPED:
            self.scripts.state = EngineState.RUNNING
            self.run_scripts()

    def run_scripts(self) -> None:
        """One slice of at most ``slice_instructions`` instructions."""
        self.scripts.run(self.slice_instructions)

    # -- TimedDevice ------------------------------------------------------------------------------
    def _now(self) -> int:
        return self.clock.now_ns() if self.clock is not None else 0

    def next_deadline_ns(self) -> int | None:
        """Now while a SCRIPTS program is runnable; the GEN timer's expiry; else None."""
        deadlines = []
        if self.scripts.state is EngineState.RUNNING:
            deadlines.append(self._now())
        if self.gen_deadline_ns is not None:
            deadlines.append(self.gen_deadline_ns)
        return min(deadlines) if deadlines else None

    def advance_to(self, now_ns: int) -> None:
        if self.gen_deadline_ns is not None and now_ns >= self.gen_deadline_ns:
            self.gen_deadline_ns = None
            self.scsi_interrupt(sist1=Sist1.GEN)
        if self.scripts.state is EngineState.RUNNING:
            self.run_scripts()

    def _arm_gen_timer(self) -> None:
        code = self.regs.stime1 & R.Stime1.GEN_MASK
        if not code:
            self.gen_deadline_ns = None
            return
        if self.clock is None:  # no virtual time: expire at once, as QEMU does
            self.gen_deadline_ns = None
            self.scsi_interrupt(sist1=Sist1.GEN)
            return
        period = GEN_TIMER_BASE_NS << (code - 1)
        if self.regs.stime1 & R.Stime1.GENSF:
            period *= 16
        self.gen_deadline_ns = self.clock.now_ns() + period

    # -- the controller as a PCI bus master -------------------------------------------------------
    def _own_windows(self, io: bool) -> list[tuple[int, int, str]]:
        """The controller's own decoded BARs in the space it is addressing: a SCRIPTS
        program (Linux's sym53c8xx does) reads and writes its registers and its RAM
        through their bus addresses. Cached until the PCI decoding changes: every
        SCRIPTS fetch asks."""
        if self._windows_generation != self.decoding_generation:
            windows: dict[bool, list[tuple[int, int, str]]] = {True: [], False: []}
            for bar, address in self.decoded_bars():
                kind = "ram" if bar.index == 2 else "registers"
                windows[bar.kind is BarKind.IO].append((address, bar.size, kind))
            self._windows = windows
            self._lowest_memory_window = min((w[0] for w in windows[False]), default=1 << 32)
            self._windows_generation = self.decoding_generation
        return self._windows[io]

    def maps_registers(self, address: int) -> bool:
        """True when a memory address falls on the controller's own register BAR."""
        return any(kind == "registers" and base <= address < base + size for base, size, kind in self._own_windows(False))

    def _split(self, address: int, length: int, io: bool) -> list[tuple[int, int, tuple[int, int, str] | None]]:
        if address + length > 1 << 32:
            raise DmaError(f"DMA at {address:#x}+{length:#x} runs past 4 GiB")
        windows = self._own_windows(io)
        pieces: list[tuple[int, int, tuple[int, int, str] | None]] = []
        position, end = address, address + length
        while position < end:
            hit = next((w for w in windows if w[0] <= position < w[0] + w[1]), None)
            if hit is not None:
                stop = min(end, hit[0] + hit[1])
            else:
                stop = min([end] + [w[0] for w in windows if position < w[0] < end])
            pieces.append((position, stop - position, hit))
            position = stop
        return pieces

    def bus_read(self, address: int, length: int, *, io: bool = False) -> bytes:
        """Read as a PCI master: guest RAM, or the controller's own BARs. DmaError when
        nobody decodes the address (the caller reports a bus fault)."""
        if length <= 0:
            return b""
        if not io:
            self._own_windows(False)
            if address + length <= self._lowest_memory_window:  # plain guest RAM
                return self.dma.read(address, length)
        out = bytearray()
        for start, size, window in self._split(address, length, io):
            if window is None:
                if io:
                    raise DmaError(f"I/O-space DMA at {start:#x}: nobody decodes it")
                out += self.dma.read(start, size)
            elif window[2] == "ram":
                out += self.scripts_ram.read_bytes(start - window[0], size)
            else:
                out += bytes(self.read_register((a - window[0]) & 0xFF) for a in range(start, start + size))
        return bytes(out)

    def bus_write(self, address: int, data: bytes, *, io: bool = False) -> None:
        """Write as a PCI master (see :meth:`bus_read`)."""
        if not data:
            return
        if not io:
            self._own_windows(False)
        if not io and address + len(data) <= self._lowest_memory_window:
            if address + len(data) > 1 << 32:
                raise DmaError(f"DMA at {address:#x}+{len(data):#x} runs past 4 GiB")
            self.dma.write(address, data)
            return
        for start, size, window in self._split(address, len(data), io):
            chunk = data[start - address : start - address + size]
            if window is None:
                if io:
                    raise DmaError(f"I/O-space DMA at {start:#x}: nobody decodes it")
                self.dma.write(start, chunk)
            elif window[2] == "ram":
                self.scripts_ram.write_bytes(start - window[0], chunk)
            else:
                for index, byte in enumerate(chunk):
                    self.write_register((start - window[0] + index) & 0xFF, byte)

    # -- saved state ------------------------------------------------------------------------------
    def save_state(self) -> dict[str, Any]:
        return {
            "pci": super().save_state(),
            "registers": plain_value(asdict(self.regs)),
            "scripts": self.scripts.save_state(),
            "bus": plain_value(self.bus.save_state()),
            "scripts_ram": bytes(self.scripts_ram.data),
            "gen_deadline_ns": self.gen_deadline_ns,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        registers = dict(state["registers"])
        registers["scratch"] = list(registers["scratch"])
        if len(registers["scratch"]) != 18 or len(state["scripts_ram"]) != SCRIPTS_RAM_SIZE:
            raise ValueError("LSI53C895A state: scratch registers or SCRIPTS RAM of the wrong size")
        super().load_state(state["pci"])
        self.regs = LsiRegisters(**registers)
        self.scripts.load_state(state["scripts"])
        self.bus.load_state(state["bus"])
        self.scripts_ram.data[:] = state["scripts_ram"]
        self.gen_deadline_ns = state["gen_deadline_ns"]
        self.update_irq()
