/* The guest's own GDT and TSS (Intel SDM vol. 3, 3.4.5 and 7.2). */
#ifndef GDT_H
#define GDT_H

#include "types.h"

#define SEL_KERNEL_CS 0x08
#define SEL_KERNEL_DS 0x10
#define SEL_USER_CS   (0x18 | 3)
#define SEL_USER_DS   (0x20 | 3)
#define SEL_TSS       0x28
#define GDT_ENTRIES   6

/* 32-bit TSS layout; only SS0:ESP0 and the I/O map base matter to these guests. */
struct tss {
    uint32_t prev_task, esp0, ss0, esp1, ss1, esp2, ss2;
    uint32_t cr3, eip, eflags, eax, ecx, edx, ebx, esp, ebp, esi, edi;
    uint32_t es, cs, ss, ds, fs, gs, ldt;
    uint16_t trap, iomap_base;
} __attribute__((packed));

extern struct tss tss;

/* Load the GDT, reload every segment register, load TR. */
void gdt_init(void);

#endif
