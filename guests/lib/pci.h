/* PCI configuration mechanism #1 (ports 0xCF8/0xCFC, PCI Local Bus spec 3.0,
 * section 3.2.2.3.2): configuration space access, device discovery and BARs. */
#ifndef PCI_H
#define PCI_H

#include "types.h"

/* Configuration space header offsets (type 0). */
#define PCI_VENDOR_ID      0x00
#define PCI_DEVICE_ID      0x02
#define PCI_COMMAND        0x04
#define PCI_STATUS         0x06
#define PCI_REVISION       0x08
#define PCI_CLASS_PROG     0x09 /* programming interface, subclass, class: 0x09-0x0B */
#define PCI_HEADER_TYPE    0x0E
#define PCI_BAR0           0x10
#define PCI_INTERRUPT_LINE 0x3C
#define PCI_INTERRUPT_PIN  0x3D

/* COMMAND register bits. */
#define PCI_COMMAND_IO     0x0001
#define PCI_COMMAND_MEMORY 0x0002
#define PCI_COMMAND_MASTER 0x0004

/* BAR low bits. */
#define PCI_BAR_IO          0x1
#define PCI_BAR_MEM_TYPE    0x6 /* memory BAR: 00 = 32-bit, 10 = 64-bit */
#define PCI_BAR_MEM_TYPE_64 0x4
#define PCI_BAR_IO_MASK     0xFFFFFFFCu
#define PCI_BAR_MEM_MASK    0xFFFFFFF0u

struct pci_dev {
    uint8_t bus, dev, fn;
};

uint32_t pci_read32(struct pci_dev d, unsigned off);
uint16_t pci_read16(struct pci_dev d, unsigned off);
uint8_t pci_read8(struct pci_dev d, unsigned off);
void pci_write32(struct pci_dev d, unsigned off, uint32_t v);
void pci_write16(struct pci_dev d, unsigned off, uint16_t v);
void pci_write8(struct pci_dev d, unsigned off, uint8_t v);

/* Scan bus 0 (devices 0-31; functions 1-7 of multi-function devices) for
 * vendor:device. Returns 1 and fills *out when found, else 0. */
int pci_find(uint16_t vendor, uint16_t device, struct pci_dev *out);

/* One decoded base address register. */
struct pci_bar {
    unsigned offset; /* of the BAR in configuration space */
    int is_io;
    int is_64;       /* a 64-bit memory BAR: the next BAR holds the high half */
    uint32_t base;   /* low 32 bits of the assigned address */
    uint32_t size;   /* from the all-ones sizing probe, 0 when the BAR is unused */
};

/* Decode the BAR at configuration offset off (0x10, 0x14, ...), sizing it the
 * standard way: decoding off in COMMAND, write all-ones, read back, restore. */
void pci_read_bar(struct pci_dev d, unsigned off, struct pci_bar *bar);

#endif
