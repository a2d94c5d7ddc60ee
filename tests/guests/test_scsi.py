"""The LSI 53C895A and its SCSI disks with a whole guest: the `scsi` guest (written from
the LSI manual and the SCSI standards, checked on QEMU) on our monitor, against QEMU, and
through a redo overlay."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from storage.vdisk import VirtualDisk
from tests.conftest import requires_qemu
from tests.guests.test_guests import golden
from tests.helpers import behaviour_lines, guest, run_qemu, run_vmm

BLOCK = 512
DISK_BYTES = 8 << 20  # 16384 blocks: the guest checks this capacity
WRITTEN_BLOCKS = [*range(100, 116), *range(2048, 2176)]  # where the guest writes


def pattern(key: int) -> np.ndarray:
    """Every little-endian word at byte offset X holds X ^ key (guests/README.md)."""
    offsets = np.arange(0, DISK_BYTES, 4, dtype=np.uint32)
    return (offsets ^ np.uint32(key)).astype("<u4")


def fresh_disk(path):
    pattern(0x5A5A5A5A).tofile(path)
    return path


def expected_final_image() -> bytes:
    before, after = pattern(0x5A5A5A5A).tobytes(), pattern(0xA5A5A5A5).tobytes()
    image = bytearray(before)
    for block in WRITTEN_BLOCKS:
        image[block * BLOCK : (block + 1) * BLOCK] = after[block * BLOCK : (block + 1) * BLOCK]
    return bytes(image)


def qemu_disk(path) -> list[str]:
    return [
        "-device", "lsi53c895a,id=scsi0",
        "-drive", f"file={path},if=none,id=d0,format=raw",
        "-device", "scsi-hd,drive=d0,bus=scsi0.0,scsi-id=0",
    ]


def test_scsi_guest_passes_and_leaves_exactly_its_writes_on_the_raw_image(tmp_path):
    image = fresh_disk(tmp_path / "disk.img")
    boot = run_vmm(str(guest("scsi")), "--memory", "64", "--disk", str(image), "--max-seconds", "120")
    assert behaviour_lines(boot.output) == golden("scsi")
    assert boot.status == 0
    assert image.read_bytes() == expected_final_image()


@requires_qemu
def test_scsi_guest_behaves_as_on_qemu_and_both_disks_end_identical(tmp_path):
    ours_image = fresh_disk(tmp_path / "ours.img")
    qemu_image = tmp_path / "qemu.img"
    shutil.copy(ours_image, qemu_image)
    ours = run_vmm(str(guest("scsi")), "--memory", "64", "--disk", str(ours_image), "--max-seconds", "120")
    reference = run_qemu(guest("scsi"), memory_mib=64, extra=qemu_disk(qemu_image))
    assert reference.status == 0, reference.output
    assert behaviour_lines(ours.output) == behaviour_lines(reference.output)
    assert ours.status == reference.status
    assert ours_image.read_bytes() == qemu_image.read_bytes()


def test_with_redo_the_guest_writes_land_in_an_overlay_and_revert_drops_them(tmp_path):
    image = fresh_disk(tmp_path / "disk.img")
    boot = run_vmm(str(guest("scsi")), "--memory", "64", "--disk", str(image), "--redo", "--max-seconds", "120")
    assert boot.status == 0
    assert image.read_bytes() == pattern(0x5A5A5A5A).tobytes()  # the base is untouched
    disk = VirtualDisk.open(image)
    assert disk.chain() == ["disk.img", "disk.redo"]
    assert disk.read(0, disk.num_blocks) == expected_final_image()
    disk.revert()
    assert disk.read(0, disk.num_blocks) == pattern(0x5A5A5A5A).tobytes()
    disk.close()


def test_a_missing_disk_is_refused_before_the_guest_starts(tmp_path):
    boot = run_vmm(str(guest("scsi")), "--disk", str(tmp_path / "absent.img"))
    assert boot.status == 103
    assert "absent.img" in boot.stderr
    assert boot.output == ""


def test_a_scsi_guest_without_a_disk_finds_no_controller():
    boot = run_vmm(str(guest("scsi")), "--memory", "64", "--max-seconds", "60")
    assert boot.status != 0
    assert boot.output.splitlines()[-1].startswith("FAIL scsi")
