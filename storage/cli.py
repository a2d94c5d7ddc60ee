"""The storage commands of ``vmm``: storage, volume, fs and disk.

``register(subparsers)`` adds them to the ``vmm`` argparse parser; each handler takes
the parsed arguments and returns an exit status. Errors are one line on stderr and
status 1, never a traceback. The pool directory is ``--pool DIR``, else $VMM_POOL,
else ./pool.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table

from .errors import StorageError
from .fs import FileSystem, Rule
from .fsck import fsck
from .fsfile import FSDirectory
from .pool import Pool
from .vdisk import VirtualDisk
from .volume import VolumeManager

UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """'512', '64K', '1.5G', '10MiB' -> bytes (binary units)."""
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = t[-1] if t and t[-1] in UNITS else ""
    try:
        value = float(t[:-1] if unit else t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"not a size: {text!r}")
    return int(value * UNITS[unit])


def human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def console() -> Console:
    """Tables on stdout; wide when piped so scripts see whole cells."""
    return Console() if sys.stdout.isatty() else Console(width=200)


def pool_dir(args) -> Path:
    return Path(args.pool or os.environ.get("VMM_POOL") or "pool")


def handler(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn storage errors into one line on stderr and exit status 1."""
    @functools.wraps(fn)
    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except (StorageError, OSError) as e:
            msg = str(e) if isinstance(e, StorageError) else f"{getattr(e, 'filename', '') or ''}: {e.strerror or e}"
            print(f"vmm {args.storage_command}: {msg}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print(f"vmm {args.storage_command}: interrupted", file=sys.stderr)
            return 1
        except Exception as e:  # a bug of ours: still one line, never a traceback
            print(f"vmm {args.storage_command}: internal error: {type(e).__name__}: {e}",
                  file=sys.stderr)
            return 1
    return run


@contextmanager
def open_pool(args) -> Iterator[VolumeManager]:
    vm = VolumeManager.open(pool_dir(args))
    try:
        for w in vm.pool.warnings:
            print(f"vmm {args.storage_command}: warning: {w}", file=sys.stderr)
        yield vm
    finally:
        vm.close()


@contextmanager
def mounted(args) -> Iterator[FileSystem]:
    with open_pool(args) as vm:
        fs = FileSystem.mount(vm)
        try:
            yield fs
        finally:
            fs.close()


@contextmanager
def progress_bar(label: str, unit_bytes: bool = True) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar on stderr; yields a ``progress(done, total)`` callback."""
    cols = [TextColumn(label), BarColumn(), TextColumn("{task.percentage:>3.0f}%")]
    if unit_bytes:
        cols.append(TransferSpeedColumn())
    cols.append(TimeRemainingColumn())
    console = Console(stderr=True)
    with Progress(*cols, console=console, transient=True,
                  disable=not console.is_terminal) as bar:  # no bar noise in logs
        task = bar.add_task(label, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


# -- storage ------------------------------------------------------------------------------

@handler
def storage_init(args) -> int:
    d = pool_dir(args)
    if d.exists() and any(d.iterdir()):
        raise StorageError(f"{d}: not empty; a pool needs a fresh directory")
    pool = Pool.create(d, args.devices, args.size, args.name)
    print(f"pool {args.name} ({pool.meta.pool_id}): {args.devices} devices of {human(args.size)} in {d}")
    pool.close()
    return 0


@handler
def storage_status(args) -> int:
    with open_pool(args) as vm:
        pool = vm.pool
        table = Table(title=f"pool {pool.meta.name} ({pool.meta.pool_id})")
        for col in ("device", "file", "size", "free", "state"):
            table.add_column(col)
        for rec in pool.meta.devices:
            dev = pool.devices.get(rec.id)
            state = rec.state if dev is not None else "missing"
            table.add_row(rec.id[:8], dev.path.name if dev else "-", human(rec.size),
                          human(pool.free_bytes(rec.id)), state)
        console().print(table)
    return 0


@handler
def storage_fail(args) -> int:
    with open_pool(args) as vm:
        vm.fail_device(vm.pool.device_record(args.device).id)
    return 0


@handler
def storage_replace(args) -> int:
    with open_pool(args) as vm:
        old = vm.pool.device_record(args.device).id
        new = vm.replace_device(old, args.file, args.size)
        print(f"device {old[:8]} replaced by {new[:8]} ({args.file})")
        if not args.no_rebuild:
            with progress_bar("rebuild") as p:
                vm.rebuild(p)
    return 0


@handler
def storage_readd(args) -> int:
    with open_pool(args) as vm:
        vm.readd_device(args.device)
        with progress_bar("rebuild") as p:
            vm.rebuild(p)
        print(f"device {args.device} back in the pool")
    return 0


@handler
def storage_rebuild(args) -> int:
    with open_pool(args) as vm:
        with progress_bar("resume") as p:
            vm.resume(p)  # interrupted moves, then rebuilds
        states = {v.name: v.state() for v in vm.volumes.values()}
        print(", ".join(f"{n}: {st}" for n, st in states.items()) or "no volumes")
    return 0


# -- volume -------------------------------------------------------------------------------

@handler
def volume_create(args) -> int:
    with open_pool(args) as vm:
        vol = vm.create_volume(args.name, args.size, args.layout, args.tier, args.members,
                               args.stripe_unit)
        print(f"volume {vol.name}: {human(vol.size)} {vol.rec.layout} over "
              f"{len(vol.rec.members)} device(s), tier {vol.rec.tier}")
    return 0


@handler
def volume_grow(args) -> int:
    with open_pool(args) as vm:
        if args.size < vm.volume(args.name).size:
            raise StorageError(f"volume {args.name}: {human(args.size)} is smaller than its "
                               f"{human(vm.volume(args.name).size)}; grow only grows")
        vm.grow_volume(args.name, args.size)
        print(f"volume {args.name}: now {human(vm.volume(args.name).size)}")
    return 0


@handler
def volume_move(args) -> int:
    with open_pool(args) as vm:
        with progress_bar(f"move {args.name}") as p:
            vm.move_member(args.name, args.source, args.target, progress=p)
    return 0


@handler
def volume_status(args) -> int:
    with open_pool(args) as vm:
        table = Table(title="volumes")
        for col in ("name", "size", "layout", "tier", "members", "state", "reads", "writes",
                    "read p50/p99 us", "write p50/p99 us"):
            table.add_column(col)
        for row in vm.status():
            r, w = row["read_latency_us"], row["write_latency_us"]
            table.add_row(row["name"], human(row["size"]), row["layout"], row["tier"],
                          str(row["members"]), row["state"], str(row["reads"]), str(row["writes"]),
                          f"{r['p50']:.0f}/{r['p99']:.0f}", f"{w['p50']:.0f}/{w['p99']:.0f}")
        console().print(table)
    return 0


# -- fs -------------------------------------------------------------------------------------

@handler
def fs_mkfs(args) -> int:
    with open_pool(args) as vm:
        rules = [Rule(p.split("=", 1)[0], tier=p.split("=", 1)[1]) for p in args.rule or []]
        fs = FileSystem.mkfs(vm, args.volumes.split(","), args.meta, args.meta_size, rules)
        fs.close()
        print(f"file system on {', '.join(fs.volumes)} (metadata on {fs.meta.name})")
    return 0


@handler
def fs_ls(args) -> int:
    with mounted(args) as fs:
        ino = fs.lookup(args.path)
        if ino.kind == "file":
            print(f"{args.path}\t{ino.size}\t{ino.volume}")
            return 0
        for name in fs.listdir(args.path):
            child = fs.inodes[ino.entries[name]]
            if child.kind == "dir":
                print(f"{name}/")
            else:
                print(f"{name}\t{child.size}\t{child.volume}")
    return 0


@handler
def fs_mkdir(args) -> int:
    with mounted(args) as fs:
        fs.mkdir(args.path, parents=args.parents)
    return 0


@handler
def fs_fsck(args) -> int:
    with open_pool(args) as vm:
        fs = FileSystem.mount(vm)  # damage to superblock/checkpoint/journal raises here
        problems = fsck(fs)
        if fs.replayed:
            print(f"journal: {fs.replayed} record(s) replayed")
        for p in problems:
            print(p)
        print("clean" if not problems else f"{len(problems)} problem(s)")
        fs.close()
        return 0 if not problems else 1


# -- disk -----------------------------------------------------------------------------------

@contextmanager
def disk_dir(args) -> Iterator[tuple[object, str]]:
    """(Directory, base file name) for a disk path: a host path with --host, else in the pool."""
    if args.host:
        p = Path(args.disk)
        from .fileio import HostDirectory
        yield HostDirectory(p.parent), p.name
        return
    with mounted(args) as fs:
        parent, _, name = args.disk.rpartition("/")
        yield FSDirectory(fs, parent or "/"), name


@handler
def disk_create(args) -> int:
    with disk_dir(args) as (d, name):
        bs = args.block_size or 512
        n = -(-args.size // bs)
        VirtualDisk.create_in(d, name, n, bs).close()
        print(f"{args.disk}: {n} blocks of {bs} bytes")
    return 0


def _with_disk(action: Callable[[VirtualDisk, argparse.Namespace], None]):
    @handler
    def run(args) -> int:
        with disk_dir(args) as (d, name):
            disk = VirtualDisk.open_in(d, name, args.block_size)
            try:
                action(disk, args)
            finally:
                disk.close()
        return 0
    return run


def _snapshot(disk, args):
    print(disk.snapshot())


def _commit(disk, args):
    with progress_bar("commit", unit_bytes=False) as p:
        print(disk.commit(p))


def _revert(disk, args):
    print(disk.revert())


def _list(disk, args):
    print(f"{disk.num_blocks} blocks of {disk.block_size} bytes")
    for name in disk.chain():
        print(name)


def _export(disk, args):
    with progress_bar("export", unit_bytes=False) as p:
        disk.export_raw(args.target, p)


@handler
def disk_import(args) -> int:
    with disk_dir(args) as (d, name):
        size = os.path.getsize(args.source)
        bs = args.block_size or 512
        if size % bs:
            raise StorageError(f"{args.source}: size {size} is not a multiple of {bs}")
        disk = VirtualDisk.create_in(d, name, size // bs, bs)
        try:
            with open(args.source, "rb") as f, progress_bar("import") as p:
                done = 0
                while chunk := f.read(4 << 20):
                    if chunk.count(0) != len(chunk):
                        disk.write(done // bs, chunk)
                    done += len(chunk)
                    p(done, size)
        finally:
            disk.close()
    return 0


def register(subparsers) -> None:
    """Add the storage, volume, fs and disk commands to ``vmm``'s subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--pool", metavar="DIR", help="pool directory (default $VMM_POOL or ./pool)")

    st = subparsers.add_parser("storage", help="storage pool: init, status, device failures")
    sp = st.add_subparsers(dest="storage_action", required=True)
    p = sp.add_parser("init", parents=[common], help="create a pool of device files")
    p.add_argument("--devices", type=int, default=4)
    p.add_argument("--size", type=parse_size, default=parse_size("256M"), help="per device")
    p.add_argument("--name", default="pool")
    p.set_defaults(func=storage_init, storage_command="storage init")
    p = sp.add_parser("status", parents=[common], help="devices and their state")
    p.set_defaults(func=storage_status, storage_command="storage status")
    p = sp.add_parser("fail", parents=[common], help="mark a device failed (testing)")
    p.add_argument("device", help="device id (a prefix is enough)")
    p.set_defaults(func=storage_fail, storage_command="storage fail")
    p = sp.add_parser("replace", parents=[common], help="replace a device and rebuild")
    p.add_argument("device")
    p.add_argument("file", help="new device file")
    p.add_argument("--size", type=parse_size, default=None)
    p.add_argument("--no-rebuild", action="store_true")
    p.set_defaults(func=storage_replace, storage_command="storage replace")
    p = sp.add_parser("readd", parents=[common], help="take a failed device back and rebuild it")
    p.add_argument("device")
    p.set_defaults(func=storage_readd, storage_command="storage readd")
    p = sp.add_parser("rebuild", parents=[common], help="finish interrupted moves and rebuilds")
    p.set_defaults(func=storage_rebuild, storage_command="storage rebuild")

    vo = subparsers.add_parser("volume", help="volumes: create, grow, move, status")
    vp = vo.add_subparsers(dest="storage_action", required=True)
    p = vp.add_parser("create", parents=[common])
    p.add_argument("name")
    p.add_argument("--size", type=parse_size, required=True)
    p.add_argument("--layout", choices=["concat", "raid0", "raid1", "raid5"], default="concat")
    p.add_argument("--members", type=int)
    p.add_argument("--tier", default="default")
    p.add_argument("--stripe-unit", type=parse_size, default=64 * 1024)
    p.set_defaults(func=volume_create, storage_command="volume create")
    p = vp.add_parser("grow", parents=[common])
    p.add_argument("name")
    p.add_argument("--size", type=parse_size, required=True, help="new size")
    p.set_defaults(func=volume_grow, storage_command="volume grow")
    p = vp.add_parser("move", parents=[common], help="move a volume's member to another device")
    p.add_argument("name")
    p.add_argument("source", help="device id the member is on")
    p.add_argument("target", help="device id to move it to")
    p.set_defaults(func=volume_move, storage_command="volume move")
    p = vp.add_parser("status", parents=[common])
    p.set_defaults(func=volume_status, storage_command="volume status")

    fsp = subparsers.add_parser("fs", help="file system: mkfs, ls, mkdir, fsck")
    fp = fsp.add_subparsers(dest="storage_action", required=True)
    p = fp.add_parser("mkfs", parents=[common])
    p.add_argument("volumes", help="comma-separated volume names")
    p.add_argument("--meta", help="volume for the metadata (default: the first)")
    p.add_argument("--meta-size", type=parse_size, default=parse_size("4M"),
                   help="metadata area: superblocks, checkpoints, journal (default 4M)")
    p.add_argument("--rule", action="append", metavar="PREFIX=TIER",
                   help="place files under PREFIX on a volume of TIER")
    p.set_defaults(func=fs_mkfs, storage_command="fs mkfs")
    p = fp.add_parser("ls", parents=[common])
    p.add_argument("path", nargs="?", default="/")
    p.set_defaults(func=fs_ls, storage_command="fs ls")
    p = fp.add_parser("mkdir", parents=[common])
    p.add_argument("path")
    p.add_argument("-p", "--parents", action="store_true")
    p.set_defaults(func=fs_mkdir, storage_command="fs mkdir")
    p = fp.add_parser("fsck", parents=[common])
    p.set_defaults(func=fs_fsck, storage_command="fs fsck")

    dk = subparsers.add_parser("disk", help="virtual disks: create, snapshot, commit, ...")
    dp = dk.add_subparsers(dest="storage_action", required=True)
    dcommon = argparse.ArgumentParser(add_help=False, parents=[common])
    dcommon.add_argument("--host", action="store_true",
                         help="DISK is a host file path, not a path in the pool's file system")
    dcommon.add_argument("--block-size", type=int, choices=[512, 4096], default=None)
    p = dp.add_parser("create", parents=[dcommon])
    p.add_argument("disk", help="e.g. /vms/guest.dsk")
    p.add_argument("--size", type=parse_size, required=True)
    p.set_defaults(func=disk_create, storage_command="disk create")
    for action, fn, helptext in [("snapshot", _snapshot, "freeze the top, start a new overlay"),
                                 ("commit", _commit, "merge the top overlay into its parent"),
                                 ("revert", _revert, "throw the top overlay away"),
                                 ("list", _list, "show the chain")]:
        p = dp.add_parser(action, parents=[dcommon], help=helptext)
        p.add_argument("disk")
        p.set_defaults(func=_with_disk(fn), storage_command=f"disk {action}")
    p = dp.add_parser("import", parents=[dcommon], help="copy a raw image into a new disk")
    p.add_argument("source", help="raw image on the host")
    p.add_argument("disk")
    p.set_defaults(func=disk_import, storage_command="disk import")
    p = dp.add_parser("export", parents=[dcommon], help="write a disk out as a raw image")
    p.add_argument("disk")
    p.add_argument("target", help="raw image on the host")
    p.set_defaults(func=_with_disk(_export), storage_command="disk export")


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m storage.cli``) until ``vmm`` wires register()."""
    parser = argparse.ArgumentParser(prog="vmm")
    register(parser.add_subparsers(dest="top", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
