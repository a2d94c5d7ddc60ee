/* PCI configuration mechanism #1: CONFIG_ADDRESS at 0xCF8 selects enable bit,
 * bus, device, function and dword register; CONFIG_DATA at 0xCFC-0xCFF moves
 * the data, with byte and word accesses at the matching byte lanes. */
#include "pci.h"
#include "io.h"

#define CONFIG_ADDRESS 0xCF8
#define CONFIG_DATA    0xCFC
#define CONFIG_ENABLE  0x80000000u

static void select_reg(struct pci_dev d, unsigned off)
{
    outl(CONFIG_ADDRESS, CONFIG_ENABLE | (uint32_t)d.bus << 16 | (uint32_t)(d.dev & 31) << 11 |
                             (uint32_t)(d.fn & 7) << 8 | (off & 0xFC));
}

uint32_t pci_read32(struct pci_dev d, unsigned off)
{
    select_reg(d, off);
    return inl(CONFIG_DATA);
}

uint16_t pci_read16(struct pci_dev d, unsigned off)
{
    select_reg(d, off);
    return inw(CONFIG_DATA + (off & 2));
}

uint8_t pci_read8(struct pci_dev d, unsigned off)
{
    select_reg(d, off);
    return inb(CONFIG_DATA + (off & 3));
}

void pci_write32(struct pci_dev d, unsigned off, uint32_t v)
{
    select_reg(d, off);
    outl(CONFIG_DATA, v);
}

void pci_write16(struct pci_dev d, unsigned off, uint16_t v)
{
    select_reg(d, off);
    outw(CONFIG_DATA + (off & 2), v);
}

void pci_write8(struct pci_dev d, unsigned off, uint8_t v)
{
    select_reg(d, off);
    outb(CONFIG_DATA + (off & 3), v);
}

int pci_find(uint16_t vendor, uint16_t device, struct pci_dev *out)
{
    for (unsigned dev = 0; dev < 32; dev++) {
        for (unsigned fn = 0; fn < 8; fn++) {
            struct pci_dev d = { 0, (uint8_t)dev, (uint8_t)fn };
            uint32_t id = pci_read32(d, PCI_VENDOR_ID);
            if ((id & 0xFFFF) == 0xFFFF) {
                if (fn == 0)
                    break; /* no device in this slot */
                continue;
            }
            if ((id & 0xFFFF) == vendor && (id >> 16) == device) {
                *out = d;
                return 1;
            }
            /* Header type bit 7: the device has functions 1-7. */
            if (fn == 0 && !(pci_read8(d, PCI_HEADER_TYPE) & 0x80))
                break;
        }
    }
    return 0;
}

void pci_read_bar(struct pci_dev d, unsigned off, struct pci_bar *bar)
{
    uint16_t cmd = pci_read16(d, PCI_COMMAND);
    uint32_t orig = pci_read32(d, off);

    bar->offset = off;
    bar->is_io = orig & PCI_BAR_IO;
    bar->is_64 = !bar->is_io && (orig & PCI_BAR_MEM_TYPE) == PCI_BAR_MEM_TYPE_64;
    bar->base = orig & (bar->is_io ? PCI_BAR_IO_MASK : PCI_BAR_MEM_MASK);

    /* Sizing: no decoding while the BAR holds all-ones. */
    pci_write16(d, PCI_COMMAND, cmd & ~(PCI_COMMAND_IO | PCI_COMMAND_MEMORY));
    pci_write32(d, off, 0xFFFFFFFFu);
    uint32_t probe = pci_read32(d, off);
    pci_write32(d, off, orig);
    pci_write16(d, PCI_COMMAND, cmd);

    uint32_t mask = probe & (bar->is_io ? PCI_BAR_IO_MASK : PCI_BAR_MEM_MASK);
    if (bar->is_io)
        mask |= 0xFFFF0000u; /* I/O BARs may implement only the low 16 bits */
    bar->size = mask ? (~mask + 1) : 0;
}
