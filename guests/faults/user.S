/* Ring-3 half of one faults iteration: #PF (read or write of a not-present
 * page, as u_write says), #GP (cli with IOPL 0), #UD (ud2), then SYS_EXIT. */

#define SYS_EXIT 0
#define U_PAGE 0x00401000

    .section .user.text, "ax"
    .globl user_program, u_pf_read, u_pf_write, u_gp, u_ud
user_program:
    testl $1, u_write
    jnz 1f
u_pf_read:
    movl U_PAGE, %eax           /* #PF, re-executed once the page is mapped */
    jmp 2f
1:
u_pf_write:
    movl %eax, U_PAGE           /* #PF, re-executed once the page is mapped */
2:
u_gp:
    cli                         /* 1 byte: #GP(0) */
u_ud:
    ud2                         /* 2 bytes: #UD */
    movl $SYS_EXIT, %eax
    int $0x80
    ud2

    .section .user.data, "aw"
    .globl u_write, user_stack_top
u_write:
    .long 0
    .balign 16
user_stack:
    .skip 4096
user_stack_top:
