"""Redo overlay files: the copy-on-write layers of a virtual disk.

A redo file holds, for each cluster of the virtual disk, either nothing (read falls
through to the parent), a data cluster with its check value (see
:mod:`storage.checksum`), or a "zero" mark (discarded).
Crash safety without a journal: data clusters are written out of place (a cluster the
durable map points at is never overwritten), the map is double-buffered, and a header
with a generation number says which map copy is current. A crash therefore leaves the
state of the last completed flush. Byte layout: docs/storage-formats.md.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

from . import checksum
from .errors import FormatError, IntegrityError, StorageError
from .fileio import BlockFile, Directory

MAGIC = b"PYVMREDO"
VERSION = 2  # new overlays; the version also names the cluster check (storage.checksum)
READABLE_VERSIONS = (1, 2)  # version 1 (CRC32 of each cluster) is still read and written
SLOT_SIZE = 4096
DEFAULT_CLUSTER = 64 * 1024
PAGE = 4096  # map pages: the unit in which changed map entries are written
FLAG_ZERO = 1

# magic, version, slot size, generation, block size, cluster size, disk blocks,
# map entries, map copy 0 offset, map copy 1 offset, data offset, cluster slots in
# use, map crc32, flags, parent name; then crc32 of all of these.
_HDR = struct.Struct("<8sIIQIIQQQQQQII256s")
_CRC = struct.Struct("<I")
ENTRY = np.dtype([("phys", "<u8"), ("crc", "<u4"), ("flags", "<u4")])  # 16 bytes
ENTRIES_PER_PAGE = PAGE // ENTRY.itemsize


@dataclass
class RedoHeader:
    """The fixed part of a redo file (one of two alternating header slots)."""

    generation: int
    block_size: int
    cluster_size: int
    num_blocks: int
    map_entries: int
    map_offsets: tuple[int, int]
    data_offset: int
    cluster_count: int
    map_crc: int
    parent: str
    flags: int = 0
    version: int = VERSION

    def pack(self) -> bytes:
        body = _HDR.pack(MAGIC, self.version, SLOT_SIZE, self.generation, self.block_size,
                         self.cluster_size, self.num_blocks, self.map_entries,
                         self.map_offsets[0], self.map_offsets[1], self.data_offset,
                         self.cluster_count, self.map_crc, self.flags,
                         self.parent.encode().ljust(256, b"\0"))
        return (body + _CRC.pack(zlib.crc32(body))).ljust(SLOT_SIZE, b"\0")

    @classmethod
    def unpack(cls, raw: bytes, where: str) -> "RedoHeader":
        if len(raw) < _HDR.size + 4:
            raise FormatError(f"{where}: header damaged: file too short")
        f = _HDR.unpack_from(raw)
        if f[0] != MAGIC:
            raise FormatError(f"{where}: header damaged: bad magic {f[0]!r} (expected {MAGIC!r})")
        (stored,) = _CRC.unpack_from(raw, _HDR.size)
        computed = zlib.crc32(raw[:_HDR.size])
        if stored != computed:
            raise FormatError(f"{where}: header damaged: checksum mismatch "
                              f"(stored {stored:08x}, computed {computed:08x})")
        if f[1] not in READABLE_VERSIONS:
            raise FormatError(f"{where}: redo version {f[1]} not supported (expected "
                              f"{' or '.join(map(str, READABLE_VERSIONS))})")
        parent = f[14].rstrip(b"\0").decode(errors="replace")
        return cls(f[3], f[4], f[5], f[6], f[7], (f[8], f[9]), f[10], f[11], f[12], parent,
                   f[13], f[1])


def _align(n: int, a: int) -> int:
    return -(-n // a) * a


class RedoFile:
    """One overlay: cluster map in memory, data clusters in the file."""

    def __init__(self, file: BlockFile, where: str, header: RedoHeader, entries: np.ndarray) -> None:
        self.file = file
        self.where = where  # path for messages
        self.hdr = header
        self.map = entries
        self.cs = header.cluster_size
        self.page_gen = np.full(-(-len(entries) // ENTRIES_PER_PAGE) or 1, header.generation,
                                dtype=np.int64)
        # Slot allocation: a "used" map and a cursor that sweeps it, so a sequential
        # rewrite finds the slots freed by the previous pass as long contiguous runs.
        self.used = np.zeros(max(header.cluster_count, 64), dtype=bool)
        self.used[(entries["phys"][entries["phys"] > 0] - 1).astype(np.int64)] = True
        self.nfree = header.cluster_count - int(self.used[:header.cluster_count].sum())
        self.cursor = 0
        self.pending_free: list[int] = []  # freed since the last flush: still durable
        # Slots allocated since the last flush: no durable map points at them, so they
        # may be rewritten in place.
        self.fresh = np.zeros(len(self.used), dtype=bool)
        self.fresh_list: list[int] = []
        self._zero_cluster = bytes(self.cs)
        self.dirty = False

    @property
    def name(self) -> str:
        return self.file.name

    @property
    def parent(self) -> str:
        return self.hdr.parent

    # -- create / open --------------------------------------------------------------------

    @classmethod
    def create(cls, directory: Directory, name: str, parent: str, block_size: int,
               num_blocks: int, cluster_size: int = DEFAULT_CLUSTER,
               version: int = VERSION) -> "RedoFile":
        """Create an empty overlay over ``parent`` (a file name in the same directory).

        ``version`` 1 makes an old-format overlay (tests of old images use it)."""
        if version not in READABLE_VERSIONS:
            raise StorageError(f"redo version {version} not supported")
        if cluster_size % block_size or cluster_size < block_size or cluster_size & (cluster_size - 1):
            raise StorageError(f"cluster size {cluster_size} must be a power of two multiple "
                               f"of the block size {block_size}")
        if len(parent.encode()) > 255:
            raise StorageError(f"parent name too long: {parent!r}")
        entries = -(-num_blocks * block_size // cluster_size)
        map_bytes = _align(max(entries, 1) * ENTRY.itemsize, PAGE)
        m0 = 2 * SLOT_SIZE
        m1 = m0 + map_bytes
        data = _align(m1 + map_bytes, cluster_size)
        emap = np.zeros(entries, dtype=ENTRY)
        hdr = RedoHeader(1, block_size, cluster_size, num_blocks, entries, (m0, m1), data, 0,
                         zlib.crc32(emap.tobytes()), parent, version=version)
        # Built under a temporary name and renamed when complete, so a crash never
        # leaves a chain member without a valid header.
        tmp = name + ".new"
        if directory.exists(tmp):
            directory.remove(tmp)
        f = directory.open(tmp, create=True)
        try:
            f.truncate(data)
            f.pwrite(emap.tobytes(), m1)  # generation 1 uses copy 1
            f.pwrite(hdr.pack(), SLOT_SIZE * (1 % 2))
            f.sync()
            directory.rename(tmp, name)
        except BaseException:
            f.close()
            if directory.exists(tmp):
                directory.remove(tmp)
            raise
        f.name = name
        path = getattr(f, "path", None)  # keep messages naming the final file
        if isinstance(path, str):
            f.path = path[:-len(tmp)] + name
        elif path is not None:
            f.path = path.with_name(name)
        return cls(f, directory.describe(name), hdr, emap)

    @classmethod
    def open(cls, directory: Directory, name: str, readonly: bool = False) -> "RedoFile":
        """Open an overlay; a damaged header or map is refused naming the damage."""
        where = directory.describe(name)
        f = directory.open(name, readonly=readonly)
        try:
            best, errors = None, []
            for slot in (0, 1):
                try:
                    h = RedoHeader.unpack(f.pread(SLOT_SIZE, slot * SLOT_SIZE), where)
                    if h.generation % 2 != slot:
                        raise FormatError(f"{where}: header damaged: generation in wrong slot")
                except FormatError as e:
                    errors.append(str(e))
                    continue
                if best is None or h.generation > best.generation:
                    best = h
            if best is None:
                raise FormatError(errors[-1] if len(set(errors)) == 1 else "; ".join(errors))
            copy = best.map_offsets[best.generation % 2]
            raw = f.pread(best.map_entries * ENTRY.itemsize, copy)
            if len(raw) != best.map_entries * ENTRY.itemsize or zlib.crc32(raw) != best.map_crc:
                raise FormatError(f"{where}: cluster map damaged: checksum mismatch "
                                  f"(map copy {best.generation % 2}, generation {best.generation})")
            entries = np.frombuffer(raw, dtype=ENTRY).copy()
            bad = entries["phys"] > best.cluster_count
            if bad.any():
                raise FormatError(f"{where}: cluster map damaged: entry {int(np.argmax(bad))} "
                                  f"points past the data area")
        except BaseException:
            f.close()
            raise
        return cls(f, where, best, entries)

    # -- lookups --------------------------------------------------------------------------

    def present(self, first: int, last: int) -> np.ndarray:
        """Boolean array: does this overlay answer for clusters [first, last)?"""
        e = self.map[first:last]
        return (e["phys"] > 0) | ((e["flags"] & FLAG_ZERO) != 0)

    def _slot_offset(self, phys: int) -> int:
        return self.hdr.data_offset + (phys - 1) * self.cs

    def read_clusters(self, first: int, last: int) -> bytearray:
        """Contents of clusters [first, last), all present here; checksums verified. A
        fresh buffer the caller may keep or change (no copy to bytes on the way out)."""
        buf = bytearray((last - first) * self.cs)
        self.read_clusters_into(first, last, memoryview(buf))
        return buf

    def read_clusters_into(self, first: int, last: int, out: memoryview) -> None:
        """Fill ``out`` with clusters [first, last), all present here; verified.

        Clusters in consecutive slots are read with one call, straight into ``out``;
        their check values are computed in one vectorised pass (storage.checksum)."""
        cs = self.cs
        e = self.map[first:last]
        phys = e["phys"].astype(np.int64)
        zero = (e["flags"] & FLAG_ZERO) != 0
        if int(phys[-1]) - int(phys[0]) == last - first - 1 and not zero.any() and (
                last - first < 3 or (np.diff(phys) == 1).all()):
            bounds = [0, last - first]  # the usual case after sequential writes: one run
        else:  # runs: consecutive clusters in consecutive slots, zero marks on their own
            brk = np.flatnonzero((np.diff(phys) != 1) | zero[1:] | zero[:-1]) + 1
            bounds = [0, *brk.tolist(), last - first]
        into = getattr(self.file, "preadinto", None)
        for a, b in zip(bounds, bounds[1:]):
            part = out[a * cs:b * cs]
            if zero[a]:
                part[:] = self._zero_cluster
                continue
            at = self._slot_offset(int(phys[a]))
            if into is not None:
                got = into(part, at)
            else:
                raw = self.file.pread(len(part), at)
                got = len(raw)
                part[:got] = raw
            checks = checksum.cluster_checks(part, cs, self.hdr.version)
            bad = checks != e["crc"][a:b]
            if got < len(part):  # the file ends inside the run: those clusters are damaged
                bad[got // cs:] = True
            if bad.any():
                self._damaged(first + a + int(np.argmax(bad)))

    def _damaged(self, cluster: int) -> None:
        per = self.cs // self.hdr.block_size
        raise IntegrityError(f"{self.where}: data cluster {cluster} (blocks {cluster * per}-"
                             f"{cluster * per + per - 1}) damaged: checksum mismatch")

    # -- updates --------------------------------------------------------------------------

    def _allocate(self, count: int) -> list[int]:
        """Slot numbers (1-based phys) for ``count`` clusters: free slots from the
        cursor on (wrapping once), then new slots at the end of the file."""
        out: list[int] = []
        end = self.hdr.cluster_count
        if self.nfree:
            for lo, hi in ((self.cursor, end), (0, self.cursor)):
                if len(out) == count:
                    break
                idx = np.flatnonzero(~self.used[lo:hi])[:count - len(out)] + lo
                out.extend(idx.tolist())
        if out:
            self.used[out] = True
            self.nfree -= len(out)
            self.cursor = out[-1] + 1
        extra = count - len(out)
        if extra:
            if end + extra > len(self.used):
                size = max(2 * len(self.used), end + extra)
                self.used = np.concatenate((self.used, np.zeros(size - len(self.used), bool)))
                self.fresh = np.concatenate((self.fresh, np.zeros(size - len(self.fresh), bool)))
            self.used[end:end + extra] = True
            self.hdr.cluster_count += extra
            out.extend(range(end, end + extra))
        return [s + 1 for s in out]

    def _release(self, cluster: int) -> None:
        phys = int(self.map[cluster]["phys"])
        if phys == 0:
            return
        if self.fresh[phys - 1]:  # never durable: reusable at once
            self.fresh[phys - 1] = False
            self.used[phys - 1] = False
            self.nfree += 1
        else:
            self.pending_free.append(phys - 1)

    def write_clusters(self, first: int, data: bytes | memoryview) -> None:
        """Store whole clusters starting at ``first`` (len(data) a multiple of cs).

        All-zero clusters become ZERO marks; clusters already written since the last
        flush are rewritten in place; the others go to fresh slots (out of place).
        """
        cs = self.cs
        view = memoryview(data).cast("B")
        count = len(view) // cs
        view = view[:count * cs]
        if self.hdr.version == checksum.CRC32:
            crcs = checksum.cluster_checks(view, cs, checksum.CRC32)
            maybe_zero = np.ones(count, dtype=bool)
        else:
            sums = checksum.block_sums(view, cs)
            crcs = checksum.checks_from_sums(sums)
            maybe_zero = ~sums.any(axis=1)  # an all-zero cluster sums to zero everywhere
        zero = self._zero_cluster
        is_zero = np.zeros(count, dtype=bool)
        for k in np.flatnonzero(maybe_zero).tolist():
            is_zero[k] = view[k * cs:(k + 1) * cs] == zero
        crcs[is_zero] = 0
        sl = slice(first, first + count)
        old = self.map["phys"][sl].astype(np.int64)
        has = old > 0
        fresh = np.zeros(count, dtype=bool)
        fresh[has] = self.fresh[old[has] - 1]
        in_place = fresh & ~is_zero
        # Old slots no longer used: at once if never durable, else after the next flush.
        gone = has & ~in_place
        now = old[gone & fresh] - 1
        self.used[now] = False
        self.fresh[now] = False
        self.nfree += len(now)
        self.pending_free.extend((old[gone & ~fresh] - 1).tolist())
        slots = np.where(in_place, old, 0)
        need = ~is_zero & ~in_place
        if need.any():
            new = np.array(self._allocate(int(need.sum())), dtype=np.int64)
            slots[need] = new
            self.fresh[new - 1] = True
            self.fresh_list.extend((new - 1).tolist())
        self.map["phys"][sl] = slots
        self.map["crc"][sl] = crcs
        self.map["flags"][sl] = np.where(is_zero, FLAG_ZERO, 0)
        self.page_gen[first // ENTRIES_PER_PAGE:(first + count - 1) // ENTRIES_PER_PAGE + 1] = \
            self.hdr.generation + 1
        self.dirty = True
        # One write per run of clusters that landed in consecutive slots.
        idx = np.flatnonzero(~is_zero)
        if not len(idx):
            return
        s_idx = slots[idx]
        breaks = np.flatnonzero((np.diff(s_idx) != 1) | (np.diff(idx) != 1)) + 1
        for run in np.split(np.arange(len(idx)), breaks):
            k0, k1 = int(idx[run[0]]), int(idx[run[-1]]) + 1  # consecutive in the input
            self.file.pwrite(view[k0 * cs:k1 * cs], self._slot_offset(int(s_idx[run[0]])))

    def discard_clusters(self, first: int, last: int) -> None:
        """Mark clusters [first, last) as reading zeros, freeing their data."""
        for c in range(first, last):
            self._release(c)
            self.map[c] = (0, 0, FLAG_ZERO)
            self._touch(c)

    def _touch(self, cluster: int) -> None:
        self.page_gen[cluster // ENTRIES_PER_PAGE] = self.hdr.generation + 1
        self.dirty = True

    def allocated(self) -> np.ndarray:
        """Indices of clusters this overlay answers for."""
        return np.nonzero(self.present(0, len(self.map)))[0]

    # -- durability -----------------------------------------------------------------------

    def flush(self) -> None:
        """Make all writes durable: data, then the other map copy, then its header."""
        if not self.dirty:
            return
        self.file.sync()
        gen = self.hdr.generation + 1
        copy = self.hdr.map_offsets[gen % 2]
        raw = self.map.tobytes()
        # The other copy was last written at generation gen-2: pages touched since.
        for page in np.nonzero(self.page_gen >= gen - 1)[0]:
            lo = int(page) * PAGE
            self.file.pwrite(raw[lo:lo + PAGE], copy + lo)
        self.hdr.generation = gen
        self.hdr.map_crc = zlib.crc32(raw)
        self.file.sync()
        self.file.pwrite(self.hdr.pack(), SLOT_SIZE * (gen % 2))
        self.file.sync()
        if self.pending_free:
            self.used[self.pending_free] = False
            self.nfree += len(self.pending_free)
        self.pending_free.clear()
        self.fresh[self.fresh_list] = False
        self.fresh_list.clear()
        self.dirty = False

    def close(self) -> None:
        self.file.close()
