/* NE2000 driver written from the DP8390D datasheet: initialisation procedure,
 * remote DMA, packet transmission, the receive buffer ring and its overflow
 * recovery. See ne2000.h for the board conventions. */
#include "ne2000.h"
#include "clock.h"
#include "exit.h"
#include "idt.h"
#include "io.h"
#include "pic.h"
#include "string.h"

#define RDC_SPINS 100000     /* polls of ISR.RDC before a remote DMA is given up */
#define RESET_TIMEOUT_MS 100 /* the datasheet allows a few microseconds */

volatile uint8_t ne2k_events;
volatile uint32_t ne2k_irq_count;
volatile uint8_t ne2k_irq_seen;
uint32_t ne2k_overflows;

static uint8_t dcr_now = DCR_BYTE; /* DCR as last written: WTS decides the bus width */
static uint8_t imr_now;            /* IMR as last written */
static uint8_t next_pkt = NE_RX_START; /* page of the next frame to take (= BNRY) */

uint8_t ne2k_in(unsigned reg) { return inb(ne2k_port(reg)); }
void ne2k_out(unsigned reg, uint8_t v) { outb(ne2k_port(reg), v); }

/* Every routine leaves the NIC started on page 0 with no remote DMA running. */
static void select_page(uint8_t page) { ne2k_out(NE_CR, page | CR_STA | CR_RD_ABORT); }

int ne2k_reset(void)
{
    /* Reading the reset port asserts the board's reset; writing it releases it. */
    uint8_t v = inb(ne2k_port(NE_RESET));
    outb(ne2k_port(NE_RESET), v);

    uint32_t start = clock_ms();
    while (!(ne2k_in(NE_P0_ISR) & ISR_RST)) {
        if (clock_ms() - start > RESET_TIMEOUT_MS)
            return -1;
        clock_idle();
    }
    ne2k_out(NE_P0_ISR, 0xFF); /* RST stays: only a start command clears it */
    return 0;
}

/* Remote DMA set-up: byte count and start address, then the command. */
static void dma_start(uint16_t addr, uint16_t count, uint8_t cmd)
{
    select_page(CR_PAGE0);
    ne2k_out(NE_P0_ISR, ISR_RDC);
    ne2k_out(NE_P0_RBCR0, count & 0xFF);
    ne2k_out(NE_P0_RBCR1, count >> 8);
    ne2k_out(NE_P0_RSAR0, addr & 0xFF);
    ne2k_out(NE_P0_RSAR1, addr >> 8);
    ne2k_out(NE_CR, CR_PAGE0 | CR_STA | cmd);
}

/* The remote DMA ends when its byte count reaches zero: ISR.RDC. */
static int dma_finish(void)
{
    for (uint32_t i = 0; i < RDC_SPINS; i++) {
        if (ne2k_in(NE_P0_ISR) & ISR_RDC) {
            ne2k_out(NE_P0_ISR, ISR_RDC);
            return 0;
        }
    }
    return -1;
}

static void rep_insw(uint16_t port, void *dst, uint32_t n)
{
    asm volatile("rep insw" : "+D"(dst), "+c"(n) : "d"(port) : "memory");
}

static void rep_outsw(uint16_t port, const void *src, uint32_t n)
{
    asm volatile("rep outsw" : "+S"(src), "+c"(n) : "d"(port) : "memory");
}

static void rep_insb(uint16_t port, void *dst, uint32_t n)
{
    asm volatile("rep insb" : "+D"(dst), "+c"(n) : "d"(port) : "memory");
}

static void rep_outsb(uint16_t port, const void *src, uint32_t n)
{
    asm volatile("rep outsb" : "+S"(src), "+c"(n) : "d"(port) : "memory");
}

int ne2k_dma_write(uint16_t addr, const void *buf, uint16_t len)
{
    uint16_t port = ne2k_port(NE_DATA);
    const uint8_t *p = buf;

    if (dcr_now & DCR_WTS) {
        dma_start(addr, (uint16_t)((len + 1) & ~1u), CR_RD_WRITE);
        rep_outsw(port, p, len / 2u);
        if (len & 1)
            outw(port, p[len - 1]);
    } else {
        dma_start(addr, len, CR_RD_WRITE);
        rep_outsb(port, p, len);
    }
    return dma_finish();
}

