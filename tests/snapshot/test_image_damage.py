"""A damaged VM image is refused with a message that says what is wrong, and nothing is
written over it or its disks."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys

import pytest

from tests.guests.test_scsi import fresh_disk
from tests.helpers import REPO, guest
from vmm.image import FORMAT_VERSION, ImageError, read_image, write_image
from vmm.machine import Machine, MachineConfig
from vmm.snapshot import resume


@pytest.fixture(scope="module")
def suspended(tmp_path_factory):
    """A scsi guest suspended in the middle of its run, with its disk."""
    directory = tmp_path_factory.mktemp("image")
    disk = fresh_disk(directory / "disk.img")
    machine = Machine(MachineConfig(memory_mib=16, deterministic=True, disks=[str(disk)]), serial_out=io.BytesIO())
    machine.load(guest("scsi"))
    assert machine.run(max_seconds=60, suspend_image=str(directory / "vm.image"), suspend_after=800).status == 105
    machine.close()
    return directory / "vm.image", disk


def damaged_copy(tmp_path, original, data: bytes):
    path = tmp_path / "damaged.image"
    path.write_bytes(data)
    return path


def refuses(path, match: str) -> None:
    before = path.read_bytes()
    with pytest.raises(ImageError, match=match):
        resume(path, serial_out=io.BytesIO())
    assert path.read_bytes() == before  # nothing written over it


def test_the_intact_image_resumes_and_runs_to_the_guest_s_verdict(suspended):
    out = io.BytesIO()
    machine = resume(suspended[0], serial_out=out)
    try:
        assert machine.run(max_seconds=60).status == 0
    finally:
        machine.close()
    assert out.getvalue().endswith(b"PASS scsi\n")


@pytest.mark.parametrize("fraction", [i / 20 for i in range(20)])
def test_an_image_truncated_anywhere_is_refused(tmp_path, suspended, fraction):
    data = suspended[0].read_bytes()
    cut = int(len(data) * fraction)
    refuses(damaged_copy(tmp_path, suspended[0], data[:cut]), "truncated|not a VM image|damaged")


@pytest.mark.parametrize("where", [0, 9, 20, 40, 100, 500, 2000, -5000, -100, -1])
def test_a_flipped_byte_anywhere_is_refused(tmp_path, suspended, where):
    data = bytearray(suspended[0].read_bytes())
    data[where] ^= 0x40
    refuses(damaged_copy(tmp_path, suspended[0], bytes(data)), "damaged|not a VM image|newer|truncated")


def test_an_image_from_a_newer_vmm_is_refused_with_both_versions(tmp_path, suspended):
    data = bytearray(suspended[0].read_bytes())
    struct.pack_into("<I", data, 8, FORMAT_VERSION + 1)
    refuses(damaged_copy(tmp_path, suspended[0], bytes(data)), f"newer vmm \\(image format {FORMAT_VERSION + 1}")


def test_a_foreign_file_is_refused(tmp_path):
    path = tmp_path / "foreign.image"
    path.write_bytes(b"\x7fELF" + bytes(4000))
    refuses(path, "not a VM image")


def test_a_state_of_another_machine_version_is_refused(tmp_path, suspended):
    image = read_image(suspended[0])
    image.state["version"] = 99
    path = tmp_path / "other.image"
    ram = bytearray(image.ram_size)
    image.load_ram(memoryview(ram))
    write_image(path, image.state, memoryview(ram))
    refuses(path, "machine state version 99")


def test_vmm_resume_refuses_with_status_103_and_one_line(tmp_path, suspended):
    path = damaged_copy(tmp_path, suspended[0], suspended[0].read_bytes()[:1000])
    proc = subprocess.run([sys.executable, "-m", "vmm", "resume", str(path)], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 103
    assert proc.stderr.count("\n") == 1 and "truncated" in proc.stderr
    assert proc.stdout == ""
