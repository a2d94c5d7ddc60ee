/* LSI 53C895A PCI-to-Ultra2 SCSI controller: register map, SCRIPTS instruction
 * encodings and a small driver shared by the scsi and scsibench guests.
 * Written from the LSI53C895A Technical Manual: chapter 5 (operating
 * registers) and chapter 6 (SCSI SCRIPTS instruction set). */
#ifndef LSI_H
#define LSI_H

#include "types.h"
#include "pci.h"

#define LSI_VENDOR_ID 0x1000
#define LSI_DEVICE_ID 0x0012 /* 53C895A */

/* Operating registers (byte offsets in the I/O BAR0 and memory BAR1 views). */
#define LSI_SCNTL0   0x00
#define LSI_SCNTL1   0x01
#define LSI_SCNTL2   0x02
#define LSI_SCNTL3   0x03
#define LSI_SCID     0x04
#define LSI_SXFER    0x05
#define LSI_SDID     0x06
#define LSI_GPREG    0x07
#define LSI_SFBR     0x08
#define LSI_SOCL     0x09
#define LSI_SSID     0x0A
#define LSI_SBCL     0x0B
#define LSI_DSTAT    0x0C
#define LSI_SSTAT0   0x0D
#define LSI_SSTAT1   0x0E
#define LSI_SSTAT2   0x0F
#define LSI_DSA      0x10 /* 32 bits */
#define LSI_ISTAT    0x14
#define LSI_CTEST0   0x18
#define LSI_CTEST3   0x1B
#define LSI_TEMP     0x1C /* 32 bits */
#define LSI_DFIFO    0x20
#define LSI_CTEST4   0x21
#define LSI_DBC      0x24 /* 24 bits */
#define LSI_DCMD     0x27
#define LSI_DNAD     0x28 /* 32 bits */
#define LSI_DSP      0x2C /* 32 bits; writing the top byte starts SCRIPTS */
#define LSI_DSPS     0x30 /* 32 bits */
#define LSI_SCRATCHA 0x34 /* 32 bits */
#define LSI_DMODE    0x38
#define LSI_DIEN     0x39
#define LSI_SBR      0x3A
#define LSI_DCNTL    0x3B
#define LSI_SIEN0    0x40
#define LSI_SIEN1    0x41
#define LSI_SIST0    0x42
#define LSI_SIST1    0x43
#define LSI_STIME0   0x48
#define LSI_STIME1   0x49
#define LSI_RESPID0  0x4A
#define LSI_RESPID1  0x4B
#define LSI_STEST0   0x4C
#define LSI_STEST1   0x4D
#define LSI_STEST2   0x4E
#define LSI_STEST3   0x4F
#define LSI_SCRATCHB 0x5C /* 32 bits */

/* ISTAT */
#define ISTAT_ABRT 0x80
#define ISTAT_SRST 0x40
#define ISTAT_SIGP 0x20
#define ISTAT_SEM  0x10
#define ISTAT_CON  0x08
#define ISTAT_INTF 0x04
#define ISTAT_SIP  0x02
#define ISTAT_DIP  0x01

/* DSTAT (and the matching DIEN enables) */
#define DSTAT_DFE  0x80 /* DMA FIFO empty: status only, not an interrupt */
#define DSTAT_MDPE 0x40
#define DSTAT_BF   0x20
#define DSTAT_ABRT 0x10
#define DSTAT_SSI  0x08
#define DSTAT_SIR  0x04
#define DSTAT_IID  0x01

/* SIST0 / SIEN0 */
#define SIST0_MA  0x80 /* phase mismatch (initiator) */
#define SIST0_CMP 0x40
#define SIST0_SEL 0x20
#define SIST0_RSL 0x10
#define SIST0_SGE 0x08
#define SIST0_UDC 0x04
#define SIST0_RST 0x02
#define SIST0_PAR 0x01
/* SIST1 / SIEN1 */
#define SIST1_STO 0x04
#define SIST1_GEN 0x02
#define SIST1_HTH 0x01

#define SCID_RRE  0x40 /* respond to reselection */
#define DCNTL_COM 0x01 /* selection/reselection ID in SSID only, SFBR kept */

