"""Property: the whole stack - a virtual disk with redo overlays, in the file system,
on RAID 1 and RAID 5 volumes - under random writes, discards, snapshots, commits,
reverts, file moves between volumes, device failures, rebuilds and restarts reads back
what a stack of in-memory images says."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from storage.fs import FileSystem, Rule
from storage.fsck import fsck
from storage.fsfile import FSDirectory
from storage.pool import Pool
from storage.vdisk import VirtualDisk
from storage.volume import VolumeManager

MiB = 1024 * 1024
BLOCKS = 256


class WholeStack(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = Path(self.tmp.name) / "pool"
        self.vm = VolumeManager(Pool.create(self.dir, 5, 8 * MiB))
        self.vm.create_volume("fast", 2 * MiB, "raid1", tier="fast", members=2)
        self.vm.create_volume("bulk", 4 * MiB, "raid5", members=4, stripe_unit=16384)
        self.fs = FileSystem.mkfs(self.vm, ["fast", "bulk"], meta_volume="fast",
                                  meta_size=512 * 1024, rules=[Rule("/gold", tier="fast")])
        self.fs.mkdir("/gold")
        self.disk = VirtualDisk.create_in(FSDirectory(self.fs, "/gold"), "g.dsk", BLOCKS)
        self.stack = [bytearray(BLOCKS * 512)]
        self.spares = 0

    @rule(lba=st.integers(0, BLOCKS - 1), count=st.integers(1, 64), tag=st.integers(1, 255))
    def write(self, lba, count, tag):
        count = min(count, BLOCKS - lba)
        self.disk.write(lba, bytes([tag]) * 512 * count)
        self.stack[-1][lba * 512:(lba + count) * 512] = bytes([tag]) * 512 * count

    @rule(lba=st.integers(0, BLOCKS - 1), count=st.integers(1, 200))
    def discard(self, lba, count):
        count = min(count, BLOCKS - lba)
        self.disk.discard(lba, count)
        self.stack[-1][lba * 512:(lba + count) * 512] = bytes(512 * count)

    @rule()
    @precondition(lambda self: len(self.stack) < 4)
    def snapshot(self):
        self.disk.snapshot(cluster_size=16384)
        self.stack.append(bytearray(self.stack[-1]))

    @rule()
    @precondition(lambda self: len(self.stack) > 1)
    def commit(self):
        self.disk.commit()
        self.stack[-2:] = [self.stack[-1]]

    @rule()
    @precondition(lambda self: len(self.stack) > 1)
    def revert(self):
        self.disk.revert()
        self.stack.pop()

    @rule(which=st.integers(0, 3))
    def move_a_file(self, which):
        name = self.disk.chain()[which % len(self.disk.chain())]
        vol = self.fs.lookup(f"/gold/{name}").volume
        self.fs.move(f"/gold/{name}", "bulk" if vol == "fast" else "fast")

    @rule(which=st.integers(0, 3))
    @precondition(lambda self: not any(v.members.failed() for v in self.vm.volumes.values()))
    def fail_bulk_member(self, which):
        recs = self.vm.volume("bulk").rec.members
        self.vm.fail_device(recs[which].device)

    @rule()
    @precondition(lambda self: any(v.members.failed() for v in self.vm.volumes.values()))
    def replace_and_rebuild(self):
        for vol in self.vm.volumes.values():
            for i in vol.members.failed():
                rec = vol.rec.members[i]
                if rec.state == "failed":
                    self.spares += 1
                    self.vm.replace_device(rec.device, self.dir / f"spare{self.spares}.img")
        self.vm.rebuild(step=256 * 1024)

    @rule()
    def restart(self):
        self.disk.close()
        self.fs.close()
        self.vm.close()
        self.vm = VolumeManager.open(self.dir)
        self.fs = FileSystem.mount(self.vm)
        self.disk = VirtualDisk.open_in(FSDirectory(self.fs, "/gold"), "g.dsk")

    @invariant()
    def disk_matches_model(self):
        assert len(self.disk.chain()) == len(self.stack)
        assert self.disk.read(0, BLOCKS) == bytes(self.stack[-1])

    @invariant()
    def file_system_is_clean(self):
        assert fsck(self.fs) == []

    def teardown(self):
        self.vm.pool.close()
        self.tmp.cleanup()


WholeStack.TestCase.settings = settings(max_examples=25, stateful_step_count=20, deadline=None)
TestWholeStack = WholeStack.TestCase
