/* Exception delivery in ring 0: vector, error code and saved EIP for faults
 * (EIP at the instruction) and traps (EIP after it). */
#include "kernel.h"
#include "expect.h"
#include "probe.h"

const char guest_name[] = "exceptions";

extern char trig_de_insn[], trig_bp_after[];
extern char trig_int31_after[], trig_of_after[];
void trig_de(void), trig_bp(void);
void trig_int31(void), trig_of(void), trig_no_of(void);

struct test {
    struct expectation e;
    void (*trigger)(void);
    const char *report;
};

/* Faults are skipped by the length of their instruction; traps need no skip. */
static const struct test tests[] = {
    { { "#DE", VEC_DE, 0, trig_de_insn, 0, 2 }, trig_de,
      "#DE: divide by zero, saved EIP at the div" },
    { { "#UD", VEC_UD, 0, trig_ud_insn, 0, 2 }, trig_ud,
      "#UD: ud2, saved EIP at the ud2" },
    { { "#BP", VEC_BP, 0, trig_bp_after, 0, 0 }, trig_bp,
      "#BP: int3, saved EIP after the int3" },
    { { "#GP", VEC_GP, 0x100, trig_gp_insn, 0, 2 }, trig_gp,
      "#GP: DS <- selector 0x103 beyond the GDT limit, error code 0x100, saved EIP at the mov" },
    { { "int 0x31", 0x31, 0, trig_int31_after, 0, 0 }, trig_int31,
      "int 0x31: vector 0x31, saved EIP after the int" },
    { { "#OF", VEC_OF, 0, trig_of_after, 0, 0 }, trig_of,
      "#OF: into with OF set, saved EIP after the into" },
};

void guest_main(void)
{
    for (unsigned i = 0; i < ARRAY_SIZE(tests); i++)
        idt_set_handler(tests[i].e.vector, expect_handler);

    for (unsigned i = 0; i < ARRAY_SIZE(tests); i++) {
        const struct test *t = &tests[i];
        expect(&t->e);
        t->trigger();
        if (expect_pending())
            fail("%s: no exception", t->e.what);
        kprintf("%s\n", t->report);
    }

    /* Nothing armed: any exception here is reported as unexpected. */
    trig_no_of();
    kprintf("into with OF clear: no exception\n");

    uint16_t ds;
    asm volatile("movw %%ds, %0" : "=r"(ds));
    if (ds != SEL_KERNEL_DS)
        fail("DS is %x after the failed load, expected %x", ds, SEL_KERNEL_DS);
    kprintf("DS unchanged by the failed segment load\n");
    pass();
}
