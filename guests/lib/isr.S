/* Interrupt entry stubs. The CPU pushes an error code for some exceptions only;
 * each stub pushes a dummy 0 for the others so that every frame has one layout,
 * then the vector number, and jumps to the common path that saves the rest
 * and calls isr_dispatch(struct frame *). */

#define SEL_KERNEL_DS 0x10
#define STUB_SIZE 16

    .text
    .globl isr_stubs
    .balign STUB_SIZE
isr_stubs:
    vector = 0
    .rept 256
    .balign STUB_SIZE
    /* Vectors with a CPU-pushed error code: #DF, #TS, #NP, #SS, #GP, #PF, #AC. */
    .if (vector == 8) || (vector >= 10 && vector <= 14) || (vector == 17)
    .else
    pushl $0
    .endif
    pushl $vector
    jmp isr_common
    vector = vector + 1
    .endr

isr_common:
    pusha
    pushl %ds
    pushl %es
    pushl %fs
    pushl %gs
    movw $SEL_KERNEL_DS, %ax      /* ring-3 selectors may still be loaded */
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %fs
    movw %ax, %gs
    cld                           /* the C ABI expects DF clear */
    pushl %esp                    /* struct frame * */
    call isr_dispatch
    addl $4, %esp
    popl %gs
    popl %fs
    popl %es
    popl %ds
    popa
    addl $8, %esp                 /* drop vector and error code */
    iret
