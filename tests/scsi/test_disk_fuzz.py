"""Random CDBs and data from a misbehaving guest never break the disk (DESIGN.md: a
malformed CDB gets a CHECK CONDITION, never a Python traceback)."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings, strategies as st

from devices.scsi.cdb import Op, cdb_length, decode
from devices.scsi.disk import ScsiDisk
from devices.scsi.sense import CheckCondition, parse_fixed_sense
from devices.scsi.target import DataDirection, ScsiStatus
from tests.scsi import MemoryBackend

IMPLEMENTED = [int(op) for op in Op]
# Small values keep LBAs and lengths inside a small disk often enough to reach execution.
cdb_byte = st.one_of(st.sampled_from([0, 0, 0, 1, 2, 3, 8, 0x10, 0x12, 0x3F, 0x80, 0xFF]),
                     st.integers(0, 255))
opcode = st.one_of(st.sampled_from(IMPLEMENTED), st.integers(0, 255))


# Parameter lists with the right shape, so MODE SELECT and UNMAP get past their headers.
PARAMETER_LISTS = [
    bytes(4) + bytes([0x08, 0x12, 0x00]) + bytes(17),  # MODE SELECT(6): WCE off
    bytes(4) + bytes([0x08, 0x12, 0x04]) + bytes(17) + bytes([0x0A, 0x0A]) + bytes(10),
    bytes(8) + bytes([0x08, 0x12, 0x00]) + bytes(17),  # MODE SELECT(10)
    bytes([0, 0, 0, 8, 0, 0, 0, 32, 0, 0, 2, 0]),  # block descriptor: 32 blocks of 512
    bytes([0, 22, 0, 16, 0, 0, 0, 0]) + bytes(7) + bytes([3, 0, 0, 0, 4]) + bytes(4),  # UNMAP
    bytes([0, 38, 0, 32, 0, 0, 0, 0]) + bytes(7) + bytes([30, 0, 0, 0, 5]) + bytes(20),
]


lba = st.one_of(st.integers(0, 40), st.integers(0, 2**64 - 1))
blocks = st.one_of(st.integers(0, 8), st.integers(0, 2**32 - 1))
alloc = st.one_of(st.integers(0, 300), st.integers(0, 2**32 - 1))
page = st.one_of(st.sampled_from([0x00, 0x80, 0x83, 0xB0, 0xB2, 0x08, 0x0A, 0x3F]),
                 st.integers(0, 255))
small = st.integers(0, 0x3F)
# Where the interesting fields of each command sit: (offset, size, values).
FIELDS = {
    Op.REQUEST_SENSE: [(4, 1, alloc)],
    Op.READ_6: [(3, 1, lba), (4, 1, blocks)],
    Op.WRITE_6: [(3, 1, lba), (4, 1, blocks)],
    Op.INQUIRY: [(1, 1, st.integers(0, 1)), (2, 1, page), (3, 2, alloc)],
    Op.MODE_SELECT_6: [(1, 1, st.sampled_from([0x10, 0x11, 0x00])), (4, 1, alloc)],
    Op.MODE_SENSE_6: [(1, 1, st.sampled_from([0, 8])), (2, 1, page), (4, 1, alloc)],
    Op.START_STOP_UNIT: [(4, 1, small)],
    Op.READ_CAPACITY_10: [(2, 4, lba), (8, 1, st.integers(0, 1))],
    Op.READ_10: [(1, 1, st.sampled_from([0, 8, 0x10])), (2, 4, lba), (7, 2, blocks)],
    Op.WRITE_10: [(1, 1, st.sampled_from([0, 8, 0x10])), (2, 4, lba), (7, 2, blocks)],
    Op.VERIFY_10: [(1, 1, st.sampled_from([0, 2, 4, 6])), (2, 4, lba), (7, 2, blocks)],
    Op.SYNCHRONIZE_CACHE_10: [(2, 4, lba), (7, 2, blocks)],
    Op.UNMAP: [(7, 2, st.sampled_from([0, 4, 8, 24, 40, 300]))],
    Op.MODE_SELECT_10: [(1, 1, st.sampled_from([0x10, 0x11, 0x00])), (7, 2, alloc)],
    Op.MODE_SENSE_10: [(1, 1, st.sampled_from([0, 8, 0x10, 0x18])), (2, 1, page), (7, 2, alloc)],
    Op.READ_16: [(2, 8, lba), (10, 4, blocks)],
    Op.WRITE_16: [(2, 8, lba), (10, 4, blocks)],
    Op.SYNCHRONIZE_CACHE_16: [(2, 8, lba), (10, 4, blocks)],
    Op.SERVICE_ACTION_IN_16: [(1, 1, st.sampled_from([0x10, 0x10, 0x11])), (10, 4, alloc)],
    Op.REPORT_LUNS: [(2, 1, st.integers(0, 3)), (6, 4, alloc)],
    Op.READ_12: [(2, 4, lba), (6, 4, blocks)],
    Op.WRITE_12: [(2, 4, lba), (6, 4, blocks)],
}


@st.composite
def commands(draw):
    """Half raw (any opcode, any bytes), half shaped (an implemented opcode, its CDB
    length, plausible field values), so that many commands get as far as moving data."""
    if draw(st.booleans()):
        op = draw(opcode)
        cdb = bytearray([op, *draw(st.lists(cdb_byte, min_size=5, max_size=15))])
    else:
        op = draw(st.sampled_from(IMPLEMENTED))
        cdb = bytearray(cdb_length(op) or 6)
        cdb[0] = op
        for offset, size, values in FIELDS.get(Op(op), []):
            value = draw(values) & ((1 << (8 * size)) - 1)
            cdb[offset:offset + size] = value.to_bytes(size, "big")
    lun = draw(st.sampled_from([0, 0, 0, 0, 0, 0, 1, 7]))
    prefix = draw(st.one_of(st.binary(max_size=48), st.sampled_from(PARAMETER_LISTS)))
    return lun, bytes(cdb), prefix


def check_request(disk: ScsiDisk, lun: int, cdb: bytes, prefix: bytes) -> None:
    req = disk.request(lun, cdb)
    if req.direction is DataDirection.NONE:
        assert req.transfer_length == 0
    else:
        assert req.transfer_length > 0
    if req.direction is DataDirection.FROM_DEVICE:
        data = req.data_in()
        assert isinstance(data, bytes) and len(data) == req.transfer_length
        if cdb[0] == Op.REQUEST_SENSE and len(data) >= 14:
            parse_fixed_sense(data)
    elif req.direction is DataDirection.TO_DEVICE:
        n = req.transfer_length
        req.data_out((prefix + bytes(n))[:n])
    assert req.status in (ScsiStatus.GOOD, ScsiStatus.CHECK_CONDITION)
    if req.status is ScsiStatus.GOOD:
        assert req.sense == b""
    else:
        sense = req.sense
        assert len(sense) == 18 and sense[0] & 0x7F == 0x70 and sense[7] == 10
        assert parse_fixed_sense(sense).key != 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(commands(), min_size=1, max_size=8), st.sets(st.integers(0, 31), max_size=3),
       st.booleans(), st.sampled_from([512, 4096]), st.booleans())
def test_random_commands_always_end_in_a_valid_status(cmds, bad, readonly, block_size,
                                                      consume_unit_attention):
    backend = MemoryBackend(32, block_size)
    backend.bad_blocks = bad
    backend.readonly = readonly
    disk = ScsiDisk(backend, serial="FUZZ")
    if consume_unit_attention:
        check_request(disk, 0, bytes([Op.REQUEST_SENSE, 0, 0, 0, 18, 0]), b"")
    for lun, cdb, prefix in cmds:
        check_request(disk, lun, cdb, prefix)
    saved = disk.save_state()
    assert json.loads(json.dumps(saved)) == saved
    ScsiDisk(backend, serial="FUZZ").load_state(saved)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=20))
def test_decoding_any_bytes_either_decodes_or_is_a_check_condition(cdb):
    try:
        decode(cdb)
    except CheckCondition as error:
        assert len(error.sense()) == 18
