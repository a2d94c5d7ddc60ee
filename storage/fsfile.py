"""Open files of the file system, and directories of it as a :class:`Directory`.

An :class:`FSFile` holds only an inode number: every I/O looks the extents up again,
so a file moved to another volume keeps working through handles opened before.
It offers the :class:`storage.fileio.BlockFile` interface, so virtual disks can live
in the file system exactly as they live in host directories.
"""

from __future__ import annotations

import time

from .errors import StorageError
from .fs import UNIT, FileSystem, Inode

COPY_STEP = 4 * 1024 * 1024


class FSFile:
    """A file of a mounted :class:`FileSystem`, by inode."""

    def __init__(self, fs: FileSystem, ino: int, path: str, readonly: bool = False) -> None:
        self.fs, self.ino, self.path, self.readonly = fs, ino, path, readonly
        self.name = path.rsplit("/", 1)[-1]

    def _inode(self) -> Inode:
        ino = self.fs.inodes.get(self.ino)
        if ino is None:
            raise StorageError(f"{self.path}: file was removed")
        return ino

    def size(self) -> int:
        return self._inode().size

    def pread(self, size: int, offset: int) -> bytes:
        """Up to ``size`` bytes at ``offset``; holes read as zeros."""
        ino = self._inode()
        n = max(0, min(offset + size, ino.size) - offset)
        if not n:
            return b""
        buf = bytearray(n)
        self.preadinto(memoryview(buf), offset)
        return bytes(buf)

    def preadinto(self, out: memoryview, offset: int) -> int:
        """Fill ``out`` from ``offset`` (up to end of file), straight from the volume;
        holes read as zeros. Returns the number of bytes filled."""
        ino = self._inode()
        end = min(offset + len(out), ino.size)
        if end <= offset:
            return 0
        vol = self.fs.vm.volume(ino.volume)
        pos = offset
        for foff, voff, ln in ino.extents:
            if foff + ln <= pos:
                continue
            if foff >= end:
                break
            if foff > pos:
                out[pos - offset:foff - offset] = bytes(foff - pos)
                pos = foff
            hi = min(end, foff + ln)
            vol.readinto(voff + pos - foff, out[pos - offset:hi - offset])
            pos = hi
        if pos < end:
            out[pos - offset:end - offset] = bytes(end - pos)
        return end - offset

    def pwrite(self, data, offset: int) -> None:
        """Write at ``offset``, allocating whole units where the file has none."""
        if self.readonly:
            raise StorageError(f"{self.path}: opened read-only")
        data = memoryview(data).cast("B")
        if not len(data):
            return
        ino = self._inode()
        end = offset + len(data)
        if offset > ino.size:
            self._zero_tail(ino, offset)
        self._allocate(ino, offset, end)
        vol = self.fs.vm.volume(ino.volume)
        for foff, voff, ln in ino.extents:
            lo, hi = max(offset, foff), min(end, foff + ln)
            if lo < hi:
                vol.write(voff + lo - foff, data[lo - offset:hi - offset])
        if end > ino.size:
            self.fs._log({"op": "size", "ino": ino.ino, "size": end, "mtime": time.time()})

    def _allocate(self, ino: Inode, start: int, end: int) -> None:
        """Give [start, end) backing units; new units get zeros outside the write."""
        u0, u1 = start // UNIT * UNIT, -(-end // UNIT) * UNIT
        gaps, pos = [], u0
        for foff, _, ln in ino.extents:
            if foff + ln <= pos:
                continue
            if foff >= u1:
                break
            if foff > pos:
                gaps.append((pos, foff))
            pos = max(pos, foff + ln)
        if pos < u1:
            gaps.append((pos, u1))
        vol = self.fs.vm.volume(ino.volume)
        alloc = self.fs.alloc[ino.volume]
        # Reserve every gap first: out of space, nothing is allocated at all.
        plan: list[tuple[int, list[tuple[int, int]]]] = []
        try:
            for ga, gb in gaps:
                near = next((v + ln for f, v, ln in ino.extents if f + ln == ga), None)
                plan.append((ga, alloc.allocate(gb - ga, near)))
        except StorageError:
            for _, runs in plan:
                for voff, ln in runs:
                    alloc.give_back(voff, ln)
            raise StorageError(f"{self.path}: no space left on volume {ino.volume}") from None
        for ga, runs in plan:
            fpos = ga
            for voff, ln in runs:
                # Zero what the write will not cover: the space may hold old data.
                if fpos < start:
                    vol.write(voff, bytes(min(start, fpos + ln) - fpos))
                if fpos + ln > end:
                    z = max(end, fpos)
                    vol.write(voff + z - fpos, bytes(fpos + ln - z))
                self.fs._log({"op": "extent", "ino": ino.ino, "file_off": fpos,
                              "vol_off": voff, "length": ln})
                fpos += ln

    def truncate(self, size: int) -> None:
        """Set the size. Shrinking writes no data, so a crash shows the old or new file."""
        ino = self._inode()
        if size > ino.size:
            self._zero_tail(ino, size)
        self.fs._log({"op": "size", "ino": ino.ino, "size": size, "mtime": time.time()})

    def _zero_tail(self, ino: Inode, upto: int) -> None:
        """Before growing past EOF: zero stale bytes after EOF in its (kept) unit."""
        start = ino.size
        end = min(-(-start // UNIT) * UNIT, upto)
        if start % UNIT == 0 or end <= start:
            return
        for foff, voff, ln in ino.extents:
            if foff <= start < foff + ln:
                self.fs.vm.volume(ino.volume).write(voff + start - foff, bytes(end - start))
                return

    def sync(self) -> None:
        self.fs.sync()

    def close(self) -> None:
        pass


def copy_extents(fs: FileSystem, ino: Inode, volume: str, progress=None) -> list[list[int]]:
    """Copy a file's allocated data to new space on ``volume``; returns the new extents."""
    total = sum(ln for _, _, ln in ino.extents)
    src, dst = fs.vm.volume(ino.volume), fs.vm.volume(volume)
    out: list[list[int]] = []
    done = 0
    for foff, voff, ln in ino.extents:
        fpos = foff
        for noff, nln in fs.alloc[volume].allocate(ln, out[-1][1] + out[-1][2] if out else None):
            for k in range(0, nln, COPY_STEP):
                n = min(COPY_STEP, nln - k)
                dst.write(noff + k, src.read(voff + (fpos - foff) + k, n))
                done += n
                if progress is not None:
                    progress(done, total)
            if out and out[-1][0] + out[-1][2] == fpos and out[-1][1] + out[-1][2] == noff:
                out[-1][2] += nln
            else:
                out.append([fpos, noff, nln])
            fpos += nln
    return out


class FSDirectory:
    """One directory of a file system as a :class:`storage.fileio.Directory`."""

    def __init__(self, fs: FileSystem, path: str = "/") -> None:
        self.fs = fs
        self.path = "/" + "/".join(p for p in path.split("/") if p)

    def _full(self, name: str) -> str:
        return (self.path.rstrip("/") + "/" + name) if self.path != "/" else "/" + name

    def open(self, name: str, create: bool = False, readonly: bool = False) -> FSFile:
        full = self._full(name)
        if create:
            if self.fs.exists(full):
                raise StorageError(f"{self.describe(name)}: already exists")
            self.fs.create(full)
        elif not self.fs.exists(full):
            raise StorageError(f"{self.describe(name)}: no such file")
        ino = self.fs.lookup(full)
        return FSFile(self.fs, ino.ino, full, readonly)

    def exists(self, name: str) -> bool:
        return self.fs.exists(self._full(name))

    def remove(self, name: str) -> None:
        self.fs.unlink(self._full(name))

    def rename(self, old: str, new: str) -> None:
        if self.fs.exists(self._full(new)):
            self.fs.unlink(self._full(new))
        self.fs.rename(self._full(old), self._full(new))

    def describe(self, name: str) -> str:
        return f"{self.fs.vm.pool.meta.name}:{self._full(name)}"
