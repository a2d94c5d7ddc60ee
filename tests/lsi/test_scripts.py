"""The SCRIPTS processor, instruction class by instruction class (no CPU: fake RAM, a
fake disk); whole commands are in test_commands.py."""

from __future__ import annotations

import pytest

from devices.scsi import lsi_registers as R
from devices.scsi.lsi_registers import Dstat, Istat, Sist0, Sist1
from devices.scsi.scripts import EngineState

from tests.lsi.asm import (
    ADC, ADD, AND, COMMAND, DATA_IN, DATA_OUT, MOV, MSG_IN, MSG_OUT, OR, SHL, SHR, STATUS, XOR, Program,
)
from tests.lsi.fakes import BLOCK, MMIO_BASE, FakeDisk, Rig
from tests.lsi.programs import (
    CDB, DATA, DONE, IDENTIFY, MSGIN, MSGOUT, STATUS_BYTE, TABLE, connect, finish, read10,
)


# -- block moves --------------------------------------------------------------------------------
class TestBlockMove:
    """READ(10) gives a DATA IN phase to move; the target stays connected for it."""

    def setup_method(self):
        self.rig = Rig(disconnect_reads=False)
        self.rig.poke(MSGOUT, bytes([IDENTIFY]))
        self.rig.poke(CDB, read10(0, 1))

    def _to_data_in(self) -> Program:
        p = connect(self.rig).move(1, MSG_OUT, MSGOUT).move(10, COMMAND, CDB)
        return p

    def test_indirect_move_takes_its_address_from_memory(self):
        rig = self.rig
        rig.poke(0x3400, (0x9000).to_bytes(4, "little"))
        p = self._to_data_in().move_indirect(BLOCK, DATA_IN, 0x3400)
        rig.run(finish(p))
        assert rig.dstat() & Dstat.SIR and rig.r32(R.DSPS) == DONE
        assert rig.peek(0x9000, BLOCK) == bytes(rig.disk.data[:BLOCK])

    def test_table_indirect_move_reads_count_and_address_at_dsa_plus_offset(self):
        rig = self.rig
        rig.poke(TABLE - 8, (100).to_bytes(4, "little") + (0xA000).to_bytes(4, "little"))
        rig.poke(TABLE + 16, (BLOCK - 100).to_bytes(4, "little") + (0xA064).to_bytes(4, "little"))
        p = self._to_data_in().move_table(DATA_IN, -8).move_table(DATA_IN, 16)
        rig.run(finish(p), dsa=TABLE)
        assert rig.r32(R.DSPS) == DONE
        assert rig.peek(0xA000, BLOCK) == bytes(rig.disk.data[:BLOCK])

    def test_data_moved_in_pieces_is_buffered_by_the_controller(self):
        rig = self.rig
        p = self._to_data_in()
        for piece in (1, 3, 60, BLOCK - 64):
            p.move(piece, DATA_IN, DATA + sum((1, 3, 60, BLOCK - 64)[: (1, 3, 60, BLOCK - 64).index(piece)]))
        p.jump("ok", when=STATUS).int_(0xBAD).label("ok")
        rig.run(finish(p))
        assert rig.r32(R.DSPS) == DONE
        assert rig.peek(DATA, BLOCK) == bytes(rig.disk.data[:BLOCK])

    def test_a_move_in_the_wrong_phase_is_a_phase_mismatch_that_moves_nothing(self):
        rig = self.rig
        p = connect(rig).move(1, MSG_OUT, MSGOUT)
        mismatch = p.here
        p.move(4, DATA_IN, DATA)  # the target wants COMMAND
        rig.run(finish(p))
        sist0, _ = rig.sist()
        assert sist0 & Sist0.MA
        assert rig.r32(R.DSP) == mismatch + 8  # DSP points after the failed move
        assert rig.r32(R.DBC) & 0xFFFFFF == 4 and rig.r32(R.DNAD) == DATA
        assert rig.r8(R.DCMD) == 0x09  # MOVE, DATA IN
        assert rig.r8(R.SSTAT1) & 7 == COMMAND
        assert rig.chip.scripts.state is EngineState.STOPPED

    def test_a_move_longer_than_the_transfer_stops_with_the_residual_count(self):
        rig = self.rig
        p = self._to_data_in()
        move = p.here
        p.move(BLOCK + 100, DATA_IN, DATA)
        p.label("status").move(1, STATUS, STATUS_BYTE).move(1, MSG_IN, MSGIN).wait_disconnect()
        rig.run(finish(p))
        assert rig.sist()[0] & Sist0.MA
        assert rig.r32(R.DSP) == move + 8
        assert rig.r32(R.DBC) & 0xFFFFFF == 100  # what was not moved
        assert rig.r32(R.DNAD) == DATA + BLOCK
        assert rig.r8(R.DFIFO) == 100 & 0xFF  # DFIFO - DBC = 0 bytes left in the FIFO
        assert rig.r8(R.SSTAT1) & 7 == STATUS
        assert rig.peek(DATA, BLOCK) == bytes(rig.disk.data[:BLOCK])
        rig.w32(R.DSP, p.address("status"))  # the driver resumes at the status phase
        assert rig.r32(R.DSPS) == DONE and rig.peek(STATUS_BYTE, 1) == b"\x00"

    def test_64_bit_direct_moves_carry_a_third_dword(self):
        rig = self.rig
        p = self._to_data_in().load_immediate(R.CCNTL1, R.Ccntl1.EN64DBMV)
        p.emit(0x09000000 | BLOCK, DATA, 0)  # MOVE BLOCK, DATA, WHEN DATA_IN; high dword 0
        rig.run(finish(p))
        assert rig.r32(R.DSPS) == DONE
        assert rig.peek(DATA, BLOCK) == bytes(rig.disk.data[:BLOCK])

    def test_over_long_command_status_and_message_moves_complete_as_on_qemu(self):
        rig = Rig()
        rig.poke(MSGOUT, bytes([IDENTIFY]))
        rig.poke(CDB, bytes(6))
        p = connect(rig).move(1, MSG_OUT, MSGOUT).move(16, COMMAND, CDB)  # a 6-byte CDB
        p.move(4, STATUS, STATUS_BYTE).move(8, MSG_IN, MSGIN).wait_disconnect()
        rig.run(finish(p))
        assert rig.r32(R.DSPS) == DONE and rig.sist() == (0, 0)
        assert rig.disk.cdbs == [(0, bytes(6))]
        assert rig.peek(STATUS_BYTE, 1) == b"\x00" and rig.peek(MSGIN, 1) == b"\x00"

    def test_a_zero_byte_block_move_is_an_illegal_instruction(self):
        rig = self.rig
        rig.run(finish(connect(rig).move(0, MSG_OUT, MSGOUT)))
        assert rig.dstat() & Dstat.IID

    def test_a_move_with_no_target_connected_waits_until_aborted(self):
        rig = self.rig
        rig.run(finish(Program().move(1, DATA_OUT, DATA)))
        assert rig.chip.scripts.state is EngineState.WAIT_PHASE
        assert rig.r8(R.ISTAT1) & R.Istat1.SRUN
        assert rig.chip.next_deadline_ns() is None
        rig.w8(R.ISTAT, Istat.ABRT)
        rig.w8(R.ISTAT, 0)
        assert rig.dstat() & Dstat.ABRT
        assert rig.chip.scripts.state is EngineState.STOPPED

    def test_phase_mismatch_jump_replaces_the_interrupt_when_enabled(self):
        rig = self.rig
        rig.w8(R.CCNTL0, R.Ccntl0.ENPMJ | R.Ccntl0.PMJCTL)
        p = connect(rig).move(1, MSG_OUT, MSGOUT).move(4, DATA_IN, DATA)
        finish(p).label("pmj").int_(0x5A)
        rig.w32(R.PMJAD2, p.address("pmj"))  # inbound moves use PMJAD2
        rig.run(p)
        assert rig.r32(R.DSPS) == 0x5A
        assert not rig.sist()[0] & Sist0.MA

    def test_dma_outside_ram_is_a_bus_fault(self):
        rig = self.rig
        p = self._to_data_in().move(BLOCK, DATA_IN, 0x7FFFFF00)
        rig.run(finish(p))
        assert rig.dstat() & Dstat.BF
        assert rig.chip.scripts.state is EngineState.STOPPED


