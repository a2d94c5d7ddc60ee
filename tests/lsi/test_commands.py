"""Whole SCSI commands driven by SCRIPTS programs (TEST UNIT READY, INQUIRY, READ(10),
WRITE(10), REQUEST SENSE after a reset), runaway programs cut into slices, and commands
that survive save and load in the middle of their data phase."""

from __future__ import annotations

from devices.base import ManualClock
from devices.scsi import lsi_registers as R
from devices.scsi.lsi_registers import Dstat, Istat
from devices.scsi.scripts import EngineState

from tests.helpers import assert_plain
from tests.lsi.asm import ADD, DATA_IN, DATA_OUT, MSG_IN, MSG_OUT, STATUS, COMMAND, Program
from tests.lsi.fakes import BLOCK, RAM_BAR_BASE, FakeDisk, Rig
from tests.lsi.programs import (
    CDB, DATA, DONE, IDENTIFY, MSGIN, MSGOUT, STATUS_BYTE, command_program, connect, do_command, finish, read10,
    write10,
)


class TestCommands:
    def test_test_unit_ready_returns_good_status_and_command_complete(self):
        rig = Rig()
        status, _ = do_command(rig, bytes(6))
        assert status == 0
        assert rig.peek(MSGIN, 1) == b"\x00"  # COMMAND COMPLETE
        assert rig.disk.cdbs == [(0, bytes(6))]
        assert rig.r8(R.SSTAT2) & R.Sstat2.LDSC  # bus free afterwards
        assert not rig.r8(R.SCNTL1) & R.Scntl1.CON

    def test_inquiry_data_lands_in_guest_memory(self):
        rig = Rig()
        status, data = do_command(rig, bytes([0x12, 0, 0, 0, 36, 0]), 36)
        assert status == 0
        assert data[8:16] == b"FAKE    " and data[16:32] == b"DISK            "

    def test_read10_moves_the_blocks_into_memory(self):
        rig = Rig()
        status, data = do_command(rig, read10(2, 3), 3 * BLOCK)
        assert status == 0
        assert data == bytes(rig.disk.data[2 * BLOCK : 5 * BLOCK])

    def test_write10_puts_memory_on_the_disk_and_reads_back(self):
        rig = Rig()
        payload = bytes((i * 7) & 0xFF for i in range(2 * BLOCK))
        status, _ = do_command(rig, write10(5, 2), 2 * BLOCK, out=payload)
        assert status == 0
        assert bytes(rig.disk.data[5 * BLOCK : 7 * BLOCK]) == payload
        rig.poke(DATA, bytes(2 * BLOCK))
        status, data = do_command(rig, read10(5, 2), 2 * BLOCK)
        assert status == 0 and data == payload

    def test_read_past_the_end_gives_check_condition_without_data_phase(self):
        rig = Rig()
        status, _ = do_command(rig, read10(rig.disk.blocks, 1), BLOCK)
        assert status == 2
        assert rig.r8(R.SFBR) == 0  # the last IN byte (COMMAND COMPLETE) is in SFBR

    def test_soft_reset_resets_the_bus_so_the_next_command_sees_unit_attention(self):
        rig = Rig()
        rig.w8(R.ISTAT, Istat.SRST)
        rig.w8(R.ISTAT, 0)
        assert rig.disk.resets == 1
        status, _ = do_command(rig, bytes(6))
        assert status == 2
        status, sense = do_command(rig, bytes([0x03, 0, 0, 0, 18, 0]), 18)
        assert status == 0 and sense[2] == 0x06 and sense[12] == 0x29
        assert do_command(rig, bytes(6))[0] == 0

    def test_identify_selects_the_logical_unit(self):
        rig = Rig()
        status, _ = do_command(rig, bytes(6), lun=3)
        assert rig.disk.cdbs[-1][0] == 3
        assert status == 2  # the fake disk has LUN 0 only

    def test_a_program_in_scripts_ram_runs_from_the_bar2_address(self):
        rig = Rig()
        image = command_program(6, 0, base=RAM_BAR_BASE).assemble()
        for offset in range(0, len(image), 4):  # the driver copies its SCRIPTS through BAR2
            rig.ram_bar.write(offset, 4, int.from_bytes(image[offset : offset + 4], "little"))
        rig.poke(MSGOUT, bytes([IDENTIFY]))
        rig.poke(CDB, bytes(6))
        rig.w32(R.DSP, RAM_BAR_BASE)
        assert rig.dstat() & Dstat.SIR and rig.r32(R.DSPS) == DONE
        assert rig.peek(STATUS_BYTE, 1) == b"\x00"


