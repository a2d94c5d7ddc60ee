/* Two-level 32-bit paging with 4 KiB pages (SDM vol. 3, 4.3), covering the low 8 MiB:
 * 0-4 MiB identity-mapped at start, 4-8 MiB left unmapped for faults to fill in. */
#ifndef PAGING_H
#define PAGING_H

#include "types.h"

#define PAGE_SIZE 4096u
#define PTE_P 0x001  /* present */
#define PTE_W 0x002  /* writable */
#define PTE_U 0x004  /* user accessible */
#define PTE_A 0x020  /* accessed, set by the CPU */
#define PTE_D 0x040  /* dirty, set by the CPU */

#define PF_P 0x1     /* page-fault error code: protection violation (else not present) */
#define PF_W 0x2     /* ... caused by a write */
#define PF_U 0x4     /* ... in ring 3 */

#define PAGING_IDENTITY_END 0x00400000u /* end of the identity map */
#define PAGING_SPARE_START 0x00400000u  /* 4-8 MiB: page table present, no pages */
#define PAGING_SPARE_END 0x00800000u

/* Build the tables: kernel pages supervisor read/write, the .user pages user
 * read/write. Fails the test if the kernel does not fit the identity map. */
void paging_init(void);
/* Load CR3 and set CR0.PG. */
void paging_enable(void);

/* The page-table entry for a virtual address below PAGING_SPARE_END. */
uint32_t *pte_for(uint32_t vaddr);
void map_page(uint32_t vaddr, uint32_t paddr, uint32_t flags);
void unmap_page(uint32_t vaddr);

static inline void invlpg(uint32_t vaddr) { asm volatile("invlpg (%0)" : : "r"(vaddr) : "memory"); }

static inline uint32_t read_cr2(void)
{
    uint32_t v;
    asm volatile("mov %%cr2, %0" : "=r"(v));
    return v;
}

#endif
