/* 8259A programming per the Intel 8259A datasheet: ICW1-ICW4, OCW1 (mask), OCW2 (EOI).
 * Firmware leaves IRQ0 mapped on vector 8 (#DF!), so every guest remaps first. */
#include "pic.h"
#include "io.h"

#define MASTER_CMD 0x20
#define MASTER_DATA 0x21
#define SLAVE_CMD 0xA0
#define SLAVE_DATA 0xA1

#define ICW1_INIT_ICW4 0x11   /* edge triggered, cascade, ICW4 follows */
#define ICW3_MASTER_SLAVE_ON_IR2 0x04
#define ICW3_SLAVE_ID_2 0x02
#define ICW4_8086 0x01
#define OCW2_NONSPECIFIC_EOI 0x20

void pic_init(void)
{
    outb(MASTER_CMD, ICW1_INIT_ICW4);
    outb(SLAVE_CMD, ICW1_INIT_ICW4);
    outb(MASTER_DATA, IRQ_BASE_MASTER);
    outb(SLAVE_DATA, IRQ_BASE_SLAVE);
    outb(MASTER_DATA, ICW3_MASTER_SLAVE_ON_IR2);
    outb(SLAVE_DATA, ICW3_SLAVE_ID_2);
    outb(MASTER_DATA, ICW4_8086);
    outb(SLAVE_DATA, ICW4_8086);
    /* OCW1: mask everything; the cascade line IRQ2 opens with the first slave IRQ. */
    outb(MASTER_DATA, 0xFF);
    outb(SLAVE_DATA, 0xFF);
}

void pic_unmask(unsigned irq)
{
    if (irq < 8) {
        outb(MASTER_DATA, inb(MASTER_DATA) & ~(1u << irq));
    } else {
        outb(SLAVE_DATA, inb(SLAVE_DATA) & ~(1u << (irq - 8)));
        outb(MASTER_DATA, inb(MASTER_DATA) & ~(1u << 2));
    }
}

void pic_mask(unsigned irq)
{
    if (irq < 8)
        outb(MASTER_DATA, inb(MASTER_DATA) | (1u << irq));
    else
        outb(SLAVE_DATA, inb(SLAVE_DATA) | (1u << (irq - 8)));
}

void pic_eoi(unsigned irq)
{
    if (irq >= 8)
        outb(SLAVE_CMD, OCW2_NONSPECIFIC_EOI);
    outb(MASTER_CMD, OCW2_NONSPECIFIC_EOI);
}