/* SCSI bus phases (MSG, C/D, I/O), as in SCRIPTS bits 26-24 and SSTAT1. */
#define PHASE_DATA_OUT 0
#define PHASE_DATA_IN  1
#define PHASE_COMMAND  2
#define PHASE_STATUS   3
#define PHASE_MSG_OUT  6
#define PHASE_MSG_IN   7

/* SCRIPTS instructions, first dword (manual chapter 6). */
/* Block move: 00, indirect 29, table indirect 28, opcode 27 (1 = MOVE), phase 26-24. */
#define SCR_MOVE_TBL(phase)   (0x18000000u | (uint32_t)(phase) << 24)
/* I/O: 01, opcode 29-27, relative 26, table indirect 25, ATN 24. */
#define SCR_SELECT_ATN_TBL    0x43000000u /* + 24-bit DSA offset of the select entry */
#define SCR_WAIT_DISCONNECT   0x48000000u
#define SCR_WAIT_RESELECT     0x50000000u
#define SCR_SET               0x58000000u
#define SCR_CLEAR             0x60000000u
#define SCR_ACK               0x00000040u
#define SCR_ATN               0x00000008u
/* Read/write register: 01, 101 SFBR->reg / 110 reg->SFBR / 111 read-modify-write,
 * operator 26-24, register 22-16, immediate 15-8. */
#define SCR_OP_MOV 0
#define SCR_OP_OR  2
#define SCR_OP_ADD 6
#define SCR_REG_RMW(reg, op, imm)  (0x78000000u | (uint32_t)(op) << 24 | (uint32_t)(reg) << 16 | (uint32_t)(imm) << 8)
#define SCR_REG_TO_SFBR(reg, op, imm) (0x70000000u | (uint32_t)(op) << 24 | (uint32_t)(reg) << 16 | (uint32_t)(imm) << 8)
/* Transfer control: 10, opcode 29-27, phase 26-24, relative 23, carry 21,
 * true/false 19, compare data 18, compare phase 17, wait for valid phase 16,
 * mask 15-8 (1 = bit not compared), data 7-0. */
#define SCR_JUMP   0x80000000u
#define SCR_CALL   0x88000000u
#define SCR_RETURN 0x90000000u
#define SCR_INT    0x98000000u
#define SCR_IF_TRUE      0x00080000u
#define SCR_ALWAYS       SCR_IF_TRUE /* no compare, "jump if true" */
#define SCR_WHEN(phase)  (SCR_IF_TRUE | 0x00030000u | (uint32_t)(phase) << 24)
#define SCR_IF(phase)    (SCR_IF_TRUE | 0x00020000u | (uint32_t)(phase) << 24)
#define SCR_IF_DATA(mask, data) (SCR_IF_TRUE | 0x00040000u | (uint32_t)(mask) << 8 | (data))
/* Memory move: 110000, 24-bit count; then source and destination dwords. */
#define SCR_MEMORY_MOVE(n) (0xC0000000u | (n))
/* Load/store: 111, DSA relative 28, load 24, register 22-16, count 2-0. */
#define SCR_LOAD_DSA(reg, n)  (0xF1000000u | (uint32_t)(reg) << 16 | (n))
#define SCR_STORE_DSA(reg, n) (0xF0000000u | (uint32_t)(reg) << 16 | (n))

/* DSPS values of the INT instructions in the command script. */
#define LSI_INT_DONE        0x00C0DE00u
#define LSI_INT_BAD_PHASE   0x00C0DE01u
#define LSI_INT_BAD_MSGIN   0x00C0DE02u
#define LSI_INT_BAD_RESEL   0x00C0DE03u
#define LSI_INT_DATA_TWICE  0x00C0DE04u
#define LSI_INT_SEL_LOST    0x00C0DE05u
#define LSI_INT_SIGP        0x00C0DE06u

/* One table-indirect entry: byte count (24 bits) and address. */
struct lsi_move {
    uint32_t count;
    uint32_t addr;
};

/* What DSA points at while a command runs: the table the SCRIPTS address
 * relative to DSA, then the small buffers the table entries point into. */
