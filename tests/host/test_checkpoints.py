"""Checkpoints for failover: a VM checkpointed while it writes its disk, whose unit or
whole host process then dies, restarts from its newest checkpoint and loses no write it
had seen completed before that checkpoint: it prints and leaves on its disk exactly what
an uninterrupted run does (deterministic mode)."""

from __future__ import annotations

import io
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from storage.vdisk import VirtualDisk
from tests.helpers import REPO, guest
from tests.host.test_units import disk_contents, patterned_disk, uninterrupted
from vmm.checkpoint import Checkpointer, CheckpointStore, prepare_disks
from vmm.host import Host, HostError, call
from vmm.machine import Machine, MachineConfig

MIB = 32
CHUNK = 64 * 1024  # scsibench writes 64 KiB chunks from LBA 0 up, each exactly once
# spin: the guest counts between its writes, so the run lasts a couple of seconds and the
# tests' checkpoints, kills and unit failures land in the middle of it, not after its end.
CMDLINE = f"mib={MIB} write=1 spin=200"


def bench(disk, console=None) -> MachineConfig:
    config = MachineConfig(memory_mib=32, deterministic=True, disks=[str(disk)], cmdline=CMDLINE)
    if console is not None:
        config.serial = str(console)
    return config


@pytest.fixture
def reference(tmp_path):
    """Console output, status and final disk of an uninterrupted run."""
    disk = patterned_disk(tmp_path / "reference.img", MIB)
    output, status = uninterrupted(guest("scsibench"), bench(disk))
    assert (output, status) == (b"done\nPASS scsibench\n", 0)
    return output, disk.read_bytes()


def guest_code_of_a_whole_run(tmp_path) -> int:
    """Bytes of guest code a deterministic scsibench run enters from boot to exit."""
    out = io.BytesIO()
    machine = Machine(bench(patterned_disk(tmp_path / "whole.img", MIB)), serial_out=out)
    machine.load(guest("scsibench"))
    assert machine.run(max_seconds=120).status == 0
    code = machine.fast.code_bytes
    machine.close()
    return code


def chunks_written(contents: bytes, final: bytes, untouched: bytes) -> int:
    """How many chunks from the start hold the guest's data; asserts the rest are untouched."""
    count = len(contents) // CHUNK
    written = 0
    while written < count and contents[written * CHUNK:(written + 1) * CHUNK] == final[written * CHUNK:(written + 1) * CHUNK]:
        written += 1
    assert contents[written * CHUNK:] == untouched[written * CHUNK:], "writes land in order from LBA 0"
    return written


def disk_at(disk: Path, chain: list[str], tmp_path: Path) -> bytes:
    """What ``disk`` held when ``chain`` ended in a fresh snapshot point: its layers below
    the top overlay, copied aside and read through."""
    aside = Path(tempfile.mkdtemp(dir=tmp_path))
    for name in chain[:-1]:
        shutil.copyfile(disk.parent / name, aside / name)
    return disk_contents(aside / chain[0])


def test_a_vm_whose_unit_died_restarts_from_its_newest_checkpoint_and_finishes_as_if_nothing_happened(tmp_path, reference):
    output, final = reference
    untouched = patterned_disk(tmp_path / "untouched.img", MIB).read_bytes()
    disk = patterned_disk(tmp_path / "disk.img", MIB)
    console = tmp_path / "console.log"
    host = Host(2, tmp_path / "state")
    try:
        vm = host.start(guest("scsibench"), bench(disk, console))
        at_checkpoint = 0
        while at_checkpoint == 0:  # a checkpoint in the middle of its writes
            time.sleep(0.02)
            checkpoint = host.checkpoint_now(vm.name)
            at_checkpoint = chunks_written(disk_at(disk, checkpoint.disks[0]["chain"], tmp_path), final, untouched)

        def unit_dies() -> None:
            raise RuntimeError("unit lost")

        time.sleep(0.02)  # more writes, after the checkpoint, that the restart undoes
        vm.loop.request_action(unit_dies)
        host.wait(vm.name, timeout=60)
        assert (vm.state, vm.status) == ("failed", 104)
        assert "unit lost" in vm.reason

        assert at_checkpoint < len(final) // CHUNK, "the checkpoint fell in the middle of the writes"

        again = host.restart(vm.name)
        assert again.restarted_from == str(checkpoint.image)
        host.wait(again.name, timeout=60)
    finally:
        host.shutdown()
    assert (again.state, again.status) == ("exited", 0)
    assert console.read_bytes() == output
    assert disk_contents(disk) == final
    # It went on from the checkpoint: a boot from scratch would run the whole program.
    assert 0 < again.machine.fast.code_bytes < guest_code_of_a_whole_run(tmp_path)


