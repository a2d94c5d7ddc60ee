"""Checkpoints for failover: a VM image plus disk snapshot points, taken while the VM
runs, the last K kept; and restarting a VM from its newest checkpoint after its unit or
its whole host process died.

A checkpoint is taken at a slice boundary (the same instant a suspend writes): every
disk is flushed and gets a snapshot point, the image is written (atomically, fsync'd),
and then a small manifest ``ckpt-NNNNNN.json`` beside ``ckpt-NNNNNN.image`` records the
disks' chains and how many bytes of console output the VM had written. The manifest is
written last, so a checkpoint exists only once all of it is durable.

Restarting undoes whatever happened after the checkpoint: on each disk, the overlays
made above the checkpoint's chain are reverted, and the checkpoint's own top overlay
(which received the writes made after it) is emptied; the console file is cut back to
the recorded length; then the image is resumed. Every write the guest saw completed
before the checkpoint is below its snapshot point, so none is lost.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from vmm.image import ImageError

MANIFEST_VERSION = 1


class CheckpointError(Exception):
    """No usable checkpoint, or a disk that no longer continues it; says which and why."""


@dataclass
class Checkpoint:
    """One checkpoint on disk: its manifest, read back."""

    seq: int
    image: Path
    manifest: Path
    disks: list[dict[str, Any]]  # [{"spec": ..., "chain": [...]}] as the image records them
    pool: str | None
    serial: str | None  # the console file, None for stdio
    serial_offset: int | None
    taken_at: float


class CheckpointStore:
    """The checkpoints of one VM, in one directory: ``ckpt-NNNNNN.{image,json}``."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def _paths(self, seq: int) -> tuple[Path, Path]:
        stem = self.directory / f"ckpt-{seq:06d}"
        return stem.with_suffix(".image"), stem.with_suffix(".json")

    def checkpoints(self) -> list[Checkpoint]:
        """Every checkpoint whose manifest is readable, oldest first."""
        found = []
        if not self.directory.is_dir():
            return found
        for manifest in sorted(self.directory.glob("ckpt-*.json")):
            try:
                found.append(self._read(manifest))
            except CheckpointError:
                continue
        return sorted(found, key=lambda c: c.seq)

    def _read(self, manifest: Path) -> Checkpoint:
        try:
            plain = json.loads(manifest.read_text())
            if plain.get("version") != MANIFEST_VERSION:
                raise CheckpointError(f"{manifest}: manifest version {plain.get('version')} is not {MANIFEST_VERSION}")
            return Checkpoint(
                seq=int(plain["seq"]),
                image=self.directory / plain["image"],
                manifest=manifest,
                disks=list(plain["disks"]),
                pool=plain.get("pool"),
                serial=plain.get("serial"),
                serial_offset=plain.get("serial_offset"),
                taken_at=float(plain["taken_at"]),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{manifest}: damaged checkpoint manifest ({exc})") from None

    def next_seq(self) -> int:
        existing = [int(p.stem.split("-", 1)[1]) for p in self.directory.glob("ckpt-*.json")
                    if p.stem.split("-", 1)[1].isdigit()]
        return max(existing, default=0) + 1

    def take(self, machine, serial_offset: int | None) -> Checkpoint:
        """Checkpoint ``machine`` now. Call at a slice boundary (the run loop's thread)."""
        from vmm.snapshot import suspend

        self.directory.mkdir(parents=True, exist_ok=True)
        seq = self.next_seq()
        image, manifest = self._paths(seq)
        suspend(machine, image)  # flushes the disks, adds snapshot points, writes the image
        disks = []
        if machine.disk_set is not None:
            disks = [{"spec": d.spec, "chain": d.disk.chain(), "geometry": _geometry(d.disk)}
                     for d in machine.disk_set.disks]
        serial = None if machine.config.serial == "stdio" else str(Path(machine.config.serial).resolve())
        plain = {
            "version": MANIFEST_VERSION,
            "seq": seq,
            "image": image.name,
            "disks": disks,
            "pool": machine.config.pool,
            "serial": serial,
            "serial_offset": serial_offset,
            "taken_at": time.time(),
        }
        _write_atomically(manifest, json.dumps(plain, indent=1).encode())
        return self._read(manifest)

    def prune(self, keep: int) -> None:
        """Delete all but the newest ``keep`` checkpoints (manifest first, then image)."""
        for old in self.checkpoints()[:-keep] if keep > 0 else []:
            for path in (old.manifest, old.image):
                try:
                    path.unlink()
                except FileNotFoundError:
                    pass

    def newest(self) -> Checkpoint:
        found = self.checkpoints()
        if not found:
            raise CheckpointError(f"{self.directory}: no checkpoint to restart from")
        return found[-1]


def prepare_disks(checkpoint: Checkpoint) -> None:
    """Put every disk back to the instant of ``checkpoint``: drop the overlays above its
    chain and empty its top overlay, which took the writes made after it.

    For a raw image on the host nothing after the checkpoint is read: the overlays above
    are removed by name and the top is replaced, atomically, by an empty overlay of the
    same name (a host process killed mid-write may have left either damaged). A pool
    disk's overlays are reverted through the virtual disk. Either way, a disk whose
    checkpoint overlay is gone (committed or reverted since) is refused untouched.
    """
    from storage.errors import StorageError
    from vmm.disks import POOL_PREFIX, DiskError, DiskSet

    for recorded in checkpoint.disks:
        spec, chain = recorded["spec"], list(recorded["chain"])
        if len(chain) < 2:
            raise CheckpointError(f"{checkpoint.manifest}: disk {spec} has no snapshot point")
        try:
            emptied = not spec.startswith(POOL_PREFIX) and _empty_top_overlay(checkpoint, recorded)
            disks = DiskSet(checkpoint.pool)
            try:
                disk = disks.open(spec).disk
                now = disk.chain()
                if now[: len(chain)] != chain:
                    raise CheckpointError(_moved_on(checkpoint, spec, now, chain))
                if not emptied:
                    while len(disk.chain()) >= len(chain):
                        disk.revert()
                    disk.snapshot()
                if disk.chain() != chain:
                    raise CheckpointError(f"disk {spec}: chain {disk.chain()} after restoring, expected {chain}")
            finally:
                disks.close()
        except (DiskError, StorageError, OSError) as exc:
            raise CheckpointError(f"checkpoint {checkpoint.seq}: {exc}") from None


def _moved_on(checkpoint: Checkpoint, spec: str, now: list[str], chain: list[str]) -> str:
    return (f"disk {spec} no longer continues checkpoint {checkpoint.seq} "
            f"(chain {now}, the checkpoint refers to {chain})")


def _empty_top_overlay(checkpoint: Checkpoint, recorded: dict[str, Any]) -> bool:
    """A raw image's overlays above the checkpoint removed (top first, so what is left is
    always a chain), and its checkpoint overlay replaced by an empty one (True), or left
    to the generic revert when the manifest lacks the overlay geometry (False)."""
    from storage.fileio import HostDirectory
    from storage.redo import RedoFile
    from storage.vdisk import overlay_name

    spec, chain = recorded["spec"], recorded["chain"]
    base = Path(spec)
    stem = base.name.rsplit(".", 1)[0] if "." in base.name else base.name
    top_index = len(chain) - 2
    if chain[1:] != [overlay_name(stem, i) for i in range(top_index + 1)]:
        raise CheckpointError(f"{checkpoint.manifest}: disk {spec} has a chain {chain} this vmm does not make")
    present = [name for name in chain if (base.parent / name).exists()]
    if present != chain:
        now = [base.name] + [overlay_name(stem, i) for i in range(top_index + 2)
                             if (base.parent / overlay_name(stem, i)).exists()]
        raise CheckpointError(_moved_on(checkpoint, spec, now, chain))
    above = top_index + 1
    while (base.parent / overlay_name(stem, above)).exists():
        above += 1
    for i in range(above - 1, top_index, -1):
        (base.parent / overlay_name(stem, i)).unlink()
    geometry = recorded.get("geometry")
    if geometry is None:
        return False
    empty = RedoFile.create(HostDirectory(base.parent), chain[-1], chain[-2],
                            geometry["block_size"], geometry["num_blocks"], geometry["cluster_size"])
    empty.close()
    return True


def restore_console(checkpoint: Checkpoint) -> None:
    """Cut the console file back to what the VM had printed at the checkpoint."""
    if checkpoint.serial is None or checkpoint.serial_offset is None:
        return
    path = Path(checkpoint.serial)
    with open(path, "ab") as f:
        f.truncate(checkpoint.serial_offset)


def restart(checkpoint: Checkpoint, serial_out):
    """A machine continuing from ``checkpoint``, its disks and console put back first."""
    from vmm.snapshot import resume

    prepare_disks(checkpoint)
    restore_console(checkpoint)
    try:
        return resume(checkpoint.image, serial_out=serial_out)
    except ImageError as exc:
        raise CheckpointError(str(exc)) from None


class Checkpointer:
    """Asks for a checkpoint every ``every`` seconds (a thread); the run loop takes it at
    its next slice boundary through ``request`` and calls :meth:`take_now` there."""

    def __init__(self, store: CheckpointStore, every: float, keep: int,
                 request: Callable[[Callable[[], None]], None], take: Callable[[], Checkpoint]) -> None:
        if every <= 0 or keep <= 0:
            raise ValueError("checkpoints need a positive interval and keep count")
        self.store = store
        self.every = every
        self.keep = keep
        self.taken = 0
        self.last: Checkpoint | None = None
        self.error: str | None = None
        self._request = request
        self._take = take
        self._done = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, name="vmm-checkpoints", daemon=True)
        self._thread.start()

    def _tick(self) -> None:
        # The interval runs from the end of one checkpoint to the request of the next: a
        # checkpoint that takes longer than ``every`` must not leave the guest no time.
        while not self._stop.wait(self.every):
            self._done.clear()
            self._request(self.take_now)
            self._done.wait()  # set by take_now, or by stop() when the VM is gone

    def take_now(self) -> None:
        """In the run loop, between slices."""
        try:
            if not self._stop.is_set():
                self.last = self._take()
                self.taken += 1
                self.store.prune(self.keep)
        except Exception as exc:  # a failed checkpoint must not stop the VM
            self.error = f"checkpoint failed: {type(exc).__name__}: {exc}"
        finally:
            self._done.set()

    def stop(self) -> None:
        self._stop.set()
        self._done.set()


def _geometry(disk) -> dict[str, int]:
    """What an empty overlay of ``disk`` is made with."""
    return {"block_size": disk.block_size, "num_blocks": disk.num_blocks, "cluster_size": disk.layers[0].cs}


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)
    try:
        directory = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
