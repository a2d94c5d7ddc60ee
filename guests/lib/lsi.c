/* A minimal LSI 53C895A initiator driver: one command at a time to target 0,
 * LUN 0, run by a SCRIPTS program that the guest assembles itself. The script
 * follows the target's phases (so a command may skip its data phase), handles
 * disconnect and reselection, and stops with an INT whose DSPS says why. */
#include "lsi.h"
#include "io.h"
#include "idt.h"
#include "pic.h"
#include "pit.h"
#include "exit.h"
#include "string.h"
#include "printf.h"

struct lsi_dev lsi;

#define ELCR_MASTER 0x4D0 /* edge/level control, IRQ0-7 (PIIX) */
#define ELCR_SLAVE  0x4D1 /* IRQ8-15 */
#define WATCHDOG_HZ 100
#define TIMEOUT_TICKS (10 * WATCHDOG_HZ)

static struct lsi_table table;
static uint32_t ram_script[256];

static volatile uint32_t ticks;
static volatile int irq_seen;
static volatile struct lsi_result irq_res;
static int irq_ready;

/* ---- register access through BAR0 (ports) or BAR1 (memory) ---- */

static volatile uint8_t *mmio8(unsigned reg)
{
    return (volatile uint8_t *)(lsi.bar_mmio.base + reg);
}

uint8_t lsi_rd8(unsigned reg)
{
    if (lsi.view == LSI_VIEW_MMIO)
        return *mmio8(reg);
    return inb(lsi.bar_io.base + reg);
}

void lsi_wr8(unsigned reg, uint8_t v)
{
    if (lsi.view == LSI_VIEW_MMIO)
        *mmio8(reg) = v;
    else
        outb(lsi.bar_io.base + reg, v);
}

uint32_t lsi_rd32(unsigned reg)
{
    if (lsi.view == LSI_VIEW_MMIO)
        return *(volatile uint32_t *)mmio8(reg);
    return inl(lsi.bar_io.base + reg);
}

void lsi_wr32(unsigned reg, uint32_t v)
{
    if (lsi.view == LSI_VIEW_MMIO)
        *(volatile uint32_t *)mmio8(reg) = v;
    else
        outl(lsi.bar_io.base + reg, v);
}

/* ---- PCI ---- */

