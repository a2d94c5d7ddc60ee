"""A tiny SCRIPTS assembler, so the tests read like the programs a driver writes.

Each method appends one instruction (two or three dwords) to a :class:`Program`; an
address may be an integer or a label name, resolved by :meth:`Program.assemble`.
Encodings follow the LSI53C895A technical manual, chapter 6.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from devices.scsi.lsi_registers import AluOperator, Phase

DATA_OUT, DATA_IN, COMMAND, STATUS = Phase.DATA_OUT, Phase.DATA_IN, Phase.COMMAND, Phase.STATUS
MSG_OUT, MSG_IN = Phase.MSG_OUT, Phase.MSG_IN
MOV, SHL, OR, XOR, AND, SHR, ADD, ADC = (
    AluOperator.MOVE, AluOperator.SHL, AluOperator.OR, AluOperator.XOR,
    AluOperator.AND, AluOperator.SHR, AluOperator.ADD, AluOperator.ADC,
)


@dataclass
class Ref:
    """An address operand: a label or a number, absolute or relative to the next insn."""

    target: int | str
    relative: bool = False


@dataclass
class Program:
    base: int = 0x1000
    words: list[int | Ref] = field(default_factory=list)
    labels: dict[str, int] = field(default_factory=dict)
    _insn_ends: list[tuple[int, int]] = field(default_factory=list)  # (word index, end addr)

    # -- layout ----------------------------------------------------------------------------
    @property
    def here(self) -> int:
        return self.base + 4 * len(self.words)

    def label(self, name: str) -> Program:
        self.labels[name] = self.here
        return self

    def emit(self, *words: int | Ref) -> Program:
        start = len(self.words)
        self.words.extend(words)
        end = self.base + 4 * len(self.words)
        for index in range(start, len(self.words)):
            self._insn_ends.append((index, end))
        return self

    def address(self, name: str) -> int:
        return self.labels[name]

    def assemble(self) -> bytes:
        ends = dict(self._insn_ends)
        out = []
        for index, word in enumerate(self.words):
            if isinstance(word, Ref):
                value = self.labels[word.target] if isinstance(word.target, str) else word.target
                if word.relative:
                    value = (value - ends[index]) & 0xFFFFFF
                word = value
            out.append(word & 0xFFFFFFFF)
        return struct.pack(f"<{len(out)}I", *out)

    # -- block moves ---------------------------------------------------------------------------
    def move(self, count: int, phase: int, address: int | str) -> Program:
        """MOVE count, address, WHEN phase."""
        return self.emit(0x08000000 | phase << 24 | count, Ref(address))

    def move_indirect(self, count: int, phase: int, pointer: int) -> Program:
        """MOVE count, PTR pointer, WHEN phase."""
        return self.emit(0x28000000 | phase << 24 | count, pointer)

    def move_table(self, phase: int, dsa_offset: int) -> Program:
        """MOVE FROM dsa_offset, WHEN phase: {count, address} at DSA + offset."""
        return self.emit(0x18000000 | phase << 24, dsa_offset & 0xFFFFFF)

    # -- I/O -----------------------------------------------------------------------------------
    def select(self, target_id: int, alternate: int | str, *, atn: bool = True, relative: bool = False) -> Program:
        word = 0x40000000 | (1 << 24 if atn else 0) | (1 << 26 if relative else 0) | target_id << 16
        return self.emit(word, Ref(alternate, relative))

    def select_table(self, dsa_offset: int, alternate: int | str, *, atn: bool = True) -> Program:
        word = 0x42000000 | (1 << 24 if atn else 0) | (dsa_offset & 0xFFFFFF)
        return self.emit(word, Ref(alternate))

    def wait_disconnect(self) -> Program:
        return self.emit(0x48000000, 0)

    def wait_reselect(self, alternate: int | str) -> Program:
        return self.emit(0x50000000, Ref(alternate))

    @staticmethod
    def _lines(atn: bool, ack: bool, carry: bool, target: bool) -> int:
        return (1 << 3 if atn else 0) | (1 << 6 if ack else 0) | (1 << 10 if carry else 0) | (1 << 9 if target else 0)

    def set(self, *, atn: bool = False, ack: bool = False, carry: bool = False, target: bool = False) -> Program:
        return self.emit(0x58000000 | self._lines(atn, ack, carry, target), 0)

    def clear(self, *, atn: bool = False, ack: bool = False, carry: bool = False, target: bool = False) -> Program:
        return self.emit(0x60000000 | self._lines(atn, ack, carry, target), 0)

    @staticmethod
    def _register_word(opcode: int, register: int, operator: int, data8: int, use_sfbr: bool = False) -> int:
        return (
            0x40000000 | opcode << 27 | operator << 24 | (register & 0x7F) << 16
            | (register & 0x80) | (data8 & 0xFF) << 8 | (1 << 23 if use_sfbr else 0)
        )

    def sfbr_to_register(self, register: int, operator: int = OR, data8: int = 0) -> Program:
        """MOVE SFBR <op> data8 TO register."""
        return self.emit(self._register_word(5, register, operator, data8), 0)

    def register_to_sfbr(self, register: int, operator: int = OR, data8: int = 0) -> Program:
        """MOVE register <op> data8 TO SFBR."""
        return self.emit(self._register_word(6, register, operator, data8), 0)

    def modify(self, register: int, operator: int, data8: int = 0, *, use_sfbr: bool = False) -> Program:
        """MOVE register <op> data8 (or SFBR) TO register."""
        return self.emit(self._register_word(7, register, operator, data8, use_sfbr), 0)

    def load_immediate(self, register: int, value: int) -> Program:
        return self.modify(register, MOV, value)

    # -- transfer control -------------------------------------------------------------------
    def _tc(self, opcode: int, target: int | str, *, when: int | None = None, if_phase: int | None = None,
            data: int | None = None, mask: int = 0, carry: bool | None = None, negate: bool = False,
            relative: bool = False, intfly: bool = False) -> Program:
        word = 0x80000000 | opcode << 27
        true = not negate
        if when is not None:
            word |= when << 24 | 1 << 17 | 1 << 16
        if if_phase is not None:
            word |= if_phase << 24 | 1 << 17
        if data is not None:
            word |= 1 << 18 | (mask & 0xFF) << 8 | (data & 0xFF)
        if carry is not None:
            word |= 1 << 21
            true = carry if not negate else not carry
        if true:
            word |= 1 << 19
        if relative:
            word |= 1 << 23
        if intfly:
            word |= 1 << 20
        return self.emit(word, Ref(target, relative))

    def jump(self, target: int | str, **conditions) -> Program:
        return self._tc(0, target, **conditions)

    def call(self, target: int | str, **conditions) -> Program:
        return self._tc(1, target, **conditions)

    def ret(self, **conditions) -> Program:
        return self._tc(2, 0, **conditions)

    def int_(self, vector: int, **conditions) -> Program:
        return self._tc(3, vector, **conditions)

    def intfly(self, vector: int, **conditions) -> Program:
        return self._tc(3, vector, intfly=True, **conditions)

    def nop(self) -> Program:
        return self.emit(0x80000000, 0)  # JUMP if false, nothing compared: never jumps

    # -- memory ---------------------------------------------------------------------------------
    def memory_move(self, count: int, source: int, destination: int) -> Program:
        return self.emit(0xC0000000 | count, source, destination)

    def load(self, register: int, count: int, address: int, *, dsa_relative: bool = False) -> Program:
        return self.emit(0xE1000000 | (1 << 28 if dsa_relative else 0) | register << 16 | count, address & 0xFFFFFFFF)

    def store(self, register: int, count: int, address: int, *, dsa_relative: bool = False) -> Program:
        return self.emit(0xE0000000 | (1 << 28 if dsa_relative else 0) | register << 16 | count, address & 0xFFFFFFFF)
