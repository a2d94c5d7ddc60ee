"""Interrupt and exception delivery, as the Intel SDM (vol. 3, ch. 6) defines it.

Unicorn stops in a hook instead of vectoring through the guest's IDT, so the monitor
does what the CPU would: read the gate, check it, switch to the inner stack named by
the TSS when privilege changes, push the frame (and the error code), clear TF/NT/RF/VM
and, for interrupt gates, IF, then jump to the handler. Real mode goes through the IVT.

Faults met during delivery follow the architecture's double-fault rules: a
contributory fault or page fault while delivering a contributory fault or page fault
becomes #DF; a fault while delivering #DF is a triple fault.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from vmm.cpu import (
    CR0_PE, EFLAGS_IF, EFLAGS_NT, EFLAGS_RF, EFLAGS_TF, EFLAGS_VM, Cpu,
)
from vmm.paging import Mmu, PageFault

DE, DB, NMI, BP, OF, BR, UD, NM, DF, TS, NP, SS, GP, PF, MF, AC = (
    0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 16, 17,
)
VECTORS_WITH_ERROR_CODE = frozenset({DF, TS, NP, SS, GP, PF, AC})
CONTRIBUTORY = frozenset({DE, TS, NP, SS, GP})

GATE_TASK = 0x5
GATE_INT16, GATE_TRAP16 = 0x6, 0x7
GATE_INT32, GATE_TRAP32 = 0xE, 0xF


class TripleFault(Exception):
    """The CPU would shut down: the VM stops."""


class GuestFault(Exception):
    """An exception the guest must receive (raised while delivering another)."""

    def __init__(self, vector: int, error_code: int = 0, cr2: int | None = None) -> None:
        super().__init__(f"vector {vector} error code {error_code:#x}")
        self.vector = vector
        self.error_code = error_code
        self.cr2 = cr2


@dataclass(frozen=True)
class Event:
    """One interrupt or exception to deliver."""

    vector: int
    error_code: int | None = None  # pushed when not None
    software: bool = False  # INT n / INT3 / INTO: gate DPL is checked against CPL
    external: bool = False  # from the PIC: sets EXT in error codes of nested faults
    cr2: int | None = None  # #PF: the faulting linear address
    # INT n / INT3 / INTO: the instruction's own address. A fault while delivering it
    # (a DPL check, a bad gate) is reported at the instruction, not after it.
    instruction_eip: int | None = None
    # Raised by Unicorn itself (through its interrupt hook), which then remembers it as
    # the "previous exception" until the monitor resets that after delivery.
    from_cpu: bool = False


def escalate(first: Event, second: int) -> int | None:
    """The vector to deliver when exception ``second`` occurs while delivering ``first``.

    None means triple fault (SDM vol. 3, table 6-5). Software interrupts and external
    interrupts are benign whatever their vector number: only exceptions the CPU raised
    count as contributory or page faults.
    """
    if first.software or first.external:
        return second
    if first.vector == DF:
        return None
    if (first.vector in CONTRIBUTORY and second in CONTRIBUTORY) or (
        first.vector == PF and (second in CONTRIBUTORY or second == PF)
    ):
        return DF
    return second


class InterruptDelivery:
    """Vectors events into the guest through its IDT (or IVT in real mode)."""

    def __init__(self, cpu: Cpu, mmu: Mmu) -> None:
        self.cpu = cpu
        self.mmu = mmu
        self._privilege_detour = False

    def deliver(self, event: Event) -> None:
        """Deliver ``event``, escalating faults raised on the way (#DF, triple fault)."""
        self._privilege_detour = False
        try:
            self._deliver_escalating(event)
        finally:
            if event.from_cpu or self._privilege_detour:
                self.cpu.end_exception()

    def _deliver_escalating(self, event: Event) -> None:
        current = event
        while True:
            try:
                self._deliver_once(current)
                return
            except (GuestFault, PageFault) as nested:
                if isinstance(nested, PageFault):
                    nested = GuestFault(PF, nested.error_code, nested.linear)
                if current.instruction_eip is not None:
                    self.cpu.eip = current.instruction_eip
                vector = escalate(current, nested.vector)
                if vector is None:
                    raise TripleFault(
                        f"triple fault: vector {nested.vector} while delivering #DF"
                    ) from None
                if vector == DF:
                    current = Event(DF, 0)
                else:
                    current = Event(vector, nested.error_code, cr2=nested.cr2)

    # -- one attempt --------------------------------------------------------------
    def _deliver_once(self, event: Event) -> None:
        cpu = self.cpu
        if event.cr2 is not None:  # CR2 is loaded when #PF is raised, before delivery
            cpu.set_reg("cr2", event.cr2)
        if not cpu.reg("cr0") & CR0_PE:
            self._deliver_real_mode(event)
            return
        ext = 1 if event.external else 0
        _, idt_base, idt_limit, _ = cpu.table("idtr")
        gate_error = event.vector * 8 + 2 + ext
        if event.vector * 8 + 7 > idt_limit:
            raise GuestFault(GP, gate_error)
        low, high = struct.unpack("<II", self.mmu.read(idt_base + event.vector * 8, 8))
        gate_type = (high >> 8) & 0x1F
        gate_dpl = (high >> 13) & 3
        if gate_type not in (GATE_INT32, GATE_TRAP32, GATE_INT16, GATE_TRAP16, GATE_TASK):
            raise GuestFault(GP, gate_error)
        cpl = cpu.cpl
        if event.software and gate_dpl < cpl:
            raise GuestFault(GP, gate_error)
        if not high & (1 << 15):
            raise GuestFault(NP, gate_error)
        if gate_type == GATE_TASK:
            raise TripleFault(
                f"vector {event.vector} goes through a task gate: task switches are not emulated"
            )
        selector = low >> 16
        offset = (high & 0xFFFF0000) | (low & 0xFFFF)
        if gate_type in (GATE_INT16, GATE_TRAP16):
            offset &= 0xFFFF
        target_dpl = self._code_segment_dpl(selector, ext)
        if target_dpl > cpl:
            raise GuestFault(GP, (selector & 0xFFFC) + ext)

        eflags = cpu.eflags
        old_cs, old_eip = cpu.reg("cs"), cpu.eip
        frame_items = [old_eip, old_cs, eflags]
        if target_dpl < cpl:
            new_ss, new_esp = self._inner_stack(target_dpl, ext)
            frame_items += [cpu.reg("esp"), cpu.reg("ss")]
        else:
            new_ss, new_esp = cpu.reg("ss"), cpu.reg("esp")
        if event.error_code is not None:
            frame_items.insert(0, event.error_code)
        width = 2 if gate_type in (GATE_INT16, GATE_TRAP16) else 4
        frame = b"".join(
            (v & ((1 << (8 * width)) - 1)).to_bytes(width, "little") for v in frame_items
        )
        new_esp = (new_esp - len(frame)) & 0xFFFFFFFF
        self.mmu.write(new_esp, frame)  # may raise #PF: nothing changed yet

        if cpu.load_segments_for_privilege(selector & 0xFFFC | target_dpl, new_ss):
            self._privilege_detour = True
        cpu.set_reg("esp", new_esp)
        cleared = EFLAGS_TF | EFLAGS_NT | EFLAGS_RF | EFLAGS_VM
        if gate_type in (GATE_INT32, GATE_INT16):
            cleared |= EFLAGS_IF
        cpu.eflags = eflags & ~cleared
        cpu.eip = offset

    def _descriptor(self, selector: int, ext: int) -> tuple[int, int]:
        if selector & 0xFFFC == 0:
            raise GuestFault(GP, ext)
        if selector & 4:
            _, base, limit, _ = self.cpu.table("ldtr")
        else:
            _, base, limit, _ = self.cpu.table("gdtr")
        index = selector & 0xFFF8
        if index + 7 > limit:
            raise GuestFault(GP, (selector & 0xFFFC) + ext)
        return struct.unpack("<II", self.mmu.read(base + index, 8))

    def _code_segment_dpl(self, selector: int, ext: int) -> int:
        _, high = self._descriptor(selector, ext)
        if not (high >> 11) & 1 or not (high >> 12) & 1:  # must be a code segment
            raise GuestFault(GP, (selector & 0xFFFC) + ext)
        if not high & (1 << 15):
            raise GuestFault(NP, (selector & 0xFFFC) + ext)
        conforming = (high >> 10) & 1
        return self.cpu.cpl if conforming else (high >> 13) & 3

    def _inner_stack(self, dpl: int, ext: int) -> tuple[int, int]:
        """SS:ESP for privilege level ``dpl`` from the current 32-bit TSS."""
        tr_selector, tss_base, tss_limit, _ = self.cpu.table("tr")
        offset = 4 + 8 * dpl
        if offset + 5 > tss_limit:
            raise GuestFault(TS, (tr_selector & 0xFFFC) + ext)
        esp, ss = struct.unpack("<IH", self.mmu.read(tss_base + offset, 6))
        return ss, esp

    def _deliver_real_mode(self, event: Event) -> None:
        cpu = self.cpu
        _, ivt_base, _, _ = cpu.table("idtr")  # 0 after reset; LIDT may move it
        ivt_entry = struct.unpack("<HH", self.mmu.read(ivt_base + event.vector * 4, 4))
        ip, cs = ivt_entry
        ss_base = cpu.reg("ss") << 4
        sp = (cpu.reg("esp") - 6) & 0xFFFF
        frame = struct.pack("<HHH", cpu.eip & 0xFFFF, cpu.reg("cs"), cpu.eflags & 0xFFFF)
        self.mmu.write(ss_base + sp, frame)
        cpu.set_reg("esp", (cpu.reg("esp") & 0xFFFF0000) | sp)
        cpu.eflags = cpu.eflags & ~(EFLAGS_IF | EFLAGS_TF)
        cpu.set_reg("cs", cs)
        cpu.eip = ip
