"""A small protected-mode PC built by hand for unit tests of the monitor's pieces.

:class:`Rig` wraps a :class:`vmm.machine.Machine` (4 MiB, deterministic time) and puts in
guest RAM what a kernel would have set up: a GDT with flat ring-0 and ring-3 segments and
a 32-bit TSS, an IDT whose every vector has an interrupt gate to a stub handler, and the
TSS's ring-0 stack and I/O permission bitmap. A stub handler writes its vector to the
debug-exit port, so ``Machine.run`` ends with the vector number as its status (vectors
below 100) and the frame the monitor pushed is left on the stack for the test to read.

Physical = linear everywhere unless a test turns paging on.
"""

from __future__ import annotations

import io
import struct

from tests.unicorn.asm import Assembled
from vmm.interrupts import Event, InterruptDelivery
from vmm.machine import Machine, MachineConfig
from vmm.runloop import RunResult

GDT = 0x1000
IDT = 0x2000
TSS = 0x3000
TSS_IOMAP_OFFSET = 0x68
TSS_LIMIT = TSS_IOMAP_OFFSET + 0x2000  # full 64 Ki-port bitmap plus the terminator byte
MAILBOX = 0x6000
HANDLERS = 0x10000  # vector v's stub at HANDLERS + 16 * v
CODE = 0x20000  # where tests put their own code
IRET_STUB = 0x0F00
KERNEL_STACK = 0x90000  # TSS.ESP0
USER_STACK = 0x80000
DATA = 0x40000  # scratch buffers

KERNEL_CS, KERNEL_DS, USER_CS, USER_DS, TSS_SEL = 0x08, 0x10, 0x1B, 0x23, 0x28
# Extra descriptors tests point gates at.
NOT_PRESENT_CS = 0x30  # ring-0 code segment with P=0
DATA_AS_CS = 0x38  # a data segment, not code
CONFORMING_CS = 0x40  # ring-0 conforming code

GATE_INT32, GATE_TRAP32, GATE_INT16, GATE_TASK = 0xE, 0xF, 0x6, 0x5


def segment_descriptor(base: int, limit: int, access: int, flags: int = 0xC) -> int:
    """An 8-byte GDT entry: ``access`` is the P/DPL/S/type byte, ``flags`` G/D/L/AVL."""
    return (
        (limit & 0xFFFF)
        | (base & 0xFFFFFF) << 16
        | (access & 0xFF) << 40
        | ((limit >> 16) & 0xF) << 48
        | (flags & 0xF) << 52
        | ((base >> 24) & 0xFF) << 56
    )


def gate_descriptor(selector: int, offset: int, kind: int, dpl: int = 0, present: bool = True) -> bytes:
    high = (offset & 0xFFFF0000) | (int(present) << 15) | (dpl << 13) | (kind << 8)
    low = (selector << 16) | (offset & 0xFFFF)
    return struct.pack("<II", low, high)


def handler_stub(vector: int) -> bytes:
    """mov al, vector; out 0xF4, al; hlt; jmp back to the hlt."""
    return bytes([0xB0, vector & 0xFF, 0xE6, 0xF4, 0xF4, 0xEB, 0xFD])


