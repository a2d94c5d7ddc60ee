"""The SCSI disk, command by command, as SBC-3 and SPC-4 specify it."""

from __future__ import annotations

import json
import struct

import pytest

from devices.base import Stateful
from devices.scsi.disk import ScsiDisk
from devices.scsi.sense import parse_fixed_sense
from devices.scsi.target import DataDirection, ScsiRequest, ScsiStatus, ScsiTarget
from tests.scsi import MemoryBackend, ready_disk, run

GOOD = ScsiStatus.GOOD
CHECK = ScsiStatus.CHECK_CONDITION

NO_SENSE = (0x0, 0x00, 0x00)
UA_RESET = (0x6, 0x29, 0x00)
INVALID_OPCODE = (0x5, 0x20, 0x00)
INVALID_FIELD = (0x5, 0x24, 0x00)
INVALID_PARAM = (0x5, 0x26, 0x00)
PARAM_LENGTH = (0x5, 0x1A, 0x00)
LBA_RANGE = (0x5, 0x21, 0x00)
LUN_NOT_SUPPORTED = (0x5, 0x25, 0x00)
SAVING_NOT_SUPPORTED = (0x5, 0x39, 0x00)
READ_ERROR = (0x3, 0x11, 0x00)
WRITE_ERROR = (0x3, 0x0C, 0x00)
MISCOMPARE = (0xE, 0x1D, 0x00)
WRITE_PROTECTED = (0x7, 0x27, 0x00)


# -- CDB builders ---------------------------------------------------------------------

def tur() -> bytes:
    return bytes(6)


def request_sense(alloc: int = 18, desc: bool = False) -> bytes:
    return bytes([0x03, int(desc), 0, 0, alloc, 0])


def inquiry(alloc: int = 255, evpd: bool = False, page: int = 0) -> bytes:
    return bytes([0x12, int(evpd), page]) + struct.pack(">H", alloc) + b"\0"


def read6(lba: int, blocks: int) -> bytes:
    return bytes([0x08, (lba >> 16) & 0x1F, (lba >> 8) & 0xFF, lba & 0xFF, blocks & 0xFF, 0])


def write6(lba: int, blocks: int) -> bytes:
    return bytes([0x0A]) + read6(lba, blocks)[1:]


def read10(lba: int, blocks: int, flags: int = 0) -> bytes:
    return struct.pack(">BBIBHB", 0x28, flags, lba, 0, blocks, 0)


def write10(lba: int, blocks: int, flags: int = 0) -> bytes:
    return struct.pack(">BBIBHB", 0x2A, flags, lba, 0, blocks, 0)


def read12(lba: int, blocks: int) -> bytes:
    return struct.pack(">BBIIBB", 0xA8, 0, lba, blocks, 0, 0)


def write12(lba: int, blocks: int) -> bytes:
    return struct.pack(">BBIIBB", 0xAA, 0, lba, blocks, 0, 0)


def read16(lba: int, blocks: int) -> bytes:
    return struct.pack(">BBQIBB", 0x88, 0, lba, blocks, 0, 0)


def write16(lba: int, blocks: int, flags: int = 0) -> bytes:
    return struct.pack(">BBQIBB", 0x8A, flags, lba, blocks, 0, 0)


def verify10(lba: int, blocks: int, bytchk: int = 0) -> bytes:
    return struct.pack(">BBIBHB", 0x2F, bytchk << 1, lba, 0, blocks, 0)


def sync10(lba: int = 0, blocks: int = 0) -> bytes:
    return struct.pack(">BBIBHB", 0x35, 0, lba, 0, blocks, 0)


def sync16(lba: int = 0, blocks: int = 0) -> bytes:
    return struct.pack(">BBQIBB", 0x91, 0, lba, blocks, 0, 0)


def read_capacity10(lba: int = 0, pmi: bool = False) -> bytes:
    return struct.pack(">BBIHBB", 0x25, 0, lba, 0, int(pmi), 0)


def read_capacity16(alloc: int = 32, sa: int = 0x10, lba: int = 0, pmi: bool = False) -> bytes:
    return struct.pack(">BBQIBB", 0x9E, sa, lba, alloc, int(pmi), 0)


def mode_sense6(page: int, pc: int = 0, dbd: bool = False, alloc: int = 255,
                subpage: int = 0) -> bytes:
    return bytes([0x1A, 0x08 if dbd else 0, (pc << 6) | page, subpage, alloc, 0])


def mode_sense10(page: int, pc: int = 0, dbd: bool = False, llbaa: bool = False,
                 alloc: int = 1024, subpage: int = 0) -> bytes:
    flags = (0x08 if dbd else 0) | (0x10 if llbaa else 0)
    return struct.pack(">BBBBBBBHB", 0x5A, flags, (pc << 6) | page, subpage, 0, 0, 0, alloc, 0)


def mode_select6(length: int, pf: bool = True, sp: bool = False) -> bytes:
    return bytes([0x15, (0x10 if pf else 0) | int(sp), 0, 0, length, 0])


def mode_select10(length: int, pf: bool = True, sp: bool = False) -> bytes:
    return struct.pack(">BBBBBBBHB", 0x55, (0x10 if pf else 0) | int(sp), 0, 0, 0, 0, 0,
                       length, 0)


