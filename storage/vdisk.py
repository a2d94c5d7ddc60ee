"""Virtual disks: a raw base file ``NAME.dsk`` plus a chain of redo overlays.

The base holds the blocks in order (any raw image, e.g. QEMU's, works in place). After
``snapshot()`` writes land in the top overlay, ``NAME.redo`` then ``NAME-1.redo``,
``NAME-2.redo``...; reads fall through the chain to the base. ``commit()`` merges the
top overlay into its parent, ``revert()`` throws it away. The SCSI disk uses this API.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import BlockRangeError, FormatError, StorageError
from .fileio import BlockFile, Directory, HostDirectory
from .redo import DEFAULT_CLUSTER, RedoFile

Progress = Callable[[int, int], None]
COPY_STEP = 4 * 1024 * 1024
SCRATCH_MAX = 16 * 1024 * 1024  # largest read buffer a disk keeps between reads


def overlay_name(stem: str, index: int) -> str:
    """Name of the ``index``-th overlay: NAME.redo, NAME-1.redo, NAME-2.redo, ..."""
    return f"{stem}.redo" if index == 0 else f"{stem}-{index}.redo"


class VirtualDisk:
    """A block device of ``num_blocks`` blocks of ``block_size`` bytes."""

    def __init__(self, directory: Directory, base_name: str, base: BlockFile,
                 block_size: int, layers: list[RedoFile], readonly: bool = False) -> None:
        self.directory = directory
        self.base_name = base_name
        self.stem = base_name.rsplit(".", 1)[0] if "." in base_name else base_name
        self.base = base
        self.block_size = block_size
        self.layers = layers
        self.readonly = readonly
        self.num_blocks = base.size() // block_size
        self.size = self.num_blocks * block_size
        self.closed = False
        self._scratch = bytearray(0)  # read buffer, grown to the largest read so far
        self.on_close: list[Callable[[], None]] = []  # e.g. unmount what holds the files

    # -- creation and opening -------------------------------------------------------------

    @classmethod
    def create(cls, path: str | os.PathLike, num_blocks: int, block_size: int = 512) -> "VirtualDisk":
        """Create ``path`` (normally NAME.dsk) as an all-zero disk, sparse on the host."""
        path = Path(path)
        return cls.create_in(HostDirectory(path.parent), path.name, num_blocks, block_size)

    @classmethod
    def create_in(cls, directory: Directory, name: str, num_blocks: int,
                  block_size: int = 512) -> "VirtualDisk":
        """Create a disk named ``name`` in any :class:`Directory`."""
        _check_block_size(block_size)
        if num_blocks <= 0:
            raise StorageError(f"disk size must be at least one block, not {num_blocks}")
        f = directory.open(name, create=True)
        f.truncate(num_blocks * block_size)
        f.sync()
        return cls(directory, name, f, block_size, [])

    @classmethod
    def open(cls, path: str | os.PathLike, block_size: int | None = None,
             readonly: bool = False) -> "VirtualDisk":
        """Open a disk by its base file (NAME.dsk, or a raw image used in place)."""
        path = Path(path)
        return cls.open_in(HostDirectory(path.parent), path.name, block_size, readonly)

    @classmethod
    def open_in(cls, directory: Directory, base_name: str, block_size: int | None = None,
                readonly: bool = False) -> "VirtualDisk":
        """Open a disk and its overlay chain in any :class:`Directory`.

        The block size comes from the overlays when there are any, else from
        ``block_size`` (default 512). A chain whose links do not match is refused.
        """
        where = directory.describe(base_name)
        if not directory.exists(base_name):
            raise StorageError(f"{where}: no such disk")
        stem = base_name.rsplit(".", 1)[0] if "." in base_name else base_name
        layers: list[RedoFile] = []
        base = None
        try:
            parent = base_name
            while directory.exists(overlay_name(stem, len(layers))):
                layer = RedoFile.open(directory, overlay_name(stem, len(layers)), readonly)
                layers.append(layer)
                if layer.parent != parent:
                    raise FormatError(f"{layer.where}: parent is {layer.parent!r}, expected "
                                      f"{parent!r}: the chain is broken")
                parent = layer.name
            bs = layers[0].hdr.block_size if layers else (block_size or 512)
            _check_block_size(bs)
            if block_size is not None and block_size != bs:
                raise StorageError(f"{where}: block size {block_size} requested, overlays "
                                   f"use {bs}")
            base = directory.open(base_name, readonly=readonly or bool(layers))
            size = base.size()
            if size % bs:
                raise FormatError(f"{where}: size {size} is not a multiple of the block size {bs}")
            for layer in layers:
                if (layer.hdr.block_size, layer.hdr.num_blocks) != (bs, size // bs):
                    raise FormatError(f"{layer.where}: made for {layer.hdr.num_blocks} blocks of "
                                      f"{layer.hdr.block_size} bytes, base has {size // bs} of {bs}")
                if layer.cs != layers[0].cs:
                    raise FormatError(f"{layer.where}: cluster size differs from the chain's")
        except BaseException:
            for layer in layers:
                layer.close()
            if base is not None:
                base.close()
            raise
        return cls(directory, base_name, base, bs, layers, readonly)

    # -- block I/O ------------------------------------------------------------------------

    def _range(self, lba: int, count: int) -> tuple[int, int]:
        if lba < 0 or count < 0 or lba + count > self.num_blocks:
            raise BlockRangeError(f"{self.base_name}: blocks {lba}+{count} outside the disk "
                                  f"({self.num_blocks} blocks)")
        return lba * self.block_size, (lba + count) * self.block_size

    def read(self, lba: int, count: int) -> bytes:
        """Read ``count`` blocks from ``lba``; damaged data raises IntegrityError."""
        start, end = self._range(lba, count)
        if start == end:
            return b""
        if not self.layers:
            return self._read_base(start, end)
        n = end - start
        if len(self._scratch) < n:
            buf = bytearray(n)
            if n <= SCRATCH_MAX:  # kept for the next reads; huge one-off reads are not
                self._scratch = buf
        else:
            buf = self._scratch
        view = memoryview(buf)[:n]
        self._read_into(start, end, view)
        # One copy out of a reused buffer: allocating a fresh one per read costs as much
        # (it is zero-filled) and, at 1 MiB, makes malloc map and unmap it every time.
        return bytes(view)

    def _read_into(self, start: int, end: int, out: memoryview) -> None:
        """Fill ``out`` with disk bytes [start, end) through the chain: each run of
        clusters owned by one layer is read straight into its place in ``out``."""
        cs = self.layers[0].cs
        c0, c1 = start // cs, -(-end // cs)
        if len(self.layers) == 1:
            owner = np.where(self.layers[0].present(c0, c1), 0, -1)
        else:
            owner = np.full(c1 - c0, -1, dtype=np.int64)
            for i, layer in enumerate(self.layers):
                owner[layer.present(c0, c1)] = i
        edges = np.flatnonzero(np.diff(owner)) + 1
        bounds = [0, *edges.tolist(), c1 - c0]
        for a, b in zip(bounds, bounds[1:]):
            lo, hi = max(start, (c0 + a) * cs), min(end, (c0 + b) * cs)
            who = int(owner[a])
            part = out[lo - start:hi - start]
            if who < 0:
                self._read_base_into(lo, hi, part)
            elif lo == (c0 + a) * cs and hi == (c0 + b) * cs:  # whole clusters: in place
                self.layers[who].read_clusters_into(c0 + a, c0 + b, part)
            else:  # a partial cluster at either end: verify whole clusters, keep a slice
                raw = self.layers[who].read_clusters(c0 + a, c0 + b)
                part[:] = raw[lo - (c0 + a) * cs:hi - (c0 + a) * cs]

    def _read_base(self, start: int, end: int) -> bytes:
        data = self.base.pread(end - start, start)
        return data if len(data) == end - start else data.ljust(end - start, b"\0")

    def _read_base_into(self, start: int, end: int, out: memoryview) -> None:
        into = getattr(self.base, "preadinto", None)
        if into is None:
            out[:] = self._read_base(start, end)
            return
        got = into(out, start)
        if got < end - start:  # past the end of a short base file: zeros
            out[got:] = bytes(end - start - got)

    def _read_below(self, top: int, first: int, last: int) -> bytes:
        """Clusters [first, last) as seen by layers below index ``top``."""
        cs = self.layers[0].cs
        out = bytearray()
        for c in range(first, last):
            for i in range(top - 1, -1, -1):
                if self.layers[i].present(c, c + 1)[0]:
                    out += self.layers[i].read_clusters(c, c + 1)
                    break
            else:
                out += self._read_base(c * cs, min((c + 1) * cs, self.size)).ljust(cs, b"\0")
        return bytes(out)

    def write(self, lba: int, data: bytes | bytearray | memoryview) -> None:
        """Write whole blocks at ``lba``; durable after :meth:`flush`."""
        if self.readonly:
            raise StorageError(f"{self.base_name}: opened read-only")
        data = memoryview(data).cast("B")
        if len(data) % self.block_size:
            raise BlockRangeError(f"{self.base_name}: write of {len(data)} bytes is not a "
                                  f"whole number of {self.block_size}-byte blocks")
        start, end = self._range(lba, len(data) // self.block_size)
        if start == end:
            return
        if not self.layers:
            self.base.pwrite(data, start)
            return
        top = self.layers[-1]
        cs = top.cs
        pos = start
        while pos < end:
            c = pos // cs
            if pos % cs == 0 and end - pos >= cs:  # a run of whole clusters
                n = (end - pos) // cs * cs
                top.write_clusters(c, data[pos - start:pos - start + n])
            else:  # head or tail of the range inside one cluster
                n = min((c + 1) * cs, end) - pos
                self._write_partial(c, pos, data[pos - start:pos - start + n])
            pos += n

    def _write_partial(self, cluster: int, at: int, part: memoryview) -> None:
        """Copy-on-write of one cluster: old contents through the chain, new bytes on top."""
        top = self.layers[-1]
        cs = top.cs
        if top.present(cluster, cluster + 1)[0]:
            old = top.read_clusters(cluster, cluster + 1)  # a fresh buffer: patched in place
        else:
            old = bytearray(self._read_below(len(self.layers) - 1, cluster, cluster + 1))
        off = at - cluster * cs
        old[off:off + len(part)] = part
        top.write_clusters(cluster, old)

    def discard(self, lba: int, count: int) -> None:
        """Unmap blocks: they read as zeros afterwards, and whole clusters free space."""
        start, end = self._range(lba, count)
        if start == end:
            return
        if not self.layers:
            pos = start
            while pos < end:
                n = min(COPY_STEP, end - pos)
                self.base.pwrite(bytes(n), pos)
                pos += n
            return
        cs = self.layers[-1].cs
        f0, f1 = -(-start // cs), end // cs
        if f0 < f1:
            self.layers[-1].discard_clusters(f0, f1)
            if start < f0 * cs:
                self.write(lba, bytes(f0 * cs - start))
            if f1 * cs < end:
                self.write(f1 * cs // self.block_size, bytes(end - f1 * cs))
        else:
            self.write(lba, bytes(end - start))

    def flush(self) -> None:
        """Make every completed write durable."""
        if self.layers:
            self.layers[-1].flush()
        elif not self.readonly:
            self.base.sync()

    # -- the chain ------------------------------------------------------------------------

    def chain(self) -> list[str]:
        """File names from the base to the top overlay."""
        return [self.base_name] + [layer.name for layer in self.layers]

    def snapshot(self, cluster_size: int | None = None) -> str:
        """Freeze the current top and start a new empty overlay; returns its name."""
        if self.readonly:
            raise StorageError(f"{self.base_name}: opened read-only")
        self.flush()
        name = overlay_name(self.stem, len(self.layers))
        parent = self.layers[-1].name if self.layers else self.base_name
        cs = self.layers[0].cs if self.layers else (cluster_size or DEFAULT_CLUSTER)
        layer = RedoFile.create(self.directory, name, parent, self.block_size, self.num_blocks, cs)
        if not self.layers:  # the base is frozen from now on
            self.base.close()
            self.base = self.directory.open(self.base_name, readonly=True)
        self.layers.append(layer)
        return name

    def commit(self, progress: Progress | None = None) -> str:
        """Merge the top overlay into its parent and delete it; returns the new top.

        Interrupted by a crash, the top overlay is still whole: committing again finishes.
        """
        top = self._top_overlay("commit")
        top.flush()
        cs = top.cs
        if len(self.layers) == 1:  # the parent is the base: reopen it writable
            self.base.close()
            self.base = self.directory.open(self.base_name)
        clusters = top.allocated()
        done = 0
        for run in _runs(clusters):
            for a in range(run[0], run[1], COPY_STEP // cs or 1):
                b = min(run[1], a + (COPY_STEP // cs or 1))
                self._store_below(a, b, top.read_clusters(a, b))
                done += b - a
                if progress is not None:
                    progress(done, len(clusters))
        if len(self.layers) > 1:
            self.layers[-2].flush()
        else:
            self.base.sync()
        return self._drop_top()

    def _store_below(self, first: int, last: int, data: bytes) -> None:
        """Write clusters into the layer just below the top (or the base)."""
        cs = self.layers[-1].cs
        if len(self.layers) > 1:
            self.layers[-2].write_clusters(first, data)
        else:
            start, end = first * cs, min(last * cs, self.size)
            self.base.pwrite(memoryview(data)[:end - start], start)

    def revert(self) -> str:
        """Throw the top overlay away: the disk reads as at the last snapshot."""
        self._top_overlay("revert")
        return self._drop_top()

    def _top_overlay(self, what: str) -> RedoFile:
        if self.readonly:
            raise StorageError(f"{self.base_name}: opened read-only")
        if not self.layers:
            raise StorageError(f"{self.base_name}: no overlay to {what} (the chain is only the base)")
        return self.layers[-1]

    def _drop_top(self) -> str:
        top = self.layers.pop()
        top.close()
        self.directory.remove(top.name)
        if not self.layers:
            self.base.close()
            self.base = self.directory.open(self.base_name)
        return self.chain()[-1]

    # -- raw images -----------------------------------------------------------------------

    def export_raw(self, path: str | os.PathLike, progress: Progress | None = None) -> None:
        """Write the disk's current contents to a raw image file (sparse where zero)."""
        step = COPY_STEP // self.block_size
        zero = bytes(step * self.block_size)
        with open(path, "wb") as f:
            f.truncate(self.size)
            for lba in range(0, self.num_blocks, step):
                n = min(step, self.num_blocks - lba)
                data = self.read(lba, n)
                if data != zero[:len(data)]:
                    os.pwrite(f.fileno(), data, lba * self.block_size)
                if progress is not None:
                    progress(lba + n, self.num_blocks)

    @classmethod
    def import_raw(cls, source: str | os.PathLike, path: str | os.PathLike,
                   block_size: int = 512, progress: Progress | None = None) -> "VirtualDisk":
        """Copy a raw image into a new disk at ``path`` (NAME.dsk)."""
        size = os.path.getsize(source)
        if size % block_size:
            raise StorageError(f"{source}: size {size} is not a multiple of {block_size}")
        disk = cls.create(path, size // block_size, block_size)
        with open(source, "rb") as f:
            done = 0
            while chunk := f.read(COPY_STEP):
                if chunk.count(0) != len(chunk):
                    disk.base.pwrite(chunk, done)
                done += len(chunk)
                if progress is not None:
                    progress(done // block_size, disk.num_blocks)
        disk.flush()
        return disk

    def close(self) -> None:
        """Flush and close every file of the chain (a second close does nothing)."""
        if self.closed:
            return
        self.closed = True
        if not self.readonly:
            self.flush()
        for layer in self.layers:
            layer.close()
        self.layers = []
        self.base.close()
        for hook in self.on_close:
            hook()


def _check_block_size(bs: int) -> None:
    if bs not in (512, 4096):
        raise StorageError(f"block size must be 512 or 4096, not {bs}")


def _runs(indices: np.ndarray) -> list[tuple[int, int]]:
    """Consecutive index runs as [start, end) pairs."""
    if len(indices) == 0:
        return []
    breaks = np.flatnonzero(np.diff(indices) != 1) + 1
    starts = np.concatenate(([0], breaks))
    ends = np.concatenate((breaks, [len(indices)]))
    return [(int(indices[s]), int(indices[e - 1]) + 1) for s, e in zip(starts, ends)]
