/* A deterministic CPU-bound workload for timing a monitor: a PRNG fills a
 * 256 KiB array, CRC32 runs over it, a sieve counts primes in 64 KiB, and an
 * insertion sort orders a slice.  Every round feeds a checksum, so the result
 * is the same wherever it runs, whatever the timer does. */
#include "kernel.h"

const char guest_name[] = "cpubench";

#define DEFAULT_ITERATIONS 350  /* about 1 s on QEMU 7.2 TCG */
#define DATA_WORDS 65536        /* 256 KiB */
#define SIEVE_SIZE 65536
#define SORT_LEN 512

static uint32_t data[DATA_WORDS];
static uint8_t composite[SIEVE_SIZE];
static uint32_t sort_buf[SORT_LEN];
static uint32_t crc_table[256];

static volatile uint32_t ticks;

/* The calls below stay real calls: function-call overhead is part of the mix. */
#define NOINLINE __attribute__((noinline))

static NOINLINE uint32_t xorshift32(uint32_t *state)
{
    uint32_t x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *state = x;
}

static void crc32_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

/* The reflected CRC-32 of IEEE 802.3, table-driven, a byte at a time. */
static NOINLINE uint32_t crc32(const uint8_t *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    while (n--)
        c = crc_table[(c ^ *p++) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static NOINLINE uint32_t count_primes(uint32_t limit)
{
    uint32_t count = 0;
    memset(composite, 0, limit);
    for (uint32_t i = 2; i < limit; i++) {
        if (composite[i])
            continue;
        count++;
        for (uint32_t j = i * i; j < limit; j += i)
            composite[j] = 1;
    }
    return count;
}

static NOINLINE void insertion_sort(uint32_t *a, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        uint32_t v = a[i];
        size_t j = i;
        while (j > 0 && a[j - 1] > v) {
            a[j] = a[j - 1];
            j--;
        }
        a[j] = v;
    }
}

static uint32_t rotl(uint32_t x, unsigned r) { return x << r | x >> (32 - r); }

static uint32_t one_round(uint32_t round)
{
    uint32_t state = 0x12345678u ^ (round * 0x9E3779B9u);
    if (!state)
        state = 1;
    for (uint32_t i = 0; i < DATA_WORDS; i++)
        data[i] = xorshift32(&state);

    uint32_t crc = crc32((const uint8_t *)data, sizeof(data));
    uint32_t primes = count_primes(SIEVE_SIZE - (round & 255));

    uint32_t start = (round * 97) % (DATA_WORDS - SORT_LEN);
    for (uint32_t i = 0; i < SORT_LEN; i++)
        sort_buf[i] = data[start + i] >> 8;
    insertion_sort(sort_buf, SORT_LEN);
    uint32_t sorted_sum = 0;
    for (uint32_t i = 0; i < SORT_LEN; i++) {
        if (i && sort_buf[i - 1] > sort_buf[i])
            fail("round %u: sort produced an unordered array at %u", round, i);
        sorted_sum = sorted_sum * 31 + sort_buf[i];
    }
    return crc ^ rotl(primes, 11) ^ rotl(sorted_sum, 3) ^ state;
}

static void timer_irq(struct frame *f)
{
    (void)f;
    ticks++;
    pic_eoi(0);
}

void guest_main(void)
{
    uint32_t iterations = cmdline_uint("iterations", DEFAULT_ITERATIONS);
    uint32_t hz = cmdline_uint("timer", 0);

    kprintf("iterations: %u\n", iterations);
    if (hz) {
        /* The tick count depends on speed, so it is counted but not printed. */
        idt_set_handler(IRQ_BASE_MASTER + 0, timer_irq);
        pit_start_periodic(hz);
        pic_unmask(0);
        kprintf("timer: %u Hz\n", hz);
        sti();
    }

    crc32_init();
    uint32_t checksum = 0;
    for (uint32_t r = 0; r < iterations; r++)
        checksum = rotl(checksum, 5) ^ one_round(r);

    cli();
    kprintf("checksum: 0x%08x\n", checksum);
    pass();
}