struct lsi_table {
    uint32_t select;          /* +0: SCNTL3 31-24, target ID 19-16, SXFER 15-8 */
    uint32_t scratch_init;    /* +4: LOADed into SCRATCHA at the start */
    struct lsi_move msgout;   /* +8 */
    struct lsi_move cmd;      /* +16 */
    struct lsi_move data;     /* +24 */
    struct lsi_move status;   /* +32 */
    struct lsi_move msgin;    /* +40 */
    uint32_t scratch_result;  /* +48: SCRATCHA STOREd at the end */
    uint32_t status_copy;     /* +52: memory-move copy of status_buf */
    uint8_t msgout_buf[4];
    uint8_t cdb[16];
    uint8_t status_buf[4];
    uint8_t msgin_buf[4];
} __attribute__((aligned(16)));

/* SCRATCHA as the script leaves it: byte 0 = 1 after a data phase, byte 1 =
 * number of disconnects. */
#define LSI_RESULT_DATA(r)        ((r) & 0xFF)
#define LSI_RESULT_DISCONNECTS(r) (((r) >> 8) & 0xFF)

enum lsi_view { LSI_VIEW_IO, LSI_VIEW_MMIO };
enum lsi_wait { LSI_WAIT_POLL, LSI_WAIT_IRQ };

struct lsi_dev {
    struct pci_dev pci;
    struct pci_bar bar_io, bar_mmio, bar_ram;
    uint8_t irq;
    enum lsi_view view;
    enum lsi_wait wait;
    uint32_t script_addr; /* where the command script runs from */
};
extern struct lsi_dev lsi;

/* The status of the last command as the guest saw it. */
struct lsi_result {
    uint8_t istat, dstat, sist0, sist1; /* dstat without DFE */
    uint32_t dsps, dsp;
    uint8_t status;          /* SCSI status byte */
    uint32_t scratch;        /* SCRATCHA stored by the script */
    uint32_t irqs;           /* interrupts taken for this command */
};

/* Find the controller on bus 0, decode and size its BARs, enable I/O, memory
 * and bus mastering, read its interrupt line. Fails the test if absent. */
void lsi_probe(void);

/* Register access through the current view (lsi.view). */
uint8_t lsi_rd8(unsigned reg);
void lsi_wr8(unsigned reg, uint8_t v);
uint32_t lsi_rd32(unsigned reg);
void lsi_wr32(unsigned reg, uint32_t v);

/* ISTAT SRST, then the initiator set-up: SCSI ID 7, reselection enabled,
 * interrupt enables for lsi.wait. */
void lsi_reset(void);

/* Program DIEN/SIEN0/SIEN1 for the chosen completion mode. */
void lsi_set_wait(enum lsi_wait w);

/* Route the controller's PCI interrupt line through the PIC (level triggered
 * via the ELCR) and start a 100 Hz PIT watchdog for command timeouts. */
void lsi_irq_init(void);

/* Assemble the command script for a given load address into buf (at most
 * max dwords). Returns its length in bytes. */
uint32_t lsi_build_script(uint32_t *buf, uint32_t max, uint32_t base);

/* The script built for guest RAM (lsi.script_addr defaults to it). */
uint32_t lsi_ram_script_addr(void);

/* Run one command on target ID 0, LUN 0: data phases move exactly len bytes
 * at data (either direction). Fails the test with a register dump on any
 * SCRIPTS stop other than the "done" interrupt, or after 10 s. */
void lsi_command(const uint8_t *cdb, unsigned cdblen, void *data, uint32_t len,
                 struct lsi_result *r);

/* lsi_command, failing the test when a data phase ran and expect_data says none
 * should (or the other way round); returns the SCSI status byte. */
uint8_t lsi_run(const uint8_t *cdb, unsigned cdblen, void *data, uint32_t len, int expect_data);

/* TEST UNIT READY; returns the SCSI status byte. */
uint8_t lsi_test_unit_ready(void);

/* Big-endian fields of CDBs and of the data they return. */
void put_be32(uint8_t *p, uint32_t v);
uint32_t get_be32(const uint8_t *p);

#endif
