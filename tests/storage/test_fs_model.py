"""Property: random file operations, moves, syncs and crash-remounts on a file system
over RAID volumes read back what a dict of bytearrays says, and fsck stays clean."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from storage.fs import UNIT, FileSystem
from storage.fsck import fsck
from storage.pool import Pool
from storage.volume import VolumeManager

MiB = 1024 * 1024
NAMES = ["/a", "/b", "/c"]


class FileSystemModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.vm = VolumeManager(Pool.create(Path(self.tmp.name) / "p", 3, 12 * MiB))
        self.vm.create_volume("m", 4 * MiB, "raid1", members=2)
        self.vm.create_volume("r", 6 * MiB, "raid5", members=3, stripe_unit=16384)
        self.fs = FileSystem.mkfs(self.vm, ["m", "r"], meta_size=512 * 1024)
        self.model: dict[str, bytearray] = {}

    @rule(name=st.sampled_from(NAMES), offset=st.integers(0, 5 * UNIT),
          length=st.integers(1, 2 * UNIT), tag=st.integers(1, 255))
    def write(self, name, offset, length, tag):
        f = self.fs.open(name, create=True)
        self.model.setdefault(name, bytearray())
        data = bytes([tag]) * length
        f.pwrite(data, offset)
        m = self.model[name]
        if len(m) < offset + length:
            m.extend(bytes(offset + length - len(m)))
        m[offset:offset + length] = data

    @rule(name=st.sampled_from(NAMES), size=st.integers(0, 4 * UNIT))
    def truncate(self, name, size):
        if name in self.model:
            self.fs.open(name).truncate(size)
            m = self.model[name]
            del m[size:]
            m.extend(bytes(size - len(m)))

    @rule(name=st.sampled_from(NAMES))
    def unlink(self, name):
        if name in self.model:
            self.fs.unlink(name)
            del self.model[name]

    @rule(name=st.sampled_from(NAMES), volume=st.sampled_from(["m", "r"]))
    def move(self, name, volume):
        if name in self.model:
            self.fs.move(name, volume)

    @rule()
    def sync_and_crash(self):
        self.fs.sync()
        self.fs = FileSystem.mount(self.vm)

    @rule()
    def unmount_and_mount(self):
        self.fs.close()
        self.fs = FileSystem.mount(self.vm)

    @invariant()
    def files_match_model(self):
        assert sorted(self.fs.listdir("/")) == sorted(n[1:] for n in self.model)
        for name, m in self.model.items():
            f = self.fs.open(name)
            assert f.size() == len(m)
            assert f.pread(len(m) + 10, 0) == bytes(m)
        assert fsck(self.fs) == []

    def teardown(self):
        self.vm.pool.close()
        self.tmp.cleanup()


FileSystemModel.TestCase.settings = settings(max_examples=40, stateful_step_count=20, deadline=None)
TestFileSystemModel = FileSystemModel.TestCase