def test_periodic_checkpoints_keep_only_the_newest_k(tmp_path, reference):
    disk = patterned_disk(tmp_path / "disk.img", MIB)
    host = Host(1, tmp_path / "state")
    try:
        vm = host.start(guest("scsibench"), bench(disk, tmp_path / "console.log"))
        checkpointer = host.checkpoint(vm.name, every=0.02, keep=2)
        host.wait(vm.name, timeout=60)
    finally:
        host.shutdown()
    assert vm.status == 0
    assert checkpointer.taken >= 3 and checkpointer.error is None
    kept = CheckpointStore(tmp_path / "state" / vm.name / "checkpoints").checkpoints()
    assert [c.seq for c in kept] == [checkpointer.taken - 1, checkpointer.taken]
    assert sorted(p.name for p in kept[0].image.parent.iterdir()) == sorted(
        [f"ckpt-{c.seq:06d}.{ext}" for c in kept for ext in ("image", "json")])
    assert disk_contents(disk) == reference[1]


def test_the_checkpoint_interval_counts_from_the_end_of_the_last_checkpoint(tmp_path):
    """A checkpoint slower than the interval still leaves the guest ``every`` seconds of
    running between two checkpoints, instead of checkpoints back to back."""
    every, cost = 0.02, 0.05
    spans: list[tuple[float, float]] = []

    def take():
        start = time.monotonic()
        time.sleep(cost)
        spans.append((start, time.monotonic()))

    # The run loop: runs each requested action on its own thread, as between slices.
    def request(action):
        threading.Thread(target=action).start()

    checkpointer = Checkpointer(CheckpointStore(tmp_path), every, keep=2, request=request, take=take)
    deadline = time.monotonic() + 30
    while checkpointer.taken < 5:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    checkpointer.stop()
    gaps = [later[0] - earlier[1] for earlier, later in zip(spans, spans[1:])]
    assert all(gap >= every for gap in gaps), gaps
    assert checkpointer.error is None


def test_a_restart_is_refused_when_a_disk_no_longer_continues_the_checkpoint(tmp_path):
    disk = patterned_disk(tmp_path / "disk.img", MIB)
    host = Host(1, tmp_path / "state")
    try:
        vm = host.start(guest("scsibench"), bench(disk, tmp_path / "console.log"))
        host.checkpoint_now(vm.name)
        host.wait(vm.name, timeout=60)
        merged = VirtualDisk.open(disk)
        merged.commit()  # someone merged the checkpoint's overlay into the base
        merged.close()
        before = disk.read_bytes()
        with pytest.raises(HostError, match="no longer continues checkpoint 1"):
            host.restart(vm.name)
    finally:
        host.shutdown()
    assert disk.read_bytes() == before


def test_a_restart_without_a_checkpoint_says_so(tmp_path):
    host = Host(1, tmp_path / "state")
    try:
        with pytest.raises(HostError, match="vm7: no checkpoint in"):
            host.restart("vm7")
    finally:
        host.shutdown()


# -- the whole host process dies --------------------------------------------------------------------

def answers(path: Path) -> bool:
    """Does a host process listen on ``path`` (a socket left by a killed one does not)?"""
    try:
        call(str(path), {"command": "list"}, timeout=5)
        return True
    except HostError:
        return False


def host_process(tmp_path: Path, socket: Path) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "vmm.host_cli", "host", "start", "--units", "2",
         "--socket", str(socket), "--state", str(tmp_path / "state")],
        cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while not answers(socket):
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "the host process never opened its socket"
        time.sleep(0.02)
    return process


def vm_command(socket: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vmm.host_cli", "vm", *args, "--socket", str(socket)],
        cwd=REPO, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
    )


