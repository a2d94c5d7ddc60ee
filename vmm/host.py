"""The host process: processing units that run VMs, and the scheduler that places VMs on
units and moves running VMs between them.

A processing unit is a worker thread that runs at most one VM's run loop at a time.
Unicorn runs guest code without Python's global lock, so units run in parallel. The
scheduler puts a new VM on the least loaded unit; a unit with more than one VM gives
each a time slice of ``QUANTUM`` seconds in turn. Moving a VM stops its run loop at the
next slice boundary (the instant a suspend would write an image: no event half
delivered) and continues the same machine, with the same virtual disks, NIC and
console, on the other unit. Suspending writes an image as ``vmm suspend`` does;
checkpoints (vmm/checkpoint.py) write one while the VM keeps running.

``Host`` is the API; ``HostServer`` puts it behind a Unix control socket speaking JSON
lines (one request, one reply per connection), which ``vmm host``/``vmm vm`` use
(vmm/host_cli.py, docs/host.md).
"""

from __future__ import annotations

import collections
import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vmm.jsonsocket import JsonLineServer
from vmm.jsonsocket import request as json_request
from vmm.checkpoint import Checkpoint, CheckpointError, Checkpointer, CheckpointStore, restart
from vmm.runloop import PARKED, ExitStatus, RunLoop, RunResult

QUANTUM = 0.05  # seconds a VM runs before another VM waiting on its unit gets a turn
WAIT_TIMEOUT = 120.0


class HostError(Exception):
    """A request the host cannot carry out; the message says why, in one line."""


# -- the run loop a unit drives ---------------------------------------------------------------

# -- consoles -------------------------------------------------------------------------------------

class Console:
    """Where a VM's COM1 output goes: a file of its own, or the host's stdout."""

    def __init__(self, path: str, append: bool = False) -> None:
        self.path = path
        if path == "stdio":
            self._file = sys.stdout.buffer
        else:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "ab" if append else "wb")

    def write(self, data: bytes) -> int:
        return self._file.write(data)

    def flush(self) -> None:
        self._file.flush()

    def offset(self) -> int | None:
        """Bytes written so far (None on stdout)."""
        if self.path == "stdio":
            return None
        self._file.flush()
        return self._file.tell()

    def close(self) -> None:
        if self.path != "stdio":
            self._file.close()


# -- VMs and units ---------------------------------------------------------------------------------

@dataclass
class Vm:
    """One VM of the host: its machine, its run loop, where it runs and how it ended."""

    name: str
    machine: Any
    loop: RunLoop
    console: Console
    directory: Path  # the VM's files in the host's state directory (checkpoints)
    kernel: str | None = None
    state: str = "queued"  # queued, running, suspended, exited, failed, stopped
    unit: int | None = None
    target_unit: int | None = None  # set while a move is under way
    status: int | None = None
    reason: str = ""
    image: str | None = None  # where it was suspended to
    moves: int = 0
    turns: int = 0  # how many times a unit started running it
    ran_on: set[int] = field(default_factory=set)  # the units it ran on
    checkpointer: Checkpointer | None = None
    restarted_from: str | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def describe(self) -> dict[str, Any]:
        info = {
            "name": self.name, "state": self.state, "unit": self.unit, "kernel": self.kernel,
            "console": self.console.path, "status": self.status, "reason": self.reason,
            "moves": self.moves, "ran_on": sorted(self.ran_on), "image": self.image,
            "restarted_from": self.restarted_from,
        }
        if self.checkpointer is not None:
            last = self.checkpointer.last
            info["checkpoints"] = {
                "every": self.checkpointer.every, "keep": self.checkpointer.keep,
                "taken": self.checkpointer.taken, "last": str(last.image) if last else None,
                "error": self.checkpointer.error,
            }
        return info

    @property
    def ended(self) -> bool:
        return self.state in ("suspended", "exited", "failed", "stopped")


