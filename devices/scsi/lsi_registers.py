"""Register offsets and bit fields of the LSI53C895A, as its technical manual (chapter 5,
"Operating Registers") and QEMU's hw/scsi/lsi53c895a.c name them.

One constant per register and one commented constant per bit a driver relies on; at the
end, the register file as plain data (:class:`LsiRegisters`, the reset values) and the
tables of plain-storage, read-only and reserved offsets. The register file is byte-wide: multi-byte registers (DSA, TEMP, DBC, DNAD, DSP, DSPS,
SCRATCHx, ADDER) are little-endian runs of byte registers, so a 32-bit access at DSP is
four byte writes, DSP0 first.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

# -- register offsets (manual chapter 5; the same map through BAR0 I/O and BAR1 memory) --
SCNTL0 = 0x00  # SCSI control 0: arbitration mode, start sequence, target mode
SCNTL1 = 0x01  # SCSI control 1: assert RST, connected, immediate arbitration
SCNTL2 = 0x02  # SCSI control 2: wide residue status, disconnect unexpected
SCNTL3 = 0x03  # SCSI control 3: clock dividers, enable wide SCSI
SCID = 0x04  # SCSI chip ID and (re)selection response enables
SXFER = 0x05  # SCSI transfer: synchronous period and offset
SDID = 0x06  # SCSI destination ID (loaded by SELECT)
GPREG = 0x07  # general purpose pins
SFBR = 0x08  # SCSI first byte received; the SCRIPTS accumulator
SOCL = 0x09  # SCSI output control latch
SSID = 0x0A  # SCSI selector ID (valid after being (re)selected)
SBCL = 0x0B  # SCSI bus control lines (REQ ACK BSY SEL ATN MSG C/D I/O)
DSTAT = 0x0C  # DMA status: read clears it
SSTAT0 = 0x0D  # SCSI status 0
SSTAT1 = 0x0E  # SCSI status 1: latched phase in bits 2:0
SSTAT2 = 0x0F  # SCSI status 2: last disconnect
DSA = 0x10  # 4 bytes: data structure address (base of table-indirect operands)
ISTAT = 0x14  # interrupt status: DIP SIP INTF CON SEM SIGP SRST ABRT
ISTAT1 = 0x15  # (QEMU, from the 53C1010) SCRIPTS running
MBOX0 = 0x16  # (QEMU) mailbox 0
MBOX1 = 0x17  # (QEMU) mailbox 1
CTEST0 = 0x18  # chip test 0: general purpose
CTEST1 = 0x19  # chip test 1: DMA FIFO byte lanes empty/full
CTEST2 = 0x1A  # chip test 2: SIGP copy (read clears ISTAT.SIGP), CM/CIO
CTEST3 = 0x1B  # chip test 3: revision (7:4), flush/clear DMA FIFO
TEMP = 0x1C  # 4 bytes: return address of CALL
DFIFO = 0x20  # DMA FIFO byte count (low 8 bits)
CTEST4 = 0x21  # chip test 4
CTEST5 = 0x22  # chip test 5: DMA FIFO byte count bits 9:8
CTEST6 = 0x23  # chip test 6: DMA FIFO data
DBC = 0x24  # 3 bytes: DMA byte counter
DCMD = 0x27  # DMA command: the first byte of the current instruction
DNAD = 0x28  # 4 bytes: DMA next address
DSP = 0x2C  # 4 bytes: DMA SCRIPTS pointer; writing its last byte starts SCRIPTS
DSPS = 0x30  # 4 bytes: SCRIPTS pointer save (second dword of the instruction)
SCRATCHA = 0x34  # 4 bytes: general purpose scratch A
DMODE = 0x38  # DMA mode: burst length, I/O-space source/destination, manual start
DIEN = 0x39  # DMA interrupt enable (same bits as DSTAT)
SBR = 0x3A  # scratch byte register
DCNTL = 0x3B  # DMA control: single step, start DMA, IRQ mode/disable, 700 compat
ADDER = 0x3C  # 4 bytes: output of the SCRIPTS address adder (read only)
SIEN0 = 0x40  # SCSI interrupt enable 0 (same bits as SIST0)
SIEN1 = 0x41  # SCSI interrupt enable 1 (same bits as SIST1)
SIST0 = 0x42  # SCSI interrupt status 0: read clears it
SIST1 = 0x43  # SCSI interrupt status 1: read clears it
SLPAR = 0x44  # SCSI longitudinal parity
SWIDE = 0x45  # SCSI wide residue data
MACNTL = 0x46  # memory access control
GPCNTL = 0x47  # general purpose pin control
STIME0 = 0x48  # SCSI timer 0: handshake-to-handshake (7:4), selection timeout (3:0)
STIME1 = 0x49  # SCSI timer 1: general purpose timer period (3:0)
RESPID0 = 0x4A  # response ID 0 (IDs 0-7)
RESPID1 = 0x4B  # response ID 1 (IDs 8-15)
STEST0 = 0x4C  # SCSI test 0 (read only)
STEST1 = 0x4D  # SCSI test 1: clock quadrupler
STEST2 = 0x4E  # SCSI test 2
STEST3 = 0x4F  # SCSI test 3: TolerANT, clear SCSI FIFO
SIDL = 0x50  # 2 bytes: SCSI input data latch
STEST4 = 0x52  # SCSI test 4: bus mode (7:6), clock quadrupler lock (5)
SODL = 0x54  # 2 bytes: SCSI output data latch
CCNTL0 = 0x56  # (QEMU) chip control 0: phase mismatch jump
CCNTL1 = 0x57  # (QEMU) chip control 1: 64-bit / 40-bit addressing
SBDL = 0x58  # 2 bytes: SCSI bus data lines
SCRATCHB = 0x5C  # 4 bytes: general purpose scratch B
SCRATCHC = 0x60  # SCRATCHC..SCRATCHJ at 0x60..0x7C (manual); QEMU goes on to R at 0x9C
SCRATCH_END = 0xA0  # end of the scratch block (SCRATCHR ends at 0x9F)
# QEMU's 64-bit addressing registers (53C1010 family), storage only here.
MMRS = 0xA0  # memory move read selector
MMWS = 0xA4  # memory move write selector
SFS = 0xA8  # SCRIPTS fetch selector
DRS = 0xAC  # DSA relative selector
SBMS = 0xB0  # static block move selector
DBMS = 0xB4  # dynamic block move selector
DNAD64 = 0xB8  # DMA next address, bits 63:32
PMJAD1 = 0xC0  # phase mismatch jump address 1
PMJAD2 = 0xC4  # phase mismatch jump address 2
RBC = 0xC8  # remaining byte count
UA = 0xCC  # updated address
IA = 0xD4  # instruction address (of the last block move)
SBC = 0xD8  # SCSI byte count
CSBC = 0xDC  # cumulative SCSI byte count

REGISTER_FILE_SIZE = 0x100  # the I/O BAR; the 1 KiB memory BAR mirrors it every 256 bytes


class Scntl0:
    TRG = 0x01  # target mode
    AAP = 0x02  # assert ATN on parity error
    EPC = 0x08  # enable parity checking
    WATN = 0x10  # select with ATN on a start sequence
    START = 0x20  # start sequence (low-level mode)
    ARB0 = 0x40  # arbitration mode bit 0 (reset: full arbitration, 11)
    ARB1 = 0x80  # arbitration mode bit 1


class Scntl1:
    SST = 0x01  # start SCSI transfer (low-level mode)
    IARB = 0x02  # immediate arbitration
    AESP = 0x04  # assert even SCSI parity
    RST = 0x08  # assert SCSI RST: resets every device on the bus
    CON = 0x10  # connected to a SCSI device
    DHP = 0x20  # disable halt on parity error or ATN
    ADB = 0x40  # assert SCSI data bus
    EXC = 0x80  # extra clock cycle of data setup


class Scntl2:
    WSR = 0x01  # wide SCSI receive (write 1 to clear)
    VUE0 = 0x02  # vendor unique enhancements 0
    VUE1 = 0x04  # vendor unique enhancements 1
    WSS = 0x08  # wide SCSI send (write 1 to clear)
    SLPHBEN = 0x10  # SLPAR high byte enable
    SLPMD = 0x20  # SLPAR mode
    CHM = 0x40  # chained mode
    SDU = 0x80  # SCSI disconnect unexpected


class Scntl3:
    CCF_MASK = 0x07  # clock conversion factor (async)
    EWS = 0x08  # enable wide SCSI: target IDs 8-15 become reachable
    SCF_MASK = 0x70  # synchronous clock conversion factor
    ULTRA = 0x80  # Ultra SCSI enable


class Scid:
    ID_MASK = 0x0F  # the chip's own SCSI ID (QEMU resets it to 7)
    SRE = 0x20  # enable response to selection
    RRE = 0x40  # enable response to reselection


class Socl:
    IO = 0x01  # assert I/O
    CD = 0x02  # assert C/D
    MSG = 0x04  # assert MSG
    ATN = 0x08  # assert ATN
    SEL = 0x10  # assert SEL
    BSY = 0x20  # assert BSY
    ACK = 0x40  # assert ACK
    REQ = 0x80  # assert REQ


class Sbcl:
    IO = 0x01  # I/O line: with C/D and MSG, the phase
    CD = 0x02  # C/D line
    MSG = 0x04  # MSG line
    ATN = 0x08  # ATN line
    SEL = 0x10  # SEL line
    BSY = 0x20  # BSY line: a target is connected
    ACK = 0x40  # ACK line
    REQ = 0x80  # REQ line: the target asks for a transfer


PHASE_MASK = 0x07  # SBCL/SSTAT1 bits 2:0 and the block move's phase field


class Dstat:
    IID = 0x01  # illegal instruction detected
    SIR = 0x04  # SCRIPTS interrupt instruction received (INT)
    SSI = 0x08  # single-step interrupt
    ABRT = 0x10  # aborted (ISTAT.ABRT)
    BF = 0x20  # bus fault: DMA to or from an address nobody decodes
    MDPE = 0x40  # master data parity error
    DFE = 0x80  # DMA FIFO empty (status, not an interrupt)


DSTAT_INTERRUPTS = 0x7D  # the DSTAT bits that are interrupt sources (DIEN masks them)


class Sstat0:
    SDP0 = 0x01  # SCSI SDP0 parity line
    RST = 0x02  # SCSI RST line
    WOA = 0x04  # won arbitration
    LOA = 0x08  # lost arbitration
    AIP = 0x10  # arbitration in progress
    OLF = 0x20  # SODL full
    ORF = 0x40  # SODR full
    ILF = 0x80  # SIDL full


class Sstat2:
    SDP1 = 0x01  # SCSI SDP1 line
    LDSC = 0x02  # last disconnect: set while not connected (as QEMU reports it)


class Istat:
    DIP = 0x01  # DMA interrupt pending (DSTAT non-zero)
    SIP = 0x02  # SCSI interrupt pending (SIST0/SIST1 non-zero)
    INTF = 0x04  # interrupt on the fly (write 1 to clear)
    CON = 0x08  # connected (QEMU never reports it; neither do we)
    SEM = 0x10  # semaphore, for the driver's use
    SIGP = 0x20  # signal process: ends WAIT RESELECT; CTEST2 read clears it
    SRST = 0x40  # software reset
    ABRT = 0x80  # abort the SCRIPTS program


class Istat1:
    SI = 0x01  # SYNC_IRQD
    SRUN = 0x02  # SCRIPTS running
    FLSH = 0x04  # flushing


class Ctest2:
    DACK = 0x01  # data acknowledge status
    DREQ = 0x02  # data request status
    TEOP = 0x04  # SCSI true end of process
    PCICIE = 0x08  # PCI configuration info enable
    CM = 0x10  # configured as memory
    CIO = 0x20  # configured as I/O
    SIGP = 0x40  # copy of ISTAT.SIGP (reading CTEST2 clears ISTAT.SIGP)
    DDIR = 0x80  # data transfer direction


class Ctest3:
    WRIE = 0x01  # write and invalidate enable
    FM = 0x02  # fetch pin mode
    CLF = 0x04  # clear DMA FIFO (self-clearing)
    FLF = 0x08  # flush DMA FIFO
    REVISION_MASK = 0xF0  # chip revision (read only; 0 as in QEMU)


class Ctest5:
    BO_MASK = 0x03  # DMA FIFO byte offset counter bits 9:8 (DBC bits 9:8 here)
    BL2 = 0x04  # burst length bit 2
    DDIR = 0x08  # DMA direction
    MASR = 0x10  # master control for set or reset pulses
    DFS = 0x20  # DMA FIFO size (816 bytes)
    BBCK = 0x40  # clock byte counter
    ADCK = 0x80  # clock address incrementor


class Dmode:
    MAN = 0x01  # manual start: DSP writes do not start SCRIPTS, DCNTL.STD does
    BOF = 0x02  # burst opcode fetch
    ERMP = 0x04  # enable read multiple
    ERL = 0x08  # enable read line
    DIOM = 0x10  # destination is I/O space
    SIOM = 0x20  # source is I/O space
    BL_MASK = 0xC0  # burst length


class Dcntl:
    COM = 0x01  # 53C700 compatibility off
    IRQD = 0x02  # IRQ disable: the INTA pin stays deasserted
    STD = 0x04  # start DMA operation (manual start, single step)
    IRQM = 0x08  # IRQ mode: totem pole
    SSM = 0x10  # single-step mode
    PFEN = 0x20  # prefetch enable
    PFF = 0x40  # prefetch flush
    CLSE = 0x80  # cache line size enable


class Sist0:
    PAR = 0x01  # parity error (fatal)
    RST = 0x02  # SCSI RST received (fatal)
    UDC = 0x04  # unexpected disconnect (fatal)
    SGE = 0x08  # SCSI gross error (fatal)
    RSL = 0x10  # reselected (non-fatal)
    SEL = 0x20  # selected (non-fatal)
    CMP = 0x40  # function complete (non-fatal)
    MA = 0x80  # phase mismatch (initiator) / ATN (target) (fatal)


SIST0_NONFATAL = Sist0.CMP | Sist0.SEL | Sist0.RSL  # halt SCRIPTS only when enabled


class Sist1:
    HTH = 0x01  # handshake-to-handshake timer expired (non-fatal)
    GEN = 0x02  # general purpose timer expired (non-fatal)
    STO = 0x04  # selection or reselection timeout (fatal)
    SBMC = 0x10  # SCSI bus mode change (fatal)


SIST1_NONFATAL = Sist1.GEN | Sist1.HTH


class Stime1:
    GEN_MASK = 0x0F  # general purpose timer period: 0 off, n gives 125 us << (n - 1)
    GENSF = 0x20  # GEN timer scale factor: periods times 16
    HTHSF = 0x40  # HTH timer scale factor
    HTHBA = 0x80  # HTH timer during bus activity


class Stest3:
    SOI = 0x01  # SCSI FIFO test
    CSF = 0x02  # clear SCSI FIFO (self-clearing)
    STW = 0x04  # SCSI FIFO test write
    S16 = 0x08  # 16-bit system
    DSI = 0x10  # disable single initiator response
    TTM = 0x20  # timer test mode
    HSC = 0x40  # halt SCSI clock
    TE = 0x80  # TolerANT enable


class Ccntl0:
    DILS = 0x01  # disable internal load and store
    DISFC = 0x10  # disable auto FIFO clear
    ENNDJ = 0x20  # enable jump on non data phase mismatches
    PMJCTL = 0x40  # jump control: PMJAD1 for outbound, PMJAD2 for inbound
    ENPMJ = 0x80  # enable phase mismatch jump instead of an MA interrupt


class Ccntl1:
    EN64DBMV = 0x01  # 64-bit direct block moves: a third instruction dword
    EN64TIBMV = 0x02  # 64-bit table indirect block moves
    TIMOD64 = 0x04  # 64-bit table indirect indexing mode
    DDAC = 0x08  # disable dual address cycle
    ZMOD = 0x80  # high impedance mode


CCNTL1_40BIT = Ccntl1.EN64TIBMV | Ccntl1.TIMOD64


# -- SCRIPTS instruction fields (manual chapter 6) ----------------------------------------
class InsnType(enum.IntEnum):
    """Bits 31:30 of the first dword."""

    BLOCK_MOVE = 0
    IO = 1  # SELECT / WAIT DISCONNECT / WAIT RESELECT / SET / CLEAR / register moves
    TRANSFER_CONTROL = 2  # JUMP / CALL / RETURN / INT
    MEMORY = 3  # memory move, LOAD / STORE


# Block move (type 0)
BM_INDIRECT = 1 << 29  # the address field points at the data address
BM_TABLE_INDIRECT = 1 << 28  # the address field is a DSA offset of {count, address}
BM_MOVE = 1 << 27  # MOVE (1) or CHMOV (0), initiator mode
BM_COUNT_MASK = 0x00FFFFFF


class IoOpcode(enum.IntEnum):
    """Bits 29:27 of an I/O instruction."""

    SELECT = 0
    WAIT_DISCONNECT = 1
    WAIT_RESELECT = 2
    SET = 3
    CLEAR = 4
    MOVE_SFBR_TO_REGISTER = 5  # register = SFBR <op> data8 (QEMU: MOVE gives data8)
    MOVE_REGISTER_TO_SFBR = 6  # SFBR = register <op> data8
    READ_MODIFY_WRITE = 7  # register = register <op> data8 (or SFBR with bit 23)


IO_RELATIVE = 1 << 26  # the alternate (jump) address is relative to DSP
IO_TABLE_INDIRECT = 1 << 25  # SELECT: the ID (and SCNTL3, SXFER) come from DSA + offset
IO_SELECT_ATN = 1 << 24  # SELECT with ATN
IO_SET_CARRY = 1 << 10  # SET/CLEAR CARRY
IO_SET_TARGET = 1 << 9  # SET/CLEAR TARGET (target mode: not modelled)
IO_SET_ACK = 1 << 6  # SET/CLEAR ACK
IO_SET_ATN = 1 << 3  # SET/CLEAR ATN
RW_USE_SFBR = 1 << 23  # read-modify-write: the operand is SFBR instead of data8


class AluOperator(enum.IntEnum):
    """Bits 26:24 of a register instruction."""

    MOVE = 0
    SHL = 1  # shift left through carry
    OR = 2
    XOR = 3
    AND = 4
    SHR = 5  # shift right through carry
    ADD = 6
    ADC = 7  # add with carry


class TcOpcode(enum.IntEnum):
    """Bits 29:27 of a transfer control instruction (4-7 are illegal)."""

    JUMP = 0
    CALL = 1
    RETURN = 2
    INT = 3


TC_RELATIVE = 1 << 23  # the target address is relative to DSP (the next instruction)
TC_RESERVED = 1 << 22  # must be zero: set gives an illegal instruction
TC_CARRY_TEST = 1 << 21  # the condition is the carry bit
TC_INTFLY = 1 << 20  # INT: interrupt on the fly (ISTAT.INTF), SCRIPTS continue
TC_IF_TRUE = 1 << 19  # jump if the comparison is true (else if false)
TC_COMPARE_DATA = 1 << 18  # compare SFBR with data (bits 7:0) under mask (bits 15:8)
TC_COMPARE_PHASE = 1 << 17  # compare the SCSI phase with bits 26:24
TC_WAIT_VALID_PHASE = 1 << 16  # WHEN (wait for REQ) rather than IF

# Memory move / load-store (type 3)
MEM_LOAD_STORE = 1 << 29  # LOAD/STORE (1) or memory-to-memory move (0)
MM_RESERVED = 0x1E << 24  # memory move: bits 28:25 reserved
LS_DSA_RELATIVE = 1 << 28  # LOAD/STORE address is DSA + offset
LS_RESERVED = 0x0C << 24  # LOAD/STORE: bits 27:26 reserved
LS_NO_FLUSH = 1 << 25  # STORE: no flush
LS_LOAD = 1 << 24  # LOAD (1) or STORE (0)


class Phase(enum.IntEnum):
    """SCSI information transfer phases: MSG, C/D, I/O."""

    DATA_OUT = 0
    DATA_IN = 1
    COMMAND = 2
    STATUS = 3
    RESERVED_OUT = 4
    RESERVED_IN = 5
    MSG_OUT = 6
    MSG_IN = 7


# -- reset values (QEMU's lsi_soft_reset, which follows the manual's register pages) -----
RESET_SCNTL0 = 0xC0  # full arbitration
RESET_SCID = 0x07  # QEMU: the controller's ID is 7
RESET_DCMD = 0x40
RESET_CTEST0 = 0xFF  # reads 0xFF in QEMU; general purpose here, reset to the same value
RESET_CTEST2 = Ctest2.DACK
RESET_RESPID0 = 0x80  # as QEMU
RESET_GPCNTL = 0x0F  # GPIO pins as inputs
GPREG_VALUE = 0x7F  # the GPIO pins as QEMU reports them
MACNTL_VALUE = 0x0F  # as QEMU reports it
STEST4_VALUE = 0xE0  # LVD bus mode, clock quadrupler locked (Linux polls the lock bit)
STEST0_VALUE = 0x02  # SOZ: synchronous offset zero (transfers are asynchronous)
CTEST1_VALUE = 0xF0  # FMT: every DMA FIFO byte lane empty


# -- the register file as plain data ---------------------------------------------------------
@dataclass
class LsiRegisters:
    """Every register the guest can read or write, as plain integers."""

    scntl0: int = RESET_SCNTL0
    scntl1: int = 0  # CON is not stored: it reads as "the bus is connected"
    scntl2: int = 0
    scntl3: int = 0
    scid: int = RESET_SCID
    sxfer: int = 0
    sdid: int = 0
    sfbr: int = 0
    socl: int = 0
    ssid: int = 0
    ack: bool = False  # the ACK line, held by SET ACK / CLEAR ACK
    dstat: int = 0
    sstat0: int = 0
    dsa: int = 0
    istat: int = 0
    mbox0: int = 0
    mbox1: int = 0
    ctest0: int = RESET_CTEST0
    ctest2: int = RESET_CTEST2
    ctest3: int = 0
    temp: int = 0
    dfifo: int = 0
    ctest4: int = 0
    ctest5: int = 0
    dbc: int = 0
    dcmd: int = RESET_DCMD
    dnad: int = 0
    dsp: int = 0
    dsps: int = 0
    dmode: int = 0
    dien: int = 0
    sbr: int = 0
    dcntl: int = 0
    adder: int = 0
    sien0: int = 0
    sien1: int = 0
    sist0: int = 0
    sist1: int = 0
    slpar: int = 0
    swide: int = 0
    gpcntl: int = RESET_GPCNTL
    stime0: int = 0
    stime1: int = 0
    respid0: int = RESET_RESPID0
    respid1: int = 0
    stest1: int = 0
    stest2: int = 0
    stest3: int = 0
    sidl: int = 0
    sodl: int = 0
    ccntl0: int = 0
    ccntl1: int = 0
    scratch: list[int] = field(default_factory=lambda: [0] * 18)  # A, B, C..R
    mmrs: int = 0
    mmws: int = 0
    sfs: int = 0
    drs: int = 0
    sbms: int = 0
    dbms: int = 0
    dnad64: int = 0
    pmjad1: int = 0
    pmjad2: int = 0
    rbc: int = 0
    ua: int = 0
    ia: int = 0
    sbc: int = 0
    csbc: int = 0
    carry: int = 0  # the ALU carry (not visible as a register)


def _spans(*entries: tuple[str, int, int]) -> dict[int, tuple[str, int]]:
    table: dict[int, tuple[str, int]] = {}
    for name, offset, width in entries:
        for index in range(width):
            table[offset + index] = (name, index)
    return table


# Plain storage: read back what was written, byte by byte, little-endian.
STORAGE = _spans(
    ("scntl0", SCNTL0, 1), ("scntl3", SCNTL3, 1), ("scid", SCID, 1),
    ("sxfer", SXFER, 1), ("sfbr", SFBR, 1), ("socl", SOCL, 1), ("ssid", SSID, 1),
    ("dsa", DSA, 4), ("mbox0", MBOX0, 1), ("mbox1", MBOX1, 1), ("ctest0", CTEST0, 1),
    ("temp", TEMP, 4), ("dfifo", DFIFO, 1), ("ctest4", CTEST4, 1),
    ("ctest5", CTEST5, 1), ("dbc", DBC, 3), ("dcmd", DCMD, 1), ("dnad", DNAD, 4),
    ("dsp", DSP, 4), ("dsps", DSPS, 4), ("dmode", DMODE, 1), ("sbr", SBR, 1),
    ("slpar", SLPAR, 1), ("swide", SWIDE, 1), ("gpcntl", GPCNTL, 1),
    ("stime0", STIME0, 1), ("stime1", STIME1, 1), ("respid0", RESPID0, 1),
    ("respid1", RESPID1, 1), ("stest1", STEST1, 1), ("stest2", STEST2, 1),
    ("stest3", STEST3, 1), ("sidl", SIDL, 1), ("sodl", SODL, 2),
    ("ccntl0", CCNTL0, 1), ("ccntl1", CCNTL1, 1), ("sdid", SDID, 1),
    ("scntl2", SCNTL2, 1), ("ctest3", CTEST3, 1), ("dien", DIEN, 1),
    ("dcntl", DCNTL, 1), ("sien0", SIEN0, 1), ("sien1", SIEN1, 1),
    ("adder", ADDER, 4),
    ("mmrs", MMRS, 4), ("mmws", MMWS, 4), ("sfs", SFS, 4), ("drs", DRS, 4),
    ("sbms", SBMS, 4), ("dbms", DBMS, 4), ("dnad64", DNAD64, 4),
    ("pmjad1", PMJAD1, 4), ("pmjad2", PMJAD2, 4), ("rbc", RBC, 4), ("ua", UA, 4),
    ("ia", IA, 4), ("sbc", SBC, 4), ("csbc", CSBC, 4),
)

# Read-only registers (writes ignored, as the chip and QEMU do).
READ_ONLY = {
    GPREG, SBCL, DSTAT, SSTAT0, SSTAT1, SSTAT2, ISTAT1, CTEST1, CTEST6,
    ADDER, ADDER + 1, ADDER + 2, ADDER + 3, SIST0, SIST1, MACNTL, STEST0,
    SIDL, SIDL + 1, STEST4, STEST4 + 1, SBDL, SBDL + 1, SSID,
}
# Offsets the manual leaves reserved: reads give 0xFF (as QEMU's "invalid read").
RESERVED = set(range(0x5A, 0x5C)) | set(range(0xBC, 0xC0)) | set(range(0xD0, 0xD4)) | set(range(0xE0, 0x100))
