"""The x86 CPU: a Unicorn engine in 32-bit mode plus what Unicorn does not expose.

Unicorn never runs QEMU's interrupt delivery, so three fields of QEMU's CPU state that
delivery would use or reset are reached here through the saved CPU context:

* ``error_code``: the error code of the exception just raised (#GP selector, #PF bits);
* ``exception_is_int``: set for ``INT n`` / ``INT3`` / ``INTO``, clear for faults;
* ``old_exception``: the "previous exception" that QEMU's double-fault logic consults.
  Delivery resets it; Unicorn never does, so a second, unrelated fault would come back
  as #DF (../shared/research/linux-on-unicorn.md, item 1). :meth:`Cpu.end_exception`
  resets it.

Their offsets inside the context are found once per process by raising known
exceptions in a scratch engine (:func:`context_offsets`), so a Unicorn build with a
different layout is detected instead of silently corrupted; tests/unicorn pins them.
"""

from __future__ import annotations

import ctypes
import functools
import struct
from dataclasses import dataclass

from unicorn import UC_ARCH_X86, UC_HOOK_INTR, UC_MODE_32, UC_PROT_ALL, Uc, UcError
from unicorn import x86_const as X
from unicorn.unicorn_py3.arch.intel import UcRegMMR
from unicorn.unicorn_py3.unicorn import uclib

# Registers saved in images and read in batches: the architectural state of a 32-bit PC.
GPRS = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi", "eip", "eflags")
SEGMENTS = ("es", "cs", "ss", "ds", "fs", "gs")
CONTROL = ("cr0", "cr2", "cr3", "cr4")
TABLES = ("gdtr", "idtr", "ldtr", "tr")
REG_ID = {name: getattr(X, f"UC_X86_REG_{name.upper()}") for name in GPRS + SEGMENTS + CONTROL + TABLES}

EFLAGS_TF = 1 << 8
EFLAGS_IF = 1 << 9
EFLAGS_DF = 1 << 10
EFLAGS_IOPL = 3 << 12
EFLAGS_NT = 1 << 14
EFLAGS_RF = 1 << 16
EFLAGS_VM = 1 << 17

CR0_PE = 1 << 0
CR0_WP = 1 << 16
CR0_PG = 1 << 31


@dataclass(frozen=True)
class ContextOffsets:
    """Byte offsets of QEMU's exception bookkeeping inside a Unicorn CPU context."""

    error_code: int
    exception_is_int: int
    old_exception: int
    segments: int  # env->segs[ES, CS, SS, DS, FS, GS]: selector, base, limit, flags
    size: int
    hflags: int  # env->hflags, whose HF_INHIBIT_IRQ bit is the STI / MOV SS shadow


SEGMENT_CACHE = struct.Struct("<I4xQII")  # QEMU's SegmentCache with a 64-bit base


def _context_bytes(uc: Uc) -> bytes:
    ctx = uc.context_save()
    return ctypes.string_at(ctx.context.value, ctx.size)


HF_INHIBIT_IRQ = 1 << 3  # QEMU's hflags bit: interrupts wait for one more instruction


def _scratch_machine(code: bytes) -> Uc:
    """A flat ring-0 scratch machine with ``code`` at 0x1000."""
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    uc.mem_map(0, 0x10000, UC_PROT_ALL)
    gdt = struct.pack("<QQQ", 0, 0x00CF9A000000FFFF, 0x00CF92000000FFFF)
    uc.mem_write(0x500, gdt)
    uc.reg_write(X.UC_X86_REG_GDTR, (0, 0x500, len(gdt) - 1, 0))
    uc.reg_write(X.UC_X86_REG_CR0, CR0_PE)
    uc.reg_write(X.UC_X86_REG_CS, 0x08)
    for seg in (X.UC_X86_REG_SS, X.UC_X86_REG_DS, X.UC_X86_REG_ES):
        uc.reg_write(seg, 0x10)
    uc.reg_write(X.UC_X86_REG_ESP, 0x9000)
    uc.mem_write(0x1000, code)
    return uc


