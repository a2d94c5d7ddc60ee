"""Asking a running ``vmm run`` to suspend: its control socket, and SIGUSR1.

``vmm run ... --control SOCKET`` listens on a Unix socket for JSON lines;
``{"command": "suspend", "image": PATH}`` suspends the VM to PATH at the next slice
boundary and answers ``{"suspended": PATH, "bytes": N}`` once the image is written (the
``vmm run`` process then exits with status 105). ``vmm suspend SOCKET IMAGE`` is the
client. SIGUSR1 does the same with the image named by ``--image`` (caught in C:
vmm/native/fastpath.c, and taken by the run loop between slices).
"""

from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path
from typing import Callable

SUSPEND_TIMEOUT = 120.0


class ControlServer:
    """A thread answering control requests for one run loop."""

    def __init__(self, path: str, request_suspend: Callable[[str], None]) -> None:
        self.path = Path(path)
        self._request_suspend = request_suspend
        self._done = threading.Event()
        self.result: dict | None = None
        if self.path.exists():
            self.path.unlink()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(self.path))
        self._listener.listen(4)
        threading.Thread(target=self._serve, name="vmm-control", daemon=True).start()

    def finished(self, result: dict) -> None:
        """The run ended (suspended or not): answer whoever waits."""
        self.result = result
        self._done.set()

    def close(self) -> None:
        self._listener.close()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            with connection:
                try:
                    request = json.loads(connection.makefile().readline() or "{}")
                    reply = self._handle(request)
                except (ValueError, OSError) as exc:
                    reply = {"error": str(exc)}
                try:
                    connection.sendall((json.dumps(reply) + "\n").encode())
                except OSError:
                    pass

    def _handle(self, request: dict) -> dict:
        if request.get("command") != "suspend":
            return {"error": f"unknown command {request.get('command')!r}"}
        image = request.get("image")
        if not image:
            return {"error": "suspend needs an image path"}
        self._request_suspend(os.path.abspath(image))
        if not self._done.wait(SUSPEND_TIMEOUT):
            return {"error": "the VM did not reach a point to suspend at"}
        return self.result or {"error": "the VM ended"}


def request_suspend(socket_path: str, image: str, timeout: float = SUSPEND_TIMEOUT) -> dict:
    """Client side of ``vmm suspend SOCKET IMAGE``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(socket_path)
        except (FileNotFoundError, ConnectionRefusedError):
            raise RuntimeError(f"no VM listens on {socket_path}") from None
        sock.sendall((json.dumps({"command": "suspend", "image": os.path.abspath(image)}) + "\n").encode())
        line = sock.makefile().readline()
    if not line:
        raise RuntimeError("the VM closed the control socket without an answer")
    return json.loads(line)
