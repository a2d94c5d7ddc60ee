/* Everything at once: a deterministic CPU checksum loop under a 100 Hz PIT
 * timer, SCSI WRITE(10)/READ(10) through the LSI 53C895A (completion by
 * interrupt), and NE2000 broadcast frames sent out and received back by IRQ 9
 * through a segment that returns every frame (as for the net guest),
 * interleaved in a few rounds. Frames are sent, then the CPU works with
 * interrupts enabled while they come back, then the disk is written and read,
 * then the frames are collected and compared. One line per round; the tick
 * count depends on speed, so it is counted but never printed.
 *
 * Disk: the 8 MiB pattern disk of the scsi guest (every word at byte offset X
 * holds X ^ 0x5A5A5A5A); this guest writes only blocks 3000-3063, round r
 * blocks 3000 + (r mod 8) * 8 .. +7 with X ^ (0x3C3C0000 | r). */
#include "kernel.h"
#include "pci.h"
#include "lsi.h"
#include "ne2000.h"

const char guest_name[] = "mixed";

#define HZ 100
#define IRQ_TIMER 0

#define DISK_BLOCKS 16384u
#define BLOCK 512u
#define ORIG_XOR 0x5A5A5A5Au
#define AREA_LBA 3000u
#define AREA_BLOCKS 64u
#define ROUND_BLOCKS 8u
#define ROUND_XOR(r) (0x3C3C0000u | ((r) & 0xFFFFu))

#define ETHERTYPE_TEST 0x88B5
#define FRAMES 3             /* per round */
#define RX_TIMEOUT_TICKS 500 /* 5 s at 100 Hz */
#define TX_TIMEOUT_MS 1000

#define CPU_ITERATIONS 1500000u

#define STATUS_GOOD 0x00
#define STATUS_CHECK_CONDITION 0x02

static volatile uint32_t ticks;

static uint8_t rbuf[ROUND_BLOCKS * BLOCK] __attribute__((aligned(4096)));
static uint8_t wbuf[ROUND_BLOCKS * BLOCK] __attribute__((aligned(4096)));

static const uint8_t broadcast[ETH_ALEN] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
static uint8_t mac[ETH_ALEN];
static uint8_t tx[FRAMES][ETH_FRAME_MAX];
static uint16_t tx_len[FRAMES];
static uint8_t rx[ETH_FRAME_MAX];

static void timer_irq(struct frame *f)
{
    (void)f;
    ticks++;
    pic_eoi(IRQ_TIMER);
}

static uint32_t xorshift(uint32_t *s)
{
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *s = x;
}

/* ---- CPU ---- */

/* A PRNG stream folded into a CRC-32 (bitwise, reflected) and a rotating sum. */
static uint32_t cpu_work(uint32_t round)
{
    uint32_t s = 0x6D697865u ^ (round * 0x9E3779B9u), crc = 0xFFFFFFFFu, sum = round;
    for (uint32_t i = 0; i < CPU_ITERATIONS; i++) {
        uint32_t v = xorshift(&s);
        crc ^= v & 0xFF;
        for (int b = 0; b < 8; b++)
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1)));
        sum = ((sum << 5) | (sum >> 27)) + (v ^ i);
    }
    return ~crc ^ sum;
}

/* ---- disk ---- */


static void request_sense(void)
{
    static const uint8_t cdb[6] = { 0x03, 0, 0, 0, 18, 0 };
    uint8_t buf[18];
    memset(buf, 0, sizeof(buf));
    if (lsi_run(cdb, 6, buf, sizeof(buf), 1) != STATUS_GOOD)
        fail("REQUEST SENSE: not GOOD");
}

static uint8_t rw10(uint8_t op, uint32_t lba, uint32_t blocks, void *buf)
{
    uint8_t cdb[10] = { op };
    put_be32(cdb + 2, lba);
    cdb[7] = blocks >> 8;
    cdb[8] = blocks;
    return lsi_run(cdb, 10, buf, blocks * BLOCK, 1);
}

static void fill(uint8_t *buf, uint32_t lba, uint32_t blocks, uint32_t xor)
{
    uint32_t *w = (uint32_t *)buf;
    uint32_t x = lba * BLOCK;
    for (uint32_t i = 0; i < blocks * BLOCK / 4; i++, x += 4)
        w[i] = x ^ xor;
}

