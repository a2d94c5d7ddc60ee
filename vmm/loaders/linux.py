"""Linux bzImage loader: the 32-bit boot protocol (Documentation/arch/x86/boot.rst).

The real-mode setup code is skipped, as QEMU's ``-kernel`` and every 32-bit loader do:
the loader fills the "zero page" (struct boot_params) itself - the setup header copied
from the file, type_of_loader, LOADED_HIGH, the command line, the initrd below
initrd_addr_max, an e820 memory map - puts the protected-mode kernel at 1 MiB and
enters it at code32_start with ESI pointing at the zero page, in flat 32-bit protected
mode with __BOOT_CS = 0x10 and __BOOT_DS = 0x18, paging and interrupts off.
"""

from __future__ import annotations

import struct
from pathlib import Path

from vmm.loaders.boot_state import BootState, LoaderError
from vmm.memory import GuestMemory

HEADER_MAGIC = b"HdrS"
MIN_PROTOCOL = 0x0206  # cmdline_size and initrd_addr_max are known from here on
BOOT_PARAMS = 0x10000  # the zero page
CMDLINE = 0x20000
LOADER_TYPE_UNKNOWN = 0xFF
LOADED_HIGH = 0x01
KEEP_SEGMENTS = 0x40
XLF_KERNEL_64 = 0x01
KERNEL_ADDRESS = 0x100000
LOW_RAM_END = 0x9F000  # the e820 map's conventional memory, below the EBDA
E820_RAM, E820_RESERVED = 1, 2
BOOT_CS, BOOT_DS = 0x10, 0x18

# Offsets in struct boot_params and its setup header (boot.rst, "THE REAL-MODE KERNEL HEADER").
OFF_E820_ENTRIES = 0x1E8
OFF_SETUP_SECTS = 0x1F1
OFF_BOOT_FLAG = 0x1FE
OFF_HEADER = 0x202
OFF_VERSION = 0x206
OFF_TYPE_OF_LOADER = 0x210
OFF_LOADFLAGS = 0x211
OFF_CODE32_START = 0x214
OFF_RAMDISK_IMAGE = 0x218
OFF_RAMDISK_SIZE = 0x21C
OFF_HEAP_END_PTR = 0x224
OFF_CMD_LINE_PTR = 0x228
OFF_INITRD_ADDR_MAX = 0x22C
OFF_CMDLINE_SIZE = 0x238
OFF_XLOADFLAGS = 0x236
OFF_E820_TABLE = 0x2D0
OFF_VID_MODE = 0x1FA


def is_bzimage(head: bytes) -> bool:
    return len(head) > OFF_HEADER + 4 and head[OFF_HEADER : OFF_HEADER + 4] == HEADER_MAGIC


def load_linux(path: Path, memory: GuestMemory, cmdline: str = "", initrds: list[Path] | None = None) -> BootState:
    image = Path(path).read_bytes()
    if not is_bzimage(image):
        raise LoaderError(f"{path}: not a Linux bzImage (no HdrS header)")
    if struct.unpack_from("<H", image, OFF_BOOT_FLAG)[0] != 0xAA55:
        raise LoaderError(f"{path}: the setup header lacks its 0xAA55 boot flag")
    version = struct.unpack_from("<H", image, OFF_VERSION)[0]
    if version < MIN_PROTOCOL:
        raise LoaderError(
            f"{path}: boot protocol {version >> 8}.{version & 0xFF:02d} is too old "
            f"(this loader needs {MIN_PROTOCOL >> 8}.{MIN_PROTOCOL & 0xFF:02d} or newer)"
        )
    if image[OFF_LOADFLAGS] & LOADED_HIGH == 0:
        raise LoaderError(f"{path}: a zImage (loaded low) is not supported: build a bzImage")
    if version >= 0x020C and image[OFF_XLOADFLAGS] & XLF_KERNEL_64:
        raise LoaderError(f"{path}: a 64-bit kernel: this machine's CPU is 32-bit (no long mode)")
    setup_sects = image[OFF_SETUP_SECTS] or 4
    kernel = image[(setup_sects + 1) * 512 :]
    if KERNEL_ADDRESS + len(kernel) > memory.size:
        raise LoaderError(f"{path}: the kernel ({len(kernel)} bytes) does not fit in RAM")
    memory.write(KERNEL_ADDRESS, kernel)

    params = bytearray(4096)
    header_end = OFF_HEADER + image[0x201]  # the header ends where its jump lands
    params[OFF_SETUP_SECTS:header_end] = image[OFF_SETUP_SECTS:header_end]
    params[OFF_TYPE_OF_LOADER] = LOADER_TYPE_UNKNOWN
    params[OFF_LOADFLAGS] = (image[OFF_LOADFLAGS] | LOADED_HIGH) & ~KEEP_SEGMENTS
    struct.pack_into("<H", params, OFF_VID_MODE, 0xFFFF)  # "normal": no mode switch asked
    struct.pack_into("<H", params, OFF_HEAP_END_PTR, 0xFE00)

    cmdline_size = struct.unpack_from("<I", image, OFF_CMDLINE_SIZE)[0] or 255
    encoded = cmdline.encode()
    if len(encoded) > cmdline_size:
        raise LoaderError(f"{path}: the command line has {len(encoded)} bytes; this kernel takes {cmdline_size}")
    memory.write(CMDLINE, encoded + b"\0")
    struct.pack_into("<I", params, OFF_CMD_LINE_PTR, CMDLINE)

    if initrds:
        if len(initrds) > 1:
            raise LoaderError("a Linux kernel takes one --initrd")
        data = Path(initrds[0]).read_bytes()
        limit = min(struct.unpack_from("<I", image, OFF_INITRD_ADDR_MAX)[0] + 1, memory.size)
        address = (limit - len(data)) & ~0xFFF
        if address < KERNEL_ADDRESS + len(kernel):
            raise LoaderError(f"{initrds[0]}: the initrd ({len(data)} bytes) does not fit below {limit:#x}")
        memory.write(address, data)
        struct.pack_into("<II", params, OFF_RAMDISK_IMAGE, address, len(data))

    entries = [
        (0, LOW_RAM_END, E820_RAM),
        (LOW_RAM_END, 0x100000 - LOW_RAM_END, E820_RESERVED),
        (KERNEL_ADDRESS, memory.size - KERNEL_ADDRESS, E820_RAM),
    ]
    for i, (base, length, kind) in enumerate(entries):
        struct.pack_into("<QQI", params, OFF_E820_TABLE + 20 * i, base, length, kind)
    params[OFF_E820_ENTRIES] = len(entries)
    memory.write(BOOT_PARAMS, bytes(params))

    entry = struct.unpack_from("<I", image, OFF_CODE32_START)[0]
    return BootState(entry=entry, esi=BOOT_PARAMS, code_selector=BOOT_CS, data_selector=BOOT_DS)
