"""The NE2000 (DP8390) register by register, without a guest: what a driver writes and
what it must read back, with QEMU's ne2k_isa as the reference where they differ from
the datasheet (see devices/net/dp8390.py)."""

from __future__ import annotations

import json

from hypothesis import given, settings, strategies as st

from devices.base import Device, Stateful
from devices.net.dp8390 import multicast_index
from devices.net.ne2000 import Ne2000
from tests.net import (
    BNRY, CNTR0, CNTR1, CNTR2, CR, CRDA0, CRDA1, CURR, DATA, DCR, DCR_BYTES, DCR_WORDS,
    IMR, ISR, MAC, MAR0, PAGE1, PAGE2, PAR0, PSTART, PSTOP, RCR, REMOTE_READ,
    REMOTE_WRITE, RESET, RING_START, RING_STOP, RSR, START_PAGE0, STOP_PAGE0, TBCR0,
    TBCR1, TCR, TPSR, TRANSMIT, TSR, TX_PAGE, Card, frame_to,
)
from tests.helpers import assert_plain

BROADCAST = b"\xff" * 6
OTHER = bytes.fromhex("525400abcdef")

# ISR bits
PRX, PTX, RXE, OVW, CNT, RDC, RST = 0x01, 0x02, 0x04, 0x10, 0x20, 0x40, 0x80


def doubled(data: bytes) -> bytes:
    return bytes(b for byte in data for b in (byte, byte))


def ethernet_crc_msb_first(data: bytes) -> int:
    """The CRC-32 shift register the DP8390 runs over the destination address: bits
    fed LSB first into a register shifting towards the MSB (polynomial 0x04C11DB7)."""
    crc = 0xFFFFFFFF
    for byte in data:
        for bit in range(8):
            carry = (crc >> 31) ^ ((byte >> bit) & 1)
            crc = (crc << 1) & 0xFFFFFFFF
            if carry:
                crc ^= 0x04C11DB7
    return crc


# --- power-on and reset -----------------------------------------------------------------

def test_the_card_is_a_device_with_state() -> None:
    card = Card()
    assert isinstance(card.nic, Device)
    assert isinstance(card.nic, Stateful)


def test_power_on_register_values_are_qemus() -> None:
    card = Card()
    assert card.r(CR) == 0x00  # QEMU's power-on CR (the datasheet's chip says 0x21)
    assert card.r(ISR) == RST
    assert card.r(BNRY) == 0
    assert card.r(TSR) == 0
    assert card.r(RSR) == 0
    assert [card.r(reg) for reg in (0x01, 0x02, 0x05, 0x06)] == [0, 0, 0, 0]
    assert (card.r(0x0A), card.r(0x0B)) == (0x50, 0x43)  # QEMU's RTL8029 ID bytes
    assert [card.r(reg) for reg in (CNTR0, CNTR1, CNTR2)] == [0, 0, 0]
    assert [card.read_page(2, reg) for reg in range(1, 16)] == [0] * 15
    assert [card.read_page(1, reg) for reg in range(1, 16)] == [0] * 15
    assert card.irq.level is False


def test_page_3_reads_as_qemus_rtl8029_config_registers() -> None:
    card = Card()
    card.w(CR, 0xC0 | STOP_PAGE0)
    assert [card.r(reg) for reg in range(1, 16)] == [0, 0, 0, 0, 0x40, 0x40] + [0] * 9


def test_prom_at_power_on_holds_the_mac_and_ww_each_byte_doubled() -> None:
    card = Card()
    assert card.nic.memory.prom == doubled(MAC + bytes(8) + b"WW")


def test_reset_port_reloads_the_prom_as_qemu_does() -> None:
    """QEMU rebuilds the 16-byte image from what the PROM holds at bytes 6-13, so after
    the driver's reset bytes 12-27 hold copies of the MAC's last bytes."""
    card = Card()
    m = MAC
    assert card.r(RESET) == 0
    assert card.nic.memory.prom == doubled(m + doubled(m[3:6]) + b"\0\0" + b"WW")
    card.r(RESET)
    assert card.nic.memory.prom == doubled(m + doubled(m[3:6]) + doubled(m[3:4]) + b"WW")
    card.r(RESET)
    assert card.nic.memory.prom == doubled(m + doubled(m[3:6]) + doubled(m[3:4]) + b"WW")


