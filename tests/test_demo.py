"""`make run`'s demo: a guest reads and writes a virtual disk that lives in the file
system of a RAID 5 volume, and the volume stack holds what it wrote."""

from __future__ import annotations

import subprocess
import sys

from storage.pooldisk import open_pool_disk
from tests.guests.test_scsi import expected_final_image
from tests.helpers import REPO, guest


def test_demo_builds_a_raid5_pool_and_the_guest_passes_on_it(tmp_path):
    guest("scsi")
    pool = tmp_path / "pool"
    proc = subprocess.run(
        [sys.executable, "-m", "vmm.demo", "--pool", str(pool)],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "PASS scsi"
    assert "RAID 5" in proc.stderr
    disk = open_pool_disk(pool, "/demo.dsk")
    assert disk.read(0, disk.num_blocks) == expected_final_image()
    disk.close()
    fsck = subprocess.run(
        [sys.executable, "-m", "vmm", "fs", "fsck", "--pool", str(pool)],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )
    assert fsck.returncode == 0 and fsck.stdout.strip().endswith("clean")


def test_a_pool_disk_with_redo_keeps_the_pool_disk_unchanged_until_commit(tmp_path):
    pool = tmp_path / "pool"
    first = subprocess.run([sys.executable, "-m", "vmm.demo", "--pool", str(pool)],
                           capture_output=True, text=True, cwd=REPO, timeout=300)
    assert first.returncode == 0
    before = open_pool_disk(pool, "/demo.dsk")
    content = before.read(0, before.num_blocks)
    before.close()
    run = subprocess.run(
        [sys.executable, "-m", "vmm", "run", str(guest("scsi")), "--memory", "64",
         "--disk", "pool:/demo", "--pool", str(pool), "--redo"],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    disk = open_pool_disk(pool, "/demo.dsk")
    assert disk.chain() == ["demo.dsk", "demo.redo"]
    # The guest's writes are in the overlay (the guest may write what the first run
    # wrote, so the content alone would not show where they went).
    assert disk.layers[-1].allocated().size > 0
    disk.revert()
    assert disk.read(0, disk.num_blocks) == content
    disk.close()
