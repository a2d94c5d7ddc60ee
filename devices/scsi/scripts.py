"""The LSI53C895A SCRIPTS processor: fetches two- or three-dword instructions at DSP
through the controller's bus-master path and executes them (technical manual chapter 6,
"SCSI SCRIPTS Instruction Set").

Instruction classes: block moves (direct, indirect, table indirect) in every phase; I/O
instructions (SELECT, WAIT DISCONNECT, WAIT RESELECT, SET, CLEAR, register moves and
read-modify-write); transfer control (JUMP, CALL, RETURN, INT, INTFLY) with carry, phase
and data compares; memory-to-memory move; LOAD and STORE.

The processor is bounded: :meth:`ScriptsProcessor.run` executes at most a given number of
instructions and returns, leaving the engine RUNNING so the machine resumes it in its next
time slice; a guest's endless loop costs it time, never the monitor's control. Guest
mistakes end as the chip ends them: DSTAT.IID for an illegal instruction, DSTAT.BF for a
DMA nobody decodes, SIST0.MA for a phase mismatch, never as a Python exception.
"""

from __future__ import annotations

import enum
import struct
from typing import TYPE_CHECKING, Any

from devices.base import DmaError
from devices.scsi import lsi_registers as R
from devices.scsi.lsi_registers import Dstat, IoOpcode, Phase, Sist0, Sist1, TcOpcode

if TYPE_CHECKING:
    from devices.scsi.lsi53c895a import Lsi53c895a

MASK32 = 0xFFFFFFFF
IN_PHASES = (Phase.DATA_IN, Phase.STATUS, Phase.MSG_IN, Phase.RESERVED_IN)
DATA_PHASES = (Phase.DATA_IN, Phase.DATA_OUT)


class EngineState(enum.Enum):
    """Where the SCRIPTS processor is; saved with the machine."""

    STOPPED = "stopped"  # idle, or halted by an interrupt
    RUNNING = "running"  # runnable: the next slice continues at DSP
    WAIT_RESELECT = "wait-reselect"  # in WAIT RESELECT, until ISTAT.SIGP
    WAIT_PHASE = "wait-phase"  # a bus instruction with no target connected: REQ never comes


def sext24(value: int) -> int:
    """The signed 24-bit displacement of relative and table-indirect operands."""
    value &= 0xFFFFFF
    return value - 0x1000000 if value & 0x800000 else value