def _probe(code: bytes) -> tuple[bytes, bytes]:
    """Run ``code`` at ring 0 in a flat scratch machine until its first exception."""
    uc = _scratch_machine(code)
    before = _context_bytes(uc)
    after: list[bytes] = []

    def on_interrupt(uc: Uc, intno: int, _user: object) -> None:
        after.append(_context_bytes(uc))
        uc.emu_stop()

    uc.hook_add(UC_HOOK_INTR, on_interrupt)
    uc.emu_start(0x1000, 0x2000, count=10)
    if not after:
        raise RuntimeError("Unicorn raised no exception in the context probe")
    return before, after[0]


def _offsets_holding(ctx: bytes, value: int) -> set[int]:
    packed = struct.pack("<i", value)
    return {off for off in range(0, len(ctx) - 3, 4) if ctx[off : off + 4] == packed}


@functools.cache
def context_offsets() -> ContextOffsets:
    """Locate error_code, exception_is_int and old_exception in Unicorn's context."""
    # mov ax, SEL; mov ds, ax  -> #GP(SEL): error_code = SEL, old_exception = 13
    _, gp1 = _probe(b"\x66\xb8\x38\x12\x8e\xd8\xf4")  # selector 0x1238
    _, gp2 = _probe(b"\x66\xb8\x70\x24\x8e\xc0\xf4")  # selector 0x2470 into ES
    _, soft = _probe(b"\xcd\x30\xf4")  # int 0x30
    error_code = _offsets_holding(gp1, 0x1238) & _offsets_holding(gp2, 0x2470)
    is_int = {o for o in _offsets_holding(soft, 1) if gp1[o : o + 4] == bytes(4)}
    old_exception = {
        o for o in _offsets_holding(gp1, 13) & _offsets_holding(gp2, 13)
        if soft[o : o + 4] == struct.pack("<i", -1)
    }
    # error_code and exception_is_int are adjacent ints in CPUX86State.
    pairs = sorted(o for o in error_code if o + 4 in is_int)
    if len(pairs) != 1 or len(old_exception) != 1:
        raise RuntimeError(
            "cannot locate Unicorn's exception state in its CPU context "
            f"(error_code {sorted(error_code)}, is_int {sorted(is_int)}, "
            f"old_exception {sorted(old_exception)}): unsupported Unicorn build"
        )
    return ContextOffsets(pairs[0], pairs[0] + 4, old_exception.pop(), _segments_offset(gp1), len(gp1),
                          _hflags_offset())


def _hflags_offset() -> int:
    """The word that holds HF_INHIBIT_IRQ right after STI and loses it one instruction
    later (cli; sti; nop; nop), with nothing else in it changing."""
    contexts = []
    for count in (2, 3):
        uc = _scratch_machine(b"\xfa\xfb\x90\x90\xf4")
        uc.emu_start(0x1000, 0x2000, count=count)
        contexts.append(_context_bytes(uc))
    shadow, after = contexts
    found = [
        off for off in range(0, len(shadow) - 3, 4)
        if struct.unpack_from("<I", shadow, off)[0] ^ struct.unpack_from("<I", after, off)[0] == HF_INHIBIT_IRQ
        and struct.unpack_from("<I", shadow, off)[0] & HF_INHIBIT_IRQ
    ]
    if len(found) != 1:
        raise RuntimeError(f"cannot locate Unicorn's hflags in its CPU context ({found}): unsupported Unicorn build")
    return found[0]


def _segments_offset(ctx: bytes) -> int:
    """Where the probe's ES=0x10, CS=0x08, SS=0x10, DS=0x10 (flat, limit 4 GiB) sit."""
    step = SEGMENT_CACHE.size
    found = []
    for off in range(0, len(ctx) - 6 * step + 1, 4):
        try:
            segs = [SEGMENT_CACHE.unpack_from(ctx, off + i * step) for i in range(4)]
        except struct.error:
            break
        if [seg[0] for seg in segs] == [0x10, 0x08, 0x10, 0x10] and all(
            seg[1] == 0 and seg[2] == 0xFFFFFFFF for seg in segs
        ):
            found.append(off)
    if len(found) != 1:
        raise RuntimeError(f"cannot locate the segment caches in Unicorn's CPU context ({found})")
    return found[0]


