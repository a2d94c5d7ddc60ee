/* Polled driver for the 16550 UART on COM1 (register map from the NS16550A datasheet). */
#include "serial.h"
#include "io.h"

#define COM1 0x3F8
#define REG_THR 0 /* transmit holding (DLAB=0) */
#define REG_DLL 0 /* divisor latch low (DLAB=1) */
#define REG_IER 1 /* interrupt enable (DLAB=0) */
#define REG_DLM 1 /* divisor latch high (DLAB=1) */
#define REG_FCR 2 /* FIFO control (write) */
#define REG_LCR 3 /* line control */
#define REG_MCR 4 /* modem control */
#define REG_LSR 5 /* line status */

#define LCR_DLAB 0x80
#define LCR_8N1 0x03
#define FCR_ENABLE_CLEAR 0x07 /* enable FIFOs, clear RX and TX FIFOs */
#define MCR_DTR_RTS 0x03
#define LSR_THRE 0x20         /* transmit holding register empty */

void serial_init(void)
{
    outb(COM1 + REG_IER, 0x00);          /* polled: no UART interrupts */
    outb(COM1 + REG_LCR, LCR_DLAB);
    outb(COM1 + REG_DLL, 1);             /* divisor 1 = 115200 baud */
    outb(COM1 + REG_DLM, 0);
    outb(COM1 + REG_LCR, LCR_8N1);       /* also clears DLAB */
    outb(COM1 + REG_FCR, FCR_ENABLE_CLEAR);
    outb(COM1 + REG_MCR, MCR_DTR_RTS);
}

void serial_putc(char c)
{
    while (!(inb(COM1 + REG_LSR) & LSR_THRE))
        ;
    outb(COM1 + REG_THR, (uint8_t)c);
}

void serial_puts(const char *s)
{
    while (*s)
        serial_putc(*s++);
}
