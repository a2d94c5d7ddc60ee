"""EFLAGS.TF: single-step traps arrive after the instruction, as on QEMU."""

from __future__ import annotations

from tests.conftest import requires_qemu
from tests.helpers import build_kernel, run_qemu, run_vmm

# Sets TF, executes one NOP, and expects #DB (vector 1) with the saved EIP after it;
# the handler prints D (right EIP) or ? (wrong EIP) and clears TF; then E and exit 1.
SINGLE_STEP = r"""
    /* IDT entry 1: 32-bit interrupt gate to debug_handler, selector = current CS */
    mov $debug_handler, %eax
    mov %ax, idt+8
    shr $16, %eax
    mov %ax, idt+14
    mov %cs, %ax
    mov %ax, idt+10
    movw $0x8e00, idt+12
    lidt idtr
    xor %ecx, %ecx
    pushf
    orl $0x100, (%esp)
    popf
    nop
after_nop:
    inc %ecx
    mov $0x3f8, %dx
    mov $'E', %al
    out %al, %dx
    mov $0xf4, %dx
    mov %ecx, %eax
    out %eax, %dx
debug_handler:
    mov (%esp), %eax
    cmp $after_nop, %eax
    jne 1f
    andl $~0x100, 8(%esp)
    mov $0x3f8, %dx
    mov $'D', %al
    out %al, %dx
    iret
1:  mov $0x3f8, %dx
    mov $'?', %al
    out %al, %dx
    andl $~0x100, 8(%esp)
    iret
.data
.align 8
idt: .fill 16, 8, 0
idtr: .word 16*8-1
      .long idt
"""


def test_trap_flag_raises_debug_exception_after_one_instruction(tmp_path):
    boot = run_vmm(str(build_kernel(tmp_path, SINGLE_STEP)))
    assert boot.output == "DE"
    assert boot.status == 1


@requires_qemu
def test_trap_flag_behaves_as_on_qemu(tmp_path):
    kernel = build_kernel(tmp_path, SINGLE_STEP)
    ours, reference = run_vmm(str(kernel)), run_qemu(kernel)
    assert (ours.output, ours.status) == (reference.output, reference.status)
