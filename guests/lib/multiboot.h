/* Multiboot 0.6.96: the header a kernel carries and the information a loader passes. */
#ifndef MULTIBOOT_H
#define MULTIBOOT_H

#include "types.h"

#define MULTIBOOT_HEADER_MAGIC 0x1BADB002
#define MULTIBOOT_LOADER_MAGIC 0x2BADB002
#define MB_HDR_PAGE_ALIGN 0x00000001 /* align modules on 4 KiB */
#define MB_HDR_MEMORY_INFO 0x00000002 /* ask for mem_lower/mem_upper */

#define MB_INFO_MEMORY 0x00000001
#define MB_INFO_CMDLINE 0x00000004

struct multiboot_info {
    uint32_t flags;
    uint32_t mem_lower, mem_upper; /* KiB, valid if MB_INFO_MEMORY */
    uint32_t boot_device;
    uint32_t cmdline;              /* physical address of a C string, if MB_INFO_CMDLINE */
    uint32_t mods_count, mods_addr;
    uint32_t syms[4];
    uint32_t mmap_length, mmap_addr;
};

/* Set by kernel_entry from what the loader passed in EAX and EBX. */
extern const struct multiboot_info *multiboot_info;

/* The command line, or NULL if the loader gave none. */
const char *cmdline(void);

/* The value of "key=N" (decimal, or hex with 0x) on the command line, or def. */
uint32_t cmdline_uint(const char *key, uint32_t def);

#endif