class Unit:
    """A processing unit: a worker thread running one VM's run loop at a time."""

    def __init__(self, host: Host, index: int) -> None:
        self.host = host
        self.index = index
        self.queue: collections.deque[Vm] = collections.deque()
        self.current: Vm | None = None
        self.started = 0.0  # when the current VM's turn began
        self.thread = threading.Thread(target=self._serve, name=f"vmm-unit-{index}", daemon=True)
        self.thread.start()

    def load(self) -> int:
        return len(self.queue) + (self.current is not None)

    def _serve(self) -> None:
        host = self.host
        while True:
            with host.lock:
                while not self.queue and not host.closing:
                    host.changed.wait()
                if host.closing:
                    return
                vm = self.queue.popleft()
                self.current, self.started = vm, time.monotonic()
                vm.state, vm.unit = "running", self.index
                vm.turns += 1
                vm.ran_on.add(self.index)
                host.changed.notify_all()
            error: BaseException | None = None
            result: RunResult | None = None
            try:
                result = vm.loop.run()
            except BaseException as exc:  # the unit failed under this VM
                error = exc
            with host.lock:
                self.current = None
                host._after_run(self, vm, result, error)
                host.changed.notify_all()


# -- the host ------------------------------------------------------------------------------------

class Host:
    """N processing units and the VMs placed on them."""

    def __init__(self, units: int, state_dir: str | Path = "vmm-host", quantum: float = QUANTUM) -> None:
        if units < 1:
            raise HostError("a host needs at least one unit")
        self.state_dir = Path(state_dir).resolve()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.closing = False
        self.quantum = quantum
        self.vms: dict[str, Vm] = {}
        self.units = [Unit(self, i) for i in range(units)]
        self._ticker = threading.Thread(target=self._time_slices, name="vmm-scheduler", daemon=True)
        self._ticker.start()

    # -- creating VMs ---------------------------------------------------------------------
    def start(self, kernel: str | Path, config, name: str | None = None, unit: int | None = None) -> Vm:
        """Boot ``kernel`` in a new VM with ``config`` (a MachineConfig) and place it."""
        from vmm.disks import DiskError
        from vmm.loaders import LoaderError
        from vmm.machine import Machine
        from vmm.netbackend import NicBackendError

        if unit is not None:
            self._unit(unit)
        with self.lock:
            name = self._new_name(name)
            directory = self._claim_directory(name)
        config.disks = [_absolute_disk(spec) for spec in config.disks]
        if not config.serial:
            config.serial = str(directory / "console.log")
        elif config.serial != "stdio":
            config.serial = str(Path(config.serial).resolve())
        console = Console(config.serial)
        try:
            machine = Machine(config, serial_out=console)
            machine.load(Path(kernel))
        except (LoaderError, DiskError, NicBackendError, OSError) as exc:
            console.close()
            _forget_directory(directory, config.serial)
            if isinstance(exc, OSError) and exc.strerror:
                raise HostError(f"{exc.filename or kernel}: {exc.strerror}") from None
            raise HostError(str(exc)) from None
        vm = Vm(name, machine, RunLoop(machine, None), console, directory, kernel=str(kernel))
        _write_record(directory, {"name": name, "kernel": str(kernel), "console": config.serial})
        self._place(vm, unit)
        return vm

    def resume(self, image: str | Path, serial: str | None = None, name: str | None = None,
               unit: int | None = None) -> Vm:
        """Continue a VM from a suspended image on a unit (console appended to)."""
        from vmm.disks import DiskError
        from vmm.image import ImageError
        from vmm.netbackend import NicBackendError
        from vmm.snapshot import resume

        if unit is not None:
            self._unit(unit)
        console = _LateConsole()
        try:
            machine = resume(image, serial_out=console, serial=serial)
        except (ImageError, DiskError, NicBackendError) as exc:
            raise HostError(str(exc)) from None
        console.open(machine.config.serial, append=True)
        with self.lock:
            name = self._new_name(name)
            directory = self._claim_directory(name)
        vm = Vm(name, machine, RunLoop(machine, None), console.console, directory)
        _write_record(directory, {"name": name, "kernel": None, "console": machine.config.serial})
        self._place(vm, unit)
        return vm

    def restart(self, name: str, unit: int | None = None) -> Vm:
        """Restart VM ``name`` from its newest usable checkpoint (after its unit failed,
        or in a new host process after the old one died)."""
        with self.lock:
            old = self.vms.get(name)
            if old is not None and not old.ended:
                raise HostError(f"{name} is {old.state}; only a VM that ended or whose host died restarts")
        if unit is not None:
            self._unit(unit)
        directory = self.state_dir / name
        store = CheckpointStore(directory / "checkpoints")
        candidates = store.checkpoints()
        if not candidates:
            raise HostError(f"{name}: no checkpoint in {store.directory}")
        errors = []
        for checkpoint in reversed(candidates):  # newest first; a damaged one falls back
            console = _LateConsole()
            try:
                machine = restart(checkpoint, serial_out=console)
            except CheckpointError as exc:
                errors.append(str(exc))
                continue
            console.open(machine.config.serial, append=True)
            vm = Vm(name, machine, RunLoop(machine, None), console.console, directory,
                    restarted_from=str(checkpoint.image))
            record = _read_record(directory)
            vm.kernel = record.get("kernel")
            with self.lock:
                self.vms.pop(name, None)
            self._place(vm, unit)
            periodic = record.get("checkpoints")
            if periodic:  # it keeps being checkpointed as before
                try:
                    self.checkpoint(name, float(periodic["every"]), int(periodic["keep"]))
                except HostError:
                    pass  # it ended already
            return vm
        raise HostError(f"{name}: no checkpoint restarts: " + "; ".join(errors))

    # -- placing and moving ---------------------------------------------------------------
    def _place(self, vm: Vm, unit: int | None) -> None:
        with self.lock:
            if unit is not None:
                target = self._unit(unit)
            else:
                target = min(self.units, key=lambda u: (u.load(), u.index))
            self.vms[vm.name] = vm
            vm.state, vm.unit = "queued", target.index
            target.queue.append(vm)
            self.changed.notify_all()

    def move(self, name: str, unit: int, timeout: float = WAIT_TIMEOUT) -> Vm:
        """Move VM ``name`` to ``unit``; returns once it runs there (or waits its turn
        there behind another VM, or ended meanwhile)."""
        with self.lock:
            vm = self.vm(name)
            target = self._unit(unit)
            if vm.ended:
                raise HostError(f"{name} is {vm.state}")
            if vm.unit == unit and vm.target_unit is None:
                return vm
            if vm.state == "queued":
                self.units[vm.unit].queue.remove(vm)
                vm.moves += 1
                vm.unit = unit
                target.queue.append(vm)
                self.changed.notify_all()
                return vm
            vm.target_unit = unit
            vm.loop.request_park()
            deadline = time.monotonic() + timeout
            while not self._arrived(vm, target):
                if not self.changed.wait(max(0.0, deadline - time.monotonic())):
                    raise HostError(f"{name} did not reach a point to move at")
            return vm

    @staticmethod
    def _arrived(vm: Vm, target: Unit) -> bool:
        if vm.ended:
            return True
        if vm.target_unit is not None or vm.unit != target.index:
            return False
        return vm.state == "running" or (target.current is not None and target.current is not vm)

    def _after_run(self, unit: Unit, vm: Vm, result: RunResult | None, error: BaseException | None) -> None:
        """In the unit's thread, with the lock held: the VM's run loop returned."""
        vm.loop.park_requested = False
        if error is not None:
            self._finish(vm, "failed", ExitStatus.MONITOR_FAILURE,
                         f"unit {unit.index} failed: {type(error).__name__}: {error}")
            return
        if result.status == PARKED:
            if vm.target_unit is not None:
                target, vm.target_unit = self.units[vm.target_unit], None
                vm.moves += 1
            else:
                target = unit  # its time slice ended: to the back of its unit's queue
            vm.state, vm.unit = "queued", target.index
            target.queue.append(vm)
            return
        if result.status == ExitStatus.SUSPENDED:
            vm.image = vm.loop.suspended
            self._finish(vm, "suspended", result.status, result.reason)
            return
        self._finish(vm, "exited", result.status, result.reason)

    def _finish(self, vm: Vm, state: str, status: int, reason: str) -> None:
        vm.target_unit = None
        if vm.checkpointer is not None:
            vm.checkpointer.stop()
        for close in (vm.machine.close, vm.loop.close, vm.console.close):
            try:
                close()
            except Exception as exc:  # the VM ended anyway; say what was left behind
                reason = f"{reason}; closing: {type(exc).__name__}: {exc}".lstrip("; ")
        vm.state, vm.status, vm.reason = state, int(status), reason
        vm.done.set()

    def _time_slices(self) -> None:
        """Give the VMs waiting on a busy unit their turn."""
        while True:
            time.sleep(self.quantum / 2)
            with self.lock:
                if self.closing:
                    return
                now = time.monotonic()
                for unit in self.units:
                    vm = unit.current
                    if vm is not None and unit.queue and now - unit.started >= self.quantum:
                        vm.loop.request_park()

    # -- suspend, checkpoints, waiting ------------------------------------------------------
    def suspend(self, name: str, image: str | Path, timeout: float = WAIT_TIMEOUT) -> Vm:
        """Suspend VM ``name`` to ``image`` (as ``vmm suspend``); it leaves the host."""
        from vmm.snapshot import suspend

        image = os.path.abspath(image)
        with self.lock:
            vm = self.vm(name)
            if vm.ended:
                raise HostError(f"{name} is {vm.state}")
            if vm.state == "queued":  # stopped at a slice boundary: write it from here
                self.units[vm.unit].queue.remove(vm)
                size = suspend(vm.machine, image)
                vm.image = image
                self._finish(vm, "suspended", ExitStatus.SUSPENDED, f"suspended to {image} ({size} bytes)")
                return vm
            vm.loop.request_suspend(image)
        if not vm.done.wait(timeout):
            raise HostError(f"{name} did not reach a point to suspend at")
        if vm.state != "suspended":
            raise HostError(f"{name} {vm.state} before it could suspend ({vm.reason or vm.status})")
        return vm

    def checkpoint(self, name: str, every: float, keep: int) -> Checkpointer:
        """Checkpoint VM ``name`` every ``every`` seconds, keeping the newest ``keep``."""
        with self.lock:
            vm = self.vm(name)
            if vm.ended:
                raise HostError(f"{name} is {vm.state}")
            if vm.checkpointer is not None:
                vm.checkpointer.stop()
            store = CheckpointStore(vm.directory / "checkpoints")
            try:
                vm.checkpointer = Checkpointer(
                    store, every, keep, vm.loop.request_action,
                    lambda: store.take(vm.machine, vm.console.offset()),
                )
            except ValueError as exc:
                raise HostError(str(exc)) from None
            record = _read_record(vm.directory)
            record["checkpoints"] = {"every": every, "keep": keep}
            _write_record(vm.directory, record)
            return vm.checkpointer

    def checkpoint_now(self, name: str, timeout: float = WAIT_TIMEOUT) -> Checkpoint:
        """Take one checkpoint of VM ``name`` at its next slice boundary, and wait for it."""
        done = threading.Event()
        taken: list[Checkpoint] = []
        errors: list[str] = []
        with self.lock:
            vm = self.vm(name)
            if vm.ended:
                raise HostError(f"{name} is {vm.state}")
            store = CheckpointStore(vm.directory / "checkpoints")

            def take() -> None:
                try:
                    taken.append(store.take(vm.machine, vm.console.offset()))
                except Exception as exc:  # a failed checkpoint must not stop the VM
                    errors.append(f"{type(exc).__name__}: {exc}")
                finally:
                    done.set()

            vm.loop.request_action(take)
        while not done.wait(0.05):
            if vm.ended or timeout <= 0:
                raise HostError(f"{name} ended before the checkpoint")
            timeout -= 0.05
        if not taken:
            raise HostError(f"{name}: the checkpoint failed: {'; '.join(errors)}")
        return taken[0]

    def wait(self, name: str, timeout: float | None = None) -> Vm:
        """Wait until VM ``name`` ended (exited, suspended or failed)."""
        vm = self.vm(name)
        if not vm.done.wait(timeout):
            raise HostError(f"{name} still {vm.state} after {timeout:g} s")
        return vm

    # -- looking things up ---------------------------------------------------------------------
    def vm(self, name: str) -> Vm:
        with self.lock:
            try:
                return self.vms[name]
            except KeyError:
                raise HostError(f"no VM named {name!r} on this host") from None

    def _unit(self, index: int) -> Unit:
        if not 0 <= index < len(self.units):
            raise HostError(f"no unit {index} (units 0-{len(self.units) - 1})")
        return self.units[index]

    def list(self) -> dict[str, Any]:
        with self.lock:
            return {
                "units": [
                    {"unit": u.index, "running": u.current.name if u.current else None,
                     "queued": [vm.name for vm in u.queue]}
                    for u in self.units
                ],
                "vms": [vm.describe() for vm in self.vms.values()],
            }

    def _new_name(self, name: str | None) -> str:
        if name is not None:
            if not name or "/" in name or name.startswith("."):
                raise HostError(f"{name!r} is not a VM name")
            if name in self.vms and not self.vms[name].ended:
                raise HostError(f"a VM named {name} already runs here")
            return name
        number = 1
        while f"vm{number}" in self.vms or (self.state_dir / f"vm{number}").exists():
            number += 1
        return f"vm{number}"

    def _claim_directory(self, name: str) -> Path:
        directory = self.state_dir / name
        directory.mkdir(parents=True, exist_ok=True)
        return directory

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop every VM at a slice boundary, close its disks, and stop the units."""
        with self.lock:
            for vm in self.vms.values():
                if vm.checkpointer is not None:
                    vm.checkpointer.stop()
                if vm.state == "running":
                    vm.loop.request_park()
            self.closing = True
            self.changed.notify_all()
        deadline = time.monotonic() + timeout
        for unit in self.units:
            unit.thread.join(max(0.0, deadline - time.monotonic()))
        with self.lock:
            for vm in self.vms.values():
                if not vm.ended and all(u.current is not vm for u in self.units):
                    self._finish(vm, "stopped", PARKED, "the host shut down")


class _LateConsole:
    """A console whose file is opened once the resumed machine says where it goes."""

    def __init__(self) -> None:
        self.console: Console | None = None

    def open(self, path: str, append: bool) -> None:
        self.console = Console(path, append=append)

    def write(self, data: bytes) -> int:
        return self.console.write(data) if self.console else len(data)

    def flush(self) -> None:
        if self.console:
            self.console.flush()


def _forget_directory(directory: Path, console: str) -> None:
    """A VM that never started leaves nothing behind in the state directory."""
    default_console = directory / "console.log"
    if console == str(default_console) and default_console.exists():
        default_console.unlink()
    try:
        directory.rmdir()
    except OSError:
        pass


def _absolute_disk(spec: str) -> str:
    return spec if spec.startswith("pool:") else str(Path(spec).resolve())


def _write_record(directory: Path, record: dict[str, Any]) -> None:
    (directory / "vm.json").write_text(json.dumps(record, indent=1))


def _read_record(directory: Path) -> dict[str, Any]:
    try:
        return json.loads((directory / "vm.json").read_text())
    except (OSError, ValueError):
        return {}


# -- the control socket ---------------------------------------------------------------------------

DEFAULT_SOCKET = "vmm-host.sock"


def default_socket() -> str:
    return os.environ.get("VMM_HOST_SOCKET") or DEFAULT_SOCKET


class HostServer:
    """The host's control socket (JSON lines: vmm/jsonsocket.py)."""

    def __init__(self, host: Host, path: str) -> None:
        self.host = host
        self.path = Path(path)
        self.stopped = threading.Event()
        try:
            self._server = JsonLineServer(path, self._handle_and_note_shutdown, errors=(HostError,))
        except OSError as exc:
            raise HostError(f"{path}: another host process listens there") from exc

    def serve_forever(self) -> None:
        while not self.stopped.wait(0.5):  # a timeout lets signal handlers run
            pass

    def close(self) -> None:
        self._server.close()

    def _handle_and_note_shutdown(self, request: dict[str, Any]) -> dict[str, Any]:
        reply = self.handle(request)
        if reply.get("shutdown"):
            self.stopped.set()
        return reply

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        host = self.host
        command = request.get("command")
        if command == "list":
            return host.list()
        if command == "start":
            vm = host.start(request["kernel"], _config_from_request(request),
                            name=request.get("name"), unit=request.get("unit"))
            reply = {"vm": vm.name, "unit": vm.unit, "console": vm.console.path}
            if request.get("checkpoint_every"):
                checkpointer = host.checkpoint(vm.name, float(request["checkpoint_every"]),
                                               int(request.get("keep") or 3))
                reply["checkpoints"] = str(checkpointer.store.directory)
            return reply
        if command == "move":
            vm = host.move(request["vm"], int(request["unit"]))
            return {"vm": vm.name, "unit": vm.unit, "state": vm.state}
        if command == "suspend":
            vm = host.suspend(request["vm"], request["image"])
            return {"vm": vm.name, "suspended": vm.image, "reason": vm.reason}
        if command == "resume":
            vm = host.resume(request["image"], serial=request.get("serial"),
                             name=request.get("name"), unit=request.get("unit"))
            return {"vm": vm.name, "unit": vm.unit, "console": vm.console.path}
        if command == "checkpoint":
            checkpointer = host.checkpoint(request["vm"], float(request["every"]), int(request["keep"]))
            return {"vm": request["vm"], "every": checkpointer.every, "keep": checkpointer.keep,
                    "directory": str(checkpointer.store.directory)}
        if command == "restart":
            vm = host.restart(request["vm"], unit=request.get("unit"))
            return {"vm": vm.name, "unit": vm.unit, "checkpoint": vm.restarted_from}
        if command == "wait":
            vm = host.wait(request["vm"], request.get("timeout"))
            return vm.describe()
        if command == "shutdown":
            host.shutdown()
            return {"shutdown": True}
        raise HostError(f"unknown command {command!r}")


def _config_from_request(request: dict[str, Any]):
    from vmm.cli import parse_nic
    from vmm.machine import MachineConfig

    nic = None
    if request.get("nic"):
        try:
            nic = parse_nic(request["nic"], request.get("pcap"))
        except ValueError as exc:
            raise HostError(f"--nic: {exc}") from None
    return MachineConfig(
        nic=nic,
        memory_mib=int(request.get("memory", 128)),
        deterministic=bool(request.get("deterministic", False)),
        serial=request.get("serial") or "",
        cmdline=request.get("append", ""),
        initrds=[Path(p).resolve() for p in request.get("initrd", [])],
        disks=list(request.get("disks", [])),
        pool=request.get("pool"),
        redo=bool(request.get("redo", False)),
    )



def call(socket_path: str, request: dict[str, Any], timeout: float | None = WAIT_TIMEOUT + 10) -> dict[str, Any]:
    """Send one request to the host process at ``socket_path``; returns its reply."""
    try:
        return json_request(socket_path, request, timeout,
                            nobody=f"no host process listens on {socket_path} (vmm host start)")
    except ConnectionError as exc:
        raise HostError(str(exc)) from None
