/* Formatted output to the serial console, just enough for test reports. */
#include "printf.h"
#include "serial.h"
#include "types.h"

static void put_number(uint32_t v, unsigned base, int negative, int width, char pad)
{
    char buf[12];
    int n = 0;

    do {
        buf[n++] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v);
    if (negative)
        buf[n++] = '-';
    while (width-- > n)
        serial_putc(pad);
    while (n)
        serial_putc(buf[--n]);
}

void kvprintf(const char *fmt, va_list ap)
{
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            serial_putc(*fmt);
            continue;
        }
        fmt++;
        char pad = ' ';
        int width = 0;
        if (*fmt == '0')
            pad = '0';
        while (*fmt >= '0' && *fmt <= '9')
            width = width * 10 + (*fmt++ - '0');

        switch (*fmt) {
        case 'd': {
            int v = va_arg(ap, int);
            put_number(v < 0 ? -(uint32_t)v : (uint32_t)v, 10, v < 0, width, pad);
            break;
        }
        case 'u':
            put_number(va_arg(ap, uint32_t), 10, 0, width, pad);
            break;
        case 'x':
            put_number(va_arg(ap, uint32_t), 16, 0, width, pad);
            break;
        case 's': {
            const char *s = va_arg(ap, const char *);
            serial_puts(s ? s : "(null)");
            break;
        }
        case 'c':
            serial_putc((char)va_arg(ap, int));
            break;
        case '%':
            serial_putc('%');
            break;
        case '\0':
            return;
        default: /* unknown conversion: show it rather than guess */
            serial_putc('%');
            serial_putc(*fmt);
        }
    }
}

void kprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    kvprintf(fmt, ap);
    va_end(ap);
}