def start_stop(start: bool, no_flush: bool = False, loej: bool = False,
               power: int = 0) -> bytes:
    return bytes([0x1B, 0, 0, 0, (power << 4) | (4 if no_flush else 0) | (2 if loej else 0)
                  | int(start), 0])


def report_luns(alloc: int = 256, select: int = 0) -> bytes:
    return struct.pack(">BBBBBBIBB", 0xA0, 0, select, 0, 0, 0, alloc, 0, 0)


def unmap(length: int) -> bytes:
    return struct.pack(">BBIBHB", 0x42, 0, 0, 0, length, 0)


def unmap_list(*extents: tuple[int, int]) -> bytes:
    descriptors = b"".join(struct.pack(">QII", lba, n, 0) for lba, n in extents)
    return struct.pack(">HHI", 6 + len(descriptors), len(descriptors), 0) + descriptors


def pattern(blocks: int, seed: int = 1, bs: int = 512) -> bytes:
    return bytes((seed * 7 + i * 13) & 0xFF for i in range(blocks * bs))


def caching_page(wce: bool) -> bytes:
    return bytes([0x08, 0x12, 0x04 if wce else 0]) + bytes(17)


CONTROL_PAGE = bytes([0x0A, 0x0A]) + bytes(10)


# -- the target interface -------------------------------------------------------------

def test_disk_and_its_requests_implement_the_target_protocols():
    disk, _ = ready_disk()
    assert isinstance(disk, ScsiTarget)
    assert isinstance(disk, Stateful)
    assert isinstance(disk.request(0, tur()), ScsiRequest)
    assert disk.luns() == [0]


def test_direction_and_transfer_length_are_known_before_data_moves():
    disk, backend = ready_disk()
    req = disk.request(0, read10(3, 4))
    assert (req.direction, req.transfer_length) == (DataDirection.FROM_DEVICE, 4 * 512)
    backend.data[3 * 512:7 * 512] = pattern(4)  # the read happens at data_in, not before
    assert req.data_in() == pattern(4)
    assert req.status is GOOD
    req = disk.request(0, write10(0, 2))
    assert (req.direction, req.transfer_length) == (DataDirection.TO_DEVICE, 1024)
    assert backend.block(0, 2) == bytes(1024)


def test_a_command_refused_at_decoding_moves_no_data():
    disk, _ = ready_disk()
    req = disk.request(0, read10(64, 1))
    assert (req.direction, req.transfer_length, req.status) == (DataDirection.NONE, 0, CHECK)
    assert req.data_in() == b""


# -- unit attention -----------------------------------------------------------------

def test_first_command_after_power_on_reports_unit_attention_then_it_is_cleared():
    disk = ScsiDisk(MemoryBackend(), serial="S1")
    first = run(disk, tur())
    assert first.status is CHECK and first.key_asc == UA_RESET
    assert run(disk, tur()).status is GOOD


def test_inquiry_and_report_luns_do_not_report_or_clear_the_unit_attention():
    disk = ScsiDisk(MemoryBackend(), serial="S1")
    assert run(disk, inquiry()).status is GOOD
    assert run(disk, report_luns()).status is GOOD
    assert run(disk, read10(0, 1)).key_asc == UA_RESET
    assert run(disk, read10(0, 1)).status is GOOD


def test_request_sense_reports_and_clears_a_pending_unit_attention():
    disk = ScsiDisk(MemoryBackend(), serial="S1")
    r = run(disk, request_sense())
    assert r.status is GOOD and parse_fixed_sense(r.data)[:3] == UA_RESET
    assert run(disk, tur()).status is GOOD


def test_bus_reset_raises_a_new_unit_attention_and_drops_pending_sense():
    disk, _ = ready_disk()
    run(disk, bytes([0xFF]) + bytes(5))
    disk.bus_reset()
    assert run(disk, tur()).key_asc == UA_RESET
    assert run(disk, tur()).status is GOOD


def test_unit_attention_takes_precedence_over_an_unknown_opcode():
    disk = ScsiDisk(MemoryBackend(), serial="S1")
    assert run(disk, bytes([0xC5]) + bytes(11)).key_asc == UA_RESET
    assert run(disk, bytes([0xC5]) + bytes(11)).key_asc == INVALID_OPCODE


# -- REQUEST SENSE ------------------------------------------------------------------

def test_request_sense_returns_fixed_format_sense_of_the_last_check_condition():
    disk, _ = ready_disk()
    run(disk, read10(100, 1))
    r = run(disk, request_sense())
    assert r.status is GOOD
    assert r.data == bytes([0xF0, 0, 0x05, 0, 0, 0, 100, 10, 0, 0, 0, 0, 0x21, 0x00, 0, 0, 0, 0])


def test_request_sense_clears_the_sense_it_returns():
    disk, _ = ready_disk()
    run(disk, bytes([0xFF]) + bytes(5))
    assert parse_fixed_sense(run(disk, request_sense()).data)[:3] == INVALID_OPCODE
    assert parse_fixed_sense(run(disk, request_sense()).data)[:3] == NO_SENSE


def test_request_sense_with_nothing_pending_reports_no_sense():
    disk, _ = ready_disk()
    r = run(disk, request_sense())
    assert r.data == bytes([0x70, 0, 0, 0, 0, 0, 0, 10]) + bytes(10)