class Rig:
    """A Machine in flat 32-bit protected mode at ring 0, with GDT, IDT and TSS."""

    def __init__(self, memory_mib: int = 4) -> None:
        self.serial = io.BytesIO()
        self.machine = Machine(MachineConfig(memory_mib=memory_mib, deterministic=True), serial_out=self.serial)
        self.cpu = self.machine.cpu
        self.memory = self.machine.memory
        self.mmu = self.machine.mmu
        self.delivery = InterruptDelivery(self.cpu, self.mmu)
        self._build_tables()
        self._enter_ring0()

    # -- tables ---------------------------------------------------------------------------
    def _build_tables(self) -> None:
        entries = [
            0,
            segment_descriptor(0, 0xFFFFF, 0x9A),  # 0x08 ring-0 code
            segment_descriptor(0, 0xFFFFF, 0x92),  # 0x10 ring-0 data
            segment_descriptor(0, 0xFFFFF, 0xFA),  # 0x18 ring-3 code
            segment_descriptor(0, 0xFFFFF, 0xF2),  # 0x20 ring-3 data
            segment_descriptor(TSS, TSS_LIMIT, 0x89, 0x0),  # 0x28 available 32-bit TSS
            segment_descriptor(0, 0xFFFFF, 0x1A),  # 0x30 ring-0 code, not present
            segment_descriptor(0, 0xFFFFF, 0x92),  # 0x38 data
            segment_descriptor(0, 0xFFFFF, 0x9E),  # 0x40 ring-0 conforming code
        ]
        gdt = b"".join(struct.pack("<Q", e) for e in entries)
        self.memory.write(GDT, gdt)
        self.cpu.set_reg("gdtr", (0, GDT, len(gdt) - 1, 0))
        for vector in range(256):
            self.memory.write(HANDLERS + 16 * vector, handler_stub(vector))
            self.set_gate(vector)
        self.cpu.set_reg("idtr", (0, IDT, 256 * 8 - 1, 0))
        tss = bytearray(TSS_IOMAP_OFFSET)
        struct.pack_into("<IH", tss, 4, KERNEL_STACK, KERNEL_DS)  # ESP0, SS0
        struct.pack_into("<H", tss, 0x66, TSS_IOMAP_OFFSET)
        # Every port denied (bit set), plus the terminating all-ones byte.
        self.memory.write(TSS, bytes(tss) + b"\xff" * 0x2001)
        self.cpu.set_reg("tr", (TSS_SEL, TSS, TSS_LIMIT, 0x8B))
        self.memory.write(IRET_STUB, b"\xcf")  # iretd

    def set_gate(
        self, vector: int, kind: int = GATE_INT32, dpl: int = 0, present: bool = True,
        selector: int = KERNEL_CS, offset: int | None = None,
    ) -> None:
        if offset is None:
            offset = HANDLERS + 16 * vector
        self.memory.write(IDT + 8 * vector, gate_descriptor(selector, offset, kind, dpl, present))

    def allow_port(self, port: int, allowed: bool = True) -> None:
        """Clear (allow) or set (deny) the port's bit in the TSS I/O permission bitmap."""
        address = TSS + TSS_IOMAP_OFFSET + port // 8
        byte = self.memory.read(address, 1)[0]
        bit = 1 << (port % 8)
        self.memory.write(address, bytes([byte & ~bit if allowed else byte | bit]))

    # -- CPU state ----------------------------------------------------------------------------
    def _enter_ring0(self) -> None:
        cpu = self.cpu
        cpu.set_reg("cr0", 0x11)  # PE, ET
        cpu.set_reg("cs", KERNEL_CS)
        for segment in ("ss", "ds", "es", "fs", "gs"):
            cpu.set_reg(segment, KERNEL_DS)
        cpu.set_reg("esp", KERNEL_STACK)
        cpu.eflags = 0x2
        cpu.eip = CODE

    def enter_user(self, eip: int, esp: int = USER_STACK, eflags: int = 0x2) -> None:
        """Drop to ring 3 the way a kernel does: IRETD from a ring-0 stack frame."""
        frame = struct.pack("<IIIII", eip, USER_CS, eflags, esp, USER_DS)
        kernel_esp = KERNEL_STACK - len(frame)
        self.memory.write(kernel_esp, frame)
        self.cpu.set_reg("esp", kernel_esp)
        self.cpu.uc.emu_start(IRET_STUB, 0, count=1)
        for segment in ("ds", "es", "fs", "gs"):
            self.cpu.set_reg(segment, USER_DS)
        assert self.cpu.cpl == 3 and self.cpu.eip == eip

    def load(self, code: Assembled) -> None:
        self.memory.write(code.base, code.code)

    def deliver(self, event: Event) -> None:
        self.delivery.deliver(event)

    def run(self, max_seconds: float = 10) -> RunResult:
        return self.machine.run(max_seconds=max_seconds)

    # -- observation -------------------------------------------------------------------------
    def reg(self, name: str) -> int:
        return self.cpu.reg(name)

    def dwords(self, address: int, count: int) -> list[int]:
        return list(struct.unpack(f"<{count}I", self.memory.read(address, 4 * count)))

    def stack(self, count: int) -> list[int]:
        """``count`` dwords from the current ESP upward (the frame just pushed)."""
        return self.dwords(self.reg("esp"), count)
