"""PCI configuration mechanism #1, firmware's power-on work, and BARs on the buses."""

from __future__ import annotations

from devices.base import ManualClock
from devices.pci.function import Bar, BarKind, PciFunction
from tests.helpers import boot_in_process, build_kernel


class Registers:
    """A register file that remembers writes and answers reads with its offset."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.writes: list[tuple[int, int, int]] = []

    def read(self, offset: int, size: int) -> int:
        return 0xA0 + offset

    def write(self, offset: int, size: int, value: int) -> None:
        self.writes.append((offset, size, value))


class ToyDevice(PciFunction):
    name = "toy"

    def __init__(self) -> None:
        super().__init__(0x1234, 0x5678, 0x020000, interrupt_pin=1)
        self.io = Registers("toy-io")
        self.regs = Registers("toy-mmio")
        self.add_bar(Bar(0, BarKind.IO, 32, self.io))
        self.add_bar(Bar(1, BarKind.MEMORY, 1024, self.regs))


def conf1_read(machine, slot: int, register: int, size: int = 4) -> int:
    machine.ports.write(0xCF8, 4, 0x80000000 | (slot << 11) | (register & 0xFC))
    return machine.ports.read(0xCFC + (register & 3), size)


def make_machine():
    from vmm.machine import Machine, MachineConfig
    import io

    machine = Machine(MachineConfig(memory_mib=16, deterministic=True), serial_out=io.BytesIO())
    toy = ToyDevice()
    machine.pci.attach(4, toy)
    return machine, toy


def test_host_bridge_sits_at_slot_zero_with_class_0600():
    machine, _ = make_machine()
    assert conf1_read(machine, 0, 0x00) == 0x12378086
    assert conf1_read(machine, 0, 0x08) >> 8 == 0x060000


def test_absent_slot_reads_all_ones():
    machine, _ = make_machine()
    assert conf1_read(machine, 9, 0x00) == 0xFFFFFFFF


def test_config_address_reads_back_as_written():
    machine, _ = make_machine()
    machine.ports.write(0xCF8, 4, 0x80001810)
    assert machine.ports.read(0xCF8, 4) == 0x80001810


def test_firmware_assigns_bars_enables_decoding_and_sets_the_interrupt_line():
    machine, toy = make_machine()
    assert conf1_read(machine, 4, 0x10) == 0xC001  # I/O from 0xC000
    memory_bar = conf1_read(machine, 4, 0x14)
    assert 0xFE000000 <= memory_bar < 0xFEC00000 and memory_bar % 0x1000 == 0
    assert conf1_read(machine, 4, 0x04, 2) & 0x7 == 0x7  # I/O, memory, bus master
    assert conf1_read(machine, 4, 0x3C, 1) == 10  # slot 4 -> IRQ 10
    assert machine.pic.elcr.read(1, 1) & (1 << 2)  # IRQ 10 level-triggered


def test_io_bar_reaches_the_device_with_relative_offsets():
    machine, toy = make_machine()
    machine.ports.write(0xC005, 1, 0x42)
    assert toy.io.writes == [(5, 1, 0x42)]
    assert machine.ports.read(0xC003, 1) == 0xA3


def test_bar_sizing_reads_back_the_size_mask():
    machine, _ = make_machine()
    machine.ports.write(0xCF8, 4, 0x80000000 | (4 << 11) | 0x14)
    machine.ports.write(0xCFC, 4, 0xFFFFFFFF)
    assert machine.ports.read(0xCFC, 4) == 0xFFFFFC00


def test_guest_moves_the_io_bar_and_the_old_range_floats():
    machine, toy = make_machine()
    machine.ports.write(0xCF8, 4, 0x80000000 | (4 << 11) | 0x10)
    machine.ports.write(0xCFC, 4, 0xD000)
    assert machine.ports.read(0xD001, 1) == 0xA1
    assert machine.ports.read(0xC001, 1) == 0xFF


def test_disabling_io_decoding_unmaps_the_bar():
    machine, _ = make_machine()
    machine.ports.write(0xCF8, 4, 0x80000000 | (4 << 11) | 0x04)
    machine.ports.write(0xCFC, 2, 0x0)
    assert machine.ports.read(0xC001, 1) == 0xFF


def test_intx_drives_the_pic_input_of_the_slot():
    machine, toy = make_machine()
    toy.set_interrupt_status(True)
    assert machine.pic.irq_line(10).level
    toy.set_interrupt_status(False)
    assert not machine.pic.irq_line(10).level


def test_guest_reads_the_memory_bar_through_mmio(tmp_path):
    # The guest finds BAR1 of 00:04.0 and reads a register through it: 0xA0 + 8.
    from tests.helpers import boot_in_process
    from vmm.machine import Machine, MachineConfig
    import io

    kernel = build_kernel(tmp_path, """
        mov $0x80002014, %eax   /* 00:04.0 register 0x14: BAR1 */
        mov $0xcf8, %dx
        out %eax, %dx
        mov $0xcfc, %dx
        in %dx, %eax
        and $0xfffffff0, %eax
        movb 8(%eax), %al
        mov $0x3f8, %dx
        out %al, %dx
        mov $0xf4, %dx
        xor %eax, %eax
        out %eax, %dx
    """)
    out = io.BytesIO()
    machine = Machine(MachineConfig(memory_mib=16, deterministic=True), serial_out=out)
    machine.pci.attach(4, ToyDevice())
    machine.load(kernel)
    result = machine.run(max_seconds=30)
    assert out.getvalue() == bytes([0xA8])
    assert result.status == 0


def test_guest_moves_the_memory_bar_and_reads_through_the_new_address_at_once(tmp_path):
    from vmm.machine import Machine, MachineConfig
    import io

    kernel = build_kernel(tmp_path, """
        mov $0x80002014, %eax
        mov $0xcf8, %dx
        out %eax, %dx
        mov $0xcfc, %dx
        mov $0xfd000000, %eax
        out %eax, %dx
        movb 0xfd000004, %al     /* the very next instruction uses the new address */
        mov $0x3f8, %dx
        out %al, %dx
        movb 0xfd000009, %al
        out %al, %dx
        mov $0xf4, %dx
        xor %eax, %eax
        out %eax, %dx
    """)
    out = io.BytesIO()
    machine = Machine(MachineConfig(memory_mib=16, deterministic=True), serial_out=out)
    machine.pci.attach(4, ToyDevice())
    machine.load(kernel)
    assert machine.run(max_seconds=30).status == 0
    assert out.getvalue() == bytes([0xA4, 0xA9])