def test_request_sense_honours_the_allocation_length():
    disk, _ = ready_disk()
    run(disk, bytes([0xFF]) + bytes(5))
    r = run(disk, request_sense(alloc=8))
    assert r.data == bytes([0x70, 0, 0x05, 0, 0, 0, 0, 10])


def test_another_command_discards_the_pending_sense():
    disk, _ = ready_disk()
    run(disk, bytes([0xFF]) + bytes(5))
    run(disk, tur())
    assert parse_fixed_sense(run(disk, request_sense()).data)[:3] == NO_SENSE


def test_request_sense_for_descriptor_format_is_refused():
    disk, _ = ready_disk()
    assert run(disk, request_sense(desc=True)).key_asc == INVALID_FIELD


# -- INQUIRY ------------------------------------------------------------------------

def test_standard_inquiry_data():
    disk, _ = ready_disk(vendor="ACME", product="SUPERDISK", revision="1.2")
    r = run(disk, inquiry(alloc=96))
    assert r.status is GOOD
    assert r.data == (bytes([0x00, 0x00, 0x06, 0x12, 31, 0x00, 0x00, 0x12])
                      + b"ACME    " + b"SUPERDISK       " + b"1.2 ")
    assert r.data[7] & 0x02  # CMDQUE


def test_standard_inquiry_defaults():
    disk, _ = ready_disk()
    data = run(disk, inquiry()).data
    assert data[8:36] == b"VMM     VIRTUAL DISK    0001"


def test_inquiry_allocation_length_truncates():
    disk, _ = ready_disk()
    r = run(disk, inquiry(alloc=5))
    assert r.status is GOOD and r.data == bytes([0x00, 0x00, 0x06, 0x12, 31])


def test_inquiry_allocation_length_zero_transfers_nothing():
    disk, _ = ready_disk()
    req = disk.request(0, inquiry(alloc=0))
    assert (req.direction, req.transfer_length, req.status) == (DataDirection.NONE, 0, GOOD)


def test_inquiry_page_code_without_evpd_is_an_invalid_field():
    disk, _ = ready_disk()
    assert run(disk, inquiry(page=0x80)).key_asc == INVALID_FIELD


def test_inquiry_cmddt_is_an_invalid_field():
    disk, _ = ready_disk()
    assert run(disk, bytes([0x12, 0x02, 0, 0, 255, 0])).key_asc == INVALID_FIELD


def test_vpd_supported_pages():
    disk, _ = ready_disk()
    assert run(disk, inquiry(evpd=True, page=0x00)).data == bytes(
        [0, 0x00, 0, 5, 0x00, 0x80, 0x83, 0xB0, 0xB2])


def test_vpd_unit_serial_number():
    disk, _ = ready_disk(serial="QM00042")
    assert run(disk, inquiry(evpd=True, page=0x80)).data == bytes([0, 0x80, 0, 7]) + b"QM00042"


def test_vpd_device_identification_holds_t10_vendor_and_naa_designators():
    disk, _ = ready_disk(serial="SN9", wwn=0x5000C5001234ABCD)
    data = run(disk, inquiry(evpd=True, page=0x83)).data
    t10 = b"VMM     VIRTUAL DISK    SN9"
    expected = (bytes([0x02, 0x01, 0x00, len(t10)]) + t10
                + bytes([0x01, 0x03, 0x00, 8]) + bytes.fromhex("5000C5001234ABCD"))
    assert data == bytes([0, 0x83]) + struct.pack(">H", len(expected)) + expected


def test_vpd_device_identification_without_wwn_has_a_stable_locally_assigned_naa():
    a, _ = ready_disk(serial="SN9")
    b, _ = ready_disk(serial="SN9")
    c, _ = ready_disk(serial="SN10")
    naa = [run(d, inquiry(evpd=True, page=0x83)).data[-8:] for d in (a, b, c)]
    assert naa[0] == naa[1] != naa[2]
    assert naa[0][0] >> 4 == 0x3  # NAA 3h: locally assigned


def test_vpd_block_limits():
    disk, _ = ready_disk()
    data = run(disk, inquiry(evpd=True, page=0xB0)).data
    assert data[:4] == bytes([0, 0xB0, 0x00, 0x3C]) and len(data) == 64
    field = lambda at: int.from_bytes(data[at:at + 4], "big")  # noqa: E731
    assert field(8) == 65536  # MAXIMUM TRANSFER LENGTH: 32 MiB of 512-byte blocks
    assert field(12) == 2048  # OPTIMAL TRANSFER LENGTH: 1 MiB
    assert field(20) == 2 * 1024 * 1024  # MAXIMUM UNMAP LBA COUNT: 1 GiB
    assert field(24) == 256  # MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT
    assert field(28) == 1  # OPTIMAL UNMAP GRANULARITY


def test_vpd_logical_block_provisioning_reports_unmap():
    disk, _ = ready_disk()
    data = run(disk, inquiry(evpd=True, page=0xB2)).data
    assert data == bytes([0, 0xB2, 0, 4, 0, 0x84, 0x02, 0])  # LBPU, LBPRZ; thin


def test_unsupported_vpd_page_is_an_invalid_field():
    disk, _ = ready_disk()
    assert run(disk, inquiry(evpd=True, page=0x89)).key_asc == INVALID_FIELD


def test_vpd_allocation_length_truncates():
    disk, _ = ready_disk(serial="ABCDEFGH")
    assert run(disk, inquiry(alloc=6, evpd=True, page=0x80)).data == bytes([0, 0x80, 0, 8]) + b"AB"


