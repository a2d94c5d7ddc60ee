"""Port-I/O exits: plain IN/OUT, whole INS/OUTS strings, and the I/O permission check.

The native port hooks (fastpath.c) call :meth:`PortIo.port_in` / :meth:`PortIo.port_out`
for every access a guest is allowed to make, and :meth:`PortIo.io_denied` when CPL >
IOPL, to consult the TSS I/O permission bitmap (SDM vol. 1, 19.5.2).

A string instruction is served in one exit: the first element's hook decodes the
instruction (capstone), moves every element between the port and guest memory, then
stops the guest and leaves a :class:`StringFixup` that the run loop applies: the final
ECX, ESI/EDI and the next EIP. Unicorn's own handling of that first element is
harmless: it stores the same value, and the stop lands before its next iteration.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import capstone
from capstone import x86_const as CX

from vmm.bus import PortBus
from vmm.cpu import EFLAGS_DF, Cpu
from vmm.paging import Mmu, PageFault

_disassembler = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_32)
_disassembler.detail = True

_STRING_IO = {
    CX.X86_INS_INSB: ("in", 1), CX.X86_INS_INSW: ("in", 2), CX.X86_INS_INSD: ("in", 4),
    CX.X86_INS_OUTSB: ("out", 1), CX.X86_INS_OUTSW: ("out", 2), CX.X86_INS_OUTSD: ("out", 4),
}
_RESTORED_ON_REFUSAL = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi", "eflags")


@dataclass(frozen=True)
class StringInstruction:
    direction: str  # "in" or "out"
    size: int  # bytes per element
    repeat: bool
    length: int  # instruction length, for the next EIP
    address_16: bool


@functools.lru_cache(maxsize=512)
def decode_string_io(code: bytes) -> StringInstruction | None:
    """Decode INS/OUTS at the start of ``code``; None for anything else."""
    for insn in _disassembler.disasm(code, 0, 1):
        kind = _STRING_IO.get(insn.id)
        if kind is None:
            return None
        prefixes = set(insn.prefix)
        return StringInstruction(
            direction=kind[0],
            size=kind[1],
            repeat=bool(prefixes & {0xF3, 0xF2}),
            length=insn.size,
            address_16=0x67 in prefixes,
        )
    return None


@dataclass(frozen=True)
class StringFixup:
    """Register values that complete a string instruction served in one exit."""

    eip: int
    ecx: int
    esi: int
    edi: int


class PortIo:
    """Python side of the native port hooks."""

    def __init__(
        self,
        cpu: Cpu,
        mmu: Mmu,
        ports: PortBus,
        stop_guest: Callable[[], None],
        on_error: Callable[[BaseException], None],
    ) -> None:
        self.cpu = cpu
        self.mmu = mmu
        self.ports = ports
        self._stop_guest = stop_guest
        self._on_error = on_error
        self.fixup: StringFixup | None = None
        self.exits = 0  # every port access the guest made
        self.alarm_at = -1  # at this many exits, call alarm (suspend-after)
        self.alarm: Callable[[], None] | None = None
        self.denied_registers: dict[str, int] | None = None

    # -- called from C -------------------------------------------------------------
    def port_in(self, port: int, size: int, string: int) -> int:
        self.exits += 1
        if self.exits == self.alarm_at and self.alarm is not None:
            self.alarm()
        try:
            if string and self.fixup is None:
                served = self._serve_string(port, size)
                if served is not None:
                    return served
            return self.ports.read(port, size)
        except BaseException as exc:  # a device bug must not vanish inside ctypes
            self._on_error(exc)
            return 0

    def port_out(self, port: int, size: int, value: int, string: int) -> None:
        self.exits += 1
        if self.exits == self.alarm_at and self.alarm is not None:
            self.alarm()
        try:
            if string and self.fixup is None:
                if self._serve_string(port, size) is not None:
                    return
            self.ports.write(port, size, value)
        except BaseException as exc:
            self._on_error(exc)

    def io_denied(self, port: int, size: int) -> int:
        """1 when the TSS I/O bitmap allows the access although CPL > IOPL."""
        try:
            if self._bitmap_allows(port, size):
                return 1
            # The instructions after this one may run before the stop lands (Unicorn
            # stops at the next memory access or block end): keep the registers as
            # they are at the refused instruction, to put them back.
            self.denied_registers = {name: self.cpu.reg(name) for name in _RESTORED_ON_REFUSAL}
            return 0
        except BaseException as exc:
            self._on_error(exc)
            return 0

    # -- string instructions ---------------------------------------------------------
    def _current_instruction(self) -> StringInstruction | None:
        user = self.cpu.cpl == 3
        try:
            code = self.mmu.read(self.cpu.eip, 16, user)
        except PageFault:
            code = self.mmu.read(self.cpu.eip, 16 - (self.cpu.eip & 0xF), user)
        return decode_string_io(code)

    def _serve_string(self, port: int, size: int) -> int | None:
        """Move the whole string; the value for Unicorn's first element, or None to
        let Unicorn do it element by element (16-bit addressing, a fault on the way)."""
        insn = self._current_instruction()
        if insn is None or insn.address_16 or insn.size != size or not insn.repeat:
            # A single INS/OUTS is one element: Unicorn's own path is already one exit,
            # and serving it here would need a stop that lands only after the next
            # instructions have run.
            return None
        cpu = self.cpu
        count = cpu.reg("ecx")
        if count < 2:
            return None
        step = -size if cpu.eflags & EFLAGS_DF else size
        user = cpu.cpl == 3
        esi, edi = cpu.reg("esi"), cpu.reg("edi")
        if insn.direction == "in":
            base = edi  # flat segments: 32-bit kernels use no based ES (docs/monitor.md)
            spans = self._element_spans(base, step, count, write=True, user=user)
            if spans is None:
                return None
            values = self._read_port_string(port, size, count)
            data = b"".join(v.to_bytes(size, "little") for v in values)
            self._store(spans, data, step)
            first = values[0]
            edi = (edi + step * count) & 0xFFFFFFFF
        else:
            base = esi
            spans = self._element_spans(base, step, count, write=False, user=user)
            if spans is None:
                return None
            data = self._load(spans, step)
            self._write_port_string(port, size, data, count)
            first = int.from_bytes(data[:size], "little")
            esi = (esi + step * count) & 0xFFFFFFFF
        ecx = 0
        self.fixup = StringFixup(cpu.eip + insn.length, ecx, esi, edi)
        self._stop_guest()
        return first

    def _element_spans(
        self, start: int, step: int, count: int, write: bool, user: bool
    ) -> list[tuple[int, int]] | None:
        """Physical (address, length) runs covering the string, in element order."""
        size = abs(step)
        low = start if step > 0 else start + step * (count - 1)
        total = size * count
        spans: list[tuple[int, int]] = []
        linear = low
        try:
            while linear < low + total:
                chunk = min(low + total - linear, 0x1000 - (linear & 0xFFF))
                phys = self.mmu.translate(linear, write, user)
                if phys + chunk > self.mmu.memory.size:
                    return None  # partly beyond RAM: Unicorn's path gives the open bus
                spans.append((phys, chunk))
                linear += chunk
        except PageFault:
            return None
        return spans

    def _store(self, spans: list[tuple[int, int]], data: bytes, step: int) -> None:
        if step < 0:  # descending: element 0 is at the highest address
            size = -step
            data = b"".join(data[i : i + size] for i in range(len(data) - size, -1, -size))
        offset = 0
        for phys, length in spans:
            self.mmu.memory.write(phys, data[offset : offset + length])
            offset += length

    def _load(self, spans: list[tuple[int, int]], step: int) -> bytes:
        data = b"".join(self.mmu.memory.read(phys, length) for phys, length in spans)
        if step < 0:
            size = -step
            data = b"".join(data[i : i + size] for i in range(len(data) - size, -1, -size))
        return data

    def _read_port_string(self, port: int, size: int, count: int) -> list[int]:
        entry = self.ports.device_at(port)
        if entry is not None and hasattr(entry[0], "read_string"):
            device, base = entry
            self.ports.exits[device.name] += 1
            return device.read_string(port - base, size, count)
        return [self.ports.read(port, size) for _ in range(count)]

    def _write_port_string(self, port: int, size: int, data: bytes, count: int) -> None:
        entry = self.ports.device_at(port)
        if entry is not None and hasattr(entry[0], "write_string"):
            device, base = entry
            self.ports.exits[device.name] += 1
            device.write_string(port - base, size, data)
            return
        for i in range(count):
            self.ports.write(port, size, int.from_bytes(data[i * size : (i + 1) * size], "little"))

    # -- I/O permission --------------------------------------------------------------
    def _bitmap_allows(self, port: int, size: int) -> bool:
        _, tss_base, tss_limit, _ = self.cpu.table("tr")
        if tss_limit < 0x67:
            return False
        bitmap = self.mmu.read(tss_base + 0x66, 2)
        offset = int.from_bytes(bitmap, "little") + port // 8
        last = port + size - 1
        if offset + 1 > tss_limit:
            return False
        bits = int.from_bytes(self.mmu.read(tss_base + offset, 2), "little")
        mask = ((1 << size) - 1) << (port % 8)
        return last // 8 - port // 8 <= 1 and not bits & mask
