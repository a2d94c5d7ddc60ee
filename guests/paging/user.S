/* The ring-3 part of the paging guest: a write to a read-only user page and a
 * read of a supervisor page, each a #PF with its own error code. */

#define SYS_EXIT 0
#define SYS_WRITE 1

    .section .user.text, "ax"
    .globl user_program, u_write_ro, u_read_super
user_program:
    movl $SYS_WRITE, %eax
    movl $msg_start, %ebx
    int $0x80
u_write_ro:
    movl $0x600dc0de, ro_page     /* #PF 0x7; the handler makes the page writable */
u_read_super:
    movl supervisor_page, %eax    /* 5 bytes; #PF 0x5; the handler skips it */
    movl $SYS_WRITE, %eax
    movl $msg_done, %ebx
    int $0x80
    movl $SYS_EXIT, %eax
    int $0x80
    ud2

    .section .user.data, "aw"
msg_start:
    .asciz "ring 3: touching a read-only page and a supervisor page\n"
msg_done:
    .asciz "ring 3: both accesses handled\n"
    .balign 16
    .globl user_stack_top
user_stack:
    .skip 4096
user_stack_top:
    .balign 4096
    .globl ro_page
ro_page:                          /* mapped user, read-only */
    .skip 4096