def test_reset_port_read_sets_isr_to_rst_and_keeps_the_other_registers() -> None:
    card = Card()
    card.init()
    card.w(IMR, 0x7F)
    card.nic.receive(frame_to(MAC, 100))
    assert card.irq.level is True
    card.r(RESET)
    assert card.r(ISR) == RST
    assert card.irq.level is False
    assert card.r(CR) == START_PAGE0  # QEMU's reset leaves CR alone
    assert card.read_page(2, IMR) == 0x7F
    assert card.read_page(2, PSTART) == RING_START


def test_reset_port_write_does_nothing() -> None:
    card = Card()
    card.w(ISR, 0xFF)
    card.w(CR, START_PAGE0)
    card.w(RESET, 0x00)
    assert card.r(ISR) == 0


def test_starting_clears_rst_and_writing_one_to_rst_does_not() -> None:
    card = Card()
    card.w(CR, STOP_PAGE0)
    card.w(ISR, 0xFF)
    assert card.r(ISR) == RST
    card.w(CR, START_PAGE0)
    assert card.r(ISR) == 0


def test_registers_answer_byte_accesses_only_and_other_ports_read_all_ones() -> None:
    card = Card()
    assert card.r(ISR, 2) == 0xFFFF
    card.w(IMR, 0x7F, 2)
    assert card.read_page(2, IMR) == 0
    assert card.r(0x11) == 0xFF  # QEMU decodes the data port at 0x10 only...
    assert card.r(0x18) == 0xFF  # ...and the reset port at 0x1F only
    assert card.r(RESET, 2) == 0xFFFF


# --- the PROM and remote DMA --------------------------------------------------------------

def test_prom_read_by_remote_dma_in_byte_mode() -> None:
    card = Card()
    card.w(CR, STOP_PAGE0)
    card.w(DCR, DCR_BYTES)
    assert card.dma_read(0x0000, 32) == doubled(MAC + bytes(8) + b"WW")
    assert card.r(ISR) & RDC


def test_prom_read_by_remote_dma_in_word_mode_gives_each_byte_in_the_low_half() -> None:
    card = Card()
    card.w(CR, STOP_PAGE0)
    card.w(DCR, DCR_WORDS)
    card.setup_dma(0x0000, 32, REMOTE_READ)
    words = [card.r(DATA, 2) for _ in range(16)]
    assert bytes(w & 0xFF for w in words) == MAC + bytes(8) + b"WW"
    assert all(w >> 8 == w & 0xFF for w in words)


def test_remote_dma_write_then_read_back_in_byte_mode() -> None:
    card = Card()
    card.init(dcr=DCR_BYTES)
    data = bytes(range(7, 7 + 101))
    card.dma_write(0x5000, data)
    assert card.dma_read(0x5000, len(data)) == data


def test_remote_dma_write_then_read_back_in_word_mode() -> None:
    card = Card()
    card.init(dcr=DCR_WORDS)
    data = bytes(range(200, 256)) + bytes(range(0, 100))
    card.dma_write(0x6000, data)
    assert card.dma_read(0x6000, len(data)) == data
    card.w(DCR, DCR_BYTES)  # the same bytes seen one at a time
    assert card.dma_read(0x6000, len(data)) == data


def test_byte_access_in_word_mode_moves_a_word_and_reads_its_low_byte() -> None:
    card = Card()
    card.init(dcr=DCR_WORDS)
    card.dma_write(0x4000, b"\x11\x22\x33\x44")
    card.setup_dma(0x4000, 4, REMOTE_READ)
    assert [card.r(DATA, 1), card.r(DATA, 1)] == [0x11, 0x33]
    card.setup_dma(0x4000, 2, REMOTE_WRITE)
    card.w(DATA, 0xAB, 1)  # the 8-bit write carries a zero high byte
    assert card.nic.memory.ram[0:4] == b"\xab\x00\x33\x44"


def test_rsar_and_rbcr_count_and_rdc_is_raised_when_rbcr_reaches_zero() -> None:
    card = Card()
    card.init(dcr=DCR_BYTES)
    card.w(ISR, 0xFF)
    card.setup_dma(0x4100, 3, REMOTE_READ)
    card.r(DATA)
    card.r(DATA)
    assert (card.r(CRDA1) << 8) | card.r(CRDA0) == 0x4102
    assert card.r(ISR) & RDC == 0
    card.r(DATA)
    assert card.r(ISR) & RDC
    assert (card.r(CRDA1) << 8) | card.r(CRDA0) == 0x4103


