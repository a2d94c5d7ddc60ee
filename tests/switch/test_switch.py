"""The virtual switch: learning and flooding, ports over Unix sockets, the UDP uplink,
link up/down, and the pcap capture."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from devices.net.pcap import read_pcap
from devices.net.switch import LearningSwitch, control, socket_paths

A, B, C = bytes.fromhex("525400000001"), bytes.fromhex("525400000002"), bytes.fromhex("525400000003")
BROADCAST = b"\xff" * 6


def frame(dst: bytes, src: bytes, payload: bytes = b"hello") -> bytes:
    return dst + src + b"\x88\xb5" + payload.ljust(46, b"\0")


# -- forwarding decisions -----------------------------------------------------------------

def test_unknown_destination_is_flooded_to_every_other_port():
    switch = LearningSwitch()
    p1, p2, p3 = (switch.add_port("vm").number for _ in range(3))
    assert switch.forward(frame(B, A), p1) == [p2, p3]


def test_a_learned_destination_goes_to_its_port_only():
    switch = LearningSwitch()
    p1, p2, p3 = (switch.add_port("vm").number for _ in range(3))
    switch.forward(frame(A, B), p2)  # learns B on p2
    assert switch.forward(frame(B, A), p1) == [p2]


def test_broadcast_is_always_flooded():
    switch = LearningSwitch()
    p1, p2, p3 = (switch.add_port("vm").number for _ in range(3))
    switch.forward(frame(A, B), p2)
    assert switch.forward(frame(BROADCAST, A), p1) == [p2, p3]


def test_a_port_whose_link_is_down_neither_sends_nor_receives():
    switch = LearningSwitch()
    p1, p2 = (switch.add_port("vm").number for _ in range(2))
    switch.ports[p2].up = False
    assert switch.forward(frame(BROADCAST, A), p1) == []
    assert switch.forward(frame(BROADCAST, B), p2) == []


def test_removing_a_port_forgets_its_addresses():
    switch = LearningSwitch()
    p1, p2, p3 = (switch.add_port("vm").number for _ in range(3))
    switch.forward(frame(A, B), p2)
    switch.remove_port(p2)
    assert switch.forward(frame(B, A), p1) == [p3]


# -- the switch process -----------------------------------------------------------------------

@pytest.fixture
def switch_process(tmp_path, monkeypatch):
    monkeypatch.setenv("VMM_SWITCH_DIR", str(tmp_path / "sw"))
    processes = []

    def start(name: str, *extra: str):
        proc = subprocess.Popen(
            [sys.executable, "-m", "vmm", "switch", name, *extra],
            env=dict(os.environ), stdin=subprocess.DEVNULL,
        )
        processes.append(proc)
        data, _ = socket_paths(name)
        deadline = time.monotonic() + 10
        while not data.exists():
            assert time.monotonic() < deadline, "the switch did not start"
            time.sleep(0.02)
        return proc

    yield start
    for proc in processes:
        proc.terminate()
        proc.wait(timeout=5)


def connect(name: str) -> socket.socket:
    data, _ = socket_paths(name)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sock.connect(str(data))
    sock.settimeout(5)
    return sock


def wait_ports(name: str, count: int) -> list[dict]:
    deadline = time.monotonic() + 5
    while True:
        ports = control(name, {"command": "ports"})["ports"]
        if len(ports) >= count or time.monotonic() > deadline:
            return ports
        time.sleep(0.02)


def test_two_vm_ports_exchange_frames_through_the_switch_process(switch_process, tmp_path):
    switch_process("lan0", "--pcap", str(tmp_path / "all.pcap"))
    one, two = connect("lan0"), connect("lan0")
    wait_ports("lan0", 2)
    one.send(frame(BROADCAST, A, b"first"))
    assert two.recv(2000) == frame(BROADCAST, A, b"first")
    two.send(frame(A, B, b"reply"))
    assert one.recv(2000) == frame(A, B, b"reply")
    one.close(), two.close()
    time.sleep(0.2)
    frames = [f for _, f in read_pcap(tmp_path / "all.pcap")]
    assert frames == [frame(BROADCAST, A, b"first"), frame(A, B, b"reply")]


def test_link_down_on_a_port_cuts_it_off_until_up_again(switch_process):
    switch_process("lan1")
    one, two = connect("lan1"), connect("lan1")
    ports = wait_ports("lan1", 2)
    second = max(p["number"] for p in ports)
    assert control("lan1", {"command": "link", "port": second, "up": False})["up"] is False
    one.send(frame(BROADCAST, A, b"lost"))
    two.settimeout(0.3)
    with pytest.raises(socket.timeout):
        two.recv(2000)
    control("lan1", {"command": "link", "port": second, "up": True})
    one.send(frame(BROADCAST, A, b"found"))
    two.settimeout(5)
    assert two.recv(2000) == frame(BROADCAST, A, b"found")


def test_uplink_carries_frames_as_udp_datagrams(switch_process):
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    peer.settimeout(5)
    peer_port = peer.getsockname()[1]
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    switch_port = probe.getsockname()[1]
    probe.close()
    switch_process("lan2", "--uplink", f"udp:127.0.0.1:{switch_port}:127.0.0.1:{peer_port}")
    vm = connect("lan2")
    wait_ports("lan2", 2)
    vm.send(frame(BROADCAST, A, b"to qemu"))
    data, _ = peer.recvfrom(2000)
    assert data == frame(BROADCAST, A, b"to qemu")
    peer.sendto(frame(A, C, b"from qemu"), ("127.0.0.1", switch_port))
    assert vm.recv(2000) == frame(A, C, b"from qemu")


def test_a_second_switch_with_the_same_name_is_refused(switch_process):
    switch_process("lan3")
    proc = subprocess.run(
        [sys.executable, "-m", "vmm", "switch", "lan3"], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 1
    assert "already running" in proc.stderr


def test_an_on_demand_switch_leaves_once_idle(tmp_path, monkeypatch):
    monkeypatch.setenv("VMM_SWITCH_DIR", str(tmp_path / "sw"))
    proc = subprocess.Popen([sys.executable, "-m", "vmm", "switch", "lan4", "--idle-exit", "0.5"])
    data, _ = socket_paths("lan4")
    deadline = time.monotonic() + 10
    while not data.exists():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    vm = connect("lan4")
    vm.close()
    assert proc.wait(timeout=10) == 0
    assert not data.exists()
