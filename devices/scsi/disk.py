"""A SCSI direct-access block device (a disk) for one LUN, over any block backend.

The command set is a subset of SBC-3 (T10/1799-D) and SPC-4 (T10/1731-D); each
handler names the standard it follows. The backend is anything with ``block_size``, ``num_blocks``,
``read(lba, count) -> bytes``, ``write(lba, data)``, ``flush()`` and
``discard(lba, count)`` (a storage VirtualDisk, or an in-memory stand-in in tests);
discarded blocks must read back as zeros (the disk reports LBPRZ). An optional
``readonly`` attribute, when true, makes the disk write-protected.

A command goes through two steps: :meth:`ScsiDisk.request` decodes the CDB (cdb.py) and
answers everything that moves no medium data at once; the returned
:class:`DiskRequest` then reads the medium in :meth:`DiskRequest.data_in` or writes it
in :meth:`DiskRequest.data_out`. The controller thus knows direction and length first.

Choices where the standards leave room, made as QEMU's scsi-hd makes them so a guest
sees the same on both (DESIGN.md): INQUIRY byte 7 reports SYNC and CMDQUE; the unit
attention after power-on and after a bus reset is 29h/00h; a medium error ends the
command before any data moves (``data_in`` returns nothing and ``transfer_length``
drops to 0, as a target that goes to STATUS phase at once). The unit never stops: START
STOP UNIT is accepted (stopping flushes the cache) and the disk stays ready. Sense is
kept per logical unit until the next command, as without autosense (SAM-5). Unlike
QEMU, LBA OUT OF RANGE sense carries the first LBA past the medium in INFORMATION
(VALID set, byte 0 = F0h), and MISCOMPARE the offset of the first differing byte.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from devices.scsi.cdb import READS, WRITES, Cdb, Op, decode
from devices.scsi.sense import (
    DATA_PHASE_ERROR,
    INVALID_FIELD_IN_CDB,
    INVALID_FIELD_IN_PARAMETER_LIST,
    LBA_OUT_OF_RANGE,
    LOGICAL_UNIT_NOT_SUPPORTED,
    MISCOMPARE_DURING_VERIFY,
    NO_SENSE_DATA,
    PARAMETER_LIST_LENGTH_ERROR,
    POWER_ON_RESET_OR_BUS_DEVICE_RESET,
    SAVING_PARAMETERS_NOT_SUPPORTED,
    UNRECOVERED_READ_ERROR,
    WRITE_ERROR,
    WRITE_PROTECTED,
    Asc,
    CheckCondition,
    SenseKey,
    fixed_sense,
    illegal_request,
)
from devices.scsi.target import DataDirection, ScsiStatus
from storage.errors import StorageError


class BlockBackend(Protocol):
    """What the disk needs of the storage below it."""

    block_size: int
    num_blocks: int

    def read(self, lba: int, count: int) -> bytes: ...

    def write(self, lba: int, data: bytes) -> None: ...

    def flush(self) -> None: ...

    def discard(self, lba: int, count: int) -> None: ...


# -- identity and limits --------------------------------------------------------------

PERIPHERAL_DISK = 0x00  # peripheral qualifier 000b, device type 00h (SBC)
PERIPHERAL_NO_LUN = 0x7F  # qualifier 011b, type 1Fh: no logical unit here (SPC-4)
SPC4_VERSION = 0x06
INQUIRY_HISUP_RDF2 = 0x12  # byte 3: HISUP, RESPONSE DATA FORMAT 2
INQUIRY_SYNC_CMDQUE = 0x12  # byte 7: SYNC (parallel bus), CMDQUE
STANDARD_INQUIRY_LENGTH = 36

VPD_SUPPORTED_PAGES = 0x00
VPD_UNIT_SERIAL_NUMBER = 0x80
VPD_DEVICE_IDENTIFICATION = 0x83
VPD_BLOCK_LIMITS = 0xB0
VPD_LOGICAL_BLOCK_PROVISIONING = 0xB2
VPD_PAGES = (VPD_SUPPORTED_PAGES, VPD_UNIT_SERIAL_NUMBER, VPD_DEVICE_IDENTIFICATION,
             VPD_BLOCK_LIMITS, VPD_LOGICAL_BLOCK_PROVISIONING)

MAX_TRANSFER_BYTES = 32 * 1024 * 1024  # one command moves at most this much
OPTIMAL_TRANSFER_BYTES = 1024 * 1024
MAX_UNMAP_BYTES = 1024 * 1024 * 1024  # per UNMAP command
MAX_UNMAP_DESCRIPTORS = 256
VERIFY_CHUNK_BYTES = 4 * 1024 * 1024
MAX_SERIAL_LENGTH = 64

# -- mode pages (SPC-4; caching page SBC-3, control page SPC-4) ------

MODE_PAGE_CACHING = 0x08
MODE_PAGE_CONTROL = 0x0A
MODE_PAGE_ALL = 0x3F
MODE_SUBPAGE_ALL = 0xFF
CACHING_PAGE_LENGTH = 0x12
CONTROL_PAGE_LENGTH = 0x0A
CACHING_WCE = 0x04  # byte 2: write cache enable
PC_CURRENT, PC_CHANGEABLE, PC_DEFAULT, PC_SAVED = 0, 1, 2, 3
DEVSPEC_WP = 0x80  # device-specific parameter (SBC-3): write protected
DEVSPEC_DPOFUA = 0x10  # DPO and FUA bits are supported
MODE_HEADER_6 = 4
MODE_HEADER_10 = 8
SHORT_BLOCK_DESCRIPTOR = 8
LONG_BLOCK_DESCRIPTOR = 16

UNMAP_HEADER = 8
UNMAP_DESCRIPTOR = 16
PRINTABLE = range(0x20, 0x7F)


def _ascii_field(name: str, value: str, width: int) -> bytes:
    """An INQUIRY ASCII field: printable ASCII, left-aligned, space-padded (SPC-4)."""
    raw = value.encode("utf-8")
    if len(raw) > width or any(b not in PRINTABLE for b in raw):
        raise ValueError(f"{name} must be at most {width} printable ASCII characters: {value!r}")
    return raw.ljust(width, b" ")


def _naa_bytes(wwn: int | None, seed: bytes) -> bytes:
    """The NAA designator value: ``wwn`` as given, else a locally assigned NAA 3h name."""
    if wwn is None:
        digest = int.from_bytes(hashlib.sha256(seed).digest()[:8], "big")
        return ((0x3 << 60) | (digest & ((1 << 60) - 1))).to_bytes(8, "big")
    if 0 < wwn < 1 << 64 and wwn >> 60 in (0x2, 0x3, 0x5):
        return wwn.to_bytes(8, "big")
    if 0 < wwn < 1 << 128 and wwn >> 124 == 0x6:
        return wwn.to_bytes(16, "big")
    raise ValueError(f"wwn {wwn:#x} is not an NAA 2h/3h/5h (64-bit) or 6h (128-bit) name")


@dataclass
class DiskState:
    """What the guest can change and a suspend must keep."""

    pending_sense: bytes = b""  # sense of the last CHECK CONDITION, until the next command
    unit_attention: Asc | None = POWER_ON_RESET_OR_BUS_DEVICE_RESET
    write_cache: bool = True  # caching mode page WCE


class DiskRequest:
    """One command on a :class:`ScsiDisk` (implements devices.scsi.target.ScsiRequest)."""

    def __init__(self, disk: "ScsiDisk", cdb: bytes) -> None:
        self.cdb = cdb
        self.direction = DataDirection.NONE
        self.transfer_length = 0
        self._disk = disk
        self._status = ScsiStatus.GOOD
        self._sense = b""
        self._data = b""  # prepared data-in, or the result once data_in ran
        self._produce: Callable[[], bytes] | None = None  # reads the medium on data_in
        self._consume: Callable[[bytes], None] | None = None  # executes on data_out
        self._moved = False

    def __repr__(self) -> str:
        return (f"DiskRequest(cdb={self.cdb.hex()}, {self.direction.value}, "
                f"{self.transfer_length} bytes, {self._status.name})")

    # -- set up by the disk ------------------------------------------------------------

    def _reply(self, data: bytes, allocation_length: int) -> "DiskRequest":
        """Data-in prepared at once, truncated to the allocation length (SPC-4)."""
        return self._expect_in(len(data[:allocation_length]), data=data[:allocation_length])

    def _expect_in(self, length: int, *, data: bytes = b"",
                   produce: Callable[[], bytes] | None = None) -> "DiskRequest":
        if length:
            self.direction = DataDirection.FROM_DEVICE
            self.transfer_length = length
            self._data = data
            self._produce = produce
        return self

    def _expect_out(self, length: int, consume: Callable[[bytes], None]) -> "DiskRequest":
        if length:
            self.direction = DataDirection.TO_DEVICE
            self.transfer_length = length
            self._consume = consume
        return self

    def _fail(self, error: CheckCondition) -> "DiskRequest":
        self._status = ScsiStatus.CHECK_CONDITION
        self._sense = error.sense()
        self._disk._state.pending_sense = self._sense
        return self

    def _abandon(self, error: CheckCondition) -> None:
        """A failure during the data phase: nothing (more) moves, status follows."""
        self.direction = DataDirection.NONE
        self.transfer_length = 0
        self._data = b""
        self._fail(error)

    # -- the ScsiRequest interface -------------------------------------------------------

    def data_in(self) -> bytes:
        """The DATA IN bytes: exactly ``transfer_length`` (lowered to 0 on a medium error)."""
        if self.direction is not DataDirection.FROM_DEVICE or self._moved:
            return self._data if self._moved else b""
        self._moved = True
        if self._produce is not None:
            try:
                self._data = self._produce()
            except CheckCondition as error:
                self._abandon(error)
        return self._data

    def data_out(self, data: bytes) -> None:
        """Take the DATA OUT bytes (exactly ``transfer_length``) and execute the command."""
        if self.direction is not DataDirection.TO_DEVICE or self._moved:
            return
        self._moved = True
        assert self._consume is not None
        try:
            if len(data) != self.transfer_length:
                raise CheckCondition(SenseKey.ABORTED_COMMAND, DATA_PHASE_ERROR)
            self._consume(bytes(data))
        except CheckCondition as error:
            self._fail(error)

    @property
    def status(self) -> ScsiStatus:
        return self._status

    @property
    def sense(self) -> bytes:
        return self._sense


class ScsiDisk:
    """A SCSI disk at one target ID: LUN 0 is the disk, other LUNs are absent."""

    def __init__(self, backend: BlockBackend, *, vendor: str = "VMM",
                 product: str = "VIRTUAL DISK", revision: str = "0001", serial: str,
                 wwn: int | None = None) -> None:
        self.backend = backend
        self.vendor = _ascii_field("vendor", vendor, 8)
        self.product = _ascii_field("product", product, 16)
        self.revision = _ascii_field("revision", revision, 4)
        raw_serial = _ascii_field("serial", serial, MAX_SERIAL_LENGTH).rstrip(b" ")
        if not raw_serial:
            raise ValueError("serial must not be empty")
        self.serial = raw_serial
        self.naa = _naa_bytes(wwn, self.vendor + self.product + self.serial)
        self._state = DiskState()
        self._handlers: dict[Op, Callable[[DiskRequest, Cdb], DiskRequest]] = {
            Op.TEST_UNIT_READY: self._test_unit_ready,
            Op.REQUEST_SENSE: self._request_sense,
            Op.INQUIRY: self._inquiry,
            Op.MODE_SELECT_6: self._mode_select,
            Op.MODE_SELECT_10: self._mode_select,
            Op.MODE_SENSE_6: self._mode_sense,
            Op.MODE_SENSE_10: self._mode_sense,
            Op.START_STOP_UNIT: self._start_stop_unit,
            Op.READ_CAPACITY_10: self._read_capacity_10,
            Op.SERVICE_ACTION_IN_16: self._read_capacity_16,
            Op.VERIFY_10: self._verify,
            Op.SYNCHRONIZE_CACHE_10: self._synchronize_cache,
            Op.SYNCHRONIZE_CACHE_16: self._synchronize_cache,
            Op.UNMAP: self._unmap,
            Op.REPORT_LUNS: self._report_luns,
            **{op: self._read for op in READS},
            **{op: self._write for op in WRITES},
        }

    # -- the ScsiTarget interface --------------------------------------------------------

    def luns(self) -> list[int]:
        return [0]

    def request(self, lun: int, cdb: bytes) -> DiskRequest:
        """Decode ``cdb`` for ``lun`` and do everything that moves no medium data."""
        cdb = bytes(cdb)
        req = DiskRequest(self, cdb)
        if lun not in self.luns():
            return self._absent_lun(req, cdb)
        op = cdb[0] if cdb else None
        if op != Op.REQUEST_SENSE:
            self._state.pending_sense = b""
        try:
            ua = self._state.unit_attention
            if ua is not None and op not in (Op.INQUIRY, Op.REPORT_LUNS, Op.REQUEST_SENSE):
                self._state.unit_attention = None  # reported once (SAM-5)
                raise CheckCondition(SenseKey.UNIT_ATTENTION, ua)
            command = decode(cdb)
            return self._handlers[command.op](req, command)
        except CheckCondition as error:
            return req._fail(error)

    def bus_reset(self) -> None:
        """SCSI bus reset: a unit attention is pending, pending sense is gone."""
        self._state.pending_sense = b""
        self._state.unit_attention = POWER_ON_RESET_OR_BUS_DEVICE_RESET

    # -- Stateful --------------------------------------------------------------------------

    def save_state(self) -> dict[str, Any]:
        """Plain data (JSON-compatible): pending sense, unit attention, write cache."""
        ua = self._state.unit_attention
        return {
            "pending_sense": self._state.pending_sense.hex(),
            "unit_attention": None if ua is None else [ua.asc, ua.ascq],
            "write_cache": self._state.write_cache,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`save_state` saved; ValueError names what is wrong."""
        try:
            sense = bytes.fromhex(state["pending_sense"])
            ua = state["unit_attention"]
            ua = None if ua is None else Asc(int(ua[0]) & 0xFF, int(ua[1]) & 0xFF)
            write_cache = state["write_cache"]
        except (KeyError, TypeError, ValueError, IndexError) as error:
            raise ValueError(f"SCSI disk state is damaged: {error!r}") from None
        if not isinstance(write_cache, bool) or len(sense) not in (0, 18):
            raise ValueError("SCSI disk state is damaged: bad write_cache or pending_sense")
        self._state = DiskState(sense, ua, write_cache)

    # -- helpers -----------------------------------------------------------------------------

    @property
    def write_protected(self) -> bool:
        return bool(getattr(self.backend, "readonly", False))

    def _check_range(self, lba: int, count: int) -> None:
        """LOGICAL BLOCK ADDRESS OUT OF RANGE, INFORMATION = first LBA past the medium."""
        n = self.backend.num_blocks
        if lba >= n or lba + count > n:
            raise illegal_request(LBA_OUT_OF_RANGE, max(lba, n))

    def _check_transfer(self, count: int) -> None:
        """SBC-3: a transfer longer than the block limits page allows is refused."""
        if count > self._max_transfer_blocks():
            raise illegal_request(INVALID_FIELD_IN_CDB)

    def _max_transfer_blocks(self) -> int:
        return max(1, MAX_TRANSFER_BYTES // self.backend.block_size)

    def _backend(self, code: Asc, call: Callable[..., Any], *args: Any) -> Any:
        """Call the backend; its failure is the guest's MEDIUM ERROR, never a traceback."""
        try:
            return call(*args)
        except (StorageError, OSError):
            raise CheckCondition(SenseKey.MEDIUM_ERROR, code) from None

    def _absent_lun(self, req: DiskRequest, cdb: bytes) -> DiskRequest:
        """SPC-4 'incorrect logical unit': INQUIRY answers with peripheral qualifier 011b,
        REQUEST SENSE with LOGICAL UNIT NOT SUPPORTED, REPORT LUNS as usual; anything
        else ends in CHECK CONDITION. An absent LUN keeps no state."""
        op = cdb[0] if cdb else None
        try:
            if op not in (Op.INQUIRY, Op.REQUEST_SENSE, Op.REPORT_LUNS):
                raise illegal_request(LOGICAL_UNIT_NOT_SUPPORTED)
            command = decode(cdb)
            if command.op is Op.INQUIRY:
                if not command.evpd:
                    data = bytes([PERIPHERAL_NO_LUN]) + self._standard_inquiry()[1:]
                elif command.page == VPD_SUPPORTED_PAGES:
                    data = bytes([PERIPHERAL_NO_LUN, VPD_SUPPORTED_PAGES, 0, 1,
                                  VPD_SUPPORTED_PAGES])
                else:
                    raise illegal_request(INVALID_FIELD_IN_CDB)
                return req._reply(data, command.length)
            if command.op is Op.REQUEST_SENSE:
                sense = fixed_sense(SenseKey.ILLEGAL_REQUEST, LOGICAL_UNIT_NOT_SUPPORTED)
                return req._reply(sense, command.length)
            return self._report_luns(req, command)
        except CheckCondition as error:
            req._status = ScsiStatus.CHECK_CONDITION
            req._sense = error.sense()
            return req

    # -- SPC-4 commands ------------------------------------------------------------------

    def _test_unit_ready(self, req: DiskRequest, c: Cdb) -> DiskRequest:
        """SPC-4: the unit is always ready."""
        return req

    def _request_sense(self, req: DiskRequest, c: Cdb) -> DiskRequest:
        """SPC-4: the pending sense, else a pending unit attention, else NO SENSE."""
        if c.desc:  # descriptor-format sense data is not supported
            raise illegal_request(INVALID_FIELD_IN_CDB)
        sense = self._state.pending_sense
        if not sense and self._state.unit_attention is not None:
            sense = fixed_sense(SenseKey.UNIT_ATTENTION, self._state.unit_attention)
            self._state.unit_attention = None
        self._state.pending_sense = b""
        return req._reply(sense or NO_SENSE_DATA, c.length)

    def _standard_inquiry(self) -> bytes:
        """SPC-4, the first 36 bytes."""
        head = bytes([PERIPHERAL_DISK, 0x00, SPC4_VERSION, INQUIRY_HISUP_RDF2,
                      STANDARD_INQUIRY_LENGTH - 5, 0x00, 0x00, INQUIRY_SYNC_CMDQUE])
        return head + self.vendor + self.product + self.revision

    def _inquiry(self, req: DiskRequest, c: Cdb) -> DiskRequest:
        if not c.evpd:
            return req._reply(self._standard_inquiry(), c.length)
        pages = {
            VPD_SUPPORTED_PAGES: lambda: bytes(VPD_PAGES),
            VPD_UNIT_SERIAL_NUMBER: lambda: self.serial,
            VPD_DEVICE_IDENTIFICATION: self._device_identification,
            VPD_BLOCK_LIMITS: self._block_limits,
            VPD_LOGICAL_BLOCK_PROVISIONING: self._logical_block_provisioning,
        }
        if c.page not in pages:
            raise illegal_request(INVALID_FIELD_IN_CDB)
        body = pages[c.page]()
        page = bytes([PERIPHERAL_DISK, c.page]) + len(body).to_bytes(2, "big") + body
        return req._reply(page, c.length)

    def _device_identification(self) -> bytes:
        """SPC-4: a T10 vendor ID designator and an NAA designator, both of the LU."""
        t10 = self.vendor + self.product + self.serial
        return (bytes([0x02, 0x01, 0x00, len(t10)]) + t10  # ASCII, T10 vendor ID based
                + bytes([0x01, 0x03, 0x00, len(self.naa)]) + self.naa)  # binary, NAA

    def _block_limits(self) -> bytes:
        """SBC-3 (page length 3Ch)."""
        bs = self.backend.block_size
        body = bytearray(0x3C)
        body[2:4] = (1).to_bytes(2, "big")  # OPTIMAL TRANSFER LENGTH GRANULARITY
        body[4:8] = self._max_transfer_blocks().to_bytes(4, "big")
        body[8:12] = max(1, OPTIMAL_TRANSFER_BYTES // bs).to_bytes(4, "big")
        body[16:20] = max(1, MAX_UNMAP_BYTES // bs).to_bytes(4, "big")
        body[20:24] = MAX_UNMAP_DESCRIPTORS.to_bytes(4, "big")
        body[24:28] = (1).to_bytes(4, "big")  # OPTIMAL UNMAP GRANULARITY: one block
        return bytes(body)  # UGAVALID 0, MAXIMUM WRITE SAME LENGTH 0

    def _logical_block_provisioning(self) -> bytes:
        """SBC-3: UNMAP supported (LBPU), unmapped blocks read zero, thin."""
        return bytes([0x00, 0x80 | 0x04, 0x02, 0x00])

    def _report_luns(self, req: DiskRequest, c: Cdb) -> DiskRequest:
        """SPC-4: SELECT REPORT 0 and 2 list LUN 0, 1 (well-known LUs) lists none."""
        if c.select_report not in (0x00, 0x01, 0x02):
            raise illegal_request(INVALID_FIELD_IN_CDB)
        luns = [] if c.select_report == 0x01 else self.luns()
        body = b"".join(bytes([0, lun, 0, 0, 0, 0, 0, 0]) for lun in luns)  # peripheral
        return req._reply(len(body).to_bytes(4, "big") + bytes(4) + body, c.length)

    # -- mode parameters --------------------------------------------------------------------

    def _mode_page(self, code: int, pc: int) -> bytes:
        """One page's values for page control ``pc`` (current, changeable or default)."""
        if code == MODE_PAGE_CACHING:
            page = bytearray(2 + CACHING_PAGE_LENGTH)
            if pc == PC_CHANGEABLE:
                page[2] = CACHING_WCE
            elif pc == PC_DEFAULT or self._state.write_cache:
                page[2] = CACHING_WCE
        else:
            page = bytearray(2 + CONTROL_PAGE_LENGTH)  # nothing changeable, all zero
        page[0] = code
        page[1] = len(page) - 2
        return bytes(page)

    def _mode_sense(self, req: DiskRequest, c: Cdb) -> DiskRequest:
        """SPC-4: header, block descriptor unless DBD, the pages asked for."""
        if c.pc == PC_SAVED:
            raise illegal_request(SAVING_PARAMETERS_NOT_SUPPORTED)
        if c.page == MODE_PAGE_ALL and c.subpage in (0x00, MODE_SUBPAGE_ALL):
            codes = [MODE_PAGE_CACHING, MODE_PAGE_CONTROL]
        elif c.page in (MODE_PAGE_CACHING, MODE_PAGE_CONTROL) and c.subpage == 0:
            codes = [c.page]
        else:
            raise illegal_request(INVALID_FIELD_IN_CDB)
        pages = b"".join(self._mode_page(code, c.pc) for code in codes)
        six = c.op is Op.MODE_SENSE_6
        descriptor = b"" if c.dbd else self._block_descriptor(c.llbaa, c.pc)
        devspec = DEVSPEC_DPOFUA | (DEVSPEC_WP if self.write_protected else 0)
        if six:
            total = MODE_HEADER_6 + len(descriptor) + len(pages)
            header = bytes([total - 1, 0x00, devspec, len(descriptor)])
        else:
            total = MODE_HEADER_10 + len(descriptor) + len(pages)
            longlba = 0x01 if len(descriptor) == LONG_BLOCK_DESCRIPTOR else 0x00
            header = ((total - 2).to_bytes(2, "big") + bytes([0x00, devspec, longlba, 0x00])
                      + len(descriptor).to_bytes(2, "big"))
        return req._reply(header + descriptor + pages, c.length)

    def _block_descriptor(self, long: bool, pc: int) -> bytes:
        """SBC-3: capacity and block length (a zero mask: nothing is changeable)."""
        if pc == PC_CHANGEABLE:
            return bytes(LONG_BLOCK_DESCRIPTOR if long else SHORT_BLOCK_DESCRIPTOR)
        n, bs = self.backend.num_blocks, self.backend.block_size
        if long:
            return n.to_bytes(8, "big") + bytes(4) + bs.to_bytes(4, "big")
        return min(n, 0xFFFFFFFF).to_bytes(4, "big") + b"\0" + bs.to_bytes(3, "big")

    def _mode_select(self, req: DiskRequest, c: Cdb) -> DiskRequest:
        """SPC-4: the same pages; only WCE can change, nothing is saved."""
        if c.sp or (c.length and not c.pf):  # no saved pages; page format only
            raise illegal_request(INVALID_FIELD_IN_CDB)
        six = c.op is Op.MODE_SELECT_6
        return req._expect_out(c.length, lambda data: self._apply_mode_parameters(data, six))

    def _apply_mode_parameters(self, data: bytes, six: bool) -> None:
        """Validate the whole parameter list, then apply it (all or nothing)."""
        header = MODE_HEADER_6 if six else MODE_HEADER_10
        if len(data) < header:
            raise illegal_request(PARAMETER_LIST_LENGTH_ERROR)
        if six:
            bd_length, long = data[3], False
        else:
            bd_length, long = int.from_bytes(data[6:8], "big"), bool(data[4] & 0x01)
        if bd_length not in (0, LONG_BLOCK_DESCRIPTOR if long else SHORT_BLOCK_DESCRIPTOR):
            raise illegal_request(INVALID_FIELD_IN_PARAMETER_LIST)
        if header + bd_length > len(data):
            raise illegal_request(PARAMETER_LIST_LENGTH_ERROR)
        if bd_length:
            self._check_block_descriptor(data[header:header + bd_length], long)
        pos = header + bd_length
        wce = self._state.write_cache
        while pos < len(data):
            if pos + 2 > len(data):
                raise illegal_request(PARAMETER_LIST_LENGTH_ERROR)
            code, spf, length = data[pos] & 0x3F, data[pos] & 0x40, data[pos + 1]
            if pos + 2 + length > len(data):
                raise illegal_request(PARAMETER_LIST_LENGTH_ERROR)
            if spf or code not in (MODE_PAGE_CACHING, MODE_PAGE_CONTROL):
                raise illegal_request(INVALID_FIELD_IN_PARAMETER_LIST)
            current = self._mode_page(code, PC_CURRENT)
            mask = self._mode_page(code, PC_CHANGEABLE)
            page = data[pos:pos + 2 + length]
            if len(page) != len(current):
                raise illegal_request(INVALID_FIELD_IN_PARAMETER_LIST)
            for i in range(2, len(page)):  # bytes 0-1 checked above (PS bit ignored)
                if (page[i] ^ current[i]) & ~mask[i] & 0xFF:
                    raise illegal_request(INVALID_FIELD_IN_PARAMETER_LIST)
            if code == MODE_PAGE_CACHING:
                wce = bool(page[2] & CACHING_WCE)
            pos += 2 + length
        if self._state.write_cache and not wce:  # write-through from now: drain the cache
            self._backend(WRITE_ERROR, self.backend.flush)
        self._state.write_cache = wce

    def _check_block_descriptor(self, descriptor: bytes, long: bool) -> None:
        """Only the current block length, and the current (or zero) number of blocks."""
        if long:
            count, density, bs = (int.from_bytes(descriptor[0:8], "big"), 0,
                                  int.from_bytes(descriptor[12:16], "big"))
        else:
            count, density, bs = (int.from_bytes(descriptor[0:4], "big"), descriptor[4],
                                  int.from_bytes(descriptor[5:8], "big"))
        n = self.backend.num_blocks
        current = n if long else min(n, 0xFFFFFFFF)
        if density or bs != self.backend.block_size or count not in (0, current):
            raise illegal_request(INVALID_FIELD_IN_PARAMETER_LIST)

    # -- SBC-3 commands ------------------------------------------------------------------

    def _read_capacity_10(self, req: DiskRequest, c: Cdb) -> DiskRequest:
        """SBC-3: last LBA (FFFFFFFFh when it does not fit) and block length."""
        last = max(self.backend.num_blocks - 1, 0)
        data = min(last, 0xFFFFFFFF).to_bytes(4, "big") + self.backend.block_size.to_bytes(4, "big")
        return req._reply(data, len(data))

    def _read_capacity_16(self, req: DiskRequest, c: Cdb) -> DiskRequest:
        """SBC-3: 32 bytes; LBPME (UNMAP supported) and LBPRZ (unmapped reads zero)."""
        data = bytearray(32)
        data[0:8] = max(self.backend.num_blocks - 1, 0).to_bytes(8, "big")
        data[8:12] = self.backend.block_size.to_bytes(4, "big")
        data[14] = 0x80 | 0x40
        return req._reply(bytes(data), c.length)

    def _read(self, req: DiskRequest, c: Cdb) -> DiskRequest:
        """SBC-3: the blocks are read when the controller asks for them."""
        self._check_range(c.lba, c.blocks)
        self._check_transfer(c.blocks)
        length = c.blocks * self.backend.block_size

        def produce() -> bytes:
            data = self._backend(UNRECOVERED_READ_ERROR, self.backend.read, c.lba, c.blocks)
            if len(data) != length:
                raise CheckCondition(SenseKey.MEDIUM_ERROR, UNRECOVERED_READ_ERROR)
            return bytes(data)

        return req._expect_in(length, produce=produce)

    def _write(self, req: DiskRequest, c: Cdb) -> DiskRequest:
        """SBC-3: FUA, or a disabled write cache, makes the write durable."""
        self._check_range(c.lba, c.blocks)
        self._check_transfer(c.blocks)
        if self.write_protected:
            raise CheckCondition(SenseKey.DATA_PROTECT, WRITE_PROTECTED)

        def consume(data: bytes) -> None:
            self._backend(WRITE_ERROR, self.backend.write, c.lba, data)
            if c.fua or not self._state.write_cache:
                self._backend(WRITE_ERROR, self.backend.flush)

        return req._expect_out(c.blocks * self.backend.block_size, consume)

    def _verify(self, req: DiskRequest, c: Cdb) -> DiskRequest:
        """SBC-3: read the blocks back; with BYTCHK, compare them with the data out."""
        self._check_range(c.lba, c.blocks)
        bs = self.backend.block_size
        if c.bytchk == 0:
            self._verify_medium(c.lba, c.blocks)
            return req
        self._check_transfer(c.blocks)
        if c.bytchk == 1:
            return req._expect_out(c.blocks * bs, lambda data: self._compare(c.lba, data))
        one_block = bs if c.blocks else 0  # BYTCHK 11b: one block compared with each
        return req._expect_out(one_block, lambda data: self._compare(c.lba, data * c.blocks))

    def _verify_medium(self, lba: int, count: int) -> None:
        step = max(1, VERIFY_CHUNK_BYTES // self.backend.block_size)
        for start in range(lba, lba + count, step):
            self._backend(UNRECOVERED_READ_ERROR, self.backend.read, start,
                          min(step, lba + count - start))

    def _compare(self, lba: int, expected: bytes) -> None:
        """MISCOMPARE with INFORMATION = offset of the first differing byte (SBC-3)."""
        actual = self._backend(UNRECOVERED_READ_ERROR, self.backend.read, lba,
                               len(expected) // self.backend.block_size)
        if actual != expected:
            offset = next((i for i, (a, b) in enumerate(zip(actual, expected)) if a != b),
                          min(len(actual), len(expected)))
            raise CheckCondition(SenseKey.MISCOMPARE, MISCOMPARE_DURING_VERIFY, offset)

    def _synchronize_cache(self, req: DiskRequest, c: Cdb) -> DiskRequest:
        """SBC-3: the range is checked, then the whole cache is flushed."""
        self._check_range(c.lba, c.blocks)
        self._backend(WRITE_ERROR, self.backend.flush)
        return req

    def _start_stop_unit(self, req: DiskRequest, c: Cdb) -> DiskRequest:
        """SBC-3: accepted; a stop flushes the cache unless NO_FLUSH, the unit stays
        ready. LOEJ asks to eject a medium this disk does not have removable."""
        if c.power_condition == 0 and c.loej:
            raise illegal_request(INVALID_FIELD_IN_CDB)
        if c.power_condition == 0 and not c.start and not c.no_flush:
            self._backend(WRITE_ERROR, self.backend.flush)
        return req

    def _unmap(self, req: DiskRequest, c: Cdb) -> DiskRequest:
        """SBC-3: block descriptors -> backend.discard, all checked before any."""
        if c.length and c.length < UNMAP_HEADER:
            raise illegal_request(PARAMETER_LIST_LENGTH_ERROR)
        if self.write_protected and c.length:
            raise CheckCondition(SenseKey.DATA_PROTECT, WRITE_PROTECTED)
        return req._expect_out(c.length, self._apply_unmap)

    def _apply_unmap(self, data: bytes) -> None:
        data_length = int.from_bytes(data[0:2], "big")
        bd_length = int.from_bytes(data[2:4], "big")
        if data_length > len(data) - 2 or bd_length > len(data) - UNMAP_HEADER:
            raise illegal_request(PARAMETER_LIST_LENGTH_ERROR)
        count = bd_length // UNMAP_DESCRIPTOR  # a trailing partial descriptor is ignored
        if count > MAX_UNMAP_DESCRIPTORS:
            raise illegal_request(INVALID_FIELD_IN_PARAMETER_LIST)
        max_blocks = max(1, MAX_UNMAP_BYTES // self.backend.block_size)
        extents = []
        for i in range(count):
            at = UNMAP_HEADER + i * UNMAP_DESCRIPTOR
            lba = int.from_bytes(data[at:at + 8], "big")
            blocks = int.from_bytes(data[at + 8:at + 12], "big")
            if blocks > max_blocks:
                raise illegal_request(INVALID_FIELD_IN_PARAMETER_LIST)
            if blocks:
                self._check_range(lba, blocks)
                extents.append((lba, blocks))
        for lba, blocks in extents:
            self._backend(WRITE_ERROR, self.backend.discard, lba, blocks)