def test_rdc_raises_the_irq_when_enabled() -> None:
    card = Card()
    card.init()
    card.w(IMR, RDC)
    card.dma_write(0x4000, b"xy")
    assert card.irq.level is True
    card.w(ISR, RDC)
    assert card.irq.level is False


def test_a_zero_length_remote_dma_completes_at_once() -> None:
    card = Card()
    card.init()
    card.w(ISR, 0xFF)
    card.setup_dma(0x4000, 0, REMOTE_READ)
    assert card.r(ISR) & RDC


def test_remote_writes_after_rbcr_reaches_zero_are_ignored() -> None:
    card = Card()
    card.init()
    card.setup_dma(0x4000, 2, REMOTE_WRITE)
    for byte in b"abcd":
        card.w(DATA, byte)
    assert card.nic.memory.ram[0:4] == b"ab\0\0"
    assert (card.r(CRDA1) << 8) | card.r(CRDA0) == 0x4002


def test_remote_dma_wraps_from_pstop_to_pstart() -> None:
    card = Card()
    card.init()
    card.dma_write(RING_START * 256, b"START")
    card.dma_write(RING_STOP * 256 - 3, b"end")
    assert card.dma_read(RING_STOP * 256 - 3, 8) == b"endSTART"


def test_nothing_answers_between_the_prom_and_the_buffer() -> None:
    card = Card()
    card.init()
    card.dma_write(0x1000, b"lost")
    assert card.dma_read(0x1000, 4) == b"\xff" * 4
    assert card.dma_read(0xC000, 2) == b"\xff\xff"


def test_the_buffer_is_32k_from_0x4000_as_qemus() -> None:
    card = Card()
    card.init()
    card.dma_write(0xBFFE, b"hi")
    assert card.dma_read(0xBFFE, 2) == b"hi"
    assert card.nic.memory.ram[-2:] == b"hi"


# --- transmit ----------------------------------------------------------------------------

def send(card: Card, frame: bytes) -> None:
    card.dma_write(TX_PAGE * 256, frame)
    card.w(TPSR, TX_PAGE)
    card.w(TBCR0, len(frame) & 0xFF)
    card.w(TBCR1, len(frame) >> 8)
    card.w(CR, TRANSMIT)


def test_transmit_hands_the_exact_bytes_to_the_link() -> None:
    card = Card()
    card.init()
    card.w(ISR, 0xFF)
    frame = frame_to(BROADCAST, 1514, fill=3)
    send(card, frame)
    assert card.sent == [frame]
    assert card.r(ISR) & PTX
    assert card.r(TSR) == 0x01
    assert card.r(CR) & 0x04 == 0  # TXP clears when the frame is gone


def test_transmit_complete_raises_the_irq_when_enabled() -> None:
    card = Card()
    card.init()
    card.w(IMR, PTX)
    send(card, frame_to(OTHER, 60))
    assert card.irq.level is True


def test_a_stopped_card_does_not_transmit() -> None:
    card = Card()
    card.init()
    card.dma_write(TX_PAGE * 256, frame_to(OTHER, 60))
    card.w(TBCR0, 60)
    card.w(CR, STOP_PAGE0 | 0x04)
    assert card.sent == []


def test_tcr_loopback_is_ignored_as_in_qemu() -> None:
    """QEMU's NE2000 ignores TCR's loopback modes: the frame goes out on the wire and is
    not stored in the receive ring."""
    card = Card()
    card.init()
    card.w(TCR, 0x02)  # internal loopback
    frame = frame_to(MAC, 80)
    send(card, frame)
    assert card.sent == [frame]
    assert card.next_frame() is None


# --- receive ring ---------------------------------------------------------------------------

def test_a_received_frame_is_stored_with_its_header() -> None:
    card = Card()
    card.init()
    card.w(ISR, 0xFF)
    frame = frame_to(MAC, 300)
    assert card.nic.receive(frame) is True
    header, data = card.next_frame()
    assert header == bytes((0x01, RING_START + 2, 304 & 0xFF, 304 >> 8))
    assert data == frame
    assert card.read_page(1, CURR) == RING_START + 2
    assert card.r(ISR) & PRX
    assert card.r(RSR) == 0x01


