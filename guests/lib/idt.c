/* 256 gates, all pointing at the stubs in isr.S; C handlers registered per vector. */
#include "idt.h"
#include "gdt.h"
#include "exit.h"
#include "printf.h"

#define STUB_SIZE 16

extern char isr_stubs[];

static uint64_t idt[256];
static isr_handler handlers[256];

static const char *const exception_names[32] = {
    "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM",
    "#DF", "CSO", "#TS", "#NP", "#SS", "#GP", "#PF", "15",
    "#MF", "#AC", "#MC", "#XM", "#VE", "21", "22", "23",
    "24", "25", "26", "27", "28", "29", "30", "31",
};

void idt_set_gate(unsigned vector, unsigned type, unsigned dpl)
{
    uint32_t offset = (uint32_t)(isr_stubs + vector * STUB_SIZE);
    uint64_t g = 0;
    g |= offset & 0xFFFF;
    g |= (uint64_t)SEL_KERNEL_CS << 16;
    g |= (uint64_t)(0x80 | (dpl & 3) << 5 | (type & 0xF)) << 40; /* P | DPL | type */
    g |= (uint64_t)(offset >> 16) << 48;
    idt[vector] = g;
}

void idt_set_handler(unsigned vector, isr_handler h)
{
    handlers[vector] = h;
}

void idt_init(void)
{
    struct {
        uint16_t limit;
        uint32_t base;
    } __attribute__((packed)) idtr = { sizeof(idt) - 1, (uint32_t)idt };

    /* Interrupt gates with DPL 0: a stray "int n" from ring 3 gets #GP. */
    for (unsigned v = 0; v < 256; v++)
        idt_set_gate(v, GATE_INTERRUPT, 0);
    asm volatile("lidt %0" : : "m"(idtr));
}

/* Called from isr.S for every interrupt and exception. */
void isr_dispatch(struct frame *f)
{
    if (handlers[f->vector]) {
        handlers[f->vector](f);
        return;
    }
    if (f->vector < 32)
        fail("unexpected exception %s (vector %u) error %x at %x:%x",
             exception_names[f->vector], f->vector, f->error, f->cs, f->eip);
    fail("unexpected interrupt vector %u at %x:%x", f->vector, f->cs, f->eip);
}
