"""The ``vmm`` command.

Exit statuses follow "The machine and the `vmm run` contract" (../shared/DESIGN.md):
the guest's port-0xF4 value below 100, 100-105 for the monitor's own endings, 2 for
usage errors. Serial output goes to stdout; diagnostics and ``--stats`` to stderr, one
line per problem and never a traceback (set VMM_DEBUG=1 to see one).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from vmm.runloop import ExitStatus


def _positive_int(text: str) -> int:
    value = int(text, 0)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vmm", description="A PC virtual machine monitor on Unicorn.")
    sub = parser.add_subparsers(dest="command", required=True)

    # What `vmm run` and `vmm resume` share: how long the VM may run, what it reports,
    # and how it may be suspended (again).
    running = argparse.ArgumentParser(add_help=False)
    running.add_argument("--stats", action="store_true", help="print exit statistics to stderr at the end")
    running.add_argument("--max-seconds", type=_positive_float, metavar="S", help="wall-time limit (exit 102)")
    running.add_argument("--image", metavar="IMAGE", help="where SIGUSR1 and --suspend-after suspend the VM to")
    running.add_argument("--suspend-after", type=_positive_int, metavar="N",
                         help="suspend to --image after the guest's Nth exit from now (use --deterministic)")
    running.add_argument("--control", metavar="SOCKET", help="a Unix socket for `vmm suspend SOCKET IMAGE`")

    run = sub.add_parser("run", parents=[running], help="boot a kernel in a new VM")
    run.add_argument("kernel", type=Path, help="a Multiboot v1 ELF kernel or a Linux bzImage")
    run.add_argument("--memory", type=_positive_int, default=128, metavar="MiB", help="guest RAM (default 128)")
    run.add_argument("--serial", default="stdio", metavar="stdio|PATH", help="where COM1 output goes")
    run.add_argument("--deterministic", action="store_true", help="virtual time from guest progress")
    run.add_argument("--append", default="", metavar="CMDLINE", help="kernel command line")
    run.add_argument("--initrd", action="append", type=Path, default=[], metavar="FILE",
                     help="a Multiboot module (repeatable), or the initrd of a bzImage")
    run.add_argument("--disk", action="append", default=[], metavar="PATH",
                     help="a SCSI disk on the LSI 53C895A: a raw image, or pool:NAME (repeatable)")
    run.add_argument("--pool", metavar="DIR", help="the storage pool for pool: disks "
                     "(default $VMM_POOL, else ./pool)")
    run.add_argument("--redo", action="store_true",
                     help="the run's writes land in a fresh overlay beside each disk")
    run.add_argument("--nic", metavar="BACKEND[,model=ne2000,io=0x300,irq=9,mac=52:54:00:12:34:56]",
                     help="an NE2000 on switch:NAME or udp:LHOST:LPORT:RHOST:RPORT; "
                          "model=rtl8029 is the PCI NE2000 (at 00:04.0)")
    run.add_argument("--pcap", metavar="PATH", help="capture the NIC's frames to a pcap file")
    run.set_defaults(func=cmd_run)

    resume = sub.add_parser("resume", parents=[running], help="continue a VM from its image")
    resume.add_argument("image_file", metavar="IMAGE_FILE", help="a VM image written by a suspend")
    resume.add_argument("--serial", metavar="stdio|PATH", help="where COM1 output goes now (default stdio)")
    resume.set_defaults(func=cmd_resume)

    suspend = sub.add_parser("suspend", help="suspend a running `vmm run --control SOCKET`")
    suspend.add_argument("socket", help="the VM's control socket")
    suspend.add_argument("image", help="the image file to write")
    suspend.set_defaults(func=cmd_suspend)

    switch = sub.add_parser("switch", help="run a virtual Ethernet switch")
    switch.add_argument("name", help="the switch's name (VMs use --nic switch:NAME)")
    switch.add_argument("--uplink", metavar="udp:LHOST:LPORT:RHOST:RPORT",
                        help="a port speaking QEMU's UDP datagram netdev")
    switch.add_argument("--pcap", metavar="PATH", help="capture every switched frame")
    switch.add_argument("--idle-exit", type=_positive_float, metavar="S",
                        help="exit S seconds after the last VM leaves")
    switch.add_argument("--link", nargs=2, metavar=("PORT", "up|down"),
                        help="set a port's link on a running switch, then exit")
    switch.add_argument("--ports", action="store_true", help="list a running switch's ports, then exit")
    switch.set_defaults(func=cmd_switch)

    try:
        from storage import cli as storage_cli
    except ImportError:
        storage_cli = None
    if storage_cli is not None and hasattr(storage_cli, "register"):
        storage_cli.register(sub)
    from vmm import host_cli

    host_cli.register(sub)
    return parser


def parse_nic(text: str, pcap: str | None):
    """``BACKEND[,model=..,io=..,irq=..,mac=..]`` -> NicConfig (ValueError with the reason)."""
    from vmm.machine import NicConfig

    backend, *options = text.split(",")
    config = NicConfig(backend=backend, pcap=pcap)
    for option in options:
        key, _, value = option.partition("=")
        if key == "io":
            config.io = int(value, 0)
        elif key == "irq":
            config.irq = int(value, 0)
            if not 0 <= config.irq < 16:
                raise ValueError(f"irq must be 0-15, not {value}")
        elif key == "model":
            config = dataclasses.replace(config, model=value)  # NicConfig checks it
        elif key == "mac":
            mac = bytes(int(part, 16) for part in value.split(":"))
            if len(mac) != 6 or mac[0] & 1:
                raise ValueError(f"{value} is not a unicast MAC address")
            config.mac = mac
        else:
            raise ValueError(f"unknown NIC option {key!r} (model, io, irq, mac)")
    return config


def cmd_switch(args: argparse.Namespace) -> int:
    from devices.net.switch import SwitchServer, control

    if args.ports or args.link:
        try:
            if args.ports:
                reply = control(args.name, {"command": "ports"})
                for port in reply["ports"]:
                    state = "up" if port["up"] else "down"
                    print(f"{port['number']:3}  {state:4}  in {port['frames_in']:8}  out {port['frames_out']:8}  {port['label']}")
                return 0
            port, state = args.link
            if state not in ("up", "down"):
                print("vmm: --link PORT up|down", file=sys.stderr)
                return 2
            reply = control(args.name, {"command": "link", "port": int(port), "up": state == "up"})
        except (RuntimeError, OSError, ValueError) as exc:
            print(f"vmm: {exc}", file=sys.stderr)
            return 1
        if "error" in reply:
            print(f"vmm: {reply['error']}", file=sys.stderr)
            return 1
        return 0
    try:
        server = SwitchServer(args.name, uplink=args.uplink, pcap=args.pcap, idle_exit=args.idle_exit)
    except (RuntimeError, ValueError, OSError) as exc:
        print(f"vmm: {exc}", file=sys.stderr)
        return 1
    server.serve_forever()
    return 0


def _warn_about_a_stock_engine() -> None:
    """Guests run several times slower on the libunicorn of the PyPI wheel (stores on
    the slow path, the block hook at every block): say so, and how to fix it."""
    from vmm.native import patched_unicorn

    if not patched_unicorn.is_installed():
        print("vmm: warning: libunicorn is not the patched build; guest code runs several "
              "times slower (`make` or `python -m vmm.native.patched_unicorn` builds it)",
              file=sys.stderr)


def cmd_run(args: argparse.Namespace) -> int:
    from vmm.loaders import LoaderError
    from vmm.machine import Machine, MachineConfig

    if args.memory < 2:
        print("vmm: --memory must be at least 2 MiB", file=sys.stderr)
        return 2
    from vmm.disks import DiskError
    from vmm.netbackend import NicBackendError

    if not _suspend_options_valid(args):
        return 2
    _warn_about_a_stock_engine()
    _hold_sigusr1(args)
    try:
        nic = parse_nic(args.nic, args.pcap) if args.nic else None
    except ValueError as exc:
        print(f"vmm: --nic: {exc}", file=sys.stderr)
        return 2
    config = MachineConfig(
        memory_mib=args.memory,
        deterministic=args.deterministic,
        serial=args.serial,
        cmdline=args.append,
        initrds=list(args.initrd),
        nic=nic,
        disks=list(args.disk),
        pool=args.pool,
        redo=args.redo,
    )
    try:
        machine = Machine(config)
        machine.load(args.kernel)
    except (LoaderError, NicBackendError, DiskError) as exc:
        print(f"vmm: {exc}", file=sys.stderr)
        return ExitStatus.INPUT_REFUSED
    except OSError as exc:
        print(f"vmm: {exc.filename or ''}: {exc.strerror}", file=sys.stderr)
        return ExitStatus.INPUT_REFUSED
    return _run_machine(machine, args)


def _suspend_options_valid(args: argparse.Namespace) -> bool:
    if args.suspend_after and not args.image:
        print("vmm: --suspend-after needs --image", file=sys.stderr)
        return False
    return True


def _hold_sigusr1(args: argparse.Namespace) -> None:
    """With --image, SIGUSR1 means "suspend": catch it from the very start, so one that
    comes while the machine is still being built is kept for the run loop."""
    if getattr(args, "image", None):
        from vmm import native

        native.load().vmm_catch_suspend_signal()


def _run_machine(machine, args: argparse.Namespace) -> int:
    """Run a built machine to its end; shared by `vmm run` and `vmm resume`."""
    from vmm.stats import print_stats

    try:
        result = machine.run(
            max_seconds=args.max_seconds,
            suspend_image=args.image,
            suspend_after=args.suspend_after,
            control_socket=args.control,
        )
    finally:
        machine.close()
    if result.reason:
        print(f"vmm: {result.reason}", file=sys.stderr)
    if args.stats:
        print_stats(machine, sys.stderr)
    return result.status


def cmd_resume(args: argparse.Namespace) -> int:
    from vmm.disks import DiskError
    from vmm.image import ImageError
    from vmm.netbackend import NicBackendError
    from vmm.snapshot import resume

    if not _suspend_options_valid(args):
        return 2
    _hold_sigusr1(args)
    try:
        machine = resume(args.image_file, serial=args.serial)
    except (ImageError, DiskError, NicBackendError) as exc:
        print(f"vmm: {exc}", file=sys.stderr)
        return ExitStatus.INPUT_REFUSED
    return _run_machine(machine, args)


def cmd_suspend(args: argparse.Namespace) -> int:
    from vmm.control import request_suspend

    try:
        reply = request_suspend(args.socket, args.image)
    except (RuntimeError, OSError, ValueError) as exc:
        print(f"vmm: {exc}", file=sys.stderr)
        return 1
    if "error" in reply:
        print(f"vmm: {reply['error']}", file=sys.stderr)
        return 1
    print(reply["suspended"])
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("vmm: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the monitor's own failure: one line, status 104
        if os.environ.get("VMM_DEBUG"):
            raise
        print(f"vmm: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return ExitStatus.MONITOR_FAILURE


if __name__ == "__main__":
    sys.exit(main())