def test_short_frames_are_padded_to_60_bytes_with_zeros() -> None:
    card = Card()
    card.init()
    card.nic.receive(frame_to(MAC, 42))
    header, data = card.next_frame()
    assert header[2] | header[3] << 8 == 64
    assert data == frame_to(MAC, 42) + bytes(18)


def test_a_broadcast_frame_is_marked_phy_in_its_status() -> None:
    card = Card()
    card.init(rcr=0x04)
    card.nic.receive(frame_to(BROADCAST, 60))
    header, _ = card.next_frame()
    assert header[0] == 0x21
    assert card.r(RSR) == 0x21


def test_the_next_page_pointer_leaves_room_for_the_crc() -> None:
    """byte count = length + 4; the next frame starts after header, frame and 4 CRC
    bytes, rounded up to a page (QEMU)."""
    card = Card()
    card.init()
    card.nic.receive(frame_to(MAC, 248))  # 4 + 248 + 4 = 256: one page
    card.nic.receive(frame_to(MAC, 249))  # 257: two pages
    first, _ = card.next_frame()
    second, _ = card.next_frame()
    assert first[1] == RING_START + 1
    assert second[1] == RING_START + 3


def test_a_frame_split_across_pstop_continues_at_pstart() -> None:
    card = Card()
    card.init()
    last = RING_STOP - 1
    card.page(1)
    card.w(CURR, last)
    card.page(0)
    card.w(BNRY, last - 1)
    frame = frame_to(MAC, 600, fill=9)
    assert card.nic.receive(frame)
    assert card.read_page(1, CURR) == RING_START + 2  # 608 bytes: 3 pages, wrapped
    header, data = card.next_frame()
    assert header[1] == RING_START + 2
    assert data == frame
    ram = card.nic.memory.ram
    assert ram[(last - 0x40) * 256 + 4:(RING_STOP - 0x40) * 256] == frame[:252]
    assert ram[(RING_START - 0x40) * 256:][:348] == frame[252:]


def test_frames_follow_one_another_round_the_ring() -> None:
    card = Card()
    card.init(ring_start=0x46, ring_stop=0x4C)
    for n in range(20):
        frame = frame_to(MAC, 60 + 37 * n, fill=n)
        assert card.nic.receive(frame), n
        assert card.next_frame()[1] == frame


def ring_full_card() -> tuple[Card, list[bytes]]:
    """A ring of 27 pages (26 usable with BNRY one behind CURR) filled with 1514-byte
    frames (6 pages each) until one was refused: 2 pages stay free."""
    card = Card()
    card.init(ring_start=0x46, ring_stop=0x61)
    card.w(ISR, 0xFF)
    stored = []
    for n in range(10):
        frame = frame_to(MAC, 1514, fill=n)
        if not card.nic.receive(frame):
            break
        stored.append(frame)
    return card, stored


def test_a_full_ring_drops_the_frame_with_ovw_and_keeps_unread_frames_intact() -> None:
    card, stored = ring_full_card()
    assert len(stored) == 4  # a fifth would reach BNRY
    curr = card.read_page(1, CURR)
    assert card.r(ISR) & (OVW | RXE) == OVW | RXE
    assert card.r(RSR) & 0x10  # MPA
    assert card.r(CNTR2) == 1
    assert card.read_page(1, CURR) == curr
    assert [card.next_frame()[1] for _ in stored] == stored
    assert card.next_frame() is None


def test_a_full_ring_takes_frames_again_once_the_driver_moved_bnry() -> None:
    card, stored = ring_full_card()
    card.w(ISR, OVW)
    assert card.next_frame()[1] == stored[0]
    frame = frame_to(MAC, 1514, fill=77)
    assert card.nic.receive(frame) is True
    assert [card.next_frame()[1] for _ in range(4)] == stored[1:] + [frame]


def test_a_small_frame_still_fits_where_a_large_one_does_not() -> None:
    card, stored = ring_full_card()
    assert card.nic.receive(frame_to(MAC, 60)) is True


def test_the_ring_overflow_raises_the_irq_when_ovw_is_enabled() -> None:
    card, _ = ring_full_card()
    card.w(ISR, 0xFF)
    card.w(IMR, OVW)
    assert card.nic.receive(frame_to(MAC, 1514)) is False
    assert card.irq.level is True


