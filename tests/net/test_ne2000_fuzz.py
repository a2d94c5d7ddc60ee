"""Random register traffic and random frames against the NE2000: the card never raises,
its IRQ line always equals ISR & IMR, its state always survives save/load, and a frame
it accepted into the ring is read back intact however the guest pokes it meanwhile."""

from __future__ import annotations

from hypothesis import event, given, settings, strategies as st

from tests.net import (
    BNRY, CR, CURR, DATA, MAC, PSTART, PSTOP, RESET, Card, frame_to,
)

BROADCAST = b"\xff" * 6
DESTINATIONS = [MAC, BROADCAST, bytes.fromhex("01005e000001"), bytes.fromhex("525400abcdef")]

frames = st.builds(
    frame_to,
    st.sampled_from(DESTINATIONS),
    st.integers(0, 1514) | st.sampled_from([0, 1, 59, 60, 61, 248, 249, 1514, 1600]),
    st.integers(0, 255),
)

port_ops = st.one_of(
    st.tuples(st.just("read"), st.integers(0, 0x1F), st.sampled_from([1, 2, 4])),
    st.tuples(st.just("write"), st.integers(0, 0x1F), st.sampled_from([1, 2, 4]),
              st.integers(0, 0xFFFFFFFF)),
    st.tuples(st.just("frame"), frames),
    st.tuples(st.just("read_string"), st.sampled_from([DATA, 0x00, 0x07]),
              st.sampled_from([1, 2]), st.integers(0, 700)),
    st.tuples(st.just("write_string"), st.sampled_from([DATA, 0x07]), st.sampled_from([1, 2]),
              st.binary(max_size=1400)),
)


def check_irq(card: Card) -> None:
    state = card.nic.core.state
    assert card.irq.level == bool(state.isr & state.imr & 0x7F)


@settings(max_examples=200, deadline=None)
@given(st.booleans(), st.lists(port_ops, max_size=80))
def test_random_port_traffic_and_frames_keep_the_card_consistent(set_up: bool, ops) -> None:
    card = Card()
    if set_up:
        card.init()
    for op in ops:
        kind = op[0]
        if kind == "read":
            value = card.r(op[1], op[2])
            assert 0 <= value < 1 << (8 * op[2])
        elif kind == "write":
            card.w(op[1], op[3] & ((1 << (8 * op[2])) - 1), op[2])
        elif kind == "frame":
            assert card.nic.receive(op[1]) in (True, False)
        elif kind == "read_string":
            values = card.nic.read_string(op[1], op[2], op[3])
            assert len(values) == op[3]
            assert all(0 <= v < 1 << (8 * op[2]) for v in values)
        else:
            size = op[2]
            card.nic.write_string(op[1], size, op[3][:len(op[3]) - len(op[3]) % size])
        check_irq(card)
    state = card.nic.save_state()
    twin = Card()
    twin.nic.load_state(state)
    assert twin.nic.save_state() == state
    assert twin.irq.level == card.irq.level


# Registers a guest may poke without moving the ring: everything but PSTART, PSTOP and
# BNRY on page 0 and CURR on page 1 (moving those is the driver telling the card where
# unread frames are, so it may legitimately lose them).
RING_POINTERS = {(0, PSTART), (0, PSTOP), (0, BNRY), (1, CURR)}

guest_ops = st.one_of(
    st.tuples(st.just("frame"), frames),
    st.tuples(st.just("frame"), frames),
    st.tuples(st.just("frame"), frames),
    st.tuples(st.just("poke"), st.integers(0, 3), st.integers(0, 15), st.integers(0, 255)),
    st.tuples(st.just("peek"), st.integers(0, 3), st.integers(0, 0x1F),
              st.sampled_from([1, 2, 4])),
    st.tuples(st.just("consume")),
)


@settings(max_examples=200, deadline=None)
@given(st.integers(0x40, 0x90), st.integers(7, 40), st.lists(guest_ops, min_size=5, max_size=120))
def test_frames_accepted_into_the_ring_are_never_corrupted(ring_start: int, ring_pages: int,
                                                           ops) -> None:
    card = Card()
    card.init(ring_start=ring_start, ring_stop=ring_start + ring_pages, rcr=0x14)
    unread: list[bytes] = []
    for op in ops:
        kind = op[0]
        if kind == "frame":
            if card.nic.receive(op[1]):
                unread.append(op[1] + bytes(max(0, 60 - len(op[1]))))
                event("frame stored")
            elif card.nic.core.state.isr & 0x10:
                event("ring overflow (OVW) seen")
        elif kind == "poke":
            _, page, reg, value = op
            if (page, reg) in RING_POINTERS:
                continue
            if reg == 0:
                card.w(CR, value)
            else:
                card.w(CR, (card.r(CR) & 0x3F) | (page << 6))
                card.w(reg, value)
        elif kind == "peek":
            _, page, reg, size = op
            card.w(CR, (card.r(CR) & 0x3F) | (page << 6))
            card.r(reg, size)
        else:
            card.w(CR, card.r(CR) & 0x3F)
            got = card.next_frame()
            if unread:
                assert got is not None and got[1] == unread.pop(0)
            else:
                assert got is None
        check_irq(card)
    card.w(CR, card.r(CR) & 0x3F)
    for expected in unread:
        got = card.next_frame()
        assert got is not None and got[1] == expected
    assert card.next_frame() is None


def test_reset_port_reads_in_the_fuzz_leave_the_ring_alone() -> None:
    """A reset pulse touches ISR and the PROM only: frames already stored stay."""
    card = Card()
    card.init()
    frame = frame_to(MAC, 500, fill=1)
    assert card.nic.receive(frame)
    card.r(RESET)
    assert card.next_frame()[1] == frame
