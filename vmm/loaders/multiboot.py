"""Multiboot v1 loader for ELF32 kernels (Multiboot Specification 0.6.96).

Finds the header in the first 8 KiB, loads the ELF's PT_LOAD segments, builds the
information structure (memory sizes, a memory map, the command line, modules) and
returns the machine state the specification requires: EAX = 0x2BADB002, EBX = the
information structure, flat 32-bit segments, protected mode, paging off, IF clear.
A file that is not a valid Multiboot kernel raises :class:`LoaderError` saying why.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from vmm.loaders.boot_state import BootState, LoaderError
from vmm.memory import GuestMemory

HEADER_MAGIC = 0x1BADB002
BOOTLOADER_MAGIC = 0x2BADB002
SEARCH_LIMIT = 8192

FLAG_PAGE_ALIGN = 1 << 0
FLAG_MEMORY_INFO = 1 << 1
FLAG_VIDEO_MODE = 1 << 2
FLAG_AOUT_KLUDGE = 1 << 16
SUPPORTED_REQUIRED = FLAG_PAGE_ALIGN | FLAG_MEMORY_INFO  # low 16 bits a loader must honour

INFO_MEM = 1 << 0
INFO_CMDLINE = 1 << 2
INFO_MODS = 1 << 3
INFO_MMAP = 1 << 6
INFO_LOADER_NAME = 1 << 9

# Where the loader puts its own structures: conventional memory, below the EBDA line.
# The machine puts its boot GDT and initial stack just below INFO_AREA.
LOADER_AREA_START = 0x7000
INFO_AREA = 0x9000
INFO_AREA_END = 0x9F000
LOADER_AREA_END = INFO_AREA_END
LOW_MEMORY_KIB = 639  # as a PC reports it: the last KiB below 640 is the EBDA
MODULE_ALIGN = 0x1000


@dataclass
class Module:
    path: Path
    data: bytes
    string: str


@dataclass
class _Area:
    """A bump allocator over the loader's information area."""

    memory: GuestMemory
    cursor: int = INFO_AREA
    used: list[tuple[int, bytes]] = field(default_factory=list)

    def put(self, data: bytes, align: int = 4) -> int:
        self.cursor = (self.cursor + align - 1) & ~(align - 1)
        address = self.cursor
        if address + len(data) > INFO_AREA_END:
            raise LoaderError("command line and module strings do not fit below 640 KiB")
        self.memory.write(address, data)
        self.cursor += len(data)
        return address


def find_header(image: bytes) -> tuple[int, int]:
    """(offset, flags) of a valid Multiboot header in the first 8 KiB."""
    for offset in range(0, min(len(image), SEARCH_LIMIT) - 11, 4):
        magic, flags, checksum = struct.unpack_from("<III", image, offset)
        if magic == HEADER_MAGIC:
            if (magic + flags + checksum) & 0xFFFFFFFF:
                raise LoaderError(f"Multiboot header at offset {offset:#x} has a bad checksum")
            return offset, flags
    raise LoaderError("no Multiboot header in the first 8 KiB")


def is_multiboot(image: bytes) -> bool:
    try:
        find_header(image)
    except LoaderError:
        return False
    return True


