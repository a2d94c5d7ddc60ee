"""Crash-consistency harness: record device writes, replay them to crash points.

:class:`Recorder` logs every write and sync reaching the physical devices of a pool
(plus the caller's own marks, e.g. "flush acknowledged"). :func:`crash_points` then
rebuilds the device files as they would be after a crash at each chosen point, lets
the caller recover and check them, and undoes whatever recovery wrote before moving
to the next point, so no full copy of the devices is made per point.

Persistence models (the ALICE idea, per device): ``prefix`` - writes reach the device
in issue order, the crash cuts the sequence; ``reorder`` - writes since the device's
last sync reach it or not, independently (a random subset); ``torn`` adds, to either,
a last write cut at a 512-byte boundary.
"""

from __future__ import annotations

import os
import random
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from .physical import GLOBAL_HOOKS, PhysicalDevice


@dataclass
class Event:
    """One thing that reached a device (``write``/``sync``) or a caller's ``mark``."""

    kind: str
    device: str = ""  # file name of the device
    offset: int = 0
    data: bytes = b""
    label: str = ""
    payload: object = None


@dataclass
class Recorder:
    """Logs writes and syncs of every device in the process while active."""

    events: list[Event] = field(default_factory=list)

    def start(self) -> None:
        GLOBAL_HOOKS.write = self._write
        GLOBAL_HOOKS.sync = self._sync

    def stop(self) -> None:
        GLOBAL_HOOKS.write = GLOBAL_HOOKS.sync = None

    def _write(self, dev: PhysicalDevice, offset: int, data: bytes) -> None:
        self.events.append(Event("write", dev.path.name, offset, data))

    def _sync(self, dev: PhysicalDevice) -> None:
        self.events.append(Event("sync", dev.path.name))

    def mark(self, label: str, payload: object = None) -> None:
        """Note a point in the workload (e.g. a flush that returned) and its state."""
        self.events.append(Event("mark", label=label, payload=payload))

    def writes(self) -> list[int]:
        """Indices of write events: the candidate crash points."""
        return [i for i, e in enumerate(self.events) if e.kind == "write"]


@dataclass
class CrashPoint:
    """A crash just before event ``index``; the devices are in ``directory``."""

    index: int
    directory: Path
    marks: list[Event]  # marks before the crash, oldest first
    next_mark: Event | None  # the first mark after the crash point (the op in flight)
    applied: int  # writes applied in this state
    dropped: int  # unsynced writes left out (reorder model)
    torn: bool


def sample_points(rec: Recorder, count: int, seed: int = 0) -> list[int]:
    """Up to ``count`` crash points, always including the first and last."""
    points = rec.writes() + [len(rec.events)]
    if len(points) <= count:
        return points
    rng = random.Random(seed)
    chosen = set(rng.sample(points[1:-1], count - 2)) | {points[0], points[-1]}
    return sorted(chosen)


def crash_points(rec: Recorder, initial: Path, work: Path, points: list[int],
                 model: str = "prefix", torn: bool = False, seed: int = 0) -> Iterator[CrashPoint]:
    """Yield each crash point with the device files rebuilt in ``work``.

    ``initial`` holds the device files as they were when recording started. Whatever
    the caller writes to the files while handling a point is undone afterwards.
    """
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(initial, work)
    # Devices created during the recording start as empty files.
    for e in rec.events:
        if e.kind == "write" and not (work / e.device).exists():
            (work / e.device).touch()
    fds = {p.name: os.open(p, os.O_RDWR) for p in work.iterdir() if p.is_file()}
    rng = random.Random(seed)
    synced_upto = {name: 0 for name in fds}  # events applied for good, per device
    last_sync = {name: 0 for name in fds}
    scanned = 0
    try:
        for k in sorted(points):
            # Durable part: every device's writes up to its last sync before k.
            for i in range(scanned, k):
                e = rec.events[i]
                if e.kind == "sync" and e.device in last_sync:
                    last_sync[e.device] = i
            scanned = max(scanned, k)
            for name, fd in fds.items():
                for i in range(synced_upto[name], last_sync[name]):
                    e = rec.events[i]
                    if e.kind == "write" and e.device == name:
                        os.pwrite(fd, e.data, e.offset)
                synced_upto[name] = max(synced_upto[name], last_sync[name])
            # Volatile part: writes after each device's last sync.
            pending = [i for i in range(min(synced_upto.values(), default=0), k)
                       if rec.events[i].kind == "write" and rec.events[i].device in fds
                       and i >= synced_upto[rec.events[i].device]]
            keep = pending if model == "prefix" else [i for i in pending if rng.random() < 0.5]
            undo: list[tuple[int, int, bytes]] = []

            def put(name: str, offset: int, data: bytes) -> None:
                fd = fds[name]
                undo.append((fd, offset, os.pread(fd, len(data), offset)))
                os.pwrite(fd, data, offset)

            for i in keep:
                e = rec.events[i]
                put(e.device, e.offset, e.data)
            tear = torn and k < len(rec.events) and rec.events[k].kind == "write"
            if tear:
                e = rec.events[k]
                half = e.offset + len(e.data) // 2  # tear at a device sector boundary
                cut = half - half % 512 - e.offset
                if cut > 0:
                    put(e.device, e.offset, e.data[:cut])
            marks = [e for e in rec.events[:k] if e.kind == "mark"]
            following = next((e for e in rec.events[k:] if e.kind == "mark"), None)
            with _undo_writes(work, put):
                yield CrashPoint(k, work, marks, following, len(keep), len(pending) - len(keep), tear)
            for fd, offset, old in reversed(undo):
                os.pwrite(fd, old, offset)
    finally:
        for fd in fds.values():
            os.close(fd)


@contextmanager
def _undo_writes(work: Path, put) -> Iterator[None]:
    """While the caller recovers, log pre-images of its device writes for undo."""
    def write(dev: PhysicalDevice, offset: int, data: bytes) -> None:
        if dev.path.parent == work:
            old = os.pread(dev.fd, len(data), offset)
            put(dev.path.name, offset, old)  # records the pre-image, rewrites it
    saved = GLOBAL_HOOKS.write, GLOBAL_HOOKS.sync
    GLOBAL_HOOKS.write, GLOBAL_HOOKS.sync = write, None
    try:
        yield
    finally:
        GLOBAL_HOOKS.write, GLOBAL_HOOKS.sync = saved
