"""``python -m guests.linux``: boot Debian's kernel with the test initramfs on our
monitor, the way tests/linux does, and show the command line it used.

It makes (once) a pool of four files with a RAID 5 volume holding the test disk, starts
a switch whose uplink reaches a peer that answers ARP and ping, builds the initramfs,
and runs ``vmm run``: the kernel's boot log, then /init's verdict lines.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

from guests.linux import debian, testvm


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m guests.linux", description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=testvm.REPO / "build" / "linux",
                        help="where the pool and the initramfs go (default build/linux)")
    parser.add_argument("--switch", default="linux-demo", help="the switch's name")
    parser.add_argument("--nic", choices=sorted(testvm.NICS), default="isa",
                        help="isa: the NE2000 at 0x300 (default); pci: the RTL8029")
    args = parser.parse_args(argv)
    linux = debian.find_cached()
    if linux is None:
        print(f"Debian's kernel and busybox are not fetched: run {debian.SETUP_FETCH_COMMAND} (as root)",
              file=sys.stderr)
        return 1
    layout = testvm.DiskLayout()
    pool = args.work / "pool"
    if not pool.exists():
        print(f"linux: a pool of 4 files with a RAID 5 volume and {testvm.DISK_PATH} in {pool}/", file=sys.stderr)
        testvm.make_pool(pool, layout)
    initramfs = testvm.initramfs(linux, args.work)
    os.environ.setdefault("VMM_SWITCH_DIR", str(args.work / "switch"))
    with testvm.switch_with_peer(args.switch):
        command = testvm.vmm_command(linux, initramfs, layout, pool, args.switch, 600, nic=args.nic)
        print("linux:", shlex.join(["vmm", *command[3:]]), file=sys.stderr)
        return subprocess.run(command, cwd=testvm.REPO).returncode


if __name__ == "__main__":
    sys.exit(main())
