/* One function per exception (#GP and #UD are in lib/probe.S), with global
 * labels on the faulting instruction (for faults, whose saved EIP points at it)
 * or just after it (for traps and software interrupts, whose saved EIP is the
 * next instruction). */

    .text
    .globl trig_de, trig_de_insn
trig_de:
    xorl %edx, %edx
    movl $1, %eax
    xorl %ecx, %ecx
trig_de_insn:
    divl %ecx                   /* 2 bytes: #DE */
    ret

    .globl trig_bp, trig_bp_after
trig_bp:
    int3                        /* #BP, a trap */
trig_bp_after:
    ret

    .globl trig_int31, trig_int31_after
trig_int31:
    int $0x31
trig_int31_after:
    ret

    .globl trig_of, trig_of_after
trig_of:
    movb $0x7f, %al
    addb $1, %al                /* signed overflow: OF = 1 */
    into                        /* #OF, a trap */
trig_of_after:
    ret

    .globl trig_no_of
trig_no_of:
    movb $1, %al
    addb $1, %al                /* OF = 0 */
    into                        /* no exception */
    ret
