"""The wire between a NIC model and whatever carries its frames (a switch port, a UDP
socket, a test). The NIC calls ``transmit``; the machine calls the NIC's ``receive`` from
the run loop's thread when a frame arrives, so device state lives on one thread.
"""

from __future__ import annotations

from typing import Callable

ETHERNET_MIN_FRAME = 60  # without the FCS
ETHERNET_MAX_FRAME = 1514


class Link:
    """A NIC's side of the wire: frames out through ``transmit``; frames in are queued
    by the backend with ``deliver`` and handed to the NIC by the machine."""

    def __init__(self, transmit: Callable[[bytes], None] | None = None) -> None:
        self._transmit = transmit
        self.up = True
        self.sent: int = 0

    def connect(self, transmit: Callable[[bytes], None]) -> None:
        self._transmit = transmit

    def transmit(self, frame: bytes) -> None:
        self.sent += 1
        if self.up and self._transmit is not None:
            self._transmit(frame)
