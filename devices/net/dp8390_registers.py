"""The DP8390 register map, written out once (National DP8390D datasheet, section 10.0
"Internal Registers" and its register-field tables).

Offsets are 0x00-0x0F within the page that CR.PS1-PS0 selects; CR itself is at offset
0 on every page. Several offsets are one register when read and another when written.
"""

from __future__ import annotations

import enum

PAGE_SIZE = 256  # the ring and the transmit buffer are counted in 256-byte pages


class Cr:
    """Command register (offset 0 on every page)."""

    STP = 0x01  # stop: the chip goes off line
    STA = 0x02  # start
    TXP = 0x04  # transmit the frame at TPSR/TBCR; cleared when sent
    RD0 = 0x08  # remote DMA command: 1 = remote read
    RD1 = 0x10  #                     2 = remote write
    RD2 = 0x20  #                     4 = abort / complete remote DMA
    PS0 = 0x40  # page select, low bit
    PS1 = 0x80  # page select, high bit


CR_PAGE_SHIFT = 6
CR_REMOTE_READ_OR_WRITE = Cr.RD0 | Cr.RD1


class Isr:
    """Interrupt status register (page 0, offset 7): write 1 to a bit to clear it."""

    PRX = 0x01  # frame received without error
    PTX = 0x02  # frame transmitted without error
    RXE = 0x04  # receive error (CRC, frame alignment, missed frame)
    TXE = 0x08  # transmit error
    OVW = 0x10  # receive ring overwrite warning: no room for the frame
    CNT = 0x20  # the MSB of a tally counter became set
    RDC = 0x40  # remote DMA complete
    RST = 0x80  # reset state (not cleared by writing 1; cleared by a start)


ISR_INTERRUPTS = 0x7F  # RST never drives the interrupt line
ISR_WRITE_CLEARABLE = 0x7F


class Rcr:
    """Receive configuration register (page 0, offset 0x0C, write)."""

    SEP = 0x01  # save frames with errors
    AR = 0x02  # accept runt frames
    AB = 0x04  # accept broadcast
    AM = 0x08  # accept multicast frames that hit the MAR hash
    PRO = 0x10  # promiscuous physical: accept every destination
    MON = 0x20  # monitor mode (check, count, do not store)


class Tcr:
    """Transmit configuration register (page 0, offset 0x0D, write)."""

    CRC = 0x01  # inhibit CRC
    LB0 = 0x02  # loopback mode, low bit
    LB1 = 0x04  # loopback mode, high bit
    ATD = 0x08  # auto transmit disable
    OFST = 0x10  # collision offset enable


class Dcr:
    """Data configuration register (page 0, offset 0x0E, write)."""

    WTS = 0x01  # word transfer select: remote DMA moves 16-bit words
    BOS = 0x02  # byte order select
    LAS = 0x04  # long address select
    LS = 0x08  # loopback select (0 = loopback, 1 = normal)
    AR = 0x10  # auto-initialise remote (send packet command)
    FT0 = 0x20  # FIFO threshold, low bit
    FT1 = 0x40  # FIFO threshold, high bit


class Rsr:
    """Receive status register (page 0, offset 0x0C, read) and byte 0 of each ring
    header."""

    PRX = 0x01  # received intact
    CRC = 0x02  # CRC error
    FAE = 0x04  # frame alignment error
    FO = 0x08  # FIFO overrun
    MPA = 0x10  # missed frame (no buffer, or monitor mode)
    PHY = 0x20  # destination was multicast or broadcast (0: physical)
    DIS = 0x40  # receiver disabled (monitor mode)
    DFR = 0x80  # deferring


class Tsr:
    """Transmit status register (page 0, offset 4, read)."""

    PTX = 0x01  # transmitted without error
    COL = 0x04  # collided at least once
    ABT = 0x08  # aborted after 16 collisions
    CRS = 0x10  # carrier sense lost
    FU = 0x20  # FIFO underrun
    CDH = 0x40  # CD heartbeat failed
    OWC = 0x80  # out-of-window collision


class Page0Read(enum.IntEnum):
    CR = 0x00
    CLDA0 = 0x01  # current local DMA address
    CLDA1 = 0x02
    BNRY = 0x03  # boundary pointer
    TSR = 0x04
    NCR = 0x05  # number of collisions
    FIFO = 0x06
    ISR = 0x07
    CRDA0 = 0x08  # current remote DMA address
    CRDA1 = 0x09
    ID0 = 0x0A  # reserved on the DP8390; QEMU answers with an RTL8029 ID byte
    ID1 = 0x0B
    RSR = 0x0C
    CNTR0 = 0x0D  # frame alignment errors
    CNTR1 = 0x0E  # CRC errors
    CNTR2 = 0x0F  # missed frames


class Page0Write(enum.IntEnum):
    CR = 0x00
    PSTART = 0x01  # first page of the receive ring
    PSTOP = 0x02  # page after the last one of the receive ring
    BNRY = 0x03
    TPSR = 0x04  # transmit page start
    TBCR0 = 0x05  # transmit byte count
    TBCR1 = 0x06
    ISR = 0x07
    RSAR0 = 0x08  # remote start address
    RSAR1 = 0x09
    RBCR0 = 0x0A  # remote byte count
    RBCR1 = 0x0B
    RCR = 0x0C
    TCR = 0x0D
    DCR = 0x0E
    IMR = 0x0F


class Page1(enum.IntEnum):
    """Page 1 reads and writes alike."""

    CR = 0x00
    PAR0 = 0x01  # physical address, PAR0-PAR5 at 0x01-0x06
    CURR = 0x07  # current page: where the next frame goes
    MAR0 = 0x08  # multicast hash filter, MAR0-MAR7 at 0x08-0x0F


class Page2Read(enum.IntEnum):
    """Page 2: read back what page 0 only lets you write (diagnostics)."""

    CR = 0x00
    PSTART = 0x01
    PSTOP = 0x02
    RNPP = 0x03  # remote next packet pointer
    TPSR = 0x04
    LNPP = 0x05  # local next packet pointer
    ACU = 0x06  # address counter, upper
    ACL = 0x07  # address counter, lower
    RCR = 0x0C
    TCR = 0x0D
    DCR = 0x0E
    IMR = 0x0F


# What QEMU answers where the DP8390 has nothing (it models an RTL8029 core): page 0
# offsets 0x0A/0x0B read the ID bytes 'P' 'C'; page 3 reads CONFIG2 and CONFIG3 = 0x40.
QEMU_ID_BYTES = (0x50, 0x43)
QEMU_PAGE3_READS = {0x05: 0x40, 0x06: 0x40}

# The tally counters stop at 192 (DP8390D, "Network Tally Counters").
COUNTER_MAX = 0xC0
COUNTER_MSB = 0x80
