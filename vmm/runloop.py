"""The run loop: run the guest in slices, classify why each slice ended, act on it.

A slice ends when (1) the native block hook stops at a timer deadline or on request,
(2) Unicorn reports an exception or software interrupt (the INTR hook stops at once),
(3) an invalid opcode, (4) HLT, (5) a port hook needs the monitor (a string
instruction to finish, I/O refused with #GP, the debug-exit port). Between slices the
loop advances the devices to the current virtual time, delivers a pending exception
or, when EFLAGS.IF allows, the PIC's interrupt, and arms the next deadline.
"""

from __future__ import annotations

import collections
import enum
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from unicorn import UC_ERR_FETCH_UNMAPPED, UC_ERR_INSN_INVALID, UC_HOOK_BLOCK, UC_HOOK_INSN, UC_HOOK_INSN_INVALID, UC_HOOK_INTR, UcError
from unicorn import x86_const as X
from unicorn.unicorn_py3.unicorn import uc_hook_h, uclib

from vmm import native
from vmm.clock import NEVER, PreemptionTimer, VirtualClock
from vmm.cpu import EFLAGS_IF, Cpu
from vmm.cpuid import answer as cpuid_answer
from vmm.interrupts import GP, PF, UD, Event, InterruptDelivery, TripleFault
from vmm.native import FastState
from vmm.portio import PortIo

if TYPE_CHECKING:
    from vmm.machine import Machine


class ExitStatus(enum.IntEnum):
    """Exit statuses of ``vmm run`` reserved for the monitor (../shared/DESIGN.md)."""

    TRIPLE_FAULT = 100
    HALTED = 101
    TIME_LIMIT = 102
    INPUT_REFUSED = 103
    MONITOR_FAILURE = 104
    SUSPENDED = 105


PARKED = -1  # run() stopped so that the VM continues later or elsewhere: not an exit status


@dataclass
class RunResult:
    status: int
    reason: str  # one line for stderr when the monitor, not the guest, ended the run


