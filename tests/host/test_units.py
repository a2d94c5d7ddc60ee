"""Processing units: a host runs VMs on worker threads in parallel, and a VM moved between
units, any number of times, in the middle of its disk traffic, prints and writes exactly
what an uninterrupted run does (deterministic mode)."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest

from storage.vdisk import VirtualDisk
from tests.guests.test_guests import golden
from tests.guests.test_scsi import expected_final_image, fresh_disk
from tests.helpers import behaviour_lines, free_udp_port, guest
from vmm.host import Host, HostError
from vmm.machine import Machine, MachineConfig, NicConfig


def patterned_disk(path, mib: int, key: int = 0x5A5A5A5A):
    """A raw disk whose every little-endian word at offset X holds X ^ key."""
    (np.arange(0, mib << 20, 4, dtype=np.uint32) ^ np.uint32(key)).astype("<u4").tofile(path)
    return path


def disk_contents(path) -> bytes:
    """The disk as the guest sees it: the raw image read through its redo overlays."""
    disk = VirtualDisk.open(path)
    try:
        return disk.read(0, disk.num_blocks)
    finally:
        disk.close()


def uninterrupted(kernel, config: MachineConfig) -> tuple[bytes, int]:
    """What the guest prints and its status, run start to end on one Machine."""
    out = io.BytesIO()
    machine = Machine(config, serial_out=out)
    machine.load(kernel)
    result = machine.run(max_seconds=120)
    machine.close()
    return out.getvalue(), result.status


@pytest.fixture
def host(tmp_path):
    host = Host(2, tmp_path / "state")
    yield host
    host.shutdown()


def bench_config(disk, console, mib: int) -> MachineConfig:
    # scsibench write=1 writes 64 KiB chunks from LBA 0 up; mib = the disk's size: each
    # chunk is written exactly once, so a lost or repeated write shows on the disk. spin:
    # the guest counts between writes, so the run outlasts the moves made while it runs.
    return MachineConfig(memory_mib=32, deterministic=True, disks=[str(disk)],
                         cmdline=f"mib={mib} write=1 spin=100", serial=str(console))


def test_a_disk_heavy_vm_moved_between_two_units_20_times_prints_and_writes_what_an_uninterrupted_run_does(host, tmp_path):
    reference_disk = patterned_disk(tmp_path / "reference.img", 64)
    reference = uninterrupted(guest("scsibench"), MachineConfig(
        memory_mib=32, deterministic=True, disks=[str(reference_disk)], cmdline="mib=64 write=1"))
    assert reference == (b"done\nPASS scsibench\n", 0)

    disk = patterned_disk(tmp_path / "disk.img", 64)
    console = tmp_path / "console.log"
    vm = host.start(guest("scsibench"), bench_config(disk, console, 64))
    for move in range(20):
        host.move(vm.name, 1 - vm.unit)
        assert not vm.ended, f"the guest ended after {move} moves: make the run longer"
        time.sleep(0.005)
    host.wait(vm.name, timeout=120)

    assert (vm.state, vm.status, vm.moves) == ("exited", 0, 20)
    assert vm.ran_on == {0, 1}
    assert console.read_bytes() == reference[0]
    assert disk.read_bytes() == reference_disk.read_bytes()
    assert disk.read_bytes() != patterned_disk(tmp_path / "untouched.img", 64).read_bytes()


def test_the_scsi_guest_moved_back_and_forth_while_it_runs_passes_every_check_and_leaves_exactly_its_writes(host, tmp_path):
    disk = fresh_disk(tmp_path / "disk.img")
    console = tmp_path / "console.log"
    config = MachineConfig(memory_mib=64, deterministic=True, disks=[str(disk)], serial=str(console))
    vm = host.start(guest("scsi"), config)
    while not vm.ended:
        try:
            host.move(vm.name, 1 - vm.unit)
        except HostError:  # it ended between the check and the move
            break
    host.wait(vm.name, timeout=120)

    assert (vm.state, vm.status) == ("exited", 0)
    assert vm.moves >= 20
    assert behaviour_lines(console.read_text()) == golden("scsi")
    assert disk.read_bytes() == expected_final_image()


def test_a_vm_moved_between_units_while_its_nic_sends_and_receives_keeps_its_nic_and_passes(host, tmp_path):
    port = free_udp_port()  # frames sent come back to the same NIC
    console = tmp_path / "console.log"
    config = MachineConfig(memory_mib=32, serial=str(console),
                           nic=NicConfig(backend=f"udp:127.0.0.1:{port}:127.0.0.1:{port}"))
    vm = host.start(guest("net"), config)
    nic = vm.machine.nic
    while not vm.ended:
        try:
            host.move(vm.name, 1 - vm.unit)
        except HostError:
            break
        time.sleep(0.002)
    host.wait(vm.name, timeout=120)

    assert (vm.state, vm.status) == ("exited", 0)
    assert vm.moves >= 3 and vm.ran_on == {0, 1}
    assert vm.machine.nic is nic
    assert behaviour_lines(console.read_text()) == golden("net")


def test_two_vms_run_on_two_units_at_the_same_time(host, tmp_path):
    config = dict(memory_mib=16, deterministic=True, cmdline="iterations=40 timer=1000")
    reference = uninterrupted(guest("cpubench"), MachineConfig(**config))
    first = host.start(guest("cpubench"), MachineConfig(**config, serial=str(tmp_path / "a.log")))
    second = host.start(guest("cpubench"), MachineConfig(**config, serial=str(tmp_path / "b.log")))
    assert {first.unit, second.unit} == {0, 1}, "the scheduler put each VM on the least loaded unit"

    both_running = False
    while not (first.ended or second.ended):
        units = host.list()["units"]
        if all(unit["running"] for unit in units):
            both_running = True
            break
        time.sleep(0.001)
    host.wait(first.name, timeout=120)
    host.wait(second.name, timeout=120)

    assert both_running
    assert (tmp_path / "a.log").read_bytes() == reference[0]
    assert (tmp_path / "b.log").read_bytes() == reference[0]
    assert (first.status, second.status) == (reference[1], reference[1]) == (0, 0)


def test_vms_sharing_one_unit_take_turns_and_each_prints_what_it_prints_alone(tmp_path):
    host = Host(1, tmp_path / "state", quantum=0.01)
    try:
        config = dict(memory_mib=16, deterministic=True, cmdline="iterations=20 timer=1000")
        reference = uninterrupted(guest("cpubench"), MachineConfig(**config))
        vms = [host.start(guest("cpubench"), MachineConfig(**config, serial=str(tmp_path / f"{i}.log")))
               for i in range(2)]
        for vm in vms:
            host.wait(vm.name, timeout=120)
    finally:
        host.shutdown()
    for i, vm in enumerate(vms):
        assert (vm.status, (tmp_path / f"{i}.log").read_bytes()) == (0, reference[0])
        assert vm.turns > 1, "each VM waited for the other at least once"


def test_a_vm_suspended_on_the_host_resumes_on_another_unit_and_finishes_as_if_never_stopped(host, tmp_path):
    reference_disk = patterned_disk(tmp_path / "reference.img", 32)
    reference = uninterrupted(guest("scsibench"), MachineConfig(
        memory_mib=32, deterministic=True, disks=[str(reference_disk)], cmdline="mib=32 write=1"))

    disk = patterned_disk(tmp_path / "disk.img", 32)
    console = tmp_path / "console.log"
    vm = host.start(guest("scsibench"), bench_config(disk, console, 32), unit=0)
    host.suspend(vm.name, tmp_path / "vm.image")
    assert (vm.state, vm.status) == ("suspended", 105)

    again = host.resume(tmp_path / "vm.image", unit=1)
    host.wait(again.name, timeout=120)
    assert (again.status, again.ran_on) == (0, {1})
    assert console.read_bytes() == reference[0]
    assert disk_contents(disk) == reference_disk.read_bytes()  # through the overlay made at suspend
