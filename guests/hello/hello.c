/* The smallest useful guest: console output, Multiboot information, exit code. */
#include "kernel.h"

const char guest_name[] = "hello";

void guest_main(void)
{
    kprintf("Hello from the guest\n");

    const struct multiboot_info *mbi = multiboot_info;
    if (mbi->flags & MB_INFO_MEMORY)
        kprintf("mem: lower %u KiB, upper %u KiB\n", mbi->mem_lower, mbi->mem_upper);
    else
        fail("the loader gave no memory information although the header asks for it");

    /* Printed as given, less trailing blanks (QEMU passes "<kernel path> <-append>"). */
    const char *cl = cmdline();
    size_t len = cl ? strlen(cl) : 0;
    while (len && (cl[len - 1] == ' ' || cl[len - 1] == '\t'))
        len--;
    if (len) {
        kprintf("cmdline: ");
        for (size_t i = 0; i < len; i++)
            serial_putc(cl[i]);
        kprintf("\n");
    }

    pass();
}
