"""Volume manager: layouts, degraded operation, rebuild, write hole, statistics."""

from __future__ import annotations

import os

import pytest

from storage.errors import StorageError, VolumeError
from storage.rebuild import Rebuild
from storage.volume import VolumeManager

MiB = 1024 * 1024
LAYOUTS = [("concat", 2), ("raid0", 3), ("raid1", 2), ("raid1", 3), ("raid5", 3), ("raid5", 4)]


@pytest.fixture
def vm(pool):
    return VolumeManager(pool)


def _dev_of(vol, i):
    return vol.rec.members[i].device


@pytest.mark.parametrize("layout,members", LAYOUTS)
def test_volume_reads_back_unaligned_writes(vm, layout, members):
    vol = vm.create_volume("v", 3 * MiB, layout, members=members, stripe_unit=16384)
    data = os.urandom(MiB + 12345)
    vol.write(7777, data)
    vol.write(3 * MiB - 5, b"tail!")
    assert vol.read(7777, len(data)) == data
    assert vol.read(3 * MiB - 6, 6) == b"\0tail!"


@pytest.mark.parametrize("layout,members", LAYOUTS)
def test_readinto_fills_exactly_the_callers_view_on_every_layout(vm, layout, members):
    """The members read straight into a slice of the caller's buffer: its bytes are the
    volume's, and not one byte around the slice changes."""
    vol = vm.create_volume("v", 3 * MiB, layout, members=members, stripe_unit=16384)
    data = os.urandom(2 * MiB)
    vol.write(4096, data)
    buf = bytearray(b"\xee" * (MiB + 2000))
    vol.readinto(4096 + 12345, memoryview(buf)[1000:1000 + MiB])
    assert buf[1000:1000 + MiB] == data[12345:12345 + MiB]
    assert buf[:1000] == buf[1000 + MiB:] == b"\xee" * 1000


@pytest.mark.parametrize("layout,members", LAYOUTS)
def test_new_volume_reads_zeros_even_over_reused_space(vm, layout, members):
    vol = vm.create_volume("old", MiB, "concat")
    vol.write(0, b"\xff" * MiB)
    vm.pool.meta.volumes.clear()  # forget it: its space is free again
    vm.volumes.clear()
    vol = vm.create_volume("v", 2 * MiB, layout, members=members)
    assert vol.read(0, 2 * MiB) == bytes(2 * MiB)


def test_striped_volumes_start_on_a_stripe_unit_boundary_after_odd_sized_ones(vm):
    """Stripe rows stay aligned in the device files whatever was allocated before."""
    odd = vm.create_volume("odd", 300_000, "concat")  # not a multiple of any stripe unit
    r5 = vm.create_volume("r5", MiB, "raid5", members=4, stripe_unit=128 * 1024)
    r0 = vm.create_volume("r0", MiB, "raid0", members=2, stripe_unit=64 * 1024)
    assert [m.offset % (128 * 1024) for m in r5.rec.members] == [0] * 4
    assert [m.offset % (64 * 1024) for m in r0.rec.members] == [0, 0]
    behind_odd = [m for m in r5.rec.members if m.device == odd.rec.members[0].device]
    assert behind_odd and behind_odd[0].offset >= 300_000  # it did follow the odd extent
    assert r5.rec.bitmap_bytes % (128 * 1024) == 0  # rows after the reserved area too


def test_raid0_places_stripe_units_round_robin(vm):
    vol = vm.create_volume("v", MiB, "raid0", members=2, stripe_unit=4096)
    vol.write(0, b"A" * 4096 + b"B" * 4096 + b"C" * 4096)
    m0, m1 = vol.members.records
    d0, d1 = vm.pool.devices[m0.device], vm.pool.devices[m1.device]
    assert d0.read(m0.offset, 8192) == b"A" * 4096 + b"C" * 4096
    assert d1.read(m1.offset, 4096) == b"B" * 4096


def test_raid5_parity_rotates_and_is_xor_of_data(vm):
    vol = vm.create_volume("v", MiB, "raid5", members=3, stripe_unit=4096)
    vol.write(0, b"\x01" * 4096 + b"\x02" * 4096 + b"\x04" * 4096 + b"\x08" * 4096)
    recs = vol.members.records
    chunk = lambda d, stripe: vm.pool.devices[recs[d].device].read(
        recs[d].offset + vol.rec.bitmap_bytes + stripe * 4096, 4096)
    # stripe 0: parity on member 2; stripe 1: parity on member 1
    assert chunk(2, 0) == b"\x03" * 4096
    assert chunk(1, 1) == b"\x0c" * 4096


