/* Ping-pong over the NE2000: see pingpong.h for the frame layout. */
#include "pingpong.h"
#include "clock.h"
#include "exit.h"
#include "printf.h"
#include "string.h"

#define TX_TIMEOUT_MS 1000
#define RETRY_MS 200          /* a reply not here by then is sent for again */
#define FIRST_TRIES 300       /* 60 s for the peer to come up */
#define LATER_TRIES 50        /* 10 s for any later frame */
#define LINGER_MS 1000        /* netpong: quiet time before it stops */

static const uint8_t broadcast[ETH_ALEN] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
static uint8_t tx[ETH_FRAME_MAX];
static uint8_t rx[ETH_FRAME_MAX];

uint16_t pp_size(uint32_t seq)
{
    if (seq == 0)
        return ETH_ZLEN;
    if (seq == 1)
        return ETH_FRAME_MAX;
    return (uint16_t)(ETH_ZLEN + (seq * 997u) % (ETH_FRAME_MAX - ETH_ZLEN + 1));
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static uint16_t get_be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

static void fill(uint8_t *buf, uint32_t seq, uint16_t len)
{
    uint32_t s = seq * 0x9E3779B9u ^ ((uint32_t)len << 16) ^ 0x6E657431u;
    if (!s)
        s = 1;
    for (uint16_t i = PP_HEADER; i < len; i++) {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        buf[i] = (uint8_t)(s >> 24);
    }
}

/* A ping or pong of ours, or 0 for anything else on the segment. */
static int kind_of(const uint8_t *f, int n)
{
    if (n < PP_HEADER || get_be16(f + 12) != PP_ETHERTYPE || f[14] != 'N' || f[15] != 'P')
        return 0;
    return f[16];
}

/* Length field, length received and pattern agree. */
static int payload_ok(const uint8_t *f, int n)
{
    static uint8_t want[ETH_FRAME_MAX];
    uint16_t len = get_be16(f + 18);
    if (len != n || len < ETH_ZLEN || len > ETH_FRAME_MAX)
        return 0;
    fill(want, get_be32(f + 20), len);
    return memcmp(want + PP_HEADER, f + PP_HEADER, len - PP_HEADER) == 0;
}

static void build_ping(const uint8_t *mac, const uint8_t *dst, uint32_t seq, uint16_t len)
{
    memcpy(tx, dst, ETH_ALEN);
    memcpy(tx + ETH_ALEN, mac, ETH_ALEN);
    tx[12] = PP_ETHERTYPE >> 8;
    tx[13] = PP_ETHERTYPE & 0xFF;
    tx[14] = 'N';
    tx[15] = 'P';
    tx[16] = PP_PING;
    tx[17] = 0;
    tx[18] = (uint8_t)(len >> 8);
    tx[19] = (uint8_t)len;
    tx[20] = (uint8_t)(seq >> 24);
    tx[21] = (uint8_t)(seq >> 16);
    tx[22] = (uint8_t)(seq >> 8);
    tx[23] = (uint8_t)seq;
    fill(tx, seq, len);
}

static void send(const uint8_t *f, uint16_t len)
{
    int tsr = ne2k_transmit(f, len, TX_TIMEOUT_MS);
    if (tsr < 0)
        fail("transmit did not complete (no ISR.PTX or TXE)");
    if (!(tsr & TSR_PTX))
        fail("transmit: TSR %x without PTX", tsr);
}

void pp_setup(uint8_t mac[ETH_ALEN], int print_mac)
{
    uint16_t prom[16];

    clock_start();
    if (ne2k_reset())
        fail("reset: ISR.RST not set within 100 ms of the reset port");
    ne2k_read_prom(prom);
    for (unsigned i = 0; i < ETH_ALEN; i++)
        mac[i] = (uint8_t)prom[i];
    if (print_mac)
        kprintf("mac: %02x:%02x:%02x:%02x:%02x:%02x\n", mac[0], mac[1], mac[2], mac[3], mac[4],
                mac[5]);
    ne2k_init(mac, DCR_WORD, RCR_AB);
    ne2k_irq_enable(ISR_PRX | ISR_PTX | ISR_RXE | ISR_TXE | ISR_OVW);
}

void pp_ping(const uint8_t mac[ETH_ALEN], uint32_t count, uint16_t size, struct pp_result *r)
{
    uint8_t peer[ETH_ALEN];
    const uint8_t *dst = broadcast;

    memset(r, 0, sizeof(*r));
    for (uint32_t seq = 0; seq < count; seq++) {
        uint16_t len = size ? size : pp_size(seq);
        uint32_t tries = 1, limit = seq ? LATER_TRIES : FIRST_TRIES;

        build_ping(mac, dst, seq, len);
        send(tx, len);
        r->sent++;
        uint32_t t0 = clock_ms();
        for (;;) {
            int n = ne2k_receive(rx, sizeof(rx), NULL);
            if (n < 0) {
                r->errors++; /* impossible ring header: the ring was reset */
                continue;
            }
            if (n > 0) {
                if (kind_of(rx, n) != PP_PONG)
                    continue; /* not ours */
                uint32_t rseq = get_be32(rx + 20);
                if (rseq < seq)
                    continue; /* a late answer to a retransmitted frame */
                if (rseq > seq || !payload_ok(rx, n) || n != len) {
                    r->errors++;
                    continue;
                }
                if (!r->peer_learned) {
                    memcpy(peer, rx + ETH_ALEN, ETH_ALEN);
                    dst = peer;
                    r->peer_learned = 1;
                }
                r->received++;
                break;
            }
            if (clock_ms() - t0 >= RETRY_MS) {
                if (tries >= limit)
                    fail("no reply to frame %u (%u bytes) after %u tries", seq, len, tries);
                send(tx, len);
                tries++;
                t0 = clock_ms();
                continue;
            }
            clock_idle();
        }
    }
}

uint32_t pp_pong(const uint8_t mac[ETH_ALEN], uint32_t count)
{
    uint32_t expected = 0, errors = 0, last = 0;

    for (;;) {
        int n = ne2k_receive(rx, sizeof(rx), NULL);
        if (n < 0) {
            errors++;
            continue;
        }
        if (n == 0) {
            if (expected >= count && clock_ms() - last >= LINGER_MS)
                return errors;
            clock_idle();
            continue;
        }
        if (kind_of(rx, n) != PP_PING)
            continue;
        uint32_t seq = get_be32(rx + 20);
        if (!payload_ok(rx, n))
            errors++;
        if (seq == expected)
            expected++;
        else if (seq > expected)
            fail("ping %u arrived while %u was expected: the pinger cannot be ahead", seq,
                 expected);
        last = clock_ms();

        /* Echo: back to the sender, from us, marked as a pong. */
        memcpy(rx, rx + ETH_ALEN, ETH_ALEN);
        memcpy(rx + ETH_ALEN, mac, ETH_ALEN);
        rx[16] = PP_PONG;
        send(rx, (uint16_t)n);
    }
}
