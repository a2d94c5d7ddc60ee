/* Port I/O exits for timing a monitor: N single "out" instructions, then M
 * "rep outsw" strings of 757 words, all to the POST-code port 0x80, which
 * nothing listens to. */
#include "kernel.h"

const char guest_name[] = "iobench";

#define PORT 0x80
#define DEFAULT_OUTS 1000000
#define DEFAULT_REPS 1000
#define STRING_WORDS 757 /* odd on purpose: no power-of-two shortcuts */

static uint16_t buffer[STRING_WORDS];

static void rep_outsw(uint16_t port, const uint16_t *src, uint32_t count)
{
    asm volatile("rep outsw" : "+S"(src), "+c"(count) : "d"(port) : "memory");
}

void guest_main(void)
{
    uint32_t outs = cmdline_uint("outs", DEFAULT_OUTS);
    uint32_t reps = cmdline_uint("reps", DEFAULT_REPS);

    kprintf("outs: %u\n", outs);
    kprintf("reps: %u\n", reps);

    for (uint32_t i = 0; i < outs; i++)
        outb(PORT, (uint8_t)i);

    for (uint32_t i = 0; i < STRING_WORDS; i++)
        buffer[i] = (uint16_t)(i * 0x9E37u);
    for (uint32_t i = 0; i < reps; i++)
        rep_outsw(PORT, buffer, STRING_WORDS);

    kprintf("done\n");
    pass();
}
