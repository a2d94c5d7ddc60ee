"""A file system over the volumes of a pool: namespace, placement, extents, journal.

Metadata (inodes, directories, extents, placement rules) lives in memory and on the
metadata volume as a checkpoint (two alternating slots) plus a journal of operations
since that checkpoint. Every change is an operation applied by :meth:`_apply`, both
live and during replay at mount, so recovery runs the same code as normal work.
Data is written before the journal records that point at it (ordered mode).
Byte layout: docs/storage-formats.md.
"""

from __future__ import annotations

import json
import struct
import time
import zlib
from dataclasses import asdict, dataclass, field

from .alloc import Allocator
from .errors import FormatError, StorageError
from .journal import Journal, JournalFull, scan
from .volume import Volume, VolumeManager

SB_MAGIC = b"PYVMFSSB"
SB_VERSION = 1
SB_SLOT = 4096
UNIT = 64 * 1024  # allocation unit: extents are whole units
ROOT = 1
# magic, version, generation, checkpoint slot, checkpoint length, checkpoint crc,
# first journal seq, meta size, checkpoint offsets (2), checkpoint size, journal
# offset, journal size; then crc32 of these.
_SB = struct.Struct("<8sIQIIIQQQQQQQ")
_CRC = struct.Struct("<I")


@dataclass
class Rule:
    """Placement rule: files under ``prefix`` go to a volume with these attributes."""

    prefix: str
    volume: str | None = None
    tier: str | None = None
    layout: str | None = None

    def matches(self, path: str) -> bool:
        p = self.prefix.rstrip("/")
        return p == "" or path == p or path.startswith(p + "/")


@dataclass
class Inode:
    """A file or directory; extents are [file offset, volume offset, length]."""

    ino: int
    kind: str  # "file" or "dir"
    parent: int
    mtime: float = 0.0
    size: int = 0
    volume: str | None = None
    extents: list[list[int]] = field(default_factory=list)
    attrs: dict[str, str] = field(default_factory=dict)
    entries: dict[str, int] = field(default_factory=dict)


@dataclass
class Superblock:
    generation: int
    ckpt_slot: int
    ckpt_len: int
    ckpt_crc: int
    first_seq: int
    meta_size: int
    ckpt_offsets: tuple[int, int]
    ckpt_size: int
    journal_offset: int
    journal_size: int

    def pack(self) -> bytes:
        body = _SB.pack(SB_MAGIC, SB_VERSION, self.generation, self.ckpt_slot, self.ckpt_len,
                        self.ckpt_crc, self.first_seq, self.meta_size, *self.ckpt_offsets,
                        self.ckpt_size, self.journal_offset, self.journal_size)
        return (body + _CRC.pack(zlib.crc32(body))).ljust(SB_SLOT, b"\0")

    @classmethod
    def unpack(cls, raw: bytes, where: str) -> "Superblock":
        f = _SB.unpack_from(raw)
        if f[0] != SB_MAGIC:
            raise FormatError(f"{where}: superblock damaged: bad magic {f[0]!r}")
        if _CRC.unpack_from(raw, _SB.size)[0] != zlib.crc32(raw[:_SB.size]):
            raise FormatError(f"{where}: superblock damaged: checksum mismatch")
        if f[1] != SB_VERSION:
            raise FormatError(f"{where}: file system version {f[1]} not supported")
        return cls(f[2], f[3], f[4], f[5], f[6], f[7], (f[8], f[9]), f[10], f[11], f[12])


def split(path: str) -> list[str]:
    """'/a/b' -> ['a', 'b']; refuses relative paths and empty names."""
    if not path.startswith("/"):
        raise StorageError(f"{path}: paths start with /")
    return [p for p in path.split("/") if p]