@pytest.mark.parametrize("layout,members", [("raid1", 2), ("raid5", 3), ("raid5", 4)])
def test_one_failed_member_reads_and_writes_correctly(vm, layout, members):
    vol = vm.create_volume("v", 2 * MiB, layout, members=members, stripe_unit=8192)
    before = os.urandom(2 * MiB)
    vol.write(0, before)
    vm.fail_device(_dev_of(vol, 1))
    assert vol.state() == "degraded"
    assert vol.read(0, 2 * MiB) == before
    patch = os.urandom(50000)
    vol.write(30001, patch)
    expected = before[:30001] + patch + before[30001 + len(patch):]
    assert vol.read(0, 2 * MiB) == expected


@pytest.mark.parametrize("layout,members", [("raid1", 2), ("raid5", 4)])
def test_member_io_error_under_load_fails_it_without_read_error(vm, layout, members):
    vol = vm.create_volume("v", 2 * MiB, layout, members=members)
    data = os.urandom(2 * MiB)
    vol.write(0, data)
    victim = vm.pool.devices[_dev_of(vol, 0)]
    victim.inject_error("read")
    assert vol.read(0, 2 * MiB) == data
    assert victim.failed and vol.state() == "degraded"
    assert vm.pool.device_record(_dev_of(vol, 0)).state == "failed"


def test_second_raid5_failure_gives_clear_error_not_data(vm):
    vol = vm.create_volume("v", MiB, "raid5", members=3)
    vol.write(0, b"x" * MiB)
    vm.fail_device(_dev_of(vol, 0))
    vm.fail_device(_dev_of(vol, 2))
    with pytest.raises(VolumeError, match="v: 2 of 3 members failed .*raid5 survives 1: "
                                          "data unavailable"):
        vol.read(0, 4096)
    with pytest.raises(VolumeError, match="data unavailable"):
        vol.write(0, b"y")
    assert vol.state() == "failed"


def test_concat_member_failure_is_an_error_naming_the_device(vm):
    vol = vm.create_volume("v", MiB, "concat")
    dev = vm.pool.devices[_dev_of(vol, 0)]
    dev.inject_error("write")
    with pytest.raises(VolumeError, match=f"{dev.path.name}.*concat survives 0"):
        vol.write(0, b"x")


@pytest.mark.parametrize("layout,members", [("raid1", 2), ("raid5", 4)])
def test_rebuild_onto_replacement_restores_redundancy(vm, tmp_path, layout, members):
    vol = vm.create_volume("v", 3 * MiB, layout, members=members)
    data = os.urandom(3 * MiB)
    vol.write(0, data)
    old = _dev_of(vol, 1)
    vm.fail_device(old)
    vol.write(5, b"while degraded")
    new = vm.replace_device(old, tmp_path / "spare.img")
    assert vol.state() == "rebuilding"
    seen = []
    vm.rebuild(lambda done, total: seen.append((done, total)), step=MiB)
    assert seen[-1][0] == seen[-1][1] and len(seen) >= 2
    assert vol.state() == "ok"
    vm.fail_device(_dev_of(vol, 0))  # only the rebuilt copy can serve now
    expected = data[:5] + b"while degraded" + data[19:]
    assert vol.read(0, 3 * MiB) == expected
    assert _dev_of(vol, 1) == new


def test_writes_during_rebuild_land_on_both_sides_of_the_watermark(vm, tmp_path):
    vol = vm.create_volume("v", 4 * MiB, "raid5", members=3)
    data = bytearray(os.urandom(4 * MiB))
    vol.write(0, bytes(data))
    old = _dev_of(vol, 2)
    vm.fail_device(old)
    vm.replace_device(old, tmp_path / "spare.img")
    rb = Rebuild(vol, 2, step=256 * 1024)
    for i in range(6):
        rb.advance()
        off = (i * 700_001) % (4 * MiB - 9000)
        vol.write(off, b"%d" % i * 3000)
        data[off:off + len(b"%d" % i * 3000)] = b"%d" % i * 3000
        assert vol.read(0, 4 * MiB) == bytes(data)
    rb.run()
    vm.fail_device(_dev_of(vol, 0))
    assert vol.read(0, 4 * MiB) == bytes(data)