def test_bnry_equal_to_curr_is_an_empty_ring() -> None:
    """Drivers that keep BNRY on the next frame to read start with BNRY = CURR."""
    card = Card()
    card.init()
    card.w(BNRY, RING_START)
    assert card.nic.can_receive() is True
    assert card.nic.receive(frame_to(MAC, 1514)) is True


def test_can_receive_says_whether_a_largest_frame_fits() -> None:
    card, _ = ring_full_card()
    assert card.nic.can_receive() is False
    card.next_frame()
    assert card.nic.can_receive() is True
    card.w(CR, STOP_PAGE0)
    assert card.nic.can_receive() is False


def test_a_stopped_card_drops_frames_and_counts_them_missed() -> None:
    card = Card()
    card.init()
    card.w(CR, STOP_PAGE0)
    assert card.nic.receive(frame_to(MAC, 100)) is False
    assert card.nic.receive(frame_to(OTHER, 100)) is False  # not ours: not missed
    card.w(CR, START_PAGE0)
    assert card.next_frame() is None
    assert card.r(CNTR2) == 1


def test_a_ring_not_set_up_stores_nothing() -> None:
    card = Card()  # power-on: started (CR = 0), PSTART = PSTOP = 0
    card.w(CR, PAGE1)
    for i, byte in enumerate(MAC):
        card.w(PAR0 + i, byte)
    assert card.nic.receive(frame_to(MAC, 100)) is False
    assert card.nic.memory.ram == bytes(len(card.nic.memory.ram))


# --- address filters -----------------------------------------------------------------------

def test_physical_match_is_against_par() -> None:
    card = Card()
    card.init(rcr=0x00)
    assert card.nic.receive(frame_to(MAC, 60)) is True
    assert card.nic.receive(frame_to(OTHER, 60)) is False
    card.page(1)
    for i, byte in enumerate(OTHER):
        card.w(PAR0 + i, byte)
    card.page(0)
    assert card.nic.receive(frame_to(OTHER, 60)) is True
    assert card.nic.receive(frame_to(MAC, 60)) is False


def test_broadcast_needs_rcr_ab() -> None:
    card = Card()
    card.init(rcr=0x00)
    assert card.nic.receive(frame_to(BROADCAST, 60)) is False
    card.w(RCR, 0x04)
    assert card.nic.receive(frame_to(BROADCAST, 60)) is True


def test_multicast_index_is_the_top_six_bits_of_the_msb_first_crc() -> None:
    for address in ("01005e000001", "01005e7ffffa", "333300000001", "0180c2000000",
                    "ffffffffffff", "cf0000000000"):
        raw = bytes.fromhex(address)
        assert multicast_index(raw) == ethernet_crc_msb_first(raw) >> 26, address


@given(st.binary(min_size=6, max_size=6))
def test_multicast_index_agrees_with_the_bitwise_crc(address: bytes) -> None:
    assert multicast_index(address) == ethernet_crc_msb_first(address) >> 26


def test_multicast_is_accepted_through_its_mar_bit_with_rcr_am() -> None:
    group = bytes.fromhex("01005e000001")  # IPv4 all-hosts
    index = ethernet_crc_msb_first(group) >> 26
    card = Card()
    card.init(rcr=0x08)
    assert card.nic.receive(frame_to(group, 60)) is False  # MAR all zero
    card.page(1)
    card.w(MAR0 + (index >> 3), 0xFF ^ (1 << (index & 7)))  # every bit but its own
    card.page(0)
    assert card.nic.receive(frame_to(group, 60)) is False
    card.page(1)
    card.w(MAR0 + (index >> 3), 1 << (index & 7))
    card.page(0)
    assert card.nic.receive(frame_to(group, 60)) is True
    card.w(RCR, 0x00)
    assert card.nic.receive(frame_to(group, 60)) is False


def test_promiscuous_accepts_every_destination() -> None:
    card = Card()
    card.init(rcr=0x10)
    for destination in (OTHER, BROADCAST, bytes.fromhex("01005e000001"), MAC):
        assert card.nic.receive(frame_to(destination, 60)) is True


# --- counters, ISR and the interrupt line ------------------------------------------------

def test_cntr2_counts_missed_frames_and_clears_when_read() -> None:
    card, _ = ring_full_card()
    card.nic.receive(frame_to(MAC, 1514))
    card.nic.receive(frame_to(MAC, 1514))
    assert card.r(CNTR2) == 3
    assert card.r(CNTR2) == 0
    assert (card.r(CNTR0), card.r(CNTR1)) == (0, 0)  # the wire never corrupts a frame


