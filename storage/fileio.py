"""The small file interface virtual disks are stored through.

A virtual disk reads and writes its ``.dsk`` and ``.redo`` files only through
:class:`BlockFile` and finds them through :class:`Directory`, so the same code runs on
host files (:class:`HostDirectory`) and on files of the pool's file system.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from .durability import fdatasync, fsync_dir
from .errors import StorageError


class BlockFile(Protocol):
    """A random-access file: positional reads and writes, size, durability."""

    name: str

    def pread(self, size: int, offset: int) -> bytes:
        """Up to ``size`` bytes at ``offset`` (fewer only at end of file)."""
        ...

    def pwrite(self, data: bytes | bytearray | memoryview, offset: int) -> None: ...

    # Optional: ``preadinto(out: memoryview, offset) -> int`` fills ``out`` without an
    # intermediate bytes object (fewer bytes only at end of file). Virtual disks use it
    # when a file has it and fall back to :meth:`pread`.

    def size(self) -> int: ...

    def truncate(self, size: int) -> None: ...

    def sync(self) -> None:
        """Make every write so far durable."""
        ...

    def close(self) -> None: ...


class Directory(Protocol):
    """A flat set of named files (one directory)."""

    def open(self, name: str, create: bool = False, readonly: bool = False) -> BlockFile: ...

    def exists(self, name: str) -> bool: ...

    def remove(self, name: str) -> None: ...

    def rename(self, old: str, new: str) -> None:
        """Atomically rename; durable when it returns (a new file appears whole or not)."""
        ...

    def describe(self, name: str) -> str:
        """How to name the file in a message (a path)."""
        ...


class HostFile:
    """A host file opened with os.open; I/O through os.pread / os.pwrite."""

    def __init__(self, path: Path, create: bool = False, readonly: bool = False) -> None:
        self.name = path.name
        self.path = path
        flags = os.O_RDONLY if readonly else os.O_RDWR
        if create:
            flags |= os.O_CREAT | os.O_EXCL
        try:
            self.fd = os.open(path, flags, 0o644)
        except FileExistsError:
            raise StorageError(f"{path}: already exists") from None
        except OSError as e:
            raise StorageError(f"{path}: cannot open: {e.strerror}") from None

    def pread(self, size: int, offset: int) -> bytes:
        return os.pread(self.fd, size, offset)

    def preadinto(self, out: memoryview, offset: int) -> int:
        """Fill ``out`` from ``offset``; returns the bytes read (fewer at end of file)."""
        return os.preadv(self.fd, [out], offset)

    def pwrite(self, data, offset: int) -> None:
        done = os.pwrite(self.fd, data, offset)
        if done != len(memoryview(data).cast("B")):
            raise StorageError(f"{self.path}: short write at {offset}")

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def truncate(self, size: int) -> None:
        os.ftruncate(self.fd, size)

    def sync(self) -> None:
        fdatasync(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class HostDirectory:
    """A host directory as a :class:`Directory`."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def open(self, name: str, create: bool = False, readonly: bool = False) -> HostFile:
        return HostFile(self.path / name, create, readonly)

    def exists(self, name: str) -> bool:
        return (self.path / name).exists()

    def remove(self, name: str) -> None:
        os.remove(self.path / name)
        self._sync_dir()

    def rename(self, old: str, new: str) -> None:
        os.replace(self.path / old, self.path / new)
        self._sync_dir()

    def _sync_dir(self) -> None:
        fsync_dir(self.path)

    def describe(self, name: str) -> str:
        return str(self.path / name)
