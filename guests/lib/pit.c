/* 8254 programming per the Intel 8254 datasheet: control word at 0x43, counter 0 at 0x40. */
#include "pit.h"
#include "io.h"

#define PIT_CH0 0x40
#define PIT_CTRL 0x43

#define CW_CH0 0x00
#define CW_LATCH 0x00       /* RW bits 00: counter latch command */
#define CW_LOHI 0x30        /* RW bits 11: low byte then high byte */
#define CW_MODE2 0x04       /* rate generator */
#define CW_BINARY 0x00

uint16_t pit_start_periodic(uint32_t hz)
{
    uint32_t reload = (PIT_HZ + hz / 2) / hz;
    if (reload > 0xFFFF)
        reload = 0; /* 0 means 65536, the slowest rate */
    if (reload < 2)
        reload = 2; /* mode 2 needs at least 2 */

    outb(PIT_CTRL, CW_CH0 | CW_LOHI | CW_MODE2 | CW_BINARY);
    outb(PIT_CH0, reload & 0xFF);
    outb(PIT_CH0, (reload >> 8) & 0xFF);
    return (uint16_t)reload;
}

uint16_t pit_read_count(void)
{
    outb(PIT_CTRL, CW_CH0 | CW_LATCH);
    uint8_t lo = inb(PIT_CH0);
    uint8_t hi = inb(PIT_CH0);
    return (uint16_t)(lo | hi << 8);
}
