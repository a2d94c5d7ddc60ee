/*
 * The monitor's hot path, in C because it runs at every translation block and at every
 * port access (see ../shared/research/linux-on-unicorn.md, item 6).
 *
 * 1. Preemption. Stopping Unicorn 2.1.4 from another thread, or by emu_start's
 *    timeout, can land between the load and the store of a read-modify-write
 *    instruction and make it run twice. A stop requested from a UC_HOOK_BLOCK callback
 *    happens before the block's first instruction and is safe. The timer thread only
 *    raises `stop_requested`; this block hook turns it into uc_emu_stop.
 * 2. Deterministic time. The hook adds the size of every block entered to
 *    `code_bytes`, a count that depends on guest progress only; the monitor derives
 *    virtual time from it and asks for a stop at `stop_at_bytes`.
 * 3. The preemption timer: a POSIX timer whose signal raises `timer_due` at a
 *    host-time deadline; the block hook honours it once EFLAGS.IF is set. Arming it
 *    is one system call that needs no Python lock and wakes no thread: at a 1 kHz
 *    guest timer that is the difference that counts.
 *    With the patched Unicorn (vmm/native/unicorn-block-hook-gate.patch) the
 *    translated code calls the hook only while `hook_gate` is set: whoever raises a
 *    flag opens it, the hook closes it when nothing is left to do, and deterministic
 *    time keeps it open. A block then costs a load and a branch instead of a call.
 * 4. I/O privilege. Unicorn lets any CPL execute IN/OUT. The port hooks check CPL
 *    against EFLAGS.IOPL here and only call the monitor's slow path (which reads the
 *    TSS I/O bitmap) when the check fails.
 */
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unicorn/unicorn.h>

/* `string` is nonzero for INS/OUTS: the monitor then serves the whole string at once. */
typedef uint32_t (*port_in_fn)(uint32_t port, int size, int string);
typedef void (*port_out_fn)(uint32_t port, int size, uint32_t value, int string);
/* Returns nonzero when the access is allowed after all (TSS I/O bitmap). */
typedef int (*io_denied_fn)(uint32_t port, int size);

struct vmm_fast {
    volatile int32_t stop_requested; /* raised by timers, devices, other threads */
    int32_t stopped_in_block_hook;   /* the last stop came from the block hook */
    uint64_t code_bytes;             /* bytes of guest code in blocks entered */
    uint64_t stop_at_bytes;          /* stop before code_bytes passes this */
    uint64_t blocks;                 /* blocks entered */
    uint32_t io_fault;               /* an I/O instruction must take #GP(0) */
    uint32_t io_fault_eip;
    port_in_fn port_in;
    port_out_fn port_out;
    io_denied_fn io_denied;
    int32_t first_block; /* set at each slice start: the first block always runs */
    volatile int32_t timer_due; /* the preemption timer expired (see interrupt_stop_wanted) */
    uint32_t deferred_blocks;   /* blocks run since the timer came due with IF clear */
    int32_t timer_waits_for_if; /* the armed deadline is an interrupt's: it may wait */
    int32_t irq_window;         /* an interrupt waits for EFLAGS.IF: stop once it is set */
    volatile int32_t hook_gate; /* the patched Unicorn calls the block hook only while set */
    int32_t hook_always;        /* deterministic time counts every block: never close it */
};

#define EFLAGS_IF (1u << 9)
/* About 50 ms of guest code: a guest that keeps interrupts masked still reaches the
 * run loop (wall-clock limits, serial input) now and then. */
#define MAX_DEFERRED_BLOCKS 1000000u

/* Two stops matter only once the guest can take an interrupt, so they wait for
 * EFLAGS.IF (IRET, STI and POPF end a block, so the next block start sees it):
 * - a device deadline (a timer tick) come due: stopping while IF is clear puts tens of
 *   microseconds of monitor time between two guest instructions, and Linux, which
 *   calibrates the TSC against the PIT with interrupts off, gives up when one loop
 *   iteration takes ten times another. A guest that keeps IF clear still reaches the
 *   run loop after MAX_DEFERRED_BLOCKS. Forced stops and the wall limit do not wait.
 * - the interrupt window (VMX has an exit for it): the PIC asserts INTR while IF is
 *   clear, say inside another interrupt's handler. Nothing else would end the slice
 *   when IF comes back, and the request would wait for the next timer tick and lose to
 *   it on priority, again and again (a busy Linux starved its serial interrupt). */
