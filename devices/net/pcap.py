"""Packet capture in the classic libpcap format (what tshark and Wireshark read).

File header: magic 0xA1B2C3D4 (microsecond timestamps), version 2.4, snaplen 65535,
link type 1 (Ethernet). Then per frame: seconds, microseconds, captured length,
original length, and the frame bytes.
"""

from __future__ import annotations

import struct
import time
from pathlib import Path
from typing import BinaryIO, Iterator

PCAP_MAGIC = 0xA1B2C3D4
LINKTYPE_ETHERNET = 1
SNAPLEN = 65535


class PcapWriter:
    def __init__(self, path: str | Path) -> None:
        self._file: BinaryIO = open(path, "wb")
        self._file.write(struct.pack("<IHHiIII", PCAP_MAGIC, 2, 4, 0, 0, SNAPLEN, LINKTYPE_ETHERNET))
        self._file.flush()

    def write(self, frame: bytes, timestamp: float | None = None) -> None:
        when = time.time() if timestamp is None else timestamp
        seconds = int(when)
        micros = int((when - seconds) * 1_000_000)
        captured = frame[:SNAPLEN]
        self._file.write(struct.pack("<IIII", seconds, micros, len(captured), len(frame)))
        self._file.write(captured)
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_pcap(path: str | Path) -> Iterator[tuple[float, bytes]]:
    """(timestamp, frame) for every record of a capture file."""
    data = Path(path).read_bytes()
    if len(data) < 24:
        raise ValueError(f"{path}: too short for a pcap header")
    magic = struct.unpack_from("<I", data)[0]
    if magic != PCAP_MAGIC:
        raise ValueError(f"{path}: not a little-endian microsecond pcap file (magic {magic:#x})")
    offset = 24
    while offset + 16 <= len(data):
        seconds, micros, captured, _original = struct.unpack_from("<IIII", data, offset)
        offset += 16
        if offset + captured > len(data):
            raise ValueError(f"{path}: record at {offset - 16} is truncated")
        yield seconds + micros / 1e6, data[offset : offset + captured]
        offset += captured
