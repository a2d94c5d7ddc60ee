"""File system: namespace, placement, extents, moves, journal recovery, fsck."""

from __future__ import annotations

import os

import pytest

from storage.errors import FormatError, StorageError
from storage.fs import SB_SLOT, UNIT, FileSystem, Rule
from storage.fsck import fsck
from storage.fsfile import FSDirectory
from storage.pool import Pool
from storage.vdisk import VirtualDisk
from storage.volume import VolumeManager

MiB = 1024 * 1024


@pytest.fixture
def vm(tmp_path):
    vm = VolumeManager(Pool.create(tmp_path / "pool", 4, 24 * MiB))
    vm.create_volume("gold", 6 * MiB, "raid1", tier="fast", members=2)
    vm.create_volume("bulk", 12 * MiB, "raid5", tier="slow", members=4)
    yield vm
    vm.pool.close()


@pytest.fixture
def fs(vm):
    return FileSystem.mkfs(vm, ["gold", "bulk"], meta_volume="gold", meta_size=MiB,
                           rules=[Rule("/gold", tier="fast", layout="raid1")])


def crash_and_mount(fs: FileSystem) -> FileSystem:
    """Forget everything in memory (no sync) and mount again from the volumes."""
    return FileSystem.mount(fs.vm)


def test_directories_and_files_form_a_tree(fs):
    fs.mkdir("/a/b/c", parents=True)
    fs.open("/a/b/f", create=True)
    assert fs.listdir("/") == ["a"]
    assert fs.listdir("/a/b") == ["c", "f"]
    fs.rename("/a/b/f", "/a/g")
    assert fs.listdir("/a") == ["b", "g"]
    fs.unlink("/a/g")
    assert fs.listdir("/a") == ["b"]


def test_namespace_errors_are_clear(fs):
    fs.mkdir("/d")
    fs.open("/d/f", create=True)
    with pytest.raises(StorageError, match="/d: already exists"):
        fs.mkdir("/d")
    with pytest.raises(StorageError, match="/d: directory not empty"):
        fs.unlink("/d")
    with pytest.raises(StorageError, match="/x/y: no such file or directory"):
        fs.open("/x/y")
    with pytest.raises(StorageError, match="/d/f/z: parent is not a directory"):
        fs.mkdir("/d/f/z")
    with pytest.raises(StorageError, match="/d: is a directory"):
        fs.open("/d")


def test_file_reads_back_writes_with_holes_as_zeros(fs):
    f = fs.open("/f", create=True)
    f.pwrite(b"abc", 10)
    f.pwrite(b"xyz", 3 * UNIT + 5)
    assert f.size() == 3 * UNIT + 8
    data = f.pread(4 * UNIT, 0)
    assert len(data) == 3 * UNIT + 8
    assert data[:13] == bytes(10) + b"abc"
    assert data[3 * UNIT:] == bytes(5) + b"xyz"
    assert data[13:3 * UNIT] == bytes(3 * UNIT - 13)
    assert [e[0] for e in fs.lookup("/f").extents] == [0, 3 * UNIT]  # the hole is unallocated


def test_sequential_writes_make_one_extent(fs):
    f = fs.open("/big", create=True)
    for i in range(8):
        f.pwrite(os.urandom(UNIT), i * UNIT)
    assert len(fs.lookup("/big").extents) == 1


def test_shrink_then_grow_reads_zeros_past_old_end(fs):
    f = fs.open("/f", create=True)
    f.pwrite(b"z" * 3 * UNIT, 0)
    f.truncate(UNIT + 100)
    f.truncate(3 * UNIT)
    data = f.pread(3 * UNIT, 0)
    assert data == b"z" * (UNIT + 100) + bytes(2 * UNIT - 100)
    assert sum(e[2] for e in fs.lookup("/f").extents) == 2 * UNIT


def test_placement_rules_pick_the_volume(fs):
    fs.mkdir("/gold")
    assert fs.create("/gold/db").volume == "gold"
    assert fs.create("/plain").volume == "bulk"  # most free space
    fs.set_rules([Rule("/fastest", tier="ssd")])
    fs.mkdir("/fastest")
    with pytest.raises(StorageError, match="/fastest/x: no volume matches the rule for /fastest"):
        fs.create("/fastest/x")


