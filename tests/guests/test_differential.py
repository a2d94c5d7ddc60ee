"""Differential tests: the same guest ELF on qemu-system-i386 and on our monitor.

Serial output must match line for line once platform lines (memory sizes reported by
firmware, the Multiboot command line QEMU prefixes with the kernel path) are masked, and
both must report the same exit value. QEMU runs with `-m` equal to ours.
"""

from __future__ import annotations

import pytest

from tests.conftest import requires_qemu
from tests.guests.test_guests import GUESTS
from tests.helpers import behaviour_lines, guest, run_qemu, run_vmm

pytestmark = [requires_qemu, pytest.mark.qemu]

DIFFERENTIAL = dict(GUESTS, iobench="outs=20000 reps=50")


@pytest.mark.parametrize("name", sorted(DIFFERENTIAL))
def test_guest_behaves_on_our_monitor_as_on_qemu(name):
    kernel = guest(name)
    cmdline = DIFFERENTIAL[name]
    args = [str(kernel), "--memory", "64", "--max-seconds", "120"]
    if cmdline:
        args += ["--append", cmdline]
    ours = run_vmm(*args)
    reference = run_qemu(kernel, append=cmdline, memory_mib=64)
    assert reference.status == 0, f"the guest fails on QEMU itself: {reference.output}"
    assert behaviour_lines(ours.output) == behaviour_lines(reference.output)
    assert ours.status == reference.status


def test_hello_reports_memory_sizes_of_the_same_order_as_qemu():
    """The masked line still has to make sense: mem_upper is RAM above 1 MiB."""
    ours = run_vmm(str(guest("hello")), "--memory", "64")
    reference = run_qemu(guest("hello"), memory_mib=64)
    mem = lambda out: next(l for l in out.splitlines() if l.startswith("mem:"))
    assert mem(ours.output) == "mem: lower 639 KiB, upper 64512 KiB"
    assert mem(reference.output) == "mem: lower 639 KiB, upper 64384 KiB"  # SeaBIOS keeps 128 KiB
