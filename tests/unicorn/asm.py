"""Assemble small x86 snippets with GNU as/ld into flat binaries for the tests.

``assemble(source, base)`` returns the bytes of ``source`` (Intel syntax, 32-bit unless
the source says ``.code16``) linked to run at ``base``; labels are resolved by ld, and
``symbols`` gives every global label's address so a test can name the instruction it
expects EIP to stop at.
"""

from __future__ import annotations

import functools
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

PROLOGUE = ".intel_syntax noprefix\n.code32\n.text\n.globl _start\n_start:\n"


@dataclass(frozen=True)
class Assembled:
    code: bytes
    base: int
    symbols: dict[str, int]

    def __getitem__(self, label: str) -> int:
        return self.symbols[label]


@functools.lru_cache(maxsize=None)
def assemble(source: str, base: int = 0x1000) -> Assembled:
    """Assemble ``source`` at ``base``; every label ending in ':' at line start is exported."""
    labels = [
        line.split(":", 1)[0].strip()
        for line in source.splitlines()
        if ":" in line and line.split(":", 1)[0].strip().isidentifier()
    ]
    text = PROLOGUE + "".join(f".globl {name}\n" for name in labels) + source + "\n"
    with tempfile.TemporaryDirectory(prefix="vmm-asm-") as tmp:
        d = Path(tmp)
        (d / "s.S").write_text(text)
        _run(["as", "--32", "-o", str(d / "s.o"), str(d / "s.S")])
        _run(["ld", "-m", "elf_i386", "-Ttext", hex(base), "-e", "_start",
              "--oformat", "binary", "-o", str(d / "s.bin"), str(d / "s.o")])
        _run(["ld", "-m", "elf_i386", "-Ttext", hex(base), "-e", "_start",
              "-o", str(d / "s.elf"), str(d / "s.o")])
        nm = _run(["nm", str(d / "s.elf")])
        symbols = {}
        for line in nm.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[2] in labels:
                symbols[parts[2]] = int(parts[0], 16)
        return Assembled((d / "s.bin").read_bytes(), base, symbols)


def _run(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    return proc.stdout
