"""Property: any sequence of writes, device failures, replacements, rebuilds and
restarts on a redundant volume reads back what a plain bytearray says."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from storage.pool import Pool
from storage.volume import VolumeManager

KiB = 1024
SIZE = 640 * KiB


class RedundantVolume(RuleBasedStateMachine):
    """One RAID 1 or RAID 5 volume against an in-memory model of its bytes."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = Path(self.tmp.name) / "pool"
        self.vm: VolumeManager | None = None
        self.model = bytearray(SIZE)  # grows with the volume
        self.spares = 0

    @initialize(layout=st.sampled_from([("raid1", 2), ("raid1", 3), ("raid5", 3), ("raid5", 4)]),
                unit=st.sampled_from([4096, 16384]))
    def create(self, layout, unit):
        pool = Pool.create(self.dir, 4, 4 * 1024 * KiB)
        self.vm = VolumeManager(pool)
        self.vm.create_volume("v", SIZE, layout[0], members=layout[1], stripe_unit=unit)

    @property
    def vol(self):
        return self.vm.volume("v")

    @rule(offset=st.integers(0, SIZE - 1), length=st.integers(1, 100 * KiB), seed=st.integers(0, 255))
    @precondition(lambda self: self.vm is not None)
    def write(self, offset, length, seed):
        offset = offset % len(self.model)
        length = min(length, len(self.model) - offset)
        data = bytes((seed + i * 7) & 0xFF for i in range(0, length, 512)) * 512
        data = data[:length]
        self.vol.write(offset, data)
        self.model[offset:offset + length] = data

    @rule(which=st.integers(0, 3))
    @precondition(lambda self: self.vm is not None and not self.vol.members.failed())
    def fail_member(self, which):
        recs = self.vol.rec.members
        self.vm.fail_device(recs[which % len(recs)].device)

    @rule()
    @precondition(lambda self: self.vm is not None and self.vol.members.failed())
    def replace_and_rebuild(self):
        i = self.vol.members.failed()[0]
        rec = self.vol.rec.members[i]
        if rec.state == "failed":
            self.spares += 1
            self.vm.replace_device(rec.device, self.dir / f"spare{self.spares}.img")
        self.vm.rebuild(step=128 * KiB)

    @rule(extra=st.integers(1, 64 * KiB))
    @precondition(lambda self: self.vm is not None and not self.vol.members.failed())
    def grow(self, extra):
        self.vm.grow_volume("v", len(self.model) + extra)
        self.model.extend(bytes(extra))

    @rule(which=st.integers(0, 3))
    @precondition(lambda self: self.vm is not None and not self.vol.members.failed())
    def move(self, which):
        recs = self.vol.rec.members
        used = {m.device for m in recs}
        free = [r.id for r in self.vm.pool.meta.devices if r.id not in used and r.state == "active"]
        if free:
            self.vm.move_member("v", recs[which % len(recs)].device, free[0])

    @rule()
    @precondition(lambda self: self.vm is not None)
    def restart(self):
        self.vm.close()
        self.vm = VolumeManager.open(self.dir)

    @invariant()
    def reads_match_model(self):
        if self.vm is not None:
            assert self.vol.size == len(self.model)
            assert self.vol.read(0, len(self.model)) == bytes(self.model)

    def teardown(self):
        if self.vm is not None:
            self.vm.close()
        self.tmp.cleanup()


RedundantVolume.TestCase.settings = settings(max_examples=40, stateful_step_count=12, deadline=None)
TestRedundantVolume = RedundantVolume.TestCase
