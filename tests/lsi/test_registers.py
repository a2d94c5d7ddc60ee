"""The LSI53C895A as a PCI function and a register file: identity, BARs, reset values,
read/write behaviour a driver relies on, interrupts, soft reset, timers, saved state."""

from __future__ import annotations

import pytest

from devices.base import ManualClock, Stateful, TimedDevice
from devices.pci.function import Command
from devices.scsi import lsi_registers as R
from devices.scsi.lsi53c895a import Lsi53c895a
from devices.scsi.lsi_registers import Dstat, Istat, Sist0, Sist1

from tests.lsi.asm import MSG_IN, MSG_OUT, Program
from tests.lsi.fakes import FakeDisk, FakeDma, Rig
from tests.helpers import assert_plain


# -- PCI identity and BARs -------------------------------------------------------------------------
class TestPci:
    def test_identity_is_qemus_lsi53c895a(self):
        chip = Lsi53c895a(FakeDma(), {})
        assert chip.config_read(0x00, 2) == 0x1000 and chip.config_read(0x02, 2) == 0x0012
        assert chip.config_read(0x08, 4) == 0x01000000  # class 01/00/00, revision 0
        assert chip.config_read(0x2C, 2) == 0x0000 and chip.config_read(0x2E, 2) == 0x1000
        assert chip.config_read(0x3D, 1) == 1  # INTA#
        assert chip.config_read(0x0D, 1) == 0xFF  # latency timer, as QEMU

    @pytest.mark.parametrize("index, sizing", [(0, 0xFFFFFF01), (1, 0xFFFFFC00), (2, 0xFFFFE000)])
    def test_bar_sizes_io_256_mmio_1k_ram_8k(self, index, sizing):
        chip = Lsi53c895a(FakeDma(), {})
        chip.config_write(0x10 + 4 * index, 4, 0xFFFFFFFF)
        assert chip.config_read(0x10 + 4 * index, 4) == sizing

    def test_bar_devices_are_the_register_windows_and_the_scripts_ram(self):
        chip = Lsi53c895a(FakeDma(), {})
        assert chip.bars[0].device is chip.io_registers
        assert chip.bars[1].device is chip.mmio_registers
        assert chip.bars[2].device is chip.scripts_ram
        assert isinstance(chip, TimedDevice) and isinstance(chip, Stateful)

    def test_target_ids_must_be_0_to_15(self):
        with pytest.raises(ValueError):
            Lsi53c895a(FakeDma(), {16: FakeDisk()})


# -- reset values and read/write behaviour ------------------------------------------------------
RESET_VALUES = {
    R.SCNTL0: 0xC0, R.SCNTL1: 0, R.SCID: 0x07, R.GPREG: 0x7F, R.SBCL: 0, R.DSTAT: Dstat.DFE,
    R.SSTAT0: 0, R.SSTAT1: 0, R.SSTAT2: R.Sstat2.LDSC, R.ISTAT: 0, R.CTEST0: 0xFF, R.CTEST1: 0xF0,
    R.CTEST2: R.Ctest2.DACK | R.Ctest2.CM, R.CTEST3: 0, R.DCMD: 0x40, R.DMODE: 0, R.DIEN: 0,
    R.DCNTL: 0, R.SIEN0: 0, R.SIEN1: 0, R.SIST0: 0, R.SIST1: 0, R.MACNTL: 0x0F, R.GPCNTL: 0x0F,
    R.STIME0: 0, R.RESPID0: 0x80, R.STEST0: 0x02, R.STEST4: 0xE0, R.CCNTL0: 0, R.ISTAT1: 0,
}


@pytest.mark.parametrize("offset, value", sorted(RESET_VALUES.items()))
def test_reset_value(offset, value):
    assert Rig().r8(offset) == value


@pytest.mark.parametrize("offset, value", [(R.DSA, 0), (R.TEMP, 0), (R.DSP, 0), (R.DSPS, 0), (R.SCRATCHA, 0), (R.SCRATCHB, 0)])
def test_wide_registers_reset_to_zero(offset, value):
    assert Rig().r32(offset) == value


STORAGE_REGISTERS = [
    R.SCNTL0, R.SCNTL3, R.SCID, R.SXFER, R.SOCL, R.CTEST0, R.DFIFO, R.CTEST4, R.CTEST5,
    R.DMODE, R.DIEN, R.SBR, R.SIEN0, R.SIEN1, R.SLPAR, R.SWIDE, R.GPCNTL, R.STIME0,
    R.RESPID0, R.RESPID1, R.STEST1, R.STEST2, R.SODL, R.CCNTL0, R.CCNTL1, R.MBOX0, R.MBOX1,
] + [R.DSA + i for i in range(4)] + [R.TEMP + i for i in range(4)] + [R.DNAD + i for i in range(4)] + [
    R.DSPS + i for i in range(4)] + [R.SCRATCHA + i for i in range(4)] + [R.SCRATCHB + i for i in range(4)] + [
    R.SCRATCHC + 4 * n for n in range(16)] + [R.DBC + i for i in range(3)] + [R.PMJAD1, R.CSBC + 3]


