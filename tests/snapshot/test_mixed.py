"""Suspend and resume under a mixed load: the `mixed` guest runs CPU work under a
100 Hz timer, SCSI writes and reads through the LSI 53C895A and NE2000 broadcast
frames through a UDP loop, interleaved in rounds. Suspended and resumed (each time in
a fresh machine) at many points, it must print the same, exit the same and leave the
same bytes on its disk as an uninterrupted deterministic run."""

from __future__ import annotations

from storage.vdisk import VirtualDisk
from tests.conftest import requires_qemu
from tests.guests.test_scsi import fresh_disk
from tests.helpers import behaviour_lines, free_udp_port, guest
from tests.snapshot.test_suspend_resume import run_with_suspends, uninterrupted
from vmm.machine import MachineConfig, NicConfig

EVERY = 25  # exits between suspends: about 160 suspend points, about 12 s in all


def config(disk, port: int) -> MachineConfig:
    return MachineConfig(
        memory_mib=64, deterministic=True, disks=[str(disk)],
        nic=NicConfig(backend=f"udp:127.0.0.1:{port}:127.0.0.1:{port}"),
    )


def test_mixed_guest_suspended_over_100_times_prints_exits_and_writes_the_same(tmp_path):
    reference_disk = fresh_disk(tmp_path / "reference.img")
    reference_output, reference_status = uninterrupted(guest("mixed"), config(reference_disk, free_udp_port()))
    assert reference_status == 0, reference_output
    assert reference_output.rstrip().endswith("PASS mixed")
    assert sum(line.startswith("round ") for line in reference_output.splitlines()) == 8

    disk = fresh_disk(tmp_path / "disk.img")
    output, status, suspends, points = run_with_suspends(
        tmp_path, guest("mixed"), config(disk, free_udp_port()), every=EVERY, lsi_slice=1, limit=1000,
    )
    assert behaviour_lines(output) == behaviour_lines(reference_output)
    assert status == reference_status
    assert suspends >= 100, suspends
    # One SCRIPTS instruction per slice, so some suspends fall inside disk commands.
    assert sum(mid for _, mid in points) >= 5, "suspend points inside SCRIPTS programs in flight"
    assert sum(irq for irq, _ in points) >= 5, "suspend points with an interrupt pending"

    # The uninterrupted run wrote its raw image in place; the suspended one's writes
    # are spread over the overlays each suspend added.
    expected = reference_disk.read_bytes()
    assert expected[3000 * 512:3064 * 512] != fresh_disk(tmp_path / "fresh.img").read_bytes()[3000 * 512:3064 * 512]
    final = VirtualDisk.open(disk)
    assert len(final.chain()) == suspends + 1  # one overlay per suspend
    assert final.num_blocks * 512 == len(expected)
    assert final.read(0, final.num_blocks) == expected
    final.close()


@requires_qemu
def test_mixed_guest_behaves_as_on_qemu_with_the_same_disk_afterwards(tmp_path):
    import shutil

    from tests.guests.test_scsi import qemu_disk
    from tests.helpers import qemu_nic, run_qemu, run_vmm

    ours_disk = fresh_disk(tmp_path / "ours.img")
    qemu_image = tmp_path / "qemu.img"
    shutil.copy(ours_disk, qemu_image)
    port_ours, port_qemu = free_udp_port(), free_udp_port()
    ours = run_vmm(str(guest("mixed")), "--memory", "64", "--disk", str(ours_disk),
                   "--nic", f"udp:127.0.0.1:{port_ours}:127.0.0.1:{port_ours}", "--max-seconds", "120")
    reference = run_qemu(guest("mixed"), memory_mib=64,
                         extra=qemu_disk(qemu_image) + qemu_nic(port_qemu, port_qemu))
    assert reference.status == 0, reference.output
    assert behaviour_lines(ours.output) == behaviour_lines(reference.output)
    assert ours.status == 0
    assert ours_disk.read_bytes() == qemu_image.read_bytes()
