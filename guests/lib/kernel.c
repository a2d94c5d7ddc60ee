/* Common start-up, called by start.S: our own GDT/TSS, an IDT, the console, quiet PICs. */
#include "kernel.h"

void kernel_entry(uint32_t magic, const struct multiboot_info *mbi)
{
    gdt_init();
    idt_init();
    serial_init();
    pic_init();

    if (magic != MULTIBOOT_LOADER_MAGIC)
        fail("not started by a Multiboot loader (EAX=%x)", magic);
    multiboot_info = mbi;

    guest_main();
    fail("guest_main returned");
}