def test_counters_raise_cnt_at_128_and_stop_at_192() -> None:
    card = Card()
    card.init()
    card.w(CR, STOP_PAGE0)
    card.w(ISR, 0xFF)
    card.w(IMR, CNT)
    for _ in range(127):
        card.nic.receive(frame_to(MAC, 60))
    assert card.r(ISR) & CNT == 0
    card.nic.receive(frame_to(MAC, 60))
    assert card.r(ISR) & CNT
    assert card.irq.level is True
    for _ in range(100):
        card.nic.receive(frame_to(MAC, 60))
    assert card.r(CNTR2) == 192


def test_isr_bits_clear_only_where_one_is_written() -> None:
    card = Card()
    card.init()
    card.nic.receive(frame_to(MAC, 60))
    send(card, frame_to(OTHER, 60))
    assert card.r(ISR) & (PRX | PTX | RDC) == PRX | PTX | RDC
    card.w(ISR, PTX)
    assert card.r(ISR) & (PRX | PTX | RDC) == PRX | RDC
    card.w(ISR, 0x00)
    assert card.r(ISR) & (PRX | RDC) == PRX | RDC


def test_the_irq_line_is_high_while_isr_and_imr_share_a_bit() -> None:
    card = Card()
    card.init()
    card.nic.receive(frame_to(MAC, 60))
    assert card.irq.level is False  # IMR = 0
    card.w(IMR, PTX)
    assert card.irq.level is False
    card.w(IMR, PRX | PTX)
    assert card.irq.level is True
    card.nic.receive(frame_to(MAC, 60))
    card.w(ISR, PRX)
    assert card.irq.level is False
    card.w(IMR, 0xFF)
    card.w(CR, STOP_PAGE0)
    card.r(RESET)  # ISR = RST alone never drives the line
    assert card.r(ISR) == RST
    assert card.irq.level is False


# --- page 1 and page 2 -----------------------------------------------------------------------

def test_page_1_reads_back_par_curr_and_mar() -> None:
    card = Card()
    card.w(CR, STOP_PAGE0 | PAGE1)
    values = list(range(0x31, 0x31 + 15))
    for reg, value in zip(range(1, 16), values):
        card.w(reg, value)
    assert [card.r(reg) for reg in range(1, 16)] == values


def test_page_2_reads_back_the_page_0_setup_registers() -> None:
    card = Card()
    card.w(CR, STOP_PAGE0)
    for reg, value in ((PSTART, 0x46), (PSTOP, 0x80), (TPSR, 0x40), (RCR, 0x0C),
                       (TCR, 0x02), (DCR, 0x49), (IMR, 0x3F)):
        card.w(reg, value)
    card.w(CR, STOP_PAGE0 | PAGE2)
    assert [card.r(reg) for reg in (PSTART, PSTOP, TPSR, RCR, TCR, DCR, IMR)] == \
        [0x46, 0x80, 0x40, 0x0C, 0x02, 0x49, 0x3F]
    card.w(PSTART, 0x10)  # page 2 is read-only
    assert card.r(PSTART) == 0x46


def test_ring_pointers_beyond_the_buffer_are_refused_as_in_qemu() -> None:
    card = Card()
    card.init()
    card.w(PSTOP, 0xC1)
    card.w(BNRY, 0xC0)
    card.page(1)
    card.w(CURR, 0xC0)
    card.page(0)
    assert card.read_page(2, PSTOP) == RING_STOP
    assert card.r(BNRY) == RING_STOP - 1
    assert card.read_page(1, CURR) == RING_START
    card.w(PSTOP, 0xC0)
    assert card.read_page(2, PSTOP) == 0xC0


# --- string I/O ---------------------------------------------------------------------------

dma_setups = st.fixed_dictionaries({
    "rsar": st.integers(0, 0xFFFF) | st.sampled_from([0, 0x1E, 0x3FFE, 0x4000, 0x7FFF,
                                                       0xBFFE, 0xBFFF, 0xFFFE]),
    "rbcr": st.integers(0, 3000) | st.just(0),
    "pstart": st.integers(0x40, 0x60),
    "pstop": st.integers(0x00, 0xC0),
    "dcr": st.sampled_from([DCR_BYTES, DCR_WORDS]),
    "size": st.sampled_from([1, 2]),
    "count": st.integers(0, 1600),
    "seed": st.integers(0, 255),
})


