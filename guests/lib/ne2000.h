/* NE2000 ISA board with a National DP8390D network interface controller.
 *
 * Register map and procedures from the DP8390D datasheet (NS, "DP8390D/NS32490D
 * NIC Network Interface Controller") and the NE2000 board conventions: I/O base
 * 0x300, IRQ 9, data port at base+0x10, reset port at base+0x1F, 16 KiB of
 * buffer RAM at 0x4000-0x7FFF, and a 32-byte station-address PROM at remote
 * address 0 whose bytes 0-5 are the MAC and 14-15 are 0x57 ('W', 16-bit board).
 *
 * One card per guest. All calls expect interrupts disabled (IF=0); waits open a
 * window with "sti; hlt" and need the millisecond clock (clock.h) running. */
#ifndef NE2000_H
#define NE2000_H

#include "types.h"

#define NE_IOBASE 0x300
#define NE_IRQ 9

/* Board ports, relative to the I/O base. */
#define NE_DATA 0x10  /* remote DMA data port (8 or 16 bits per DCR.WTS) */
#define NE_RESET 0x1F /* read (then write) to reset the board */

/* DP8390 registers, relative to the I/O base. CR is on every page. */
#define NE_CR 0x00
/* Page 0, read */
#define NE_P0_CLDA0 0x01
#define NE_P0_CLDA1 0x02
#define NE_P0_BNRY 0x03
#define NE_P0_TSR 0x04
#define NE_P0_NCR 0x05
#define NE_P0_FIFO 0x06
#define NE_P0_ISR 0x07
#define NE_P0_CRDA0 0x08
#define NE_P0_CRDA1 0x09
#define NE_P0_RSR 0x0C
#define NE_P0_CNTR0 0x0D /* frame alignment errors */
#define NE_P0_CNTR1 0x0E /* CRC errors */
#define NE_P0_CNTR2 0x0F /* missed packets */
/* Page 0, write */
#define NE_P0_PSTART 0x01
#define NE_P0_PSTOP 0x02
#define NE_P0_TPSR 0x04
#define NE_P0_TBCR0 0x05
#define NE_P0_TBCR1 0x06
#define NE_P0_RSAR0 0x08
#define NE_P0_RSAR1 0x09
#define NE_P0_RBCR0 0x0A
#define NE_P0_RBCR1 0x0B
#define NE_P0_RCR 0x0C
#define NE_P0_TCR 0x0D
#define NE_P0_DCR 0x0E
#define NE_P0_IMR 0x0F
/* Page 1, read/write */
#define NE_P1_PAR0 0x01 /* PAR0-5 at 0x01-0x06 */
#define NE_P1_CURR 0x07
#define NE_P1_MAR0 0x08 /* MAR0-7 at 0x08-0x0F */
/* Page 2, read (diagnostics: what was written on page 0) */
#define NE_P2_PSTART 0x01
#define NE_P2_PSTOP 0x02
#define NE_P2_TPSR 0x04
#define NE_P2_RCR 0x0C
#define NE_P2_TCR 0x0D
#define NE_P2_DCR 0x0E
#define NE_P2_IMR 0x0F

/* CR: command register */
#define CR_STP 0x01      /* stop */
#define CR_STA 0x02      /* start */
#define CR_TXP 0x04      /* transmit packet */
#define CR_RD_READ 0x08  /* RD2-0 = 001: remote read */
#define CR_RD_WRITE 0x10 /* RD2-0 = 010: remote write */
#define CR_RD_SEND 0x18  /* RD2-0 = 011: send packet */
#define CR_RD_ABORT 0x20 /* RD2-0 = 1xx: abort/complete remote DMA */
#define CR_PAGE0 0x00
#define CR_PAGE1 0x40
#define CR_PAGE2 0x80

/* ISR / IMR bits */
#define ISR_PRX 0x01 /* packet received */
#define ISR_PTX 0x02 /* packet transmitted */
#define ISR_RXE 0x04 /* receive error */
#define ISR_TXE 0x08 /* transmit error */
#define ISR_OVW 0x10 /* receive buffer ring overwrite warning */
#define ISR_CNT 0x20 /* a tally counter's MSB is set */
#define ISR_RDC 0x40 /* remote DMA complete */
#define ISR_RST 0x80 /* reset state or ring overflow (not cleared by writing) */

/* DCR: data configuration */
#define DCR_WTS 0x01 /* word-wide remote DMA */
#define DCR_BOS 0x02 /* byte order: 68000 style */
#define DCR_LAS 0x04 /* long (32-bit) addresses */
#define DCR_LS 0x08  /* normal operation (0 = loopback) */
#define DCR_AR 0x10  /* auto-initialise remote */
#define DCR_FT1 0x40 /* FIFO threshold: 8 bytes */
#define DCR_BYTE (DCR_FT1 | DCR_LS)
#define DCR_WORD (DCR_FT1 | DCR_LS | DCR_WTS)

/* RCR: receive configuration */
#define RCR_SEP 0x01 /* save errored packets */
#define RCR_AR 0x02  /* accept runts */
#define RCR_AB 0x04  /* accept broadcast */
#define RCR_AM 0x08  /* accept multicast (through the MAR hash) */
#define RCR_PRO 0x10 /* promiscuous physical */
#define RCR_MON 0x20 /* monitor: check but do not buffer */

