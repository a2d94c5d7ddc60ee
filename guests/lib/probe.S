/* See probe.h. Each function is one faultable instruction plus the call plumbing. */
    .text
    .globl probe_read32, probe_read32_insn
probe_read32:                   /* (addr) -> value */
    movl 4(%esp), %edx
probe_read32_insn:
    movl (%edx), %eax
    ret

    .globl probe_write32, probe_write32_insn
probe_write32:                  /* (addr, value) */
    movl 4(%esp), %edx
    movl 8(%esp), %eax
probe_write32_insn:
    movl %eax, (%edx)
    ret

    .globl trig_gp, trig_gp_insn
trig_gp:
    movw $0x103, %ax            /* GDT index 32 (beyond the limit), RPL 3 */
trig_gp_insn:
    movw %ax, %ds               /* 2 bytes: #GP(0x100); DS keeps its old value */
    ret

    .globl trig_ud, trig_ud_insn
trig_ud:
trig_ud_insn:
    ud2                         /* 2 bytes: #UD */
    ret
