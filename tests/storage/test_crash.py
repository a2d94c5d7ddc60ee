"""Crash consistency of the whole stack: a virtual disk with a redo overlay, in the file
system, on RAID 1 + RAID 5 volumes. Every device write is recorded; at sampled crash
points (all of them with `-m slow`) the devices are rebuilt, the pool re-assembled, the
file system mounted, fsck run, and every block must read as of the last acknowledged
flush or as a write issued after it - never anything else, never an error."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from storage.crashsim import Recorder, crash_points, sample_points
from storage.fs import FileSystem
from storage.fsck import fsck
from storage.fsfile import FSDirectory
from storage.pool import Pool
from storage.vdisk import VirtualDisk
from storage.volume import VolumeManager

MiB = 1024 * 1024
BS = 512
BLOCKS = 512


def build(tmp: Path):
    vm = VolumeManager(Pool.create(tmp / "pool", 4, 6 * MiB))
    vm.create_volume("meta", 2 * MiB, "raid1", members=2)
    vm.create_volume("data", 3 * MiB, "raid5", members=4, stripe_unit=16384)
    fs = FileSystem.mkfs(vm, ["meta", "data"], meta_size=256 * 1024)
    fs.mkdir("/vm")
    disk = VirtualDisk.create_in(FSDirectory(fs, "/vm"), "d.dsk", BLOCKS, BS)
    disk.write(0, bytes([1]) * BS * BLOCKS)
    disk.snapshot(cluster_size=16384)
    disk.flush()
    fs.sync()
    return vm, fs, disk


def workload(disk: VirtualDisk, rec: Recorder, seed: int, ops: int = 70) -> None:
    """Random writes with flushes, one snapshot and one commit; marks say what to expect."""
    rng = random.Random(seed)
    model = bytearray(bytes([1]) * BS * BLOCKS)
    rec.mark("flush", bytes(model))
    for n in range(ops):
        r = rng.random()
        if r < 0.7:
            lba, count = rng.randrange(BLOCKS), rng.randint(1, 64)
            count = min(count, BLOCKS - lba)
            tag = rng.randint(2, 255)
            rec.mark("write", (lba, count, tag))
            disk.write(lba, bytes([tag]) * BS * count)
            model[lba * BS:(lba + count) * BS] = bytes([tag]) * BS * count
        elif r < 0.9 or n < 5:
            disk.flush()
            rec.mark("flush", bytes(model))
        elif len(disk.layers) < 3:
            disk.snapshot()
            rec.mark("flush", bytes(model))
        else:
            disk.commit()
            rec.mark("flush", bytes(model))
    disk.flush()
    rec.mark("flush", bytes(model))


def check(point) -> None:
    flushes = [m for m in point.marks if m.label == "flush"]
    base = flushes[-1].payload
    after = [m.payload for m in point.marks[point.marks.index(flushes[-1]) + 1:] if m.label == "write"]
    vm = VolumeManager.open(point.directory)
    try:
        fs = FileSystem.mount(vm)
        assert fsck(fs) == [], f"crash point {point.index}"
        disk = VirtualDisk.open_in(FSDirectory(fs, "/vm"), "d.dsk", BS)
        got = disk.read(0, BLOCKS)
        disk.close()
        for b in range(BLOCKS):
            block = got[b * BS:(b + 1) * BS]
            allowed = {base[b * BS:(b + 1) * BS]}
            allowed |= {bytes([tag]) * BS for lba, count, tag in after if lba <= b < lba + count}
            assert block in allowed, (f"crash point {point.index} ({point.applied} writes, "
                                      f"{point.dropped} dropped, torn={point.torn}): block {b} "
                                      f"reads {block[:4]!r}..., expected one of "
                                      f"{sorted(a[:1] for a in allowed)}")
    finally:
        vm.pool.close()


def record(tmp: Path, seed: int) -> tuple[Recorder, Path]:
    vm, fs, disk = build(tmp)
    initial = tmp / "initial"
    shutil.copytree(tmp / "pool", initial)
    rec = Recorder()
    rec.start()
    try:
        workload(disk, rec, seed)
    finally:
        rec.stop()
    vm.pool.close()
    return rec, initial


@pytest.mark.parametrize("model,torn,count", [("prefix", False, 500), ("reorder", True, 150)])
def test_flushed_writes_survive_sampled_crash_points(tmp_path, model, torn, count):
    rec, initial = record(tmp_path, seed=7)
    points = sample_points(rec, count, seed=1)
    checked = 0
    for point in crash_points(rec, initial, tmp_path / "work", points, model, torn, seed=3):
        check(point)
        checked += 1
    assert checked == len(points) >= min(count, len(rec.writes()))


@pytest.mark.slow
@pytest.mark.parametrize("seed", [11, 12, 13])
def test_flushed_writes_survive_every_crash_point(tmp_path, seed):
    rec, initial = record(tmp_path, seed=seed)
    points = rec.writes() + [len(rec.events)]
    for point in crash_points(rec, initial, tmp_path / "work", points, "prefix", torn=True):
        check(point)


# -- the file system alone: namespace changes, overwrites, moves, journal checkpoints --

def fs_workload(fs: FileSystem, rec: Recorder, seed: int, ops: int = 60) -> None:
    """Each operation is followed by sync and a mark holding the expected files."""
    rng = random.Random(seed)
    model: dict[str, bytes] = {}
    rec.mark("sync", dict(model))
    for n in range(ops):
        names = sorted(model)
        r = rng.random()
        if r < 0.35 or not names:
            path = f"/d{rng.randrange(3)}/f{n}"
            if not fs.exists(path.rsplit("/", 1)[0]):
                fs.mkdir(path.rsplit("/", 1)[0])
            f = fs.open(path, create=True)  # create is durable on its own
            model[path] = b""
            rec.mark("sync", dict(model))
            data = bytes([rng.randint(1, 255)]) * rng.randint(1, 150_000)
            f.pwrite(data, 0)
            model[path] = data
        elif r < 0.6:
            path = rng.choice(names)
            off = rng.randrange(len(model[path]) + 1)
            data = bytes([rng.randint(1, 255)]) * rng.randint(1, 70_000)
            fs.open(path).pwrite(data, off)
            old = model[path].ljust(off + len(data), b"\0")
            model[path] = old[:off] + data + old[off + len(data):]
        elif r < 0.7:
            path = rng.choice(names)
            size = rng.randrange(len(model[path]) + 1)
            fs.open(path).truncate(size)
            model[path] = model[path][:size]
        elif r < 0.8:
            path = rng.choice(names)
            fs.unlink(path)
            del model[path]
        elif r < 0.9:
            path = rng.choice(names)
            fs.move(path, "meta" if fs.lookup(path).volume == "data" else "data")
        else:
            path = rng.choice(names)
            new = f"/d{rng.randrange(3)}/r{n}"
            if not fs.exists(new.rsplit("/", 1)[0]):
                fs.mkdir(new.rsplit("/", 1)[0])
            fs.rename(path, new)
            model[new] = model.pop(path)
        fs.sync()
        rec.mark("sync", dict(model))


def check_fs(point) -> None:
    marks = point.marks
    last = [m for m in marks if m.label == "sync"][-1].payload
    nxt = point.next_mark.payload if point.next_mark is not None else last
    vm = VolumeManager.open(point.directory)
    try:
        fs = FileSystem.mount(vm)
        assert fsck(fs) == [], f"crash point {point.index}"
        files = {f"/{d}/{n}" for d in fs.listdir("/") for n in fs.listdir(f"/{d}")
                 if fs.lookup(f"/{d}/{n}").kind == "file"}
        assert files in (set(last), set(nxt)), f"crash point {point.index}: {sorted(files)}"
        for path in files:
            got = fs.open(path).pread(1 << 30, 0)
            states = [s[path] for s in (last, nxt) if path in s]
            assert len(got) in {len(s) for s in states}, f"crash point {point.index}: {path} size"
            for off in range(0, len(got), 512):
                chunk = got[off:off + 512]  # each sector is old or new, never anything else
                assert any(chunk == s[off:off + len(chunk)] for s in states), \
                    f"crash point {point.index}: {path} bytes at {off}"
    finally:
        vm.pool.close()


def record_fs(tmp: Path, seed: int) -> tuple[Recorder, Path]:
    vm = VolumeManager(Pool.create(tmp / "pool", 4, 6 * MiB))
    vm.create_volume("meta", 2 * MiB, "raid1", members=2)
    vm.create_volume("data", 3 * MiB, "raid5", members=4, stripe_unit=16384)
    fs = FileSystem.mkfs(vm, ["meta", "data"], meta_size=128 * 1024)
    initial = tmp / "initial"
    shutil.copytree(tmp / "pool", initial)
    rec = Recorder()
    rec.start()
    try:
        fs_workload(fs, rec, seed)
    finally:
        rec.stop()
    vm.pool.close()
    return rec, initial


@pytest.mark.parametrize("model,torn", [("prefix", False), ("reorder", True)])
def test_file_system_recovers_at_sampled_crash_points(tmp_path, model, torn):
    rec, initial = record_fs(tmp_path, seed=5)
    assert sum(1 for e in rec.events if e.kind == "write") > 500
    points = sample_points(rec, 500 if model == "prefix" else 150, seed=2)
    for point in crash_points(rec, initial, tmp_path / "work", points, model, torn, seed=4):
        check_fs(point)


# -- the volume manager alone: RAID 5 through failure, degraded writes, rebuild, move --

VSIZE = 768 * 1024


def volume_workload(vm: VolumeManager, rec: Recorder, seed: int, spare: Path) -> None:
    """Writes and flushes on a RAID 5 volume while a member fails, is replaced and
    rebuilt step by step, and another member moves; marks hold the flushed contents."""
    from storage.rebuild import Rebuild
    rng = random.Random(seed)
    vol = vm.volume("r5")
    model = bytearray(VSIZE)

    def some_writes(n: int) -> None:
        for _ in range(n):
            off = rng.randrange(VSIZE - 1)
            data = bytes([rng.randint(1, 255)]) * min(rng.randint(1, 90_000), VSIZE - off)
            rec.mark("write", (off, data))
            vol.write(off, data)
            model[off:off + len(data)] = data
            if rng.random() < 0.4:
                vol.flush()
                rec.mark("flush", bytes(model))

    rec.mark("flush", bytes(model))
    some_writes(12)
    vm.fail_device(vol.rec.members[1].device)
    some_writes(12)  # degraded
    vm.replace_device(vol.rec.members[1].device, spare)
    rb = Rebuild(vol, 1, step=64 * 1024)
    while rb.advance():
        some_writes(1)
    some_writes(6)
    used = {m.device for m in vol.rec.members}
    target = next(r.id for r in vm.pool.meta.devices if r.id not in used)
    vm.move_member("r5", vol.rec.members[0].device, target)
    some_writes(4)
    vol.flush()
    rec.mark("flush", bytes(model))


def check_volume(point) -> None:
    flushes = [m for m in point.marks if m.label == "flush"]
    base = flushes[-1].payload
    after = [m.payload for m in point.marks[point.marks.index(flushes[-1]) + 1:] if m.label == "write"]
    vm = VolumeManager.open(point.directory)
    try:
        for phase in ("assembled", "resumed"):
            got = np.frombuffer(vm.volume("r5").read(0, VSIZE), dtype=np.uint8)
            ok = got == np.frombuffer(base, dtype=np.uint8)  # as flushed ...
            for o, d in after:  # ... or as written by a write in flight
                ok[o:o + len(d)] |= got[o:o + len(d)] == np.frombuffer(d, dtype=np.uint8)
            bad = np.flatnonzero(~ok)
            assert not len(bad), (f"crash point {point.index} ({phase}, {point.applied} writes, "
                                  f"{point.dropped} dropped, torn={point.torn}): "
                                  f"{len(bad)} wrong bytes from {bad[0]}")
            vm.resume()
    finally:
        vm.pool.close()


def record_volume(tmp: Path, seed: int) -> tuple[Recorder, Path]:
    vm = VolumeManager(Pool.create(tmp / "pool", 5, 3 * MiB))
    vm.create_volume("r5", VSIZE, "raid5", members=4, stripe_unit=16384)
    spare = tmp / "pool" / "spare.img"
    initial = tmp / "initial"
    shutil.copytree(tmp / "pool", initial)
    rec = Recorder()
    rec.start()
    try:
        volume_workload(vm, rec, seed, spare)
    finally:
        rec.stop()
    vm.pool.close()
    return rec, initial


@pytest.mark.parametrize("model,torn,count", [("prefix", False, 500), ("reorder", True, 200)])
def test_raid5_failure_rebuild_and_move_survive_sampled_crash_points(tmp_path, model, torn, count):
    rec, initial = record_volume(tmp_path, seed=9)
    assert len(rec.writes()) > 500
    points = sample_points(rec, count, seed=6)
    for point in crash_points(rec, initial, tmp_path / "work", points, model, torn, seed=8):
        check_volume(point)


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["fs", "volume"])
@pytest.mark.parametrize("model", ["prefix", "reorder"])
def test_every_crash_point_of_the_fs_and_volume_scenarios(tmp_path, scenario, model):
    recorder, checker = (record_fs, check_fs) if scenario == "fs" else (record_volume, check_volume)
    rec, initial = recorder(tmp_path, seed=21)
    points = rec.writes() + [len(rec.events)]
    for point in crash_points(rec, initial, tmp_path / "work", points, model, torn=True, seed=2):
        checker(point)
