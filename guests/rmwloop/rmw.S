/* The loop body: every instruction that reads, modifies and writes memory in
 * one go, so that a monitor that stops the guest between the load and the
 * store and then re-executes the instruction leaves a visible error.  Most
 * results are folded into a running sum, so a doubled operation shows up
 * even where the final value alone would hide it. */
#include "rmw.h"

    .text
    .globl rmw_run
rmw_run:                        /* (struct rmw *m, uint32_t n) */
    pushl %ebp
    pushl %ebx
    pushl %esi
    pushl %edi
    movl 20(%esp), %edi         /* m; kept in %edx during the loop */
    movl 24(%esp), %ebp         /* n */
    movl %edi, %edx
    xorl %ebx, %ebx             /* i */
    testl %ebp, %ebp
    jz done

loop:
    incl RMW_INC(%edx)
    decl RMW_DEC(%edx)
    addl %ebx, RMW_ADD(%edx)
    addl $RMW_ADC_STEP, RMW_ADC_LO(%edx)
    adcl $0, RMW_ADC_HI(%edx)
    orl %ebx, RMW_OR(%edx)
    xorl %ebx, RMW_XOR(%edx)

    movl %ebx, %eax             /* xchg: memory gets i, the old value is summed */
    xchgl %eax, RMW_XCHG(%edx)
    addl %eax, RMW_XCHG_SUM(%edx)

    movl $RMW_XADD_STEP, %eax
    lock xaddl %eax, RMW_XADD(%edx)
    addl %eax, RMW_XADD_SUM(%edx)

    movl RMW_CMPXCHG(%edx), %eax
    leal RMW_CMPXCHG_STEP(%eax), %ecx
    lock cmpxchgl %ecx, RMW_CMPXCHG(%edx)
    jz 1f
    incl RMW_CMPXCHG_FAILS(%edx)
1:
    movl %ebx, RMW_NOT(%edx)
    notl RMW_NOT(%edx)
    movl RMW_NOT(%edx), %eax
    addl %eax, RMW_NOT_SUM(%edx)

    movl %ebx, RMW_NEG(%edx)
    negl RMW_NEG(%edx)
    movl RMW_NEG(%edx), %eax
    addl %eax, RMW_NEG_SUM(%edx)

    movl %ebx, RMW_SHL(%edx)
    shll $1, RMW_SHL(%edx)
    movl RMW_SHL(%edx), %eax
    addl %eax, RMW_SHL_SUM(%edx)

    movl %ebx, RMW_PP_SRC(%edx)
    pushl RMW_PP_SRC(%edx)
    popl RMW_PP_DST(%edx)
    movl RMW_PP_DST(%edx), %eax
    addl %eax, RMW_PP_SUM(%edx)

    /* src[i % 64]++, copy src to dst with rep movsd, sum dst[(7 i) % 64] */
    movl %ebx, %eax
    andl $(RMW_WORDS - 1), %eax
    incl RMW_SRC(%edx,%eax,4)
    leal RMW_SRC(%edx), %esi
    leal RMW_DST(%edx), %edi
    movl $RMW_WORDS, %ecx
    rep movsl
    leal (%ebx,%ebx,8), %eax    /* 9 i ... */
    subl %ebx, %eax             /* ... - i - i = 7 i */
    subl %ebx, %eax
    andl $(RMW_WORDS - 1), %eax
    movl RMW_DST(%edx,%eax,4), %eax
    addl %eax, RMW_MOVS_SUM(%edx)

    incl %ebx
    cmpl %ebp, %ebx
    jne loop

done:
    popl %edi
    popl %esi
    popl %ebx
    popl %ebp
    ret