def cards_in(setup: dict) -> tuple[Card, Card]:
    """Two cards in the same state, with the remote DMA set up as ``setup`` says."""
    card = Card()
    card.w(CR, STOP_PAGE0)
    card.w(DCR, setup["dcr"])
    card.w(PSTART, setup["pstart"])
    card.w(PSTOP, setup["pstop"])
    card.nic.memory.ram[:] = bytes((setup["seed"] + 7 * i) & 0xFF for i in range(32768))
    card.nic.core.state.rsar = setup["rsar"]
    card.nic.core.state.rbcr = setup["rbcr"]
    card.w(ISR, 0xFF)
    twin = Card()
    twin.nic.load_state(card.nic.save_state())
    return card, twin


@settings(max_examples=300, deadline=None)
@given(dma_setups)
def test_read_string_returns_what_single_reads_return(setup: dict) -> None:
    card, twin = cards_in(setup)
    size, count = setup["size"], setup["count"]
    assert card.nic.read_string(DATA, size, count) == [twin.r(DATA, size) for _ in range(count)]
    assert card.nic.save_state() == twin.nic.save_state()


@settings(max_examples=300, deadline=None)
@given(dma_setups, st.binary(min_size=0, max_size=3200))
def test_write_string_does_what_single_writes_do(setup: dict, payload: bytes) -> None:
    card, twin = cards_in(setup)
    size = setup["size"]
    payload = payload[:len(payload) - len(payload) % size]
    card.nic.write_string(DATA, size, payload)
    for i in range(0, len(payload), size):
        twin.w(DATA, int.from_bytes(payload[i:i + size], "little"), size)
    assert card.nic.save_state() == twin.nic.save_state()


def test_a_whole_frame_moves_in_one_string_read() -> None:
    card = Card()
    card.init(dcr=DCR_WORDS)
    frame = frame_to(MAC, 1514, fill=5)
    card.nic.receive(frame)
    card.setup_dma(RING_START * 256, 1518, REMOTE_READ)
    words = card.nic.read_string(DATA, 2, 759)
    data = b"".join(w.to_bytes(2, "little") for w in words)
    assert data[4:] == frame
    assert card.r(ISR) & RDC


def test_string_io_elsewhere_is_single_accesses() -> None:
    card = Card()
    card.nic.write_string(CR, 1, bytes([STOP_PAGE0 | PAGE1, 0x42]))  # CR, then CR again
    assert card.r(CR) == 0x42
    assert card.nic.read_string(0x11, 2, 3) == [0xFFFF] * 3


# --- save and load --------------------------------------------------------------------------

def test_save_and_load_round_trip_a_card_mid_conversation() -> None:
    card = Card()
    card.init(dcr=DCR_WORDS, rcr=0x0C)
    card.w(IMR, 0x3F)
    for n in range(3):
        card.nic.receive(frame_to(MAC, 100 + n * 200, fill=n))
    card.next_frame()
    card.setup_dma(0x4000, 10, REMOTE_WRITE)
    state = card.nic.save_state()
    assert_plain(state)
    json.dumps({**state, "prom": state["prom"].hex(), "ram": state["ram"].hex()})

    twin = Card()
    twin.nic.load_state(state)
    assert twin.nic.save_state() == state
    assert twin.irq.level is card.irq.level is True
    for reg in range(16):
        assert twin.read_page(2, reg) == card.read_page(2, reg)
        assert twin.read_page(1, reg) == card.read_page(1, reg)
    assert [twin.next_frame() for _ in range(3)] == [card.next_frame() for _ in range(3)]


def test_load_state_refuses_a_buffer_of_the_wrong_size() -> None:
    card = Card()
    state = card.nic.save_state()
    state["ram"] = bytes(16 * 1024)
    try:
        Card().nic.load_state(state)
    except ValueError as error:
        assert "ne2000" in str(error)
    else:
        raise AssertionError("a 16 KiB buffer was accepted")


def test_a_mac_must_have_six_bytes() -> None:
    try:
        Ne2000(Card().irq, b"\x52\x54", Card().link)
    except ValueError as error:
        assert "6 bytes" in str(error)
    else:
        raise AssertionError("a 2-byte MAC was accepted")