class ScriptsProcessor:
    """Executes the guest's SCRIPTS for one controller (its registers, bus and DMA)."""

    def __init__(self, chip: Lsi53c895a) -> None:
        self.chip = chip
        self.state = EngineState.STOPPED
        self.executed = 0  # instructions since power-on, for statistics
        self._active = False  # inside run(): a restart from within only sets RUNNING

    # -- control ------------------------------------------------------------------------------
    def stop(self) -> None:
        self.state = EngineState.STOPPED

    def run(self, budget: int) -> int:
        """Execute up to ``budget`` instructions while RUNNING; returns how many ran.

        Never re-entered: a program that restarts itself through its own registers (a
        memory move onto ISTAT.SRST and DSP) continues in this loop, within the budget.
        """
        if self._active:
            return 0
        chip = self.chip
        count = 0
        self._active = True
        try:
            while self.state is EngineState.RUNNING and count < budget:
                count += 1
                self.step()
                if self.state is EngineState.RUNNING and chip.regs.dcntl & R.Dcntl.SSM:
                    chip.dma_interrupt(Dstat.SSI)  # single step: stop after each instruction
        finally:
            self._active = False
        self.executed += count
        return count

    def step(self) -> None:
        """Fetch and execute one instruction."""
        chip = self.chip
        r = chip.regs
        try:
            insn, operand = struct.unpack("<II", chip.bus_read(r.dsp, 8))
        except DmaError:
            chip.dma_interrupt(Dstat.BF)  # DSP still points at the instruction
            return
        r.dcmd = insn >> 24
        r.dbc = insn & R.BM_COUNT_MASK
        r.dsps = operand
        r.dsp = (r.dsp + 8) & MASK32
        try:
            kind = insn >> 30
            if kind == R.InsnType.BLOCK_MOVE:
                self._block_move(insn, operand)
            elif kind == R.InsnType.IO:
                self._io(insn, operand)
            elif kind == R.InsnType.TRANSFER_CONTROL:
                self._transfer_control(insn, operand)
            elif insn & R.MEM_LOAD_STORE:
                self._load_store(insn, operand)
            else:
                self._memory_move(insn, operand)
        except DmaError:
            chip.dma_interrupt(Dstat.BF)

    def _illegal(self) -> None:
        self.chip.dma_interrupt(Dstat.IID)

    def _read32(self, address: int) -> int:
        return struct.unpack("<I", self.chip.bus_read(address & MASK32, 4))[0]

    # -- block move -----------------------------------------------------------------------------
    def _block_move(self, insn: int, operand: int) -> None:
        chip = self.chip
        r = chip.regs
        if r.sist1 & Sist1.STO:
            self.stop()  # a selection timed out: halt at the first bus instruction
            return
        count = insn & R.BM_COUNT_MASK
        address = operand
        r.ia = (r.dsp - 8) & MASK32
        if insn & R.BM_INDIRECT:
            address = self._read32(operand)
        elif insn & R.BM_TABLE_INDIRECT:
            entry = chip.bus_read((r.dsa + sext24(operand)) & MASK32, 8)
            head, address = struct.unpack("<II", entry)
            count = head & R.BM_COUNT_MASK
            # 40-bit mode: address bits 39:32 in the table's top byte (QEMU); the 64-bit
            # selector mode is not modelled (its selectors are taken as zero).
            r.dnad64 = head >> 24 if (r.ccntl1 & R.CCNTL1_40BIT) == R.CCNTL1_40BIT else 0
            if r.dnad64:
                raise DmaError("block move above 4 GiB")
        elif r.ccntl1 & R.Ccntl1.EN64DBMV:
            r.dbms = self._read32(r.dsp)  # 64-bit direct moves carry a third dword
            r.dsp = (r.dsp + 4) & MASK32
            if r.dbms:
                raise DmaError("block move above 4 GiB")
        r.dbc = count
        r.dnad = address
        r.rbc = count
        if count == 0:
            self._illegal()  # the manual: a block move of zero bytes is illegal
            return
        bus = chip.bus
        if not bus.connected:
            self.state = EngineState.WAIT_PHASE  # REQ never comes; ISTAT.ABRT ends it
            return
        phase = (insn >> 24) & R.PHASE_MASK
        if bus.phase != phase:
            self._phase_mismatch(phase)
            return
        moved = self._move(phase, address, count)
        remaining = count - moved
        if remaining and phase not in DATA_PHASES:
            # QEMU ends a COMMAND, STATUS or MESSAGE move when the target moves on, with
            # no phase mismatch: only data moves must match the transfer exactly.
            remaining = 0
        r.dbc = remaining
        r.dnad = (address + moved) & MASK32
        r.dfifo = remaining & 0xFF  # nothing is left in the DMA FIFO
        r.ctest5 = (r.ctest5 & ~R.Ctest5.BO_MASK) | ((remaining >> 8) & R.Ctest5.BO_MASK)
        r.sbc = moved
        r.csbc = (r.csbc + moved) & MASK32
        r.ua = r.dnad
        if remaining:
            self._phase_mismatch(phase)  # the target went on to STATUS

    def _move(self, phase: int, address: int, count: int) -> int:
        """Move bytes between memory and the bus in ``phase``; returns how many moved."""
        chip = self.chip
        r = chip.regs
        bus = chip.bus
        if phase in IN_PHASES:
            data = bus.take_in(count)
            if data:
                if phase in (Phase.STATUS, Phase.MSG_IN):
                    r.sfbr = data[0]
                if phase == Phase.MSG_IN:
                    r.sidl = data[-1]  # Linux reads the last message byte from SIDL
                chip.bus_write(address, data)
            return len(data)
        wanted = bus.wanted_out(count)
        data = chip.bus_read(address, wanted)
        taken = bus.give_out(data)
        if taken and phase == Phase.COMMAND:
            r.sfbr = data[0]  # the opcode, as QEMU leaves it
        elif taken and phase == Phase.MSG_OUT:
            r.sfbr = data[taken - 1]  # the last message byte sent
        if phase == Phase.MSG_OUT and taken == count:
            r.socl &= ~R.Socl.ATN  # ATN drops with the last byte of a MSG OUT move
        return taken

    def _phase_mismatch(self, phase: int) -> None:
        """The target is in another phase: SIST0.MA, or QEMU's phase mismatch jump."""
        r = self.chip.regs
        if r.ccntl0 & R.Ccntl0.ENPMJ:
            outbound = phase not in IN_PHASES
            if r.ccntl0 & R.Ccntl0.PMJCTL:
                r.dsp = r.pmjad1 if outbound else r.pmjad2
            else:
                r.dsp = r.pmjad2 if r.scntl2 & R.Scntl2.WSR else r.pmjad1
            return
        self.chip.scsi_interrupt(sist0=Sist0.MA)

    # -- I/O instructions ----------------------------------------------------------------------
    def _io(self, insn: int, operand: int) -> None:
        opcode = (insn >> 27) & 7
        if opcode >= IoOpcode.MOVE_SFBR_TO_REGISTER:
            self._register_operation(insn, opcode)
            return
        chip = self.chip
        r = chip.regs
        address = operand
        if insn & R.IO_RELATIVE:
            address = (r.dsp + sext24(operand)) & MASK32
        r.dnad = address
        if opcode == IoOpcode.SELECT:
            self._select(insn, address)
        elif opcode == IoOpcode.WAIT_DISCONNECT:
            chip.bus.disconnect()  # QEMU: the connection ends here
            r.socl &= ~R.Socl.ATN
            r.ack = False
        elif opcode == IoOpcode.WAIT_RESELECT:
            if r.istat & R.Istat.SIGP:
                r.dsp = address  # SIGP already set: take the alternate address
            elif chip.bus.connected:
                pass  # already reselected (QEMU): go on with the next instruction
            else:
                target_id = chip.bus.reselect()
                if target_id is None:
                    self.state = EngineState.WAIT_RESELECT  # until ISTAT.SIGP
                else:
                    chip.reselected(target_id)
        elif opcode == IoOpcode.SET:
            if insn & R.IO_SET_ATN:
                r.socl |= R.Socl.ATN
                chip.bus.set_atn()
            if insn & R.IO_SET_ACK:
                r.ack = True
            if insn & R.IO_SET_CARRY:
                r.carry = 1
        else:  # CLEAR
            if insn & R.IO_SET_ATN:
                r.socl &= ~R.Socl.ATN
                chip.bus.clear_atn()
            if insn & R.IO_SET_ACK:
                r.ack = False
            if insn & R.IO_SET_CARRY:
                r.carry = 0

    def _select(self, insn: int, alternate: int) -> None:
        chip = self.chip
        r = chip.regs
        if insn & R.IO_TABLE_INDIRECT:
            entry = self._read32(r.dsa + sext24(insn))
            target_id = (entry >> 16) & 0x0F
            r.scntl3 = (entry >> 24) & 0xFF  # the table also loads SCNTL3 and SXFER
            r.sxfer = (entry >> 8) & 0xFF
        else:
            target_id = (insn >> 16) & 0x0F
        r.sdid = target_id
        if chip.bus.connected:
            r.dsp = alternate  # already connected (QEMU: reselected): alternate address
            return
        r.sstat0 |= R.Sstat0.WOA
        r.scntl1 &= ~R.Scntl1.IARB
        atn = bool(insn & R.IO_SELECT_ATN)
        wide = bool(r.scntl3 & R.Scntl3.EWS)
        own_id = r.scid & R.Scid.ID_MASK
        if target_id == own_id or not chip.bus.select(target_id, atn, wide):
            chip.scsi_interrupt(sist1=Sist1.STO)  # nobody answered within STIME0
            return
        if atn:
            r.socl |= R.Socl.ATN

    def _register_operation(self, insn: int, opcode: int) -> None:
        """MOVE SFBR TO reg / MOVE reg TO SFBR / read-modify-write, with QEMU's ALU."""
        chip = self.chip
        r = chip.regs
        register = ((insn >> 16) & 0x7F) | (insn & 0x80)
        data8 = (insn >> 8) & 0xFF
        operator = (insn >> 24) & 7
        op0 = 0
        if opcode == IoOpcode.MOVE_SFBR_TO_REGISTER:
            op0, op1 = r.sfbr, data8
        elif opcode == IoOpcode.MOVE_REGISTER_TO_SFBR:
            if operator:
                op0 = chip.read_register(register)
            op1 = data8
        else:
            if operator:
                op0 = chip.read_register(register)
            op1 = r.sfbr if insn & R.RW_USE_SFBR else data8
        if operator == R.AluOperator.MOVE:
            result = op1
        elif operator == R.AluOperator.SHL:
            result = ((op0 << 1) | r.carry) & 0xFF
            r.carry = op0 >> 7
        elif operator == R.AluOperator.OR:
            result = op0 | op1
        elif operator == R.AluOperator.XOR:
            result = op0 ^ op1
        elif operator == R.AluOperator.AND:
            result = op0 & op1
        elif operator == R.AluOperator.SHR:
            result = (op0 >> 1) | (r.carry << 7)
            r.carry = op0 & 1
        elif operator == R.AluOperator.ADD:
            total = op0 + op1
            result, r.carry = total & 0xFF, int(total > 0xFF)
        else:  # ADC
            total = op0 + op1 + r.carry
            result, r.carry = total & 0xFF, int(total > 0xFF)
        if opcode == IoOpcode.MOVE_REGISTER_TO_SFBR:
            r.sfbr = result
        else:
            chip.write_register(register, result)

    # -- transfer control ---------------------------------------------------------------------
    def _transfer_control(self, insn: int, operand: int) -> None:
        chip = self.chip
        r = chip.regs
        opcode = (insn >> 27) & 7
        compares = insn & (R.TC_CARRY_TEST | R.TC_COMPARE_DATA | R.TC_COMPARE_PHASE)
        if (
            opcode > TcOpcode.INT
            or insn & R.TC_RESERVED
            or (insn & R.TC_CARRY_TEST and compares & (R.TC_COMPARE_DATA | R.TC_COMPARE_PHASE))
        ):
            self._illegal()
            return
        if not compares and not insn & R.TC_IF_TRUE:
            return  # "if false" with nothing to compare never jumps: a no-op
        if r.sist1 & Sist1.STO:
            self.stop()  # a selection timed out: halt at the first bus instruction
            return
        if insn & R.TC_CARRY_TEST:
            result = bool(r.carry)
        else:
            result = True
            if insn & R.TC_COMPARE_PHASE:
                if chip.bus.connected:
                    current = chip.bus.phase
                elif insn & R.TC_WAIT_VALID_PHASE:
                    self.state = EngineState.WAIT_PHASE  # WHEN: waits for a REQ
                    return
                else:
                    current = Phase.DATA_OUT  # the latched phase lines after bus free
                result = current == (insn >> 24) & R.PHASE_MASK
            if insn & R.TC_COMPARE_DATA:
                mask = ~(insn >> 8) & 0xFF  # mask bits set: those SFBR bits are ignored
                result = result and (r.sfbr & mask) == (insn & mask)
        if result != bool(insn & R.TC_IF_TRUE):
            return
        target = operand
        if insn & R.TC_RELATIVE:
            target = (r.dsp + sext24(operand)) & MASK32
        if opcode == TcOpcode.JUMP:
            r.adder = target
            r.dsp = target
        elif opcode == TcOpcode.CALL:
            r.temp = r.dsp
            r.dsp = target
        elif opcode == TcOpcode.RETURN:
            r.dsp = r.temp
        elif insn & R.TC_INTFLY:
            r.istat |= R.Istat.INTF  # interrupt on the fly: SCRIPTS go on
            chip.update_irq()
        else:
            chip.dma_interrupt(Dstat.SIR)  # DSPS holds the interrupt vector

    # -- memory move, LOAD / STORE ----------------------------------------------------------------
    def _memory_move(self, insn: int, source: int) -> None:
        chip = self.chip
        r = chip.regs
        destination = self._read32(r.dsp)
        r.dsp = (r.dsp + 4) & MASK32
        if insn & R.MM_RESERVED or (source & 3) != (destination & 3):
            self._illegal()  # reserved bits, or source and destination misaligned
            return
        count = insn & R.BM_COUNT_MASK
        data = chip.bus_read(source, count, io=bool(r.dmode & R.Dmode.SIOM))
        chip.bus_write(destination, data, io=bool(r.dmode & R.Dmode.DIOM))

    def _load_store(self, insn: int, operand: int) -> None:
        chip = self.chip
        r = chip.regs
        address = operand
        if insn & R.LS_DSA_RELATIVE:
            address = (r.dsa + sext24(operand)) & MASK32
        count = insn & 7
        register = (insn >> 16) & 0xFF
        if (
            insn & R.LS_RESERVED
            or not 1 <= count <= 4
            or (address & 3) + count > 4  # may not cross a dword boundary
            or (register & 3) != (address & 3)  # register and memory must line up
            or chip.maps_registers(address)  # not to the chip's own registers
        ):
            self._illegal()
            return
        if insn & R.LS_LOAD:
            data = chip.bus_read(address, count)
            for index, byte in enumerate(data):
                chip.write_register((register + index) & 0xFF, byte)
        else:
            data = bytes(chip.read_register((register + index) & 0xFF) for index in range(count))
            chip.bus_write(address, data)

    # -- saved state ----------------------------------------------------------------------------
    def save_state(self) -> dict[str, Any]:
        return {"state": self.state.value, "executed": self.executed}

    def load_state(self, state: dict[str, Any]) -> None:
        self.state = EngineState(state["state"])
        self.executed = int(state["executed"])
