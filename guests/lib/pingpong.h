/* The frames netping/netbench send and netpong echoes, and the two loops.
 *
 * Frame: Ethernet header (type 0x88B5, IEEE local experimental), then
 *   14: 'N' 'P'   magic
 *   16: kind      1 = ping, 2 = pong (the echo of a ping)
 *   17: 0
 *   18: length    of the whole frame, big-endian 16 bits
 *   20: sequence  big-endian 32 bits, from 0
 *   24: pattern   xorshift32 bytes seeded from the sequence number and length
 * Sizes 60..1514 bytes (no CRC). A pong is the ping with the addresses swapped
 * and the kind changed; everything else comes back unchanged. */
#ifndef PINGPONG_H
#define PINGPONG_H

#include "types.h"
#include "ne2000.h"

#define PP_ETHERTYPE 0x88B5
#define PP_PING 1
#define PP_PONG 2
#define PP_HEADER 24 /* bytes before the pattern */

/* The deterministic size of frame seq in netping: 60, 1514, then
 * 60 + (seq * 997) mod 1455, which visits every size in 60..1514. */
uint16_t pp_size(uint32_t seq);

/* Start the clock, reset the card, read the MAC from the PROM (printed on a
 * "mac:" line when print_mac), initialise it (broadcast accepted) and enable
 * IRQ 9. Fills mac. */
void pp_setup(uint8_t mac[ETH_ALEN], int print_mac);

struct pp_result {
    uint32_t sent;     /* distinct frames sent (retransmissions not counted) */
    uint32_t received; /* replies matched to their frame */
    uint32_t errors;   /* replies with a wrong length, kind or payload */
    int peer_learned;  /* the peer's MAC came from the first reply */
};

/* Send count frames, one at a time, each after the reply to the one before;
 * size 0 means pp_size(seq), else every frame has that size. The first goes
 * to the broadcast address, the rest to the MAC the first reply came from.
 * A frame without a reply within the retry interval is sent again. */
void pp_ping(const uint8_t mac[ETH_ALEN], uint32_t count, uint16_t size, struct pp_result *r);

/* Echo pings until count distinct sequence numbers have been seen, then keep
 * echoing repeats (a lost pong is retransmitted by the pinger) until the
 * segment has been quiet for a second. Returns the payload errors seen. */
uint32_t pp_pong(const uint8_t mac[ETH_ALEN], uint32_t count);

#endif
