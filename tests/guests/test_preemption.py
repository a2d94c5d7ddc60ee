"""Preemption never corrupts a guest, and deterministic mode repeats itself exactly.

The run loop stops a busy guest at timer deadlines from the native block hook, which
acts only at the start of a translation block: a stop can never land between the load
and the store of a read-modify-write instruction (Unicorn 2.1.4 would then run it twice,
../shared/research/linux-on-unicorn.md item 6). These tests force thousands of extra
stops and check that every guest still prints its uninterrupted output.
"""

from __future__ import annotations

import pytest

from tests.guests.test_guests import GUESTS, golden
from tests.helpers import behaviour_lines, boot_in_process, guest

# Guest -> (command line, forced stop interval in deterministic / wall-clock mode, the
# least number of stops the run must see). Deterministic intervals are virtual ns, i.e.
# bytes of guest code; the short guests are stopped far more often to reach hundreds.
STRESSED = {
    "rmwloop": ("iterations=300000", 3_000, 20_000, 1000),
    "cpubench": ("iterations=20 timer=1000", 3_000, 20_000, 1000),
    "faults": ("", 300, 5_000, 1000),
    "paging": ("", 300, 5_000, 200),
    "usermode": ("", 300, 5_000, 200),
}


@pytest.mark.parametrize("name", sorted(STRESSED))
@pytest.mark.parametrize("deterministic", [True, False], ids=["deterministic", "wall-clock"])
def test_guest_output_is_unchanged_when_stopped_at_many_points(name, deterministic):
    cmdline, every_virtual, every_wall, least = STRESSED[name]
    boot, machine = boot_in_process(
        guest(name),
        cmdline=cmdline,
        deterministic=deterministic,
        preempt_every_ns=every_virtual if deterministic else every_wall,
    )
    assert behaviour_lines(boot.output) == golden(name)
    assert boot.status == 0
    assert machine.stats.by_reason["preempt"] >= least


def test_rmwloop_is_preempted_by_its_own_1khz_timer_without_corruption():
    boot, machine = boot_in_process(guest("rmwloop"), cmdline=GUESTS["rmwloop"], deterministic=False)
    assert "all values as predicted" in boot.output
    assert machine.stats.by_reason["interrupt"] > 0


@pytest.mark.parametrize("name,cmdline", [("timer", ""), ("cpubench", "iterations=10 timer=1000")])
def test_two_deterministic_runs_see_the_same_ticks_at_the_same_virtual_times(name, cmdline):
    runs = [boot_in_process(guest(name), cmdline=cmdline, deterministic=True) for _ in range(2)]
    (first, m1), (second, m2) = runs
    assert first.output == second.output
    assert m1.stats.by_reason["interrupt"] == m2.stats.by_reason["interrupt"] > 0
    assert m1.clock.now_ns() == m2.clock.now_ns()
    assert m1.fast.code_bytes == m2.fast.code_bytes
