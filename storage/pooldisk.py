"""Open a virtual disk that lives in a pool's file system, in one call.

For the SCSI disk and the command line: assembles the pool, mounts its file system
and opens the disk; closing the disk unmounts and closes the pool again.
"""

from __future__ import annotations

import os

from .fs import FileSystem
from .fsfile import FSDirectory
from .vdisk import VirtualDisk
from .volume import VolumeManager


def open_pool_disk(pool: str | os.PathLike, path: str, block_size: int | None = None,
                   readonly: bool = False) -> VirtualDisk:
    """The disk at ``path`` (e.g. "/vms/guest.dsk") in the pool whose devices are in
    directory ``pool``. ``disk.close()`` also unmounts the file system and the pool."""
    vm = VolumeManager.open(pool)
    try:
        vm.resume()  # moves and rebuilds a restart interrupted
        fs = FileSystem.mount(vm)
        try:
            parent, _, name = path.rpartition("/")
            disk = VirtualDisk.open_in(FSDirectory(fs, parent or "/"), name, block_size, readonly)
        except BaseException:
            fs.close()
            raise
    except BaseException:
        vm.close()
        raise
    disk.on_close.extend([fs.close, vm.close])
    return disk