def test_interrupted_rebuild_resumes_from_saved_watermark(pool, tmp_path):
    vm = VolumeManager(pool)
    vol = vm.create_volume("v", 5 * MiB, "raid1", members=2)
    data = os.urandom(5 * MiB)
    vol.write(0, data)
    old = _dev_of(vol, 0)
    vm.fail_device(old)
    vm.replace_device(old, tmp_path / "pool" / "spare.img")
    rb = Rebuild(vol, 0, step=MiB)
    for _ in range(3):
        rb.advance()
    vm.pool.close()  # "crash": no flush, no further metadata
    vm2 = VolumeManager.open(tmp_path / "pool")
    vol2 = vm2.volume("v")
    assert vol2.rec.members[0].state == "rebuilding" and vol2.rec.members[0].rebuilt == 3 * MiB
    copied = vm2.rebuild()
    assert copied == vol2.rec.members[0].length - 3 * MiB  # only the rest
    vm2.fail_device(_dev_of(vol2, 1))
    assert vol2.read(0, 5 * MiB) == data
    vm2.close()


def test_pool_reassembles_volumes_after_restart(pool, tmp_path):
    vm = VolumeManager(pool)
    data = {}
    for name, layout, n in [("c", "concat", 1), ("s", "raid0", 2), ("m", "raid1", 2), ("p", "raid5", 4)]:
        vm.create_volume(name, MiB, layout, members=n, tier="fast" if n == 2 else "slow")
        data[name] = os.urandom(MiB)
        vm.volume(name).write(0, data[name])
    vm.close()
    paths = sorted((tmp_path / "pool").iterdir(), reverse=True)
    vm = VolumeManager.open(paths)
    for name, blob in data.items():
        assert vm.volume(name).read(0, MiB) == blob
    assert vm.volume("m").rec.tier == "fast"
    vm.close()


def test_raid5_write_hole_is_closed_by_the_intent_bitmap(pool, tmp_path):
    vm = VolumeManager(pool)
    vol = vm.create_volume("v", 2 * MiB, "raid5", members=3, stripe_unit=4096)
    vol.write(0, b"a" * 2 * MiB)
    vol.flush()
    assert not vol.bitmap.dirty
    # Crash mid-stripe: new data reached member 0, the parity write never happened.
    vol.write(0, b"b" * 4096)  # sets the bit durably, then writes data and parity
    rec = vol.rec.members[2]  # stripe 0 parity lives on member 2
    vm.pool.devices[rec.device].write(rec.offset + vol.rec.bitmap_bytes, b"\0" * 4096)  # stale parity
    vm.pool.close()
    vm2 = VolumeManager.open(tmp_path / "pool")
    vol2 = vm2.volume("v")
    vm2.fail_device(_dev_of(vol2, 1))  # chunk 1 must now come from (resynced) parity
    assert vol2.read(4096, 4096) == b"a" * 4096
    assert vol2.read(0, 4096) == b"b" * 4096
    vm2.close()


def test_flush_clears_the_bitmap_on_every_member(vm):
    vol = vm.create_volume("v", MiB, "raid5", members=3)
    vol.write(0, b"z" * 100)
    assert vol.bitmap.dirty == {0}
    vol.flush()
    assert vol.recover_write_hole() == 0


