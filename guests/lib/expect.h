/* Expected faults: a guest announces the exception it is about to cause, and the
 * handler checks that exactly that arrived (vector, error code, saved EIP, ring). */
#ifndef EXPECT_H
#define EXPECT_H

#include "idt.h"

struct expectation {
    const char *what;  /* for messages, e.g. "ring-3 cli" */
    uint32_t vector;
    uint32_t error;    /* expected error code (0 for vectors without one) */
    const void *eip;   /* expected saved EIP */
    unsigned cpl;      /* ring the fault must come from (saved CS RPL) */
    uint32_t skip;     /* bytes to advance EIP by before returning; 0 re-executes */
};

/* Arm one expectation; the next exception must match it. */
void expect(const struct expectation *e);

/* Check the frame against the armed expectation (FAIL if none or mismatch),
 * disarm it, and apply the skip. Handlers call this first. */
void expect_check(struct frame *f);

/* A handler that only does expect_check; install it with idt_set_handler. */
void expect_handler(struct frame *f);

/* How many expected exceptions have arrived so far. */
uint32_t expect_count(void);

/* True while an expectation is armed (i.e. the fault has not come yet). */
int expect_pending(void);

#endif
