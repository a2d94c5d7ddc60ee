"""The NE2000 and the virtual network, with whole guests: the `net` guest against QEMU,
two of our VMs ping-ponging through our switch (and its pcap), and one of ours talking to
a QEMU VM through the switch's UDP uplink."""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devices.net.pcap import read_pcap
from tests.conftest import requires_qemu
from tests.guests.test_guests import golden
from tests.helpers import (
    REPO, behaviour_lines, free_udp_port, guest, qemu_command, qemu_nic, qemu_status,
    run_qemu, run_vmm,
)

PING_TYPE = 0x88B5


@pytest.fixture
def switch_dir(tmp_path, monkeypatch):
    path = tmp_path / "switches"
    monkeypatch.setenv("VMM_SWITCH_DIR", str(path))
    return path


def vmm_process(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "vmm", "run", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd=REPO,
    )


def finish(proc: subprocess.Popen, timeout: float = 240) -> tuple[str, int]:
    out, _ = proc.communicate(timeout=timeout)
    return out.decode(errors="replace"), proc.returncode


def start_switch(name: str, *extra: str) -> subprocess.Popen:
    from devices.net.switch import socket_paths

    proc = subprocess.Popen([sys.executable, "-m", "vmm", "switch", name, *extra], cwd=REPO)
    data, _ = socket_paths(name)
    deadline = time.monotonic() + 15
    while not data.exists():
        assert time.monotonic() < deadline, "the switch did not start"
        time.sleep(0.02)
    return proc


def test_net_guest_passes_on_our_monitor_through_a_udp_loop(switch_dir):
    port = free_udp_port()
    boot = run_vmm(str(guest("net")), "--nic", f"udp:127.0.0.1:{port}:127.0.0.1:{port}", "--max-seconds", "120")
    assert behaviour_lines(boot.output) == golden("net")
    assert boot.status == 0


@requires_qemu
def test_net_guest_behaves_as_on_qemu():
    port_ours, port_qemu = free_udp_port(), free_udp_port()
    ours = run_vmm(str(guest("net")), "--memory", "64", "--nic", f"udp:127.0.0.1:{port_ours}:127.0.0.1:{port_ours}")
    reference = run_qemu(guest("net"), memory_mib=64, extra=qemu_nic(port_qemu, port_qemu))
    assert reference.status == 0, reference.output
    assert behaviour_lines(ours.output) == behaviour_lines(reference.output)
    assert ours.status == reference.status


def test_two_vms_ping_pong_1000_frames_through_our_switch(switch_dir, tmp_path):
    capture = tmp_path / "lan.pcap"
    switch = start_switch("lan0", "--pcap", str(capture))
    try:
        pong = vmm_process(str(guest("netpong")), "--append", "count=1000", "--nic", "switch:lan0", "--max-seconds", "200")
        time.sleep(0.5)
        ping = vmm_process(str(guest("netping")), "--append", "count=1000", "--nic", "switch:lan0", "--max-seconds", "200")
        ping_out, ping_status = finish(ping)
        pong_out, pong_status = finish(pong)
    finally:
        switch.terminate()
        switch.wait(timeout=10)
    assert "sent 1000, received 1000, errors 0" in ping_out
    assert "echoed 1000, errors 0" in pong_out
    assert (ping_status, pong_status) == (0, 0)
    macs = {line.split(": ")[1] for line in (ping_out + pong_out).splitlines() if line.startswith("mac:")}
    assert len(macs) == 2, "VMs sharing a segment get distinct MACs"

    frames = [frame for _, frame in read_pcap(capture)]
    pings = {seq for kind, seq in map(decode_pingpong, frames) if kind == 1}
    pongs = {seq for kind, seq in map(decode_pingpong, frames) if kind == 2}
    assert pings == pongs == set(range(1000))
    assert {len(f) for f in frames} >= {60, 1514}
    if shutil.which("tshark"):
        listing = subprocess.run(
            ["tshark", "-r", str(capture), "-T", "fields", "-e", "eth.type"],
            capture_output=True, text=True, check=True,
        ).stdout.split()
        assert len(listing) == len(frames)
        assert set(listing) == {"0x88b5"}


def decode_pingpong(frame: bytes) -> tuple[int, int]:
    """(flag, sequence) of a netping/netpong frame (guests/lib/pingpong.h)."""
    assert struct.unpack_from(">H", frame, 12)[0] == PING_TYPE
    assert frame[14:16] == b"NP"
    assert struct.unpack_from(">H", frame, 18)[0] == len(frame)
    return frame[16], struct.unpack_from(">I", frame, 20)[0]


@requires_qemu
def test_our_netping_talks_to_a_qemu_netpong_through_the_switch_uplink(switch_dir):
    switch_port, qemu_port = free_udp_port(), free_udp_port()
    switch = start_switch("lan1", "--uplink", f"udp:127.0.0.1:{switch_port}:127.0.0.1:{qemu_port}")
    try:
        qemu = subprocess.Popen(
            qemu_command(guest("netpong"), "count=300", 64,
                         qemu_nic(qemu_port, switch_port, mac="52:54:00:12:34:99")),
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        )
        time.sleep(0.5)
        ping = vmm_process(str(guest("netping")), "--append", "count=300", "--nic", "switch:lan1", "--max-seconds", "200")
        ping_out, ping_status = finish(ping)
        qemu_out, _ = qemu.communicate(timeout=120)
    finally:
        switch.terminate()
        switch.wait(timeout=10)
    assert "sent 300, received 300, errors 0" in ping_out
    assert ping_status == 0
    assert "echoed 300, errors 0" in qemu_out.decode()
    assert qemu_status(qemu.returncode) == 0