@pytest.mark.parametrize("kwargs", [{"vendor": "NINECHARS"}, {"product": "é"},
                                    {"serial": ""}, {"revision": "12345"},
                                    {"wwn": 0x1234}, {"serial": "x" * 65}])
def test_identity_strings_are_checked_when_the_disk_is_made(kwargs):
    with pytest.raises(ValueError):
        ScsiDisk(MemoryBackend(), **{"serial": "S", **kwargs})


# -- other logical units --------------------------------------------------------------

def test_inquiry_to_an_absent_lun_reports_peripheral_qualifier_3():
    disk, _ = ready_disk()
    r = run(disk, inquiry(), lun=1)
    assert r.status is GOOD and r.data[0] == 0x7F and len(r.data) == 36


def test_commands_to_an_absent_lun_report_logical_unit_not_supported():
    disk, _ = ready_disk()
    for cdb in (tur(), read10(0, 1), bytes([0xFF]) + bytes(5)):
        assert run(disk, cdb, lun=3).key_asc == LUN_NOT_SUPPORTED


def test_vpd_supported_pages_of_an_absent_lun():
    disk, _ = ready_disk()
    assert run(disk, inquiry(evpd=True, page=0), lun=1).data == bytes([0x7F, 0, 0, 1, 0])
    assert run(disk, inquiry(evpd=True, page=0x80), lun=1).key_asc == INVALID_FIELD


def test_report_luns_to_an_absent_lun_still_lists_lun_0():
    disk, _ = ready_disk()
    assert run(disk, report_luns(), lun=4).data == struct.pack(">II", 8, 0) + bytes(8)


def test_request_sense_to_an_absent_lun_returns_logical_unit_not_supported_data():
    disk, _ = ready_disk()
    r = run(disk, request_sense(), lun=2)
    assert r.status is GOOD and parse_fixed_sense(r.data)[:3] == LUN_NOT_SUPPORTED


def test_absent_lun_commands_leave_lun_0_state_alone():
    disk = ScsiDisk(MemoryBackend(), serial="S1")
    run(disk, tur(), lun=5)
    assert run(disk, tur()).key_asc == UA_RESET


# -- REPORT LUNS --------------------------------------------------------------------

def test_report_luns_lists_lun_0():
    disk, _ = ready_disk()
    assert run(disk, report_luns()).data == struct.pack(">II", 8, 0) + bytes(8)


def test_report_luns_of_well_known_units_is_empty():
    disk, _ = ready_disk()
    assert run(disk, report_luns(select=1)).data == bytes(8)


def test_report_luns_with_a_tiny_allocation_length_is_an_invalid_field():
    disk, _ = ready_disk()
    assert run(disk, report_luns(alloc=8)).key_asc == INVALID_FIELD


def test_report_luns_with_a_bad_select_report_is_an_invalid_field():
    disk, _ = ready_disk()
    assert run(disk, report_luns(select=0x42)).key_asc == INVALID_FIELD


# -- READ CAPACITY ------------------------------------------------------------------

def test_read_capacity_10():
    disk, _ = ready_disk(num_blocks=1000)
    assert run(disk, read_capacity10()).data == struct.pack(">II", 999, 512)


def test_read_capacity_10_saturates_for_a_disk_too_big_to_address():
    backend = MemoryBackend(1)
    backend.num_blocks = (1 << 32) + 5  # only the size is looked at
    disk = ScsiDisk(backend, serial="S")
    run(disk, tur())
    assert run(disk, read_capacity10()).data == struct.pack(">II", 0xFFFFFFFF, 512)
    assert run(disk, read_capacity16()).data[:12] == struct.pack(">QI", (1 << 32) + 4, 512)


def test_read_capacity_10_with_lba_but_no_pmi_is_an_invalid_field():
    disk, _ = ready_disk()
    assert run(disk, read_capacity10(lba=5)).key_asc == INVALID_FIELD
    assert run(disk, read_capacity10(lba=5, pmi=True)).status is GOOD


def test_read_capacity_16():
    disk, _ = ready_disk(num_blocks=2048, block_size=4096)
    data = run(disk, read_capacity16()).data
    assert data == struct.pack(">QIBBBB", 2047, 4096, 0, 0, 0xC0, 0) + bytes(16)


def test_read_capacity_16_honours_the_allocation_length():
    disk, _ = ready_disk()
    assert run(disk, read_capacity16(alloc=12)).data == struct.pack(">QI", 63, 512)


def test_service_action_in_with_another_service_action_is_an_invalid_field():
    disk, _ = ready_disk()
    assert run(disk, read_capacity16(sa=0x12)).key_asc == INVALID_FIELD


# -- READ and WRITE ----------------------------------------------------------------------

@pytest.mark.parametrize("read, write", [(read6, write6), (read10, write10),
                                         (read12, write12), (read16, write16)])
def test_write_then_read_back_every_size(read, write):
    disk, backend = ready_disk()
    data = pattern(3, seed=5)
    assert run(disk, write(10, 3), data).status is GOOD
    assert backend.block(10, 3) == data
    assert backend.block(9) == bytes(512) and backend.block(13) == bytes(512)
    r = run(disk, read(10, 3))
    assert r.status is GOOD and r.data == data


