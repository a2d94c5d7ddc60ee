"""Build and load the monitor's native hot path (fastpath.c).

The shared object is built at install time by ``make`` (``python -m vmm.native``) and,
if missing or older than its source, again on first use. It links against the very
libunicorn the Python binding loaded, so both share one engine.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
from pathlib import Path

import unicorn

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "fastpath.c"
LIBRARY = HERE / "fastpath.so"

PORT_IN_FN = ctypes.CFUNCTYPE(ctypes.c_uint32, ctypes.c_uint32, ctypes.c_int, ctypes.c_int)
PORT_OUT_FN = ctypes.CFUNCTYPE(None, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint32, ctypes.c_int)
IO_DENIED_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_uint32, ctypes.c_int)


class FastState(ctypes.Structure):
    """Mirror of ``struct vmm_fast`` in fastpath.c: shared by the hooks and Python."""

    _fields_ = [
        ("stop_requested", ctypes.c_int32),
        ("stopped_in_block_hook", ctypes.c_int32),
        ("code_bytes", ctypes.c_uint64),
        ("stop_at_bytes", ctypes.c_uint64),
        ("blocks", ctypes.c_uint64),
        ("io_fault", ctypes.c_uint32),
        ("io_fault_eip", ctypes.c_uint32),
        ("port_in", PORT_IN_FN),
        ("port_out", PORT_OUT_FN),
        ("io_denied", IO_DENIED_FN),
        ("first_block", ctypes.c_int32),
        ("timer_due", ctypes.c_int32),
        ("deferred_blocks", ctypes.c_uint32),
        ("timer_waits_for_if", ctypes.c_int32),
        ("irq_window", ctypes.c_int32),
        ("hook_gate", ctypes.c_int32),
        ("hook_always", ctypes.c_int32),
    ]

    def request_stop(self) -> None:
        """Stop the guest at the next block boundary (from any thread, or a hook)."""
        self.stop_requested = 1
        self.hook_gate = 1  # after the flag: the hook closes the gate before reading it


class NativeBuildError(RuntimeError):
    """The C hot path could not be compiled (no gcc, or no Unicorn headers)."""


def _unicorn_dir() -> Path:
    return Path(unicorn.__file__).resolve().parent


def build(force: bool = False) -> Path:
    """Compile fastpath.c unless an up-to-date fastpath.so exists."""
    if (
        not force
        and LIBRARY.exists()
        and LIBRARY.stat().st_mtime >= SOURCE.stat().st_mtime
    ):
        return LIBRARY
    udir = _unicorn_dir()
    libdir = udir / "lib"
    tmp = LIBRARY.with_suffix(f".{os.getpid()}.tmp")
    cmd = [
        "gcc", "-O2", "-Wall", "-shared", "-fPIC",
        f"-I{udir / 'include'}", "-o", str(tmp), str(SOURCE),
        f"-L{libdir}", "-l:libunicorn.so.2", f"-Wl,-rpath,{libdir}", "-lpthread", "-lrt",
    ]
    try:
        subprocess.run(cmd, check=True, capture_output=True, text=True)
    except FileNotFoundError as exc:
        raise NativeBuildError("gcc is not installed: it builds vmm/native/fastpath.c") from exc
    except subprocess.CalledProcessError as exc:
        raise NativeBuildError(f"building fastpath.c failed: {exc.stderr.strip()}") from exc
    os.replace(tmp, LIBRARY)
    return LIBRARY


_library: ctypes.CDLL | None = None


def load() -> ctypes.CDLL:
    """The loaded hot path, built first if needed."""
    global _library
    if _library is None:
        library = ctypes.CDLL(str(build()))
        library.vmm_timer_start.argtypes = (ctypes.POINTER(FastState),)
        library.vmm_timer_start.restype = ctypes.c_void_p
        library.vmm_timer_arm.argtypes = (ctypes.c_void_p, ctypes.c_int64)
        library.vmm_timer_arm.restype = None
        library.vmm_timer_stop.argtypes = (ctypes.c_void_p,)
        library.vmm_timer_stop.restype = None
        library.vmm_catch_suspend_signal.argtypes = ()
        library.vmm_catch_suspend_signal.restype = None
        library.vmm_watch_suspend_signal.argtypes = (ctypes.c_void_p,)
        library.vmm_watch_suspend_signal.restype = None
        library.vmm_take_suspend_signal.argtypes = ()
        library.vmm_take_suspend_signal.restype = ctypes.c_int
        _library = library
    return _library


def gate_block_hook(uc, fast: FastState) -> bool:
    """Have ``uc`` call its block hook only while ``fast.hook_gate`` is set; False when
    the engine lacks the gate (vmm/native/unicorn-block-hook-gate.patch)."""
    from unicorn.unicorn_py3.unicorn import uclib

    set_gate = getattr(uclib, "uc_set_block_hook_gate", None)
    if set_gate is None:
        return False
    set_gate.argtypes = (ctypes.c_void_p, ctypes.c_void_p)
    set_gate.restype = ctypes.c_int
    gate = ctypes.addressof(fast) + FastState.hook_gate.offset
    if set_gate(uc._uch, gate) != 0:
        raise RuntimeError("uc_set_block_hook_gate failed")
    uc._vmm_gate_owner = fast  # the engine reads the word: keep its owner alive
    return True


def hook_address(name: str) -> int:
    """Address of one of the C hook functions, for uc_hook_add."""
    return ctypes.cast(getattr(load(), name), ctypes.c_void_p).value or 0

