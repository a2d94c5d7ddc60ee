"""The disks of ``vmm run --disk PATH``: virtual disks of the storage virtualizer.

``PATH`` is either a raw image on the host, used in place as the ``.dsk`` base of a
virtual disk (as QEMU's ``format=raw`` uses it), or ``pool:NAME``, a virtual disk in the
file system of the storage pool in ``--pool DIR`` (default ``$VMM_POOL``, else
``./pool``). With ``--redo`` the run's writes land in a fresh overlay beside the disk,
which ``vmm disk commit`` or ``vmm disk revert`` resolves afterwards.
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from storage.errors import StorageError
from storage.vdisk import VirtualDisk

POOL_PREFIX = "pool:"


class DiskError(Exception):
    """A ``--disk`` that cannot be opened; the message names it and says why."""


@dataclass
class OpenedDisk:
    spec: str
    disk: VirtualDisk
    overlay: str | None  # the overlay --redo started, if any


def pool_directory(pool: str | None) -> Path:
    return Path(pool or os.environ.get("VMM_POOL") or "pool")


class DiskSet:
    """Opens the disks of one run, and the pool behind ``pool:`` disks, and closes all."""

    def __init__(self, pool: str | None = None) -> None:
        self.pool_dir = pool_directory(pool)
        self._stack = ExitStack()
        self._fs = None
        self.disks: list[OpenedDisk] = []

    def open(self, spec: str, redo: bool = False) -> OpenedDisk:
        try:
            disk = self._open_pool_disk(spec[len(POOL_PREFIX):]) if spec.startswith(POOL_PREFIX) \
                else self._open_host_disk(spec)
        except (StorageError, OSError) as exc:
            raise DiskError(f"--disk {spec}: {exc}") from None
        self._stack.callback(disk.close)
        overlay = None
        if redo:
            try:
                overlay = disk.snapshot()
            except StorageError as exc:
                raise DiskError(f"--disk {spec}: cannot start a redo overlay: {exc}") from None
        opened = OpenedDisk(spec, disk, overlay)
        self.disks.append(opened)
        return opened

    def _open_host_disk(self, spec: str) -> VirtualDisk:
        path = Path(spec)
        if not path.is_file():
            raise DiskError(f"--disk {spec}: no such file")
        return VirtualDisk.open(path)

    def _open_pool_disk(self, name: str) -> VirtualDisk:
        from storage.fs import FileSystem
        from storage.fsfile import FSDirectory
        from storage.volume import VolumeManager

        if self._fs is None:
            if not self.pool_dir.is_dir():
                raise DiskError(f"--disk pool:{name}: no storage pool in {self.pool_dir} (vmm storage init)")
            manager = VolumeManager.open(self.pool_dir)
            self._stack.callback(manager.close)
            manager.resume()  # finish a move or rebuild a crash interrupted
            self._fs = FileSystem.mount(manager)
            self._stack.callback(self._fs.close)
        parent, _, base = name.rpartition("/")
        if "." not in base:
            base += ".dsk"
        return VirtualDisk.open_in(FSDirectory(self._fs, parent or "/"), base)

    def flush(self) -> None:
        for opened in self.disks:
            opened.disk.flush()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._stack.close()
