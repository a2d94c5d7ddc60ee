"""Host durability calls in one place, so tests can turn real fsync off.

Crash-consistency tests model persistence themselves (storage.crashsim); they and
other unit tests set ``HOST_FSYNC = False`` to avoid waiting on the host's disk.
"""

from __future__ import annotations

import os

HOST_FSYNC = True


def fdatasync(fd: int) -> None:
    """Flush a file's data to the host's storage (unless turned off for tests)."""
    if HOST_FSYNC:
        os.fdatasync(fd)


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a directory's entries (renames, removals) durable."""
    if not HOST_FSYNC:
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
