/* LSI 53C895A + SCSI disk, driven by SCRIPTS the guest assembles itself:
 * PCI discovery, soft reset, unit attention, INQUIRY, READ CAPACITY(10),
 * READ(10)/WRITE(10) against a known disk pattern, a 64 KiB transfer, a read
 * past the end; through the I/O view (BAR0) and the memory view (BAR1), with
 * completion by polling ISTAT and by interrupt, and once from SCRIPTS RAM. */
#include "kernel.h"
#include "pci.h"
#include "lsi.h"

const char guest_name[] = "scsi";

/* The disk the test prepares: 8 MiB, every little-endian 32-bit word at byte
 * offset X holds X ^ ORIG_XOR. Words this guest writes hold X ^ WRITE_XOR. */
#define DISK_BLOCKS 16384u
#define BLOCK 512u
#define ORIG_XOR  0x5A5A5A5Au
#define WRITE_XOR 0xA5A5A5A5u

#define BUF_BYTES 65536u
static uint8_t rbuf[BUF_BYTES] __attribute__((aligned(4096)));
static uint8_t wbuf[BUF_BYTES] __attribute__((aligned(4096)));

#define STATUS_GOOD 0x00
#define STATUS_CHECK_CONDITION 0x02

static const char *status_name(uint8_t s)
{
    switch (s) {
    case STATUS_GOOD: return "GOOD";
    case STATUS_CHECK_CONDITION: return "CHECK CONDITION";
    case 0x08: return "BUSY";
    default: return "?";
    }
}

static const char *view_name(void)
{
    return lsi.view == LSI_VIEW_MMIO ? "mmio" : "io";
}

static const char *wait_name(void)
{
    return lsi.wait == LSI_WAIT_IRQ ? "interrupt" : "polling";
}

/* ---- CDBs ---- */


struct sense {
    uint8_t key, asc, ascq;
};

static void request_sense(struct sense *s)
{
    static const uint8_t cdb[6] = { 0x03, 0, 0, 0, 18, 0 };
    uint8_t buf[18];
    memset(buf, 0, sizeof(buf));
    uint8_t st = lsi_run(cdb, 6, buf, sizeof(buf), 1);
    if (st != STATUS_GOOD)
        fail("REQUEST SENSE: status %x", st);
    if ((buf[0] & 0x7F) != 0x70)
        fail("REQUEST SENSE: response code %x, want 0x70 (fixed, current)", buf[0]);
    s->key = buf[2] & 0x0F;
    s->asc = buf[12];
    s->ascq = buf[13];
}

static uint8_t rw10(uint8_t op, uint32_t lba, uint32_t blocks, void *buf, int expect_data)
{
    uint8_t cdb[10] = { op };
    put_be32(cdb + 2, lba);
    cdb[7] = blocks >> 8;
    cdb[8] = blocks;
    return lsi_run(cdb, 10, buf, blocks * BLOCK, expect_data);
}

/* ---- disk patterns ---- */

static void fill(uint8_t *buf, uint32_t lba, uint32_t blocks, uint32_t xor)
{
    uint32_t *w = (uint32_t *)buf;
    uint32_t x = lba * BLOCK;
    for (uint32_t i = 0; i < blocks * BLOCK / 4; i++, x += 4)
        w[i] = x ^ xor;
}

static void check(const uint8_t *buf, uint32_t lba, uint32_t blocks, uint32_t xor)
{
    const uint32_t *w = (const uint32_t *)buf;
    uint32_t x = lba * BLOCK;
    for (uint32_t i = 0; i < blocks * BLOCK / 4; i++, x += 4)
        if (w[i] != (x ^ xor))
            fail("READ(10) LBA %u, %u blocks: the word at disk byte offset %x reads %x, want %x",
                 lba, blocks, x, w[i], x ^ xor);
}

/* ---- the checks ---- */

static void soft_reset(void)
{
    lsi_reset();
    /* Register file sanity through this view: SCRATCHA and DSA read back. */
    lsi_wr32(LSI_SCRATCHA, 0x12345678u);
    lsi_wr32(LSI_DSA, 0x9ABCDEF0u);
    uint32_t a = lsi_rd32(LSI_SCRATCHA), d = lsi_rd32(LSI_DSA);
    if (a != 0x12345678u || d != 0x9ABCDEF0u)
        fail("%s view: SCRATCHA/DSA read back %x/%x", view_name(), a, d);
    if (lsi_rd8(LSI_SCRATCHA + 2) != 0x34)
        fail("%s view: byte read of SCRATCHA byte 2 gives %x", view_name(), lsi_rd8(LSI_SCRATCHA + 2));
    kprintf("%s view: soft reset, SCRATCHA and DSA read back\n", view_name());
}