def load_multiboot(
    path: Path,
    memory: GuestMemory,
    cmdline: str = "",
    modules: list[Path] | None = None,
) -> BootState:
    """Load the kernel at ``path`` into ``memory``; return the entry machine state."""
    image = Path(path).read_bytes()
    _, flags = find_header(image)
    unsupported = flags & 0xFFFF & ~SUPPORTED_REQUIRED
    if unsupported & FLAG_VIDEO_MODE:
        raise LoaderError("the kernel requires a video mode (Multiboot flag 2): there is no display")
    if unsupported:
        raise LoaderError(f"the kernel requires unsupported Multiboot features (flags {unsupported:#x})")
    if flags & FLAG_AOUT_KLUDGE:
        raise LoaderError("a.out-kludge kernels (Multiboot flag 16) are not supported: link an ELF")
    entry, kernel_end = _load_elf(image, memory)

    area = _Area(memory)
    info = bytearray(88)
    info_flags = INFO_MEM | INFO_MMAP | INFO_CMDLINE | INFO_LOADER_NAME
    upper_kib = min((memory.size - 0x100000) // 1024, 0xFFFFFFFF)
    struct.pack_into("<II", info, 4, LOW_MEMORY_KIB, upper_kib)
    struct.pack_into("<I", info, 16, area.put(cmdline.encode() + b"\0", 1))
    struct.pack_into("<I", info, 64, area.put(b"vmm\0", 1))
    mmap = _memory_map(memory.size)
    struct.pack_into("<II", info, 44, len(mmap), area.put(mmap))

    loaded = _load_modules(modules or [], memory, kernel_end, area)
    if loaded:
        info_flags |= INFO_MODS
        struct.pack_into("<II", info, 20, len(loaded) // 16, area.put(loaded))
    struct.pack_into("<I", info, 0, info_flags)
    info_address = area.put(bytes(info))
    return BootState(entry=entry, eax=BOOTLOADER_MAGIC, ebx=info_address, protected=True)


def _load_elf(image: bytes, memory: GuestMemory) -> tuple[int, int]:
    try:
        elf = ELFFile(io.BytesIO(image))
    except ELFError as exc:
        raise LoaderError(f"not an ELF file ({exc}); only ELF32 Multiboot kernels are supported") from None
    if elf.elfclass != 32 or elf["e_machine"] != "EM_386":
        raise LoaderError(f"not an i386 ELF32 kernel (class {elf.elfclass}, machine {elf['e_machine']})")
    end = 0
    segments = [s for s in elf.iter_segments() if s["p_type"] == "PT_LOAD" and s["p_memsz"]]
    if not segments:
        raise LoaderError("the ELF file has no loadable segments")
    for seg in segments:
        address, filesz, memsz = seg["p_paddr"], seg["p_filesz"], seg["p_memsz"]
        if address + memsz > memory.size:
            raise LoaderError(
                f"segment at {address:#x}+{memsz:#x} does not fit in RAM "
                f"({memory.size // (1024 * 1024)} MiB)"
            )
        if address < LOADER_AREA_END and address + memsz > LOADER_AREA_START:
            raise LoaderError(
                f"segment at {address:#x}+{memsz:#x} overlaps the loader's area "
                f"({LOADER_AREA_START:#x}-{LOADER_AREA_END:#x})"
            )
        memory.write(address, seg.data()[:filesz] + bytes(memsz - filesz))
        end = max(end, address + memsz)
    return elf["e_entry"], end


def _memory_map(ram_size: int) -> bytes:
    """Entries of (size=20, base, length, type): RAM below 640 KiB and above 1 MiB."""
    entries = [
        (0, LOW_MEMORY_KIB * 1024, 1),
        (LOW_MEMORY_KIB * 1024, 0xA0000 - LOW_MEMORY_KIB * 1024, 2),
        (0xF0000, 0x10000, 2),
        (0x100000, ram_size - 0x100000, 1),
    ]
    return b"".join(struct.pack("<IQQI", 20, base, length, kind) for base, length, kind in entries)


def _load_modules(paths: list[Path], memory: GuestMemory, start: int, area: _Area) -> bytes:
    table = b""
    cursor = max(start, 0x100000)  # never over the loader's own area below 640 KiB
    for path in paths:
        data = Path(path).read_bytes()
        cursor = (cursor + MODULE_ALIGN - 1) & ~(MODULE_ALIGN - 1)
        if cursor + len(data) > memory.size:
            raise LoaderError(f"module {path} does not fit in RAM")
        memory.write(cursor, data)
        string = area.put(str(path).encode() + b"\0", 1)
        table += struct.pack("<IIII", cursor, cursor + len(data), string, 0)
        cursor += len(data)
    return table
