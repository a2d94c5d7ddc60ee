/* A tiny printf to the serial console: %d %u %x %s %c %%, with optional
 * zero padding and width (e.g. %08x). */
#ifndef PRINTF_H
#define PRINTF_H

typedef __builtin_va_list va_list;
#define va_start(ap, last) __builtin_va_start(ap, last)
#define va_arg(ap, type) __builtin_va_arg(ap, type)
#define va_end(ap) __builtin_va_end(ap)

void kprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void kvprintf(const char *fmt, va_list ap);

#endif
