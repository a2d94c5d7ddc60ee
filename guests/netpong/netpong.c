/* The other end of netping: echo every ping frame (type 0x88B5) back to its
 * sender, marked as a pong, until count distinct frames have come, then keep
 * answering repeats until the segment has been quiet for a second. */
#include "kernel.h"
#include "pingpong.h"

const char guest_name[] = "netpong";

#define DEFAULT_COUNT 1000

void guest_main(void)
{
    uint8_t mac[ETH_ALEN];
    uint32_t count = cmdline_uint("count", DEFAULT_COUNT);

    pp_setup(mac, 1);
    kprintf("count: %u\n", count);
    uint32_t errors = pp_pong(mac, count);
    kprintf("echoed %u, errors %u\n", count, errors);
    if (errors)
        fail("%u pings with a bad payload", errors);
    pass();
}