def test_read6_transfer_length_zero_means_256_blocks():
    disk, backend = ready_disk(num_blocks=300)
    backend.data[:] = pattern(300)
    req = disk.request(0, read6(0, 0))
    assert req.transfer_length == 256 * 512
    assert req.data_in() == pattern(300)[:256 * 512]


def test_write6_transfer_length_zero_means_256_blocks():
    disk, backend = ready_disk(num_blocks=300)
    assert run(disk, write6(1, 0), pattern(256)).status is GOOD
    assert backend.block(1, 256) == pattern(256)


def test_read10_transfer_length_zero_moves_nothing_and_succeeds():
    disk, _ = ready_disk()
    req = disk.request(0, read10(5, 0))
    assert (req.direction, req.transfer_length, req.status) == (DataDirection.NONE, 0, GOOD)


@pytest.mark.parametrize("cdb", [read10(64, 1), read10(60, 5), read16(1 << 40, 1),
                                 read6(64, 1), read12(63, 2)])
def test_read_past_the_end_is_lba_out_of_range(cdb):
    disk, _ = ready_disk()
    r = run(disk, cdb)
    assert r.status is CHECK and r.key_asc == LBA_RANGE


def test_lba_out_of_range_information_is_the_first_lba_past_the_medium():
    disk, _ = ready_disk()
    assert run(disk, read10(60, 5)).information == 64
    assert run(disk, read10(100, 1)).information == 100
    assert run(disk, read16(1 << 40, 1)).information is None  # does not fit: VALID clear


def test_write_past_the_end_is_lba_out_of_range_and_writes_nothing():
    disk, backend = ready_disk()
    req = disk.request(0, write10(63, 2))
    assert (req.transfer_length, req.status) == (0, CHECK)
    assert parse_fixed_sense(req.sense)[:3] == LBA_RANGE
    assert backend.data == bytearray(64 * 512)


def test_zero_length_read_at_the_capacity_is_out_of_range():
    disk, _ = ready_disk()
    assert run(disk, read10(64, 0)).key_asc == LBA_RANGE


def test_read_protect_field_is_an_invalid_field():
    disk, _ = ready_disk()
    assert run(disk, read10(0, 1, flags=0x20)).key_asc == INVALID_FIELD


def test_transfer_above_the_maximum_transfer_length_is_an_invalid_field():
    disk, _ = ready_disk(num_blocks=70000)
    assert run(disk, read16(0, 65537)).key_asc == INVALID_FIELD


def test_read_of_a_failing_block_is_a_medium_error_and_moves_no_data():
    disk, backend = ready_disk()
    backend.bad_blocks.add(7)
    req = disk.request(0, read10(5, 4))
    assert req.transfer_length == 4 * 512
    assert req.data_in() == b""
    assert (req.transfer_length, req.status) == (0, CHECK)
    assert parse_fixed_sense(req.sense)[:3] == READ_ERROR
    assert parse_fixed_sense(run(disk, request_sense()).data)[:3] == READ_ERROR


def test_write_to_a_failing_block_is_a_medium_error():
    disk, backend = ready_disk()
    backend.bad_blocks.add(2)
    assert run(disk, write10(2, 1), pattern(1)).key_asc == WRITE_ERROR


def test_write_with_fua_flushes():
    disk, backend = ready_disk()
    run(disk, write10(0, 1), pattern(1))
    assert backend.flushes == 0
    run(disk, write10(0, 1, flags=0x08), pattern(1))
    assert backend.flushes == 1


def test_write_with_the_write_cache_disabled_flushes_every_write():
    disk, backend = ready_disk()
    header = bytes(4)
    assert run(disk, mode_select6(24), header + caching_page(False)).status is GOOD
    flushes = backend.flushes
    run(disk, write16(0, 1), pattern(1))
    assert backend.flushes == flushes + 1


def test_write_to_a_read_only_backend_is_write_protected():
    disk, backend = ready_disk()
    backend.readonly = True
    req = disk.request(0, write10(0, 1))
    assert (req.transfer_length, parse_fixed_sense(req.sense)[:3]) == (0, WRITE_PROTECTED)
    assert run(disk, mode_sense6(0x08)).data[2] & 0x80  # WP in the mode parameter header


def test_short_data_out_aborts_the_command_and_writes_nothing():
    disk, backend = ready_disk()
    req = disk.request(0, write10(0, 2))
    req.data_out(pattern(1))
    assert req.status is CHECK
    assert parse_fixed_sense(req.sense)[:3] == (0xB, 0x4B, 0x00)
    assert backend.block(0, 2) == bytes(1024)


# -- VERIFY ------------------------------------------------------------------------------

def test_verify_without_bytchk_checks_the_range():
    disk, _ = ready_disk()
    assert run(disk, verify10(0, 64)).status is GOOD
    assert run(disk, verify10(60, 5)).key_asc == LBA_RANGE


def test_verify_without_bytchk_reports_an_unreadable_block():
    disk, backend = ready_disk()
    backend.bad_blocks.add(30)
    assert run(disk, verify10(0, 64)).key_asc == READ_ERROR


def test_verify_with_bytchk_compares_the_data_out():
    disk, backend = ready_disk()
    backend.data[512:1536] = pattern(2)
    req = disk.request(0, verify10(1, 2, bytchk=1))
    assert (req.direction, req.transfer_length) == (DataDirection.TO_DEVICE, 1024)
    req.data_out(pattern(2))
    assert req.status is GOOD


