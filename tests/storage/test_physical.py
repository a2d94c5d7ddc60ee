"""Physical devices: labels, re-assembly from any order/path, failures and damage."""

from __future__ import annotations

import os
import random
import shutil
import uuid

import pytest

from storage.errors import DeviceFailedError, DeviceIOError, LabelError, StorageError
from storage.physical import DATA_OFFSET, IOV_BATCH, LABEL_SIZE, MAGIC, PhysicalDevice, scan
from storage.pool import Pool

MiB = 1024 * 1024


def test_created_device_carries_label_with_pool_and_device_id(tmp_path):
    pid, did = uuid.uuid4(), uuid.uuid4()
    PhysicalDevice.create(tmp_path / "d", 4 * MiB, pid, did).close()
    dev = PhysicalDevice.open(tmp_path / "d")
    assert (dev.pool_id, dev.device_id, dev.label.size) == (pid, did, 4 * MiB)
    assert (tmp_path / "d").read_bytes()[:8] == MAGIC
    assert dev.data_size == 4 * MiB - DATA_OFFSET


def test_data_area_round_trips_bytes_after_the_label(tmp_path):
    dev = PhysicalDevice.create(tmp_path / "d", 4 * MiB, uuid.uuid4())
    dev.write(100, b"hello")
    assert dev.read(98, 9) == b"\0\0hello\0\0"
    raw = (tmp_path / "d").read_bytes()
    assert raw[DATA_OFFSET + 100:DATA_OFFSET + 105] == b"hello"


def test_gathered_io_of_more_buffers_than_one_system_call_takes_lands_in_order(tmp_path):
    """writev / readinto split a long buffer list into IOV_BATCH-sized calls: every
    piece still lands at its own offset, and reads fill each caller buffer in order."""
    dev = PhysicalDevice.create(tmp_path / "d", 4 * MiB, uuid.uuid4())
    rng = random.Random(7)
    pieces = [rng.randbytes(rng.randrange(1, 700)) for _ in range(IOV_BATCH * 2 + 37)]
    dev.writev(4096 + 3, [memoryview(p) for p in pieces])
    whole = b"".join(pieces)
    raw = (tmp_path / "d").read_bytes()
    assert raw[DATA_OFFSET + 4096 + 3:DATA_OFFSET + 4096 + 3 + len(whole)] == whole
    assert raw[DATA_OFFSET + 4096 + 3 + len(whole)] == 0

    into = [bytearray(len(p)) for p in pieces]
    dev.readinto(4096 + 3, [memoryview(b) for b in into])
    assert [bytes(b) for b in into] == pieces


def test_create_refuses_to_overwrite_a_labelled_file(tmp_path):
    PhysicalDevice.create(tmp_path / "d", 4 * MiB, uuid.uuid4()).close()
    with pytest.raises(StorageError, match="already carries a device label"):
        PhysicalDevice.create(tmp_path / "d", 4 * MiB, uuid.uuid4())


@pytest.mark.parametrize("offset,damage", [(0, "bad magic"), (40, "checksum mismatch")])
def test_damaged_label_is_refused_naming_file_and_damage(tmp_path, offset, damage):
    path = tmp_path / "d"
    PhysicalDevice.create(path, 4 * MiB, uuid.uuid4()).close()
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0xFF
    path.write_bytes(bytes(raw))
    before = path.read_bytes()
    with pytest.raises(LabelError, match=f"{path}: label damaged: {damage}"):
        PhysicalDevice.open(path)
    assert path.read_bytes() == before  # nothing written over it


def test_truncated_device_is_refused(tmp_path):
    path = tmp_path / "d"
    PhysicalDevice.create(path, 4 * MiB, uuid.uuid4()).close()
    os.truncate(path, 3 * MiB)
    with pytest.raises(LabelError, match="device truncated"):
        PhysicalDevice.open(path)


def test_scan_skips_files_without_label_and_groups_by_pool(tmp_path):
    a, b = uuid.uuid4(), uuid.uuid4()
    PhysicalDevice.create(tmp_path / "a1", 4 * MiB, a).close()
    PhysicalDevice.create(tmp_path / "b1", 4 * MiB, b).close()
    PhysicalDevice.create(tmp_path / "a2", 4 * MiB, a).close()
    (tmp_path / "notes.txt").write_text("not a device")
    found = scan([tmp_path])
    assert sorted(d.path.name for d in found[a]) == ["a1", "a2"]
    assert [d.path.name for d in found[b]] == ["b1"]


def test_failed_device_refuses_all_io(tmp_path):
    dev = PhysicalDevice.create(tmp_path / "d", 4 * MiB, uuid.uuid4())
    dev.mark_failed()
    with pytest.raises(DeviceFailedError, match="device failed"):
        dev.read(0, 512)
    with pytest.raises(DeviceFailedError):
        dev.write(0, b"x")


