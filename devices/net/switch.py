"""The virtual network: a learning Ethernet switch that runs as a process of its own.

VMs in separate ``vmm run`` processes each connect to ``DIR/NAME.sock`` (a Unix
SOCK_SEQPACKET socket: one Ethernet frame per message): each connection is a port. An
uplink port speaks QEMU's UDP datagram netdev (one frame per datagram), so our VMs and a
QEMU VM share a segment. The switch learns source MACs per port, forwards known unicast
to one port and floods the rest, can capture everything it forwards to a pcap file, and
takes control commands on ``DIR/NAME.ctl`` (JSON lines: list ports, set a port's link
up or down, for fault tests). Started on demand by a VM, it leaves once idle.
"""

from __future__ import annotations

import json
import os
import selectors
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from devices.net.pcap import PcapWriter

MAX_FRAME = 65536
BROADCAST = b"\xff" * 6


def switch_dir() -> Path:
    """Where switch sockets live: $VMM_SWITCH_DIR, else /tmp/vmm-switch-UID."""
    path = Path(os.environ.get("VMM_SWITCH_DIR") or f"/tmp/vmm-switch-{os.getuid()}")
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def socket_paths(name: str) -> tuple[Path, Path]:
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"bad switch name {name!r}")
    base = switch_dir()
    return base / f"{name}.sock", base / f"{name}.ctl"


@dataclass
class Port:
    number: int
    label: str
    up: bool = True
    frames_in: int = 0
    frames_out: int = 0


@dataclass
class LearningSwitch:
    """Forwarding decisions only: which ports a frame from ``port`` goes to."""

    ports: dict[int, Port] = field(default_factory=dict)
    table: dict[bytes, int] = field(default_factory=dict)
    _next: int = 1

    def add_port(self, label: str) -> Port:
        port = Port(self._next, label)
        self.ports[port.number] = port
        self._next += 1
        return port

    def remove_port(self, number: int) -> None:
        self.ports.pop(number, None)
        for mac in [m for m, p in self.table.items() if p == number]:
            del self.table[mac]

    def forward(self, frame: bytes, in_port: int) -> list[int]:
        source = self.ports.get(in_port)
        if source is None or not source.up or len(frame) < 14:
            return []
        source.frames_in += 1
        destination, sender = frame[0:6], frame[6:12]
        if not sender[0] & 1:  # learn unicast sources only
            self.table[sender] = in_port
        if not destination[0] & 1 and destination in self.table:
            out = [self.table[destination]]
        else:
            out = list(self.ports)
        targets = [n for n in out if n != in_port and self.ports[n].up]
        for n in targets:
            self.ports[n].frames_out += 1
        return targets


def parse_udp(spec: str) -> tuple[tuple[str, int], tuple[str, int]]:
    """``udp:LHOST:LPORT:RHOST:RPORT`` -> ((lhost, lport), (rhost, rport))."""
    parts = spec.split(":")
    if len(parts) != 5 or parts[0] != "udp":
        raise ValueError(f"expected udp:LHOST:LPORT:RHOST:RPORT, not {spec!r}")
    try:
        return (parts[1], int(parts[2])), (parts[3], int(parts[4]))
    except ValueError:
        raise ValueError(f"bad port number in {spec!r}") from None