static void unit_attention(void)
{
    struct sense s;
    uint8_t st = lsi_test_unit_ready();
    kprintf("%s/%s: TEST UNIT READY: %s\n", view_name(), wait_name(), status_name(st));
    if (st != STATUS_CHECK_CONDITION)
        fail("first TEST UNIT READY after reset: status %x, want CHECK CONDITION", st);
    request_sense(&s);
    kprintf("%s/%s: REQUEST SENSE: key %x ASC %02x ASCQ %02x\n", view_name(), wait_name(),
            s.key, s.asc, s.ascq);
    if (s.key != 0x6 || s.asc != 0x29 || s.ascq != 0x00)
        fail("sense %x/%x/%x, want 6/29/00 (unit attention, reset)", s.key, s.asc, s.ascq);
    st = lsi_test_unit_ready();
    kprintf("%s/%s: TEST UNIT READY: %s\n", view_name(), wait_name(), status_name(st));
    if (st != STATUS_GOOD)
        fail("TEST UNIT READY after the unit attention: status %x", st);
}

static void copy_trimmed(char *dst, const uint8_t *src, unsigned n)
{
    memcpy(dst, src, n);
    dst[n] = 0;
    while (n && dst[n - 1] == ' ')
        dst[--n] = 0;
}

static void inquiry(void)
{
    static const uint8_t cdb[6] = { 0x12, 0, 0, 0, 36, 0 };
    uint8_t buf[36];
    char vendor[9], product[17];

    memset(buf, 0xEE, sizeof(buf));
    uint8_t st = lsi_run(cdb, 6, buf, sizeof(buf), 1);
    if (st != STATUS_GOOD)
        fail("INQUIRY: status %x", st);
    copy_trimmed(vendor, buf + 8, 8);
    copy_trimmed(product, buf + 16, 16);
    kprintf("inquiry: %s %s\n", vendor, product);
    if (buf[0] != 0x00)
        fail("INQUIRY: peripheral qualifier/device type %x, want 0 (direct access)", buf[0]);
    if (buf[4] + 5 < 36)
        fail("INQUIRY: additional length %u too short", buf[4]);
    kprintf("%s/%s: INQUIRY: peripheral device type 0 (direct access block device)\n",
            view_name(), wait_name());
}

static void read_capacity(void)
{
    static const uint8_t cdb[10] = { 0x25 };
    uint8_t buf[8];
    uint8_t st = lsi_run(cdb, 10, buf, sizeof(buf), 1);
    if (st != STATUS_GOOD)
        fail("READ CAPACITY(10): status %x", st);
    uint32_t last = get_be32(buf), bs = get_be32(buf + 4);
    kprintf("%s/%s: READ CAPACITY(10): %u blocks of %u bytes\n", view_name(), wait_name(),
            last + 1, bs);
    if (last + 1 != DISK_BLOCKS || bs != BLOCK)
        fail("capacity %u x %u, want %u x %u (the test disk is 8 MiB)", last + 1, bs,
             DISK_BLOCKS, BLOCK);
}

static void read_check(uint32_t lba, uint32_t blocks, uint32_t xor, const char *what)
{
    memset(rbuf, 0xEE, blocks * BLOCK);
    uint8_t st = rw10(0x28, lba, blocks, rbuf, 1);
    if (st != STATUS_GOOD)
        fail("READ(10) LBA %u, %u blocks: status %x", lba, blocks, st);
    check(rbuf, lba, blocks, xor);
    kprintf("%s/%s: READ(10) LBA %u, %u block%s (%u bytes): %s\n", view_name(), wait_name(),
            lba, blocks, blocks == 1 ? "" : "s", blocks * BLOCK, what);
}

static void write_blocks(uint32_t lba, uint32_t blocks)
{
    fill(wbuf, lba, blocks, WRITE_XOR);
    uint8_t st = rw10(0x2A, lba, blocks, wbuf, 1);
    if (st != STATUS_GOOD)
        fail("WRITE(10) LBA %u, %u blocks: status %x", lba, blocks, st);
    kprintf("%s/%s: WRITE(10) LBA %u, %u blocks (%u bytes): GOOD\n", view_name(), wait_name(),
            lba, blocks, blocks * BLOCK);
}

static void read_past_end(uint32_t lba, uint32_t blocks)
{
    struct sense s;
    uint8_t st = rw10(0x28, lba, blocks, rbuf, 0);
    kprintf("%s/%s: READ(10) LBA %u, %u block%s (past the end): %s\n", view_name(), wait_name(),
            lba, blocks, blocks == 1 ? "" : "s", status_name(st));
    if (st != STATUS_CHECK_CONDITION)
        fail("READ(10) past the end: status %x, want CHECK CONDITION", st);
    request_sense(&s);
    kprintf("%s/%s: REQUEST SENSE: key %x ASC %02x ASCQ %02x\n", view_name(), wait_name(),
            s.key, s.asc, s.ascq);
    if (s.key != 0x5 || s.asc != 0x21)
        fail("sense %x/%x/%x, want ILLEGAL REQUEST (5) / LBA out of range (21)", s.key, s.asc,
             s.ascq);
}