# -- I/O instructions -------------------------------------------------------------------------
class TestSelect:
    def test_select_with_atn_connects_in_msg_out(self):
        rig = Rig()
        rig.run(finish(connect(rig)))
        assert rig.r32(R.DSPS) == DONE
        assert rig.r8(R.SCNTL1) & R.Scntl1.CON
        assert rig.r8(R.SSTAT1) & 7 == MSG_OUT
        assert rig.r8(R.SBCL) == R.Sbcl.REQ | R.Sbcl.BSY | R.Sbcl.ATN | MSG_OUT
        assert rig.r8(R.SSTAT0) & R.Sstat0.WOA
        assert rig.r8(R.SOCL) & R.Socl.ATN
        assert rig.r8(R.SDID) == 0

    def test_select_without_atn_still_starts_in_msg_out_as_on_qemu(self):
        rig = Rig()
        rig.run(finish(connect(rig, atn=False).jump("ok", when=MSG_OUT).int_(0xBAD).label("ok")))
        assert rig.r32(R.DSPS) == DONE
        assert not rig.r8(R.SBCL) & R.Sbcl.ATN

    def test_selecting_an_absent_target_times_out_and_halts_at_the_next_bus_instruction(self):
        rig = Rig()
        rig.w8(R.SIEN1, Sist1.STO)
        p = Program().select(3, "alt")
        wait = p.here
        p.jump("alt", when=MSG_OUT)
        finish(p)
        rig.run(p)
        assert rig.irq
        assert rig.r8(R.ISTAT) & Istat.SIP
        assert rig.r32(R.DSP) == wait + 8  # what Linux's sym53c8xx checks
        assert rig.sist() == (0, Sist1.STO)
        assert not rig.irq
        assert not rig.r8(R.SCNTL1) & R.Scntl1.CON

    def test_ids_above_seven_answer_only_on_a_wide_bus(self):
        disk = FakeDisk()
        rig = Rig({9: disk})
        p = finish(Program().select(9, "alt").jump("ok", when=MSG_OUT).int_(0xBAD).label("ok"))
        rig.run(p)
        assert rig.sist()[1] & Sist1.STO
        rig.w8(R.SCNTL3, R.Scntl3.EWS)
        rig.run(p)
        assert rig.r32(R.DSPS) == DONE and rig.r8(R.SDID) == 9

    def test_table_indirect_select_loads_id_scntl3_and_sxfer(self):
        rig = Rig({5: FakeDisk()})
        rig.poke(TABLE + 4, bytes([0, 0x2C, 5, 0x33]))  # sxfer 0x2C, id 5, scntl3 0x33
        rig.run(finish(Program().select_table(4, "alt")), dsa=TABLE)
        assert rig.r32(R.DSPS) == DONE
        assert (rig.r8(R.SDID), rig.r8(R.SXFER), rig.r8(R.SCNTL3)) == (5, 0x2C, 0x33)

    def test_select_while_connected_takes_the_alternate_address(self):
        rig = Rig()
        rig.run(finish(connect(rig).select(0, "alt")))
        assert rig.r32(R.DSPS) == 0xA17

    def test_wait_disconnect_releases_the_bus(self):
        rig = Rig()
        rig.run(finish(connect(rig).wait_disconnect()))
        assert rig.r32(R.DSPS) == DONE
        assert rig.r8(R.SSTAT2) & R.Sstat2.LDSC and rig.r8(R.SBCL) == 0


