"""The contract between device models and the machine that hosts them.

A device never sees Unicorn or the run loop (../shared/DESIGN.md). It is driven by a bus
through ``read(offset, size)`` / ``write(offset, size, value)`` with offsets relative to
the range it was registered at; it raises interrupts through an :class:`IrqLine`; it
reads virtual time from a :class:`Clock`; it reaches guest RAM through a :class:`Dma`.
Every stateful device can turn its state into plain data and back (``save_state`` /
``load_state``), so suspend/resume is one generic walk over the machine.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, runtime_checkable


class Clock(Protocol):
    """Virtual time, in nanoseconds since the machine was powered on."""

    def now_ns(self) -> int: ...


class ManualClock:
    """A clock that moves only when told to: for tests and for deterministic replays."""

    def __init__(self, start_ns: int = 0) -> None:
        self.ns = start_ns

    def now_ns(self) -> int:
        return self.ns

    def advance(self, delta_ns: int) -> None:
        self.ns += delta_ns


class DmaError(Exception):
    """A device tried to reach guest-physical memory that is not RAM.

    Devices catch it and report what real hardware reports (a bus fault status, a
    CHECK CONDITION); it must never reach the run loop.
    """


class Dma(Protocol):
    """Guest-physical memory as a device sees it."""

    def read(self, gpa: int, length: int) -> bytes: ...

    def write(self, gpa: int, data: bytes) -> None: ...


class IrqLine:
    """One interrupt wire from a device to an interrupt-controller input.

    The device sets the level; the sink is told of every change. Edge-triggered inputs
    see a rising edge as ``set_level(True)`` after ``set_level(False)``.
    """

    def __init__(self, sink: Callable[[bool], None] | None = None) -> None:
        self._sink = sink
        self.level = False

    def connect(self, sink: Callable[[bool], None]) -> None:
        self._sink = sink
        if self.level:
            sink(True)

    def set_level(self, level: bool) -> None:
        level = bool(level)
        if level == self.level:
            return
        self.level = level
        if self._sink is not None:
            self._sink(level)

    def raise_(self) -> None:
        self.set_level(True)

    def lower(self) -> None:
        self.set_level(False)

    def pulse(self) -> None:
        """An edge: for edge-triggered inputs such as the PIT's OUT0 on IRQ 0."""
        self.set_level(False)
        self.set_level(True)
        self.set_level(False)


@runtime_checkable
class Device(Protocol):
    """What a bus calls. Offsets are relative to the registered base."""

    name: str

    def read(self, offset: int, size: int) -> int: ...

    def write(self, offset: int, size: int, value: int) -> None: ...


@runtime_checkable
class TimedDevice(Protocol):
    """A device with work due at a virtual time (a timer expiring, a FIFO draining).

    The run loop ends the guest's slice at the earliest ``next_deadline_ns`` and then
    calls ``advance_to`` with the current virtual time.
    """

    def next_deadline_ns(self) -> int | None: ...

    def advance_to(self, now_ns: int) -> None: ...


@runtime_checkable
class Stateful(Protocol):
    """Saved state is plain data: dicts, lists, ints, bytes, strings, bools."""

    def save_state(self) -> dict[str, Any]: ...

    def load_state(self, state: dict[str, Any]) -> None: ...


def plain_value(value: Any) -> Any:
    """``value`` with every enum member (an int subclass) made a plain int, through dicts
    and lists, so saved state is plain data (dicts, lists, ints, bools, bytes, strings)."""
    if isinstance(value, dict):
        return {key: plain_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain_value(item) for item in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    return value


def plain_state(items: list[tuple[str, Any]]) -> dict[str, Any]:
    """``dict_factory`` for ``dataclasses.asdict``: see :func:`plain_value`."""
    return {key: plain_value(value) for key, value in items}


class ByteRegisters:
    """Bus access for a chip of byte-wide registers on the ISA bus: a wider access is
    split into byte accesses on consecutive ports, low byte first, and bytes past the
    chip's ``port_count`` ports read as zero and are not written."""

    port_count = 1

    def _read_byte(self, offset: int) -> int:
        raise NotImplementedError

    def _write_byte(self, offset: int, value: int) -> None:
        raise NotImplementedError

    def read(self, offset: int, size: int) -> int:
        value = 0
        for i in range(size):
            if offset + i < self.port_count:
                value |= self._read_byte(offset + i) << (8 * i)
        return value

    def write(self, offset: int, size: int, value: int) -> None:
        for i in range(size):
            if offset + i < self.port_count:
                self._write_byte(offset + i, (value >> (8 * i)) & 0xFF)
