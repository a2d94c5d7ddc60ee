"""The issue's "done means": a pool of four files survives re-assembly from shuffled
paths, a device failure and a rebuild, with a virtual disk on it reading back exactly
what was written."""

from __future__ import annotations

import os
import random
import shutil

from storage.fs import FileSystem
from storage.fsck import fsck
from storage.fsfile import FSDirectory
from storage.pool import Pool
from storage.vdisk import VirtualDisk
from storage.volume import VolumeManager

MiB = 1024 * 1024


def test_four_file_pool_survives_shuffle_failure_and_rebuild(tmp_path):
    vm = VolumeManager(Pool.create(tmp_path / "pool", 4, 16 * MiB))
    vm.create_volume("bulk", 24 * MiB, "raid5", members=4)
    fs = FileSystem.mkfs(vm, ["bulk"])
    fs.mkdir("/vms")
    disk = VirtualDisk.create_in(FSDirectory(fs, "/vms"), "guest.dsk", 8192)  # 4 MiB
    base = os.urandom(4 * MiB)
    disk.write(0, base)
    disk.snapshot()
    top = os.urandom(MiB)
    disk.write(1000, top)
    expected = base[:1000 * 512] + top + base[1000 * 512 + MiB:]
    disk.close()
    fs.close()
    vm.close()

    # Re-assemble from renamed files in another directory, listed in random order.
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    files = sorted((tmp_path / "pool").iterdir())
    names = [f"disk-{i}.bin" for i in range(len(files))]
    random.Random(3).shuffle(names)
    for f, n in zip(files, names):
        shutil.move(f, moved / n)
    paths = sorted(moved.iterdir())
    random.Random(4).shuffle(paths)

    def open_disk(paths):
        vm = VolumeManager.open(paths)
        fs = FileSystem.mount(vm)
        return vm, fs, VirtualDisk.open_in(FSDirectory(fs, "/vms"), "guest.dsk")

    vm, fs, disk = open_disk(paths)
    assert disk.chain() == ["guest.dsk", "guest.redo"]
    assert disk.read(0, 8192) == expected

    # A device fails under the running disk: no read error, no wrong byte.
    victim = vm.volume("bulk").rec.members[2].device
    vm.pool.devices[victim].inject_error("read")
    assert disk.read(0, 8192) == expected
    assert vm.volume("bulk").state() == "degraded"
    more = os.urandom(64 * 1024)
    disk.write(4000, more)  # degraded write
    expected = expected[:4000 * 512] + more + expected[4000 * 512 + len(more):]

    # Replace and rebuild with progress, then lose another member: still exact.
    seen = []
    vm.replace_device(victim, moved / "replacement.bin")
    vm.rebuild(progress=lambda done, total: seen.append(done / total))
    assert seen[-1] == 1.0 and vm.volume("bulk").state() == "ok"
    vm.fail_device(vm.volume("bulk").rec.members[0].device)
    assert disk.read(0, 8192) == expected
    disk.close()
    assert fsck(fs) == []
    fs.close()
    vm.close()

    vm, fs, disk = open_disk(moved)
    assert disk.read(0, 8192) == expected
    disk.close()
    fs.close()
    vm.close()
