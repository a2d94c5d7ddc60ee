/* Two-level paging: #PF for not-present pages (read and write, ring 0) and for
 * protection violations from ring 3, with CR2 and the error code checked, the
 * mapping fixed and the access completed. */
#include "kernel.h"
#include "expect.h"
#include "paging.h"
#include "probe.h"
#include "usermode.h"

const char guest_name[] = "paging";

/* Virtual pages in the unmapped 4-8 MiB range, and the physical pages they get. */
#define V_READ  0x00500000u
#define V_WRITE 0x00501000u
#define V_ALIAS 0x00502000u /* second mapping of P_WRITE, to read the store back */
#define P_READ  0x00600000u
#define P_WRITE 0x00601000u
#define MAGIC_READ 0xcafe0001u
#define MAGIC_WRITE 0xcafe0002u
#define MAGIC_USER 0x600dc0deu

extern char user_program[], user_stack_top[], ro_page[];
extern char u_write_ro[], u_read_super[];

/* A kernel page ring 3 must not read (the user code names it). */
uint32_t supervisor_page[1024] __attribute__((aligned(4096)));

enum fix { MAP_TO, MAKE_WRITABLE, SKIP };

struct pf_case {
    struct expectation e;
    uint32_t cr2;
    enum fix fix;
    uint32_t paddr; /* for MAP_TO */
};

/* The faults still to come, in order; the handler arms the next one. */
static const struct pf_case *pending;
static unsigned pending_count;

static void arm(const struct pf_case *c, unsigned count)
{
    pending = c;
    pending_count = count;
    expect(&c->e);
}

static void on_pf(struct frame *f)
{
    const struct pf_case *c = pending;
    uint32_t cr2 = read_cr2();

    expect_check(f);
    if (cr2 != c->cr2)
        fail("%s: CR2 %x, expected %x", c->e.what, cr2, c->cr2);
    switch (c->fix) {
    case MAP_TO:
        map_page(c->cr2, c->paddr, PTE_W);
        break;
    case MAKE_WRITABLE:
        *pte_for(c->cr2) |= PTE_W;
        invlpg(c->cr2);
        break;
    case SKIP:
        break; /* expect_check advanced EIP */
    }
    kprintf("%s: #PF error 0x%x, CR2 right, saved EIP at the instruction\n",
            c->e.what, f->error);
    if (--pending_count)
        arm(c + 1, pending_count);
}

static void require_fault_taken(const struct pf_case *c)
{
    if (expect_pending())
        fail("%s: no page fault", c->e.what);
}

static void kernel_faults(void)
{
    static const struct pf_case rd = {
        { "ring-0 read of a not-present page", VEC_PF, 0, probe_read32_insn, 0, 0 },
        V_READ, MAP_TO, P_READ };
    static const struct pf_case wr = {
        { "ring-0 write to a not-present page", VEC_PF, PF_W, probe_write32_insn, 0, 0 },
        V_WRITE, MAP_TO, P_WRITE };

    arm(&rd, 1);
    uint32_t v = probe_read32(V_READ);
    require_fault_taken(&rd);
    if (v != MAGIC_READ)
        fail("read after mapping gave %x, expected %x", v, MAGIC_READ);
    kprintf("the read completed through the new mapping: 0x%x\n", v);

    arm(&wr, 1);
    probe_write32(V_WRITE, MAGIC_WRITE);
    require_fault_taken(&wr);
    map_page(V_ALIAS, P_WRITE, 0);
    v = probe_read32(V_ALIAS);
    if (v != MAGIC_WRITE)
        fail("the write did not reach physical %x: read %x", P_WRITE, v);
    kprintf("the write completed through the new mapping: 0x%x\n", v);

    uint32_t a = *pte_for(V_READ), d = *pte_for(V_WRITE);
    if (!(a & PTE_A) || (a & PTE_D))
        fail("PTE after a read is %x: want accessed, not dirty", a);
    if ((d & (PTE_A | PTE_D)) != (PTE_A | PTE_D))
        fail("PTE after a write is %x: want accessed and dirty", d);
    kprintf("the CPU set the accessed and dirty bits\n");
}

static void user_faults(void)
{
    /* skip 5: the length of "movl supervisor_page, %eax" */
    static const struct pf_case cases[] = {
        { { "ring-3 write to a read-only user page", VEC_PF, PF_P | PF_W | PF_U, u_write_ro, 3, 0 },
          (uint32_t)ro_page, MAKE_WRITABLE, 0 },
        { { "ring-3 read of a supervisor page", VEC_PF, PF_P | PF_U, u_read_super, 3, 5 },
          (uint32_t)supervisor_page, SKIP, 0 },
    };

    *pte_for((uint32_t)ro_page) &= ~PTE_W;
    invlpg((uint32_t)ro_page);

    usermode_init();
    arm(cases, ARRAY_SIZE(cases));
    kprintf("entering ring 3\n");
    user_enter(user_program, user_stack_top, 0);
    kprintf("back in ring 0\n");
    if (expect_count() != 4)
        fail("%u page faults, expected 4", expect_count());
    if (*(volatile uint32_t *)ro_page != MAGIC_USER)
        fail("the ring-3 write did not complete: %x", *(volatile uint32_t *)ro_page);
    kprintf("the ring-3 write completed after the page was made writable\n");
}

void guest_main(void)
{
    /* Physical contents first, while addresses are still physical. */
    *(volatile uint32_t *)V_READ = 0;
    *(volatile uint32_t *)P_READ = MAGIC_READ;
    *(volatile uint32_t *)P_WRITE = 0;

    paging_init();
    idt_set_handler(VEC_PF, on_pf);
    paging_enable();
    kprintf("paging on: 0-4 MiB identity-mapped with 4 KiB pages\n");

    kernel_faults();
    user_faults();
    pass();
}
