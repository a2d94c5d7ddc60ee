"""One request, one reply: JSON lines over a Unix socket.

What the monitor's control sockets speak (a `vmm run --control SOCKET`, a `vmm host`
process): a client connects, sends one JSON object on one line, and reads one JSON
object back. Errors the handler raises on purpose come back as ``{"error": "..."}``.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable

Handler = Callable[[dict[str, Any]], dict[str, Any]]


class JsonLineServer:
    """Answers each connection on its own thread with ``handle(request)``."""

    def __init__(self, path: str | Path, handle: Handler, errors: tuple[type[BaseException], ...] = (),
                 backlog: int = 16) -> None:
        self.path = Path(path)
        self._handle = handle
        self._errors = errors
        if self.path.exists():
            if answers(self.path):
                raise OSError(f"{self.path}: something already listens there")
            self.path.unlink()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(self.path))
        self._listener.listen(backlog)
        self._answering: set[threading.Thread] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name=f"vmm-control {self.path.name}", daemon=True).start()

    def close(self, drain_seconds: float = 5.0) -> None:
        """Stop listening; give answers being written up to ``drain_seconds`` to leave
        (the threads are daemons: a process that exits right after would cut them off,
        and `vmm suspend` would see the connection close without its answer)."""
        self._listener.close()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        with self._lock:
            answering = list(self._answering)
        deadline = time.monotonic() + drain_seconds
        for thread in answering:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._answer, args=(connection,), daemon=True)
            with self._lock:
                self._answering.add(thread)
            thread.start()

    def _answer(self, connection: socket.socket) -> None:
        try:
            self._answer_one(connection)
        finally:
            with self._lock:
                self._answering.discard(threading.current_thread())

    def _answer_one(self, connection: socket.socket) -> None:
        with connection:
            try:
                request = json.loads(connection.makefile().readline() or "{}")
                if not isinstance(request, dict):
                    raise ValueError("a request is a JSON object")
                reply = self._handle(request)
            except self._errors as exc:
                reply = {"error": str(exc)}
            except (ValueError, TypeError, KeyError, OSError) as exc:
                reply = {"error": f"bad request: {exc}"}
            try:
                connection.sendall((json.dumps(reply) + "\n").encode())
            except OSError:
                pass


def request(path: str | Path, message: dict[str, Any], timeout: float | None, nobody: str) -> dict[str, Any]:
    """Send ``message`` to the server at ``path``; ``nobody`` is the error when none listens."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            raise ConnectionError(nobody) from None
        sock.sendall((json.dumps(message) + "\n").encode())
        line = sock.makefile().readline()
    if not line:
        raise ConnectionError("the other side closed the connection without an answer")
    return json.loads(line)


def answers(path: str | Path) -> bool:
    """Does a server listen at ``path``?"""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(str(path))
            return True
        except OSError:
            return False
