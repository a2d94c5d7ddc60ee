/* Interrupt descriptor table and the C view of an interrupt frame (SDM vol. 3, 6.10-6.12). */
#ifndef IDT_H
#define IDT_H

#include "types.h"

/* Exception vectors used by the guests. */
#define VEC_DE 0
#define VEC_BP 3
#define VEC_OF 4
#define VEC_UD 6
#define VEC_DF 8
#define VEC_GP 13
#define VEC_PF 14

/* What isr.S leaves on the stack, lowest address first. user_esp and user_ss
 * exist only when the CPU came from ring 3 (cs & 3 == 3). */
struct frame {
    uint32_t gs, fs, es, ds;
    uint32_t edi, esi, ebp, esp_pusha, ebx, edx, ecx, eax; /* pusha */
    uint32_t vector, error;   /* error is 0 for vectors without an error code */
    uint32_t eip, cs, eflags; /* pushed by the CPU */
    uint32_t user_esp, user_ss;
};

typedef void (*isr_handler)(struct frame *f);

#define GATE_INTERRUPT 0xE /* clears IF on entry */
#define GATE_TRAP      0xF /* leaves IF alone */

void idt_init(void);
void idt_set_gate(unsigned vector, unsigned type, unsigned dpl);
void idt_set_handler(unsigned vector, isr_handler h);

/* True when the frame was pushed on an interrupt from ring 3. */
static inline int frame_from_user(const struct frame *f) { return (f->cs & 3) == 3; }

#endif
