/* The ring-3 program: a system call, then the four I/O-privileged instructions,
 * each of which must raise #GP(0) with IOPL 0, an "int" through a DPL-0 gate
 * (#GP with the IDT vector as error code), then two more system calls. */

#define SYS_EXIT 0
#define SYS_WRITE 1

    .section .user.text, "ax"
    .globl user_program
user_program:
    movl $SYS_WRITE, %eax
    movl $msg_hello, %ebx
    int $0x80

    .globl u_out, u_in, u_cli, u_hlt, u_int
u_out:  outb %al, $0x80         /* 2 bytes */
u_in:   inb $0x80, %al          /* 2 bytes */
u_cli:  cli                     /* 1 byte */
u_hlt:  hlt                     /* 1 byte */
u_int:  int $0x31               /* 2 bytes */

    movl $SYS_WRITE, %eax
    movl $msg_back, %ebx
    int $0x80
    movl $SYS_EXIT, %eax
    int $0x80
    ud2                         /* SYS_EXIT never returns */

    .section .user.data, "aw"
msg_hello:
    .asciz "ring 3: hello through int 0x80\n"
msg_back:
    .asciz "ring 3: still running after the five faults\n"
    .balign 16
    .globl user_stack, user_stack_top
user_stack:
    .skip 4096
user_stack_top:
