"""``vmm host`` and ``vmm vm``: a host process running VMs on processing units, and the
commands that act on its VMs through its control socket (docs/host.md).

``vmm host start --units N [--socket PATH] [--state DIR]`` runs until ``vmm host stop``
(or SIGTERM / Ctrl-C). ``vmm vm list|start|move|suspend|resume|checkpoint|restart|wait``
talk to it. Every handler returns an exit status; errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from vmm.cli import _positive_float, _positive_int
from vmm.host import HostError, call, default_socket

USAGE = 2
FAILED = 1


def _socket_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--socket", default=None, metavar="PATH",
                        help=f"the host's control socket (default $VMM_HOST_SOCKET, else ./{default_socket()})")


def register(subparsers) -> None:
    """Add ``host`` and ``vm`` to the ``vmm`` command's sub-commands."""
    host = subparsers.add_parser("host", help="a host process running VMs on processing units")
    host_sub = host.add_subparsers(dest="host_command", required=True)
    start = host_sub.add_parser("start", help="run a host process (until `vmm host stop`)")
    start.add_argument("--units", type=_positive_int, default=1, metavar="N", help="processing units (default 1)")
    start.add_argument("--state", default="vmm-host", metavar="DIR",
                       help="where VM consoles and checkpoints go (default ./vmm-host)")
    _socket_option(start)
    start.set_defaults(func=cmd_host_start)
    stop = host_sub.add_parser("stop", help="stop a host process and its VMs")
    _socket_option(stop)
    stop.set_defaults(func=cmd_host_stop)

    vm = subparsers.add_parser("vm", help="the VMs of a host process")
    vm_sub = vm.add_subparsers(dest="vm_command", required=True)

    listing = vm_sub.add_parser("list", help="units and VMs")
    _socket_option(listing)
    listing.set_defaults(func=cmd_vm_list)

    boot = vm_sub.add_parser("start", help="boot a kernel in a new VM on the least loaded unit")
    boot.add_argument("kernel", type=Path, help="a Multiboot v1 ELF kernel")
    boot.add_argument("--memory", type=_positive_int, default=128, metavar="MiB", help="guest RAM (default 128)")
    boot.add_argument("--serial", metavar="stdio|PATH",
                      help="where COM1 output goes (default STATE/NAME/console.log)")
    boot.add_argument("--deterministic", action="store_true", help="virtual time from guest progress")
    boot.add_argument("--append", default="", metavar="CMDLINE", help="kernel command line")
    boot.add_argument("--initrd", action="append", type=Path, default=[], metavar="FILE")
    boot.add_argument("--disk", action="append", default=[], metavar="PATH",
                      help="a SCSI disk: a raw image, or pool:NAME (repeatable)")
    boot.add_argument("--pool", metavar="DIR", help="the storage pool for pool: disks")
    boot.add_argument("--nic", metavar="BACKEND[,io=0x300,irq=9,mac=52:54:00:12:34:56]",
                      help="an NE2000 on switch:NAME or udp:LHOST:LPORT:RHOST:RPORT")
    boot.add_argument("--pcap", metavar="PATH", help="capture the NIC's frames to a pcap file")
    boot.add_argument("--name", help="the VM's name (default vm1, vm2, ...)")
    boot.add_argument("--unit", type=int, metavar="U", help="put it on this unit")
    boot.add_argument("--checkpoint-every", type=_positive_float, metavar="S",
                      help="checkpoint it every S seconds from the start")
    boot.add_argument("--keep", type=_positive_int, default=3, metavar="K",
                      help="with --checkpoint-every: checkpoints kept (default 3)")
    _socket_option(boot)
    boot.set_defaults(func=cmd_vm_start)

    move = vm_sub.add_parser("move", help="move a running VM to another unit")
    move.add_argument("vm")
    move.add_argument("unit", type=int)
    _socket_option(move)
    move.set_defaults(func=cmd_vm_move)

    suspend = vm_sub.add_parser("suspend", help="suspend a VM to an image (it leaves the host)")
    suspend.add_argument("vm")
    suspend.add_argument("image")
    _socket_option(suspend)
    suspend.set_defaults(func=cmd_vm_suspend)

    resume = vm_sub.add_parser("resume", help="continue a VM from an image on this host")
    resume.add_argument("image")
    resume.add_argument("--serial", metavar="stdio|PATH", help="where COM1 output goes now "
                        "(default: where it went before, appended to)")
    resume.add_argument("--name")
    resume.add_argument("--unit", type=int, metavar="U")
    _socket_option(resume)
    resume.set_defaults(func=cmd_vm_resume)

    checkpoint = vm_sub.add_parser("checkpoint", help="checkpoint a VM periodically")
    checkpoint.add_argument("vm")
    checkpoint.add_argument("--every", type=_positive_float, required=True, metavar="S", help="seconds between checkpoints")
    checkpoint.add_argument("--keep", type=_positive_int, default=3, metavar="K", help="checkpoints kept (default 3)")
    _socket_option(checkpoint)
    checkpoint.set_defaults(func=cmd_vm_checkpoint)

    restart = vm_sub.add_parser("restart", help="restart a VM from its newest checkpoint")
    restart.add_argument("vm")
    restart.add_argument("--unit", type=int, metavar="U")
    _socket_option(restart)
    restart.set_defaults(func=cmd_vm_restart)

    wait = vm_sub.add_parser("wait", help="wait until a VM ends; exits with its status")
    wait.add_argument("vm")
    wait.add_argument("--timeout", type=_positive_float, metavar="S")
    _socket_option(wait)
    wait.set_defaults(func=cmd_vm_wait)


# -- the host process -------------------------------------------------------------------------

def cmd_host_start(args: argparse.Namespace) -> int:
    from vmm.host import Host, HostServer

    path = args.socket or default_socket()
    try:
        host = Host(args.units, args.state)
        server = HostServer(host, path)
    except (HostError, OSError) as exc:
        print(f"vmm: {exc}", file=sys.stderr)
        return FAILED
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: server.stopped.set())
    print(f"vmm host: {args.units} units, control socket {path}, state in {host.state_dir}",
          file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    finally:
        server.close()
        host.shutdown()
    return 0


def cmd_host_stop(args: argparse.Namespace) -> int:
    return _ask(args, {"command": "shutdown"}, lambda reply: None)


# -- the VMs ------------------------------------------------------------------------------------

def _ask(args: argparse.Namespace, request: dict, show, timeout: float | None = 130.0) -> int:
    try:
        reply = call(args.socket or default_socket(), request, timeout=timeout)
    except (HostError, OSError, ValueError) as exc:
        print(f"vmm: {exc}", file=sys.stderr)
        return FAILED
    if "error" in reply:
        print(f"vmm: {reply['error']}", file=sys.stderr)
        return FAILED
    status = show(reply)
    return 0 if status is None else status


def cmd_vm_list(args: argparse.Namespace) -> int:
    def show(reply: dict) -> None:
        for unit in reply["units"]:
            queued = ", ".join(unit["queued"]) or "-"
            print(f"unit {unit['unit']}: running {unit['running'] or '-'}; waiting {queued}")
        for vm in reply["vms"]:
            where = f"unit {vm['unit']}" if vm["unit"] is not None else "-"
            status = "" if vm["status"] is None else f" status {vm['status']}"
            line = f"{vm['name']:8} {vm['state']:9} {where:7}{status}  moves {vm['moves']}  console {vm['console']}"
            checkpoints = vm.get("checkpoints")
            if checkpoints:
                line += f"  checkpoints {checkpoints['taken']} (every {checkpoints['every']:g} s, keep {checkpoints['keep']})"
            print(line)
    return _ask(args, {"command": "list"}, show)


def cmd_vm_start(args: argparse.Namespace) -> int:
    if args.memory < 2:
        print("vmm: --memory must be at least 2 MiB", file=sys.stderr)
        return USAGE
    request = {
        "command": "start", "kernel": str(args.kernel.resolve()), "memory": args.memory,
        "serial": _absolute(args.serial), "deterministic": args.deterministic,
        "append": args.append, "initrd": [str(p.resolve()) for p in args.initrd],
        "disks": [d if d.startswith("pool:") else str(Path(d).resolve()) for d in args.disk],
        "pool": _absolute(args.pool), "name": args.name, "unit": args.unit,
        "checkpoint_every": args.checkpoint_every, "keep": args.keep,
        "nic": args.nic, "pcap": _absolute(args.pcap),
    }

    def show(reply: dict) -> None:
        print(f"{reply['vm']} on unit {reply['unit']}, console {reply['console']}")
        if "checkpoints" in reply:
            print(f"checkpoints in {reply['checkpoints']}")
    return _ask(args, request, show)


def cmd_vm_move(args: argparse.Namespace) -> int:
    return _ask(args, {"command": "move", "vm": args.vm, "unit": args.unit},
                lambda reply: print(f"{reply['vm']} on unit {reply['unit']} ({reply['state']})"))


def cmd_vm_suspend(args: argparse.Namespace) -> int:
    return _ask(args, {"command": "suspend", "vm": args.vm, "image": str(Path(args.image).resolve())},
                lambda reply: print(reply["suspended"]))


def cmd_vm_resume(args: argparse.Namespace) -> int:
    request = {"command": "resume", "image": str(Path(args.image).resolve()),
               "serial": _absolute(args.serial), "name": args.name, "unit": args.unit}
    return _ask(args, request, lambda reply: print(f"{reply['vm']} on unit {reply['unit']}, console {reply['console']}"))


def cmd_vm_checkpoint(args: argparse.Namespace) -> int:
    request = {"command": "checkpoint", "vm": args.vm, "every": args.every, "keep": args.keep}
    return _ask(args, request, lambda reply: print(reply["directory"]))


def cmd_vm_restart(args: argparse.Namespace) -> int:
    return _ask(args, {"command": "restart", "vm": args.vm, "unit": args.unit},
                lambda reply: print(f"{reply['vm']} on unit {reply['unit']} from {reply['checkpoint']}"))


def cmd_vm_wait(args: argparse.Namespace) -> int:
    def show(reply: dict) -> int:
        if reply["reason"]:
            print(f"vmm: {reply['name']}: {reply['reason']}", file=sys.stderr)
        return int(reply["status"]) if reply["status"] is not None and reply["status"] >= 0 else FAILED
    timeout = None if args.timeout is None else args.timeout + 10
    return _ask(args, {"command": "wait", "vm": args.vm, "timeout": args.timeout}, show, timeout)


def _absolute(path: str | None) -> str | None:
    if path is None or path == "stdio":
        return path
    return str(Path(path).resolve())


def main(argv: list[str] | None = None) -> int:
    """``python -m vmm.host_cli host|vm ...``: the same commands without the rest of vmm."""
    parser = argparse.ArgumentParser(prog="vmm")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("vmm: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the monitor's own failure: one line
        import os

        if os.environ.get("VMM_DEBUG"):
            raise
        print(f"vmm: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 104


if __name__ == "__main__":
    sys.exit(main())
