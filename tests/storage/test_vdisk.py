"""Virtual disks: base + redo chain, snapshot/commit/revert, damage detection."""

from __future__ import annotations

import dataclasses
import os

import pytest

from storage.errors import BlockRangeError, FormatError, IntegrityError, StorageError
from storage.fileio import HostDirectory
from storage.redo import FLAG_ZERO, SLOT_SIZE, RedoFile, RedoHeader
from storage.vdisk import VirtualDisk
from tests.storage.memdir import MemoryDirectory

KiB = 1024


def blocks(tag: bytes, n: int = 1, bs: int = 512) -> bytes:
    return (tag * bs)[:bs] * n


@pytest.fixture
def disk(tmp_path):
    d = VirtualDisk.create(tmp_path / "d.dsk", 2048)  # 1 MiB of 512-byte blocks
    yield d
    d.close()


def test_new_disk_has_size_in_blocks_and_reads_zeros(disk, tmp_path):
    assert (disk.block_size, disk.num_blocks) == (512, 2048)
    assert disk.read(0, 2048) == bytes(1024 * KiB)
    assert os.path.getsize(tmp_path / "d.dsk") == 1024 * KiB


def test_raw_image_is_used_and_written_in_place(tmp_path):
    raw = tmp_path / "qemu.img"
    raw.write_bytes(os.urandom(64 * KiB))
    before = raw.read_bytes()
    disk = VirtualDisk.open(raw, block_size=4096)
    assert disk.num_blocks == 16 and disk.chain() == ["qemu.img"]
    assert disk.read(1, 2) == before[4096:12288]
    disk.write(3, blocks(b"W", 1, 4096))
    disk.close()
    assert raw.read_bytes() == before[:12288] + b"W" * 4096 + before[16384:]


def test_writes_after_snapshot_land_in_the_redo_and_leave_the_base(disk, tmp_path):
    disk.write(10, blocks(b"a", 2))
    assert disk.snapshot() == "d.redo"
    disk.write(11, blocks(b"b"))
    assert disk.read(10, 2) == blocks(b"a") + blocks(b"b")
    base = (tmp_path / "d.dsk").read_bytes()
    assert base[10 * 512:12 * 512] == blocks(b"a", 2)


def test_overlays_are_named_in_chain_order_and_found_on_reopen(disk, tmp_path):
    names = [disk.snapshot() for _ in range(3)]
    assert names == ["d.redo", "d-1.redo", "d-2.redo"]
    disk.write(0, blocks(b"t"))
    disk.close()
    again = VirtualDisk.open(tmp_path / "d.dsk")
    assert again.chain() == ["d.dsk", "d.redo", "d-1.redo", "d-2.redo"]
    assert again.read(0, 1) == blocks(b"t")
    again.close()


def test_reads_fall_through_to_the_nearest_layer_that_has_the_block(disk):
    disk.write(0, blocks(b"0", 4))
    disk.snapshot()
    disk.write(1, blocks(b"1"))
    disk.snapshot()
    disk.write(2, blocks(b"2"))
    assert disk.read(0, 4) == blocks(b"0") + blocks(b"1") + blocks(b"2") + blocks(b"0")


def test_commit_merges_top_into_parent_and_removes_it(disk, tmp_path):
    disk.write(0, blocks(b"a", 300))
    disk.snapshot()
    disk.write(5, blocks(b"b", 200))
    disk.snapshot()
    disk.write(7, blocks(b"c"))
    disk.discard(256, 128)  # two whole 64 KiB clusters
    expected = disk.read(0, 2048)
    assert disk.commit() == "d.redo"
    assert not (tmp_path / "d-1.redo").exists()
    assert disk.read(0, 2048) == expected
    assert disk.commit() == "d.dsk"
    assert disk.read(0, 2048) == expected
    assert (tmp_path / "d.dsk").read_bytes() == expected


def test_revert_throws_the_top_away(disk, tmp_path):
    disk.write(0, blocks(b"k"))
    disk.snapshot()
    disk.write(0, blocks(b"x"))
    assert disk.revert() == "d.dsk"
    assert disk.read(0, 1) == blocks(b"k")
    assert not (tmp_path / "d.redo").exists()
    disk.write(0, blocks(b"y"))  # the base is writable again
    assert (tmp_path / "d.dsk").read_bytes()[:512] == blocks(b"y")