def test_default_placement_follows_free_space(fs):
    big = fs.open("/fill", create=True)
    big.pwrite(b"\1" * (fs.free_bytes("bulk") - fs.free_bytes("gold") + UNIT), 0)
    assert fs.place("/next") == "gold"


def test_move_while_open_keeps_handles_and_frees_old_space(fs):
    f = fs.open("/m", create=True)
    data = os.urandom(5 * UNIT + 7)
    f.pwrite(data, 0)
    fs.sync()
    before = fs.free_bytes("bulk")
    fs.move("/m", "gold")
    assert fs.lookup("/m").volume == "gold"
    assert f.pread(len(data), 0) == data
    f.pwrite(b"after", 3)
    assert fs.free_bytes("bulk") == before + 6 * UNIT
    again = crash_and_mount(fs)
    assert again.open("/m").pread(8, 0) == data[:3] + b"after"


def test_clean_remount_keeps_everything(fs, vm):
    fs.mkdir("/d")
    f = fs.open("/d/f", create=True)
    f.pwrite(b"persist", 0)
    fs.setattr("/d/f", "owner", "alice")
    fs.close()
    again = FileSystem.mount(vm)
    assert again.replayed == 0
    assert again.open("/d/f").pread(7, 0) == b"persist"
    assert again.lookup("/d/f").attrs == {"owner": "alice"}
    assert fsck(again) == []


def test_crash_keeps_synced_metadata_and_drops_unsynced(fs):
    f = fs.open("/a", create=True)
    f.pwrite(b"1" * 100, 0)
    fs.sync()
    f.pwrite(b"2" * 100, UNIT * 4)  # allocation not synced
    again = crash_and_mount(fs)
    assert again.replayed > 0
    assert again.lookup("/a").size == 100
    assert again.open("/a").pread(200, 0) == b"1" * 100
    assert fsck(again) == []


def test_journal_full_triggers_a_checkpoint(vm):
    fs = FileSystem.mkfs(vm, ["gold", "bulk"], meta_size=256 * 1024)
    gen = fs.sb.generation
    for i in range(150):
        fs.mkdir(f"/dir-with-a-long-name-{i:04d}")
    assert fs.sb.generation > gen
    again = crash_and_mount(fs)
    assert len(again.listdir("/")) == 150
    assert fsck(again) == []


def test_torn_journal_tail_is_ignored(fs):
    fs.mkdir("/kept")
    pos = fs.journal.pos
    fs.vm.volume("gold").write(fs.sb.journal_offset + pos, b"PJRN" + b"\x01" * 30)
    again = crash_and_mount(fs)
    assert again.listdir("/") == ["kept"]


def test_damaged_journal_record_is_refused(fs):
    fs.mkdir("/one")
    fs.mkdir("/two")
    vol = fs.vm.volume("gold")
    vol.write(fs.sb.journal_offset + 30, b"\xff\xff")  # inside the first record
    with pytest.raises(FormatError, match="volume gold: journal damaged: record 1 checksum "
                                          "mismatch \\(later records are intact\\)"):
        crash_and_mount(fs)


def test_damaged_superblocks_are_refused(fs):
    vol = fs.vm.volume("gold")
    raw = bytearray(vol.read(0, 2 * SB_SLOT))
    raw[20] ^= 1
    raw[SB_SLOT + 20] ^= 1
    vol.write(0, bytes(raw))
    with pytest.raises(FormatError, match="volume gold: superblock damaged: checksum mismatch"):
        crash_and_mount(fs)


def test_damaged_checkpoint_is_refused(fs):
    sb = fs.sb
    fs.vm.volume("gold").write(sb.ckpt_offsets[sb.ckpt_slot] + 5, b"#")
    with pytest.raises(FormatError, match="volume gold: file system checkpoint damaged"):
        crash_and_mount(fs)


def test_unlinked_space_is_reused_only_after_sync(fs):
    f = fs.open("/x", create=True)
    f.pwrite(b"x" * UNIT, 0)
    fs.sync()
    free = fs.free_bytes("bulk")
    fs.unlink("/x")  # unlink syncs
    assert fs.free_bytes("bulk") == free + UNIT