int ne2k_dma_read(uint16_t addr, void *buf, uint16_t len)
{
    uint16_t port = ne2k_port(NE_DATA);
    uint8_t *p = buf;

    if (dcr_now & DCR_WTS) {
        dma_start(addr, (uint16_t)((len + 1) & ~1u), CR_RD_READ);
        rep_insw(port, p, len / 2u);
        if (len & 1)
            p[len - 1] = (uint8_t)inw(port);
    } else {
        dma_start(addr, len, CR_RD_READ);
        rep_insb(port, p, len);
    }
    return dma_finish();
}

void ne2k_read_prom(uint16_t words[16])
{
    /* As the datasheet's initialisation begins: stopped, word-wide DMA, nothing
     * received into the buffer (monitor mode), transmitter in loopback. */
    ne2k_out(NE_CR, CR_PAGE0 | CR_STP | CR_RD_ABORT);
    ne2k_set_dcr(DCR_WORD);
    ne2k_out(NE_P0_RBCR0, 0);
    ne2k_out(NE_P0_RBCR1, 0);
    ne2k_out(NE_P0_IMR, 0);
    ne2k_out(NE_P0_ISR, 0xFF);
    ne2k_out(NE_P0_RCR, RCR_MON);
    ne2k_out(NE_P0_TCR, TCR_LOOP_NIC);

    dma_start(0, 32, CR_RD_READ);
    rep_insw(ne2k_port(NE_DATA), words, 16);
    if (dma_finish())
        fail("PROM read: remote DMA did not complete (ISR.RDC never set)");
}

void ne2k_set_dcr(uint8_t dcr)
{
    dcr_now = dcr;
    ne2k_out(NE_P0_DCR, dcr);
}

void ne2k_set_rcr(uint8_t rcr) { ne2k_out(NE_P0_RCR, rcr); }

void ne2k_set_imr(uint8_t imr)
{
    imr_now = imr;
    ne2k_out(NE_P0_IMR, imr);
}

void ne2k_set_mar(const uint8_t mar[8])
{
    select_page(CR_PAGE1);
    for (unsigned i = 0; i < 8; i++)
        ne2k_out(NE_P1_MAR0 + i, mar[i]);
    select_page(CR_PAGE0);
}

void ne2k_get_mar(uint8_t mar[8])
{
    select_page(CR_PAGE1);
    for (unsigned i = 0; i < 8; i++)
        mar[i] = ne2k_in(NE_P1_MAR0 + i);
    select_page(CR_PAGE0);
}

void ne2k_get_par(uint8_t mac[ETH_ALEN])
{
    select_page(CR_PAGE1);
    for (unsigned i = 0; i < ETH_ALEN; i++)
        mac[i] = ne2k_in(NE_P1_PAR0 + i);
    select_page(CR_PAGE0);
}

uint8_t ne2k_curr(void)
{
    select_page(CR_PAGE1);
    uint8_t c = ne2k_in(NE_P1_CURR);
    select_page(CR_PAGE0);
    return c;
}