def test_statistics_count_ops_bytes_and_latency(vm):
    vol = vm.create_volume("v", MiB, "raid1", members=2)
    vol.write(0, b"x" * 4096)
    vol.write(4096, b"y" * 4096)
    vol.read(0, 8192)
    row = vm.status()[0]
    assert (row["reads"], row["writes"], row["bytes_read"], row["bytes_written"]) == (1, 2, 8192, 8192)
    lat = row["write_latency_us"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"]


def test_out_of_range_io_is_refused(vm):
    vol = vm.create_volume("v", MiB, "concat")
    with pytest.raises(VolumeError, match="range 1048575\\+2 outside its 1048576 bytes"):
        vol.write(MiB - 1, b"xx")


def test_create_refusals_are_clear(vm):
    vm.create_volume("v", MiB)
    with pytest.raises(StorageError, match="volume v already exists"):
        vm.create_volume("v", MiB)
    with pytest.raises(StorageError, match="raid5 needs at least 3 members, not 2"):
        vm.create_volume("w", MiB, "raid5", members=2)
    with pytest.raises(StorageError, match="not enough space"):
        vm.create_volume("w", 100 * MiB, "raid1", members=2)
    with pytest.raises(StorageError, match="unknown layout 'raid6'"):
        vm.create_volume("w", MiB, "raid6")


def test_volumes_go_to_devices_with_most_free_space(vm):
    a = vm.create_volume("a", 3 * MiB, "concat")
    b = vm.create_volume("b", 3 * MiB, "concat")
    assert a.rec.members[0].device != b.rec.members[0].device


class Crash(Exception):
    """Raised from a device write hook: the machine stops before that write."""


def crash_after(writes: int):
    from storage.physical import GLOBAL_HOOKS
    count = [0]

    def hook(dev, offset, data):
        count[0] += 1
        if count[0] > writes:
            raise Crash
    GLOBAL_HOOKS.write = hook


def test_degraded_stripe_write_cut_short_keeps_the_missing_members_data(pool, tmp_path):
    from storage.physical import GLOBAL_HOOKS
    vm = VolumeManager(pool)
    vol = vm.create_volume("v", MiB, "raid5", members=3, stripe_unit=4096)
    data = os.urandom(MiB)
    vol.write(0, data)
    vol.flush()
    vm.fail_device(_dev_of(vol, 0))  # stripe 0: data chunks on members 0 and 1
    for cut in range(1, 8):  # stop the machine at every write of one degraded stripe write
        crash_after(cut)
        try:
            vol.write(4096, b"N" * 4096)  # rewrites chunk 1; chunk 0 lives only in parity
        except Crash:
            pass
        finally:
            GLOBAL_HOOKS.write = None
        vm.pool.close()
        vm = VolumeManager.open(tmp_path / "pool")
        vol = vm.volume("v")
        assert vol.read(0, 4096) == data[:4096], f"cut after {cut} writes"
        assert vol.read(4096, 4096) in (data[4096:8192], b"N" * 4096)


def test_a_raid5_volume_with_the_unrounded_reserved_area_of_older_pools_still_works(pool, tmp_path, monkeypatch):
    """Volumes made before the reserved area was rounded to whole stripe units record
    LOG_DATA + su: rows sit there, and degraded writes (through the stripe log) and
    reads after re-assembly use the recorded value, not today's rounding."""
    from storage.stripelog import LOG_DATA, reserved_bytes
    su = 64 * 1024
    with monkeypatch.context() as old_code:
        old_code.setattr("storage.volume.reserved_bytes", lambda unit: LOG_DATA + unit)
        vm = VolumeManager(pool)
        vol = vm.create_volume("v", MiB, "raid5", members=3, stripe_unit=su)
    assert vol.rec.bitmap_bytes == LOG_DATA + su != reserved_bytes(su)
    data = bytearray(os.urandom(MiB))
    vol.write(0, bytes(data))
    vol.flush()
    first = vol.rec.members[0]  # stripe 0: parity on member 2, data chunk 0 on member 0
    assert vm.pool.devices[first.device].read(first.offset + LOG_DATA + su, su) == data[:su]

    vm.fail_device(_dev_of(vol, 0))
    vol.write(su - 100, b"D" * 300)  # degraded: chunk 0 lives only in parity now
    data[su - 100:su + 200] = b"D" * 300
    vol.flush()
    vm.pool.close()
    vm = VolumeManager.open(tmp_path / "pool")
    assert vm.volume("v").rec.bitmap_bytes == LOG_DATA + su
    assert vm.volume("v").read(0, MiB) == bytes(data)
    vm.close()


def test_healthy_stripe_write_cut_short_is_resynced_from_the_bitmap(pool, tmp_path):
    from storage.physical import GLOBAL_HOOKS
    vm = VolumeManager(pool)
    vol = vm.create_volume("v", MiB, "raid5", members=3, stripe_unit=4096)
    data = os.urandom(MiB)
    vol.write(0, data)
    vol.flush()
    crash_after(4)  # bitmap to 3 members, then one data chunk; parity never written
    try:
        vol.write(4096, b"N" * 4096)
    except Crash:
        pass
    finally:
        GLOBAL_HOOKS.write = None
    vm.pool.close()
    vm = VolumeManager.open(tmp_path / "pool")
    vol = vm.volume("v")
    vm.fail_device(_dev_of(vol, 0))  # chunk 0 now comes from parity: it must be right
    assert vol.read(0, 4096) == data[:4096]


def test_rebuild_rate_can_change_while_it_runs(vm, tmp_path, monkeypatch):
    vol = vm.create_volume("v", 4 * MiB, "raid1", members=2)
    old = _dev_of(vol, 1)
    vm.fail_device(old)
    vm.replace_device(old, tmp_path / "spare.img")
    slept = []
    monkeypatch.setattr("storage.rebuild.time.sleep", slept.append)
    rb = Rebuild(vol, 1, step=MiB)

    def throttle_after_first_step(done, total):
        rb.rate = 1024 * 1024 * 1024 if done <= MiB else 1.0  # then 1 byte/s: must wait
    rb.run(throttle_after_first_step)
    assert vol.state() == "ok"
    assert slept and max(slept) > 1000  # the slower rate made it wait


def test_raid1_mirrors_agree_again_after_a_crash_between_them(pool, tmp_path):
    from storage.physical import GLOBAL_HOOKS
    vm = VolumeManager(pool)
    vol = vm.create_volume("m", MiB, "raid1", members=2)
    vol.write(0, b"o" * 8192)
    vol.flush()
    crash_after(3)  # the bitmap on both mirrors, then the first mirror only
    try:
        vol.write(0, b"n" * 8192)
    except Crash:
        pass
    finally:
        GLOBAL_HOOKS.write = None
    vm.pool.close()
    vm = VolumeManager.open(tmp_path / "pool")
    before = vm.volume("m").read(0, 8192)
    vm.fail_device(_dev_of(vm.volume("m"), 0))
    assert vm.volume("m").read(0, 8192) == before  # the other mirror says the same


def test_readd_takes_a_device_back_after_a_transient_error(vm):
    vol = vm.create_volume("v", 2 * MiB, "raid5", members=3)
    data = os.urandom(2 * MiB)
    vol.write(0, data)
    dev = vm.pool.devices[_dev_of(vol, 1)]
    dev.inject_error("read", count=1)
    assert vol.read(0, 2 * MiB) == data  # the error failed the member
    vol.write(0, b"while out" * 100)
    data = b"while out" * 100 + data[900:]
    with pytest.raises(StorageError, match="is not failed"):
        vm.readd_device(_dev_of(vol, 0))
    vm.readd_device(str(dev.device_id))
    assert vol.state() == "rebuilding"
    vm.rebuild()
    vm.fail_device(_dev_of(vol, 0))  # the re-added copy must carry its share now
    assert vol.read(0, 2 * MiB) == data


def test_readd_of_a_concat_member_brings_the_volume_back(vm):
    vol = vm.create_volume("c", MiB, "concat")
    vol.write(0, b"kept")
    dev = vm.pool.devices[_dev_of(vol, 0)]
    dev.inject_error("write", count=1)
    with pytest.raises(VolumeError, match="data unavailable"):
        vol.write(0, b"lost")
    vm.readd_device(str(dev.device_id))
    assert vol.state() == "ok" and vol.read(0, 4) == b"kept"


def test_raid5_sequential_unaligned_writes_read_back_whole_stripes_held_or_not(vm):
    vol = vm.create_volume("v", 2 * MiB, "raid5", members=3, stripe_unit=4096)
    data = os.urandom(MiB)
    step = 12 * 1024 + 512  # never a whole number of 8 KiB stripes
    for pos in range(0, len(data), step):
        vol.write(pos, data[pos:pos + step])
    assert vol.read(0, MiB) == data  # the held-back stripe start is read as written
    vol.flush()
    assert not vol.layout.held and not vol.bitmap.dirty


def test_raid5_stripe_start_held_at_flush_survives_a_crash(pool, tmp_path):
    vm = VolumeManager(pool)
    vol = vm.create_volume("v", MiB, "raid5", members=3, stripe_unit=4096)
    data = os.urandom(100 * 1024)
    vol.write(0, data[:50 * 1024])
    vol.write(50 * 1024, data[50 * 1024:])  # ends 4 KiB into a stripe: held back
    assert vol.layout.held is not None
    vol.flush()
    vm.pool.close()  # crash: nothing in memory survives
    vm2 = VolumeManager.open(tmp_path / "pool")
    assert vm2.volume("v").read(0, len(data)) == data
    vm2.fail_device(_dev_of(vm2.volume("v"), 0))  # and parity agrees with the data
    assert vm2.volume("v").read(0, len(data)) == data
    vm2.close()


def test_raid5_stripe_start_held_when_a_member_fails_is_written_degraded(vm):
    vol = vm.create_volume("v", MiB, "raid5", members=3, stripe_unit=4096)
    data = os.urandom(100 * 1024)
    vol.write(0, data)
    assert vol.layout.held is not None
    vm.fail_device(_dev_of(vol, 1))
    assert vol.read(0, len(data)) == data
    vol.write(len(data), b"x" * 4096)
    assert vol.read(0, len(data) + 4096) == data + b"x" * 4096
