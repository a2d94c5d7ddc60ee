"""Debian's own 32-bit kernel, unmodified, on our monitor: its sym53c8xx driver on our
LSI 53C895A with the disk in a RAID 5 pool, its ne driver on our NE2000 on a switch
whose uplink reaches a peer answering ARP and ping. The same kernel and initramfs on
QEMU give the same verdict lines, and a VM suspended in the middle of its disk I/O
resumes to the same verdict.

The packages come from Debian's archive into .cache/debian (``.ci/run`` fetches them);
without them these tests skip and say how to fetch them.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from guests.linux import testvm
from guests.linux.modules import ModuleTree
from guests.linux.peer import Peer
from storage.pooldisk import open_pool_disk
from tests.conftest import requires_qemu
from tests.helpers import QEMU, REPO, free_udp_port, qemu_status

LAYOUT = testvm.DiskLayout()
DISK = testvm.DISK_PATH
CHECKS = [  # after the first two lines
    f"verdict: disk sda has {LAYOUT.sectors} sectors: ok",
    f"verdict: first {LAYOUT.known_bytes} bytes read back as written by the host: ok",
    f"verdict: 64 KiB written at byte {LAYOUT.write_at} read back: ok",
    "verdict: eth0 present: ok",
    f"verdict: ping {testvm.PEER_IP}: 3 of 3 echo replies: ok",
    "verdict: eth0 received frames: ok",
    "verdict: PASS",
]
BOOT_SECONDS = 600  # our monitor boots to the verdict in about 35 s; a loaded CI machine is slower


@pytest.fixture(scope="module")
def expected_verdict(linux) -> list[str]:
    """Every line /init prints, on either machine with either NIC."""
    release = "-".join(linux.kernel_release.split("-")[:2])  # 6.1.0-50
    modules = ModuleTree(linux.modules_dir).load_order(testvm.WANTED_MODULES)
    loaded = len(modules) - 1  # one of the two NIC drivers, for the card the machine has
    return [f"verdict: init of Linux {release}", f"verdict: modules loaded: {loaded}", *CHECKS]


# What each NIC driver says when it finds our card (ne.c, ne2k-pci.c).
FOUND = {"isa": "eth0: NE2000 found at 0x300, using IRQ 9", "pci": "eth0: RealTek RTL-8029"}


@pytest.fixture(scope="module")
def initramfs(linux, tmp_path_factory):
    return testvm.initramfs(linux, tmp_path_factory.mktemp("initramfs"))


@pytest.fixture
def pool(tmp_path) -> Path:
    """Four host files, a RAID 5 volume, a file system, and the test disk in it."""
    testvm.make_pool(tmp_path / "pool", LAYOUT)
    return tmp_path / "pool"


@pytest.fixture
def network(tmp_path, monkeypatch):
    """A switch whose UDP uplink reaches the peer; yields (switch name, peer)."""
    monkeypatch.setenv("VMM_SWITCH_DIR", str(tmp_path / "switch"))
    with testvm.switch_with_peer("lan0") as peer:
        yield "lan0", peer


def disk_contents(pool: Path, offset: int, length: int) -> bytes:
    disk = open_pool_disk(pool, DISK, readonly=True)
    try:
        return disk.read(offset // 512, length // 512)
    finally:
        disk.close()


def kernel_banner(output: str) -> str:
    return next((line for line in output.splitlines() if "Linux version" in line), "")


@pytest.mark.parametrize("nic", ["isa", "pci"])
def test_debian_kernel_drives_our_scsi_disk_on_raid5_and_our_nic(linux, initramfs, pool, network, expected_verdict,
                                                                 nic):
    switch, peer = network
    run = subprocess.run(testvm.vmm_command(linux, initramfs, LAYOUT, pool, switch, BOOT_SECONDS, nic=nic),
                         capture_output=True, text=True, cwd=REPO, stdin=subprocess.DEVNULL,
                         timeout=BOOT_SECONDS + 60)
    # The boot log is the kernel's own: the package's version is in its banner.
    assert linux.kernel_package.version in kernel_banner(run.stdout), run.stdout[-3000:]
    assert "sym0: <895a>" in run.stdout and FOUND[nic] in run.stdout, run.stdout[-3000:]
    assert testvm.verdict_lines(run.stdout) == expected_verdict, run.stdout[-3000:] + run.stderr
    assert run.returncode == 0, run.stderr
    assert peer.stats.echo_replies >= 3 and peer.stats.arp_replies >= 1
    # Every reply answered a frame of the guest's; anything else it sent got none.
    assert peer.stats.frames >= peer.stats.echo_replies + peer.stats.arp_replies
    # What the guest wrote is in the volume stack; what it only read is unchanged.
    assert disk_contents(pool, LAYOUT.write_at, testvm.WRITTEN_BYTES) == testvm.guest_write()
    assert disk_contents(pool, 0, LAYOUT.known_bytes) == testvm.known_contents(LAYOUT.known_bytes)


def test_linux_suspended_in_the_middle_of_its_disk_reads_resumes_to_the_same_verdict(
        linux, initramfs, pool, network, tmp_path, expected_verdict):
    switch, _ = network
    image = tmp_path / "linux.image"
    # Four rounds of reading the 4 MiB from the disk keep I/O in flight for seconds.
    command = testvm.vmm_command(linux, initramfs, LAYOUT, pool, switch, BOOT_SECONDS, "--image", str(image),
                                 append_extra="vmm.read_rounds=4")
    stderr = tmp_path / "stderr"
    with stderr.open("w") as err_file:
        vm = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err_file, stdin=subprocess.DEVNULL,
                              cwd=REPO, text=True)
        before = []
        for line in vm.stdout:  # to the end: the lines after the signal belong to the first part
            before.append(line)
            if line.startswith("verdict: disk sda has"):
                # /init now reads the first 4 MiB through sd and sym53c8xx, four times
                # over; the suspend lands within milliseconds.
                vm.send_signal(signal.SIGUSR1)
        vm.wait(timeout=BOOT_SECONDS)
    first_part = "".join(before)
    assert vm.returncode == 105, first_part[-3000:] + stderr.read_text()
    # Suspended before /init could finish reading: its verdict on the read comes after.
    assert "read back as written by the host" not in first_part
    resumed = subprocess.run([sys.executable, "-m", "vmm", "resume", str(image), "--max-seconds", str(BOOT_SECONDS)],
                             capture_output=True, text=True, cwd=REPO, timeout=BOOT_SECONDS + 60)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr
    assert testvm.verdict_lines(first_part + resumed.stdout) == expected_verdict
    assert disk_contents(pool, LAYOUT.write_at, testvm.WRITTEN_BYTES) == testvm.guest_write()


@requires_qemu
@pytest.mark.parametrize("nic", ["isa", "pci"])
def test_same_kernel_and_initramfs_give_the_same_verdict_on_qemu(linux, initramfs, tmp_path, expected_verdict, nic):
    """QEMU with a raw copy of the disk and a peer on its datagram netdev prints exactly
    the lines our monitor prints in the test above (both must equal expected_verdict)."""
    disk = tmp_path / "qemu-disk.img"
    disk.write_bytes(testvm.disk_image(LAYOUT))
    vm_port, peer_port = free_udp_port(), free_udp_port()
    peer = Peer(("127.0.0.1", peer_port), ("127.0.0.1", vm_port)).start()
    try:
        reference = subprocess.run(
            testvm.qemu_command(QEMU, linux, initramfs, LAYOUT, disk, vm_port, peer_port, nic=nic),
            capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600)
    finally:
        peer.close()
    assert FOUND[nic] in reference.stdout, reference.stdout[-3000:]
    assert testvm.verdict_lines(reference.stdout) == expected_verdict, reference.stdout[-3000:]
    assert qemu_status(reference.returncode) == 0
    written = disk.read_bytes()[LAYOUT.write_at:LAYOUT.write_at + testvm.WRITTEN_BYTES]
    assert written == testvm.guest_write()
