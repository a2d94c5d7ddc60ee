/* Everything a guest's main file needs. */
#ifndef KERNEL_H
#define KERNEL_H

#include "types.h"
#include "io.h"
#include "string.h"
#include "serial.h"
#include "printf.h"
#include "exit.h"
#include "gdt.h"
#include "idt.h"
#include "pic.h"
#include "pit.h"
#include "multiboot.h"

/* Each guest's main; called with the GDT, IDT, console and PICs set up and
 * interrupts disabled. Returning from it is a failure. */
void guest_main(void);

#endif
