"""An initramfs for Linux: a gzip-compressed cpio archive in the "newc" format.

The newc format (the kernel's Documentation/driver-api/early-userspace/buffer-format.rst):
each entry is a 110-byte ASCII header — the magic "070701" and thirteen 8-digit hex
fields — then the path name with its NUL, padded to a multiple of 4 bytes counted from
the start of the header, then the data, padded to a multiple of 4. An entry named
"TRAILER!!!" ends the archive. Everything is written with fixed owners and mtimes and in
sorted order, so the same inputs always give the same bytes.
"""

from __future__ import annotations

import gzip
import io
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from guests.linux.modules import read_module_bytes

NEWC_MAGIC = b"070701"
TRAILER = "TRAILER!!!"
# Applets the /init scripts use; enough when the busybox binary cannot run on this host
# to list its own applets.
FALLBACK_APPLETS = (
    "sh ash mount umount insmod rmmod lsmod dd cmp md5sum sha256sum echo cat ifconfig ip "
    "ping sleep printf hexdump od sync poweroff reboot halt mkdir ls grep awk sed head "
    "tail wc tr cut seq test [ [[ true false dmesg uname"
).split()


@dataclass(frozen=True)
class CpioEntry:
    """One archive member: its path (no leading '/'), full st_mode and contents."""

    path: str
    mode: int
    data: bytes = b""


def align4(length: int) -> int:
    return (length + 3) & ~3


def newc_entry(entry: CpioEntry, inode: int) -> bytes:
    """The bytes of one newc member (header, padded name, padded data)."""
    name = entry.path.encode() + b"\0"
    is_dir = stat.S_ISDIR(entry.mode)
    fields = (
        inode,
        entry.mode,
        0,  # uid: root
        0,  # gid: root
        2 if is_dir else 1,  # nlink
        0,  # mtime: fixed so the output is reproducible
        len(entry.data),
        0,  # devmajor
        0,  # devminor
        0,  # rdevmajor (no device nodes: /init mounts devtmpfs)
        0,  # rdevminor
        len(name),
        0,  # check: only used by the "070702" CRC variant
    )
    header = NEWC_MAGIC + b"".join(b"%08X" % value for value in fields)
    head = header + name
    head += b"\0" * (align4(len(head)) - len(head))
    return head + entry.data + b"\0" * (align4(len(entry.data)) - len(entry.data))


class CpioArchive:
    """Collects entries by path; `to_bytes` writes them sorted, parents before children."""

    def __init__(self) -> None:
        self.entries: dict[str, CpioEntry] = {}

    @staticmethod
    def _clean(path: str) -> str:
        clean = str(PurePosixPath("/", path)).lstrip("/")
        if not clean or clean == TRAILER or ".." in PurePosixPath(clean).parts:
            raise ValueError(f"bad archive path {path!r}")
        return clean

    def _add(self, path: str, mode: int, data: bytes = b"") -> None:
        path = self._clean(path)
        parent = str(PurePosixPath(path).parent)
        if parent != ".":
            self.add_directory(parent)
        existing = self.entries.get(path)
        if existing is not None and not (stat.S_ISDIR(existing.mode) and stat.S_ISDIR(mode)):
            raise ValueError(f"{path!r} added twice")
        self.entries[path] = CpioEntry(path, mode, data)

    def add_directory(self, path: str, mode: int = 0o755) -> None:
        """A directory; its parents are added too."""
        path = self._clean(path)
        if path not in self.entries:
            self._add(path, stat.S_IFDIR | mode)

    def add_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self._add(path, stat.S_IFREG | mode, data)

    def add_symlink(self, path: str, target: str) -> None:
        # A symlink's data is its target, without a NUL.
        self._add(path, stat.S_IFLNK | 0o777, target.encode())

    def to_bytes(self) -> bytes:
        """The uncompressed archive. Sorting by path puts each directory before what is in
        it; inode numbers count up from 1 in that order."""
        out = io.BytesIO()
        for inode, path in enumerate(sorted(self.entries), start=1):
            out.write(newc_entry(self.entries[path], inode))
        out.write(newc_entry(CpioEntry(TRAILER, 0), 0))
        return out.getvalue()

    def to_gzip(self) -> bytes:
        # mtime=0 and no file name in the gzip header: same inputs, same bytes.
        return gzip.compress(self.to_bytes(), compresslevel=9, mtime=0)


def busybox_applets(busybox: Path) -> list[str]:
    """The applets this busybox provides (`busybox --list`), or a fixed list of the ones
    /init uses when the binary cannot run here (it is an i386 static binary, which an
    x86_64 host normally runs)."""
    try:
        result = subprocess.run(
            [str(busybox), "--list"], capture_output=True, text=True, timeout=30, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return list(FALLBACK_APPLETS)
    applets = [name for name in result.stdout.split() if "/" not in name]
    return applets or list(FALLBACK_APPLETS)


def build_initramfs(
    out_path: Path,
    busybox: Path,
    modules: list[Path],
    init_script: str,
    extra_files: dict[str, bytes] | None = None,
    applets: list[str] | None = None,
) -> Path:
    """Write a gzip-compressed initramfs to `out_path` and return it.

    Layout: /init (0755) from `init_script`; /bin/busybox with a /bin symlink for each
    applet (default: every applet it lists); /lib/modules/<name>.ko for each module, given
    in load order, and /lib/modules/load-order naming them one a line in that order;
    empty /dev /proc /sys /tmp; `extra_files` at the paths given, mode 0755 when the
    contents are a script ("#!") or an ELF program, 0644 otherwise.
    """
    archive = CpioArchive()
    for directory in ("bin", "dev", "proc", "sys", "tmp", "lib/modules"):
        archive.add_directory(directory)
    archive.add_file("init", init_script.encode(), mode=0o755)
    archive.add_file("bin/busybox", Path(busybox).read_bytes(), mode=0o755)
    for applet in applets if applets is not None else busybox_applets(Path(busybox)):
        if applet != "busybox":
            archive.add_symlink(f"bin/{applet}", "busybox")

    load_order = []
    for module in modules:
        module = Path(module)
        # Stored uncompressed: busybox insmod hands the bytes straight to the kernel.
        file_name = module.name.split(".ko")[0] + ".ko"
        archive.add_file(f"lib/modules/{file_name}", read_module_bytes(module))
        load_order.append(file_name)
    archive.add_file("lib/modules/load-order", "".join(f"{n}\n" for n in load_order).encode())

    for path, data in (extra_files or {}).items():
        mode = 0o755 if data.startswith((b"#!", b"\x7fELF")) else 0o644
        archive.add_file(path, data, mode=mode)

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_bytes(archive.to_gzip())
    return out_path
