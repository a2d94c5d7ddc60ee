"""Build Unicorn 2.1.4 with two patches of ours, and install it in the venv.

1. ``unicorn-notdirty.patch``: stores to RAM take the fast path again.
2. ``unicorn-block-hook-gate.patch``: the block hook can sit behind a word the caller
   owns (``uc_set_block_hook_gate``); translated code tests it inline and calls the
   hook only while it is set. The monitor's hook only has work to do when a stop is
   wanted (vmm/native/fastpath.c), so this takes the hook's cost per block, 40% of a
   store-heavy guest's time once stores are fast, down to a load and a branch.

The first one, in detail:

Unicorn 2.1.4 sends every guest store to RAM through its slow path (``notdirty_write``:
a memory-map lookup, a translation-block check, ``flatview_translate``): it clears a
page's "not dirty" mark only when the TLB entry is not executable, which on x86 without
NX is never. Decompressing a Linux kernel spends 90% of its time there. QEMU keeps the
mark only on pages that hold translated code. ``unicorn-notdirty.patch`` does the same:

* a write to a page without translation blocks clears the mark, so later stores to the
  page take the inline fast path;
* the first translation block made from a page marks every TLB entry that maps the page
  again, under any virtual address, so self-modifying code is still caught.

``python -m vmm.native.patched_unicorn`` (run by ``make``) downloads the 2.1.4 source from PyPI
(checked against its SHA-256), applies the patches, builds the x86 engine with CMake and
replaces ``libunicorn.so.2`` inside the installed ``unicorn`` package, so the Python
binding and ``fastpath.so`` both load it. The build takes about half a minute on two
cores and is redone only when a patch changes. ``tests/unicorn/test_store_fast_path.py``
and ``tests/unicorn/test_block_hook_gate.py`` pin the behaviour.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import unicorn

VERSION = "2.1.4"
SDIST = f"unicorn-{VERSION}.tar.gz"
SDIST_SHA256 = "00567a70e323f749b419cd86bee4f9115beab7ebba32194581c090cbb7c59cff"
HERE = Path(__file__).resolve().parent
PATCHES = (HERE / "unicorn-notdirty.patch", HERE / "unicorn-block-hook-gate.patch")
REPO = HERE.parent.parent
WORK = REPO / ".cache" / "unicorn"
LIBRARY_NAME = "libunicorn.so.2"


class UnicornBuildError(RuntimeError):
    """The patched engine could not be fetched, patched or built."""


def installed_library() -> Path:
    """The libunicorn the Python binding loads (the one in the installed package)."""
    return Path(unicorn.__file__).resolve().parent / "lib" / LIBRARY_NAME


def _stamp() -> Path:
    return installed_library().with_name(LIBRARY_NAME + ".patched")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _wanted_stamp() -> str:
    patches = " + ".join(f"{patch.name} {_sha256(patch)}" for patch in PATCHES)
    return f"unicorn {VERSION} + {patches}\n"


def is_installed() -> bool:
    """True when the installed libunicorn is the patched build of the current patch."""
    stamp, library = _stamp(), installed_library()
    if not (stamp.exists() and library.exists()):
        return False
    recorded = stamp.read_text().splitlines()
    return recorded[:1] == _wanted_stamp().splitlines() and recorded[1:2] == [_sha256(library)]


def _run(command: list[str], cwd: Path, what: str) -> None:
    print(f"unicorn: {what}", flush=True)
    try:
        subprocess.run(command, cwd=cwd, check=True, capture_output=True, text=True)
    except FileNotFoundError as exc:
        raise UnicornBuildError(f"{what}: {command[0]} is not installed") from exc
    except subprocess.CalledProcessError as exc:
        tail = "\n".join((exc.stdout + exc.stderr).strip().splitlines()[-20:])
        raise UnicornBuildError(f"{what} failed ({' '.join(command)}):\n{tail}") from exc


def _fetch_source() -> Path:
    archive = WORK / SDIST
    if not archive.exists() or _sha256(archive) != SDIST_SHA256:
        WORK.mkdir(parents=True, exist_ok=True)
        _run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
              "--dest", str(WORK), f"unicorn=={VERSION}"], WORK, f"downloading the {VERSION} source from PyPI")
    digest = _sha256(archive)
    if digest != SDIST_SHA256:
        raise UnicornBuildError(f"{archive}: SHA-256 {digest}, expected {SDIST_SHA256}")
    return archive


def _unpack_and_patch(archive: Path) -> Path:
    tree = WORK / f"unicorn-{VERSION}"
    shutil.rmtree(tree, ignore_errors=True)
    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):  # Python 3.11.4 and later
            tar.extractall(WORK, filter="data")
        else:
            tar.extractall(WORK)
    source = tree / "src"
    for patch in PATCHES:
        _run(["patch", "-p1", "--forward", "--input", str(patch)], source, f"applying {patch.name}")
    return source


def _cmake() -> str:
    found = shutil.which("cmake")
    if found:
        return found
    _run([sys.executable, "-m", "pip", "install", "--quiet", "cmake"], WORK, "installing CMake from PyPI")
    return str(Path(sys.executable).with_name("cmake"))


def build_and_install() -> Path:
    """Build the patched engine and put it in place of the wheel's library."""
    source = _unpack_and_patch(_fetch_source())
    build = WORK / "build"
    shutil.rmtree(build, ignore_errors=True)
    cmake = _cmake()
    _run([cmake, "-S", str(source), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
          "-DUNICORN_BUILD_TESTS=off", "-DUNICORN_ARCH=x86"], WORK, "configuring (x86 only)")
    _run([cmake, "--build", str(build), f"-j{os.cpu_count() or 2}"], WORK, "compiling (about half a minute)")
    target = installed_library()
    staged = target.with_name(LIBRARY_NAME + ".new")
    shutil.copyfile(build / LIBRARY_NAME, staged)
    os.replace(staged, target)  # a running process keeps the old inode
    _stamp().write_text(_wanted_stamp() + _sha256(target) + "\n")
    return target


def main() -> int:
    if is_installed():
        print(f"unicorn: the patched engine is in place ({installed_library()})")
        return 0
    try:
        print(f"unicorn: installed {build_and_install()}")
    except UnicornBuildError as exc:
        print(f"unicorn: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
