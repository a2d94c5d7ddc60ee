"""The storage stack below the virtual SCSI disks.

Layers, bottom up: :mod:`storage.physical` (labelled host files), :mod:`storage.pool`
(a set of devices plus the volume table), :mod:`storage.volume` (concat / RAID 0/1/5
volumes), :mod:`storage.fs` (a journaled file system over the volumes),
:mod:`storage.vdisk` (virtual disks = raw base + redo overlays, on host files or on
files of that file system). Guide: docs/storage.md; formats: docs/storage-formats.md.
Nothing here imports ``vmm`` or ``devices`` (../shared/DESIGN.md).
"""