# -- runaway programs and saved state ------------------------------------------------------------------
class TestSlicesAndState:
    def test_an_endless_loop_runs_in_slices_and_stays_abortable(self):
        clock = ManualClock(1000)
        rig = Rig(clock=clock)
        rig.chip.slice_instructions = 50
        p = Program().label("loop").modify(R.SCRATCHA, ADD, 1).jump("loop")
        rig.run(p)
        assert rig.chip.scripts.executed == 50
        assert rig.chip.next_deadline_ns() == 1000  # runnable: due now
        rig.chip.advance_to(1000)
        assert rig.chip.scripts.executed == 100
        assert rig.r8(R.SCRATCHA) == 50  # 100 instructions, half of them ADDs
        rig.w8(R.ISTAT, Istat.ABRT)
        rig.w8(R.ISTAT, 0)
        assert rig.dstat() & Dstat.ABRT
        assert rig.chip.next_deadline_ns() is None

    def test_a_looping_program_survives_save_and_load_into_a_fresh_controller(self):
        rig = Rig()
        rig.chip.slice_instructions = 10
        p = Program().label("loop").modify(R.SCRATCHA, ADD, 1).jump("loop")
        rig.run(p)
        assert rig.r8(R.SCRATCHA) == 5
        state = rig.chip.save_state()
        other = Rig()
        other.dma.ram[:] = rig.dma.ram
        other.chip.load_state(state)
        other.chip.slice_instructions = 10
        assert other.chip.scripts.state is EngineState.RUNNING
        other.chip.advance_to(0)
        assert other.r8(R.SCRATCHA) == 10
        assert other.chip.save_state()["registers"]["dsp"] == rig.chip.save_state()["registers"]["dsp"]

    def test_a_write_in_flight_survives_save_and_load_mid_data_phase(self):
        rig = Rig()
        payload = bytes((i * 13) & 0xFF for i in range(2 * BLOCK))
        rig.poke(MSGOUT, bytes([IDENTIFY]))
        rig.poke(CDB, write10(3, 2))
        rig.poke(DATA, payload)
        p = connect(rig).move(1, MSG_OUT, MSGOUT).move(10, COMMAND, CDB).move(700, DATA_OUT, DATA).int_(0x1)
        p.label("rest").move(2 * BLOCK - 700, DATA_OUT, DATA + 700).move(1, STATUS, STATUS_BYTE)
        p.move(1, MSG_IN, MSGIN).wait_disconnect()
        rig.run(finish(p))
        assert rig.r32(R.DSPS) == 0x1
        state = rig.chip.save_state()
        assert_plain(state)  # the 700 bytes buffered so far are saved as bytes
        disk = FakeDisk()
        other = Rig({0: disk})
        other.dma.ram[:] = rig.dma.ram
        other.chip.load_state(state)
        other.w32(R.DSP, p.address("rest"))
        assert other.r32(R.DSPS) == DONE
        assert other.peek(STATUS_BYTE, 1) == b"\x00"
        assert bytes(disk.data[3 * BLOCK : 5 * BLOCK]) == payload

    def test_a_read_in_flight_survives_save_and_load_mid_data_phase(self):
        rig = Rig(disconnect_reads=False)
        rig.poke(MSGOUT, bytes([IDENTIFY]))
        rig.poke(CDB, read10(1, 1))
        p = connect(rig).move(1, MSG_OUT, MSGOUT).move(10, COMMAND, CDB).move(100, DATA_IN, DATA).int_(0x1)
        p.label("rest").move(BLOCK - 100, DATA_IN, DATA + 100).move(1, STATUS, STATUS_BYTE)
        rig.run(finish(p))
        other = Rig({0: FakeDisk(data=bytearray(64 * BLOCK))}, disconnect_reads=False)  # blank: data from the state
        other.chip.load_state(rig.chip.save_state())
        other.dma.ram[:] = rig.dma.ram
        other.w32(R.DSP, p.address("rest"))
        assert other.r32(R.DSPS) == DONE
        assert other.peek(DATA, BLOCK) == bytes(rig.disk.data[BLOCK : 2 * BLOCK])


