"""Suspend and resume: a guest cannot tell. Whole guests are suspended at many points
(every Nth exit, in the middle of SCRIPTS programs, with interrupts pending) and
resumed, each time in a fresh machine, and must print and leave on disk exactly what an
uninterrupted deterministic run does."""

from __future__ import annotations

import io

import numpy as np
import pytest

from storage.vdisk import VirtualDisk
from tests.guests.test_scsi import expected_final_image, fresh_disk
from tests.helpers import guest
from vmm.machine import Machine, MachineConfig
from vmm.runloop import ExitStatus
from vmm.snapshot import resume


def run_with_suspends(
    tmp_path, kernel, config: MachineConfig, every: int, lsi_slice: int | None = None,
    limit: int = 200,
) -> tuple[str, int, int, list[bool]]:
    """Run to the end, suspending after every ``every`` exits and resuming in a new
    machine each time. Returns the output, the final status, the number of suspends,
    and for each suspend point (interrupt pending in the PIC, SCRIPTS in flight)."""
    out = io.BytesIO()
    machine = Machine(config, serial_out=out)
    machine.load(kernel)
    suspends, pending = 0, []
    image = str(tmp_path / "vm.image")
    while True:
        if lsi_slice is not None and machine.lsi is not None:
            machine.lsi.slice_instructions = lsi_slice
        result = machine.run(max_seconds=120, suspend_image=image, suspend_after=every)
        if result.status != ExitStatus.SUSPENDED:
            machine.close()
            return out.getvalue().decode(), result.status, suspends, pending
        scripts = machine.lsi.scripts.state.value if machine.lsi is not None else "stopped"
        pending.append((machine.pic.interrupt_pending(), scripts != "stopped"))
        machine.close()
        suspends += 1
        assert suspends <= limit, "the guest never finished"
        machine = resume(image, serial_out=out)


def uninterrupted(kernel, config: MachineConfig) -> tuple[str, int]:
    out = io.BytesIO()
    machine = Machine(config, serial_out=out)
    machine.load(kernel)
    result = machine.run(max_seconds=120)
    machine.close()
    return out.getvalue().decode(), result.status


@pytest.mark.parametrize("name,cmdline,every", [
    ("timer", "", 40),
    ("cpubench", "iterations=4 timer=1000", 15),
    ("usermode", "", 25),
    ("paging", "", 40),
])
def test_cpu_and_timer_guests_print_the_same_across_many_suspends(tmp_path, name, cmdline, every):
    config = MachineConfig(memory_mib=32, deterministic=True, cmdline=cmdline)
    reference = uninterrupted(guest(name), config)
    output, status, suspends, points = run_with_suspends(tmp_path, guest(name), config, every)
    assert (output, status) == reference
    assert suspends >= 5
    if name == "timer":
        assert any(irq for irq, _ in points), "some suspend points had IRQ 0 pending"


def test_scsi_guest_suspended_100_times_mid_scripts_prints_and_writes_the_same(tmp_path):
    reference_disk = fresh_disk(tmp_path / "reference.img")
    reference = uninterrupted(guest("scsi"), MachineConfig(memory_mib=64, deterministic=True, disks=[str(reference_disk)]))
    assert reference[1] == 0

    disk = fresh_disk(tmp_path / "disk.img")
    config = MachineConfig(memory_mib=64, deterministic=True, disks=[str(disk)])
    # One SCRIPTS instruction per slice: suspend points fall inside commands in flight.
    output, status, suspends, points = run_with_suspends(tmp_path, guest("scsi"), config, every=40, lsi_slice=1, limit=400)
    assert (output, status) == reference
    assert suspends >= 100
    assert sum(mid for _, mid in points) >= 10, "suspend points inside SCRIPTS programs in flight"
    final = VirtualDisk.open(disk)
    assert len(final.chain()) == suspends + 1  # one snapshot point per suspend
    assert final.read(0, final.num_blocks) == expected_final_image()
    final.close()


def test_resume_refuses_a_disk_changed_since_the_image_was_made(tmp_path):
    disk = fresh_disk(tmp_path / "disk.img")
    config = MachineConfig(memory_mib=64, deterministic=True, disks=[str(disk)])
    machine = Machine(config, serial_out=io.BytesIO())
    machine.load(guest("scsi"))
    assert machine.run(max_seconds=60, suspend_image=str(tmp_path / "vm.image"), suspend_after=500).status == 105
    machine.close()
    changed = VirtualDisk.open(disk)
    changed.snapshot()  # somebody else took the disk further
    changed.close()
    from vmm.image import ImageError

    with pytest.raises(ImageError, match="has changed since the image was made"):
        resume(tmp_path / "vm.image", serial_out=io.BytesIO())


def test_net_guest_suspended_while_frames_fly_passes_after_every_resume(tmp_path):
    """NIC traffic: the NE2000's ring, registers and PROM travel in the image; the NIC
    reattaches to its UDP backend in the resumed machine."""
    from tests.guests.test_guests import golden
    from tests.helpers import behaviour_lines, free_udp_port
    from vmm.machine import NicConfig

    port = free_udp_port()
    config = MachineConfig(
        memory_mib=32, deterministic=True,
        nic=NicConfig(backend=f"udp:127.0.0.1:{port}:127.0.0.1:{port}"),
    )
    output, status, suspends, _ = run_with_suspends(tmp_path, guest("net"), config, every=300)
    assert behaviour_lines(output) == golden("net")
    assert status == 0
    assert suspends >= 10