void ne2k_init(const uint8_t mac[ETH_ALEN], uint8_t dcr, uint8_t rcr)
{
    /* DP8390D "Initialization Procedure", steps 1-11. */
    ne2k_out(NE_CR, CR_PAGE0 | CR_STP | CR_RD_ABORT);
    ne2k_set_dcr(dcr);
    ne2k_out(NE_P0_RBCR0, 0);
    ne2k_out(NE_P0_RBCR1, 0);
    ne2k_out(NE_P0_RCR, RCR_MON);
    ne2k_out(NE_P0_TCR, TCR_LOOP_NIC);
    ne2k_out(NE_P0_BNRY, NE_RX_START);
    ne2k_out(NE_P0_PSTART, NE_RX_START);
    ne2k_out(NE_P0_PSTOP, NE_RX_STOP);
    ne2k_out(NE_P0_ISR, 0xFF);
    ne2k_set_imr(0);

    ne2k_out(NE_CR, CR_PAGE1 | CR_STP | CR_RD_ABORT);
    for (unsigned i = 0; i < ETH_ALEN; i++)
        ne2k_out(NE_P1_PAR0 + i, mac[i]);
    for (unsigned i = 0; i < 8; i++)
        ne2k_out(NE_P1_MAR0 + i, 0);
    ne2k_out(NE_P1_CURR, NE_RX_START); /* empty ring: CURR == BNRY */
    next_pkt = NE_RX_START;

    ne2k_out(NE_CR, CR_PAGE0 | CR_STA | CR_RD_ABORT);
    ne2k_out(NE_P0_TCR, TCR_NORMAL);
    ne2k_out(NE_P0_RCR, rcr);
    ne2k_events = 0;
}

uint8_t ne2k_poll_isr(uint8_t mask)
{
    /* Bits enabled in IMR belong to the IRQ handler: clearing them here could
     * leave it an interrupt with nothing to say. */
    uint8_t isr = ne2k_in(NE_P0_ISR) & mask & (uint8_t)~(ISR_RDC | ISR_RST | imr_now);
    if (isr) {
        ne2k_out(NE_P0_ISR, isr);
        ne2k_events |= isr;
    }
    return isr;
}

int ne2k_transmit(const void *frame, uint16_t len, uint32_t timeout_ms)
{
    static uint8_t padded[ETH_ZLEN];

    if (len < ETH_ZLEN) {
        memset(padded, 0, sizeof(padded));
        memcpy(padded, frame, len);
        frame = padded;
        len = ETH_ZLEN;
    }
    if (ne2k_dma_write(NE_TX_PAGE << 8, frame, len))
        fail("transmit: remote DMA write did not complete (ISR.RDC never set)");

    ne2k_events &= (uint8_t)~(ISR_PTX | ISR_TXE);
    ne2k_out(NE_P0_TPSR, NE_TX_PAGE);
    ne2k_out(NE_P0_TBCR0, len & 0xFF);
    ne2k_out(NE_P0_TBCR1, len >> 8);
    ne2k_out(NE_CR, CR_PAGE0 | CR_STA | CR_TXP | CR_RD_ABORT);

    uint32_t start = clock_ms();
    for (;;) {
        ne2k_poll_isr(ISR_PTX | ISR_TXE | ISR_OVW);
        if (ne2k_events & (ISR_PTX | ISR_TXE))
            break;
        if (clock_ms() - start > timeout_ms)
            return -1;
        clock_idle();
    }
    ne2k_events &= (uint8_t)~(ISR_PTX | ISR_TXE);
    return ne2k_in(NE_P0_TSR);
}

/* Forget everything in the ring: BNRY catches up with CURR. */
static void ring_drop_all(void)
{
    next_pkt = ne2k_curr();
    ne2k_out(NE_P0_BNRY, next_pkt);
}

void ne2k_recover_overflow(void)
{
    /* DP8390D "Buffer Ring Overflow" recovery. */
    uint8_t cr = ne2k_in(NE_CR);
    ne2k_out(NE_CR, CR_PAGE0 | CR_STP | CR_RD_ABORT);
    ne2k_out(NE_P0_RBCR0, 0);
    ne2k_out(NE_P0_RBCR1, 0);
    uint32_t start = clock_ms();
    while (!(ne2k_in(NE_P0_ISR) & ISR_RST) && clock_ms() - start < RESET_TIMEOUT_MS)
        clock_idle();
    int resend = (cr & CR_TXP) && !(ne2k_in(NE_P0_ISR) & (ISR_PTX | ISR_TXE));
    ne2k_out(NE_P0_TCR, TCR_LOOP_NIC);
    ne2k_out(NE_CR, CR_PAGE0 | CR_STA | CR_RD_ABORT);
    ring_drop_all();
    ne2k_out(NE_P0_ISR, ISR_OVW);
    ne2k_events &= (uint8_t)~ISR_OVW;
    ne2k_out(NE_P0_TCR, TCR_NORMAL);
    if (resend)
        ne2k_out(NE_CR, CR_PAGE0 | CR_STA | CR_TXP | CR_RD_ABORT);
    ne2k_overflows++;
}

