"""Every test guest boots on our monitor and prints what it prints on QEMU.

The golden files in golden/ were recorded on qemu-system-i386 7.2 (TCG), the reference,
with platform lines (memory sizes, the command line) masked.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import behaviour_lines, boot_in_process, guest, run_vmm

GOLDEN = Path(__file__).parent / "golden"

# Guest -> command line that keeps the test short; the golden file used the same.
GUESTS = {
    "hello": "",
    "timer": "",
    "usermode": "",
    "paging": "",
    "exceptions": "",
    "faults": "",
    "cpubench": "iterations=20 timer=1000",
    "rmwloop": "iterations=300000",
}


def golden(name: str) -> list[str]:
    return behaviour_lines((GOLDEN / f"{name}.out").read_text())


@pytest.mark.parametrize("name", sorted(GUESTS))
def test_guest_prints_the_reference_output_and_exits_zero(name):
    boot, _ = boot_in_process(guest(name), cmdline=GUESTS[name], deterministic=False)
    assert behaviour_lines(boot.output) == golden(name)
    assert boot.output.splitlines()[-1] == f"PASS {name}"
    assert boot.status == 0


def test_hello_reports_the_memory_the_machine_has():
    boot, _ = boot_in_process(guest("hello"), memory_mib=64)
    assert "mem: lower 639 KiB, upper 64512 KiB" in boot.output.splitlines()


def test_hello_sees_the_command_line_given_with_append():
    boot, _ = boot_in_process(guest("hello"), cmdline="console=ttyS0 quiet")
    assert "cmdline: console=ttyS0 quiet" in boot.output.splitlines()


def test_vmm_run_boots_hello_as_a_command():
    boot = run_vmm(str(guest("hello")), "--max-seconds", "60")
    assert boot.status == 0
    assert boot.output.splitlines()[0] == "Hello from the guest"
    assert boot.stderr == ""


def test_timer_guest_takes_its_ticks_from_virtual_time_that_skips_while_halted():
    boot, machine = boot_in_process(guest("timer"), deterministic=True)
    assert boot.status == 0
    # 50 ticks at 100 Hz: half a second of virtual time, whatever the host took.
    assert 0.49e9 < machine.clock.now_ns() < 0.52e9
    assert machine.stats.by_reason["interrupt"] == 50
    assert machine.stats.by_reason["hlt"] >= 50
