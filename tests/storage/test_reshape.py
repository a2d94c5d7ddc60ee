"""Resizing volumes and moving members between devices while in use."""

from __future__ import annotations

import os

import pytest

from storage.errors import StorageError
from storage.reshape import move_member
from storage.volume import VolumeManager

MiB = 1024 * 1024
LAYOUTS = [("concat", 1), ("raid0", 2), ("raid1", 2), ("raid5", 3)]


@pytest.fixture
def vm(pool):
    return VolumeManager(pool)


def _free_device(vm, vol):
    used = {m.device for m in vol.rec.members}
    return next(r.id for r in vm.pool.meta.devices if r.id not in used)


@pytest.mark.parametrize("layout,members", LAYOUTS)
def test_grow_keeps_data_and_new_space_reads_zeros(vm, layout, members):
    vol = vm.create_volume("v", MiB, layout, members=members)
    data = os.urandom(MiB)
    vol.write(0, data)
    vm.grow_volume("v", 2 * MiB + 4096)
    vol = vm.volume("v")
    assert vol.size == 2 * MiB + 4096
    assert vol.read(0, MiB) == data
    assert vol.read(MiB, MiB + 4096) == bytes(MiB + 4096)
    vol.write(2 * MiB, b"end")
    assert vol.read(2 * MiB, 3) == b"end"


def test_concat_grows_onto_another_extent_when_blocked(vm):
    a = vm.create_volume("a", MiB, "concat")
    vm.create_volume("b", MiB, "concat")  # may sit right after a
    vm.grow_volume("a", 5 * MiB)
    a = vm.volume("a")
    a.write(5 * MiB - 3, b"xyz")
    assert a.read(5 * MiB - 3, 3) == b"xyz"


def test_grow_of_striped_volume_needs_room_after_each_member(vm):
    vm.create_volume("v", MiB, "raid1", members=2)
    vm.create_volume("w", 4 * MiB, "raid1", members=4)  # takes the space after v
    with pytest.raises(StorageError, match="no free space right after the volume's extent"):
        vm.grow_volume("v", 4 * MiB)


def test_shrink_gives_space_back(vm):
    vol = vm.create_volume("v", 4 * MiB, "raid5", members=3)
    dev = vol.rec.members[0].device
    free = vm.pool.free_bytes(dev)
    vm.resize_volume("v", MiB)
    assert vm.pool.free_bytes(dev) > free


@pytest.mark.parametrize("layout,members", LAYOUTS)
def test_move_member_with_writes_during_the_move(vm, layout, members):
    vol = vm.create_volume("v", 2 * MiB, layout, members=members)
    data = bytearray(os.urandom(2 * MiB))
    vol.write(0, bytes(data))
    src, tgt = vol.rec.members[0].device, _free_device(vm, vol)
    steps = []

    def write_between_steps(done, total):
        off = (len(steps) * 300_007) % (2 * MiB - 5000)
        vol.write(off, b"M" * 5000)
        data[off:off + 5000] = b"M" * 5000
        # Whole stripes, each step its own, within what is already copied: RAID 5's
        # gathered member writes must reach the move target too.
        at = len(steps) * 256 * 1024 % (2 * MiB)
        whole = bytes([len(steps) + 1]) * (256 * 1024)
        vol.write(at, whole)
        data[at:at + len(whole)] = whole
        steps.append(done)

    move_member(vm, "v", src, tgt, progress=write_between_steps, step=256 * 1024)
    assert vol.rec.members[0].device == tgt and vol.rec.members[0].move is None
    assert vol.read(0, 2 * MiB) == bytes(data)
    vm.close()
    again = VolumeManager.open(vm.pool.directory if vm.pool.directory else None)
    assert again.volume("v").read(0, 2 * MiB) == bytes(data)
    again.close()


def test_a_moved_member_lands_on_a_stripe_unit_boundary_of_its_new_device(vm):
    vol = vm.create_volume("v", MiB, "raid5", members=3, stripe_unit=128 * 1024)
    data = os.urandom(MiB)
    vol.write(0, data)
    tgt = _free_device(vm, vol)
    odd = vm.create_volume("odd", 300_000, "concat")  # lands on the free device first
    assert odd.rec.members[0].device == tgt
    move_member(vm, "v", vol.rec.members[0].device, tgt)
    assert vol.rec.members[0].device == tgt
    assert vol.rec.members[0].offset % (128 * 1024) == 0
    assert vol.read(0, MiB) == data


def test_interrupted_move_resumes_after_restart_without_loss(pool, tmp_path):
    vm = VolumeManager(pool)
    vol = vm.create_volume("v", 4 * MiB, "raid1", members=2)
    data = bytearray(os.urandom(4 * MiB))
    vol.write(0, bytes(data))
    src, tgt = vol.rec.members[0].device, _free_device(vm, vol)

    class Crash(Exception):
        pass

    def crash_midway(done, total):
        if done >= MiB:
            raise Crash

    import storage.reshape as rs
    saved, rs.CHECKPOINT = rs.CHECKPOINT, MiB
    try:
        with pytest.raises(Crash):
            move_member(vm, "v", src, tgt, progress=crash_midway, step=512 * 1024)
    finally:
        rs.CHECKPOINT = saved
    vm.pool.close()  # crash: nothing more saved
    vm2 = VolumeManager.open(tmp_path / "pool")
    vol2 = vm2.volume("v")
    assert vol2.rec.members[0].move["copied"] == MiB
    vol2.write(100, b"after restart")  # below the watermark: must reach the copy too
    data[100:113] = b"after restart"
    vm2.resume()
    assert vol2.rec.members[0].device == tgt
    vm2.fail_device(vol2.rec.members[1].device)  # only the moved copy is left
    assert vol2.read(0, 4 * MiB) == bytes(data)
    vm2.close()


def test_move_refuses_to_put_two_mirrors_on_one_device(vm):
    vol = vm.create_volume("v", MiB, "raid1", members=2)
    a, b = (m.device for m in vol.rec.members)
    with pytest.raises(StorageError, match="two members on one device would lose redundancy"):
        vm.move_member("v", a, b)
