"""QEMU's isa-debug-exit at port 0xF4 and the POST-code port 0x80.

A write of any width to the exit port ends the VM; the monitor exits with the value
written (see "The machine and the `vmm run` contract" in ../shared/DESIGN.md). Port 0x80
is where PC software writes progress codes and I/O delays: a sink that remembers the
last byte.
"""

from __future__ import annotations

from typing import Any, Callable


class DebugExit:
    name = "debug-exit"

    def __init__(self, on_exit: Callable[[int], None]) -> None:
        self._on_exit = on_exit

    def read(self, offset: int, size: int) -> int:
        return (1 << (8 * size)) - 1

    def write(self, offset: int, size: int, value: int) -> None:
        self._on_exit(value & ((1 << (8 * size)) - 1))


class PostCodePort:
    name = "port80"

    def __init__(self) -> None:
        self.last = 0

    def read(self, offset: int, size: int) -> int:
        return self.last

    def write(self, offset: int, size: int, value: int) -> None:
        self.last = value & 0xFF

    def write_string(self, offset: int, size: int, data: bytes) -> None:
        """A whole ``rep outs`` in one call (the monitor's one-exit string I/O)."""
        if data:
            self.last = data[-size]

    def read_string(self, offset: int, size: int, count: int) -> list[int]:
        return [self.last] * count

    def save_state(self) -> dict[str, Any]:
        return {"last": self.last}

    def load_state(self, state: dict[str, Any]) -> None:
        self.last = int(state["last"])
