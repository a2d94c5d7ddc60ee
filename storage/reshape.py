"""Changing volumes in place: resize (grow/shrink) and moving a member to another device.

A move copies the member's extent to the target device step by step while the volume
stays in use: writes below the copy watermark go to both places (see
:meth:`storage.raid.Members.write`), and the watermark is saved in the pool metadata,
so a move interrupted by a crash resumes where it stopped and loses nothing.
"""

from __future__ import annotations

from typing import Callable

from .errors import StorageError
from .raid import member_length

CHECKPOINT = 16 * 1024 * 1024
STEP = 4 * 1024 * 1024


def resize(vm, name: str, size: int) -> None:
    """Grow or shrink a volume; grown space reads as zeros, shrunk space is given back."""
    from .volume import Volume, _zero_extent
    vol = vm.volume(name)
    rec = vol.rec
    if size <= 0:
        raise StorageError(f"volume {name}: size must be positive, not {size}")
    if any(m.state != "ok" or m.move for m in rec.members):
        raise StorageError(f"volume {name}: cannot resize while degraded, rebuilding or moving")
    vol.flush()
    n = len(rec.members)
    if rec.layout == "concat":
        _resize_concat(vm, rec, size)
    else:
        want = member_length(rec.layout, size, n, rec.stripe_unit, rec.bitmap_bytes)[0]
        for m in rec.members:
            if want > m.length:
                after = [(o, ln) for o, ln in vm.pool.free_extents(m.device) if o == m.offset + m.length]
                if not after or after[0][1] < want - m.length:
                    raise StorageError(f"volume {name}: device {m.device[:8]} has no free space "
                                       f"right after the volume's extent to grow into")
        for m in rec.members:
            if want > m.length:
                _zero_extent(vm.pool.devices[m.device], m.offset + m.length, want - m.length)
            m.length = want
    rec.size = size
    vm.pool.save()
    new = Volume(vm, rec)
    new.stats = vol.stats
    vm.volumes[name] = new
    if new.bitmap is not None:
        new._store_bitmap(sync=True)


def _resize_concat(vm, rec, size: int) -> None:
    from .volume import _zero_extent
    total = sum(m.length for m in rec.members)
    if size > total:
        extra = size - total
        last = rec.members[-1]
        after = [(o, ln) for o, ln in vm.pool.free_extents(last.device) if o == last.offset + last.length]
        grow = min(extra, after[0][1]) if after else 0
        if grow:
            _zero_extent(vm.pool.devices[last.device], last.offset + last.length, grow)
            last.length += grow
            extra -= grow
        if extra:
            (new,) = vm.pool.allocate(extra, 1)
            _zero_extent(vm.pool.devices[new.device], new.offset, new.length)
            rec.members.append(new)
    else:
        keep, out = size, []
        for m in rec.members:
            if keep <= 0:
                break
            m.length = min(m.length, keep)
            keep -= m.length
            out.append(m)
        rec.members[:] = out


def move_member(vm, name: str, source: str, target: str,
                progress: Callable[[int, int], None] | None = None, step: int = STEP) -> None:
    """Move the member of volume ``name`` on device ``source`` to device ``target``.

    Resumes an interrupted move of the same member. Reads and writes may go on between
    steps (``progress`` is called after each one).
    """
    vol = vm.volume(name)
    src = vm.pool.device_record(source).id
    tgt = vm.pool.device_record(target).id
    idx = next((i for i, m in enumerate(vol.rec.members) if m.device == src), None)
    if idx is None:
        raise StorageError(f"volume {name} has no member on device {src[:8]}")
    rec = vol.rec.members[idx]
    if rec.move is None:
        if rec.state != "ok":
            raise StorageError(f"volume {name}: member on {src[:8]} is {rec.state}; rebuild it instead")
        if vol.rec.layout != "concat" and any(m.device == tgt for m in vol.rec.members):
            raise StorageError(f"volume {name} already has a member on device {tgt[:8]}: "
                               f"two members on one device would lose redundancy")
        (ext,) = vm.pool.allocate(rec.length, 1, exclude=[d for d in vm.pool.devices if d != tgt],
                                  align=vol.rec.stripe_unit)
        rec.move = {"device": tgt, "offset": ext.offset, "copied": 0}
        vm.pool.save()
    elif rec.move["device"] != tgt:
        raise StorageError(f"volume {name}: member on {src[:8]} is already moving to "
                           f"{rec.move['device'][:8]}")
    resume_move(vm, vol, idx, progress, step)


def resume_move(vm, vol, idx: int, progress=None, step: int = STEP) -> None:
    """Copy the rest of a member being moved, then switch the volume over to it."""
    rec = vol.rec.members[idx]
    dev = vm.pool.device(rec.move["device"])
    if dev is None:
        raise StorageError(f"volume {vol.name}: move target {rec.move['device'][:8]} is unavailable")
    vol.members.targets[idx] = dev
    while rec.move["copied"] < rec.length:
        start = rec.move["copied"]
        n = min(step, rec.length - start)
        data = vol.members.read(idx, start, n)
        dev.write(rec.move["offset"] + start, data)
        rec.move["copied"] = start + n
        if rec.move["copied"] // CHECKPOINT != start // CHECKPOINT:
            dev.sync()
            vm.pool.save()
        if progress is not None:
            progress(rec.move["copied"], rec.length)
    dev.sync()
    rec.device, rec.offset, rec.move = rec.move["device"], rec.move["offset"], None
    vol.members.devices[idx] = dev
    vol.members.targets.pop(idx, None)
    vm.pool.save()  # the switch: from here on the old extent is free space
    if progress is not None:
        progress(rec.length, rec.length)


def pending_moves(vm) -> list[tuple[str, int]]:
    """(volume, member index) of moves interrupted by a restart."""
    return [(v.name, i) for v in vm.volumes.values() for i, m in enumerate(v.rec.members) if m.move]
