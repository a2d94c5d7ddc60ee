/* PIC + PIT + IRQ0 delivery: 50 ticks at 100 Hz, woken from HLT each time. */
#include "kernel.h"

const char guest_name[] = "timer";

#define HZ 100
#define TICKS 50
#define IRQ_TIMER 0

static volatile uint32_t ticks;

static void timer_irq(struct frame *f)
{
    (void)f;
    ticks++;
    pic_eoi(IRQ_TIMER);
}

/* The latched count of a mode-2 counter runs from the reload value down to 1. */
static void check_pit_count(uint16_t reload)
{
    for (int i = 0; i < 100; i++) {
        uint16_t c = pit_read_count();
        if (c < 1 || c > reload)
            fail("PIT count %u outside 1..%u", c, reload);
    }
    kprintf("PIT latched count within 1..%u\n", reload);
}

void guest_main(void)
{
    idt_set_handler(IRQ_BASE_MASTER + IRQ_TIMER, timer_irq);
    uint16_t reload = pit_start_periodic(HZ);
    kprintf("PIT channel 0: mode 2, %u Hz, reload %u\n", HZ, reload);
    pic_unmask(IRQ_TIMER);

    /* Interrupts are only enabled inside "sti; hlt", so each wake-up sees a
     * stable count and the printed lines do not depend on timing. */
    uint32_t next = 10;
    while (ticks < TICKS) {
        sti_hlt();
        cli();
        if (ticks >= next) {
            kprintf("tick %u\n", next);
            next += 10;
        }
    }
    pic_mask(IRQ_TIMER);
    check_pit_count(reload);
    pass();
}
