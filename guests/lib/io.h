/* Port I/O and the few privileged instructions the guests use, as inlines. */
#ifndef IO_H
#define IO_H

#include "types.h"

static inline void outb(uint16_t port, uint8_t v)  { asm volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outw(uint16_t port, uint16_t v) { asm volatile("outw %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outl(uint16_t port, uint32_t v) { asm volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }

static inline uint8_t inb(uint16_t port)
{
    uint8_t v;
    asm volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

static inline uint16_t inw(uint16_t port)
{
    uint16_t v;
    asm volatile("inw %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

static inline uint32_t inl(uint16_t port)
{
    uint32_t v;
    asm volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

static inline void cli(void) { asm volatile("cli" ::: "memory"); }
static inline void sti(void) { asm volatile("sti" ::: "memory"); }

/* STI's one-instruction interrupt shadow makes "sti; hlt" race-free: an interrupt
 * that is already pending wakes the HLT instead of being taken before it. */
static inline void sti_hlt(void) { asm volatile("sti; hlt" ::: "memory"); }

#endif