class SwitchServer:
    """The switch process: sockets around a :class:`LearningSwitch`."""

    def __init__(
        self,
        name: str,
        uplink: str | None = None,
        pcap: str | None = None,
        idle_exit: float | None = None,
    ) -> None:
        self.name = name
        self.core = LearningSwitch()
        self.selector = selectors.DefaultSelector()
        self.idle_exit = idle_exit
        self.capture = PcapWriter(pcap) if pcap else None
        self._sockets: dict[int, socket.socket] = {}  # port -> connection
        self._uplink: tuple[socket.socket, tuple[str, int]] | None = None
        self._last_port_left = time.monotonic()
        self.data_path, self.control_path = socket_paths(name)
        self._listen()
        if uplink:
            self._open_uplink(uplink)

    def _listen(self) -> None:
        for path in (self.data_path, self.control_path):
            if path.exists():
                probe = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET if path == self.data_path else socket.SOCK_STREAM)
                try:
                    probe.connect(str(path))
                    raise RuntimeError(f"switch {self.name} is already running ({path})")
                except (ConnectionRefusedError, FileNotFoundError):
                    path.unlink()
                finally:
                    probe.close()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.listener.bind(str(self.data_path))
        self.listener.listen(64)
        self.control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.control.bind(str(self.control_path))
        self.control.listen(8)
        self.selector.register(self.listener, selectors.EVENT_READ, ("accept", None))
        self.selector.register(self.control, selectors.EVENT_READ, ("control", None))

    def _open_uplink(self, spec: str) -> None:
        local, remote = parse_udp(spec)
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(local)
        port = self.core.add_port(f"uplink {spec}")
        self._uplink = (udp, remote)
        self._sockets[port.number] = udp
        self.selector.register(udp, selectors.EVENT_READ, ("uplink", port.number))

    # -- the loop --------------------------------------------------------------------------
    def serve_forever(self) -> None:
        try:
            while not self._idle_for_long():
                for key, _ in self.selector.select(timeout=0.2):
                    kind, number = key.data
                    if kind == "accept":
                        self._accept()
                    elif kind == "control":
                        self._serve_control()
                    elif kind == "uplink":
                        self._receive_uplink(number)
                    else:
                        self._receive(number, key.fileobj)
        finally:
            self.close()

    def _idle_for_long(self) -> bool:
        if self.idle_exit is None:
            return False
        vm_ports = len(self.core.ports) - (1 if self._uplink else 0)
        if vm_ports > 0:
            self._last_port_left = time.monotonic()
            return False
        return time.monotonic() - self._last_port_left > self.idle_exit

    def _accept(self) -> None:
        connection, _ = self.listener.accept()
        port = self.core.add_port("vm")
        self._sockets[port.number] = connection
        self.selector.register(connection, selectors.EVENT_READ, ("port", port.number))

    def _receive(self, number: int, connection: socket.socket) -> None:
        try:
            frame = connection.recv(MAX_FRAME)
        except OSError:
            frame = b""
        if not frame:
            self.selector.unregister(connection)
            connection.close()
            self._sockets.pop(number, None)
            self.core.remove_port(number)
            self._last_port_left = time.monotonic()
            return
        self._switch(frame, number)

    def _receive_uplink(self, number: int) -> None:
        assert self._uplink is not None
        frame, _ = self._uplink[0].recvfrom(MAX_FRAME)
        self._switch(frame, number)

    def _switch(self, frame: bytes, in_port: int) -> None:
        targets = self.core.forward(frame, in_port)
        if self.capture is not None and targets:
            self.capture.write(frame)
        for number in targets:
            self._send(number, frame)

    def _send(self, number: int, frame: bytes) -> None:
        sock = self._sockets.get(number)
        if sock is None:
            return
        try:
            if self._uplink is not None and sock is self._uplink[0]:
                sock.sendto(frame, self._uplink[1])
            else:
                sock.send(frame, socket.MSG_DONTWAIT)
        except (BlockingIOError, OSError):
            pass  # a full or vanished port loses the frame, as a congested switch would

    # -- control -----------------------------------------------------------------------------
    def _serve_control(self) -> None:
        connection, _ = self.control.accept()
        with connection:
            connection.settimeout(2)
            try:
                request = json.loads(connection.makefile().readline() or "{}")
                reply = self.handle_command(request)
            except (ValueError, OSError) as exc:
                reply = {"error": str(exc)}
            try:
                connection.sendall((json.dumps(reply) + "\n").encode())
            except OSError:
                pass

    def handle_command(self, request: dict) -> dict:
        command = request.get("command")
        if command == "ports":
            return {"ports": [vars(p) for p in self.core.ports.values()]}
        if command == "link":
            port = self.core.ports.get(int(request["port"]))
            if port is None:
                return {"error": f"no port {request['port']}"}
            port.up = bool(request["up"])
            return {"port": port.number, "up": port.up}
        return {"error": f"unknown command {command!r}"}

    def close(self) -> None:
        for sock in list(self._sockets.values()):
            sock.close()
        self.listener.close()
        self.control.close()
        for path in (self.data_path, self.control_path):
            try:
                path.unlink()
            except FileNotFoundError:
                pass
        if self.capture is not None:
            self.capture.close()


def control(name: str, request: dict, timeout: float = 5) -> dict:
    """Send one control command to a running switch."""
    _, path = socket_paths(name)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            raise RuntimeError(f"switch {name} is not running") from None
        sock.sendall((json.dumps(request) + "\n").encode())
        return json.loads(sock.makefile().readline())
