"""Virtual time and the timer thread that preempts a busy guest.

Two sources of virtual time (nanoseconds since power-on):

* wall mode (default): the host's monotonic clock, plus whatever was skipped while the
  guest halted with nothing to do;
* deterministic mode: the number of bytes of guest code in the translation blocks the
  guest entered (counted by the native block hook) at a nominal rate, plus skips. It
  depends on guest progress only, so two runs of one guest see the same times.

Either way the run loop asks for a stop at the next device deadline. In wall mode a
thread raises the native stop flag when the deadline passes; in deterministic mode the
block hook stops by itself when the code-byte count reaches it.
"""

from __future__ import annotations

import ctypes
import time

from vmm import native
from vmm.native import FastState

# Deterministic mode's nominal speed: one byte of guest code per nanosecond, about 300
# million x86 instructions per second.
NS_PER_CODE_BYTE = 1
NEVER = (1 << 64) - 1


class VirtualClock:
    def __init__(self, fast: FastState, deterministic: bool) -> None:
        self.fast = fast
        self.deterministic = deterministic
        self._skipped_ns = 0
        self._wall_start = time.monotonic_ns()

    def now_ns(self) -> int:
        if self.deterministic:
            return self.fast.code_bytes * NS_PER_CODE_BYTE + self._skipped_ns
        return time.monotonic_ns() - self._wall_start + self._skipped_ns

    def skip_to(self, when_ns: int) -> None:
        """Jump forward to ``when_ns`` (the guest halted and nothing else can happen)."""
        now = self.now_ns()
        if when_ns > now:
            self._skipped_ns += when_ns - now

    def wall_deadline(self, when_ns: int) -> float:
        """The host monotonic time (seconds) at which virtual time reaches ``when_ns``."""
        return (when_ns - self._skipped_ns + self._wall_start) / 1e9

    def code_bytes_at(self, when_ns: int) -> int:
        """Deterministic mode: the code-byte count at which ``when_ns`` is reached."""
        return max(0, -(-(when_ns - self._skipped_ns) // NS_PER_CODE_BYTE))

    # -- saved state -----------------------------------------------------------------
    def save_state(self) -> dict:
        return {"now_ns": self.now_ns(), "deterministic": self.deterministic}

    def load_state(self, state: dict) -> None:
        # Continue from the saved instant whatever the source now counts from.
        self._skipped_ns = 0
        self._skipped_ns = state["now_ns"] - self.now_ns()


class PreemptionTimer:
    """Raises the native stop flag at a host-time deadline (a POSIX timer and signal
    handler in fastpath.c).

    Raising the flag is always safe: the block hook acts on it only at the start of a
    translation block, never inside an instruction.
    """

    def __init__(self, fast: FastState) -> None:
        self.fast = fast  # the C thread writes into it: keep it alive as long as us
        self._library = native.load()
        self._timer = self._library.vmm_timer_start(ctypes.byref(fast))
        if not self._timer:
            raise RuntimeError("cannot create the preemption timer")
        self._armed: int | None = None

    def arm(self, deadline: float | None) -> None:
        """Stop the guest at host monotonic time ``deadline`` (seconds); None disarms."""
        deadline_ns = -1 if deadline is None else int(deadline * 1e9)
        if deadline_ns != self._armed:
            self._armed = deadline_ns
            self._library.vmm_timer_arm(self._timer, deadline_ns)

    def close(self) -> None:
        if self._timer:
            self._library.vmm_timer_stop(self._timer)
            self._timer = None
