/* Ending a test: QEMU's isa-debug-exit (and our monitor) take the code written to port 0xF4. */
#ifndef EXIT_H
#define EXIT_H

#include "types.h"

/* Each guest defines its name; PASS and FAIL lines carry it. */
extern const char guest_name[];

void qemu_exit(uint32_t code) __attribute__((noreturn));
void pass(void) __attribute__((noreturn));
void fail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

#endif