def test_verify_miscompare_reports_the_offset_of_the_first_difference():
    disk, backend = ready_disk()
    backend.data[512:1536] = pattern(2)
    other = bytearray(pattern(2))
    other[700] ^= 0xFF
    r = run(disk, verify10(1, 2, bytchk=1), bytes(other))
    assert r.status is CHECK and r.key_asc == MISCOMPARE and r.information == 700


def test_verify_bytchk_3_compares_one_block_with_every_block():
    disk, backend = ready_disk()
    block = pattern(1, seed=9)
    backend.data[0:1536] = block * 3
    assert run(disk, verify10(0, 3, bytchk=3), block).status is GOOD
    assert run(disk, verify10(0, 4, bytchk=3), block).key_asc == MISCOMPARE


def test_verify_compare_of_an_unreadable_block_is_a_medium_error():
    disk, backend = ready_disk()
    backend.bad_blocks.add(1)
    assert run(disk, verify10(0, 2, bytchk=1), bytes(1024)).key_asc == READ_ERROR


def test_verify_with_reserved_bytchk_is_an_invalid_field():
    disk, _ = ready_disk()
    assert run(disk, verify10(0, 1, bytchk=2)).key_asc == INVALID_FIELD


# -- SYNCHRONIZE CACHE -------------------------------------------------------------------

@pytest.mark.parametrize("cdb", [sync10(), sync16(), sync10(5, 10), sync16(0, 64)])
def test_synchronize_cache_flushes_the_backend(cdb):
    disk, backend = ready_disk()
    assert run(disk, cdb).status is GOOD
    assert backend.flushes == 1


def test_synchronize_cache_out_of_range_is_lba_out_of_range():
    disk, backend = ready_disk()
    assert run(disk, sync10(64, 1)).key_asc == LBA_RANGE
    assert backend.flushes == 0


def test_synchronize_cache_failure_is_a_medium_error():
    disk, backend = ready_disk()
    backend.fail_flush = True
    assert run(disk, sync10()).key_asc == WRITE_ERROR


# -- MODE SENSE and MODE SELECT -----------------------------------------------------------

def test_mode_sense6_caching_page_with_block_descriptor():
    disk, _ = ready_disk(num_blocks=1000)
    data = run(disk, mode_sense6(0x08)).data
    assert data == (bytes([3 + 8 + 20, 0, 0x10, 8]) + struct.pack(">I", 1000) + b"\0"
                    + (512).to_bytes(3, "big") + caching_page(True))


def test_mode_sense6_without_block_descriptors():
    disk, _ = ready_disk()
    assert run(disk, mode_sense6(0x0A, dbd=True)).data == bytes([3 + 12, 0, 0x10, 0]) + CONTROL_PAGE


def test_mode_sense_all_pages():
    disk, _ = ready_disk()
    data = run(disk, mode_sense6(0x3F, dbd=True)).data
    assert data == bytes([3 + 32, 0, 0x10, 0]) + caching_page(True) + CONTROL_PAGE


def test_mode_sense10_with_long_lba_block_descriptor():
    disk, _ = ready_disk(num_blocks=1000)
    data = run(disk, mode_sense10(0x08, llbaa=True)).data
    assert data[:8] == struct.pack(">HBBBBH", 6 + 16 + 20, 0, 0x10, 0x01, 0, 16)
    assert data[8:24] == struct.pack(">QII", 1000, 0, 512)
    assert data[24:] == caching_page(True)


def test_mode_sense10_short_block_descriptor():
    disk, _ = ready_disk(num_blocks=1000)
    data = run(disk, mode_sense10(0x0A)).data
    assert data == (struct.pack(">HBBBBH", 6 + 8 + 12, 0, 0x10, 0, 0, 8)
                    + struct.pack(">I", 1000) + b"\0" + (512).to_bytes(3, "big") + CONTROL_PAGE)


def test_mode_sense_all_pages_and_subpages_lists_the_same_pages():
    disk, _ = ready_disk()
    assert (run(disk, mode_sense10(0x3F, subpage=0xFF)).data
            == run(disk, mode_sense10(0x3F)).data)


def test_mode_sense_changeable_values_show_only_wce():
    disk, _ = ready_disk()
    data = run(disk, mode_sense6(0x3F, pc=1, dbd=True)).data
    assert data[4:] == caching_page(True) + bytes([0x0A, 0x0A]) + bytes(10)


def test_mode_sense_default_values_survive_a_guest_change():
    disk, _ = ready_disk()
    run(disk, mode_select6(24), bytes(4) + caching_page(False))
    assert run(disk, mode_sense6(0x08, pc=0, dbd=True)).data[4:] == caching_page(False)
    assert run(disk, mode_sense6(0x08, pc=2, dbd=True)).data[4:] == caching_page(True)


def test_mode_sense_saved_values_are_not_supported():
    disk, _ = ready_disk()
    assert run(disk, mode_sense6(0x08, pc=3)).key_asc == SAVING_NOT_SUPPORTED


def test_mode_sense_of_an_unsupported_page_is_an_invalid_field():
    disk, _ = ready_disk()
    assert run(disk, mode_sense6(0x1C)).key_asc == INVALID_FIELD
    assert run(disk, mode_sense10(0x08, subpage=1)).key_asc == INVALID_FIELD


