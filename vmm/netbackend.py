"""Where a VM's NIC frames go: a port on a named switch, or a UDP socket pair.

``--nic switch:NAME`` connects to the switch process NAME (starting it if nobody has:
``vmm switch NAME --idle-exit 10`` in a session of its own, so it outlives nobody for
long); ``--nic udp:LHOST:LPORT:RHOST:RPORT`` sends one frame per datagram, as QEMU's
``-netdev dgram`` does. A receiving thread only queues frames; the run loop hands them
to the NIC between slices, so device state stays on one thread.
"""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import threading
import time
from typing import Callable

from devices.net.pcap import PcapWriter
from devices.net.switch import MAX_FRAME, parse_udp, socket_paths

SWITCH_START_TIMEOUT = 10.0
ON_DEMAND_IDLE_EXIT = 10.0


class NicBackendError(Exception):
    """The backend named on the command line cannot be reached."""


class NicBackend:
    """Frames to and from the outside; subclasses own the socket."""

    def __init__(self, pcap: str | None = None) -> None:
        self.capture = PcapWriter(pcap) if pcap else None
        self._thread: threading.Thread | None = None
        self._closed = False
        # Held while a frame goes from the socket to the machine, so that a suspend
        # (which takes what is queued and what waits in the socket) misses none.
        self.delivery_lock = threading.Lock()

    def start(self, on_frame: Callable[[bytes], None]) -> None:
        self._thread = threading.Thread(target=self._receive_loop, args=(on_frame,), daemon=True, name="vmm-nic")
        self._thread.start()

    def send(self, frame: bytes) -> None:
        if self.capture is not None:
            self.capture.write(frame)
        try:
            self._send(frame)
        except OSError:
            pass  # the wire is gone: the frame is lost, as on a cable pulled out

    def _receive_loop(self, on_frame: Callable[[bytes], None]) -> None:
        while not self._closed:
            try:
                readable, _, _ = select.select([self.sock], [], [], 0.2)
            except (OSError, ValueError):
                return
            if not readable:
                continue
            with self.delivery_lock:
                try:
                    frame = self.sock.recv(MAX_FRAME, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    continue
                except OSError:
                    return
                if not frame:
                    if self._closed or self._end_of_stream():
                        return
                    continue
                if self.capture is not None:
                    self.capture.write(frame)
                on_frame(frame)

    def _end_of_stream(self) -> bool:
        """An empty read: the peer left (a switch port); a datagram socket goes on."""
        return True

    def drain(self) -> list[bytes]:
        """Frames waiting in the socket. Call with ``delivery_lock`` held."""
        frames = []
        while True:
            try:
                frame = self.sock.recv(MAX_FRAME, socket.MSG_DONTWAIT)
            except (BlockingIOError, OSError):
                return frames
            if frame:
                frames.append(frame)

    def close(self) -> None:
        """Stop receiving and let go of the socket (its port is free afterwards)."""
        self._closed = True
        self._wake_receiver()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self._close_socket()
        if self.capture is not None:
            self.capture.close()

    def _wake_receiver(self) -> None:
        """Make the receiving thread's blocking call return."""

    def _send(self, frame: bytes) -> None:
        raise NotImplementedError


    def _close_socket(self) -> None:
        raise NotImplementedError


class SwitchBackend(NicBackend):
    def __init__(self, name: str, pcap: str | None = None) -> None:
        super().__init__(pcap)
        self.name = name
        data_path, _ = socket_paths(name)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        if not self._try_connect(data_path):
            self._start_switch()
            deadline = time.monotonic() + SWITCH_START_TIMEOUT
            while not self._try_connect(data_path):
                if time.monotonic() > deadline:
                    raise NicBackendError(f"switch {name} did not start within {SWITCH_START_TIMEOUT:g} s")
                time.sleep(0.05)

    def _try_connect(self, path) -> bool:
        try:
            self.sock.connect(str(path))
            return True
        except (FileNotFoundError, ConnectionRefusedError):
            return False

    def _start_switch(self) -> None:
        subprocess.Popen(
            [sys.executable, "-m", "vmm", "switch", self.name, "--idle-exit", str(ON_DEMAND_IDLE_EXIT)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, env=dict(os.environ),
        )

    def _send(self, frame: bytes) -> None:
        self.sock.send(frame)

    def _wake_receiver(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # recv returns b"" at once
        except OSError:
            pass


    def _close_socket(self) -> None:
        self.sock.close()


class UdpBackend(NicBackend):
    def __init__(self, spec: str, pcap: str | None = None) -> None:
        super().__init__(pcap)
        try:
            local, self.remote = parse_udp(spec)
        except ValueError as exc:
            raise NicBackendError(str(exc)) from None
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.bind(local)
        except OSError as exc:
            raise NicBackendError(f"cannot bind UDP {local[0]}:{local[1]}: {exc.strerror}") from None

    def _send(self, frame: bytes) -> None:
        self.sock.sendto(frame, self.remote)

    def _end_of_stream(self) -> bool:
        return False

    def _wake_receiver(self) -> None:
        try:  # an empty datagram to ourselves: the loop wakes and sees _closed
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as poke:
                poke.sendto(b"", self.sock.getsockname())
        except OSError:
            pass


    def _close_socket(self) -> None:
        self.sock.close()


QEMU_FIRST_MAC = bytes.fromhex("525400123456")


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port on ``host`` that nothing holds right now (for udp: backends and peers)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def default_mac(spec: str) -> bytes:
    """QEMU's first-NIC MAC; on a switch, the last byte counts the VMs already there,
    so VMs sharing a segment get distinct addresses."""
    if not spec.startswith("switch:"):
        return QEMU_FIRST_MAC
    from devices.net.switch import control

    try:
        ports = control(spec.split(":", 1)[1], {"command": "ports"})["ports"]
    except (RuntimeError, OSError, KeyError, ValueError):
        return QEMU_FIRST_MAC
    vms = sum(1 for p in ports if p["label"] == "vm")
    return QEMU_FIRST_MAC[:5] + bytes([(QEMU_FIRST_MAC[5] + vms - 1) % 256])


def open_backend(spec: str, pcap: str | None = None) -> NicBackend:
    """``switch:NAME`` or ``udp:LHOST:LPORT:RHOST:RPORT``."""
    if spec.startswith("switch:"):
        name = spec.split(":", 1)[1]
        try:
            return SwitchBackend(name, pcap)
        except ValueError as exc:
            raise NicBackendError(str(exc)) from None
    if spec.startswith("udp:"):
        return UdpBackend(spec, pcap)
    raise NicBackendError(f"unknown NIC backend {spec!r}: use switch:NAME or udp:LHOST:LPORT:RHOST:RPORT")
