"""A network peer for the Linux test guest: it answers ARP requests and ICMP echo
requests for one IPv4 address, and nothing else.

It speaks QEMU's UDP datagram netdev (one Ethernet frame per datagram), so the same
peer sits on our switch's uplink (``vmm switch NAME --uplink udp:...``) or directly on
a QEMU VM's ``-netdev dgram``. It runs in a thread of the test process, or as

    python -m guests.linux.peer --listen 127.0.0.1:PORT --send 127.0.0.1:PORT [--ip A]
"""

from __future__ import annotations

import argparse
import socket
import struct
import sys
import threading
from dataclasses import dataclass

PEER_IP = "10.0.2.2"
PEER_MAC = bytes.fromhex("525400aabbcc")
ETHERTYPE_ARP = 0x0806
ETHERTYPE_IPV4 = 0x0800
ARP_REQUEST, ARP_REPLY = 1, 2
ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST = 0, 8
IP_PROTOCOL_ICMP = 1


def internet_checksum(data: bytes) -> int:
    """RFC 1071: the ones' complement of the ones' complement sum of 16-bit words."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def arp_reply(frame: bytes, ip: bytes, mac: bytes) -> bytes | None:
    """The reply to an Ethernet/IPv4 ARP request for ``ip``, or None."""
    if len(frame) < 42:
        return None
    hardware, protocol, hlen, plen, operation = struct.unpack_from("!HHBBH", frame, 14)
    if (hardware, protocol, hlen, plen, operation) != (1, ETHERTYPE_IPV4, 6, 4, ARP_REQUEST):
        return None
    sender_mac, sender_ip, target_ip = frame[22:28], frame[28:32], frame[38:42]
    if target_ip != ip:
        return None
    header = sender_mac + mac + struct.pack("!H", ETHERTYPE_ARP)
    body = struct.pack("!HHBBH", 1, ETHERTYPE_IPV4, 6, 4, ARP_REPLY) + mac + ip + sender_mac + sender_ip
    return header + body


def echo_reply(frame: bytes, ip: bytes, mac: bytes) -> bytes | None:
    """The reply to an ICMP echo request sent to ``ip``, or None."""
    if len(frame) < 14 + 20 + 8:
        return None
    version_ihl = frame[14]
    header_length = (version_ihl & 0x0F) * 4
    if version_ihl >> 4 != 4 or header_length < 20:
        return None
    total_length = struct.unpack_from("!H", frame, 16)[0]
    packet = frame[14:14 + total_length]
    if len(packet) < header_length + 8 or packet[9] != IP_PROTOCOL_ICMP or packet[16:20] != ip:
        return None
    if internet_checksum(packet[:header_length]) != 0:
        return None
    icmp = packet[header_length:]
    if icmp[0] != ICMP_ECHO_REQUEST or internet_checksum(icmp) != 0:
        return None
    reply_icmp = bytearray(icmp)
    reply_icmp[0] = ICMP_ECHO_REPLY
    reply_icmp[2:4] = b"\0\0"
    reply_icmp[2:4] = struct.pack("!H", internet_checksum(bytes(reply_icmp)))
    ip_header = bytearray(packet[:header_length])
    ip_header[12:16], ip_header[16:20] = packet[16:20], packet[12:16]  # swap addresses
    ip_header[8] = 64  # TTL
    ip_header[10:12] = b"\0\0"
    ip_header[10:12] = struct.pack("!H", internet_checksum(bytes(ip_header)))
    ethernet = frame[6:12] + mac + struct.pack("!H", ETHERTYPE_IPV4)
    return ethernet + bytes(ip_header) + bytes(reply_icmp)


def answer(frame: bytes, ip: bytes, mac: bytes) -> bytes | None:
    """What the peer sends back for ``frame``, if anything."""
    if len(frame) < 14:
        return None
    ethertype = struct.unpack_from("!H", frame, 12)[0]
    if ethertype == ETHERTYPE_ARP:
        return arp_reply(frame, ip, mac)
    if ethertype == ETHERTYPE_IPV4 and frame[0:6] == mac:
        return echo_reply(frame, ip, mac)
    return None


@dataclass
class PeerStats:
    frames: int = 0
    arp_replies: int = 0
    echo_replies: int = 0


class Peer:
    """Answers on a UDP socket bound to ``listen``, sending to ``send``."""

    def __init__(self, listen: tuple[str, int], send: tuple[str, int], ip: str = PEER_IP,
                 mac: bytes = PEER_MAC) -> None:
        self.ip = socket.inet_aton(ip)
        self.mac = mac
        self.send_to = send
        self.stats = PeerStats()
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(listen)
        self._socket.settimeout(0.2)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def serve(self) -> None:
        while not self._stop.is_set():
            try:
                frame = self._socket.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            self.stats.frames += 1
            reply = answer(frame, self.ip, self.mac)
            if reply is None:
                continue
            if reply[12:14] == b"\x08\x06":
                self.stats.arp_replies += 1
            else:
                self.stats.echo_replies += 1
            # Ethernet frames are at least 60 bytes on the wire (before the FCS).
            self._socket.sendto(reply.ljust(60, b"\0"), self.send_to)

    def start(self) -> "Peer":
        self._thread = threading.Thread(target=self.serve, name="linux-test-peer", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._socket.close()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m guests.linux.peer", description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=_address, required=True, help="HOST:PORT to receive frames on")
    parser.add_argument("--send", type=_address, required=True, help="HOST:PORT to send frames to")
    parser.add_argument("--ip", default=PEER_IP, help=f"the address answered for (default {PEER_IP})")
    args = parser.parse_args(argv)
    peer = Peer(args.listen, args.send, args.ip)
    print(f"peer: answering ARP and ping for {args.ip} on udp {args.listen[0]}:{args.listen[1]}", file=sys.stderr)
    try:
        peer.serve()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
