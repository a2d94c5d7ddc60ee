/* A millisecond clock: PIT channel 0 at 1 kHz on IRQ0, counted by a handler.
 * Used for bounded waits (timeouts), never printed: output stays deterministic. */
#ifndef CLOCK_H
#define CLOCK_H

#include "types.h"

/* Program the PIT for 1000 Hz, install the IRQ0 handler, unmask IRQ0. */
void clock_start(void);

/* Milliseconds since clock_start (counted ticks). */
uint32_t clock_ms(void);

/* Let interrupts in until the next one arrives ("sti; hlt"), then disable them. */
void clock_idle(void);

/* Wait ms milliseconds with interrupts let in (IRQ handlers run meanwhile). */
void clock_sleep(uint32_t ms);

#endif
