/* Read-modify-write instructions under a 1 kHz timer interrupt: the final
 * memory values are exactly predictable, so an instruction that the monitor
 * ran twice when it preempted the guest shows up as a wrong value. */
#include "kernel.h"
#include "rmw.h"

const char guest_name[] = "rmwloop";

#define DEFAULT_ITERATIONS 10000000 /* about 2 s on QEMU 7.2 TCG */
#define TIMER_HZ 1000

#define OFFSET_OK(field, off) _Static_assert(__builtin_offsetof(struct rmw, field) == (off), #field)
OFFSET_OK(inc, RMW_INC);
OFFSET_OK(adc_hi, RMW_ADC_HI);
OFFSET_OK(xchg_sum, RMW_XCHG_SUM);
OFFSET_OK(cmpxchg_fails, RMW_CMPXCHG_FAILS);
OFFSET_OK(shl_sum, RMW_SHL_SUM);
OFFSET_OK(movs_sum, RMW_MOVS_SUM);
OFFSET_OK(src, RMW_SRC);
OFFSET_OK(dst, RMW_DST);

static struct rmw actual, expected;
static volatile uint32_t ticks;

static void timer_irq(struct frame *f)
{
    (void)f;
    asm volatile("lock incl %0" : "+m"(ticks));
    pic_eoi(0);
}

/* The same loop in plain C, one operation at a time. */
static void model(struct rmw *m, uint32_t n)
{
    uint64_t adc = 0;
    for (uint32_t i = 0; i < n; i++) {
        m->inc++;
        m->dec--;
        m->add += i;
        adc += RMW_ADC_STEP;
        m->or_ |= i;
        m->xor_ ^= i;
        m->xchg_sum += m->xchg;
        m->xchg = i;
        m->xadd_sum += m->xadd;
        m->xadd += RMW_XADD_STEP;
        m->cmpxchg += RMW_CMPXCHG_STEP;
        m->not_ = ~i;
        m->not_sum += m->not_;
        m->neg = -i;
        m->neg_sum += m->neg;
        m->shl = i << 1;
        m->shl_sum += m->shl;
        m->pp_src = m->pp_dst = i;
        m->pp_sum += i;
        m->src[i % RMW_WORDS]++;
        m->movs_sum += m->src[(7 * i) % RMW_WORDS];
    }
    m->adc_lo = (uint32_t)adc;
    m->adc_hi = (uint32_t)(adc >> 32);
    memcpy(m->dst, m->src, sizeof(m->dst));
}

static int report(const char *name, uint32_t got, uint32_t want)
{
    if (got == want) {
        kprintf("%s: 0x%08x\n", name, got);
        return 0;
    }
    kprintf("%s: 0x%08x, expected 0x%08x\n", name, got, want);
    return 1;
}

void guest_main(void)
{
    uint32_t n = cmdline_uint("iterations", DEFAULT_ITERATIONS);
    kprintf("iterations: %u\n", n);

    idt_set_handler(IRQ_BASE_MASTER + 0, timer_irq);
    pit_start_periodic(TIMER_HZ);
    pic_unmask(0);
    kprintf("timer: %u Hz\n", TIMER_HZ);

    sti();
    rmw_run(&actual, n);
    cli();
    model(&expected, n);

    int bad = 0;
    bad += report("inc", actual.inc, expected.inc);
    bad += report("dec", actual.dec, expected.dec);
    bad += report("add", actual.add, expected.add);
    bad += report("adc lo", actual.adc_lo, expected.adc_lo);
    bad += report("adc hi", actual.adc_hi, expected.adc_hi);
    bad += report("or", actual.or_, expected.or_);
    bad += report("xor", actual.xor_, expected.xor_);
    bad += report("xchg", actual.xchg, expected.xchg);
    bad += report("xchg sum", actual.xchg_sum, expected.xchg_sum);
    bad += report("lock xadd", actual.xadd, expected.xadd);
    bad += report("lock xadd sum", actual.xadd_sum, expected.xadd_sum);
    bad += report("lock cmpxchg", actual.cmpxchg, expected.cmpxchg);
    bad += report("lock cmpxchg failures", actual.cmpxchg_fails, expected.cmpxchg_fails);
    bad += report("not sum", actual.not_sum, expected.not_sum);
    bad += report("neg sum", actual.neg_sum, expected.neg_sum);
    bad += report("shl sum", actual.shl_sum, expected.shl_sum);
    bad += report("push/pop sum", actual.pp_sum, expected.pp_sum);
    bad += report("rep movsd sum", actual.movs_sum, expected.movs_sum);
    if (memcmp(actual.dst, expected.dst, sizeof(actual.dst)) ||
        memcmp(actual.src, expected.src, sizeof(actual.src))) {
        kprintf("rep movsd buffers differ from the model\n");
        bad++;
    }
    if (bad)
        fail("%d values differ from the model", bad);
    kprintf("all values as predicted\n");
    pass();
}