@dataclass(frozen=True)
class RaisedException:
    """What Unicorn reported for one exception or software interrupt."""

    vector: int
    eip: int  # the faulting instruction for faults, the next one for INT n / traps
    error_code: int
    software: bool  # INT n, INT3, INTO: privilege-checked against the gate's DPL


class ScalarRegisters:
    """Direct ``uc_reg_read``/``uc_reg_write`` for registers of up to 64 bits.

    The binding's generic ``reg_read`` costs about 3 us in Python; this costs under 1,
    and delivering one interrupt takes some twenty register accesses.
    """

    def __init__(self, uc: Uc) -> None:
        self._handle = uc._uch
        self._value = ctypes.c_uint64()
        self._pointer = ctypes.cast(ctypes.byref(self._value), ctypes.c_void_p)
        self._mmr = UcRegMMR()
        self._mmr_pointer = ctypes.cast(ctypes.byref(self._mmr), ctypes.c_void_p)
        self._uc_read = uclib.uc_reg_read
        self._uc_write = uclib.uc_reg_write

    def read(self, reg_id: int) -> int:
        self._value.value = 0  # 16- and 32-bit registers fill only the low bytes
        status = self._uc_read(self._handle, reg_id, self._pointer)
        if status:
            raise UcError(status)
        return self._value.value

    def read_table(self, reg_id: int) -> tuple[int, int, int, int]:
        """(selector, base, limit, flags) of GDTR, IDTR, LDTR or TR."""
        mmr = self._mmr
        status = self._uc_read(self._handle, reg_id, self._mmr_pointer)
        if status:
            raise UcError(status)
        return mmr.selector, mmr.base, mmr.limit, mmr.flags

    def write(self, reg_id: int, value: int) -> None:
        self._value.value = value & 0xFFFFFFFFFFFFFFFF
        status = self._uc_write(self._handle, reg_id, self._pointer)
        if status:
            raise UcError(status)


