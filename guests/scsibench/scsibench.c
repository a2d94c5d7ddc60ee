/* Timing: sequential 64 KiB READ(10)s (or WRITE(10)s with write=1) through
 * the LSI 53C895A, polling ISTAT, over the whole disk and wrapping around,
 * until mib MiB have moved. mib=0 does only the set-up, so a harness can
 * subtract the boot and set-up cost. spin=K makes the guest count to K
 * thousand between commands: the same writes and output, spread over a
 * longer run, so a harness acting on it from outside (moving, killing)
 * does not race the run's end. */
#include "kernel.h"
#include "pci.h"
#include "lsi.h"

const char guest_name[] = "scsibench";

#define CHUNK_BLOCKS 128u
#define BLOCK 512u
#define CHUNK (CHUNK_BLOCKS * BLOCK) /* 64 KiB */

static uint8_t buf[CHUNK] __attribute__((aligned(4096)));

static uint8_t command(const uint8_t *cdb, unsigned len, void *data, uint32_t n)
{
    struct lsi_result r;
    lsi_command(cdb, len, data, n, &r);
    return r.status;
}

/* TEST UNIT READY until GOOD, clearing unit attentions with REQUEST SENSE. */
static void wait_ready(void)
{
    static const uint8_t tur[6] = { 0x00 };
    static const uint8_t sense[6] = { 0x03, 0, 0, 0, 18, 0 };
    uint8_t sb[18];

    for (int i = 0; i < 8; i++) {
        uint8_t st = command(tur, 6, NULL, 0);
        if (st == 0x00)
            return;
        if (st != 0x02)
            fail("TEST UNIT READY: status %x", st);
        if (command(sense, 6, sb, sizeof(sb)) != 0x00)
            fail("REQUEST SENSE failed");
    }
    fail("the disk never became ready");
}

static uint32_t capacity_blocks(void)
{
    static const uint8_t cdb[10] = { 0x25 };
    uint8_t b[8];
    if (command(cdb, 10, b, sizeof(b)) != 0x00)
        fail("READ CAPACITY(10) failed");
    uint32_t last = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
    uint32_t bs = (uint32_t)b[4] << 24 | (uint32_t)b[5] << 16 | (uint32_t)b[6] << 8 | b[7];
    if (bs != BLOCK)
        fail("block size %u, want %u", bs, BLOCK);
    return last + 1;
}

void guest_main(void)
{
    uint32_t mib = cmdline_uint("mib", 64);
    uint32_t write = cmdline_uint("write", 0);
    uint32_t spin = cmdline_uint("spin", 0);

    lsi_probe();
    lsi_irq_init(); /* the PIT watchdog; completion itself is polled */
    lsi.view = LSI_VIEW_IO;
    lsi.wait = LSI_WAIT_POLL;
    lsi_reset();
    wait_ready();
    uint32_t region = capacity_blocks() / CHUNK_BLOCKS * CHUNK_BLOCKS;
    if (region == 0)
        fail("disk smaller than 64 KiB");

    for (uint32_t i = 0; i < CHUNK / 4; i++)
        ((uint32_t *)buf)[i] = i * 0x9E3779B9u;

    uint8_t cdb[10] = { write ? 0x2A : 0x28 };
    cdb[7] = CHUNK_BLOCKS >> 8;
    cdb[8] = CHUNK_BLOCKS & 0xFF;
    uint32_t lba = 0;
    for (uint32_t n = 0; n < mib * 16; n++) {
        cdb[2] = lba >> 24;
        cdb[3] = lba >> 16;
        cdb[4] = lba >> 8;
        cdb[5] = lba;
        uint8_t st = command(cdb, 10, buf, CHUNK);
        if (st != 0x00)
            fail("%s(10) LBA %u: status %x", write ? "WRITE" : "READ", lba, st);
        lba += CHUNK_BLOCKS;
        if (lba >= region)
            lba = 0;
        for (volatile uint32_t i = 0; i < spin * 1000u; i++)
            ;
    }
    kprintf("done\n");
    pass();
}
