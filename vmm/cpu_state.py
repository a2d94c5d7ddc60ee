"""The whole architectural state of the CPU as plain data, and back.

A suspended VM keeps: general registers, EIP, EFLAGS, the six segment registers with
their hidden descriptor caches, CR0/2/3/4, GDTR/IDTR/LDTR/TR, the debug registers, the
x87 and SSE state, and the MSRs a 32-bit guest can use. Never Unicorn's context bytes:
they hold host pointers and are only valid in the process that made them.

Restoring goes through Unicorn's checked loads wherever it can, in an order the checks
accept: control and table registers first, then data segments and CS at CPL 0, then SS
(for a ring-3 state through a brief virtual-8086 load, which is the one way Unicorn lets
CPL become 3 without running guest code), and last the hidden caches, patched in place
when a descriptor changed after the guest loaded it.
"""

from __future__ import annotations

from typing import Any

from unicorn import UcError
from unicorn import x86_const as X

from vmm.cpu import EFLAGS_VM, Cpu

STATE_VERSION = 1
GENERAL = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")
SEGMENT_ORDER = ("es", "cs", "ss", "ds", "fs", "gs")  # as in QEMU's segs[]
DEBUG = tuple(getattr(X, f"UC_X86_REG_DR{i}") for i in (0, 1, 2, 3, 6, 7))
FPU_FP = tuple(getattr(X, f"UC_X86_REG_FP{i}") for i in range(8))
SSE = tuple(getattr(X, f"UC_X86_REG_XMM{i}") for i in range(8))
# The MSRs a 32-bit guest without an APIC reaches: SYSENTER, PAT, and the TSC.
MSRS = {"sysenter_cs": 0x174, "sysenter_esp": 0x175, "sysenter_eip": 0x176, "pat": 0x277}


def save_cpu_state(cpu: Cpu) -> dict[str, Any]:
    uc = cpu.uc
    state: dict[str, Any] = {"version": STATE_VERSION}
    state["general"] = {name: cpu.reg(name) for name in GENERAL}
    state["eip"] = cpu.eip
    state["eflags"] = cpu.eflags
    state["control"] = {name: cpu.reg(name) for name in ("cr0", "cr2", "cr3", "cr4")}
    state["tables"] = {name: list(cpu.table(name)) for name in ("ldtr", "tr")}
    for name in ("gdtr", "idtr"):  # base and limit only: the other fields mean nothing
        _, base, limit, _ = cpu.table(name)
        state["tables"][name] = [0, base, limit, 0]
    state["segments"] = [list(cache) for cache in cpu.segment_caches()]
    state["debug"] = [uc.reg_read(reg) for reg in DEBUG]
    state["fpu"] = {
        "fpcw": uc.reg_read(X.UC_X86_REG_FPCW),
        "fpsw": uc.reg_read(X.UC_X86_REG_FPSW),
        "fptag": uc.reg_read(X.UC_X86_REG_FPTAG),
        "st": [list(uc.reg_read(reg)) for reg in FPU_FP],
    }
    state["sse"] = {"mxcsr": uc.reg_read(X.UC_X86_REG_MXCSR), "xmm": [uc.reg_read(reg) for reg in SSE]}
    state["msr"] = {name: uc.msr_read(number) for name, number in MSRS.items()}
    return state


def load_cpu_state(cpu: Cpu, state: dict[str, Any]) -> None:
    """Put ``state`` (from :func:`save_cpu_state`) into ``cpu``."""
    if state.get("version") != STATE_VERSION:
        raise ValueError(f"CPU state version {state.get('version')} is not {STATE_VERSION}")
    uc = cpu.uc
    control = state["control"]
    cpu.set_reg("cr4", control["cr4"])
    cpu.set_reg("cr3", control["cr3"])
    cpu.set_reg("cr0", control["cr0"])
    for name in ("gdtr", "idtr", "ldtr", "tr"):
        cpu.set_reg(name, tuple(state["tables"][name]))
    for reg, value in zip(DEBUG, state["debug"]):
        uc.reg_write(reg, value)
    fpu = state["fpu"]
    uc.reg_write(X.UC_X86_REG_FPCW, fpu["fpcw"])
    uc.reg_write(X.UC_X86_REG_FPSW, fpu["fpsw"])
    uc.reg_write(X.UC_X86_REG_FPTAG, fpu["fptag"])
    for reg, value in zip(FPU_FP, fpu["st"]):
        uc.reg_write(reg, tuple(value))
    uc.reg_write(X.UC_X86_REG_MXCSR, state["sse"]["mxcsr"])
    for reg, value in zip(SSE, state["sse"]["xmm"]):
        uc.reg_write(reg, value)
    for name, number in MSRS.items():
        uc.msr_write(number, state["msr"][name])
    _load_segments(cpu, state)
    for name, value in state["general"].items():
        cpu.set_reg(name, value)
    cpu.set_reg("cr2", control["cr2"])
    cpu.eflags = state["eflags"]
    cpu.eip = state["eip"]


def _load_segments(cpu: Cpu, state: dict[str, Any]) -> None:
    caches = [tuple(cache) for cache in state["segments"]]
    selectors = dict(zip(SEGMENT_ORDER, (cache[0] for cache in caches)))
    protected = state["control"]["cr0"] & 1 and not state["eflags"] & EFLAGS_VM
    if protected:
        for name in ("ds", "es", "fs", "gs", "cs"):  # all loadable at CPL 0
            _try_load(cpu, name, selectors[name])
        ss_dpl = (caches[2][3] >> 13) & 3
        if ss_dpl == 3:
            _enter_cpl3(cpu)
        _try_load(cpu, "ss", selectors["ss"])
    else:
        for name in SEGMENT_ORDER:
            _try_load(cpu, name, selectors[name])
    if cpu.segment_caches() != caches:
        cpu.set_segment_caches(caches)


def _enter_cpl3(cpu: Cpu) -> None:
    """Make CPL 3 without running guest code: in virtual-8086 mode every segment load
    has DPL 3, and CPL follows SS."""
    eflags = cpu.eflags
    cpu.eflags = eflags | EFLAGS_VM
    cpu.set_reg("ss", 0)
    cpu.eflags = eflags & ~EFLAGS_VM


def _try_load(cpu: Cpu, name: str, selector: int) -> None:
    """A checked load; a selector the tables refuse (null SS at ring 3, a descriptor
    gone since) keeps whatever loaded, and the cache patch restores the saved one."""
    try:
        cpu.set_reg(name, selector)
    except UcError:
        pass