static void pci_setup(void)
{
    lsi_probe();
    kprintf("pci: LSI 53C895A at %02x:%02x.%u, I/O %x, memory %x, SCRIPTS RAM %x, IRQ %u\n",
            lsi.pci.bus, lsi.pci.dev, lsi.pci.fn, lsi.bar_io.base, lsi.bar_mmio.base,
            lsi.bar_ram.base, lsi.irq);
    uint32_t class = pci_read32(lsi.pci, 0x08) >> 8;
    if (class != 0x010000)
        fail("class code %x, want 0x010000 (SCSI bus controller)", class);
    if (pci_read8(lsi.pci, PCI_INTERRUPT_PIN) != 1)
        fail("interrupt pin %u, want 1 (INTA#)", pci_read8(lsi.pci, PCI_INTERRUPT_PIN));
    kprintf("PCI 1000:0012 class 010000 INTA#, BAR sizes: I/O %u, memory %u, SCRIPTS RAM %u\n",
            lsi.bar_io.size, lsi.bar_mmio.size, lsi.bar_ram.size);
    kprintf("COMMAND: I/O, memory and bus master enabled\n");
    lsi_irq_init();
}

/* The same script, assembled for SCRIPTS RAM, written through BAR2 and read back. */
static void load_scripts_ram(void)
{
    static uint32_t code[256];
    uint32_t len = lsi_build_script(code, ARRAY_SIZE(code), lsi.bar_ram.base);
    volatile uint32_t *ram = (volatile uint32_t *)lsi.bar_ram.base;

    if (len > lsi.bar_ram.size)
        fail("script of %u bytes does not fit SCRIPTS RAM", len);
    for (uint32_t i = 0; i < len / 4; i++)
        ram[i] = code[i];
    for (uint32_t i = 0; i < len / 4; i++)
        if (ram[i] != code[i])
            fail("SCRIPTS RAM dword %u reads %x, wrote %x", i, ram[i], code[i]);
    /* The last dword of the 8 KiB, and byte access. */
    volatile uint8_t *ram8 = (volatile uint8_t *)lsi.bar_ram.base;
    ram[lsi.bar_ram.size / 4 - 1] = 0xA1B2C3D4u;
    if (ram8[lsi.bar_ram.size - 2] != 0xB2 || ram[lsi.bar_ram.size / 4 - 1] != 0xA1B2C3D4u)
        fail("SCRIPTS RAM end does not read back");
    kprintf("SCRIPTS RAM: %u-byte script written and read back through BAR2\n", len);
    lsi.script_addr = lsi.bar_ram.base;
}

void guest_main(void)
{
    pci_setup();

    /* 1. I/O view. */
    lsi.view = LSI_VIEW_IO;
    lsi.wait = LSI_WAIT_POLL;
    soft_reset();
    unit_attention();
    inquiry();
    read_capacity();

    lsi_set_wait(LSI_WAIT_IRQ);
    read_check(0, 8, ORIG_XOR, "pattern matches");
    read_check(DISK_BLOCKS - 8, 8, ORIG_XOR, "pattern matches");
    write_blocks(100, 16);
    read_check(100, 16, WRITE_XOR, "reads back what was written");
    read_check(116, 1, ORIG_XOR, "block after the write unchanged");
    read_check(1024, 128, ORIG_XOR, "64 KiB in one command, pattern matches");
    read_past_end(DISK_BLOCKS - 1, 2);
    read_past_end(DISK_BLOCKS, 1);
    if (lsi_test_unit_ready() != STATUS_GOOD)
        fail("TEST UNIT READY after the failed reads: not GOOD");
    kprintf("io/interrupt: TEST UNIT READY: GOOD\n");

    /* 2. Memory view, after another soft reset. */
    lsi.view = LSI_VIEW_MMIO;
    lsi.wait = LSI_WAIT_POLL;
    soft_reset();
    unit_attention();
    read_check(200, 8, ORIG_XOR, "pattern matches");
    lsi_set_wait(LSI_WAIT_IRQ);
    write_blocks(2048, 128);
    read_check(2048, 128, WRITE_XOR, "reads back what was written");
    lsi_set_wait(LSI_WAIT_POLL);
    read_check(2047, 1, ORIG_XOR, "block before the write unchanged");
    read_check(2176, 1, ORIG_XOR, "block after the write unchanged");

    /* 3. The script in SCRIPTS RAM, memory view, both completion modes. */
    load_scripts_ram();
    if (lsi_test_unit_ready() != STATUS_GOOD)
        fail("TEST UNIT READY from SCRIPTS RAM: not GOOD");
    kprintf("SCRIPTS RAM, mmio/polling: TEST UNIT READY: GOOD\n");
    lsi_set_wait(LSI_WAIT_IRQ);
    kprintf("SCRIPTS RAM, ");
    read_check(4096, 16, ORIG_XOR, "pattern matches");
    lsi.script_addr = lsi_ram_script_addr();

    pass();
}
