/* Multiboot v1 header and the entry point.  The loader jumps here in 32-bit
 * protected mode with paging off, EAX = 0x2BADB002, EBX = multiboot info, flat
 * segments from a GDT we must not trust, and no stack. */

#define MULTIBOOT_HEADER_MAGIC 0x1BADB002
#define MB_HDR_FLAGS 0x00000003 /* page-align modules | memory info */
#define STACK_SIZE 16384

    .section .multiboot, "a"
    .balign 4
    .long MULTIBOOT_HEADER_MAGIC
    .long MB_HDR_FLAGS
    .long -(MULTIBOOT_HEADER_MAGIC + MB_HDR_FLAGS)

    .text
    .globl _start
_start:
    cli
    cld
    movl %eax, %esi             /* keep the loader's arguments out of the way */
    movl %ebx, %edx

    /* Zero .bss ourselves: cheap, and no loader behaviour is assumed. */
    movl $__bss_start, %edi
    movl $__bss_end, %ecx
    subl %edi, %ecx
    xorl %eax, %eax
    rep stosb

    movl $boot_stack_top, %esp
    xorl %ebp, %ebp             /* end of frame chain for debuggers */
    pushl $0                    /* EFLAGS = 0: IF, DF, AC, NT all clear */
    popfl
    pushl %edx                  /* multiboot info */
    pushl %esi                  /* loader magic */
    call kernel_entry
1:  cli
    hlt
    jmp 1b

    .bss
    .balign 16
boot_stack:
    .skip STACK_SIZE
boot_stack_top:
