"""``vmm run --stats``: the exit table, per reason and per device, like kvm_stat."""

from __future__ import annotations

from typing import TYPE_CHECKING, TextIO

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from vmm.machine import Machine


def print_stats(machine: Machine, stream: TextIO) -> None:
    stats = machine.stats
    table = Table(title="VM exits", title_justify="left")
    table.add_column("reason")
    table.add_column("device")
    table.add_column("count", justify="right")
    for reason, count in sorted(stats.by_reason.items(), key=lambda item: -item[1]):
        table.add_row(reason, "", str(count))
    for device, count in sorted(stats.by_device.items(), key=lambda item: -item[1]):
        table.add_row("", device, str(count))
    if machine.fast.hook_always:  # otherwise the block hook runs only to stop the guest
        table.add_row("guest code", f"{machine.fast.blocks} blocks", f"{machine.fast.code_bytes} bytes")
    table.add_row("virtual time", "", f"{machine.clock.now_ns() / 1e9:.6f} s")
    Console(file=stream, width=100).print(table)
