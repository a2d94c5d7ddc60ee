/* NE2000 at 0x300/IRQ 9: reset, PROM, station address, remote DMA in both widths,
 * transmit and receive through a segment that sends every frame back to us
 * (QEMU's -netdev dgram with local == remote, or our switch), by polling and by
 * IRQ 9 through the cascaded PIC, and the address filters of RCR and MAR0-7. */
#include "kernel.h"
#include "clock.h"
#include "ne2000.h"

const char guest_name[] = "net";

#define ETHERTYPE_TEST 0x88B5  /* IEEE 802 local experimental */
#define RX_TIMEOUT_MS 2000     /* a frame that should come back */
#define QUIET_MS 100           /* how long a filtered frame is waited for */
#define TX_TIMEOUT_MS 1000

static const uint8_t broadcast[ETH_ALEN] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
static const uint8_t multicast[ETH_ALEN] = { 0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb };
static uint8_t mac[ETH_ALEN];
static uint8_t other[ETH_ALEN]; /* a unicast address that is not ours */

static uint8_t tx[ETH_FRAME_MAX];
static uint8_t rx[ETH_FRAME_MAX];
static uint8_t pattern[NE_MEM_END - NE_MEM_START];
static uint8_t readback[NE_MEM_END - NE_MEM_START];

static uint32_t prng(uint32_t *s)
{
    /* xorshift32 */
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *s = x;
}

