/* Intel 8254 programmable interval timer, channel 0 (wired to IRQ0). */
#ifndef PIT_H
#define PIT_H

#include "types.h"

#define PIT_HZ 1193182u

/* Channel 0, mode 2 (rate generator), binary, reload value for the given rate.
 * Returns the reload value actually programmed. */
uint16_t pit_start_periodic(uint32_t hz);

/* Counter-latch command, then read the latched count (low byte, high byte). */
uint16_t pit_read_count(void);

#endif
