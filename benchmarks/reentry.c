/*
 * What Unicorn charges for leaving and re-entering its translation-block loop
 * (benchmarks/reentry.py builds this and runs it; docs/benchmarks.md, "What a stop
 * costs"). A 1 kHz POSIX timer raises `due` and opens the block-hook gate of our
 * patched engine; the next block's hook then does one of:
 *
 *   MODE_NOTHING  clear `due` and return: the cost of the signal and one hook call;
 *   MODE_SAME_EIP write EIP with its own value: Unicorn leaves its TB loop and enters
 *                 it again at the same place, with nothing visible to the guest;
 *   MODE_DELIVER  deliver IDT vector 0x20 in place (push EFLAGS, CS, EIP; clear IF, TF,
 *                 NT, RF; jump to the gate's handler), as a native tick would: the
 *                 guest's timer handler runs and returns with IRET.
 *
 * Only for flat 32-bit ring-0 guests without paging, such as cpubench: a measuring
 * instrument, not a device model.
 */
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unicorn/unicorn.h>

enum { MODE_NOTHING = 1, MODE_SAME_EIP = 2, MODE_DELIVER = 3 };

struct reentry {
    volatile int32_t due;
    volatile int32_t gate; /* handed to uc_set_block_hook_gate */
    int32_t mode;
    int32_t acted;         /* ticks the hook acted on */
};

static struct reentry *volatile current;

static void on_tick(int signo)
{
    struct reentry *r = current;
    (void)signo;
    if (r) {
        r->due = 1;
        r->gate = 1;
    }
}

/* Tick every `period_ns` into `r` (0 stops the ticks). One timer for the process. */
int reentry_ticks(struct reentry *r, long period_ns)
{
    static timer_t timer;
    static int made;
    if (!made) {
        struct sigaction action;
        struct sigevent event;
        memset(&action, 0, sizeof action);
        action.sa_handler = on_tick;
        action.sa_flags = SA_RESTART;
        sigaction(SIGRTMIN + 7, &action, NULL);
        memset(&event, 0, sizeof event);
        event.sigev_notify = SIGEV_SIGNAL;
        event.sigev_signo = SIGRTMIN + 7;
        if (timer_create(CLOCK_MONOTONIC, &event, &timer) != 0)
            return -1;
        made = 1;
    }
    current = r;
    struct itimerspec when = {{0, period_ns}, {0, period_ns}};
    return timer_settime(timer, 0, &when, NULL);
}

static void deliver_vector_0x20(uc_engine *uc, uint32_t eflags)
{
    uc_x86_mmr idtr;
    uint32_t gate[2], eip = 0, cs = 0, esp = 0;
    memset(&idtr, 0, sizeof idtr);
    uc_reg_read(uc, UC_X86_REG_IDTR, &idtr);
    uc_mem_read(uc, idtr.base + 0x20 * 8, gate, sizeof gate);
    uint32_t handler = (gate[1] & 0xFFFF0000u) | (gate[0] & 0xFFFFu);
    uc_reg_read(uc, UC_X86_REG_EIP, &eip);
    uc_reg_read(uc, UC_X86_REG_CS, &cs);
    uc_reg_read(uc, UC_X86_REG_ESP, &esp);
    uint32_t frame[3] = {eip, cs, eflags};
    esp -= sizeof frame;
    uc_mem_write(uc, esp, frame, sizeof frame);
    uc_reg_write(uc, UC_X86_REG_ESP, &esp);
    eflags &= ~((1u << 9) | (1u << 8) | (1u << 14) | (1u << 16));
    uc_reg_write(uc, UC_X86_REG_EFLAGS, &eflags);
    uc_reg_write(uc, UC_X86_REG_EIP, &handler);
}

void reentry_block_hook(uc_engine *uc, uint64_t address, uint32_t size, void *user)
{
    struct reentry *r = user;
    uint32_t eflags = 0, eip = 0;
    (void)address;
    (void)size;
    r->gate = 0;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (!r->due)
        return;
    uc_reg_read(uc, UC_X86_REG_EFLAGS, &eflags);
    if (!(eflags & (1u << 9))) { /* wait for IF, as a tick would */
        r->gate = 1;
        return;
    }
    r->due = 0;
    r->acted++;
    switch (r->mode) {
    case MODE_SAME_EIP:
        uc_reg_read(uc, UC_X86_REG_EIP, &eip);
        uc_reg_write(uc, UC_X86_REG_EIP, &eip);
        break;
    case MODE_DELIVER:
        deliver_vector_0x20(uc, eflags);
        break;
    default:
        break;
    }
}
