"""fsck: check a mounted file system's metadata and report every inconsistency.

Damage to the superblock, checkpoint or journal is found (and refused) by mounting;
this checks what a well-formed metadata can still get wrong: the namespace tree,
inode fields, and extents (alignment, bounds, overlaps between files).
"""

from __future__ import annotations

from .fs import ROOT, UNIT, FileSystem


def fsck(fs: FileSystem) -> list[str]:
    """One line per problem found; an empty list means the file system is clean."""
    problems: list[str] = []
    problems += _check_tree(fs)
    problems += _check_inodes(fs)
    problems += _check_extents(fs)
    return problems


def _check_tree(fs: FileSystem) -> list[str]:
    out = []
    root = fs.inodes.get(ROOT)
    if root is None or root.kind != "dir":
        return ["root directory missing or not a directory"]
    seen = {ROOT}
    stack = [(ROOT, "/")]
    while stack:
        dino, dpath = stack.pop()
        for name, child in sorted(fs.inodes[dino].entries.items()):
            path = dpath.rstrip("/") + "/" + name
            if not name or "/" in name:
                out.append(f"{path}: invalid name {name!r}")
            ino = fs.inodes.get(child)
            if ino is None:
                out.append(f"{path}: entry points to missing inode {child}")
                continue
            if child in seen:
                out.append(f"{path}: inode {child} linked more than once (or a directory loop)")
                continue
            seen.add(child)
            if ino.parent != dino:
                out.append(f"{path}: inode {child} says its parent is {ino.parent}, not {dino}")
            if ino.kind == "dir":
                stack.append((child, path))
    for ino in sorted(set(fs.inodes) - seen):
        out.append(f"inode {ino}: not reachable from / (orphan)")
    return out


def _check_inodes(fs: FileSystem) -> list[str]:
    out = []
    for n, ino in sorted(fs.inodes.items()):
        if n >= fs.next_ino:
            out.append(f"inode {n}: number not below next free inode {fs.next_ino}")
        if ino.kind == "dir":
            if ino.extents or ino.size:
                out.append(f"inode {n}: directory with data extents or size")
        elif ino.kind == "file":
            if ino.entries:
                out.append(f"inode {n}: file with directory entries")
            if ino.volume not in fs.volumes:
                out.append(f"inode {n}: on volume {ino.volume!r}, not part of the file system")
            if ino.size < 0:
                out.append(f"inode {n}: negative size {ino.size}")
        else:
            out.append(f"inode {n}: unknown kind {ino.kind!r}")
    return out


def _check_extents(fs: FileSystem) -> list[str]:
    out = []
    owners: dict[str, list[tuple[int, int, str]]] = {v: [] for v in fs.volumes}
    owners.setdefault(fs.meta.name, []).append((0, fs.sb.meta_size, "file system metadata"))
    for n, ino in sorted(fs.inodes.items()):
        if ino.kind != "file" or ino.volume not in fs.volumes:
            continue
        size = fs.vm.volume(ino.volume).size
        prev_end = 0
        for foff, voff, ln in ino.extents:
            what = f"inode {n}: extent file {foff}+{ln} at {ino.volume}:{voff}"
            if foff % UNIT or voff % UNIT or ln % UNIT or ln <= 0:
                out.append(f"{what}: not aligned to {UNIT}-byte units")
            if voff < 0 or voff + ln > size:
                out.append(f"{what}: outside the volume ({size} bytes)")
            if foff < prev_end:
                out.append(f"{what}: overlaps the previous extent of the file")
            if foff >= -(-ino.size // UNIT) * UNIT:
                out.append(f"{what}: beyond the end of the file ({ino.size} bytes)")
            prev_end = foff + ln
            owners[ino.volume].append((voff, ln, f"inode {n}"))
    for vol, ranges in owners.items():
        ranges.sort()
        reach, holder = 0, ""
        for b, bl, bw in ranges:  # compare each range with the furthest-reaching before it
            if b < reach:
                out.append(f"volume {vol}: {holder} and {bw} both use bytes {b}-{min(reach, b + bl) - 1}")
            if b + bl > reach:
                reach, holder = b + bl, bw
    return out
