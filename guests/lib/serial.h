/* COM1 console: a polled 16550 UART at I/O 0x3F8. */
#ifndef SERIAL_H
#define SERIAL_H

void serial_init(void);
void serial_putc(char c);
void serial_puts(const char *s);

#endif
