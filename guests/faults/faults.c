/* Many exceptions back to back, on every path: #PF, #GP and #UD from ring 0
 * and from ring 3, 1000 times round.  Each must arrive with its own vector;
 * a CPU (or monitor) that remembers the previous exception too long turns
 * the second one into a double fault, which is caught here. */
#include "kernel.h"
#include "expect.h"
#include "paging.h"
#include "probe.h"
#include "usermode.h"

const char guest_name[] = "faults";

#define ITERATIONS 1000
#define K_PAGE 0x00400000u /* not present until the ring-0 #PF maps it */
#define U_PAGE 0x00401000u /* not present until the ring-3 #PF maps it */

extern char user_program[], user_stack_top[];
extern char u_pf_read[], u_pf_write[], u_gp[], u_ud[];
extern uint32_t u_write;

static uint32_t expected_cr2;

static void on_pf(struct frame *f)
{
    uint32_t cr2 = read_cr2();
    expect_check(f);
    if (cr2 != expected_cr2)
        fail("#PF with CR2 %x, expected %x", cr2, expected_cr2);
    map_page(cr2, cr2, PTE_W | (frame_from_user(f) ? PTE_U : 0));
}

static void on_df(struct frame *f)
{
    fail("double fault (#DF) at %x:%x", f->cs, f->eip);
}

/* Arms the next expectation when ring 3 makes its three faults in a row. */
static const struct expectation *user_seq;
static unsigned user_left;

static void on_user_fault(struct frame *f)
{
    if (f->vector == VEC_PF)
        on_pf(f);
    else
        expect_check(f);
    if (--user_left)
        expect(++user_seq);
}

static void ring0_round(int write)
{
    static const struct expectation pf_read = { "ring-0 #PF read", VEC_PF, 0, probe_read32_insn, 0, 0 };
    static const struct expectation pf_write = { "ring-0 #PF write", VEC_PF, PF_W, probe_write32_insn, 0, 0 };
    static const struct expectation gp = { "ring-0 #GP", VEC_GP, 0x100, trig_gp_insn, 0, 2 };
    static const struct expectation ud = { "ring-0 #UD", VEC_UD, 0, trig_ud_insn, 0, 2 };

    expected_cr2 = K_PAGE;
    expect(write ? &pf_write : &pf_read);
    if (write)
        probe_write32(K_PAGE, 1);
    else
        probe_read32(K_PAGE);
    unmap_page(K_PAGE);

    expect(&gp);
    trig_gp();
    expect(&ud);
    trig_ud();
}

static void ring3_round(int write)
{
    static const struct expectation read_seq[] = {
        { "ring-3 #PF read", VEC_PF, PF_U, u_pf_read, 3, 0 },
        { "ring-3 #GP", VEC_GP, 0, u_gp, 3, 1 },
        { "ring-3 #UD", VEC_UD, 0, u_ud, 3, 2 },
    };
    static const struct expectation write_seq[] = {
        { "ring-3 #PF write", VEC_PF, PF_U | PF_W, u_pf_write, 3, 0 },
        { "ring-3 #GP", VEC_GP, 0, u_gp, 3, 1 },
        { "ring-3 #UD", VEC_UD, 0, u_ud, 3, 2 },
    };

    expected_cr2 = U_PAGE;
    u_write = write;
    user_seq = write ? write_seq : read_seq;
    user_left = 3;
    expect(user_seq);
    user_enter(user_program, user_stack_top, 0);
    unmap_page(U_PAGE);
}

void guest_main(void)
{
    paging_init();
    paging_enable();
    usermode_init();
    idt_set_handler(VEC_DF, on_df);

    for (uint32_t i = 1; i <= ITERATIONS; i++) {
        idt_set_handler(VEC_PF, on_pf);
        idt_set_handler(VEC_GP, expect_handler);
        idt_set_handler(VEC_UD, expect_handler);
        ring0_round(i & 1);

        idt_set_handler(VEC_PF, on_user_fault);
        idt_set_handler(VEC_GP, on_user_fault);
        idt_set_handler(VEC_UD, on_user_fault);
        ring3_round(i & 1);

        if (expect_pending() || expect_count() != i * 6)
            fail("iteration %u: %u faults arrived, expected %u", i, expect_count(), i * 6);
        if (i % 250 == 0)
            kprintf("iteration %u: #PF, #GP, #UD from ring 0 and ring 3, each with its own vector\n", i);
    }
    kprintf("%u exceptions, no double fault\n", expect_count());
    pass();
}