def test_fsck_reports_every_kind_of_inconsistency(fs):
    fs.mkdir("/d")
    a = fs.open("/d/a", create=True)
    a.pwrite(b"a" * UNIT, 0)
    b = fs.open("/d/b", create=True)
    b.pwrite(b"b" * UNIT, 0)
    ia, ib = fs.lookup("/d/a"), fs.lookup("/d/b")
    ib.extents[0][1] = ia.extents[0][1]  # two files share space
    fs.lookup("/d").entries["ghost"] = 999  # entry to a missing inode
    orphan = fs.next_ino
    fs.inodes[orphan] = type(ia)(orphan, "file", 1, volume="bulk")
    fs.next_ino += 1
    ia.extents.append([5 * UNIT, 10**9, UNIT])  # outside the volume, beyond EOF
    report = fsck(fs)
    assert f"/d/ghost: entry points to missing inode 999" in report
    assert f"inode {orphan}: not reachable from / (orphan)" in report
    assert any(f"inode {ia.ino} and inode {ib.ino} both use bytes" in p for p in report)
    assert any("outside the volume" in p for p in report)
    assert any("beyond the end of the file" in p for p in report)


def test_fsck_is_clean_after_ordinary_work(fs):
    fs.mkdir("/gold")
    for i in range(5):
        f = fs.open(f"/gold/f{i}" if i % 2 else f"/f{i}", create=True)
        f.pwrite(os.urandom(UNIT * i + 1), 0)
    fs.move("/f2", "gold")
    fs.unlink("/gold/f1")
    fs.sync()
    assert fsck(fs) == []
    assert fsck(crash_and_mount(fs)) == []


def test_virtual_disk_lives_in_the_file_system(fs, vm):
    fs.mkdir("/vm")
    d = FSDirectory(fs, "/vm")
    disk = VirtualDisk.create_in(d, "guest.dsk", 4096)
    disk.write(0, b"b" * 512 * 8)
    disk.snapshot()
    disk.write(4, b"r" * 512 * 200)
    disk.flush()
    assert fs.listdir("/vm") == ["guest.dsk", "guest.redo"]
    again = crash_and_mount(fs)
    disk2 = VirtualDisk.open_in(FSDirectory(again, "/vm"), "guest.dsk")
    assert disk2.read(0, 5) == b"b" * 2048 + b"r" * 512
    disk2.commit()
    assert again.listdir("/vm") == ["guest.dsk"]
    assert disk2.read(3, 2) == b"b" * 512 + b"r" * 512
    disk2.close()
    assert fsck(again) == []
    assert disk2.directory.describe("guest.dsk") == "pool:/vm/guest.dsk"


def test_open_pool_disk_assembles_mounts_and_closes_everything(fs, vm, tmp_path):
    from storage.pooldisk import open_pool_disk
    fs.mkdir("/vms")
    VirtualDisk.create_in(FSDirectory(fs, "/vms"), "g.dsk", 128).close()
    fs.close()
    vm.close()
    disk = open_pool_disk(tmp_path / "pool", "/vms/g.dsk")
    disk.write(7, b"p" * 512)
    disk.close()
    disk = open_pool_disk(tmp_path / "pool", "/vms/g.dsk")
    assert (disk.block_size, disk.num_blocks) == (512, 128)
    assert disk.read(7, 1) == b"p" * 512
    disk.close()


def test_out_of_space_write_allocates_nothing_and_leaves_fsck_clean(fs):
    f = fs.open("/big", create=True)
    f.pwrite(b"a" * UNIT, 0)
    f.pwrite(b"b" * UNIT, 3 * UNIT)  # a hole of two units between
    free = fs.free_bytes("bulk")
    with pytest.raises(StorageError, match="/big: no space left on volume bulk"):
        f.pwrite(b"y" * (free + 2 * UNIT), UNIT)  # the hole fits, the rest does not
    assert fs.free_bytes("bulk") == free
    assert f.size() == 4 * UNIT and len(fs.lookup("/big").extents) == 2
    assert fsck(fs) == []
