/* Entering ring 3 with IRET and coming back: user_enter() saves the kernel's
 * callee-saved registers and stack pointer, builds the five-word frame an
 * inter-privilege IRET pops (SS, ESP, EFLAGS, CS, EIP) and jumps.  Ring 3 comes
 * back only through an interrupt gate, which runs on the TSS's ESP0 stack; the
 * SYS_EXIT handler then calls user_return(), which drops that frame and
 * returns from user_enter() on the saved kernel stack, like longjmp. */

#define SEL_USER_CS (0x18 | 3)
#define SEL_USER_DS (0x20 | 3)
#define SEL_KERNEL_DS 0x10

    .text
    .globl user_enter
user_enter:                     /* (eip, esp, eflags) */
    pushl %ebp
    pushl %ebx
    pushl %esi
    pushl %edi
    pushfl
    movl %esp, saved_kernel_esp
    movl 24(%esp), %eax         /* eip */
    movl 28(%esp), %ecx         /* user esp */
    movl 32(%esp), %edx         /* eflags */
    andl $~0x3000, %edx         /* IOPL 0 */
    orl $0x2, %edx              /* bit 1 is always set */
    pushl $SEL_USER_DS          /* SS */
    pushl %ecx                  /* ESP */
    pushl %edx                  /* EFLAGS */
    pushl $SEL_USER_CS          /* CS */
    pushl %eax                  /* EIP */
    /* Data segments must be DPL 3 before the IRET: on a return to an outer
     * ring, the CPU nulls any that ring 3 could not use. */
    movw $SEL_USER_DS, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %fs
    movw %ax, %gs
    iret

    .globl user_return
user_return:
    movl saved_kernel_esp, %esp
    movw $SEL_KERNEL_DS, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %fs
    movw %ax, %gs
    popfl
    popl %edi
    popl %esi
    popl %ebx
    popl %ebp
    ret

    .bss
    .balign 4
saved_kernel_esp:
    .long 0
