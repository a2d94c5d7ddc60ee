"""The `vmm run` contract: exit statuses, where output goes, refusals with a reason."""

from __future__ import annotations

import pytest

from tests.helpers import build_kernel, guest, run_vmm

PRINT_X_AND_EXIT = """
    mov $0x3f8, %dx
    mov $'X', %al
    out %al, %dx
    mov $0xf4, %dx
    mov ${code}, %eax
    out %eax, %dx
1:  jmp 1b
"""


@pytest.fixture
def exits_with(tmp_path):
    def make(code: int):
        return build_kernel(tmp_path, PRINT_X_AND_EXIT.format(code=code), f"exit{code}")
    return make


@pytest.mark.parametrize("code", [0, 1, 42, 99])
def test_exit_status_is_the_value_written_to_port_f4(exits_with, code):
    boot = run_vmm(str(exits_with(code)))
    assert boot.status == code
    assert boot.output == "X"


def test_values_of_100_and_more_are_reported_as_99(exits_with):
    assert run_vmm(str(exits_with(0x1234))).status == 99


def test_a_spinning_guest_is_stopped_by_max_seconds(tmp_path):
    kernel = build_kernel(tmp_path, "1: jmp 1b")
    boot = run_vmm(str(kernel), "--max-seconds", "0.5")
    assert boot.status == 102
    assert "max-seconds" in boot.stderr


def test_hlt_with_interrupts_disabled_halts_the_vm_for_good(tmp_path):
    kernel = build_kernel(tmp_path, "cli\nhlt\njmp _start")
    boot = run_vmm(str(kernel), "--max-seconds", "30")
    assert boot.status == 101
    assert "halted" in boot.stderr


def test_hlt_with_nothing_that_can_wake_it_halts_the_vm(tmp_path):
    kernel = build_kernel(tmp_path, "sti\nhlt\njmp _start")
    assert run_vmm(str(kernel), "--max-seconds", "30").status == 101


def test_a_triple_fault_stops_the_vm_with_status_100(tmp_path):
    # An IDT too small for any vector: #BP -> #GP -> #DF -> triple fault.
    kernel = build_kernel(tmp_path, """
        lidt idt_descriptor
        int3
    1:  jmp 1b
    idt_descriptor: .word 0
                    .long 0
    """)
    boot = run_vmm(str(kernel), "--max-seconds", "30")
    assert boot.status == 100
    assert "triple fault" in boot.stderr


def test_a_file_that_is_not_multiboot_is_refused_with_the_reason(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x90" * 10000)
    boot = run_vmm(str(junk))
    assert boot.status == 103
    assert "no Multiboot header" in boot.stderr
    assert "Traceback" not in boot.stderr


def test_a_missing_kernel_is_refused(tmp_path):
    boot = run_vmm(str(tmp_path / "absent.elf"))
    assert boot.status == 103
    assert "absent.elf" in boot.stderr


def test_a_bad_option_is_a_usage_error():
    boot = run_vmm(str(guest("hello")), "--memory", "lots")
    assert boot.status == 2


def test_stats_prints_the_exit_table_on_stderr_not_stdout():
    boot = run_vmm(str(guest("timer")), "--stats")
    assert boot.status == 0
    assert "VM exits" in boot.stderr
    assert "interrupt" in boot.stderr and "pit" in boot.stderr
    assert "VM exits" not in boot.output


def test_serial_output_can_go_to_a_file(tmp_path):
    path = tmp_path / "console.txt"
    boot = run_vmm(str(guest("hello")), "--serial", str(path))
    assert boot.status == 0
    assert boot.output == ""
    assert path.read_text().startswith("Hello from the guest\n")


def test_multiboot_modules_come_from_initrd(tmp_path):
    module = tmp_path / "module.bin"
    module.write_bytes(b"M" * 5000)
    # Print mods_count from the info structure's flags/mods fields as one byte: '1'.
    kernel = build_kernel(tmp_path, """
        mov 20(%ebx), %eax      /* mods_count */
        add $'0', %al
        mov $0x3f8, %dx
        out %al, %dx
        mov 24(%ebx), %esi      /* mods_addr */
        mov (%esi), %ecx        /* mod_start */
        mov 4(%esi), %edx       /* mod_end */
        sub %ecx, %edx
        cmp $5000, %edx
        jne 1f
        movb (%ecx), %al
        mov $0x3f8, %dx
        out %al, %dx
    1:  mov $0xf4, %dx
        xor %eax, %eax
        out %eax, %dx
    """)
    boot = run_vmm(str(kernel), "--initrd", str(module))
    assert boot.output == "1M"
    assert boot.status == 0


def test_unassigned_physical_memory_reads_all_ones_and_ignores_writes(tmp_path):
    # Above 64 MiB of RAM nothing decodes: a PC's open bus.
    kernel = build_kernel(tmp_path, """
        movl $0x12345678, 0x8000000
        mov 0x8000000, %eax
        cmp $0xffffffff, %eax
        jne 1f
        mov $0x3f8, %dx
        mov $'F', %al
        out %al, %dx
    1:  mov $0xf4, %dx
        xor %eax, %eax
        out %eax, %dx
    """)
    boot = run_vmm(str(kernel), "--memory", "64")
    assert boot.output == "F"
    assert boot.status == 0


def test_jumping_to_unassigned_memory_raises_invalid_opcode_with_nothing_to_handle_it(tmp_path):
    # No IDT: the #UD cannot be delivered (#GP, #DF, then a triple fault), as on a PC.
    kernel = build_kernel(tmp_path, """
        lidt idt_descriptor
        mov $0x8000000, %eax
        jmp *%eax
    idt_descriptor: .word 0
                    .long 0
    """)
    boot = run_vmm(str(kernel), "--memory", "64", "--max-seconds", "30")
    assert boot.status == 100


def test_the_first_write_to_the_exit_port_decides_even_if_more_code_runs(tmp_path):
    # The stop lands only at the next memory access or block end: a second exit write
    # in the same block must not change the status.
    kernel = build_kernel(tmp_path, """
        mov $0xf4, %dx
        mov $3, %eax
        out %eax, %dx
        mov $9, %eax
        out %eax, %dx
    1:  jmp 1b
    """)
    assert run_vmm(str(kernel)).status == 3


def test_nic_option_takes_a_model_and_refuses_an_unknown_one():
    from vmm.cli import parse_nic

    assert parse_nic("switch:lan0,model=rtl8029", None).model == "rtl8029"
    assert parse_nic("switch:lan0", None).model == "ne2000"
    with pytest.raises(ValueError, match="model must be one of ne2000, rtl8029, not e1000"):
        parse_nic("switch:lan0,model=e1000", None)
    from vmm.machine import NicConfig

    with pytest.raises(ValueError, match="not e1000"):  # the API refuses it the same way
        NicConfig("switch:lan0", model="e1000")


def test_run_warns_when_the_engine_is_the_stock_wheel(exits_with, monkeypatch, capsys):
    from vmm import cli
    from vmm.native import patched_unicorn

    monkeypatch.setattr(patched_unicorn, "is_installed", lambda: False)
    assert cli.main(["run", str(exits_with(3))]) == 3
    assert "libunicorn is not the patched build" in capsys.readouterr().err


def test_run_on_the_patched_engine_prints_no_warning(exits_with):
    boot = run_vmm(str(exits_with(0)))
    assert boot.status == 0 and "warning" not in boot.stderr