@pytest.mark.parametrize("offset", STORAGE_REGISTERS)
def test_read_write_registers_read_back_through_io_and_memory_bars(offset):
    rig = Rig()
    rig.io.write(offset, 1, 0xA5)
    assert rig.mmio.read(offset, 1) == 0xA5
    rig.mmio.write(offset + 0x100, 1, 0x5A)  # the 1 KiB memory BAR repeats the 256 registers
    assert rig.io.read(offset, 1) == 0x5A


def test_wide_accesses_split_into_byte_registers_little_endian():
    rig = Rig()
    rig.io.write(R.DSA, 4, 0x12345678)
    assert [rig.r8(R.DSA + i) for i in range(4)] == [0x78, 0x56, 0x34, 0x12]
    assert rig.mmio.read(R.DSA + 1, 2) == 0x3456
    rig.io.write(R.SCRATCHB, 2, 0xBEEF)
    assert rig.r32(R.SCRATCHB) == 0xBEEF


@pytest.mark.parametrize("offset", [R.DSTAT, R.SSTAT0, R.SSTAT1, R.SSTAT2, R.SIST0, R.SIST1, R.ADDER, R.SBCL, R.GPREG])
def test_read_only_registers_ignore_writes(offset):
    rig = Rig()
    before = rig.r8(offset)
    rig.w8(offset, 0x3C)
    assert rig.r8(offset) == before


def test_self_clearing_and_write_one_to_clear_bits_do_not_stick():
    rig = Rig()
    rig.w8(R.SCNTL2, R.Scntl2.WSR | R.Scntl2.WSS | R.Scntl2.SDU)
    assert rig.r8(R.SCNTL2) == R.Scntl2.SDU
    rig.w8(R.CTEST3, R.Ctest3.CLF | R.Ctest3.FLF)
    assert rig.r8(R.CTEST3) == R.Ctest3.FLF
    rig.w8(R.STEST3, R.Stest3.CSF | R.Stest3.TE)
    assert rig.r8(R.STEST3) == R.Stest3.TE
    rig.w8(R.DCNTL, R.Dcntl.STD | R.Dcntl.PFF | R.Dcntl.COM)
    assert rig.r8(R.DCNTL) == R.Dcntl.COM
    rig.w8(R.SDID, 0xF3)
    assert rig.r8(R.SDID) == 0x03


def test_istat_sem_is_the_drivers_and_sigp_is_cleared_by_reading_ctest2():
    rig = Rig()
    rig.w8(R.ISTAT, Istat.SEM | Istat.SIGP)
    assert rig.r8(R.ISTAT) == Istat.SEM | Istat.SIGP
    assert rig.r8(R.CTEST2) & R.Ctest2.SIGP
    assert rig.r8(R.ISTAT) == Istat.SEM
    assert not rig.r8(R.CTEST2) & R.Ctest2.SIGP


def test_reserved_offsets_read_ff():
    assert Rig().r8(0xE0) == 0xFF


def test_sbdl_shows_the_message_byte_on_the_bus_during_msg_in():
    rig = Rig()
    rig.poke(0x3000, bytes([0x80, 0x0F]))  # IDENTIFY, then a message the target rejects
    rig.run(Program().select(0, "x").move(2, MSG_OUT, 0x3000).int_(1).label("x").int_(2))
    assert rig.r8(R.SSTAT1) & 7 == MSG_IN
    assert rig.r8(R.SBDL) == 0x07


# -- interrupts ---------------------------------------------------------------------------------
class TestInterruptRegisters:
    def test_reading_dstat_clears_it_and_dip(self):
        rig = Rig()
        rig.run(Program().int_(1))
        assert rig.r8(R.ISTAT) == Istat.DIP
        assert rig.r8(R.DSTAT) == Dstat.SIR | Dstat.DFE
        assert rig.r8(R.DSTAT) == Dstat.DFE
        assert rig.r8(R.ISTAT) == 0

    def test_reading_sist0_and_sist1_clears_them_and_sip(self):
        rig = Rig()
        rig.w8(R.SIEN0, Sist0.RST)
        rig.w8(R.SCNTL1, R.Scntl1.RST)
        rig.w8(R.SCNTL1, 0)
        assert rig.irq and rig.r8(R.ISTAT) & Istat.SIP
        assert rig.r8(R.SIST0) == Sist0.RST
        assert rig.r8(R.SIST0) == 0 and not rig.r8(R.ISTAT) & Istat.SIP and not rig.irq

    def test_abort_sets_dstat_abrt(self):
        rig = Rig()
        rig.w8(R.DIEN, Dstat.ABRT)
        rig.w8(R.ISTAT, Istat.ABRT)
        assert rig.irq
        rig.w8(R.ISTAT, 0)
        assert rig.r8(R.DSTAT) & Dstat.ABRT and not rig.irq

    def test_dcntl_irqd_keeps_the_pin_low(self):
        rig = Rig()
        rig.w8(R.DIEN, Dstat.SIR)
        rig.run(Program().int_(1))
        assert rig.irq
        rig.w8(R.DCNTL, R.Dcntl.IRQD)
        assert not rig.irq and rig.r8(R.ISTAT) & Istat.DIP

    def test_pci_interrupt_disable_masks_inta_but_not_the_status_bit(self):
        rig = Rig()
        rig.w8(R.DIEN, Dstat.SIR)
        rig.chip.config_write(0x04, 2, Command.IO_SPACE | Command.MEMORY_SPACE | Command.INTX_DISABLE)
        rig.run(Program().int_(1))
        assert not rig.irq
        assert rig.chip.config_read(0x06, 2) & 0x08  # STATUS.INTERRUPT


