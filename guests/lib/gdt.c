/* Flat 4 GiB segments for ring 0 and ring 3, plus one TSS.
 * A kernel must not rely on the loader's GDT staying valid, so this runs first. */
#include "gdt.h"

struct tss tss;

/* Where the CPU switches the stack to on an interrupt or exception from ring 3. */
static uint8_t ring0_stack[8192] __attribute__((aligned(16)));

static uint64_t gdt[GDT_ENTRIES];

/* Access byte: P | DPL | S | type.  Flags nibble: G (4 KiB units) | D (32-bit). */
#define ACC_KCODE 0x9A /* present, DPL0, code, execute/read */
#define ACC_KDATA 0x92 /* present, DPL0, data, read/write */
#define ACC_UCODE 0xFA /* present, DPL3, code, execute/read */
#define ACC_UDATA 0xF2 /* present, DPL3, data, read/write */
#define ACC_TSS   0x89 /* present, DPL0, system, 32-bit TSS (available) */
#define FLAGS_4K_32 0xC
#define FLAGS_BYTE  0x0

static uint64_t descriptor(uint32_t base, uint32_t limit, uint8_t access, uint8_t flags)
{
    uint64_t d = 0;
    d |= limit & 0xFFFF;
    d |= (uint64_t)(base & 0xFFFFFF) << 16;
    d |= (uint64_t)access << 40;
    d |= (uint64_t)((limit >> 16) & 0xF) << 48;
    d |= (uint64_t)(flags & 0xF) << 52;
    d |= (uint64_t)(base >> 24) << 56;
    return d;
}

void gdt_init(void)
{
    struct {
        uint16_t limit;
        uint32_t base;
    } __attribute__((packed)) gdtr = { sizeof(gdt) - 1, (uint32_t)gdt };

    gdt[0] = 0;
    gdt[1] = descriptor(0, 0xFFFFF, ACC_KCODE, FLAGS_4K_32);
    gdt[2] = descriptor(0, 0xFFFFF, ACC_KDATA, FLAGS_4K_32);
    gdt[3] = descriptor(0, 0xFFFFF, ACC_UCODE, FLAGS_4K_32);
    gdt[4] = descriptor(0, 0xFFFFF, ACC_UDATA, FLAGS_4K_32);
    gdt[5] = descriptor((uint32_t)&tss, sizeof(tss) - 1, ACC_TSS, FLAGS_BYTE);

    tss.ss0 = SEL_KERNEL_DS;
    tss.esp0 = (uint32_t)(ring0_stack + sizeof(ring0_stack));
    /* An I/O map base beyond the TSS limit means "no I/O permission bitmap":
     * with IOPL 0, every port access from ring 3 raises #GP(0). */
    tss.iomap_base = sizeof(tss);

    asm volatile(
        "lgdt %0\n\t"
        "ljmp %1, $1f\n"
        "1:\n\t"
        "movw %2, %%ax\n\t"
        "movw %%ax, %%ds\n\t"
        "movw %%ax, %%es\n\t"
        "movw %%ax, %%fs\n\t"
        "movw %%ax, %%gs\n\t"
        "movw %%ax, %%ss\n\t"
        "movw %3, %%ax\n\t"
        "ltr %%ax"
        :
        : "m"(gdtr), "i"(SEL_KERNEL_CS), "i"(SEL_KERNEL_DS), "i"(SEL_TSS)
        : "eax", "memory");
}