def test_mode_sense_allocation_length_truncates():
    disk, _ = ready_disk()
    assert run(disk, mode_sense6(0x3F, alloc=4)).data == bytes([3 + 8 + 32, 0, 0x10, 8])


def test_mode_select6_turns_the_write_cache_off_and_on():
    disk, backend = ready_disk()
    assert run(disk, mode_select6(24), bytes(4) + caching_page(False)).status is GOOD
    assert backend.flushes == 1  # going write-through drains the cache
    assert run(disk, mode_sense6(0x08, dbd=True)).data[6] == 0x00
    assert run(disk, mode_select6(24), bytes(4) + caching_page(True)).status is GOOD
    assert run(disk, mode_sense6(0x08, dbd=True)).data[6] == 0x04


def test_mode_select10_with_block_descriptor_and_both_pages():
    disk, _ = ready_disk(num_blocks=1000)
    params = (struct.pack(">HBBBBH", 0, 0, 0, 0, 0, 8) + struct.pack(">I", 1000) + b"\0"
              + (512).to_bytes(3, "big") + caching_page(False) + CONTROL_PAGE)
    assert run(disk, mode_select10(len(params)), params).status is GOOD
    assert run(disk, mode_sense10(0x08, dbd=True)).data[10] == 0x00


def test_mode_select_of_a_page_sensed_from_the_disk_is_accepted():
    disk, _ = ready_disk()
    sensed = run(disk, mode_sense6(0x08)).data
    params = bytes([0]) + sensed[1:]  # MODE DATA LENGTH is reserved in MODE SELECT
    assert run(disk, mode_select6(len(params)), params).status is GOOD


def test_mode_select_changing_a_fixed_field_is_refused_and_changes_nothing():
    disk, _ = ready_disk()
    control = bytearray(CONTROL_PAGE)
    control[2] = 0x04  # D_SENSE: descriptor sense is not supported
    params = bytes(4) + caching_page(False) + bytes(control)
    assert run(disk, mode_select6(len(params)), params).key_asc == INVALID_PARAM
    assert run(disk, mode_sense6(0x08, dbd=True)).data[6] == 0x04  # WCE untouched


def test_mode_select_of_an_unknown_page_is_an_invalid_parameter():
    disk, _ = ready_disk()
    params = bytes(4) + bytes([0x1C, 0x0A]) + bytes(10)
    assert run(disk, mode_select6(len(params)), params).key_asc == INVALID_PARAM


def test_mode_select_with_a_truncated_page_is_a_parameter_list_length_error():
    disk, _ = ready_disk()
    params = bytes(4) + caching_page(False)[:10]
    assert run(disk, mode_select6(len(params)), params).key_asc == PARAM_LENGTH


def test_mode_select_with_a_different_block_length_is_refused():
    disk, _ = ready_disk()
    params = bytes([0, 0, 0, 8]) + bytes(4) + b"\0" + (4096).to_bytes(3, "big")
    assert run(disk, mode_select6(len(params)), params).key_asc == INVALID_PARAM


def test_mode_select_save_pages_is_an_invalid_field():
    disk, _ = ready_disk()
    assert run(disk, mode_select6(24, sp=True)).key_asc == INVALID_FIELD


def test_mode_select_without_page_format_is_an_invalid_field():
    disk, _ = ready_disk()
    assert run(disk, mode_select6(24, pf=False)).key_asc == INVALID_FIELD


def test_mode_select_with_empty_parameter_list_does_nothing():
    disk, _ = ready_disk()
    assert run(disk, mode_select10(0)).status is GOOD


# -- START STOP UNIT ----------------------------------------------------------------------

def test_stop_flushes_and_the_unit_stays_ready():
    disk, backend = ready_disk()
    assert run(disk, start_stop(False)).status is GOOD
    assert backend.flushes == 1
    assert run(disk, tur()).status is GOOD
    assert run(disk, start_stop(True)).status is GOOD


def test_stop_with_no_flush_does_not_flush():
    disk, backend = ready_disk()
    assert run(disk, start_stop(False, no_flush=True)).status is GOOD
    assert backend.flushes == 0


def test_eject_of_a_fixed_disk_is_an_invalid_field():
    disk, _ = ready_disk()
    assert run(disk, start_stop(False, loej=True)).key_asc == INVALID_FIELD


def test_reserved_power_condition_is_an_invalid_field():
    disk, _ = ready_disk()
    assert run(disk, start_stop(True, power=0x5)).key_asc == INVALID_FIELD


# -- UNMAP --------------------------------------------------------------------------------

def test_unmap_discards_every_descriptor():
    disk, backend = ready_disk()
    backend.data[:] = pattern(64)
    params = unmap_list((2, 3), (40, 1))
    assert run(disk, unmap(len(params)), params).status is GOOD
    assert backend.discards == [(2, 3), (40, 1)]
    assert backend.block(2, 3) == bytes(1536) and backend.block(40) == bytes(512)
    assert backend.block(1) == pattern(64)[512:1024]


def test_unmap_out_of_range_discards_nothing():
    disk, backend = ready_disk()
    params = unmap_list((2, 3), (62, 5))
    r = run(disk, unmap(len(params)), params)
    assert r.key_asc == LBA_RANGE and r.information == 64
    assert backend.discards == []