static void fill_pattern(uint8_t *buf, uint32_t len, uint32_t seed)
{
    uint32_t s = seed * 0x9E3779B9u + 0x6E650001u;
    for (uint32_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(prng(&s) >> 24);
}

/* A test frame: dst, our source, type 0x88B5, a tag byte, then a pattern from the tag. */
static void make_frame(uint8_t *f, const uint8_t *dst, uint16_t len, uint8_t tag)
{
    memcpy(f, dst, ETH_ALEN);
    memcpy(f + ETH_ALEN, mac, ETH_ALEN);
    f[12] = ETHERTYPE_TEST >> 8;
    f[13] = ETHERTYPE_TEST & 0xFF;
    f[14] = tag;
    fill_pattern(f + 15, len - 15u, tag);
}

static void send(const uint8_t *dst, uint16_t len, uint8_t tag, const char *what)
{
    make_frame(tx, dst, len, tag);
    int tsr = ne2k_transmit(tx, len, TX_TIMEOUT_MS);
    if (tsr < 0)
        fail("%s: transmit did not complete (no ISR.PTX or TXE)", what);
    if (!(tsr & TSR_PTX))
        fail("%s: TSR %x without PTX", what, tsr);
}

/* The next frame in the ring must be the one in tx (dst, len, tag). */
static void expect_frame(uint16_t len, const char *what, struct ne2k_rx_info *info)
{
    int n = ne2k_receive_wait(rx, sizeof(rx), info, RX_TIMEOUT_MS);
    if (n == 0)
        fail("%s: nothing received within %u ms", what, RX_TIMEOUT_MS);
    if (n < 0)
        fail("%s: impossible receive header (next page %x, count %u)", what, info->hdr.next,
             info->hdr.count);
    if (n != len)
        fail("%s: received %d bytes, sent %u (tag %x)", what, n, len, rx[14]);
    for (uint16_t i = 0; i < len; i++)
        if (rx[i] != tx[i])
            fail("%s: byte %u is %x, sent %x", what, i, rx[i], tx[i]);
    if (!(info->hdr.status & RSR_PRX))
        fail("%s: receive status %x without PRX", what, info->hdr.status);
}

static int ring_empty(void)
{
    return ne2k_in(NE_P0_BNRY) == ne2k_curr();
}

/* Start a check from an empty ring and a clear ISR.PRX: the PRX of the frame
 * before may still be set when it was taken from the ring after the last poll. */
static void quiet_start(const char *what)
{
    if (!ring_empty())
        fail("%s: the ring is not empty before the test", what);
    ne2k_out(NE_P0_ISR, ISR_PRX);
    ne2k_events = 0;
}

/* A frame the filters must drop: nothing arrives within QUIET_MS, and a frame
 * to our own address sent after it is the next one in the ring. */
static void expect_dropped(const uint8_t *dst, uint8_t tag, const char *what)
{
    struct ne2k_rx_info info;

    quiet_start(what);
    send(dst, 80, tag, what);
    clock_sleep(QUIET_MS);
    ne2k_poll_isr(ISR_PRX);
    if (!ring_empty() || (ne2k_events & ISR_PRX))
        fail("%s: a frame arrived", what);
    send(mac, 70, tag + 1, what);
    expect_frame(70, what, &info);
}

static void check_prom(void)
{
    uint16_t prom[16];

    ne2k_read_prom(prom);
    for (unsigned i = 0; i < 16; i++)
        if ((prom[i] >> 8) != (prom[i] & 0xFF))
            fail("PROM word %u is %x: its two bytes differ", i, prom[i]);
    if ((prom[14] & 0xFF) != 0x57 || (prom[15] & 0xFF) != 0x57)
        fail("PROM bytes 14-15 are %x %x, not the NE2000 signature 0x57 0x57", prom[14] & 0xFF,
             prom[15] & 0xFF);
    for (unsigned i = 0; i < ETH_ALEN; i++)
        mac[i] = (uint8_t)prom[i];
    kprintf("PROM: 16 words by word-wide remote DMA, each byte doubled, bytes 14-15 0x57 0x57\n");
    kprintf("mac: %02x:%02x:%02x:%02x:%02x:%02x\n", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
    if (mac[0] & 1)
        fail("the PROM's address is a multicast address");
    memcpy(other, mac, ETH_ALEN);
    other[5] ^= 0x80;
}

static void check_init(void)
{
    uint8_t par[ETH_ALEN];

    ne2k_init(mac, DCR_WORD, RCR_MON);
    ne2k_get_par(par);
    if (memcmp(par, mac, ETH_ALEN) != 0)
        fail("PAR0-5 read back as %x:%x:%x:%x:%x:%x", par[0], par[1], par[2], par[3], par[4],
             par[5]);
    kprintf("station address: PAR0-5 read back as programmed\n");
    if (ne2k_in(NE_P0_ISR) & ISR_RST)
        fail("ISR.RST still set after the start command");
    uint8_t curr = ne2k_curr(), bnry = ne2k_in(NE_P0_BNRY);
    if (curr != NE_RX_START || bnry != NE_RX_START)
        fail("CURR %x BNRY %x after initialisation, expected %x", curr, bnry, NE_RX_START);
    kprintf("started: ISR.RST clear, ring %x-%x, CURR = BNRY = PSTART\n", NE_RX_START, NE_RX_STOP);
}

static void dma_roundtrip(uint8_t dcr, uint32_t seed, const char *width)
{
    ne2k_set_dcr(dcr);
    fill_pattern(pattern, sizeof(pattern), seed);
    memset(readback, 0, sizeof(readback));
    if (ne2k_dma_write(NE_MEM_START, pattern, sizeof(pattern)))
        fail("remote DMA write (%s): ISR.RDC not set", width);
    if (ne2k_dma_read(NE_MEM_START, readback, sizeof(readback)))
        fail("remote DMA read (%s): ISR.RDC not set", width);
    for (uint32_t i = 0; i < sizeof(pattern); i++)
        if (readback[i] != pattern[i])
            fail("remote DMA (%s): byte %x of the buffer is %x, wrote %x", width,
                 NE_MEM_START + i, readback[i], pattern[i]);
    kprintf("remote DMA, %s: 16 KiB at 0x4000 written and read back\n", width);
}

static void check_dma(void)
{
    dma_roundtrip(DCR_WORD, 1, "word mode");
    dma_roundtrip(DCR_BYTE, 2, "byte mode");

    /* Byte mode at an odd address and length: only those bytes change. */
    static const uint8_t odd[7] = { 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77 };
    uint8_t got[16];
    if (ne2k_dma_write(0x4101, odd, sizeof(odd)) || ne2k_dma_read(0x4100, got, sizeof(got)))
        fail("remote DMA at an odd address: ISR.RDC not set");
    for (unsigned i = 0; i < sizeof(got); i++) {
        uint8_t want = (i >= 1 && i < 8) ? odd[i - 1] : pattern[0x100 + i];
        if (got[i] != want)
            fail("remote DMA at an odd address: byte %x is %x, expected %x", 0x4100 + i, got[i],
                 want);
    }
    kprintf("remote DMA, byte mode: 7 bytes at 0x4101 change only those bytes\n");

    /* Words written are stored low byte first (DCR.BOS = 0). */
    static const uint16_t words[4] = { 0x1234, 0xabcd, 0x00ff, 0x8001 };
    ne2k_set_dcr(DCR_WORD);
    if (ne2k_dma_write(0x4200, words, sizeof(words)))
        fail("remote DMA word write: ISR.RDC not set");
    ne2k_set_dcr(DCR_BYTE);
    if (ne2k_dma_read(0x4200, got, 8))
        fail("remote DMA byte read: ISR.RDC not set");
    for (unsigned i = 0; i < 4; i++)
        if (got[2 * i] != (words[i] & 0xFF) || got[2 * i + 1] != (words[i] >> 8))
            fail("word %x read back as bytes %x %x", words[i], got[2 * i], got[2 * i + 1]);
    kprintf("remote DMA: words written, read as bytes low byte first (BOS 0)\n");
    ne2k_set_dcr(DCR_WORD);
}

static void check_broadcast(void)
{
    struct ne2k_rx_info info;

    ne2k_set_rcr(RCR_AB);
    send(broadcast, 100, 0x10, "broadcast");
    kprintf("broadcast: 100 bytes transmitted, TSR.PTX\n");
    expect_frame(100, "broadcast", &info);
    if (!(info.hdr.status & RSR_PHY))
        fail("broadcast: receive status %x without PHY (multicast/broadcast)", info.hdr.status);
    if (info.page != NE_RX_START)
        fail("broadcast: stored at page %x, not at PSTART", info.page);
    kprintf("broadcast: received back by polling at PSTART, 100 bytes intact, RSR PRX and PHY\n");
    if (!ring_empty())
        fail("ring not empty after taking the only frame");
    kprintf("ring empty again: BNRY caught up with CURR\n");
}

static void check_isr_w1c(void)
{
    struct ne2k_rx_info info;

    quiet_start("ISR");
    send(broadcast, 64, 0x20, "ISR");
    uint32_t start = clock_ms();
    while (!(ne2k_in(NE_P0_ISR) & ISR_PRX)) {
        if (clock_ms() - start > RX_TIMEOUT_MS)
            fail("ISR: PRX not set within %u ms", RX_TIMEOUT_MS);
        clock_idle();
    }
    ne2k_out(NE_P0_ISR, 0);
    if (!(ne2k_in(NE_P0_ISR) & ISR_PRX))
        fail("ISR: writing 0 cleared PRX");
    ne2k_out(NE_P0_ISR, (uint8_t)~ISR_PRX);
    if (!(ne2k_in(NE_P0_ISR) & ISR_PRX))
        fail("ISR: writing the other bits cleared PRX");
    ne2k_out(NE_P0_ISR, ISR_PRX);
    if (ne2k_in(NE_P0_ISR) & ISR_PRX)
        fail("ISR: writing 1 to PRX left it set");
    kprintf("ISR: PRX cleared by writing 1 to it, not by writing 0 or the other bits\n");
    expect_frame(64, "ISR", &info);
}

static void check_irq(void)
{
    struct ne2k_rx_info info;

    quiet_start("unicast by IRQ");
    ne2k_irq_count = 0;
    ne2k_irq_seen = 0;
    ne2k_irq_enable(ISR_PRX);
    send(mac, 200, 0x30, "unicast by IRQ");
    uint32_t start = clock_ms();
    while (!(ne2k_irq_seen & ISR_PRX)) {
        if (clock_ms() - start > RX_TIMEOUT_MS)
            fail("unicast by IRQ: no IRQ 9 with ISR.PRX within %u ms (%u interrupts)",
                 RX_TIMEOUT_MS, ne2k_irq_count);
        clock_idle();
    }
    if (ne2k_in(NE_P0_ISR) & ISR_PRX)
        fail("unicast by IRQ: ISR.PRX still set after the handler");
    expect_frame(200, "unicast by IRQ", &info);
    if (info.hdr.status & RSR_PHY)
        fail("unicast by IRQ: receive status %x has PHY for a physical address", info.hdr.status);
    ne2k_irq_disable();
    kprintf("unicast to our MAC: IRQ 9 on vector 0x%x (slave PIC), handler cleared ISR.PRX\n",
            IRQ_BASE_SLAVE + NE_IRQ - 8);
    kprintf("unicast to our MAC: 200 bytes intact, RSR PRX without PHY\n");
}

static void check_filters(void)
{
    struct ne2k_rx_info info;
    uint8_t mar[8];

    ne2k_set_rcr(RCR_AB);
    expect_dropped(other, 0x40, "unicast to another MAC");
    kprintf("unicast to another MAC: dropped (physical address filter)\n");

    ne2k_set_rcr(RCR_AB | RCR_PRO);
    send(other, 90, 0x42, "promiscuous");
    expect_frame(90, "promiscuous", &info);
    kprintf("unicast to another MAC with RCR.PRO: received\n");

    ne2k_set_rcr(0);
    expect_dropped(broadcast, 0x44, "broadcast without RCR.AB");
    kprintf("broadcast with RCR.AB clear: dropped\n");

    unsigned idx = ne2k_mcast_index(multicast);
    kprintf("multicast 01:00:5e:00:00:fb: CRC hash bit %u (MAR%u bit %u)\n", idx, idx >> 3,
            idx & 7);
    ne2k_set_rcr(RCR_AB | RCR_AM);
    memset(mar, 0, sizeof(mar));
    mar[idx >> 3] = (uint8_t)(1u << (idx & 7));
    ne2k_set_mar(mar);
    send(multicast, 120, 0x50, "multicast");
    expect_frame(120, "multicast", &info);
    if (!(info.hdr.status & RSR_PHY))
        fail("multicast: receive status %x without PHY", info.hdr.status);
    kprintf("multicast with only its hash bit set: received, RSR PHY\n");

    for (unsigned i = 0; i < 8; i++)
        mar[i] = (uint8_t)~mar[i];
    ne2k_set_mar(mar);
    expect_dropped(multicast, 0x52, "multicast with every other MAR bit set");
    kprintf("multicast with every MAR bit but its own set: dropped\n");

    memset(mar, 0, sizeof(mar));
    ne2k_set_mar(mar);
    expect_dropped(multicast, 0x54, "multicast with MAR clear");
    kprintf("multicast with MAR0-7 clear: dropped\n");

    memset(mar, 0xFF, sizeof(mar));
    ne2k_set_mar(mar);
    ne2k_set_rcr(RCR_AB);
    expect_dropped(multicast, 0x56, "multicast without RCR.AM");
    kprintf("multicast with RCR.AM clear (MAR all ones): dropped\n");
    uint8_t back[8];
    ne2k_get_mar(back);
    if (memcmp(back, mar, 8) != 0)
        fail("MAR0-7 did not read back as written");
    memset(mar, 0, sizeof(mar));
    ne2k_set_mar(mar);
}

static void check_ring(void)
{
    enum { BURSTS = 5, PER_BURST = 8, LEN = 1000 };
    struct ne2k_rx_info info;
    unsigned wraps = 0, straddles = 0;

    ne2k_set_rcr(RCR_AB);
    for (unsigned b = 0; b < BURSTS; b++) {
        for (unsigned i = 0; i < PER_BURST; i++) {
            make_frame(tx, broadcast, LEN, (uint8_t)(0x80 + b * PER_BURST + i));
            if (ne2k_transmit(tx, LEN, TX_TIMEOUT_MS) < 0)
                fail("ring: transmit did not complete");
        }
        for (unsigned i = 0; i < PER_BURST; i++) {
            make_frame(tx, broadcast, LEN, (uint8_t)(0x80 + b * PER_BURST + i));
            expect_frame(LEN, "ring", &info);
            if (info.hdr.next <= info.page)
                wraps++;
            if (info.wrapped)
                straddles++;
        }
    }
    if (!ring_empty())
        fail("ring: not empty after taking every frame");
    kprintf("ring: %u frames of %u bytes in bursts of %u, all intact\n", BURSTS * PER_BURST, LEN,
            PER_BURST);
    kprintf("ring: next-page pointer wrapped to PSTART %u times; frames split across PSTOP: %u\n",
            wraps, straddles);
    if (!wraps || !straddles)
        fail("ring: the test did not wrap the ring");
}

void guest_main(void)
{
    clock_start();
    if (ne2k_reset())
        fail("reset: ISR.RST not set within 100 ms of the reset port");
    kprintf("reset: ISR.RST set after reading and writing the reset port\n");

    check_prom();
    check_init();
    check_dma();
    check_broadcast();
    check_isr_w1c();
    check_irq();
    check_filters();
    check_ring();
    if (ne2k_overflows)
        fail("%u receive ring overflows", ne2k_overflows);
    pass();
}
