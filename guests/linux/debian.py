"""Fetch Debian's 32-bit Linux kernel and a static busybox into a local cache.

The cache (`.cache/debian` in the repository, git-ignored) holds the unpacked packages
and a versions.json naming exactly which package versions they came from:

    debs/                 the downloaded .deb files
    kernel/boot/vmlinuz-<release>, kernel/lib/modules/<release>/...
    busybox/bin/busybox
    versions.json         written last: its presence means the cache is complete

    python -m guests.linux.debian fetch [--setup] [--from-debs DIR] [--refresh]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache" / "debian"
ARCH = "i386"
KERNEL_PACKAGE = re.compile(r"^linux-image-6\.1\.0-(\d+)-686-unsigned$")
KERNEL_PACKAGE_PREFIX = "linux-image-6.1.0-"
BUSYBOX_PACKAGE = "busybox-static"
VERSIONS_FILE = "versions.json"
# What a test skip message tells the reader to run (from the repository, as root).
FETCH_COMMAND = (
    "dpkg --add-architecture i386 && apt-get update && "
    ".venv/bin/python -m guests.linux.debian fetch"
)
SETUP_FETCH_COMMAND = ".venv/bin/python -m guests.linux.debian fetch --setup"


class FetchError(Exception):
    """The packages could not be found, downloaded or unpacked; the message says why."""


@dataclass(frozen=True)
class Package:
    name: str
    version: str


@dataclass(frozen=True)
class DebianLinux:
    """An unpacked kernel and busybox, ready to build an initramfs and boot."""

    vmlinuz: Path
    modules_dir: Path  # lib/modules/<release>
    busybox: Path
    kernel_release: str  # as `uname -r` prints it, e.g. 6.1.0-50-686
    kernel_package: Package
    busybox_package: Package


def run(command: list[str], cwd: Path | None = None, capture: bool = True) -> str:
    """Run a host tool; its progress goes to stderr, its failure becomes a FetchError."""
    try:
        result = subprocess.run(
            command,
            cwd=cwd,
            stdout=subprocess.PIPE if capture else 2,  # progress to our stderr
            stderr=subprocess.PIPE,
            text=True,
        )
    except FileNotFoundError:
        raise FetchError(f"{command[0]} not found: fetching needs a Debian host") from None
    if result.returncode != 0:
        raise FetchError(
            f"{' '.join(command)} failed with status {result.returncode}: "
            f"{result.stderr.strip()}"
        )
    return result.stdout if capture else ""


def kernel_abi(package_name: str) -> int | None:
    """The ABI number of a `linux-image-6.1.0-<abi>-686-unsigned` name, else None."""
    match = KERNEL_PACKAGE.match(package_name.removesuffix(f":{ARCH}"))
    return int(match.group(1)) if match else None


def candidate_version(package: str) -> str | None:
    """The version `apt-get download` would fetch for `package` (name:arch), or None."""
    output = run(["apt-cache", "policy", package])
    match = re.search(r"^\s*Candidate:\s*(\S+)", output, re.MULTILINE)
    if match is None or match.group(1) == "(none)":
        return None
    return match.group(1)


def newest_kernel_package() -> Package:
    """The highest-ABI `linux-image-6.1.0-*-686-unsigned` apt can fetch for i386."""
    names = run(["apt-cache", "pkgnames", KERNEL_PACKAGE_PREFIX]).split()
    # Numeric order: ABI 100 is newer than ABI 99.
    kernels = [name for name in names if kernel_abi(name) is not None]
    for name in sorted(kernels, key=kernel_abi, reverse=True):
        version = candidate_version(f"{name}:{ARCH}")
        if version is not None:
            return Package(name, version)
    raise FetchError(
        "apt knows no linux-image-6.1.0-*-686-unsigned package for i386; run as root: "
        "dpkg --add-architecture i386 && apt-get update"
    )


def deb_package(deb: Path) -> tuple[Package, str]:
    """The package name and version a .deb holds, and its architecture."""
    show_format = "--showformat=${Package}\t${Version}\t${Architecture}"
    fields = run(["dpkg-deb", show_format, "--show", str(deb)])
    name, version, architecture = fields.strip().split("\t")
    return Package(name, version), architecture


def version_compare(a: str, b: str) -> int:
    """Debian version order, as dpkg defines it."""
    if a == b:
        return 0
    less = subprocess.run(["dpkg", "--compare-versions", a, "lt", b]).returncode == 0
    return -1 if less else 1


def newest_local_debs(directory: Path) -> list[Path]:
    """The newest kernel .deb and the newest busybox-static .deb for i386 in `directory`."""
    kernels: list[tuple[int, Path]] = []
    busyboxes: list[tuple[str, Path]] = []
    for deb in sorted(Path(directory).glob("*.deb")):
        package, architecture = deb_package(deb)
        if architecture != ARCH:
            continue
        if kernel_abi(package.name) is not None:
            kernels.append((kernel_abi(package.name), deb))
        elif package.name == BUSYBOX_PACKAGE:
            busyboxes.append((package.version, deb))
    if not kernels or not busyboxes:
        raise FetchError(
            f"{directory}: needs a linux-image-6.1.0-*-686-unsigned and a "
            f"{BUSYBOX_PACKAGE} .deb for {ARCH}"
        )
    by_version = functools.cmp_to_key(lambda x, y: version_compare(x[0], y[0]))
    return [max(kernels)[1], max(busyboxes, key=by_version)[1]]


def download_debs(destination: Path) -> list[Path]:
    """`apt-get download` the newest kernel and busybox-static for i386 into an empty
    `destination`."""
    kernel = newest_kernel_package()
    # As root, apt warns that it downloads unsandboxed when _apt cannot write here: harmless.
    run(
        ["apt-get", "download", f"{kernel.name}:{ARCH}", f"{BUSYBOX_PACKAGE}:{ARCH}"],
        cwd=destination,
        capture=False,
    )
    return sorted(destination.glob("*.deb"))


def find_cached(cache: Path = CACHE) -> DebianLinux | None:
    """The unpacked kernel and busybox in `cache`, or None when they are not all there
    (then FETCH_COMMAND fetches them)."""
    cache = Path(cache)
    try:
        versions = json.loads((cache / VERSIONS_FILE).read_text())
        release = versions["kernel_release"]
        found = DebianLinux(
            vmlinuz=cache / "kernel" / "boot" / f"vmlinuz-{release}",
            modules_dir=cache / "kernel" / "lib" / "modules" / release,
            busybox=cache / "busybox" / "bin" / "busybox",
            kernel_release=release,
            kernel_package=Package(**versions["kernel_package"]),
            busybox_package=Package(**versions["busybox_package"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if found.vmlinuz.is_file() and found.modules_dir.is_dir() and found.busybox.is_file():
        return found
    return None


def unpack(deb: Path, destination: Path) -> None:
    """Extract `deb` into `destination`, replacing what was there only once it worked."""
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}-", dir=destination.parent))
    try:
        run(["dpkg-deb", "-x", str(deb), str(staging)])
        if destination.exists():
            shutil.rmtree(destination)
        staging.rename(destination)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def kernel_release_of(kernel_root: Path) -> str:
    """The release string (`uname -r`) of an unpacked kernel package."""
    releases = sorted(p.name for p in (kernel_root / "lib" / "modules").iterdir() if p.is_dir())
    if len(releases) != 1:
        raise FetchError(f"{kernel_root}: expected one lib/modules/<release>, found {releases}")
    if not (kernel_root / "boot" / f"vmlinuz-{releases[0]}").is_file():
        raise FetchError(f"{kernel_root}: no boot/vmlinuz-{releases[0]}")
    return releases[0]


def fetch(
    cache: Path = CACHE, from_debs: Path | None = None, refresh: bool = False
) -> DebianLinux:
    """Download (or take from `from_debs`) the newest i386 kernel and busybox-static,
    unpack them into `cache` and record their versions. Does nothing when the cache is
    already complete, unless `refresh`."""
    cache = Path(cache)
    if not refresh:
        found = find_cached(cache)
        if found is not None:
            return found
    cache.mkdir(parents=True, exist_ok=True)
    (cache / VERSIONS_FILE).unlink(missing_ok=True)  # incomplete until rewritten

    debs_dir = cache / "debs"
    if debs_dir.exists():
        shutil.rmtree(debs_dir)
    debs_dir.mkdir()
    if from_debs is not None:
        for deb in newest_local_debs(Path(from_debs)):
            shutil.copy2(deb, debs_dir / deb.name)
        debs = sorted(debs_dir.glob("*.deb"))
    else:
        debs = download_debs(debs_dir)

    packages: dict[str, Package] = {}
    for deb in debs:
        package, architecture = deb_package(deb)
        if architecture != ARCH:
            raise FetchError(f"{deb}: architecture {architecture}, expected {ARCH}")
        role = "kernel" if kernel_abi(package.name) is not None else "busybox"
        if role == "busybox" and package.name != BUSYBOX_PACKAGE:
            raise FetchError(f"{deb}: unexpected package {package.name}")
        unpack(deb, cache / role)
        packages[role] = package
    if set(packages) != {"kernel", "busybox"}:
        raise FetchError(f"{debs_dir}: did not get both a kernel and busybox ({sorted(packages)})")

    versions = {
        "architecture": ARCH,
        "kernel_release": kernel_release_of(cache / "kernel"),
        "kernel_package": vars(packages["kernel"]),
        "busybox_package": vars(packages["busybox"]),
    }
    (cache / VERSIONS_FILE).write_text(json.dumps(versions, indent=2) + "\n")
    found = find_cached(cache)
    if found is None:
        raise FetchError(f"{cache}: unpacked, but the kernel or busybox is missing")
    return found


def setup_apt() -> None:
    """Make apt see i386 packages: add the architecture and refresh the lists (root)."""
    if os.geteuid() != 0:
        raise FetchError(
            "--setup needs root (it runs dpkg --add-architecture i386 and apt-get update)"
        )
    run(["dpkg", "--add-architecture", ARCH])
    try:
        run(["apt-get", "update"], capture=False)
    except FetchError as error:
        # A mirror in the middle of a sync fails one list; the i386 main list usually
        # still arrives, and the download below fails loudly if it did not.
        print(f"apt-get update reported errors, continuing: {error}", file=sys.stderr)


def describe(found: DebianLinux) -> str:
    return "\n".join(
        [
            f"kernel   {found.kernel_package.name} {found.kernel_package.version} "
            f"(release {found.kernel_release})",
            f"busybox  {found.busybox_package.name} {found.busybox_package.version}",
            f"vmlinuz  {found.vmlinuz}",
            f"modules  {found.modules_dir}",
            f"busybox  {found.busybox}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m guests.linux.debian", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    fetch_parser = commands.add_parser("fetch", help="download and unpack the packages")
    fetch_parser.add_argument(
        "--setup",
        action="store_true",
        help="first run dpkg --add-architecture i386 and apt-get update (as root)",
    )
    fetch_parser.add_argument(
        "--from-debs", type=Path, metavar="DIR", help="take the .deb files from DIR"
    )
    fetch_parser.add_argument(
        "--refresh", action="store_true", help="fetch again even if the cache is complete"
    )
    show_parser = commands.add_parser("show", help="print what the cache holds")
    for subparser in (fetch_parser, show_parser):
        subparser.add_argument("--cache", type=Path, default=CACHE, help="cache directory")
    args = parser.parse_args(argv)

    if args.command == "show":
        found = find_cached(args.cache)
        if found is None:
            print(f"{args.cache}: nothing fetched; run: {FETCH_COMMAND}", file=sys.stderr)
            return 1
        print(describe(found))
        return 0
    cached = None if args.refresh else find_cached(args.cache)
    if cached is not None:  # before --setup: nothing to do as root
        print(f"already in {args.cache}:")
        print(describe(cached))
        return 0
    try:
        if args.setup:
            setup_apt()
        found = fetch(args.cache, from_debs=args.from_debs, refresh=args.refresh)
    except FetchError as error:
        print(f"fetch failed: {error}", file=sys.stderr)
        return 1
    print(f"fetched into {args.cache}:")
    print(describe(found))
    return 0


if __name__ == "__main__":
    sys.exit(main())
