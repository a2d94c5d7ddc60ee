"""An in-memory Directory: proves virtual disks need nothing but the file interface."""

from __future__ import annotations

from storage.errors import StorageError


class MemoryFile:
    def __init__(self, name: str, store: dict) -> None:
        self.name, self.store = name, store

    @property
    def buf(self) -> bytearray:
        return self.store[self.name]

    def pread(self, size: int, offset: int) -> bytes:
        return bytes(self.buf[offset:offset + size])

    def pwrite(self, data, offset: int) -> None:
        data = bytes(data)
        if len(self.buf) < offset:
            self.buf.extend(bytes(offset - len(self.buf)))
        self.buf[offset:offset + len(data)] = data

    def size(self) -> int:
        return len(self.buf)

    def truncate(self, size: int) -> None:
        del self.buf[size:]
        self.buf.extend(bytes(size - len(self.buf)))

    def sync(self) -> None:
        pass

    def close(self) -> None:
        pass


class MemoryDirectory:
    def __init__(self) -> None:
        self.files: dict[str, bytearray] = {}

    def open(self, name: str, create: bool = False, readonly: bool = False) -> MemoryFile:
        if create:
            if name in self.files:
                raise StorageError(f"mem:{name}: already exists")
            self.files[name] = bytearray()
        elif name not in self.files:
            raise StorageError(f"mem:{name}: cannot open: No such file")
        return MemoryFile(name, self.files)

    def exists(self, name: str) -> bool:
        return name in self.files

    def remove(self, name: str) -> None:
        del self.files[name]

    def rename(self, old: str, new: str) -> None:
        self.files[new] = self.files.pop(old)

    def describe(self, name: str) -> str:
        return f"mem:{name}"
