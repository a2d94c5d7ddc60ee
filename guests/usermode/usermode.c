/* Ring 3 through a TSS: system calls via a DPL-3 gate, #GP for port I/O,
 * CLI and HLT when IOPL is 0 and the TSS has no I/O permission bitmap, and
 * #GP for "int n" through a gate of DPL 0. */
#include "kernel.h"
#include "expect.h"
#include "usermode.h"

const char guest_name[] = "usermode";

extern char user_program[], user_stack[], user_stack_top[];
extern char u_out[], u_in[], u_cli[], u_hlt[], u_int[];

/* The faults ring 3 must cause, in order; skip = the instruction's length. */
static const struct expectation faults[] = {
    { "ring-3 out", VEC_GP, 0, u_out, 3, 2 },
    { "ring-3 in",  VEC_GP, 0, u_in,  3, 2 },
    { "ring-3 cli", VEC_GP, 0, u_cli, 3, 1 },
    { "ring-3 hlt", VEC_GP, 0, u_hlt, 3, 1 },
    /* Error code for a gate: vector * 8, plus 2 for "in the IDT". */
    { "ring-3 int 0x31", VEC_GP, 0x31 * 8 + 2, u_int, 3, 2 },
};
static unsigned next_fault;
static int syscall_checked;

/* The CPU switched to SS0:ESP0 from the TSS and pushed SS, ESP, EFLAGS, CS,
 * EIP (and the error code): so the frame's last word sits just below ESP0. */
static void check_ring3_frame(struct frame *f, const char *what)
{
    if ((uint32_t)(&f->user_ss + 1) != tss.esp0)
        fail("%s: handler stack ends at %x, TSS ESP0 is %x",
             what, (uint32_t)(&f->user_ss + 1), tss.esp0);
    if (f->cs != SEL_USER_CS || f->user_ss != SEL_USER_DS)
        fail("%s: saved CS:SS %x:%x, expected %x:%x", what, f->cs, f->user_ss,
             SEL_USER_CS, SEL_USER_DS);
    if (f->user_esp <= (uint32_t)user_stack || f->user_esp > (uint32_t)user_stack_top)
        fail("%s: saved ESP %x is not on the user stack", what, f->user_esp);
    if (f->eflags & 0x3000)
        fail("%s: saved EFLAGS %x has IOPL %u", what, f->eflags, (f->eflags >> 12) & 3);
}

static void on_syscall(struct frame *f)
{
    check_ring3_frame(f, "int 0x80");
    if (!syscall_checked) {
        kprintf("int 0x80: from CS 0x%x SS 0x%x, IOPL 0, on the TSS ESP0 stack\n",
                f->cs, f->user_ss);
        syscall_checked = 1;
    }
}

static void on_gp(struct frame *f)
{
    const struct expectation *e = &faults[next_fault];
    check_ring3_frame(f, e->what);
    expect_check(f);
    kprintf("%s: #GP(0x%x), saved EIP at the instruction, CS RPL 3, on the TSS ESP0 stack\n",
            e->what, f->error);
    if (++next_fault < ARRAY_SIZE(faults))
        expect(&faults[next_fault]);
}

void guest_main(void)
{
    usermode_init();
    syscall_hook = on_syscall;
    idt_set_handler(VEC_GP, on_gp);
    expect(&faults[0]);

    kprintf("entering ring 3 with IRET (IOPL 0)\n");
    user_enter(user_program, user_stack_top, 0);
    kprintf("back in ring 0\n");

    if (next_fault != ARRAY_SIZE(faults))
        fail("only %u of %u faults arrived", next_fault, (unsigned)ARRAY_SIZE(faults));
    pass();
}