class TestWaitReselect:
    def test_it_waits_until_sigp_then_jumps_to_the_alternate_address(self):
        rig = Rig()
        rig.run(Program().wait_reselect("sigp").int_(0xBAD).label("sigp").int_(DONE))
        assert rig.chip.scripts.state is EngineState.WAIT_RESELECT
        assert rig.r8(R.ISTAT1) & R.Istat1.SRUN
        assert rig.chip.next_deadline_ns() is None
        rig.w8(R.ISTAT, Istat.SIGP)
        assert rig.r32(R.DSPS) == DONE
        assert rig.r8(R.CTEST2) & R.Ctest2.SIGP  # reading CTEST2 clears SIGP
        assert not rig.r8(R.ISTAT) & Istat.SIGP

    def test_sigp_already_set_jumps_at_once(self):
        rig = Rig()
        rig.w8(R.ISTAT, Istat.SIGP)
        rig.run(Program().wait_reselect("sigp").int_(0xBAD).label("sigp").int_(DONE))
        assert rig.r32(R.DSPS) == DONE


class TestSetClear:
    def test_set_atn_makes_the_target_go_to_msg_out(self):
        rig = Rig(disconnect_reads=False)
        rig.poke(CDB, read10(0, 1))
        rig.poke(MSGOUT, bytes([IDENTIFY, 0x08]))
        p = connect(rig).move(1, MSG_OUT, MSGOUT).move(10, COMMAND, CDB).set(atn=True)
        p.jump("ok", when=MSG_OUT).int_(0xBAD).label("ok")
        p.move(1, MSG_OUT, MSGOUT + 1)  # a NOP message, then back to DATA IN
        p.jump("ok2", when=DATA_IN).int_(0xBAD).label("ok2")
        rig.run(finish(p))
        assert rig.r32(R.DSPS) == DONE
        assert not rig.r8(R.SOCL) & R.Socl.ATN  # dropped with the last MSG OUT byte

    def test_set_and_clear_ack_drive_the_ack_line(self):
        rig = Rig()
        rig.run(finish(connect(rig).set(ack=True).int_(1)))
        assert rig.r8(R.SBCL) & R.Sbcl.ACK
        rig.dstat()
        rig.run(finish(Program(base=0x2000).clear(ack=True)))
        assert not rig.r8(R.SBCL) & R.Sbcl.ACK

    @pytest.mark.parametrize("set_carry", [True, False])
    def test_set_and_clear_carry_are_seen_by_a_carry_jump(self, set_carry):
        rig = Rig()
        p = Program()
        (p.set if set_carry else p.clear)(carry=True)
        p.jump("carry", carry=True).int_(0x0).label("carry").int_(0x1)
        rig.run(p)
        assert rig.r32(R.DSPS) == int(set_carry)


