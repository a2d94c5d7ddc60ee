"""The gated block hook of the patched Unicorn (vmm/native/unicorn-block-hook-gate.patch)
and how the monitor's native hook drives it.

Blocks translated after ``uc_set_block_hook_gate(uc, &word)`` call their block hooks only
while ``word`` is nonzero. The monitor keeps the gate closed while the guest runs and
opens it when it wants a stop (the preemption timer's signal, a device, another thread);
the hook closes it again when nothing is left to do. These tests pin both halves: the
engine's gate, and stops that still land at a block start, exactly once per request.
"""

from __future__ import annotations

import ctypes
import threading
import time

from unicorn import UC_HOOK_BLOCK
from unicorn import x86_const as X
from unicorn.unicorn_py3.unicorn import uclib

from tests.unicorn.test_unicorn_behaviour import CODE, RMW_LOOP, add_native_block_hook, eip, flat_uc, u32
from vmm import native
from vmm.clock import PreemptionTimer
from vmm.native import FastState

LOOP_BLOCKS = 100
COUNTING_LOOP = f"""
    mov ecx, {LOOP_BLOCKS}
loop:
    dec ecx
    jnz loop
halt:
    hlt
"""


def set_gate(uc, word) -> None:
    address = None if word is None else ctypes.addressof(word)
    assert uclib.uc_set_block_hook_gate(uc._uch, ctypes.c_void_p(address)) == 0


def run_behind_a_closed_gate():
    """The counting loop run once with a block hook behind a closed gate: (uc, code,
    blocks the hook saw, the gate word)."""
    uc, code = flat_uc(COUNTING_LOOP)
    entered: list[int] = []
    uc.hook_add(UC_HOOK_BLOCK, lambda _uc, address, _size, _user: entered.append(address))
    gate = ctypes.c_int32(0)
    set_gate(uc, gate)
    uc.emu_start(CODE, 0)
    return uc, code, entered, gate


def test_a_closed_gate_skips_the_block_hook_and_an_open_one_calls_it_at_every_block():
    uc, code, entered, gate = run_behind_a_closed_gate()
    assert entered == [] and uc.reg_read(X.UC_X86_REG_ECX) == 0
    gate.value = 1  # the same translated blocks, now with the gate open
    uc.emu_start(CODE, 0)
    # The first block runs `dec` once too; the loop block then the `hlt` block.
    assert entered == [CODE] + [code["loop"]] * (LOOP_BLOCKS - 1) + [code["halt"]]


def test_removing_the_gate_makes_every_block_call_the_hook_again():
    uc, _code, entered, _gate = run_behind_a_closed_gate()
    set_gate(uc, None)  # drops the translated blocks, which tested the gate
    uc.emu_start(CODE, 0)
    assert len(entered) == 1 + LOOP_BLOCKS


def gated_native_hook(source: str):
    uc, code = flat_uc(source)
    fast = FastState()
    fast.stop_at_bytes = (1 << 64) - 1
    add_native_block_hook(uc, fast)
    assert native.gate_block_hook(uc, fast)
    return uc, code, fast


def test_the_native_hook_closes_the_gate_when_no_stop_is_wanted():
    uc, code, fast = gated_native_hook(RMW_LOOP.format(n=1000))
    fast.first_block = fast.hook_gate = 1  # as the run loop starts a slice
    uc.emu_start(CODE, 0)
    assert eip(uc) == code["done"] + 1 and u32(uc, 0x3000) == 1000
    assert (fast.hook_gate, fast.blocks, fast.stopped_in_block_hook) == (0, 1, 0)  # the first block only


def test_a_stop_requested_from_another_thread_lands_at_a_block_start_with_the_gate_closed():
    """request_stop() raises the flag, then opens the gate: the next block's hook stops
    the guest, before that block runs, so each `inc [m]` happens exactly once."""
    iterations = 3_000_000
    uc, code, fast = gated_native_hook(RMW_LOOP.format(n=iterations))
    stops, address = 0, CODE
    stopping = True

    def stopper() -> None:
        while stopping:
            time.sleep(0.002)
            fast.request_stop()

    thread = threading.Thread(target=stopper)
    thread.start()
    try:
        while True:
            fast.first_block, fast.hook_gate, fast.stopped_in_block_hook = 1, 1, 0
            uc.emu_start(address, 0)
            address = eip(uc)
            if not fast.stopped_in_block_hook:
                break
            stops += 1
    finally:
        stopping = False
        thread.join()
    assert address == code["done"] + 1
    assert u32(uc, 0x3000) == iterations
    assert stops >= 2, "the loop ran long enough to be stopped from the thread"


def test_the_preemption_timer_opens_the_gate_and_stops_the_guest():
    uc, code, fast = gated_native_hook(RMW_LOOP.format(n=50_000_000))
    timer = PreemptionTimer(fast)
    try:
        fast.timer_waits_for_if = 0
        fast.first_block, fast.hook_gate = 1, 1
        timer.arm(time.monotonic() + 0.01)
        uc.emu_start(CODE, 0)
    finally:
        timer.close()
    assert fast.stopped_in_block_hook == 1
    assert eip(uc) in (code["loop"], code["done"])
    assert 0 < u32(uc, 0x3000) < 50_000_000
    assert uc.reg_read(X.UC_X86_REG_ECX) == 50_000_000 - u32(uc, 0x3000)  # no `inc` twice


def test_with_hook_always_the_gate_stays_open_and_every_block_is_counted():
    """Deterministic time counts the code of every block entered."""
    uc, code, fast = gated_native_hook(RMW_LOOP.format(n=1000))
    fast.hook_always = 1
    fast.first_block = fast.hook_gate = 1
    uc.emu_start(CODE, 0)
    assert u32(uc, 0x3000) == 1000
    assert fast.hook_gate == 1 and fast.blocks == 1 + 1000