# -- resets ----------------------------------------------------------------------------------------
class TestReset:
    def test_soft_reset_restores_reset_values_and_resets_the_scsi_bus(self):
        rig = Rig()
        for offset in (R.SCNTL0, R.SCID, R.DIEN, R.DSA, R.SCRATCHA, R.DMODE):
            rig.w8(offset, 0x5A)
        rig.ram_bar.write(0, 4, 0x11223344)
        rig.w8(R.ISTAT, Istat.SRST)
        assert rig.r8(R.ISTAT) == 0
        rig.w8(R.ISTAT, 0)
        for offset, value in RESET_VALUES.items():
            assert rig.r8(offset) == value, hex(offset)
        assert rig.r32(R.DSA) == 0 and rig.r32(R.SCRATCHA) == 0
        assert rig.disk.resets == 1
        assert rig.ram_bar.read(0, 4) == 0x11223344  # SCRIPTS RAM keeps its contents

    def test_scntl1_rst_resets_the_bus_once_while_held(self):
        rig = Rig()
        rig.w8(R.SCNTL1, R.Scntl1.RST)
        rig.w8(R.SCNTL1, R.Scntl1.RST)
        assert rig.disk.resets == 1
        assert rig.r8(R.SSTAT0) & R.Sstat0.RST
        rig.w8(R.SCNTL1, 0)
        assert not rig.r8(R.SSTAT0) & R.Sstat0.RST
        assert rig.r8(R.SIST0) == Sist0.RST


# -- the general purpose timer -----------------------------------------------------------------------
class TestGeneralPurposeTimer:
    def test_without_a_clock_it_expires_at_once_as_qemu_does(self):
        rig = Rig()
        rig.w8(R.SIEN1, Sist1.GEN)
        rig.w8(R.STIME1, 0x01)
        assert rig.irq and rig.r8(R.SIST1) == Sist1.GEN

    def test_with_a_clock_it_expires_after_its_period(self):
        clock = ManualClock(1_000)
        rig = Rig(clock=clock)
        rig.w8(R.SIEN1, Sist1.GEN)
        rig.w8(R.STIME1, 0x04)  # 1 ms
        assert rig.chip.next_deadline_ns() == 1_000 + 1_000_000
        rig.chip.advance_to(500_000)
        assert not rig.irq
        clock.advance(1_000_000)
        rig.chip.advance_to(clock.now_ns())
        assert rig.irq and rig.r8(R.SIST1) == Sist1.GEN
        assert rig.chip.next_deadline_ns() is None

    def test_writing_zero_stops_it(self):
        rig = Rig(clock=ManualClock())
        rig.w8(R.STIME1, 0x0F)
        rig.w8(R.STIME1, 0x00)
        assert rig.chip.next_deadline_ns() is None


# -- SCRIPTS RAM and saved state ----------------------------------------------------------------
def test_scripts_ram_is_8k_of_little_endian_memory():
    rig = Rig()
    rig.ram_bar.write(0x1FFC, 4, 0xDEADBEEF)
    assert rig.ram_bar.read(0x1FFC, 1) == 0xEF and rig.ram_bar.read(0x1FFE, 2) == 0xDEAD


def test_saved_state_is_plain_data_and_round_trips():
    rig = Rig(clock=ManualClock())
    rig.w32(R.DSA, 0x1234)
    rig.w8(R.DIEN, Dstat.SIR)
    rig.w8(R.STIME1, 0x08)
    rig.ram_bar.write(16, 4, 0xABCD)
    rig.run(Program().int_(7))
    state = rig.chip.save_state()
    assert_plain(state)
    other = Rig(clock=ManualClock())
    other.chip.load_state(state)
    assert other.chip.save_state() == state
    assert other.irq  # a pending interrupt is driven again after a load
    assert other.r32(R.DSPS) == 7 and other.ram_bar.read(16, 4) == 0xABCD


def test_a_damaged_state_is_refused():
    rig = Rig()
    state = rig.chip.save_state()
    state["scripts_ram"] = b"short"
    with pytest.raises(ValueError):
        Rig().chip.load_state(state)