class TestMessages:
    def _run_msgout(self, messages: bytes) -> Rig:
        rig = Rig()
        rig.poke(MSGOUT, messages)
        p = connect(rig).move(len(messages), MSG_OUT, MSGOUT)
        p.jump("cmd", when=COMMAND).jump("msgin", if_phase=MSG_IN).int_(0xBAD)
        p.label("cmd").int_(0xC0).label("msgin").move(1, MSG_IN, MSGIN).int_(0x11)
        rig.run(finish(p))
        return rig

    def test_sdtr_and_wdtr_are_accepted_silently_as_qemu_does(self):
        rig = self._run_msgout(bytes([IDENTIFY, 1, 3, 1, 12, 8, 1, 2, 3, 1]))
        assert rig.r32(R.DSPS) == 0xC0

    def test_a_simple_queue_tag_is_accepted(self):
        assert self._run_msgout(bytes([IDENTIFY, 0x20, 0x05])).r32(R.DSPS) == 0xC0

    def test_an_unknown_message_is_answered_with_message_reject(self):
        rig = self._run_msgout(bytes([IDENTIFY, 0x0F]))
        assert rig.r32(R.DSPS) == 0x11
        assert rig.peek(MSGIN, 1) == b"\x07" and rig.r8(R.SFBR) == 0x07

    def test_abort_sends_the_target_bus_free(self):
        rig = Rig()
        rig.poke(MSGOUT, bytes([IDENTIFY, 0x06]))
        rig.run(finish(connect(rig).move(2, MSG_OUT, MSGOUT)))
        assert rig.r32(R.DSPS) == DONE
        assert not rig.r8(R.SCNTL1) & R.Scntl1.CON


