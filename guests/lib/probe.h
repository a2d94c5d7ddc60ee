/* Single memory accesses and faulting instructions at known instruction addresses, so a fault handler can
 * check the saved EIP against the instruction that faulted (implemented in probe.S). */
#ifndef PROBE_H
#define PROBE_H

#include "types.h"

uint32_t probe_read32(uint32_t addr);
void probe_write32(uint32_t addr, uint32_t value);

/* The load in probe_read32 and the store in probe_write32. */
extern char probe_read32_insn[], probe_write32_insn[];

/* Faults at known instructions, both 2 bytes long: trig_gp loads DS with
 * selector 0x103 (beyond the GDT limit: #GP with error code 0x100), trig_ud runs ud2. */
void trig_gp(void);
void trig_ud(void);
extern char trig_gp_insn[], trig_ud_insn[];

#endif