def test_sigkill_of_the_host_process_then_restart_from_the_last_checkpoint_loses_no_completed_write(tmp_path, reference):
    output, final = reference
    untouched = patterned_disk(tmp_path / "untouched.img", MIB).read_bytes()
    disk = patterned_disk(tmp_path / "disk.img", MIB)
    console = tmp_path / "console.log"
    socket = tmp_path / "host.sock"

    first = host_process(tmp_path, socket)
    try:
        started = vm_command(socket, "start", str(guest("scsibench")), "--memory", "32", "--deterministic",
                             "--append", CMDLINE, "--disk", str(disk), "--serial", str(console),
                             "--name", "db", "--checkpoint-every", "0.03", "--keep", "3")
        assert started.returncode == 0, started.stderr
        assert started.stdout.startswith("db on unit 0")
        store = CheckpointStore(started.stdout.splitlines()[1].removeprefix("checkpoints in "))
        # Kill it once a checkpoint holds some of its writes.
        deadline = time.monotonic() + 60
        while len(store.checkpoints()) < 2 or chunks_written(
                disk_at(disk, store.newest().disks[0]["chain"], tmp_path), final, untouched) == 0:
            assert time.monotonic() < deadline, "no checkpoint with writes in it was taken"
            time.sleep(0.005)
        listing = call(str(socket), {"command": "list"})
        assert [vm["state"] for vm in listing["vms"]] == ["running"]
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()

    newest = store.newest()
    # A checkpoint is written before the oldest is pruned: a kill in between leaves keep + 1.
    assert len(store.checkpoints()) <= 3 + 1
    at_checkpoint = chunks_written(disk_at(disk, newest.disks[0]["chain"], tmp_path), final, untouched)
    assert 0 < at_checkpoint < len(final) // CHUNK, "the host died in the middle of the writes"

    # Every write the guest had seen completed at the checkpoint is on the disk once the
    # disk is put back to that instant (what a restart does first).
    prepare_disks(newest)
    assert chunks_written(disk_contents(disk), final, untouched) == at_checkpoint

    second = host_process(tmp_path, socket)
    try:
        restarted = vm_command(socket, "restart", "db")
        assert restarted.returncode == 0, restarted.stderr
        assert restarted.stdout.strip().endswith(newest.image.name)
        waited = vm_command(socket, "wait", "db", "--timeout", "60")
        assert waited.returncode == 0, waited.stderr
        assert store.newest().seq > newest.seq, "the restarted VM is checkpointed as before"
        listing = vm_command(socket, "list")
        assert "db" in listing.stdout and "exited" in listing.stdout
        stopped = subprocess.run([sys.executable, "-m", "vmm.host_cli", "host", "stop", "--socket", str(socket)],
                                 cwd=REPO, capture_output=True, text=True, timeout=60)
        assert stopped.returncode == 0, stopped.stderr
        assert second.wait(30) == 0
    finally:
        if second.poll() is None:
            second.kill()
            second.wait()
    assert console.read_bytes() == output
    assert disk_contents(disk) == final


def test_vm_commands_without_a_host_process_fail_with_one_line(tmp_path):
    result = vm_command(tmp_path / "nothing.sock", "list")
    assert result.returncode == 1
    assert result.stderr == f"vmm: no host process listens on {tmp_path / 'nothing.sock'} (vmm host start)\n"


def test_vm_commands_refuse_what_the_host_cannot_do_with_one_line_each(tmp_path):
    socket = tmp_path / "host.sock"
    process = host_process(tmp_path, socket)
    try:
        missing = vm_command(socket, "start", str(tmp_path / "nothing.elf"))
        no_vm = vm_command(socket, "move", "vm9", "1")
        no_unit = vm_command(socket, "start", str(guest("hello")), "--unit", "5")
        no_checkpoint = vm_command(socket, "restart", "vm9")
        second = subprocess.run(
            [sys.executable, "-m", "vmm.host_cli", "host", "start", "--socket", str(socket),
             "--state", str(tmp_path / "state")],
            cwd=REPO, capture_output=True, text=True, timeout=60)
        empty = vm_command(socket, "list")
    finally:
        subprocess.run([sys.executable, "-m", "vmm.host_cli", "host", "stop", "--socket", str(socket)],
                       cwd=REPO, capture_output=True, timeout=60)
        process.wait(30)
    for result in (missing, no_vm, no_unit, no_checkpoint, second):
        assert result.returncode == 1
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("vmm: "), result.stderr
    assert str(tmp_path / "nothing.elf") in missing.stderr
    assert no_vm.stderr == "vmm: no VM named 'vm9' on this host\n"
    assert no_unit.stderr == "vmm: no unit 5 (units 0-1)\n"
    assert no_checkpoint.stderr.startswith("vmm: vm9: no checkpoint in ")
    assert second.stderr == f"vmm: {socket}: another host process listens there\n"
    assert empty.stdout == "unit 0: running -; waiting -\nunit 1: running -; waiting -\n"
