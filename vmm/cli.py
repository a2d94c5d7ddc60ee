"""The ``vmm`` command.

Exit statuses follow "The machine and the `vmm run` contract" (../shared/DESIGN.md):
the guest's port-0xF4 value below 100, 100-105 for the monitor's own endings, 2 for
usage errors. Serial output goes to stdout; diagnostics and ``--stats`` to stderr, one
line per problem and never a traceback (set VMM_DEBUG=1 to see one).
"""

from __future__ import annotations

import argparse
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

    run = sub.add_parser("run", help="boot a kernel in a new VM")
    run.add_argument("kernel", type=Path, help="a Multiboot v1 ELF kernel")
    run.add_argument("--memory", type=_positive_int, default=128, metavar="MiB", help="guest RAM (default 128)")
    run.add_argument("--serial", default="stdio", metavar="stdio|PATH", help="where COM1 output goes")
    run.add_argument("--stats", action="store_true", help="print exit statistics to stderr at the end")
    run.add_argument("--max-seconds", type=_positive_float, metavar="S", help="wall-time limit (exit 102)")
    run.add_argument("--deterministic", action="store_true", help="virtual time from guest progress")
    run.add_argument("--append", default="", metavar="CMDLINE", help="kernel command line")
    run.add_argument("--initrd", action="append", type=Path, default=[], metavar="FILE",
                     help="a Multiboot module (repeatable)")
    run.set_defaults(func=cmd_run)

    try:
        from storage import cli as storage_cli
    except ImportError:
        storage_cli = None
    if storage_cli is not None and hasattr(storage_cli, "register"):
        storage_cli.register(sub)
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    from vmm.loaders import LoaderError
    from vmm.machine import Machine, MachineConfig
    from vmm.stats import print_stats

    if args.memory < 2:
        print("vmm: --memory must be at least 2 MiB", file=sys.stderr)
        return 2
    config = MachineConfig(
        memory_mib=args.memory,
        deterministic=args.deterministic,
        serial=args.serial,
        cmdline=args.append,
        initrds=list(args.initrd),
    )
    try:
        machine = Machine(config)
        machine.load(args.kernel)
    except LoaderError as exc:
        print(f"vmm: {exc}", file=sys.stderr)
        return ExitStatus.INPUT_REFUSED
    except OSError as exc:
        print(f"vmm: {exc.filename or ''}: {exc.strerror}", file=sys.stderr)
        return ExitStatus.INPUT_REFUSED
    result = machine.run(max_seconds=args.max_seconds)
    if result.reason:
        print(f"vmm: {result.reason}", file=sys.stderr)
    if args.stats:
        print_stats(machine, sys.stderr)
    return result.status


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
