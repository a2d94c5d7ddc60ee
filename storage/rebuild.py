"""Rebuild of one volume member onto a replacement device, resumable after a crash.

The member's ``rebuilt`` watermark is saved in the pool metadata after every step, so
a rebuild interrupted by a crash resumes where it stopped; reads use the member only
below the watermark, writes always go to it (see :class:`storage.raid.Members`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from .volume import Volume


@dataclass
class Rebuild:
    """Step-wise rebuild: call :meth:`step` between other I/O, or :meth:`run` to finish.

    ``rate`` (bytes/second, None = unlimited) may be changed while it runs, e.g. from
    the progress callback.
    """

    volume: Volume
    index: int
    step: int = 4 * 1024 * 1024
    rate: float | None = None

    @property
    def record(self):
        return self.volume.rec.members[self.index]

    @property
    def total(self) -> int:
        return self.record.length

    @property
    def done(self) -> int:
        return self.record.rebuilt

    def advance(self) -> bool:
        """Rebuild the next ``step`` bytes; False once the member is complete."""
        rec = self.record
        if rec.state != "rebuilding":
            return False
        start = rec.rebuilt
        n = min(self.step, rec.length - start)
        if n > 0:
            self.volume.drain()  # held-back writes land before their stripe is rebuilt
            data = self.volume.layout.rebuild_source(self.index, start, n)
            self.volume.members.write(self.index, start, data)
            rec.rebuilt = start + n
        if rec.rebuilt >= rec.length:
            self.volume.members.sync()
            rec.state, rec.rebuilt = "ok", 0
            if self.volume.bitmap is not None:  # the new member's own bitmap copy
                self.volume._store_bitmap(sync=True)
            self.volume.manager.pool.save()
            return False
        # The watermark says which part of the member reads trust (here and after a
        # restart): the data below it must be durable before it moves.
        self.volume.members.devices[self.index].sync()
        self.volume.manager.pool.save()
        return True

    def run(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Rebuild to the end, calling ``progress(done, total)`` after every step."""
        begin = self.done
        t0 = time.perf_counter()
        total = self.total
        while self.advance():
            if progress is not None:
                progress(self.done, total)
            if self.rate:
                ahead = (self.done - begin) / self.rate - (time.perf_counter() - t0)
                if ahead > 0:
                    time.sleep(ahead)
        if progress is not None:
            progress(total, total)
        return total - begin