def test_unmap_with_empty_parameter_list_does_nothing():
    disk, backend = ready_disk()
    assert run(disk, unmap(0)).status is GOOD and backend.discards == []


def test_unmap_with_a_parameter_list_shorter_than_its_header_is_a_length_error():
    disk, _ = ready_disk()
    assert run(disk, unmap(4)).key_asc == PARAM_LENGTH


def test_unmap_descriptor_length_beyond_the_list_is_a_length_error():
    disk, _ = ready_disk()
    params = struct.pack(">HHI", 38, 32, 0) + struct.pack(">QII", 0, 1, 0)
    assert run(disk, unmap(len(params)), params).key_asc == PARAM_LENGTH


def test_unmap_with_more_descriptors_than_the_block_limits_allow_is_refused():
    disk, backend = ready_disk()
    params = unmap_list(*[(0, 1)] * 257)
    assert run(disk, unmap(len(params)), params).key_asc == INVALID_PARAM
    assert backend.discards == []


def test_unmap_of_more_blocks_than_the_maximum_unmap_lba_count_is_refused():
    disk, backend = ready_disk()
    backend.num_blocks = 1 << 24  # only the size is looked at before refusing
    params = unmap_list((0, 2 * 1024 * 1024 + 1))
    assert run(disk, unmap(len(params)), params).key_asc == INVALID_PARAM
    assert backend.discards == []


def test_unmap_ignores_a_trailing_partial_descriptor():
    disk, backend = ready_disk()
    params = unmap_list((1, 1)) + bytes(8)
    params = struct.pack(">HH", len(params) - 2, 24) + params[4:]
    assert run(disk, unmap(len(params)), params).status is GOOD
    assert backend.discards == [(1, 1)]


def test_unmap_anchor_is_an_invalid_field():
    disk, _ = ready_disk()
    assert run(disk, bytes([0x42, 0x01]) + bytes(5) + b"\0\x18\0").key_asc == INVALID_FIELD


def test_unmap_on_a_write_protected_disk_is_refused():
    disk, backend = ready_disk()
    backend.readonly = True
    assert run(disk, unmap(24), unmap_list((0, 1))).key_asc == WRITE_PROTECTED


# -- invalid commands ---------------------------------------------------------------------

@pytest.mark.parametrize("cdb", [bytes([0xFF]) + bytes(5), bytes([0x04]) + bytes(5),
                                 bytes([0xA3, 0x0C]) + bytes(10), bytes([0xC0]) + bytes(11)])
def test_unknown_opcodes_are_invalid_command_operation_code(cdb):
    disk, _ = ready_disk()
    assert run(disk, cdb).key_asc == INVALID_OPCODE


def test_empty_cdb_is_invalid_command_operation_code():
    disk, _ = ready_disk()
    assert run(disk, b"").key_asc == INVALID_OPCODE


def test_truncated_cdb_is_an_invalid_field():
    disk, _ = ready_disk()
    assert run(disk, read10(0, 1)[:6]).key_asc == INVALID_FIELD


def test_naca_in_the_control_byte_is_an_invalid_field():
    disk, _ = ready_disk()
    assert run(disk, tur()[:5] + b"\x04").key_asc == INVALID_FIELD


# -- save and load ------------------------------------------------------------------------

def test_state_round_trips_through_json():
    disk, backend = ready_disk()
    run(disk, mode_select6(24), bytes(4) + caching_page(False))
    run(disk, read10(99, 1))
    saved = disk.save_state()
    assert json.loads(json.dumps(saved)) == saved
    other = ScsiDisk(backend, serial="SN0001")
    other.load_state(saved)
    assert other.save_state() == saved
    assert parse_fixed_sense(run(other, request_sense()).data)[:3] == LBA_RANGE
    assert run(other, mode_sense6(0x08, dbd=True)).data[6] == 0x00


def test_pending_unit_attention_survives_save_and_load():
    disk = ScsiDisk(MemoryBackend(), serial="S")
    saved = disk.save_state()
    other = ScsiDisk(MemoryBackend(), serial="S")
    run(other, tur())
    other.load_state(saved)
    assert run(other, tur()).key_asc == UA_RESET


def test_damaged_state_is_refused_with_a_message():
    disk, _ = ready_disk()
    with pytest.raises(ValueError, match="SCSI disk state"):
        disk.load_state({"pending_sense": "zz", "unit_attention": None, "write_cache": True})
    with pytest.raises(ValueError, match="SCSI disk state"):
        disk.load_state({})


# -- over a real virtual disk ------------------------------------------------------------

def test_writes_and_unmaps_reach_a_storage_virtual_disk(tmp_path):
    from storage.vdisk import VirtualDisk

    vdisk = VirtualDisk.create(tmp_path / "d.dsk", 128)
    disk = ScsiDisk(vdisk, serial="VD1")
    run(disk, tur())
    assert run(disk, write10(4, 2), pattern(2)).status is GOOD
    assert run(disk, sync10()).status is GOOD
    assert (tmp_path / "d.dsk").read_bytes()[4 * 512:6 * 512] == pattern(2)
    params = unmap_list((4, 1))
    assert run(disk, unmap(len(params)), params).status is GOOD
    assert run(disk, read10(4, 2)).data == bytes(512) + pattern(2)[512:]
    assert run(disk, read_capacity10()).data == struct.pack(">II", 127, 512)
    vdisk.close()
