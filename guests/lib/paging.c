/* Page directory and two page tables, all statically allocated. */
#include "paging.h"
#include "exit.h"
#include "usermode.h"

static uint32_t page_directory[1024] __attribute__((aligned(4096)));
static uint32_t page_tables[2][1024] __attribute__((aligned(4096)));

extern char __kernel_end[];

void paging_init(void)
{
    if ((uint32_t)__kernel_end > PAGING_IDENTITY_END)
        fail("kernel ends at %x, beyond the identity map", (uint32_t)__kernel_end);

    for (uint32_t i = 0; i < 1024; i++) {
        uint32_t addr = i * PAGE_SIZE;
        uint32_t flags = PTE_P | PTE_W;
        if (addr >= (uint32_t)__user_start && addr < (uint32_t)__user_end)
            flags |= PTE_U;
        page_tables[0][i] = addr | flags;
        page_tables[1][i] = 0;
    }
    /* Directory entries allow everything; the page-table entries decide. */
    page_directory[0] = (uint32_t)page_tables[0] | PTE_P | PTE_W | PTE_U;
    page_directory[1] = (uint32_t)page_tables[1] | PTE_P | PTE_W | PTE_U;
}

void paging_enable(void)
{
    uint32_t cr0;
    asm volatile("mov %0, %%cr3" : : "r"(page_directory) : "memory");
    asm volatile("mov %%cr0, %0" : "=r"(cr0));
    cr0 |= 0x80000000u; /* PG */
    asm volatile("mov %0, %%cr0\n\tjmp 1f\n1:" : : "r"(cr0) : "memory");
}

uint32_t *pte_for(uint32_t vaddr)
{
    if (vaddr >= PAGING_SPARE_END)
        fail("no page table for %x", vaddr);
    return &page_tables[vaddr >> 22][(vaddr >> 12) & 1023];
}

void map_page(uint32_t vaddr, uint32_t paddr, uint32_t flags)
{
    *pte_for(vaddr) = (paddr & ~(PAGE_SIZE - 1)) | flags | PTE_P;
    invlpg(vaddr);
}

void unmap_page(uint32_t vaddr)
{
    *pte_for(vaddr) = 0;
    invlpg(vaddr);
}