int ne2k_receive(void *buf, uint16_t max, struct ne2k_rx_info *info)
{
    struct ne2k_rx_info local;
    uint8_t raw[4];

    if (!info)
        info = &local;
    if (ne2k_events & ISR_OVW) {
        ne2k_recover_overflow();
        return 0;
    }
    if (next_pkt == ne2k_curr())
        return 0;

    if (ne2k_dma_read((uint16_t)(next_pkt << 8), raw, 4))
        fail("receive: remote DMA read did not complete (ISR.RDC never set)");
    info->page = next_pkt;
    info->hdr.status = raw[0];
    info->hdr.next = raw[1];
    info->hdr.count = (uint16_t)(raw[2] | raw[3] << 8);

    uint16_t count = info->hdr.count;
    if (info->hdr.next < NE_RX_START || info->hdr.next >= NE_RX_STOP || count < 4 + ETH_HLEN ||
        count > 4 + ETH_FRAME_MAX + 4) {
        ring_drop_all();
        return -1;
    }
    uint16_t len = (uint16_t)(count - 4);
    uint16_t n = len < max ? len : max;
    uint32_t end = ((uint32_t)next_pkt << 8) + count;
    info->wrapped = end > ((uint32_t)NE_RX_STOP << 8);

    /* The remote DMA wraps from PSTOP to PSTART by itself, as for the ring. */
    if (n && ne2k_dma_read((uint16_t)((next_pkt << 8) + 4), buf, n))
        fail("receive: remote DMA read did not complete (ISR.RDC never set)");

    next_pkt = info->hdr.next;
    ne2k_out(NE_P0_BNRY, next_pkt);
    return len;
}

int ne2k_receive_wait(void *buf, uint16_t max, struct ne2k_rx_info *info, uint32_t timeout_ms)
{
    uint32_t start = clock_ms();
    for (;;) {
        ne2k_poll_isr(ISR_PRX | ISR_RXE | ISR_OVW);
        int n = ne2k_receive(buf, max, info);
        if (n)
            return n;
        if (clock_ms() - start > timeout_ms)
            return 0;
        clock_idle();
    }
}

static void ne2k_irq(struct frame *f)
{
    (void)f;
    ne2k_irq_count++;
    /* The main code runs with IF=0, so CR is on page 0 here. Loop until no
     * enabled cause is left, so the line drops and the next event is an edge. */
    for (int i = 0; i < 16; i++) {
        uint8_t isr = ne2k_in(NE_P0_ISR) & imr_now;
        if (!isr)
            break;
        ne2k_out(NE_P0_ISR, isr);
        ne2k_events |= isr;
        ne2k_irq_seen |= isr;
    }
    pic_eoi(NE_IRQ);
}

void ne2k_irq_enable(uint8_t imr)
{
    idt_set_handler(IRQ_BASE_SLAVE + (NE_IRQ - 8), ne2k_irq);
    ne2k_set_imr(imr);
    pic_unmask(NE_IRQ);
}

void ne2k_irq_disable(void)
{
    ne2k_set_imr(0);
    pic_mask(NE_IRQ);
}

unsigned ne2k_mcast_index(const uint8_t addr[ETH_ALEN])
{
    /* CRC-32 (polynomial 0x04C11DB7, preset all ones) over the address bits in
     * the order they go on the wire, least significant bit of each byte first. */
    uint32_t crc = 0xFFFFFFFFu;
    for (unsigned i = 0; i < ETH_ALEN; i++) {
        uint8_t b = addr[i];
        for (unsigned bit = 0; bit < 8; bit++, b >>= 1) {
            uint32_t feedback = (crc >> 31) ^ (b & 1u);
            crc <<= 1;
            if (feedback)
                crc ^= 0x04C11DB7u;
        }
    }
    return crc >> 26;
}