def test_commit_or_revert_without_overlay_is_refused(disk):
    with pytest.raises(StorageError, match="d.dsk: no overlay to commit"):
        disk.commit()
    with pytest.raises(StorageError, match="no overlay to revert"):
        disk.revert()


def test_discard_reads_zeros_and_frees_whole_clusters(disk):
    disk.write(0, blocks(b"q", 2048))
    disk.snapshot()
    disk.write(0, blocks(b"r", 2048))
    top = disk.layers[-1]
    allocated = len(top.allocated())
    disk.discard(100, 500)
    assert disk.read(99, 502) == blocks(b"r") + bytes(500 * 512) + blocks(b"r")
    assert int((top.map["phys"] > 0).sum()) == allocated - 3  # clusters 1..3 freed


def test_discard_without_overlay_zeroes_the_base(disk):
    disk.write(0, blocks(b"q", 8))
    disk.discard(2, 3)
    assert disk.read(0, 8) == blocks(b"q", 2) + bytes(1536) + blocks(b"q", 3)


def test_block_size_4096_and_range_errors(tmp_path):
    disk = VirtualDisk.create(tmp_path / "big.dsk", 16, block_size=4096)
    disk.snapshot()
    disk.write(15, blocks(b"e", 1, 4096))
    assert disk.read(15, 1) == b"e" * 4096
    with pytest.raises(BlockRangeError, match="big.dsk: blocks 15\\+2 outside the disk \\(16 blocks\\)"):
        disk.read(15, 2)
    with pytest.raises(BlockRangeError, match="write of 512 bytes is not a whole number of 4096-byte blocks"):
        disk.write(0, bytes(512))
    with pytest.raises(StorageError, match="block size must be 512 or 4096, not 1024"):
        VirtualDisk.create(tmp_path / "x.dsk", 1, block_size=1024)
    disk.close()


def test_damaged_data_cluster_is_detected_on_read(disk, tmp_path):
    disk.snapshot()
    disk.write(128, blocks(b"d", 128))  # cluster 1
    disk.flush()
    top = disk.layers[-1]
    phys = int(top.map[1]["phys"])
    with open(tmp_path / "d.redo", "r+b") as f:
        f.seek(top.hdr.data_offset + (phys - 1) * top.cs + 777)
        f.write(b"!")
    with pytest.raises(IntegrityError, match=f"{tmp_path / 'd.redo'}: data cluster 1 "
                                             f"\\(blocks 128-255\\) damaged: checksum mismatch"):
        disk.read(200, 1)
    assert disk.read(0, 128) == bytes(128 * 512)  # other clusters still read


def _refused_after(disk, tmp_path, edit_slot, match: str) -> None:
    """Snapshot, close, apply ``edit_slot(raw, slot_start)`` to both header slots of the
    overlay: opening is refused with ``match`` and the file is left as it was."""
    disk.snapshot()
    disk.close()
    path = tmp_path / "d.redo"
    raw = bytearray(path.read_bytes())
    for slot in (0, 1):
        edit_slot(raw, slot * SLOT_SIZE)
    path.write_bytes(bytes(raw))
    with pytest.raises(FormatError, match=match.format(path=path)):
        VirtualDisk.open(tmp_path / "d.dsk")
    assert path.read_bytes() == bytes(raw)


@pytest.mark.parametrize("offset,damage", [(0, "bad magic"), (100, "checksum mismatch")])
def test_damaged_redo_header_is_refused_naming_file(disk, tmp_path, offset, damage):
    def damage_byte(raw, at):
        raw[at + offset] ^= 0x55

    _refused_after(disk, tmp_path, damage_byte, f"{{path}}: header damaged: {damage}")


def test_damaged_map_is_refused(disk, tmp_path):
    disk.snapshot()
    disk.write(0, blocks(b"m"))
    disk.close()
    top = RedoFile.open(__import__("storage.fileio", fromlist=["x"]).HostDirectory(tmp_path), "d.redo")
    copy = top.hdr.map_offsets[top.hdr.generation % 2]
    top.close()
    with open(tmp_path / "d.redo", "r+b") as f:
        f.seek(copy + 3)
        f.write(b"\xee")
    with pytest.raises(FormatError, match="d.redo: cluster map damaged: checksum mismatch"):
        VirtualDisk.open(tmp_path / "d.dsk")


