/* The int 0x80 gate: DPL 3 so ring 3 may use it, a trap gate so IF stays as
 * ring 3 had it. */
#include "usermode.h"
#include "exit.h"
#include "gdt.h"
#include "printf.h"

void (*syscall_hook)(struct frame *f);

static void syscall_handler(struct frame *f)
{
    if (!frame_from_user(f))
        fail("int 0x80 from ring %u", f->cs & 3);
    if (syscall_hook)
        syscall_hook(f);

    switch (f->eax) {
    case SYS_EXIT:
        user_return();
    case SYS_WRITE:
        kprintf("%s", (const char *)f->ebx);
        break;
    default:
        fail("unknown system call %u from %x", f->eax, f->eip);
    }
}

void usermode_init(void)
{
    idt_set_gate(SYSCALL_VECTOR, GATE_TRAP, 3);
    idt_set_handler(SYSCALL_VECTOR, syscall_handler);
}
