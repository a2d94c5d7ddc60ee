"""Asking a running ``vmm run`` to suspend: its control socket, and SIGUSR1.

``vmm run ... --control SOCKET`` listens on a Unix socket for JSON lines;
``{"command": "suspend", "image": PATH}`` suspends the VM to PATH at the next slice
boundary and answers ``{"suspended": PATH, "bytes": N}`` once the image is written (the
``vmm run`` process then exits with status 105). ``vmm suspend SOCKET IMAGE`` is the
client. SIGUSR1 does the same with the image named by ``--image`` (caught in C:
vmm/native/fastpath.c, and taken by the run loop between slices).
"""

from __future__ import annotations

import os
import threading
from typing import Callable

from vmm.jsonsocket import JsonLineServer
from vmm.jsonsocket import request as json_request

SUSPEND_TIMEOUT = 120.0


class ControlServer:
    """Answers suspend requests for one run loop (JSON lines: vmm/jsonsocket.py)."""

    def __init__(self, path: str, request_suspend: Callable[[str], None]) -> None:
        self._request_suspend = request_suspend
        self._done = threading.Event()
        self.result: dict | None = None
        self._server = JsonLineServer(path, self._handle, backlog=4)

    def finished(self, result: dict) -> None:
        """The run ended (suspended or not): answer whoever waits."""
        self.result = result
        self._done.set()

    def close(self) -> None:
        self._server.close()

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
    try:
        return json_request(socket_path, {"command": "suspend", "image": os.path.abspath(image)},
                            timeout, nobody=f"no VM listens on {socket_path}")
    except ConnectionError as exc:
        raise RuntimeError(str(exc)) from None
