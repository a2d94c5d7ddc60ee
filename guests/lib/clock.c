/* Millisecond clock from the 8254 channel 0 in mode 2 at 1 kHz (see pit.c). */
#include "clock.h"
#include "idt.h"
#include "io.h"
#include "pic.h"
#include "pit.h"

#define CLOCK_HZ 1000
#define IRQ_TIMER 0

static volatile uint32_t ticks;

static void clock_irq(struct frame *f)
{
    (void)f;
    ticks++;
    pic_eoi(IRQ_TIMER);
}

void clock_start(void)
{
    idt_set_handler(IRQ_BASE_MASTER + IRQ_TIMER, clock_irq);
    pit_start_periodic(CLOCK_HZ);
    pic_unmask(IRQ_TIMER);
}

uint32_t clock_ms(void)
{
    return ticks;
}

void clock_idle(void)
{
    sti_hlt();
    cli();
}

void clock_sleep(uint32_t ms)
{
    uint32_t start = ticks;
    while (ticks - start < ms)
        clock_idle();
}
