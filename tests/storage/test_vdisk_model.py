"""Property: any sequence of writes, discards, snapshots, commits, reverts, flushes and
reopens reads back what a stack of in-memory disk images says."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from storage.vdisk import VirtualDisk

BLOCKS = 96


class DiskWithChain(RuleBasedStateMachine):
    """stack[0] is the base image; each snapshot pushes a copy of the top."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.path = Path(self.tmp.name) / "g.dsk"

    @initialize(bs=st.sampled_from([512, 4096]), cluster=st.sampled_from([4096, 16384]))
    def create(self, bs, cluster):
        self.bs, self.cluster = bs, max(cluster, bs)
        self.disk = VirtualDisk.create(self.path, BLOCKS, bs)
        self.stack = [bytearray(BLOCKS * bs)]

    @rule(lba=st.integers(0, BLOCKS - 1), count=st.integers(1, 40), tag=st.integers(1, 255))
    def write(self, lba, count, tag):
        count = min(count, BLOCKS - lba)
        data = bytes([tag]) * (count * self.bs)
        self.disk.write(lba, data)
        self.stack[-1][lba * self.bs:(lba + count) * self.bs] = data

    @rule(lba=st.integers(0, BLOCKS - 1), count=st.integers(1, 60))
    def discard(self, lba, count):
        count = min(count, BLOCKS - lba)
        self.disk.discard(lba, count)
        self.stack[-1][lba * self.bs:(lba + count) * self.bs] = bytes(count * self.bs)

    @rule()
    @precondition(lambda self: len(self.stack) < 5)
    def snapshot(self):
        self.disk.snapshot(cluster_size=self.cluster)
        self.stack.append(bytearray(self.stack[-1]))

    @rule()
    @precondition(lambda self: len(self.stack) > 1)
    def commit(self):
        self.disk.commit()
        top = self.stack.pop()
        self.stack[-1] = top

    @rule()
    @precondition(lambda self: len(self.stack) > 1)
    def revert(self):
        self.disk.revert()
        self.stack.pop()

    @rule()
    def flush(self):
        self.disk.flush()

    @rule()
    def reopen(self):
        self.disk.close()
        self.disk = VirtualDisk.open(self.path, block_size=self.bs)

    @invariant()
    def reads_match_model(self):
        assert len(self.disk.chain()) == len(self.stack)
        assert self.disk.read(0, BLOCKS) == bytes(self.stack[-1])

    def teardown(self):
        self.disk.close()
        self.tmp.cleanup()


DiskWithChain.TestCase.settings = settings(max_examples=60, stateful_step_count=25, deadline=None)
TestDiskWithChain = DiskWithChain.TestCase