static int interrupt_stop_wanted(uc_engine *uc, struct vmm_fast *f)
{
    uint32_t eflags = 0;
    if (f->timer_due && !f->timer_waits_for_if) {
        f->timer_due = 0;
        return 1;
    }
    if (!f->timer_due && !f->irq_window)
        return 0;
    uc_reg_read(uc, UC_X86_REG_EFLAGS, &eflags);
    if (!(eflags & EFLAGS_IF) && !(f->timer_due && ++f->deferred_blocks >= MAX_DEFERRED_BLOCKS))
        return 0;
    f->timer_due = 0;
    f->irq_window = 0;
    f->deferred_blocks = 0;
    return 1;
}

/* open_hook_gate: whoever raises a flag the hook acts on opens the gate after it. */
static inline void open_hook_gate(struct vmm_fast *f)
{
    f->hook_gate = 1;
}

void vmm_block_hook(uc_engine *uc, uint64_t address, uint32_t size, void *user_data)
{
    struct vmm_fast *f = user_data;
    (void)address;
    if (!f->hook_always) {
        /* Closed before the flags are read, with a full fence (the timer's signal may
         * run on another thread): a flag raised from here on opens it again. */
        f->hook_gate = 0;
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
    }
    /* Every slice runs at least one block, so the guest moves on however often a
     * deadline comes due (a timer armed in the past, a device that is always busy). */
    if (!f->first_block &&
        (f->stop_requested || f->code_bytes >= f->stop_at_bytes || interrupt_stop_wanted(uc, f))) {
        f->stop_requested = 0;
        f->stopped_in_block_hook = 1;
        uc_emu_stop(uc);
        return; /* the block has not run yet: it is counted when it does */
    }
    f->first_block = 0;
    f->blocks++;
    f->code_bytes += size ? size : 1;
    /* Still to act on: a request after this first block, or a stop waiting for IF. */
    if (f->stop_requested || f->timer_due || f->irq_window)
        open_hook_gate(f);
}

#define EFLAGS_IOPL_SHIFT 12
#define EFLAGS_VM (1u << 17)
#define CR0_PE 1u

static int io_allowed(uc_engine *uc, struct vmm_fast *f, uint32_t port, int size)
{
    uint32_t cr0 = 0, eflags = 0, cs = 0;
    uc_reg_read(uc, UC_X86_REG_CR0, &cr0);
    if (!(cr0 & CR0_PE))
        return 1; /* real mode: every port is open */
    uc_reg_read(uc, UC_X86_REG_EFLAGS, &eflags);
    uc_reg_read(uc, UC_X86_REG_CS, &cs);
    if (!(eflags & EFLAGS_VM) && (cs & 3) <= ((eflags >> EFLAGS_IOPL_SHIFT) & 3))
        return 1;
    return f->io_denied(port, size);
}

/* INS/OUTS (0x6C-0x6F) after any legacy prefixes; CS is assumed flat (base 0). */
static int is_string_io(uc_engine *uc)
{
    uint32_t eip = 0;
    uint8_t code[8];
    uc_reg_read(uc, UC_X86_REG_EIP, &eip);
    if (uc_vmem_read(uc, eip, UC_PROT_EXEC, code, sizeof code) != UC_ERR_OK)
        return 0;
    for (unsigned i = 0; i < sizeof code; i++) {
        switch (code[i]) {
        case 0x66: case 0x67: case 0xF2: case 0xF3:
        case 0x26: case 0x2E: case 0x36: case 0x3E: case 0x64: case 0x65:
            continue;
        default:
            return code[i] >= 0x6C && code[i] <= 0x6F;
        }
    }
    return 0;
}

/* Leave the instruction undone: EIP back on it, a stop, and #GP for the monitor.
 * Unicorn acts on the stop only at the next memory access or block end, so the
 * monitor restores the registers saved by io_denied; until then every port access is
 * ignored, so nothing after the refused instruction reaches a device. */
static void deny(uc_engine *uc, struct vmm_fast *f)
{
    uint32_t eip = 0;
    uc_reg_read(uc, UC_X86_REG_EIP, &eip);
    f->io_fault = 1;
    f->io_fault_eip = eip;
    uc_reg_write(uc, UC_X86_REG_EIP, &eip);
    uc_emu_stop(uc);
}

uint32_t vmm_in_hook(uc_engine *uc, uint32_t port, int size, void *user_data)
{
    struct vmm_fast *f = user_data;
    if (f->io_fault || !io_allowed(uc, f, port, size)) {
        uint32_t eax = 0;
        uc_reg_read(uc, UC_X86_REG_EAX, &eax);
        if (!f->io_fault)
            deny(uc, f);
        return eax; /* the destination keeps its value */
    }
    return f->port_in(port, size, is_string_io(uc));
}