def test_broken_chain_is_refused(disk, tmp_path):
    disk.snapshot()
    disk.snapshot()
    disk.close()
    os.rename(tmp_path / "d-1.redo", tmp_path / "keep")
    os.rename(tmp_path / "d.redo", tmp_path / "d-1.redo")
    os.rename(tmp_path / "keep", tmp_path / "d.redo")
    with pytest.raises(FormatError, match="d.redo: parent is 'd.redo', expected 'd.dsk': the chain is broken"):
        VirtualDisk.open(tmp_path / "d.dsk")


def test_crash_before_flush_keeps_the_last_flushed_state(disk, tmp_path):
    disk.snapshot()
    disk.write(0, blocks(b"1", 256))
    disk.flush()
    disk.write(0, blocks(b"2", 200))  # overwrites flushed clusters, never flushed
    for layer in disk.layers:  # crash: drop everything in memory
        layer.file.close()
    disk.base.close()
    disk.closed = True
    again = VirtualDisk.open(tmp_path / "d.dsk")
    assert again.read(0, 256) == blocks(b"1", 256)
    again.close()


def test_torn_header_write_falls_back_to_previous_generation(disk, tmp_path):
    disk.snapshot()
    disk.write(0, blocks(b"1"))
    disk.flush()
    gen = disk.layers[-1].hdr.generation
    disk.write(0, blocks(b"2"))
    disk.flush()
    disk.close()
    with open(tmp_path / "d.redo", "r+b") as f:  # the newest header slot got torn
        f.seek(((gen + 1) % 2) * SLOT_SIZE + 8)
        f.write(b"\xff" * 16)
    again = VirtualDisk.open(tmp_path / "d.dsk")
    assert again.read(0, 1) == blocks(b"1")
    again.close()


def test_rewrites_reuse_space_after_flush(disk, tmp_path):
    disk.snapshot()
    for i in range(10):
        disk.write(0, blocks(bytes([65 + i]), 2048))
        disk.flush()
    top = disk.layers[-1]
    assert top.hdr.cluster_count <= 2 * 16  # 16 clusters of data, at most two copies
    assert disk.read(0, 2048) == blocks(b"J", 2048)


def test_import_and_export_raw_round_trip(tmp_path):
    src = tmp_path / "src.img"
    data = os.urandom(100 * KiB) + bytes(28 * KiB)
    src.write_bytes(data)
    disk = VirtualDisk.import_raw(src, tmp_path / "imp.dsk")
    disk.snapshot()
    disk.write(0, blocks(b"Z"))
    disk.export_raw(tmp_path / "out.img")
    assert (tmp_path / "out.img").read_bytes() == blocks(b"Z") + data[512:]
    disk.close()


def test_disk_works_on_any_directory_implementation():
    mem = MemoryDirectory()
    disk = VirtualDisk.create_in(mem, "m.dsk", 256)
    disk.write(1, blocks(b"a"))
    disk.snapshot()
    disk.write(2, blocks(b"b"))
    assert sorted(mem.files) == ["m.dsk", "m.redo"]
    disk.close()
    again = VirtualDisk.open_in(mem, "m.dsk")
    assert again.read(0, 3) == bytes(512) + blocks(b"a") + blocks(b"b")
    again.commit()
    assert bytes(mem.files["m.dsk"][1024:1536]) == blocks(b"b")


def test_read_only_disk_refuses_writes(disk, tmp_path):
    disk.close()
    ro = VirtualDisk.open(tmp_path / "d.dsk", readonly=True)
    with pytest.raises(StorageError, match="d.dsk: opened read-only"):
        ro.write(0, bytes(512))
    ro.close()


def test_disk_size_not_a_multiple_of_the_cluster_size(tmp_path):
    raw = tmp_path / "odd.img"
    raw.write_bytes(b"\x11" * (100 * 512))  # 50 KiB: less than one 64 KiB cluster
    disk = VirtualDisk.open(raw)
    disk.snapshot()
    disk.write(99, blocks(b"L"))
    disk.discard(0, 10)
    assert disk.read(0, 100) == bytes(10 * 512) + b"\x11" * (89 * 512) + blocks(b"L")
    disk.commit()
    disk.close()
    assert raw.read_bytes() == bytes(10 * 512) + b"\x11" * (89 * 512) + blocks(b"L")