class GuestStopped(Exception):
    """Raised inside the loop to end the run with a status."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class RunLoop:
    def __init__(self, machine: Machine, max_seconds: float | None) -> None:
        self.machine = machine
        self.cpu: Cpu = machine.cpu
        self.uc = machine.cpu.uc
        self.clock: VirtualClock = machine.clock
        self.fast: FastState = machine.fast
        self.delivery = InterruptDelivery(machine.cpu, machine.mmu)
        self.stats = machine.stats
        self.max_seconds = max_seconds
        self.pending_event: Event | None = None
        self.hook_error: BaseException | None = None
        self.extra_stop_interval_ns: int | None = None  # tests: preempt this often
        self.slices = 0
        self.suspend_to: str | None = None  # set (from any thread) to suspend there
        self.suspend_after: int | None = None  # suspend once the guest made this many exits
        self.suspend_image: str | None = None  # where --suspend-after and SIGUSR1 write
        self.suspended: str | None = None  # the image written, once suspended
        self.park_requested = False
        self.watch_suspend_signal = False  # SIGUSR1 suspends to suspend_image
        self._actions: collections.deque[Callable[[], None]] = collections.deque()
        self.timer = PreemptionTimer(self.fast)
        self._native = native.load()
        self._wall_limit: float | None = None
        self.portio = PortIo(
            machine.cpu, machine.mmu, machine.ports, self.uc.emu_stop, self._hook_failed
        )
        self._install_hooks()

    # -- hooks ----------------------------------------------------------------------
    def _install_hooks(self) -> None:
        fast = self.fast
        self._callbacks = (
            native.PORT_IN_FN(self.portio.port_in),
            native.PORT_OUT_FN(self.portio.port_out),
            native.IO_DENIED_FN(self.portio.io_denied),
        )
        fast.port_in, fast.port_out, fast.io_denied = self._callbacks
        fast.stop_at_bytes = NEVER
        user = native.ctypes.cast(native.ctypes.pointer(fast), native.ctypes.c_void_p)
        self._native_hook("vmm_block_hook", UC_HOOK_BLOCK, user)
        # Deterministic time counts every block; otherwise the hook only runs while a
        # stop is wanted (an engine without the gate runs it at every block).
        fast.hook_always = int(self.clock.deterministic or not native.gate_block_hook(self.uc, fast))
        self._native_hook("vmm_in_hook", UC_HOOK_INSN, user, X.UC_X86_INS_IN)
        self._native_hook("vmm_out_hook", UC_HOOK_INSN, user, X.UC_X86_INS_OUT)
        self.uc.hook_add(UC_HOOK_INSN, self._on_cpuid, None, 1, 0, X.UC_X86_INS_CPUID)
        self.uc.hook_add(UC_HOOK_INTR, self._on_interrupt)
        self.uc.hook_add(UC_HOOK_INSN_INVALID, self._on_invalid_opcode)
        self.uc.ctl_exits_enabled(True)  # emu_start's `until` is then ignored
        self.uc.ctl_set_exits([])

    def _native_hook(self, name: str, kind: int, user, *extra: int) -> None:
        handle = uc_hook_h()
        args = [native.ctypes.c_int(e) for e in extra]
        status = uclib.uc_hook_add(
            self.uc._uch, native.ctypes.byref(handle), kind,
            native.ctypes.c_void_p(native.hook_address(name)), user,
            native.ctypes.c_uint64(1), native.ctypes.c_uint64(0), *args,
        )
        if status:
            raise UcError(status)

    def _on_interrupt(self, uc, vector: int, _user) -> None:
        try:
            raised = self.cpu.raised_exception(vector)
            self.stats.count("exception" if not raised.software else "software interrupt")
            error_code = raised.error_code if vector in _ERROR_CODE_VECTORS and not raised.software else None
            cr2 = self.cpu.reg("cr2") if vector == PF and not raised.software else None
            start = self._software_interrupt_start(vector, raised.eip) if raised.software else None
            self.pending_event = Event(
                vector, error_code, software=raised.software, cr2=cr2,
                instruction_eip=start, from_cpu=not raised.software,
            )
        except BaseException as exc:
            self.hook_error = exc
        uc.emu_stop()

    def _software_interrupt_start(self, vector: int, next_eip: int) -> int:
        """Where INT3 / INTO (one byte) or INT imm8 (two bytes) began."""
        one_byte = {3: b"\xcc", 4: b"\xce", 1: b"\xf1"}.get(vector)
        try:
            before = self.machine.mmu.read(next_eip - 1, 1, self.cpu.cpl == 3)
        except Exception:
            before = b""
        return next_eip - 1 if one_byte is not None and before == one_byte else next_eip - 2

    def _on_cpuid(self, uc, _user) -> int:
        """CPUID from this machine's table (vmm/cpuid.py): no APIC, no SYSENTER."""
        cpu = self.cpu
        values = cpuid_answer(cpu.reg("eax"), cpu.reg("ecx"))
        for name, value in zip(("eax", "ebx", "ecx", "edx"), values):
            cpu.set_reg(name, value)
        self.stats.count("cpuid")
        return 1  # skip Unicorn's own CPUID

    def _on_invalid_opcode(self, uc, _user) -> bool:
        self.pending_event = Event(UD)
        self.stats.count("exception")
        return False  # emulation stops with UC_ERR_INSN_INVALID

    def _hook_failed(self, exc: BaseException) -> None:
        if self.hook_error is None:
            self.hook_error = exc
        self.uc.emu_stop()

    # -- the loop ---------------------------------------------------------------------
    def run(self) -> RunResult:
        """Run until the VM ends, is suspended, or is parked (:meth:`request_park`);
        after a park, ``run()`` continues exactly where the guest was, on any thread."""
        if self.max_seconds is not None and self._wall_limit is None:
            self._wall_limit = time.monotonic() + self.max_seconds
        if self.watch_suspend_signal:
            self._native.vmm_watch_suspend_signal(native.ctypes.addressof(self.fast))
        try:
            while True:
                self._between_slices()
                self._run_slice()
        except GuestStopped as stop:
            return RunResult(stop.status, stop.reason)
        finally:
            if self.watch_suspend_signal:
                self._native.vmm_watch_suspend_signal(None)
            self.machine.flush_output()

    def close(self) -> None:
        """The VM is done with this loop: release the preemption timer."""
        self.timer.close()

    def request_park(self) -> None:
        """From any thread: end ``run()`` with PARKED at the next slice boundary (a
        guest waiting in HLT for a frame or a key is put back on its HLT)."""
        self.park_requested = True
        self.fast.request_stop()
        self.machine.wake()

    def request_action(self, action: Callable[[], None]) -> None:
        """From any thread: run ``action`` at the next slice boundary, on the loop's
        thread (checkpoints are taken so)."""
        self._actions.append(action)
        self.fast.request_stop()

    def _between_slices(self) -> None:
        machine = self.machine
        if machine.exit_code is not None:
            raise GuestStopped(min(machine.exit_code, 99), "")
        self._check_wall_limit()
        machine.advance_devices(self.clock.now_ns())
        self._deliver_exception()
        # Actions, parks and suspends happen here: no exception is half delivered, and
        # an interrupt the devices raised waits in the PIC (it travels in an image).
        self._at_boundary()
        self._deliver_interrupt()
        self._arm(machine.next_deadline_ns())

    # -- suspend ------------------------------------------------------------------------
    def exits(self) -> int:
        """Every time the guest trapped to the monitor: port and MMIO accesses, and the
        slices that ended for an exception, an interrupt, a HLT or a timer."""
        return self.portio.exits + self.machine.mmio.count + self.slices

    def request_suspend(self, image: str) -> None:
        """From any thread: suspend to ``image`` at the next slice boundary."""
        self.suspend_to = image
        self.fast.request_stop()

    def _at_boundary(self) -> None:
        """Run requested actions, then park or suspend if asked."""
        if self.watch_suspend_signal and self._native.vmm_take_suspend_signal():
            self.suspend_to = self.suspend_to or self.suspend_image
        while self._actions:
            self._actions.popleft()()
        if self.suspend_to is None and self.park_requested:
            self.park_requested = False
            raise GuestStopped(PARKED, "parked")
        if self.suspend_to is None and self.suspend_after is not None and self.exits() >= self.suspend_after:
            self.suspend_to = self.suspend_image
        if self.suspend_to is None:
            self._arm_exit_alarm()
            return
        from vmm.snapshot import suspend

        path, self.suspend_to = self.suspend_to, None
        size = suspend(self.machine, path)
        self.suspended = path
        raise GuestStopped(ExitStatus.SUSPENDED, f"suspended to {path} ({size} bytes)")

    def _arm_exit_alarm(self) -> None:
        """With --suspend-after, stop at the block boundary after the Nth port exit."""
        if self.suspend_after is None:
            return
        others = self.machine.mmio.count + self.slices
        self.portio.alarm_at = self.suspend_after - others
        self.portio.alarm = self._exit_alarm

    def _exit_alarm(self) -> None:
        self.fast.request_stop()

    def _deliver(self, event: Event) -> None:
        try:
            self.delivery.deliver(event)
        except TripleFault as fault:
            raise GuestStopped(ExitStatus.TRIPLE_FAULT, str(fault)) from None

    def _deliver_exception(self) -> None:
        if self.pending_event is not None:
            event, self.pending_event = self.pending_event, None
            self._deliver(event)

    def _deliver_interrupt(self) -> None:
        pic = self.machine.pic
        pending = pic.interrupt_pending()
        # Masked by EFLAGS.IF: the native hook stops as soon as the guest sets it.
        self.fast.irq_window = int(pending and not self.cpu.eflags & EFLAGS_IF)
        if not pending or self.fast.irq_window:
            return
        if self.cpu.in_interrupt_shadow():
            # Right after STI (`sti; hlt` must halt first): let one block run (the
            # block after STI is that one instruction) and come back.
            self.fast.request_stop()
            return
        vector = pic.acknowledge()
        self.stats.count("interrupt")
        self._deliver(Event(vector, external=True))

    def _arm(self, deadline_ns: int | None) -> None:
        # A device deadline only matters once the guest can take the interrupt, so the
        # native hook lets it wait for EFLAGS.IF; forced stops and the wall limit don't.
        waits_for_if = True
        if self.extra_stop_interval_ns is not None:
            forced = self.clock.now_ns() + self.extra_stop_interval_ns
            if deadline_ns is None or forced <= deadline_ns:
                deadline_ns, waits_for_if = forced, False
        wall: float | None = None
        if self.clock.deterministic:
            self.fast.stop_at_bytes = NEVER if deadline_ns is None else self.clock.code_bytes_at(deadline_ns)
        elif deadline_ns is not None:
            wall = self.clock.wall_deadline(deadline_ns)
        if self._wall_limit is not None and (wall is None or self._wall_limit <= wall):
            wall, waits_for_if = self._wall_limit, False
        self.fast.timer_waits_for_if = waits_for_if
        self.timer.arm(wall)

    def _run_slice(self) -> None:
        fast = self.fast
        self.slices += 1
        fast.stopped_in_block_hook = 0
        fast.first_block = 1
        fast.hook_gate = 1  # the first block's hook closes it unless a stop is pending
        machine = self.machine
        machine.begin_slice()
        try:
            self.uc.emu_start(self.cpu.eip, 0)
        except UcError as err:
            if err.errno == UC_ERR_INSN_INVALID and self.pending_event is not None:
                return
            if err.errno == UC_ERR_FETCH_UNMAPPED:
                # Code fetched from the open bus reads 0xFF 0xFF: an invalid opcode.
                self.stats.count("exception")
                self.pending_event = Event(UD)
                return
            raise GuestStopped(
                ExitStatus.MONITOR_FAILURE, f"the CPU stopped at EIP {self.cpu.eip:#x}: {err}"
            ) from None
        finally:
            machine.end_slice()
        if self.hook_error is not None:
            error, self.hook_error = self.hook_error, None
            raise error
        if self.portio.fixup is not None:
            self._finish_string_instruction()
            return
        if fast.io_fault:
            self._refuse_io()
            return
        if fast.stopped_in_block_hook:
            self.stats.count("preempt")
            return
        if self.pending_event is not None or self.machine.exit_code is not None:
            return
        # A stop the monitor asked for from a port hook lands only at the next memory
        # access or block end, so the guest may have reached a HLT meanwhile.
        self.machine.stop_pending = False
        if self._at_hlt():
            self._halt()

    def _finish_string_instruction(self) -> None:
        fix, self.portio.fixup = self.portio.fixup, None
        self.stats.count("string I/O")
        cpu = self.cpu
        cpu.set_reg("ecx", fix.ecx)
        cpu.set_reg("esi", fix.esi)
        cpu.set_reg("edi", fix.edi)
        cpu.eip = fix.eip

    def _refuse_io(self) -> None:
        """#GP(0) at an I/O instruction that CPL, IOPL and the TSS bitmap refuse."""
        fast = self.fast
        saved, self.portio.denied_registers = self.portio.denied_registers, None
        for name, value in (saved or {}).items():
            self.cpu.set_reg(name, value)
        fast.io_fault = 0
        self.cpu.eip = fast.io_fault_eip
        self.stats.count("exception")
        self.pending_event = Event(GP, 0)

    def _at_hlt(self) -> bool:
        try:
            return self.machine.mmu.read(self.cpu.eip - 1, 1, self.cpu.cpl == 3) == b"\xf4"
        except Exception:
            return False

    def _halt(self) -> None:
        """HLT: wait for an interrupt.

        When nothing outside the VM can wake it, virtual time skips straight to the next
        device deadline. When a frame or a key may still arrive, the wait is real: up to
        the deadline's distance in host time, ending early when something arrives, so a
        peer on the network gets the time to answer before the guest's timers run out.
        """
        self.stats.count("hlt")
        machine = self.machine
        if not self.cpu.eflags & EFLAGS_IF:
            raise GuestStopped(ExitStatus.HALTED, f"the guest halted with interrupts disabled at EIP {self.cpu.eip - 1:#x}")
        started = self.clock.now_ns()
        while not machine.pic.interrupt_pending():
            self._check_wall_limit()
            if self.park_requested:  # back onto the HLT: it halts again where the VM goes
                self.park_requested = False
                self.cpu.eip = self.cpu.eip - 1
                raise GuestStopped(PARKED, "parked in HLT")
            deadline = machine.next_deadline_ns()
            if deadline is not None and deadline - started > MAX_HALT_SKIP_NS:
                raise GuestStopped(ExitStatus.HALTED, "the guest halted with every timer interrupt masked")
            if machine.external_input_possible():
                wait = None if deadline is None else max(0.0, (deadline - self.clock.now_ns()) / 1e9)
                remaining = self._remaining_wall()
                if remaining is not None:
                    wait = remaining if wait is None else min(wait, remaining)
                arrived = machine.wait_for_external(wait)
                if not arrived and deadline is not None:
                    self.clock.skip_to(deadline)  # a no-op in wall mode: the time has passed
            elif deadline is not None:
                self.clock.skip_to(deadline)
            else:
                raise GuestStopped(ExitStatus.HALTED, "the guest halted and no interrupt can ever wake it")
            machine.advance_devices(self.clock.now_ns())

    def _check_wall_limit(self) -> None:
        if self._wall_limit is not None and time.monotonic() >= self._wall_limit:
            raise GuestStopped(ExitStatus.TIME_LIMIT, f"stopped after --max-seconds {self.max_seconds:g}")

    def _remaining_wall(self) -> float | None:
        if self._wall_limit is None:
            return None
        return max(0.0, self._wall_limit - time.monotonic())


# A halted guest whose timers keep expiring while none reaches the CPU will never wake.
MAX_HALT_SKIP_NS = 3600 * 10**9
_ERROR_CODE_VECTORS = frozenset({8, 10, 11, 12, 13, 14, 17})