class Cpu:
    """Register access and exception bookkeeping around one Unicorn engine."""

    def __init__(self) -> None:
        self.offsets = context_offsets()
        self.uc = Uc(UC_ARCH_X86, UC_MODE_32)
        registers = ScalarRegisters(self.uc)
        self._read = registers.read
        self._write = registers.write
        self._read_table = registers.read_table
        self._shadow_context = None  # see in_interrupt_shadow

    # -- registers ------------------------------------------------------------
    def reg(self, name: str) -> int:
        return self._read(REG_ID[name])

    def set_reg(self, name: str, value: int) -> None:
        if name in TABLES:
            self.uc.reg_write(REG_ID[name], value)
        else:
            self._write(REG_ID[name], value)

    @property
    def eip(self) -> int:
        return self._read(X.UC_X86_REG_EIP)

    @eip.setter
    def eip(self, value: int) -> None:
        self._write(X.UC_X86_REG_EIP, value & 0xFFFFFFFF)

    @property
    def eflags(self) -> int:
        return self._read(X.UC_X86_REG_EFLAGS)

    @eflags.setter
    def eflags(self, value: int) -> None:
        self._write(X.UC_X86_REG_EFLAGS, value & 0xFFFFFFFF)

    @property
    def cpl(self) -> int:
        if not self._read(X.UC_X86_REG_CR0) & CR0_PE:
            return 0
        return self._read(X.UC_X86_REG_CS) & 3

    def table(self, name: str) -> tuple[int, int, int, int]:
        """(selector, base, limit, flags) of GDTR, IDTR, LDTR or TR."""
        return self._read_table(REG_ID[name])

    # -- exception bookkeeping ---------------------------------------------------
    def raised_exception(self, vector: int) -> RaisedException:
        """Describe the exception Unicorn just reported to the interrupt hook."""
        ctx = _context_bytes(self.uc)
        error_code, is_int = struct.unpack_from("<iI", ctx, self.offsets.error_code)
        return RaisedException(vector, self.eip, error_code & 0xFFFFFFFF, bool(is_int))

    def segment_caches(self) -> list[tuple[int, int, int, int]]:
        """(selector, base, limit, flags) of ES, CS, SS, DS, FS, GS: the hidden parts
        that ``reg_read`` does not show."""
        ctx = _context_bytes(self.uc)
        step = SEGMENT_CACHE.size
        return [SEGMENT_CACHE.unpack_from(ctx, self.offsets.segments + i * step) for i in range(6)]

    def set_segment_caches(self, caches: list[tuple[int, int, int, int]]) -> None:
        """Overwrite the hidden parts (after the selectors were loaded normally), for a
        state no descriptor table would give (a descriptor changed after the load)."""
        ctx = self.uc.context_save()
        step = SEGMENT_CACHE.size
        for i, cache in enumerate(caches):
            packed = SEGMENT_CACHE.pack(*cache)
            ctypes.memmove(ctx.context.value + self.offsets.segments + i * step, packed, len(packed))
        self.uc.context_restore(ctx)

    def in_interrupt_shadow(self) -> bool:
        """True right after STI (or a load of SS): the next instruction runs before an
        interrupt may be taken. Read from QEMU's own bookkeeping, so no guess from the
        code bytes can starve a guest of interrupts."""
        if self._shadow_context is None:  # one context, refreshed in place: no 5 KiB copies
            self._shadow_context = self.uc.context_save()
        else:
            self.uc.context_update(self._shadow_context)
        hflags = ctypes.c_uint32.from_address(self._shadow_context.context.value + self.offsets.hflags).value
        return bool(hflags & HF_INHIBIT_IRQ)

    def unmap(self, base: int, size: int) -> None:
        """``uc.mem_unmap`` without its side effects on the guest CPU.

        With paging on, Unicorn 2.1.4 looks the *physical* range up in the guest's page
        tables as if it were linear: where that misses it sets CR2 and records a page
        fault as the "previous exception", so the guest's next fault turns into #DF and
        the one after stops the CPU dead (QEMU's triple-fault path). Linux hits this
        when it disables a PCI BAR to size it. Called between slices only.
        """
        cr2 = self._read(X.UC_X86_REG_CR2)
        self.uc.mem_unmap(base, size)
        self._write(X.UC_X86_REG_CR2, cr2)
        self.end_exception()

    def end_exception(self) -> None:
        """Forget the previous exception, as QEMU's delivery would have."""
        ctx = self.uc.context_save()
        ctypes.c_int32.from_address(ctx.context.value + self.offsets.old_exception).value = -1
        self.uc.context_restore(ctx)

    # -- segment loads the architecture allows but Unicorn refuses ----------------
    def load_segments_for_privilege(self, cs: int, ss: int) -> bool:
        """Load CS and SS even when that lowers CPL (ring 3 -> ring 0 delivery).

        ``reg_write`` does a checked load that refuses a DPL-0 SS or CS while CPL is 3,
        so SS is first loaded with protection and paging off (which drops CPL to 0),
        then both are reloaded from the descriptor tables. Returns True when that detour
        was needed: Unicorn may then record an exception of its own, which the caller
        must forget with :meth:`end_exception`.
        """
        if self._read(X.UC_X86_REG_CS) == cs and self._read(X.UC_X86_REG_SS) == ss:
            return False  # same segments (an interrupt at the same privilege): no reload
        try:
            self._write(X.UC_X86_REG_SS, ss)
            self._write(X.UC_X86_REG_CS, cs)
            return False
        except UcError:
            pass
        cr0 = self._read(X.UC_X86_REG_CR0)
        cr2 = self._read(X.UC_X86_REG_CR2)  # kept: the detour must not be visible
        self._write(X.UC_X86_REG_CR0, cr0 & ~(CR0_PE | CR0_PG))
        self._write(X.UC_X86_REG_SS, 0)
        self._write(X.UC_X86_REG_CR0, cr0)
        self._write(X.UC_X86_REG_SS, ss)
        self._write(X.UC_X86_REG_CS, cs)
        self._write(X.UC_X86_REG_CR2, cr2)
        return True