def test_version_1_overlay_is_still_read_and_written_with_crc32(tmp_path):
    import zlib
    VirtualDisk.create(tmp_path / "o.dsk", 2048).close()
    RedoFile.create(HostDirectory(tmp_path), "o.redo", "o.dsk", 512, 2048, version=1).close()
    disk = VirtualDisk.open(tmp_path / "o.dsk")
    disk.write(128, blocks(b"v", 128))  # cluster 1
    disk.flush()
    top = disk.layers[-1]
    assert top.hdr.version == 1
    assert int(top.map[1]["crc"]) == zlib.crc32(blocks(b"v", 128))
    disk.close()
    again = VirtualDisk.open(tmp_path / "o.dsk")
    assert again.layers[-1].hdr.version == 1  # stays version 1: its checks are CRC32
    assert again.read(128, 128) == blocks(b"v", 128)
    again.close()


def test_overlay_of_an_unknown_version_is_refused_naming_file(disk, tmp_path):
    def version_3(raw, at):  # a well-formed header of a later format, in the live slot
        if raw[at:at + 4] != bytes(4):  # after a snapshot one slot is still unwritten
            header = RedoHeader.unpack(bytes(raw[at:at + SLOT_SIZE]), "test")
            raw[at:at + SLOT_SIZE] = dataclasses.replace(header, version=3).pack().ljust(SLOT_SIZE, b"\0")

    _refused_after(disk, tmp_path, version_3, "{path}: redo version 3 not supported")


def _overlay_with_one_run_of_four_clusters(disk, tag: bytes):
    """Snapshot, then write clusters 0-3 so they sit in consecutive slots (one run)."""
    disk.snapshot()
    disk.write(0, blocks(tag, 4 * 128))
    disk.flush()
    top = disk.layers[-1]
    assert [int(p) for p in top.map[0:4]["phys"]] == [1, 2, 3, 4]
    return top


def test_a_damaged_cluster_inside_a_run_is_caught_by_a_read_of_the_whole_run(disk, tmp_path):
    top = _overlay_with_one_run_of_four_clusters(disk, b"r")
    with open(tmp_path / "d.redo", "r+b") as f:
        f.seek(top.hdr.data_offset + 2 * top.cs + 100)  # inside cluster 2
        f.write(b"!")
    with pytest.raises(IntegrityError, match="data cluster 2 "):
        disk.read(0, 4 * 128)


def test_an_overlay_file_cut_short_inside_a_run_reports_the_first_missing_cluster(disk, tmp_path):
    top = _overlay_with_one_run_of_four_clusters(disk, b"t")
    # Read once first: the disk's reused buffer then already holds the right bytes, so
    # only the short count, not the checksum of what is left in the buffer, can tell.
    assert disk.read(0, 4 * 128) == blocks(b"t", 4 * 128)
    os.truncate(tmp_path / "d.redo", top.hdr.data_offset + 2 * top.cs + 300)  # inside cluster 2
    with pytest.raises(IntegrityError, match="data cluster 2 "):
        disk.read(0, 4 * 128)
    assert disk.read(0, 2 * 128) == blocks(b"t", 2 * 128)  # what is still whole reads


def test_a_cluster_of_zeros_is_a_zero_mark_that_takes_no_slot(disk):
    disk.snapshot()
    disk.write(0, blocks(b"z", 128))
    disk.write(128, bytes(128 * 512))  # cluster 1: all zeros
    top = disk.layers[-1]
    assert int(top.map[1]["phys"]) == 0 and top.map[1]["flags"] & FLAG_ZERO
    assert int(top.map[0]["phys"]) == 1
    assert disk.read(128, 128) == bytes(128 * 512)


def test_block_sum_check_catches_a_changed_word_in_any_block(disk, tmp_path):
    disk.snapshot()
    disk.write(0, blocks(b"s", 128))
    disk.flush()
    top = disk.layers[-1]
    assert top.hdr.version == 2
    at = top.hdr.data_offset + (int(top.map[0]["phys"]) - 1) * top.cs
    for where in (0, 4096 * 7 + 3, top.cs - 1):  # first, middle and last 4 KiB block
        with open(tmp_path / "d.redo", "r+b") as f:
            f.seek(at + where)
            old = f.read(1)
            f.seek(at + where)
            f.write(bytes([old[0] ^ 0x80]))
        with pytest.raises(IntegrityError, match="data cluster 0"):
            disk.read(0, 1)
        with open(tmp_path / "d.redo", "r+b") as f:
            f.seek(at + where)
            f.write(old)
    assert disk.read(0, 128) == blocks(b"s", 128)