static void read_check(uint32_t lba, uint32_t blocks, uint32_t xor, const char *what)
{
    memset(rbuf, 0xEE, blocks * BLOCK);
    uint8_t st = rw10(0x28, lba, blocks, rbuf);
    if (st != STATUS_GOOD)
        fail("%s: READ(10) LBA %u, %u blocks: status %x", what, lba, blocks, st);
    const uint32_t *w = (const uint32_t *)rbuf;
    uint32_t x = lba * BLOCK;
    for (uint32_t i = 0; i < blocks * BLOCK / 4; i++, x += 4)
        if (w[i] != (x ^ xor))
            fail("%s: READ(10) LBA %u: the word at disk byte offset %x reads %x, want %x", what,
                 lba, x, w[i], x ^ xor);
}

static void write_blocks(uint32_t lba, uint32_t blocks, uint32_t xor)
{
    fill(wbuf, lba, blocks, xor);
    uint8_t st = rw10(0x2A, lba, blocks, wbuf);
    if (st != STATUS_GOOD)
        fail("WRITE(10) LBA %u, %u blocks: status %x", lba, blocks, st);
}

static uint32_t round_lba(uint32_t r)
{
    return AREA_LBA + (r % (AREA_BLOCKS / ROUND_BLOCKS)) * ROUND_BLOCKS;
}

static void disk_setup(void)
{
    lsi_probe();
    kprintf("pci: LSI 53C895A at %02x:%02x.%u, I/O %x, memory %x, IRQ %u\n", lsi.pci.bus,
            lsi.pci.dev, lsi.pci.fn, lsi.bar_io.base, lsi.bar_mmio.base, lsi.irq);
    if (lsi.irq == NE_IRQ || lsi.irq == IRQ_TIMER)
        fail("the LSI's interrupt line %u is taken", lsi.irq);
    /* ELCR, the LSI handler, and its own IRQ0 watchdog, replaced below by our
     * tick counter (so lsi_command waits without a time limit). */
    lsi_irq_init();

    lsi.view = LSI_VIEW_IO;
    lsi.wait = LSI_WAIT_POLL;
    lsi_reset();
    /* The unit attention the reset leaves, if any. */
    int good = 0;
    for (int i = 0; i < 4 && !good; i++) {
        if (lsi_test_unit_ready() == STATUS_GOOD)
            good = 1;
        else
            request_sense();
    }
    if (!good)
        fail("TEST UNIT READY never GOOD");

    static const uint8_t cap_cdb[10] = { 0x25 };
    uint8_t cap[8];
    if (lsi_run(cap_cdb, 10, cap, sizeof(cap), 1) != STATUS_GOOD)
        fail("READ CAPACITY(10): not GOOD");
    uint32_t blocks = get_be32(cap) + 1, bs = get_be32(cap + 4);
    if (blocks != DISK_BLOCKS || bs != BLOCK)
        fail("capacity %u x %u, want %u x %u (the test disk is 8 MiB)", blocks, bs, DISK_BLOCKS,
             BLOCK);
    kprintf("disk: ready, %u blocks of %u bytes; rounds write blocks %u-%u, by interrupt\n",
            blocks, bs, AREA_LBA, AREA_LBA + AREA_BLOCKS - 1);
    lsi_set_wait(LSI_WAIT_IRQ);
}

/* ---- network ---- */

