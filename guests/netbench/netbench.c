/* Timing: netping with one frame size and no report but "done"; the harness
 * measures the run (the peer runs netpong with the same count). */
#include "kernel.h"
#include "pingpong.h"

const char guest_name[] = "netbench";

#define DEFAULT_SIZE ETH_FRAME_MAX
#define DEFAULT_COUNT 10000

void guest_main(void)
{
    uint8_t mac[ETH_ALEN];
    struct pp_result r;
    uint32_t size = cmdline_uint("size", DEFAULT_SIZE);
    uint32_t count = cmdline_uint("count", DEFAULT_COUNT);

    if (size < ETH_ZLEN || size > ETH_FRAME_MAX)
        fail("size=%u outside %u..%u", size, ETH_ZLEN, ETH_FRAME_MAX);
    pp_setup(mac, 0);
    pp_ping(mac, count, (uint16_t)size, &r);
    if (r.errors)
        fail("%u bad replies", r.errors);
    if (r.received != count)
        fail("%u replies for %u frames", r.received, count);
    kprintf("done\n");
    pass();
}
