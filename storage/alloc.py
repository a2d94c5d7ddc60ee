"""Free-space map of one volume for the file system, in allocation units.

It is derived (at mount) from the extents the metadata records, so it can never
disagree with them on disk. Freed space is held back until the journal record that
freed it is durable: otherwise a crash could leave the old owner pointing at new data.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from .errors import StorageError


@dataclass
class Allocator:
    """Sorted, merged free ranges [start, end) of one volume."""

    volume: str
    size: int
    unit: int
    free: list[list[int]] = field(default_factory=list)
    held: list[tuple[int, int]] = field(default_factory=list)  # freed, not yet durable

    @classmethod
    def from_used(cls, volume: str, size: int, unit: int,
                  used: list[tuple[int, int]]) -> "Allocator":
        """Free map of a volume whose ``used`` (offset, length) ranges are taken."""
        end = size - size % unit
        free, pos = [], 0
        for off, ln in sorted(used):
            if off > pos:
                free.append([pos, min(off, end)])
            pos = max(pos, off + ln)
        if pos < end:
            free.append([pos, end])
        return cls(volume, size, unit, [f for f in free if f[1] > f[0]])

    def free_bytes(self) -> int:
        return sum(e - s for s, e in self.free) + sum(ln for _, ln in self.held)

    def allocate(self, length: int, near: int | None = None) -> list[tuple[int, int]]:
        """``length`` bytes (a multiple of the unit) as few (offset, length) runs.

        Tries ``near`` first (the end of the file's last extent) so files stay contiguous.
        """
        if length > sum(e - s for s, e in self.free):
            raise StorageError(f"volume {self.volume}: no space for {length} more bytes")
        out: list[tuple[int, int]] = []
        if near is not None:
            i = bisect.bisect_right(self.free, [near, float("inf")]) - 1
            if i >= 0 and self.free[i][0] <= near < self.free[i][1]:
                out.append(self._take(i, near, min(length, self.free[i][1] - near)))
                length -= out[-1][1]
        # Then the first range that holds the rest whole, else pieces in order.
        while length > 0:
            i = next((k for k, (s, e) in enumerate(self.free) if e - s >= length), 0)
            s, e = self.free[i]
            out.append(self._take(i, s, min(length, e - s)))
            length -= out[-1][1]
        return out

    def _take(self, i: int, start: int, length: int) -> tuple[int, int]:
        s, e = self.free[i]
        pieces = [[s, start], [start + length, e]]
        self.free[i:i + 1] = [p for p in pieces if p[1] > p[0]]
        return start, length

    def hold(self, offset: int, length: int) -> None:
        """Free a range once the current journal batch is durable (see :meth:`release`)."""
        self.held.append((offset, length))

    def release(self) -> None:
        """The journal is durable: held ranges become allocatable."""
        for off, ln in self.held:
            self._give(off, ln)
        self.held.clear()

    def give_back(self, offset: int, length: int) -> None:
        """Return space allocated but never used (nothing durable points at it)."""
        self._give(offset, length)

    def _give(self, offset: int, length: int) -> None:
        i = bisect.bisect_left(self.free, [offset, offset])
        self.free.insert(i, [offset, offset + length])
        # merge with neighbours
        if i + 1 < len(self.free) and self.free[i][1] == self.free[i + 1][0]:
            self.free[i][1] = self.free.pop(i + 1)[1]
        if i > 0 and self.free[i - 1][1] == self.free[i][0]:
            self.free[i - 1][1] = self.free.pop(i)[1]