# -- register instructions ----------------------------------------------------------------------
class TestRegisterInstructions:
    def test_load_immediate_writes_a_register(self):
        rig = Rig()
        rig.run(finish(Program().load_immediate(R.SCRATCHA + 1, 0xA5)))
        assert rig.r32(R.SCRATCHA) == 0xA500

    def test_register_to_sfbr_and_sfbr_to_register(self):
        rig = Rig()
        rig.w8(R.SCRATCHB, 0x3C)
        p = Program().register_to_sfbr(R.SCRATCHB, OR, 0x01).sfbr_to_register(R.SCRATCHA + 2, OR, 0x80)
        rig.run(finish(p))
        assert rig.r8(R.SFBR) == 0x3D
        assert rig.r8(R.SCRATCHA + 2) == 0xBD

    def test_read_modify_write_can_take_sfbr_as_its_operand(self):
        rig = Rig()
        rig.w8(R.SCRATCHA, 0x0F)
        p = Program().load_immediate(R.SFBR, 0xF0).modify(R.SCRATCHA, OR, use_sfbr=True)
        rig.run(finish(p))
        assert rig.r8(R.SCRATCHA) == 0xFF

    def test_registers_above_0x7f_are_reached_through_the_a7_bit(self):
        rig = Rig()
        rig.run(finish(Program().load_immediate(R.PMJAD1 + 1, 0x42)))
        assert rig.r32(R.PMJAD1) == 0x4200

    @pytest.mark.parametrize(
        "operator, value, operand, carry_in, result, carry_out",
        [
            (MOV, 0x12, 0x34, 0, 0x34, 0),
            (SHL, 0x81, 0, 1, 0x03, 1),
            (OR, 0x0F, 0x30, 0, 0x3F, 0),
            (XOR, 0xFF, 0x0F, 0, 0xF0, 0),
            (AND, 0x3C, 0x0F, 0, 0x0C, 0),
            (SHR, 0x03, 0, 1, 0x81, 1),
            (ADD, 0xF0, 0x20, 0, 0x10, 1),
            (ADC, 0x10, 0x20, 1, 0x31, 0),
        ],
    )
    def test_each_alu_operator(self, operator, value, operand, carry_in, result, carry_out):
        rig = Rig()
        rig.w8(R.SCRATCHA, value)
        p = Program()
        (p.set if carry_in else p.clear)(carry=True)
        p.modify(R.SCRATCHA, operator, operand)
        p.jump("c", carry=True).int_(0).label("c").int_(1)
        rig.run(p)
        assert rig.r8(R.SCRATCHA) == result
        assert rig.r32(R.DSPS) == carry_out


