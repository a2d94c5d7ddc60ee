/* One end of a ping-pong between two VMs on one segment (the other runs
 * netpong): count frames of varied sizes (60..1514 bytes) with checked
 * payloads, each sent after the reply to the one before, retransmitted when a
 * reply does not come. */
#include "kernel.h"
#include "pingpong.h"

const char guest_name[] = "netping";

#define DEFAULT_COUNT 1000

void guest_main(void)
{
    uint8_t mac[ETH_ALEN];
    struct pp_result r;
    uint32_t count = cmdline_uint("count", DEFAULT_COUNT);

    pp_setup(mac, 1);
    kprintf("count: %u\n", count);
    kprintf("sizes: 60, 1514, then 60 + (n * 997) mod 1455 bytes; type 0x%x\n", PP_ETHERTYPE);
    pp_ping(mac, count, 0, &r);
    if (count && r.peer_learned)
        kprintf("peer: MAC learned from the first reply; later frames unicast to it\n");
    kprintf("sent %u, received %u, errors %u\n", r.sent, r.received, r.errors);
    if (r.errors)
        fail("%u bad replies", r.errors);
    if (r.received != count)
        fail("%u replies for %u frames", r.received, count);
    pass();
}