class TestDisconnectReselect:
    """READ commands disconnect and reselect as on QEMU, whose disk reads are asynchronous."""

    def _after_command(self, rig: Rig) -> Program:
        rig.poke(MSGOUT, bytes([IDENTIFY]))
        rig.poke(CDB, read10(4, 1))
        return connect(rig).move(1, MSG_OUT, MSGOUT).move(10, COMMAND, CDB)

    def test_a_read_sends_save_data_pointer_and_disconnect_after_the_cdb(self):
        rig = Rig()
        p = self._after_command(rig).move(1, MSG_IN, MSGIN).move(1, MSG_IN, MSGIN + 1)
        rig.run(finish(p.clear(ack=True).wait_disconnect()))
        assert rig.r32(R.DSPS) == DONE
        assert rig.peek(MSGIN, 2) == bytes([0x02, 0x04])
        assert rig.r8(R.SSTAT2) & R.Sstat2.LDSC  # bus free

    def test_wait_reselect_finds_the_target_back_in_msg_in_with_identify(self):
        rig = Rig()
        p = self._after_command(rig).move(2, MSG_IN, MSGIN).clear(ack=True).wait_disconnect()
        p.wait_reselect("sigp").int_(0x2E5).label("sigp").int_(0xBAD)
        rig.run(finish(p))
        assert rig.r32(R.DSPS) == 0x2E5  # the instruction after WAIT RESELECT
        assert rig.r8(R.SSTAT1) & 7 == MSG_IN and rig.r8(R.SBDL) == IDENTIFY
        assert rig.r8(R.SSID) == 0x80 and rig.r8(R.SFBR) == 0x01  # target 0's ID bit
        rig.dstat()
        p2 = Program(base=0x2000).move(1, MSG_IN, MSGIN).clear(ack=True).move(BLOCK, DATA_IN, DATA)
        p2.move(1, STATUS, STATUS_BYTE).move(1, MSG_IN, MSGIN).wait_disconnect()
        rig.run(finish(p2))
        assert rig.r32(R.DSPS) == DONE
        assert rig.peek(DATA, BLOCK) == bytes(rig.disk.data[4 * BLOCK : 5 * BLOCK])

    def test_without_disconnects_the_data_follows_the_command(self):
        rig = Rig(disconnect_reads=False)
        rig.run(finish(self._after_command(rig).jump("ok", when=DATA_IN).int_(0xBAD).label("ok")))
        assert rig.r32(R.DSPS) == DONE

    def test_a_disconnected_read_survives_save_and_load(self):
        rig = Rig()
        rig.run(finish(self._after_command(rig).move(2, MSG_IN, MSGIN).wait_disconnect()))
        state = rig.chip.save_state()
        other = Rig({0: FakeDisk(data=bytearray(64 * BLOCK))})
        other.chip.load_state(state)
        p = Program(base=0x2000).wait_reselect("alt").move(1, MSG_IN, MSGIN).move(BLOCK, DATA_IN, DATA)
        other.run(finish(p))
        assert other.r32(R.DSPS) == DONE
        assert other.peek(DATA, BLOCK) == bytes(rig.disk.data[4 * BLOCK : 5 * BLOCK])

    def test_a_bus_reset_forgets_a_disconnected_command(self):
        rig = Rig()
        rig.run(finish(self._after_command(rig).move(2, MSG_IN, MSGIN).wait_disconnect()))
        rig.w8(R.SCNTL1, R.Scntl1.RST)
        rig.w8(R.SCNTL1, 0)
        rig.sist()
        rig.run(Program(base=0x2000).wait_reselect("sigp").int_(0xBAD).label("sigp").int_(DONE))
        assert rig.chip.scripts.state is EngineState.WAIT_RESELECT


class MemoryBackend:
    """Blocks in a bytearray: the block backend a ScsiDisk needs, without storage."""

    block_size = BLOCK

    def __init__(self, blocks: int) -> None:
        self.num_blocks = blocks
        self.data = bytearray(blocks * BLOCK)

    def read(self, lba: int, count: int) -> bytes:
        return bytes(self.data[lba * BLOCK : (lba + count) * BLOCK])

    def write(self, lba: int, data: bytes) -> None:
        self.data[lba * BLOCK : lba * BLOCK + len(data)] = data

    def flush(self) -> None:
        pass

    def discard(self, lba: int, count: int) -> None:
        self.data[lba * BLOCK : (lba + count) * BLOCK] = bytes(count * BLOCK)


class TestWithTheScsiDisk:
    """The controller and devices/scsi/disk.py meet through the ScsiTarget interface."""

    def setup_method(self):
        from devices.scsi.disk import ScsiDisk

        self.backend = MemoryBackend(128)
        self.rig = Rig({0: ScsiDisk(self.backend, serial="LSI0")})

    def test_power_on_unit_attention_then_ready(self):
        rig = self.rig
        assert do_command(rig, bytes(6))[0] == 2
        status, sense = do_command(rig, bytes([0x03, 0, 0, 0, 18, 0]), 18)
        assert status == 0 and (sense[2] & 0x0F, sense[12], sense[13]) == (0x06, 0x29, 0x00)
        assert do_command(rig, bytes(6))[0] == 0

    def test_inquiry_reports_a_disk(self):
        rig = self.rig
        status, data = do_command(rig, bytes([0x12, 0, 0, 0, 36, 0]), 36)
        assert status == 0 and data[0] == 0x00 and data[8:11] == b"VMM"

    def test_write10_then_read10_round_trips_through_the_backend(self):
        rig = self.rig
        do_command(rig, bytes(6))  # consume the unit attention
        payload = bytes((i * 31) & 0xFF for i in range(4 * BLOCK))
        assert do_command(rig, write10(10, 4), 4 * BLOCK, out=payload)[0] == 0
        assert bytes(self.backend.data[10 * BLOCK : 14 * BLOCK]) == payload
        rig.poke(DATA, bytes(4 * BLOCK))
        status, data = do_command(rig, read10(10, 4), 4 * BLOCK)
        assert status == 0 and data == payload

    def test_a_read_past_the_end_is_illegal_request_lba_out_of_range(self):
        rig = self.rig
        do_command(rig, bytes(6))
        assert do_command(rig, read10(128, 1), BLOCK)[0] == 2
        status, sense = do_command(rig, bytes([0x03, 0, 0, 0, 18, 0]), 18)
        assert (sense[2] & 0x0F, sense[12]) == (0x05, 0x21)
