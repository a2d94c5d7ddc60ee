/* See expect.h. */
#include "expect.h"
#include "exit.h"

static const struct expectation *armed;
static uint32_t hits;

void expect(const struct expectation *e)
{
    armed = e;
}

int expect_pending(void)
{
    return armed != NULL;
}

uint32_t expect_count(void)
{
    return hits;
}

void expect_check(struct frame *f)
{
    const struct expectation *e = armed;

    if (!e)
        fail("unexpected vector %u error %x at %x:%x", f->vector, f->error, f->cs, f->eip);
    if (f->vector != e->vector)
        fail("%s: expected vector %u, got vector %u (error %x) at %x:%x",
             e->what, e->vector, f->vector, f->error, f->cs, f->eip);
    if (f->eip != (uint32_t)e->eip)
        fail("%s: saved EIP %x, expected %x", e->what, f->eip, (uint32_t)e->eip);
    if (f->error != e->error)
        fail("%s: error code %x, expected %x", e->what, f->error, e->error);
    if ((f->cs & 3) != e->cpl)
        fail("%s: saved CS %x, expected RPL %u", e->what, f->cs, e->cpl);

    armed = NULL;
    hits++;
    f->eip += e->skip;
}

void expect_handler(struct frame *f)
{
    expect_check(f);
}