static void net_setup(void)
{
    uint16_t prom[16];

    if (ne2k_reset())
        fail("NE2000 reset: ISR.RST never set");
    ne2k_read_prom(prom);
    for (unsigned i = 0; i < ETH_ALEN; i++)
        mac[i] = (uint8_t)prom[i];
    kprintf("mac: %02x:%02x:%02x:%02x:%02x:%02x\n", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
    ne2k_init(mac, DCR_WORD, RCR_AB);
    ne2k_irq_enable(ISR_PRX | ISR_RXE | ISR_OVW);
    kprintf("net: NE2000 at %x IRQ %u, %u broadcast frames of type 0x88b5 per round\n",
            NE_IOBASE, NE_IRQ, FRAMES);
}

static uint16_t frame_len(uint32_t r, unsigned i)
{
    return (uint16_t)(ETH_ZLEN + ((r * FRAMES + i) * 997u) % (ETH_FRAME_MAX - ETH_ZLEN + 1));
}

static void send_frames(uint32_t r)
{
    for (unsigned i = 0; i < FRAMES; i++) {
        uint8_t *f = tx[i];
        uint16_t len = frame_len(r, i);
        tx_len[i] = len;
        memcpy(f, broadcast, ETH_ALEN);
        memcpy(f + ETH_ALEN, mac, ETH_ALEN);
        f[12] = ETHERTYPE_TEST >> 8;
        f[13] = ETHERTYPE_TEST & 0xFF;
        f[14] = (uint8_t)r;
        f[15] = (uint8_t)i;
        uint32_t s = (r * 16 + i + 1) * 0x9E3779B9u + 0x6E650001u;
        for (uint16_t k = 16; k < len; k++)
            f[k] = (uint8_t)(xorshift(&s) >> 24);
        int tsr = ne2k_transmit(f, len, TX_TIMEOUT_MS);
        if (tsr < 0 || !(tsr & TSR_PTX))
            fail("round %u frame %u: transmit failed (TSR %d)", r, i, tsr);
    }
}

static void receive_frames(uint32_t r)
{
    for (unsigned i = 0; i < FRAMES; i++) {
        struct ne2k_rx_info info;
        uint32_t start = ticks;
        int n;
        while ((n = ne2k_receive(rx, sizeof(rx), &info)) == 0) {
            if (ticks - start > RX_TIMEOUT_TICKS)
                fail("round %u frame %u: nothing received within %u ticks", r, i,
                     RX_TIMEOUT_TICKS);
            sti_hlt();
            cli();
        }
        if (n < 0)
            fail("round %u frame %u: impossible receive header", r, i);
        if (n != tx_len[i])
            fail("round %u frame %u: received %d bytes, sent %u (tag %x/%x)", r, i, n, tx_len[i],
                 rx[14], rx[15]);
        for (uint16_t k = 0; k < tx_len[i]; k++)
            if (rx[k] != tx[i][k])
                fail("round %u frame %u: byte %u is %x, sent %x", r, i, k, rx[k], tx[i][k]);
        if (!(info.hdr.status & RSR_PRX))
            fail("round %u frame %u: receive status %x without PRX", r, i, info.hdr.status);
    }
}

/* ---- the rounds ---- */

void guest_main(void)
{
    uint32_t rounds = cmdline_uint("rounds", 8);
    kprintf("rounds: %u\n", rounds);

    disk_setup();
    net_setup();

    idt_set_handler(IRQ_BASE_MASTER + IRQ_TIMER, timer_irq);
    uint16_t reload = pit_start_periodic(HZ);
    pic_unmask(IRQ_TIMER);
    kprintf("timer: PIT channel 0 mode 2 at %u Hz (reload %u), IRQ0 counts ticks\n", HZ, reload);

    for (uint32_t r = 1; r <= rounds; r++) {
        send_frames(r);

        /* CPU work with interrupts on: ticks, frames coming back. */
        sti();
        uint32_t sum = cpu_work(r);
        cli();

        uint32_t lba = round_lba(r);
        write_blocks(lba, ROUND_BLOCKS, ROUND_XOR(r));
        read_check(lba, ROUND_BLOCKS, ROUND_XOR(r), "read-back");
        if (r > 1) {
            uint32_t prev = round_lba(r - 1);
            read_check(prev, ROUND_BLOCKS, ROUND_XOR(r - 1), "previous round's blocks");
        }

        receive_frames(r);
        kprintf("round %u: cpu 0x%08x, disk ok, net ok\n", r, sum);
    }

    /* The blocks around the area are the original pattern. */
    read_check(AREA_LBA - 1, 1, ORIG_XOR, "block before the area");
    read_check(AREA_LBA + AREA_BLOCKS, 1, ORIG_XOR, "block after the area");
    kprintf("disk: blocks %u and %u unchanged\n", AREA_LBA - 1, AREA_LBA + AREA_BLOCKS);

    /* The timer really runs: two more ticks by sti; hlt. */
    uint32_t t0 = ticks;
    uint32_t start_wait = 0;
    while (ticks - t0 < 2 && start_wait++ < 1000) {
        sti_hlt();
        cli();
    }
    if (ticks - t0 < 2)
        fail("timer: IRQ0 did not tick");
    kprintf("timer: ticks counted\n");
    pass();
}