void lsi_probe(void)
{
    if (!pci_find(LSI_VENDOR_ID, LSI_DEVICE_ID, &lsi.pci))
        fail("no LSI 53C895A (PCI 1000:0012) on bus 0");

    unsigned off = PCI_BAR0;
    pci_read_bar(lsi.pci, off, &lsi.bar_io);
    off += 4;
    pci_read_bar(lsi.pci, off, &lsi.bar_mmio);
    off += lsi.bar_mmio.is_64 ? 8 : 4;
    pci_read_bar(lsi.pci, off, &lsi.bar_ram);
    if (!lsi.bar_io.is_io || lsi.bar_io.base == 0)
        fail("BAR0 is not an assigned I/O BAR (%x)", pci_read32(lsi.pci, PCI_BAR0));
    if (lsi.bar_mmio.is_io || lsi.bar_mmio.base == 0)
        fail("BAR1 is not an assigned memory BAR");
    if (lsi.bar_ram.is_io || lsi.bar_ram.base == 0)
        fail("SCRIPTS RAM BAR is not an assigned memory BAR");

    uint16_t cmd = pci_read16(lsi.pci, PCI_COMMAND);
    pci_write16(lsi.pci, PCI_COMMAND, cmd | PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    cmd = pci_read16(lsi.pci, PCI_COMMAND);
    if ((cmd & 7) != 7)
        fail("COMMAND register reads %x after enabling I/O, memory, bus master", cmd);

    lsi.irq = pci_read8(lsi.pci, PCI_INTERRUPT_LINE);
    lsi.view = LSI_VIEW_IO;
    lsi.wait = LSI_WAIT_POLL;
    lsi_build_script(ram_script, ARRAY_SIZE(ram_script), (uint32_t)ram_script);
    lsi.script_addr = (uint32_t)ram_script;
}

uint32_t lsi_ram_script_addr(void)
{
    return (uint32_t)ram_script;
}

/* ---- interrupts ---- */

static void watchdog_tick(struct frame *f)
{
    (void)f;
    ticks++;
    pic_eoi(0);
}

/* Reading ISTAT, then DSTAT and SIST0/SIST1 as ISTAT says, clears the
 * interrupt and so drops the level-triggered line before the EOI. */
static void lsi_isr(struct frame *f)
{
    (void)f;
    uint8_t istat = lsi_rd8(LSI_ISTAT);
    if (istat & ISTAT_DIP)
        irq_res.dstat |= lsi_rd8(LSI_DSTAT) & ~DSTAT_DFE;
    if (istat & ISTAT_SIP) {
        irq_res.sist0 |= lsi_rd8(LSI_SIST0);
        irq_res.sist1 |= lsi_rd8(LSI_SIST1);
    }
    if (istat & (ISTAT_DIP | ISTAT_SIP)) {
        irq_res.istat |= istat;
        irq_res.irqs++;
        irq_seen = 1;
    }
    pic_eoi(lsi.irq);
}

void lsi_irq_init(void)
{
    if (lsi.irq == 0 || lsi.irq > 15 || lsi.irq == 2)
        fail("unusable PCI interrupt line %u", lsi.irq);
    /* PCI interrupts are level triggered, shareable: tell the PIC so. */
    if (lsi.irq < 8)
        outb(ELCR_MASTER, inb(ELCR_MASTER) | (1u << lsi.irq));
    else
        outb(ELCR_SLAVE, inb(ELCR_SLAVE) | (1u << (lsi.irq - 8)));
    idt_set_handler(IRQ_BASE_MASTER + lsi.irq, lsi_isr); /* IRQ_BASE_SLAVE = master + 8 */
    idt_set_handler(IRQ_BASE_MASTER + 0, watchdog_tick);
    pit_start_periodic(WATCHDOG_HZ);
    pic_unmask(0);
    pic_unmask(lsi.irq);
    irq_ready = 1;
}

/* ---- set-up ---- */

void lsi_set_wait(enum lsi_wait w)
{
    lsi.wait = w;
    if (w == LSI_WAIT_IRQ) {
        lsi_wr8(LSI_DIEN, DSTAT_MDPE | DSTAT_BF | DSTAT_ABRT | DSTAT_SIR | DSTAT_IID);
        lsi_wr8(LSI_SIEN0, SIST0_MA | SIST0_SGE | SIST0_UDC | SIST0_RST | SIST0_PAR);
        lsi_wr8(LSI_SIEN1, SIST1_STO);
    } else {
        /* Masked sources still set DSTAT/SIST and ISTAT DIP/SIP (fatal ones
         * still stop SCRIPTS); only the interrupt pin stays quiet. */
        lsi_wr8(LSI_DIEN, 0);
        lsi_wr8(LSI_SIEN0, 0);
        lsi_wr8(LSI_SIEN1, 0);
    }
}

void lsi_reset(void)
{
    lsi_wr8(LSI_ISTAT, ISTAT_SRST);
    lsi_wr8(LSI_ISTAT, 0);
    lsi_wr8(LSI_SCID, SCID_RRE | 7);
    lsi_wr8(LSI_RESPID0, 1u << 7);
    lsi_wr8(LSI_RESPID1, 0);
    lsi_wr8(LSI_SXFER, 0);       /* asynchronous */
    lsi_wr8(LSI_STIME0, 0x0C);   /* selection time-out about 200 ms */
    lsi_wr8(LSI_DMODE, 0);
    lsi_wr8(LSI_DCNTL, DCNTL_COM);
    lsi_set_wait(lsi.wait);
}

/* ---- the SCRIPTS assembler ---- */

enum label {
    L_DISPATCH, L_MSGOUT, L_CMD, L_DATAIN, L_DATAOUT, L_MOVE_DI, L_MOVE_DO, L_STATUS,
    L_MSGIN, L_MSG_IGNORE, L_MSG_DISC, L_RESEL_OK, L_MSG_COMPLETE, L_SEL_LOST, L_SIGP,
    L_COUNT
};

struct as {
    uint32_t *buf, max, n, base;
    uint32_t label[L_COUNT];
    uint32_t fix_at[32];
    uint8_t fix_label[32];
    uint32_t nfix;
};

static void emit(struct as *a, uint32_t w)
{
    if (a->n >= a->max)
        fail("SCRIPTS buffer too small");
    a->buf[a->n++] = w;
}

static void emit2(struct as *a, uint32_t op, uint32_t arg)
{
    emit(a, op);
    emit(a, arg);
}

/* An instruction whose second dword is the absolute address of a label. */
static void emit_to(struct as *a, uint32_t op, enum label l)
{
    emit(a, op);
    a->fix_at[a->nfix] = a->n;
    a->fix_label[a->nfix++] = l;
    emit(a, 0);
}

static void here(struct as *a, enum label l)
{
    a->label[l] = a->base + a->n * 4;
}

#define T_OFF(field) ((uint32_t)__builtin_offsetof(struct lsi_table, field))

uint32_t lsi_build_script(uint32_t *buf, uint32_t max, uint32_t base)
{
    struct as a = { .buf = buf, .max = max, .base = base };

    /* Start: SCRATCHA <- 0 from the table, select target with ATN. */
    emit2(&a, SCR_LOAD_DSA(LSI_SCRATCHA, 4), T_OFF(scratch_init));
    emit_to(&a, SCR_SELECT_ATN_TBL | T_OFF(select), L_SEL_LOST);

    /* Follow whatever phase the target asks for. */
    here(&a, L_DISPATCH);
    emit_to(&a, SCR_JUMP | SCR_WHEN(PHASE_DATA_IN), L_DATAIN);
    emit_to(&a, SCR_JUMP | SCR_IF(PHASE_DATA_OUT), L_DATAOUT);
    emit_to(&a, SCR_JUMP | SCR_IF(PHASE_STATUS), L_STATUS);
    emit_to(&a, SCR_JUMP | SCR_IF(PHASE_MSG_IN), L_MSGIN);
    emit_to(&a, SCR_JUMP | SCR_IF(PHASE_COMMAND), L_CMD);
    emit_to(&a, SCR_JUMP | SCR_IF(PHASE_MSG_OUT), L_MSGOUT);
    emit2(&a, SCR_INT | SCR_ALWAYS, LSI_INT_BAD_PHASE);

    here(&a, L_MSGOUT);
    emit2(&a, SCR_MOVE_TBL(PHASE_MSG_OUT), T_OFF(msgout));
    emit_to(&a, SCR_JUMP | SCR_ALWAYS, L_DISPATCH);

    here(&a, L_CMD);
    emit2(&a, SCR_MOVE_TBL(PHASE_COMMAND), T_OFF(cmd));
    emit_to(&a, SCR_JUMP | SCR_ALWAYS, L_DISPATCH);

    /* Data, once: SCRATCHA0 records that it happened. */
    here(&a, L_DATAIN);
    emit2(&a, SCR_REG_TO_SFBR(LSI_SCRATCHA, SCR_OP_OR, 0), 0);
    emit2(&a, SCR_INT | SCR_IF_DATA(0, 1), LSI_INT_DATA_TWICE);
    emit_to(&a, SCR_CALL | SCR_ALWAYS, L_MOVE_DI);
    emit2(&a, SCR_REG_RMW(LSI_SCRATCHA, SCR_OP_MOV, 1), 0);
    emit_to(&a, SCR_JUMP | SCR_ALWAYS, L_DISPATCH);

    here(&a, L_DATAOUT);
    emit2(&a, SCR_REG_TO_SFBR(LSI_SCRATCHA, SCR_OP_OR, 0), 0);
    emit2(&a, SCR_INT | SCR_IF_DATA(0, 1), LSI_INT_DATA_TWICE);
    emit_to(&a, SCR_CALL | SCR_ALWAYS, L_MOVE_DO);
    emit2(&a, SCR_REG_RMW(LSI_SCRATCHA, SCR_OP_MOV, 1), 0);
    emit_to(&a, SCR_JUMP | SCR_ALWAYS, L_DISPATCH);

    here(&a, L_MOVE_DI);
    emit2(&a, SCR_MOVE_TBL(PHASE_DATA_IN), T_OFF(data));
    emit2(&a, SCR_RETURN | SCR_ALWAYS, 0);

    here(&a, L_MOVE_DO);
    emit2(&a, SCR_MOVE_TBL(PHASE_DATA_OUT), T_OFF(data));
    emit2(&a, SCR_RETURN | SCR_ALWAYS, 0);

    here(&a, L_STATUS);
    emit2(&a, SCR_MOVE_TBL(PHASE_STATUS), T_OFF(status));
    emit_to(&a, SCR_JUMP | SCR_ALWAYS, L_DISPATCH);

    /* One message byte at a time; ACK stays asserted until CLEAR ACK. */
    here(&a, L_MSGIN);
    emit2(&a, SCR_MOVE_TBL(PHASE_MSG_IN), T_OFF(msgin));
    emit_to(&a, SCR_JUMP | SCR_IF_DATA(0, 0x00), L_MSG_COMPLETE);  /* COMMAND COMPLETE */
    emit_to(&a, SCR_JUMP | SCR_IF_DATA(0, 0x04), L_MSG_DISC);      /* DISCONNECT */
    emit_to(&a, SCR_JUMP | SCR_IF_DATA(0, 0x02), L_MSG_IGNORE);    /* SAVE DATA POINTER */
    emit_to(&a, SCR_JUMP | SCR_IF_DATA(0, 0x03), L_MSG_IGNORE);    /* RESTORE POINTERS */
    emit_to(&a, SCR_JUMP | SCR_IF_DATA(0, 0x07), L_MSG_IGNORE);    /* MESSAGE REJECT */
    emit2(&a, SCR_INT | SCR_ALWAYS, LSI_INT_BAD_MSGIN);

    here(&a, L_MSG_IGNORE);
    emit2(&a, SCR_CLEAR | SCR_ACK, 0);
    emit_to(&a, SCR_JUMP | SCR_ALWAYS, L_DISPATCH);

    /* Disconnect: count it in SCRATCHA1, wait for the target to come back.
     * Data pointers need no saving: only one command is ever outstanding and
     * the data phase happens at most once (checked above). */
    here(&a, L_MSG_DISC);
    emit2(&a, SCR_REG_RMW(LSI_SCRATCHA + 1, SCR_OP_ADD, 1), 0);
    emit2(&a, SCR_CLEAR | SCR_ACK, 0);
    emit2(&a, SCR_WAIT_DISCONNECT, 0);
    emit_to(&a, SCR_WAIT_RESELECT, L_SIGP);
    emit2(&a, SCR_MOVE_TBL(PHASE_MSG_IN), T_OFF(msgin));           /* IDENTIFY */
    emit_to(&a, SCR_JUMP | SCR_IF_DATA(0x7F, 0x80), L_RESEL_OK);
    emit2(&a, SCR_INT | SCR_ALWAYS, LSI_INT_BAD_RESEL);
    here(&a, L_RESEL_OK);
    emit2(&a, SCR_CLEAR | SCR_ACK, 0);
    emit_to(&a, SCR_JUMP | SCR_ALWAYS, L_DISPATCH);

    /* Done: record SCRATCHA and a copy of the status in the table. */
    here(&a, L_MSG_COMPLETE);
    emit2(&a, SCR_CLEAR | SCR_ACK, 0);
    emit2(&a, SCR_WAIT_DISCONNECT, 0);
    emit2(&a, SCR_STORE_DSA(LSI_SCRATCHA, 4), T_OFF(scratch_result));
    emit(&a, SCR_MEMORY_MOVE(4));
    emit(&a, (uint32_t)table.status_buf);
    emit(&a, (uint32_t)&table.status_copy);
    emit2(&a, SCR_INT | SCR_ALWAYS, LSI_INT_DONE);

    here(&a, L_SEL_LOST);
    emit2(&a, SCR_INT | SCR_ALWAYS, LSI_INT_SEL_LOST);
    here(&a, L_SIGP);
    emit2(&a, SCR_INT | SCR_ALWAYS, LSI_INT_SIGP);

    for (uint32_t i = 0; i < a.nfix; i++)
        buf[a.fix_at[i]] = a.label[a.fix_label[i]];
    return a.n * 4;
}

/* ---- running a command ---- */

static const char *int_name(uint32_t dsps)
{
    switch (dsps) {
    case LSI_INT_DONE: return "done";
    case LSI_INT_BAD_PHASE: return "unexpected phase";
    case LSI_INT_BAD_MSGIN: return "unexpected message in";
    case LSI_INT_BAD_RESEL: return "reselection without IDENTIFY";
    case LSI_INT_DATA_TWICE: return "second data phase";
    case LSI_INT_SEL_LOST: return "selection lost to a reselection";
    case LSI_INT_SIGP: return "SIGP during WAIT RESELECT";
    default: return "unknown";
    }
}

/* Why SCRIPTS stopped, for a FAIL line. */
static const char *stop_reason(const struct lsi_result *r)
{
    if (r->sist1 & SIST1_STO)
        return "selection time-out: no target 0";
    if (r->sist0 & SIST0_MA)
        return "phase mismatch";
    if (r->sist0 & SIST0_UDC)
        return "unexpected disconnect";
    if (r->sist0 & SIST0_RST)
        return "SCSI bus reset";
    if (r->dstat & DSTAT_IID)
        return "illegal instruction";
    if (r->dstat & DSTAT_BF)
        return "bus fault";
    if (r->dstat & DSTAT_ABRT)
        return "aborted";
    if (r->dstat & DSTAT_SIR)
        return int_name(r->dsps);
    return "unknown";
}

static void wait_poll(struct lsi_result *r)
{
    uint32_t deadline = ticks + TIMEOUT_TICKS;
    uint8_t istat;

    if (irq_ready)
        sti();
    while (!((istat = lsi_rd8(LSI_ISTAT)) & (ISTAT_DIP | ISTAT_SIP))) {
        if (irq_ready && ticks > deadline)
            break;
    }
    cli();
    r->istat = istat;
    if (istat & ISTAT_DIP)
        r->dstat = lsi_rd8(LSI_DSTAT) & ~DSTAT_DFE;
    if (istat & ISTAT_SIP) {
        r->sist0 = lsi_rd8(LSI_SIST0);
        r->sist1 = lsi_rd8(LSI_SIST1);
    }
}

static void wait_irq(struct lsi_result *r)
{
    uint32_t deadline = ticks + TIMEOUT_TICKS;

    if (!irq_ready)
        fail("interrupt wait without lsi_irq_init");
    while (!irq_seen && ticks <= deadline) {
        sti_hlt();
        cli();
    }
    r->istat = irq_res.istat;
    r->dstat = irq_res.dstat;
    r->sist0 = irq_res.sist0;
    r->sist1 = irq_res.sist1;
    r->irqs = irq_res.irqs;
}

void lsi_command(const uint8_t *cdb, unsigned cdblen, void *data, uint32_t len,
                 struct lsi_result *r)
{
    memset(&table, 0, sizeof(table));
    table.select = 0u << 16;           /* target 0, asynchronous */
    table.msgout_buf[0] = 0xC0;        /* IDENTIFY, may disconnect, LUN 0 */
    table.msgout = (struct lsi_move){ 1, (uint32_t)table.msgout_buf };
    memcpy(table.cdb, cdb, cdblen);
    table.cmd = (struct lsi_move){ cdblen, (uint32_t)table.cdb };
    table.data = (struct lsi_move){ len, (uint32_t)data };
    table.status_buf[0] = 0xFF;
    table.status = (struct lsi_move){ 1, (uint32_t)table.status_buf };
    table.msgin = (struct lsi_move){ 1, (uint32_t)table.msgin_buf };
    table.scratch_init = 0;
    table.scratch_result = 0xFFFFFFFFu;
    table.status_copy = 0xFFFFFFFFu;

    memset(r, 0, sizeof(*r));
    memset((void *)&irq_res, 0, sizeof(irq_res));
    irq_seen = 0;

    lsi_wr32(LSI_DSA, (uint32_t)&table);
    lsi_wr32(LSI_DSP, lsi.script_addr); /* starts SCRIPTS (DMODE MAN clear) */

    if (lsi.wait == LSI_WAIT_IRQ)
        wait_irq(r);
    else
        wait_poll(r);

    r->dsps = lsi_rd32(LSI_DSPS);
    r->dsp = lsi_rd32(LSI_DSP);
    r->status = table.status_buf[0];
    r->scratch = table.scratch_result;

    if (!(r->istat & (ISTAT_DIP | ISTAT_SIP)))
        fail("command %x: no completion within 10 s (%s), ISTAT %x DSP +%x", cdb[0],
             lsi.wait == LSI_WAIT_IRQ ? "interrupt" : "polling", lsi_rd8(LSI_ISTAT),
             lsi_rd32(LSI_DSP) - lsi.script_addr);
    if (r->dstat != DSTAT_SIR || r->sist0 || r->sist1 || r->dsps != LSI_INT_DONE)
        fail("command %x: SCRIPTS stopped (%s): ISTAT %x DSTAT %x SIST0 %x SIST1 %x DSPS %x DSP +%x DBC %x",
             cdb[0], stop_reason(r), r->istat, r->dstat, r->sist0, r->sist1, r->dsps,
             r->dsp - lsi.script_addr, lsi_rd32(LSI_DBC) & 0xFFFFFF);
    if (table.status_copy != *(uint32_t *)table.status_buf)
        fail("command %x: memory move copied %x, status bytes are %x", cdb[0],
             table.status_copy, *(uint32_t *)table.status_buf);
    if (lsi.wait == LSI_WAIT_IRQ && r->irqs != 1)
        fail("command %x: %u interrupts for one command", cdb[0], r->irqs);
}

uint8_t lsi_run(const uint8_t *cdb, unsigned cdblen, void *data, uint32_t len, int expect_data)
{
    struct lsi_result r;
    lsi_command(cdb, cdblen, data, len, &r);
    if (LSI_RESULT_DATA(r.scratch) != (expect_data ? 1 : 0))
        fail("command %x: data phase %s", cdb[0], expect_data ? "missing" : "unexpected");
    return r.status;
}

uint8_t lsi_test_unit_ready(void)
{
    static const uint8_t cdb[6] = { 0x00 };
    return lsi_run(cdb, 6, NULL, 0, 0);
}

void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = v >> 24;
    p[1] = v >> 16;
    p[2] = v >> 8;
    p[3] = v;
}

uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