void vmm_out_hook(uc_engine *uc, uint32_t port, int size, uint32_t value, void *user_data)
{
    struct vmm_fast *f = user_data;
    if (f->io_fault)
        return; /* a refused access is pending: nothing reaches a device until #GP */
    if (!io_allowed(uc, f, port, size)) {
        deny(uc, f);
        return;
    }
    f->port_out(port, size, value, is_string_io(uc));
}


/* -- the preemption timer ------------------------------------------------------------
 *
 * A POSIX timer on CLOCK_MONOTONIC whose expiry raises a real-time signal; the handler
 * (async-signal-safe: one store) raises `timer_due`. Arming is one timer_settime
 * call: no other thread has to be woken, which on a 1 kHz guest timer saves a thread
 * hand-over per tick. The timer structure is never freed: a signal already queued when
 * the machine goes away finds it closed and touches nothing else.
 */

#include <signal.h>

#define VMM_TIMER_SIGNAL (SIGRTMIN + 6)

struct vmm_timer {
    struct vmm_fast *volatile fast; /* NULL once stopped */
    timer_t timer;
};

static void timer_signal(int signo, siginfo_t *info, void *context)
{
    struct vmm_timer *t = info->si_value.sival_ptr;
    struct vmm_fast *f;
    (void)signo;
    (void)context;
    if (t && (f = t->fast) != NULL) {
        f->timer_due = 1;
        open_hook_gate(f);
    }
}

static int64_t monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static pthread_once_t handler_once = PTHREAD_ONCE_INIT;

static void install_handler(void)
{
    struct sigaction action = {0};
    action.sa_sigaction = timer_signal;
    action.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&action.sa_mask);
    sigaction(VMM_TIMER_SIGNAL, &action, NULL);
}

struct vmm_timer *vmm_timer_start(struct vmm_fast *fast)
{
    struct vmm_timer *t = calloc(1, sizeof *t);
    struct sigevent event = {0};
    if (!t)
        return NULL;
    pthread_once(&handler_once, install_handler);
    event.sigev_notify = SIGEV_SIGNAL;
    event.sigev_signo = VMM_TIMER_SIGNAL;
    event.sigev_value.sival_ptr = t;
    if (timer_create(CLOCK_MONOTONIC, &event, &t->timer) != 0) {
        free(t);
        return NULL;
    }
    t->fast = fast;
    return t;
}

/* Raise `timer_due` at host monotonic time `deadline_ns` (-1 disarms). */
void vmm_timer_arm(struct vmm_timer *t, int64_t deadline_ns)
{
    struct itimerspec when = {0};
    t->fast->timer_due = 0; /* the deadline it was for is replaced */
    if (deadline_ns >= 0 && deadline_ns <= monotonic_ns()) {
        t->fast->timer_due = 1; /* already due */
        open_hook_gate(t->fast);
        deadline_ns = -1;
    }
    if (deadline_ns >= 0) {
        when.it_value.tv_sec = deadline_ns / 1000000000;
        when.it_value.tv_nsec = deadline_ns % 1000000000;
    }
    timer_settime(t->timer, TIMER_ABSTIME, &when, NULL); /* zero disarms */
}

void vmm_timer_stop(struct vmm_timer *t)
{
    t->fast = NULL;
    timer_delete(t->timer);
    /* not freed: a signal may still be queued for it (see above) */
}

/* -- SIGUSR1: suspend ---------------------------------------------------------------------
 *
 * `vmm run --image IMAGE` suspends on SIGUSR1. A handler in C, because the main thread
 * spends its time inside Unicorn, where Python's own handlers never run, and because
 * threads that exist before any mask could be set (a BLAS pool) would take the signal.
 * The handler records it and stops the guest at the next block boundary.
 */

static volatile sig_atomic_t suspend_signalled;
static struct vmm_fast *volatile signal_watcher;

static void suspend_signal(int signo)
{
    struct vmm_fast *f = signal_watcher;
    (void)signo;
    suspend_signalled = 1;
    if (f) {
        f->stop_requested = 1;
        open_hook_gate(f);
    }
}

void vmm_catch_suspend_signal(void)
{
    struct sigaction action = {0};
    action.sa_handler = suspend_signal;
    action.sa_flags = SA_RESTART;
    sigemptyset(&action.sa_mask);
    sigaction(SIGUSR1, &action, NULL);
}

/* The run loop whose guest a signal should stop (NULL: none). */
void vmm_watch_suspend_signal(struct vmm_fast *fast)
{
    signal_watcher = fast;
}

/* 1 once if SIGUSR1 came since the last call. */
int vmm_take_suspend_signal(void)
{
    int taken = suspend_signalled;
    suspend_signalled = 0;
    return taken;
}