/* TCR: transmit configuration */
#define TCR_CRC 0x01     /* inhibit CRC */
#define TCR_LOOP_NIC 0x02 /* LB1,LB0 = 01: internal loopback */
#define TCR_NORMAL 0x00

/* TSR / RSR */
#define TSR_PTX 0x01 /* transmitted without error */
#define RSR_PRX 0x01 /* received intact */
#define RSR_PHY 0x20 /* 1: multicast or broadcast destination, 0: physical */

/* The NE2000's buffer RAM, in 256-byte pages: transmit buffer, then the ring. */
#define NE_MEM_START 0x4000
#define NE_MEM_END 0x8000
#define NE_TX_PAGE 0x40     /* 6 pages: one 1536-byte frame */
#define NE_RX_START 0x46    /* PSTART */
#define NE_RX_STOP 0x80     /* PSTOP */

#define ETH_ALEN 6
#define ETH_HLEN 14
#define ETH_ZLEN 60        /* shortest frame without CRC */
#define ETH_FRAME_MAX 1514 /* longest frame without CRC */

/* The 4-byte header the NIC writes in front of each received frame. */
struct ne2k_rx_header {
    uint8_t status; /* RSR at the end of reception */
    uint8_t next;   /* page of the next frame */
    uint16_t count; /* bytes stored: frame plus this header */
};

struct ne2k_rx_info {
    struct ne2k_rx_header hdr;
    uint8_t page; /* page where the frame's header was */
    int wrapped;  /* the frame ran past PSTOP into PSTART */
};

/* ISR bits seen (by the IRQ handler or by a poll) and not yet consumed. */
extern volatile uint8_t ne2k_events;
/* IRQ 9 statistics: how many handler runs, and the ISR bits they saw. */
extern volatile uint32_t ne2k_irq_count;
extern volatile uint8_t ne2k_irq_seen;
/* How many receive ring overflows were recovered from. */
extern uint32_t ne2k_overflows;

static inline uint16_t ne2k_port(unsigned reg);

uint8_t ne2k_in(unsigned reg);
void ne2k_out(unsigned reg, uint8_t v);

/* Reset through the reset port and wait (bounded) for ISR.RST; 0 on success. */
int ne2k_reset(void);
/* Read the 32-byte PROM with word-wide remote DMA: 16 words. */
void ne2k_read_prom(uint16_t words[16]);
/* The datasheet's initialisation procedure: stopped, DCR as given, ring
 * PSTART..PSTOP with CURR = BNRY = PSTART, the station address, MAR all zero,
 * IMR 0, then started with TCR normal and RCR as given. */
void ne2k_init(const uint8_t mac[ETH_ALEN], uint8_t dcr, uint8_t rcr);

void ne2k_set_dcr(uint8_t dcr);
void ne2k_set_rcr(uint8_t rcr);
void ne2k_set_imr(uint8_t imr);
void ne2k_set_mar(const uint8_t mar[8]);
void ne2k_get_par(uint8_t mac[ETH_ALEN]);
void ne2k_get_mar(uint8_t mar[8]);
uint8_t ne2k_curr(void);

/* Remote DMA between guest memory and the board; uses the current DCR.WTS
 * (word mode needs an even address; an odd length is rounded up on the bus).
 * Returns 0, or -1 when ISR.RDC does not come. */
int ne2k_dma_write(uint16_t addr, const void *buf, uint16_t len);
int ne2k_dma_read(uint16_t addr, void *buf, uint16_t len);

/* Read ISR, clear the bits of mask that are set (write 1 to clear), add them
 * to ne2k_events and return them. RDC is left to the remote DMA code, and bits
 * enabled in IMR to the IRQ handler. */
uint8_t ne2k_poll_isr(uint8_t mask);

/* Copy the frame to the transmit buffer and send it (short frames are padded
 * to 60 bytes); wait up to timeout_ms for PTX/TXE. Returns TSR, or -1 on timeout. */
int ne2k_transmit(const void *frame, uint16_t len, uint32_t timeout_ms);

/* Take the next frame out of the ring. Returns its length (without the
 * header), 0 when the ring is empty, or -1 when the header is impossible (the
 * ring is then reset). Frames longer than max are cut to max. */
int ne2k_receive(void *buf, uint16_t max, struct ne2k_rx_info *info);

/* Wait up to timeout_ms for a frame in the ring; like ne2k_receive otherwise. */
int ne2k_receive_wait(void *buf, uint16_t max, struct ne2k_rx_info *info, uint32_t timeout_ms);

/* Install the IRQ 9 handler (reads ISR, clears it, EOI to both PICs), set IMR
 * and unmask IRQ 9 at the PIC. */
void ne2k_irq_enable(uint8_t imr);
void ne2k_irq_disable(void);

/* Recover from a receive ring overflow (datasheet procedure; drops what is in
 * the ring). Called by ne2k_receive when ISR.OVW was seen. */
void ne2k_recover_overflow(void);

/* Bit index (0-63) in MAR0-7 that the NIC's multicast hash gives an address:
 * the top 6 bits of the Ethernet CRC-32 of the destination address. */
unsigned ne2k_mcast_index(const uint8_t addr[ETH_ALEN]);

static inline uint16_t ne2k_port(unsigned reg) { return (uint16_t)(NE_IOBASE + reg); }

#endif