class FileSystem:
    """A mounted file system; use :meth:`mkfs` / :meth:`mount`."""

    def __init__(self, vm: VolumeManager, meta: Volume, sb: Superblock) -> None:
        self.vm = vm
        self.meta = meta
        self.sb = sb
        self.inodes: dict[int, Inode] = {}
        self.next_ino = ROOT + 1
        self.rules: list[Rule] = []
        self.volumes: list[str] = []
        self.alloc: dict[str, Allocator] = {}
        self.journal = Journal(meta, sb.journal_offset, sb.journal_size, sb.first_seq)
        self.replayed = 0

    @property
    def where(self) -> str:
        return f"volume {self.meta.name}"

    # -- mkfs / mount -----------------------------------------------------------------

    @classmethod
    def mkfs(cls, vm: VolumeManager, volumes: list[str], meta_volume: str | None = None,
             meta_size: int = 4 * 1024 * 1024, rules: list[Rule] | None = None) -> "FileSystem":
        """Make an empty file system over ``volumes``; metadata on ``meta_volume``."""
        meta = vm.volume(meta_volume or volumes[0])
        if meta.name not in volumes:
            volumes = [meta.name, *volumes]
        meta_size = -(-meta_size // UNIT) * UNIT
        ck = (meta_size - 2 * SB_SLOT) * 3 // 8 // 4096 * 4096
        jsize = meta_size - 2 * SB_SLOT - 2 * ck
        sb = Superblock(0, 0, 0, 0, 1, meta_size, (2 * SB_SLOT, 2 * SB_SLOT + ck), ck,
                        2 * SB_SLOT + 2 * ck, jsize)
        if meta.size < meta_size + UNIT:
            raise StorageError(f"volume {meta.name} too small for {meta_size} bytes of metadata")
        fs = cls(vm, meta, sb)
        fs.volumes = list(volumes)
        for v in volumes:
            vm.volume(v)  # exists?
        fs.rules = list(rules or [])
        fs.inodes[ROOT] = Inode(ROOT, "dir", ROOT, time.time())
        # Wipe old superblocks and journal: stale records must never replay.
        meta.write(0, bytes(2 * SB_SLOT))
        meta.write(sb.journal_offset, bytes(jsize))
        fs._rebuild_allocators()
        fs.checkpoint()
        return fs

    @classmethod
    def mount(cls, vm: VolumeManager, meta_volume: str | None = None) -> "FileSystem":
        """Find the superblock, load the checkpoint, replay the journal."""
        names = [meta_volume] if meta_volume else list(vm.volumes)
        found = []
        for name in names:
            vol = vm.volume(name)
            if vol.size >= 2 * SB_SLOT and SB_MAGIC in (vol.read(0, 8), vol.read(SB_SLOT, 8)):
                found.append(vol)
        if not found:
            raise StorageError(f"no file system found on volume(s) {', '.join(names)}")
        meta = found[0]
        where = f"volume {meta.name}"
        best, errors = None, []
        for slot in (0, 1):
            try:
                sb = Superblock.unpack(meta.read(slot * SB_SLOT, SB_SLOT), where)
            except FormatError as e:
                errors.append(str(e))
                continue
            if best is None or sb.generation > best.generation:
                best = sb
        if best is None:
            raise FormatError("; ".join(errors))
        raw = meta.read(best.ckpt_offsets[best.ckpt_slot], best.ckpt_len)
        if zlib.crc32(raw) != best.ckpt_crc:
            raise FormatError(f"{where}: file system checkpoint damaged: checksum mismatch "
                              f"(slot {best.ckpt_slot}, generation {best.generation})")
        fs = cls(vm, meta, best)
        fs._load(json.loads(raw))
        end, seq = 0, best.first_seq
        for seq_, op, pos in scan(meta, best.journal_offset, best.journal_size, best.first_seq, where):
            end, seq = pos, seq_ + 1
            if op["op"] != "commit":
                fs._apply(op)
                fs.replayed += 1
        fs.journal.pos, fs.journal.next_seq = end, seq
        fs._rebuild_allocators()
        return fs

    def _load(self, d: dict) -> None:
        self.next_ino = d["next_ino"]
        self.volumes = d["volumes"]
        self.rules = [Rule(**r) for r in d["rules"]]
        self.inodes = {int(k): Inode(**v) for k, v in d["inodes"].items()}

    def _dump(self) -> bytes:
        return json.dumps({"next_ino": self.next_ino, "volumes": self.volumes,
                           "rules": [asdict(r) for r in self.rules],
                           "inodes": {str(k): asdict(v) for k, v in self.inodes.items()}},
                          separators=(",", ":")).encode()

    def _rebuild_allocators(self) -> None:
        used: dict[str, list[tuple[int, int]]] = {v: [] for v in self.volumes}
        used.setdefault(self.meta.name, []).append((0, self.sb.meta_size))
        for ino in self.inodes.values():
            for _, voff, ln in ino.extents:
                used.setdefault(ino.volume, []).append((voff, ln))
        self.alloc = {v: Allocator.from_used(v, self.vm.volume(v).size, UNIT, used[v])
                      for v in self.volumes}

    # -- durability ----------------------------------------------------------------------

    def checkpoint(self) -> None:
        """Write the whole metadata to the other slot, then a superblock naming it."""
        for v in self.volumes:
            self.vm.volume(v).flush()  # data before the metadata that points at it
        raw = self._dump()
        if len(raw) > self.sb.ckpt_size:
            raise StorageError(f"{self.where}: file system metadata full "
                               f"({len(raw)} bytes, room for {self.sb.ckpt_size})")
        sb = self.sb
        slot = 1 - sb.ckpt_slot if sb.generation else 0
        self.meta.write(sb.ckpt_offsets[slot], raw)
        self.meta.flush()
        sb.generation += 1
        sb.ckpt_slot, sb.ckpt_len, sb.ckpt_crc = slot, len(raw), zlib.crc32(raw)
        sb.first_seq = self.journal.next_seq
        # Records of the old journal stay behind but carry lower sequence numbers.
        self.meta.write((sb.generation % 2) * SB_SLOT, sb.pack())
        self.meta.flush()
        self.journal.reset(sb.first_seq)
        self._release_held()

    def sync(self) -> None:
        """Make every completed write and metadata change durable."""
        for v in self.volumes:
            self.vm.volume(v).flush()
        try:
            self.journal.commit()
        except JournalFull:
            self.checkpoint()
            return
        self._release_held()

    def _release_held(self) -> None:
        for a in self.alloc.values():
            a.release()

    def _log(self, op: dict) -> None:
        """Apply an operation now and queue it for the journal."""
        self._apply(op)
        self.journal.append(op)

    # -- operations (live and replay) ------------------------------------------------------

    def _apply(self, op: dict) -> None:
        kind = op["op"]
        if kind in ("mkdir", "create"):
            ino = Inode(op["ino"], "dir" if kind == "mkdir" else "file", op["parent"],
                        op["mtime"], volume=op.get("volume"), attrs=dict(op.get("attrs", {})))
            self.inodes[ino.ino] = ino
            self.inodes[op["parent"]].entries[op["name"]] = ino.ino
            self.next_ino = max(self.next_ino, ino.ino + 1)
        elif kind == "unlink":
            parent = self.inodes[op["parent"]]
            ino = self.inodes.pop(parent.entries.pop(op["name"]))
            self._free(ino, ino.extents)
        elif kind == "rename":
            ino_no = self.inodes[op["parent"]].entries.pop(op["name"])
            self.inodes[op["new_parent"]].entries[op["new_name"]] = ino_no
            self.inodes[ino_no].parent = op["new_parent"]
        elif kind == "extent":
            ino = self.inodes[op["ino"]]
            ext = [op["file_off"], op["vol_off"], op["length"]]
            last = ino.extents[-1] if ino.extents else None
            if last and last[0] + last[2] == ext[0] and last[1] + last[2] == ext[1]:
                last[2] += ext[2]
            else:
                ino.extents.append(ext)
                ino.extents.sort()
        elif kind == "size":
            ino = self.inodes[op["ino"]]
            ino.size, ino.mtime = op["size"], op.get("mtime", ino.mtime)
            self._trim(ino)
        elif kind == "setattr":
            self.inodes[op["ino"]].attrs[op["key"]] = op["value"]
        elif kind == "move":
            ino = self.inodes[op["ino"]]
            self._free(ino, ino.extents)
            ino.volume, ino.extents = op["volume"], [list(e) for e in op["extents"]]
        elif kind == "rules":
            self.rules = [Rule(**r) for r in op["rules"]]
        else:
            raise FormatError(f"{self.where}: journal holds unknown operation {kind!r}")

    def _free(self, ino: Inode, extents: list[list[int]]) -> None:
        if self.alloc and ino.volume in self.alloc:
            for _, voff, ln in extents:
                self.alloc[ino.volume].hold(voff, ln)

    def _trim(self, ino: Inode) -> None:
        """Drop the allocation units wholly beyond the end of the file."""
        keep = -(-ino.size // UNIT) * UNIT
        out = []
        for foff, voff, ln in ino.extents:
            if foff >= keep:
                self._free(ino, [[foff, voff, ln]])
            elif foff + ln > keep:
                self._free(ino, [[keep, voff + keep - foff, foff + ln - keep]])
                out.append([foff, voff, keep - foff])
            else:
                out.append([foff, voff, ln])
        ino.extents = out

    # -- namespace ----------------------------------------------------------------------

    def lookup(self, path: str) -> Inode:
        ino = self.inodes[ROOT]
        for name in split(path):
            if ino.kind != "dir" or name not in ino.entries:
                raise StorageError(f"{path}: no such file or directory")
            ino = self.inodes[ino.entries[name]]
        return ino

    def exists(self, path: str) -> bool:
        try:
            self.lookup(path)
            return True
        except StorageError:
            return False

    def _parent(self, path: str) -> tuple[Inode, str]:
        parts = split(path)
        if not parts:
            raise StorageError("/: is the root directory")
        parent = self.lookup("/" + "/".join(parts[:-1]))
        if parent.kind != "dir":
            raise StorageError(f"{path}: parent is not a directory")
        if len(parts[-1].encode()) > 255:
            raise StorageError(f"{path}: name longer than 255 bytes")
        return parent, parts[-1]

    def mkdir(self, path: str, parents: bool = False) -> None:
        """Create a directory (and its missing parents with ``parents``)."""
        if parents:
            parts = split(path)
            for i in range(1, len(parts) + 1):
                sub = "/" + "/".join(parts[:i])
                if not self.exists(sub):
                    self.mkdir(sub)
            return
        parent, name = self._parent(path)
        if name in parent.entries:
            raise StorageError(f"{path}: already exists")
        self._log({"op": "mkdir", "ino": self.next_ino, "parent": parent.ino, "name": name,
                   "mtime": time.time()})
        self.sync()

    def create(self, path: str, volume: str | None = None,
               attrs: dict[str, str] | None = None) -> Inode:
        """Create an empty file on the volume the placement rules choose."""
        parent, name = self._parent(path)
        if name in parent.entries:
            raise StorageError(f"{path}: already exists")
        vol = volume or self.place(path)
        if vol not in self.volumes:
            raise StorageError(f"{path}: volume {vol} is not part of this file system")
        self._log({"op": "create", "ino": self.next_ino, "parent": parent.ino, "name": name,
                   "mtime": time.time(), "volume": vol, "attrs": attrs or {}})
        self.sync()
        return self.lookup(path)

    def unlink(self, path: str) -> None:
        """Remove a file or an empty directory."""
        parent, name = self._parent(path)
        ino = self.lookup(path)
        if ino.kind == "dir" and ino.entries:
            raise StorageError(f"{path}: directory not empty")
        self._log({"op": "unlink", "parent": parent.ino, "name": name})
        self.sync()

    def rename(self, old: str, new: str) -> None:
        """Move a name; the target must not exist."""
        op, on = self._parent(old)
        self.lookup(old)
        np_, nn = self._parent(new)
        if nn in np_.entries:
            raise StorageError(f"{new}: already exists")
        self._log({"op": "rename", "parent": op.ino, "name": on, "new_parent": np_.ino,
                   "new_name": nn})
        self.sync()

    def listdir(self, path: str = "/") -> list[str]:
        ino = self.lookup(path)
        if ino.kind != "dir":
            raise StorageError(f"{path}: not a directory")
        return sorted(ino.entries)

    def setattr(self, path: str, key: str, value: str) -> None:
        self._log({"op": "setattr", "ino": self.lookup(path).ino, "key": key, "value": value})
        self.sync()

    def set_rules(self, rules: list[Rule]) -> None:
        """Replace the placement rules (first match wins); existing files stay put."""
        self._log({"op": "rules", "rules": [asdict(r) for r in rules]})
        self.sync()

    # -- placement ----------------------------------------------------------------------

    def place(self, path: str) -> str:
        """The volume a new file at ``path`` goes to: first matching rule, most free space."""
        candidates = list(self.volumes)
        for rule in self.rules:
            if rule.matches(path):
                candidates = [v for v in self.volumes
                              if (rule.volume is None or v == rule.volume)
                              and (rule.tier is None or self.vm.volume(v).rec.tier == rule.tier)
                              and (rule.layout is None or self.vm.volume(v).rec.layout == rule.layout)]
                if not candidates:
                    raise StorageError(f"{path}: no volume matches the rule for {rule.prefix} "
                                       f"(volume={rule.volume}, tier={rule.tier}, layout={rule.layout})")
                break
        return max(candidates, key=lambda v: (self.alloc[v].free_bytes(), v))

    def free_bytes(self, volume: str) -> int:
        return self.alloc[volume].free_bytes()

    # -- files ----------------------------------------------------------------------------

    def open(self, path: str, create: bool = False) -> "FSFile":
        """Open a file (creating it if asked); the handle survives moves of the file."""
        from .fsfile import FSFile
        if create and not self.exists(path):
            self.create(path)
        ino = self.lookup(path)
        if ino.kind != "file":
            raise StorageError(f"{path}: is a directory")
        return FSFile(self, ino.ino, path)

    def move(self, path: str, volume: str, progress=None) -> None:
        """Move a file's data to ``volume``; open handles keep working."""
        from .fsfile import copy_extents
        ino = self.lookup(path)
        if volume not in self.volumes:
            raise StorageError(f"{path}: volume {volume} is not part of this file system")
        if ino.kind != "file" or ino.volume == volume:
            return
        new = copy_extents(self, ino, volume, progress)
        self.vm.volume(volume).flush()
        self._log({"op": "move", "ino": ino.ino, "volume": volume, "extents": new})
        self.sync()

    def close(self) -> None:
        """Unmount: everything durable, a fresh checkpoint, empty journal."""
        self.checkpoint()
