/* Fills part of RAM with pseudo-random data, for timing suspend and resume: the image
 * of a VM holds its RAM, zero pages skipped and the rest compressed, and random data is
 * what compresses worst.  Command line: mib=N (default 8) MiB from 16 MiB up.  Prints
 * the fill's checksum, then halts with interrupts off: the machine stops, its state
 * intact, ready to be suspended. */
#include "kernel.h"

const char guest_name[] = "memfill";

#define FILL_BASE 0x1000000u  /* 16 MiB: clear of the kernel and its stack */

void guest_main(void)
{
    uint32_t mib = cmdline_uint("mib", 8);
    uint32_t *words = (uint32_t *)FILL_BASE;
    uint32_t count = mib * (1024u * 1024u / 4u);
    uint32_t x = 0x12345678u, sum = 0;
    const struct multiboot_info *mbi = multiboot_info;

    if (!(mbi->flags & MB_INFO_MEMORY) || (uint64_t)FILL_BASE + (uint64_t)mib * 1024 * 1024 >
            (uint64_t)(mbi->mem_upper + 1024) * 1024)
        fail("not enough RAM for the fill");
    for (uint32_t i = 0; i < count; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        words[i] = x;
        sum += x;
    }
    kprintf("filled %u MiB, checksum 0x%08x\n", mib, sum);
    __asm__ volatile("cli; hlt");
}
