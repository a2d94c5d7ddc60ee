"""What a SCSI controller sees of a target: requests that move data and end in a status.

The controller model (lsi53c895a.py) knows phases and SCRIPTS; a target (disk.py) knows
commands. They meet here, in the shape of SAM-5's execute-command procedure: the
controller hands over a LUN and a CDB and gets a :class:`ScsiRequest` that says which way
data flows and how much; it then takes the data in, or gives the data out, in one piece
(the controller buffers partial block moves) and reads the status and sense.
"""

from __future__ import annotations

import enum
from typing import Protocol, runtime_checkable


class ScsiStatus(enum.IntEnum):
    """SAM-5 status codes."""

    GOOD = 0x00
    CHECK_CONDITION = 0x02
    CONDITION_MET = 0x04
    BUSY = 0x08
    RESERVATION_CONFLICT = 0x18
    TASK_SET_FULL = 0x28
    ACA_ACTIVE = 0x30
    TASK_ABORTED = 0x40


class DataDirection(enum.Enum):
    NONE = "none"
    FROM_DEVICE = "data-in"  # the DATA IN phase: target to initiator
    TO_DEVICE = "data-out"  # the DATA OUT phase: initiator to target


@runtime_checkable
class ScsiRequest(Protocol):
    """One command in flight on a target.

    ``direction`` and ``transfer_length`` are known as soon as the CDB is decoded. For
    FROM_DEVICE, :meth:`data_in` returns exactly ``transfer_length`` bytes; for
    TO_DEVICE, :meth:`data_out` takes exactly ``transfer_length`` bytes and executes the
    command. ``status`` and ``sense`` are final once the data has moved (at once for
    NONE). A request that fails before any data moves has ``transfer_length`` 0.
    """

    direction: DataDirection
    transfer_length: int

    def data_in(self) -> bytes: ...

    def data_out(self, data: bytes) -> None: ...

    @property
    def status(self) -> ScsiStatus: ...

    @property
    def sense(self) -> bytes: ...


@runtime_checkable
class ScsiTarget(Protocol):
    """A device at one target ID, with logical units behind it."""

    def luns(self) -> list[int]: ...

    def request(self, lun: int, cdb: bytes) -> ScsiRequest: ...

    def bus_reset(self) -> None:
        """A SCSI bus reset (or power-on): pending unit attention for every initiator."""
        ...
