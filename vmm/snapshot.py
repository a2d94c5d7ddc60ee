"""Suspend a machine to a VM image and resume it, in this process or another.

Suspend happens between slices, at an instruction boundary with no event half
delivered: the CPU's architectural state, guest RAM, every device's saved state,
virtual time, and for each disk a snapshot point, so that the image and the disk
contents it refers to always match (the disk's later writes land in a new overlay).
Resume builds the same machine from the image's configuration, checks that each
disk's chain is still the one the image refers to, and loads everything back; the
guest cannot tell.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from vmm.cpu_state import load_cpu_state, save_cpu_state
from vmm.image import ImageError, read_image, write_image
from vmm.machine import Machine, MachineConfig, NicConfig

STATE_VERSION = 1


def suspend(machine: Machine, path: str | Path) -> int:
    """Write ``machine`` to the image at ``path``; returns the image's size."""
    disks = []
    if machine.disk_set is not None:
        machine.disk_set.flush()
        for opened in machine.disk_set.disks:
            opened.disk.snapshot()  # writes after this point land in a new overlay
            disks.append({"spec": opened.spec, "chain": opened.disk.chain()})
    state = {
        "version": STATE_VERSION,
        "config": _config_to_plain(machine.config),
        "disks": disks,
        "cpu": save_cpu_state(machine.cpu),
        "clock": machine.clock.save_state(),
        "devices": {name: part.save_state() for name, part in machine.stateful_parts().items()},
        "nic_frames": machine.pending_frames(),
    }
    return write_image(path, state, machine.memory.view)


def resume(path: str | Path, serial_out=None, serial: str | None = None) -> Machine:
    """A machine in the state the image at ``path`` holds, ready to run."""
    image = read_image(path)
    state = image.state
    where = str(path)
    if state.get("version") != STATE_VERSION:
        raise ImageError(f"{where}: machine state version {state.get('version')} is not {STATE_VERSION}")
    try:
        config = _config_from_plain(state["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ImageError(f"{where}: machine configuration damaged ({exc})") from None
    if serial is not None:
        config.serial = serial
    config.redo = False  # the image's disks already end in the overlay made at suspend
    if image.ram_size != config.memory_mib * 1024 * 1024:
        raise ImageError(f"{where}: RAM of {image.ram_size} bytes does not match {config.memory_mib} MiB")
    machine = Machine(config, serial_out=serial_out)
    try:
        _check_disks(machine, state.get("disks", []), where)
        image.load_ram(machine.memory.view)  # fresh RAM is zero: only stored pages move
        machine.memory.invalidate_code(0, machine.memory.size)
        parts = machine.stateful_parts()
        saved_parts = state["devices"]
        if set(parts) != set(saved_parts):
            raise ImageError(f"{where}: devices {sorted(saved_parts)} do not match the machine's {sorted(parts)}")
        for name, part in parts.items():
            part.load_state(saved_parts[name])
        load_cpu_state(machine.cpu, state["cpu"])
        machine.clock.load_state(state["clock"])
        machine.queue_frames(state.get("nic_frames", []))
    except ImageError:
        machine.close()
        raise
    except (KeyError, TypeError, ValueError) as exc:
        machine.close()
        raise ImageError(f"{where}: saved state damaged ({exc})") from None
    return machine


def _check_disks(machine: Machine, recorded: list[dict[str, Any]], where: str) -> None:
    opened = machine.disk_set.disks if machine.disk_set is not None else []
    for saved, disk in zip(recorded, opened):
        if disk.disk.chain() != saved["chain"]:
            raise ImageError(
                f"{where}: disk {saved['spec']} has changed since the image was made "
                f"(chain {disk.disk.chain()}, the image refers to {saved['chain']})"
            )


def _config_to_plain(config: MachineConfig) -> dict[str, Any]:
    plain = dataclasses.asdict(config)
    plain["initrds"] = [str(p) for p in config.initrds]
    return plain


def _config_from_plain(plain: dict[str, Any]) -> MachineConfig:
    fields = dict(plain)
    nic = fields.pop("nic", None)
    fields["initrds"] = [Path(p) for p in fields.get("initrds", [])]
    config = MachineConfig(**fields)
    if nic is not None:
        config.nic = NicConfig(**nic)
    return config