# -- transfer control ---------------------------------------------------------------------------
class TestTransferControl:
    def test_jump_absolute_and_relative(self):
        rig = Rig()
        p = Program().jump("fwd").int_(0xBAD).label("back").int_(DONE).label("fwd").jump("back", relative=True)
        rig.run(p)
        assert rig.r32(R.DSPS) == DONE

    def test_call_saves_the_return_address_in_temp_and_return_uses_it(self):
        rig = Rig()
        p = Program().call("sub")
        after = p.here
        p.int_(DONE).label("sub").load_immediate(R.SCRATCHA, 7).ret()
        rig.run(p)
        assert rig.r32(R.DSPS) == DONE and rig.r8(R.SCRATCHA) == 7
        assert rig.r32(R.TEMP) == after

    def test_int_stops_with_sir_the_vector_in_dsps_and_dsp_after_it(self):
        rig = Rig()
        p = Program().int_(0x1234)
        rig.run(p)
        assert rig.r8(R.ISTAT) & Istat.DIP
        assert rig.dstat() == Dstat.SIR | Dstat.DFE
        assert rig.r32(R.DSPS) == 0x1234 and rig.r32(R.DSP) == p.base + 8
        assert not rig.r8(R.ISTAT) & Istat.DIP

    def test_intfly_raises_intf_and_the_program_goes_on(self):
        rig = Rig()
        rig.run(finish(Program().intfly(0x77)))
        assert rig.r8(R.ISTAT) & Istat.INTF and rig.irq
        assert rig.r32(R.DSPS) == DONE
        rig.w8(R.ISTAT, Istat.INTF)  # write one to clear
        assert not rig.r8(R.ISTAT) & Istat.INTF

    def test_phase_compare_jumps(self):
        rig = Rig()
        p = connect(rig).jump("no", when=COMMAND).jump("yes", if_phase=MSG_OUT).label("no").int_(0xBAD)
        rig.run(finish(p.label("yes")))
        assert rig.r32(R.DSPS) == DONE

    def test_jump_if_not_phase(self):
        rig = Rig()
        p = connect(rig).jump("yes", if_phase=COMMAND, negate=True).int_(0xBAD).label("yes")
        rig.run(finish(p))
        assert rig.r32(R.DSPS) == DONE

    def test_data_compare_ignores_the_masked_bits(self):
        rig = Rig()
        p = Program().load_immediate(R.SFBR, 0x5A)
        p.jump("no", data=0x5B).jump("yes", data=0x50, mask=0x0F).label("no").int_(0xBAD).label("yes")
        rig.run(finish(p))
        assert rig.r32(R.DSPS) == DONE

    def test_conditional_int_and_return(self):
        rig = Rig()
        p = Program().load_immediate(R.SFBR, 3).int_(0xBAD, data=4).call("sub").int_(DONE)
        p.label("sub").ret(data=3).int_(0xBAD)
        rig.run(p)
        assert rig.r32(R.DSPS) == DONE

    def test_nop_never_jumps(self):
        rig = Rig()
        rig.run(finish(Program().nop()))
        assert rig.r32(R.DSPS) == DONE

    @pytest.mark.parametrize("word", [0xA0080000, 0xB8080000, 0x80480000, 0x80260000])
    def test_illegal_transfer_control_forms(self, word):
        """Opcodes 4-7, the reserved bit 22, a carry test together with a compare."""
        rig = Rig()
        p = Program().emit(word, 0)
        rig.run(p)
        assert rig.dstat() & Dstat.IID
        assert rig.r32(R.DSP) == p.base + 8


