"""Exceptions of the storage stack: one base class so callers can catch all of it."""

from __future__ import annotations


class StorageError(Exception):
    """Any refusal or failure of the storage stack; the message is one readable line."""


class LabelError(StorageError):
    """A device label (or pool metadata) is missing or damaged; nothing is written."""


class DeviceIOError(StorageError):
    """One I/O on a physical device failed (injected fault or host error)."""

    def __init__(self, device: str, message: str) -> None:
        super().__init__(f"{device}: {message}")
        self.device = device


class DeviceFailedError(DeviceIOError):
    """The device is marked failed: every I/O on it is refused."""


class VolumeError(StorageError):
    """A volume cannot serve the request (too many failed members, bad range, ...)."""


class IntegrityError(StorageError):
    """Stored data does not match its checksum: the data is refused, never returned."""


class FormatError(StorageError):
    """A file's on-disk format is damaged or not what it claims to be."""


class BlockRangeError(StorageError):
    """A virtual disk request outside the disk or not a whole number of blocks."""
