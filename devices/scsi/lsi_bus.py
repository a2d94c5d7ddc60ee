"""The SCSI bus as the LSI53C895A's initiator sees it: one connection at a time to a
target, moving through the information transfer phases of SPI-3.

After selection the target asks for MSG OUT (always, as QEMU's target does: QEMU never
looks at the SELECT instruction's ATN bit, so guests validated on it may not set it), takes
the IDENTIFY message (and ignores SDTR/WDTR/PPR and queue tags, as QEMU does; anything else
earns a MESSAGE REJECT), takes the CDB in COMMAND (its length from the opcode group),
moves the request's data in DATA IN or DATA OUT, sends the status byte in STATUS and
COMMAND COMPLETE in MSG IN, then goes bus free. The controller buffers the whole transfer
so the SCRIPTS program may move it in pieces of any size.

READ commands disconnect as they do on QEMU (whose disk reads complete asynchronously):
after the CDB the target sends SAVE DATA POINTER and DISCONNECT and goes bus free; the
next WAIT RESELECT finds it waiting to reselect, and it comes back in MSG IN with an
IDENTIFY (and the queue tag, if any) before DATA IN. ``disconnect_reads=False`` gives the
plain connected flow instead. Reselection never raises SIST0.RSL by itself (the
interrupt-driven reselection of QEMU is not modelled).

The SCRIPTS processor moves bytes with :meth:`ScsiBus.take_in` (DATA IN, STATUS, MSG IN)
and :meth:`ScsiBus.give_out` (DATA OUT, COMMAND, MSG OUT); when the target has fewer bytes
to give or take than a block move asks for, the move ends short and the phase has
changed, which the processor reports as a phase mismatch in DATA IN and DATA OUT.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from devices.scsi.cdb import READS, cdb_length
from devices.scsi.lsi_registers import Phase
from devices.scsi.target import DataDirection, ScsiRequest, ScsiTarget

# SPI-3 messages (SCSI Parallel Interface-3, 16.3)
MSG_COMMAND_COMPLETE = 0x00
MSG_EXTENDED = 0x01
MSG_SAVE_DATA_POINTER = 0x02
MSG_DISCONNECT = 0x04
MSG_ABORT = 0x06
MSG_REJECT = 0x07
MSG_NOP = 0x08
MSG_BUS_DEVICE_RESET = 0x0C
MSG_ABORT_TAG = 0x0D
MSG_CLEAR_QUEUE = 0x0E
MSG_SIMPLE_QUEUE_TAG = 0x20
MSG_HEAD_OF_QUEUE_TAG = 0x21
MSG_ORDERED_QUEUE_TAG = 0x22
MSG_IDENTIFY = 0x80  # bit 7 set: IDENTIFY; bit 6 disconnect privilege; bits 2:0 LUN
EXT_SDTR = 0x01  # synchronous data transfer request
EXT_WDTR = 0x03  # wide data transfer request
EXT_PPR = 0x04  # parallel protocol request
IGNORED_EXTENDED = (EXT_SDTR, EXT_WDTR, EXT_PPR)  # QEMU accepts them silently
MAX_CDB_LENGTH = 16

NOT_CONNECTED = -1


@dataclass
class Connection:
    """The nexus in progress: which target, where in the command, what is buffered.

    Plain data only, so a command in flight survives suspend and resume; the target's
    request object is rebuilt from the CDB when a DATA OUT transfer completes after a
    restore.
    """

    target_id: int = NOT_CONNECTED
    lun: int = 0
    phase: int = Phase.DATA_OUT
    atn: bool = False
    msg_out: bytes = b""  # an incomplete message, waiting for more MSG OUT bytes
    msg_in: bytes = b""  # bytes the target will send in MSG IN
    cdb: bytes = b""
    cdb_expected: int = 0  # 0 until the opcode byte arrives
    command_issued: bool = False
    direction: str = DataDirection.NONE.value
    data: bytes = b""  # DATA IN: the whole transfer; DATA OUT: what arrived so far
    data_length: int = 0
    data_position: int = 0
    status: int = 0
    status_sent: bool = False
    tag: int = -1
    disconnecting: bool = False  # bus free after the MSG IN bytes, to reselect later

    @property
    def connected(self) -> bool:
        return self.target_id != NOT_CONNECTED


class ScsiBus:
    """The targets on the controller's bus and the one connection the initiator holds."""

    def __init__(self, targets: dict[int, ScsiTarget], *, disconnect_reads: bool = True) -> None:
        for target_id in targets:
            if not 0 <= target_id <= 15:
                raise ValueError(f"SCSI target ID {target_id} is outside 0-15")
        self.targets = dict(targets)
        self.disconnect_reads = disconnect_reads
        self.conn = Connection()
        self.suspended: list[Connection] = []  # disconnected nexuses waiting to reselect
        self._request: ScsiRequest | None = None  # live object behind a DATA OUT

    # -- bus conditions -------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self.conn.connected

    @property
    def phase(self) -> int:
        return self.conn.phase

    def reset(self) -> None:
        """SCSI RST: every target forgets its commands and reports a unit attention."""
        self.disconnect()
        self.suspended.clear()
        for target in self.targets.values():
            target.bus_reset()

    def disconnect(self) -> None:
        """Bus free: the command in progress (if any) is dropped."""
        self.conn = Connection()
        self._request = None

    def select(self, target_id: int, atn: bool, wide: bool) -> bool:
        """Arbitrate and select; False when nobody answers (a selection timeout)."""
        if target_id not in self.targets or (target_id > 7 and not wide):
            return False
        self.conn = Connection(target_id=target_id, atn=atn)
        self._request = None
        self.conn.phase = Phase.MSG_OUT  # QEMU: even without ATN
        return True

    def set_atn(self) -> None:
        """The initiator raises ATN: the target answers with MSG OUT (at once, as QEMU)."""
        if self.conn.connected:
            self.conn.atn = True
            self.conn.phase = Phase.MSG_OUT

    def clear_atn(self) -> None:
        self.conn.atn = False

    def reselect(self) -> int | None:
        """A disconnected target wins the bus back: it returns in MSG IN with IDENTIFY
        (and its queue tag). Returns its ID, or None when nobody is waiting."""
        if self.conn.connected or not self.suspended:
            return None
        c = self.suspended.pop(0)
        c.msg_in = bytes([MSG_IDENTIFY | c.lun])
        if c.tag >= 0:
            c.msg_in += bytes([MSG_SIMPLE_QUEUE_TAG, c.tag])
        c.atn = False
        c.phase = Phase.MSG_IN
        self.conn = c
        return c.target_id

    def peek_msg_in(self) -> int:
        """The byte on the data lines during MSG IN (SBDL), else 0."""
        if self.conn.connected and self.conn.phase == Phase.MSG_IN and self.conn.msg_in:
            return self.conn.msg_in[0]
        return 0

    # -- the target's side of the phase sequence ---------------------------------------------
    def _next_phase(self) -> None:
        """Where the target goes once the current phase has nothing more to move."""
        c = self.conn
        if not c.connected:
            return
        if c.msg_in:
            c.phase = Phase.MSG_IN
        elif c.atn:
            c.phase = Phase.MSG_OUT
        elif not c.command_issued:
            c.phase = Phase.COMMAND
        elif c.data_position < c.data_length:
            c.phase = Phase.DATA_IN if c.direction == DataDirection.FROM_DEVICE.value else Phase.DATA_OUT
        elif not c.status_sent:
            c.phase = Phase.STATUS
        else:
            self.disconnect()  # COMMAND COMPLETE has gone: bus free

    def wanted_out(self, count: int) -> int:
        """How many of ``count`` bytes the target takes in the current OUT phase."""
        c = self.conn
        if c.phase == Phase.DATA_OUT:
            return min(count, max(c.data_length - c.data_position, 0)) if c.command_issued else 0
        if c.phase == Phase.COMMAND:
            if c.command_issued:
                return 0
            if c.cdb_expected:
                return min(count, c.cdb_expected - len(c.cdb))
            return count if count <= MAX_CDB_LENGTH else MAX_CDB_LENGTH
        return count  # MSG OUT: the target takes bytes while ATN is up

    def give_out(self, data: bytes) -> int:
        """Bytes from the initiator in DATA OUT, COMMAND or MSG OUT; returns how many the
        target took before it changed phase."""
        c = self.conn
        if not c.connected:
            return 0
        if c.phase == Phase.MSG_OUT:
            return self._message_out(data)
        if c.phase == Phase.COMMAND:
            return self._command_out(data)
        if c.phase == Phase.DATA_OUT:
            return self._data_out(data)
        return 0

    def take_in(self, count: int) -> bytes:
        """Up to ``count`` bytes from the target in DATA IN, STATUS or MSG IN."""
        c = self.conn
        if not c.connected or count <= 0:
            return b""
        if c.phase == Phase.DATA_IN:
            chunk = c.data[c.data_position : c.data_position + count]
            c.data_position += len(chunk)
            if c.data_position >= c.data_length:
                self._next_phase()
            return chunk
        if c.phase == Phase.STATUS:
            c.status_sent = True
            c.msg_in = bytes([MSG_COMMAND_COMPLETE])
            self._next_phase()
            return bytes([c.status])
        if c.phase == Phase.MSG_IN:
            chunk, c.msg_in = c.msg_in[:count], c.msg_in[count:]
            if not c.msg_in and c.disconnecting:
                c.disconnecting = False  # DISCONNECT has gone: bus free until reselection
                self.suspended.append(c)
                self.conn = Connection()
            elif not c.msg_in:
                self._next_phase()
            return chunk
        return b""

    # -- MSG OUT ----------------------------------------------------------------------------
    def _message_out(self, data: bytes) -> int:
        c = self.conn
        for taken, byte in enumerate(data, start=1):
            c.msg_out += bytes([byte])
            if not self._message_complete(c.msg_out):
                continue
            message, c.msg_out = c.msg_out, b""
            self._handle_message(message)
            if not self.conn.connected or self.conn.phase != Phase.MSG_OUT:
                return taken  # the target changed phase (or went bus free) at once
        # The initiator drops ATN with the last byte of a MSG OUT move.
        c.atn = False
        if not c.msg_out:
            self._next_phase()
        return len(data)

    @staticmethod
    def _message_complete(message: bytes) -> bool:
        first = message[0]
        if first == MSG_EXTENDED:
            if len(message) < 2:
                return False
            length = message[1] or 256
            return len(message) >= 2 + length
        if 0x20 <= first <= 0x2F:  # two-byte messages (queue tags among them)
            return len(message) >= 2
        return True

    def _handle_message(self, message: bytes) -> None:
        c = self.conn
        first = message[0]
        if first & MSG_IDENTIFY:
            c.lun = first & 0x07
        elif first == MSG_EXTENDED:
            if len(message) < 3 or message[2] not in IGNORED_EXTENDED:
                self._reject()
        elif first in (MSG_SIMPLE_QUEUE_TAG, MSG_HEAD_OF_QUEUE_TAG, MSG_ORDERED_QUEUE_TAG):
            c.tag = message[1]
        elif first in (MSG_ABORT, MSG_ABORT_TAG, MSG_CLEAR_QUEUE, MSG_BUS_DEVICE_RESET, MSG_DISCONNECT):
            self.disconnect()  # QEMU: the command is cancelled and the target goes bus free
        elif first == MSG_NOP:
            pass
        else:
            self._reject()

    def _reject(self) -> None:
        c = self.conn
        c.msg_in += bytes([MSG_REJECT])
        c.atn = False
        c.phase = Phase.MSG_IN

    # -- COMMAND ----------------------------------------------------------------------------
    def _command_out(self, data: bytes) -> int:
        c = self.conn
        if not c.cdb and data:
            # The opcode's group gives the length; a vendor-specific group takes what
            # the block move offers, up to 16 bytes (as QEMU does).
            c.cdb_expected = cdb_length(data[0]) or min(len(data), MAX_CDB_LENGTH)
        taken = min(len(data), c.cdb_expected - len(c.cdb))
        c.cdb += data[:taken]
        if c.cdb and len(c.cdb) >= c.cdb_expected:
            self._issue()
        return taken

    def _issue(self) -> None:
        """The CDB is complete: hand it to the target and buffer what it returns."""
        c = self.conn
        request = self.targets[c.target_id].request(c.lun, c.cdb)
        c.command_issued = True
        c.direction = request.direction.value
        length = max(int(request.transfer_length), 0)
        if request.direction is DataDirection.FROM_DEVICE and length:
            c.data = bytes(request.data_in())[:length]
            c.data_length = len(c.data)
            c.status = int(request.status)
            if self.disconnect_reads and c.cdb[0] in READS and c.data_length:
                c.msg_in = bytes([MSG_SAVE_DATA_POINTER, MSG_DISCONNECT])
                c.disconnecting = True
        elif request.direction is DataDirection.TO_DEVICE and length:
            c.data = bytearray()  # DATA OUT appends to it in place
            c.data_length = length
            self._request = request
        else:
            c.status = int(request.status)
        self._next_phase()

    # -- DATA OUT ---------------------------------------------------------------------------
    def _data_out(self, data: bytes) -> int:
        c = self.conn
        taken = self.wanted_out(len(data))
        c.data += data[:taken]  # a bytearray (_issue): a scatter list of pages is linear
        c.data_position += taken
        if c.data_position >= c.data_length:
            request = self._request
            if request is None:  # restored from a saved state: ask the target again
                request = self.targets[c.target_id].request(c.lun, c.cdb)
            request.data_out(c.data)
            c.status = int(request.status)
            c.data = b""
            self._request = None
            self._next_phase()
        return taken

    # -- saved state ------------------------------------------------------------------------
    def save_state(self) -> dict[str, Any]:
        return {
            "connection": _plain_connection(self.conn),
            "suspended": [_plain_connection(nexus) for nexus in self.suspended],
            "disconnect_reads": self.disconnect_reads,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.conn = _connection(state["connection"])
        self.suspended = [_connection(nexus) for nexus in state["suspended"]]
        self.disconnect_reads = bool(state["disconnect_reads"])
        self._request = None


def _connection(state: dict[str, Any]) -> Connection:
    conn = Connection(**state)
    if conn.direction == DataDirection.TO_DEVICE.value:
        conn.data = bytearray(conn.data)  # a DATA OUT in progress goes on appending
    return conn


def _plain_connection(conn: Connection) -> dict[str, Any]:
    state = asdict(conn)
    state["data"] = bytes(conn.data)  # a DATA OUT in progress is a bytearray
    return state