# -- memory move, load, store ----------------------------------------------------------------------
class TestMemory:
    def test_memory_move_copies_bytes(self):
        rig = Rig()
        rig.poke(0x5000, bytes(range(100)))
        rig.run(finish(Program().memory_move(100, 0x5000, 0x6000)))
        assert rig.peek(0x6000, 100) == bytes(range(100))

    def test_memory_move_reaches_the_chip_registers_through_bar1(self):
        rig = Rig()
        rig.poke(0x5000, (0xCAFEF00D).to_bytes(4, "little"))
        rig.run(finish(Program().memory_move(4, 0x5000, MMIO_BASE + R.SCRATCHB)))
        assert rig.r32(R.SCRATCHB) == 0xCAFEF00D

    def test_memory_move_with_misaligned_source_and_destination_is_illegal(self):
        rig = Rig()
        rig.run(finish(Program().memory_move(4, 0x5001, 0x6000)))
        assert rig.dstat() & Dstat.IID

    def test_memory_move_outside_ram_is_a_bus_fault(self):
        rig = Rig()
        rig.run(finish(Program().memory_move(4, 0x5000, 0x7F000000)))
        assert rig.dstat() & Dstat.BF

    @pytest.mark.parametrize("count", [1, 2, 3, 4])
    def test_load_and_store_move_one_to_four_bytes(self, count):
        rig = Rig()
        rig.poke(0x5000, bytes([0x11, 0x22, 0x33, 0x44]))
        p = Program().load(R.SCRATCHA, count, 0x5000).store(R.SCRATCHA, 4, 0x5100)
        rig.run(finish(p))
        expected = bytes([0x11, 0x22, 0x33, 0x44][:count]) + bytes(4 - count)
        assert rig.peek(0x5100, 4) == expected

    def test_dsa_relative_load_and_store(self):
        rig = Rig()
        rig.poke(TABLE - 4, (0x01020304).to_bytes(4, "little"))
        p = Program().load(R.SCRATCHB, 4, -4, dsa_relative=True).store(R.SCRATCHB, 4, 8, dsa_relative=True)
        rig.run(finish(p), dsa=TABLE)
        assert rig.peek(TABLE + 8, 4) == (0x01020304).to_bytes(4, "little")

    def test_loading_dsp_is_a_computed_jump(self):
        rig = Rig()
        p = Program()
        p.load(R.DSP, 4, 0x5000).int_(0xBAD).label("there").int_(DONE)
        rig.poke(0x5000, p.address("there").to_bytes(4, "little"))
        rig.run(p)
        assert rig.r32(R.DSPS) == DONE

    @pytest.mark.parametrize(
        "register, count, address",
        [(R.SCRATCHA, 0, 0x5000), (R.SCRATCHA, 5, 0x5000), (R.SCRATCHA + 2, 4, 0x5002),
         (R.SCRATCHA + 1, 1, 0x5002), (R.SCRATCHA, 4, MMIO_BASE)],
    )
    def test_illegal_load_store_forms(self, register, count, address):
        """A count outside 1-4, a dword crossing, register and memory misaligned, or an
        address on the chip's own registers."""
        rig = Rig()
        rig.run(finish(Program().load(register, count, address)))
        assert rig.dstat() & Dstat.IID


# -- interrupts, single step, manual start ------------------------------------------------------------
class TestInterrupts:
    def test_sir_raises_inta_only_when_enabled_in_dien(self):
        rig = Rig()
        rig.run(Program().int_(1))
        assert rig.r8(R.ISTAT) & Istat.DIP and not rig.irq
        rig.w8(R.DIEN, Dstat.SIR)
        assert rig.irq
        rig.dstat()
        assert not rig.irq

    def test_a_masked_phase_mismatch_still_halts_scripts(self):
        rig = Rig()
        rig.run(finish(connect(rig).move(4, DATA_IN, DATA)))
        assert rig.r8(R.ISTAT) & Istat.SIP and not rig.irq
        assert rig.chip.scripts.state is EngineState.STOPPED
        rig.w8(R.SIEN0, Sist0.MA)
        assert rig.irq
        assert rig.sist() == (Sist0.MA, 0)
        assert not rig.irq

    def test_single_step_stops_after_each_instruction_and_std_continues(self):
        rig = Rig()
        rig.w8(R.DCNTL, R.Dcntl.SSM)
        p = Program().load_immediate(R.SCRATCHA, 1).load_immediate(R.SCRATCHA, 2).int_(DONE)
        rig.run(p)
        assert rig.dstat() & Dstat.SSI and rig.r8(R.SCRATCHA) == 1
        rig.w8(R.DCNTL, R.Dcntl.SSM | R.Dcntl.STD)
        assert rig.dstat() & Dstat.SSI and rig.r8(R.SCRATCHA) == 2
        assert not rig.r8(R.DCNTL) & R.Dcntl.STD

    def test_manual_start_mode_waits_for_std(self):
        rig = Rig()
        rig.w8(R.DMODE, R.Dmode.MAN)
        rig.run(Program().int_(DONE))
        assert rig.chip.scripts.state is EngineState.STOPPED
        rig.w8(R.DCNTL, R.Dcntl.STD)
        assert rig.r32(R.DSPS) == DONE

    def test_fetching_outside_ram_is_a_bus_fault_with_dsp_at_the_instruction(self):
        rig = Rig()
        rig.w32(R.DSP, 0x7F000000)
        assert rig.dstat() & Dstat.BF
        assert rig.r32(R.DSP) == 0x7F000000