def test_injected_error_fires_on_matching_range_and_count(tmp_path):
    dev = PhysicalDevice.create(tmp_path / "d", 4 * MiB, uuid.uuid4())
    dev.inject_error("read", offset=4096, length=4096, count=1)
    assert dev.read(0, 4096) == bytes(4096)  # outside the range
    dev.write(4096, b"ok")  # a write is not a read
    with pytest.raises(DeviceIOError, match="I/O error \\(read of 512 bytes at 4096\\)"):
        dev.read(4096, 512)
    assert dev.read(4096, 2) == b"ok"  # count exhausted


def test_pool_reassembles_from_shuffled_renamed_paths(tmp_path):
    pool = Pool.create(tmp_path / "p", 4, 4 * MiB, name="tank")
    ids = sorted(r.id for r in pool.meta.devices)
    pool.close()
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    names = [f"x{i}" for i in range(4)]
    random.Random(1).shuffle(names)
    for src, dst in zip(sorted((tmp_path / "p").iterdir()), names):
        shutil.move(src, moved / dst)
    again = Pool.open(sorted(moved.iterdir(), reverse=True))
    assert again.meta.name == "tank"
    assert sorted(again.devices) == ids
    again.close()


def test_pool_uses_newest_metadata_when_one_slot_is_damaged(tmp_path):
    pool = Pool.create(tmp_path / "p", 2, 4 * MiB, name="tank")
    pool.meta.name = "renamed"
    pool.save()
    gen = pool.meta.generation
    pool.close()
    for f in (tmp_path / "p").iterdir():  # damage the older slot everywhere
        with open(f, "r+b") as fh:
            fh.seek(LABEL_SIZE + ((gen - 1) % 2) * 512 * 1024 + 50)
            fh.write(b"garbage")
    again = Pool.open(tmp_path / "p")
    assert (again.meta.name, again.meta.generation) == ("renamed", gen)
    again.close()


def test_pool_with_all_metadata_damaged_is_refused_naming_files(tmp_path):
    pool = Pool.create(tmp_path / "p", 1, 4 * MiB)
    pool.close()
    f = tmp_path / "p" / "dev0.img"
    with open(f, "r+b") as fh:
        fh.seek(LABEL_SIZE)
        fh.write(bytes(1024 * 1024))
    with pytest.raises(LabelError, match=f"no valid pool metadata.*{f} slot 0: pool metadata damaged"):
        Pool.open(tmp_path / "p")


def test_missing_device_is_reported_and_failed_device_stays_failed(tmp_path):
    pool = Pool.create(tmp_path / "p", 3, 4 * MiB)
    victim = pool.meta.devices[1].id
    pool.fail_device(victim)
    pool.close()
    again = Pool.open(tmp_path / "p")
    assert again.devices[victim].failed
    again.close()
    os.remove(tmp_path / "p" / "dev2.img")
    again = Pool.open(tmp_path / "p")
    assert any("missing" in w for w in again.warnings)
    again.close()


def test_copied_device_file_is_refused(tmp_path):
    pool = Pool.create(tmp_path / "p", 1, 4 * MiB)
    pool.close()
    shutil.copy(tmp_path / "p" / "dev0.img", tmp_path / "p" / "dev0-copy.img")
    with pytest.raises(LabelError, match="same device id"):
        Pool.open(tmp_path / "p")


def test_remove_device_refuses_while_a_volume_uses_it(pool):
    from storage.pool import MemberRecord, VolumeRecord
    dev = pool.meta.devices[0].id
    pool.meta.volumes.append(VolumeRecord("v", MiB, "concat", members=[MemberRecord(dev, 0, MiB)]))
    with pytest.raises(StorageError, match="still holds volume\\(s\\) v"):
        pool.remove_device(dev)
    pool.remove_device(pool.meta.devices[1].id)
    assert len(pool.meta.devices) == 3


def test_half_created_spare_does_not_block_the_pool(tmp_path):
    pool = Pool.create(tmp_path / "p", 2, 4 * MiB)
    pid = pool.meta.pool_id
    pool.close()
    PhysicalDevice.create(tmp_path / "p" / "spare.img", 4 * MiB, uuid.UUID(pid)).close()
    os.truncate(tmp_path / "p" / "spare.img", 8192)  # the crash came before its size did
    again = Pool.open(tmp_path / "p")
    assert any("spare.img: device truncated" in w and "ignored" in w for w in again.warnings)
    again.close()


def test_truncated_member_device_is_refused(tmp_path):
    pool = Pool.create(tmp_path / "p", 2, 4 * MiB)
    pool.close()
    os.truncate(tmp_path / "p" / "dev1.img", 3 * MiB)
    with pytest.raises(LabelError, match="dev1.img: device truncated: 3145728 bytes, label says 4194304"):
        Pool.open(tmp_path / "p")
