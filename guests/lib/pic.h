/* The two cascaded Intel 8259A interrupt controllers. */
#ifndef PIC_H
#define PIC_H

#include "types.h"

#define IRQ_BASE_MASTER 0x20 /* IRQ0-7  -> vectors 0x20-0x27 */
#define IRQ_BASE_SLAVE  0x28 /* IRQ8-15 -> vectors 0x28-0x2F */

/* Reinitialise both PICs with the vectors above, all IRQs masked. */
void pic_init(void);
void pic_unmask(unsigned irq);
void pic_mask(unsigned irq);
void pic_eoi(unsigned irq);

#endif
