"""The Multiboot v1 loader (vmm/loaders/multiboot.py), on ELF kernels built in the test.

Each kernel is a few lines of assembly with a Multiboot header, linked with GNU ld; the
refusals are the ways a file can fail to be a bootable kernel, each with the message a
user sees on stderr (``vmm run`` exits 103).
"""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from unicorn import UC_ARCH_X86, UC_MODE_32, Uc

from vmm.loaders import LoaderError, load_kernel
from vmm.loaders.multiboot import (
    BOOTLOADER_MAGIC, INFO_CMDLINE, INFO_LOADER_NAME, INFO_MEM, INFO_MMAP, INFO_MODS,
    LOADER_AREA_END, LOADER_AREA_START, load_multiboot,
)
from vmm.machine import Machine, MachineConfig
from vmm.memory import GuestMemory

MIB = 1024 * 1024
HEADER_MAGIC = 0x1BADB002

KERNEL_BODY = """
.text
.globl _start
_start:
    mov esp, offset stack_top
    mov eax, offset message
    hlt
.data
message:
    .ascii "loaded by vmm"
.bss
    .space 0x3000
stack_top:
"""


def header(flags: int = 0x3, checksum: int | None = None, magic: int = HEADER_MAGIC) -> str:
    if checksum is None:
        checksum = -(magic + flags) & 0xFFFFFFFF
    return f".text\n.align 4\n.long {magic:#x}, {flags:#x}, {checksum:#x}\n"


def build_elf(
    directory: Path, multiboot_header: str | None = None, link_at: int = 0x100000,
    bits: int = 32, padding: int = 0, name: str = "kernel",
) -> Path:
    """An ELF kernel: ``padding`` bytes, then the header, then KERNEL_BODY."""
    if multiboot_header is None:
        multiboot_header = header()
    source = directory / f"{name}.S"
    source.write_text(
        ".intel_syntax noprefix\n"
        + (".code32\n" if bits == 32 else "")
        + (f".text\n.space {padding}\n" if padding else "")
        + multiboot_header
        + KERNEL_BODY
    )
    obj, elf = directory / f"{name}.o", directory / f"{name}.elf"
    as_flag, emulation = ("--32", "elf_i386") if bits == 32 else ("--64", "elf_x86_64")
    subprocess.run(["as", as_flag, "-o", str(obj), str(source)], check=True)
    subprocess.run(
        ["ld", "-m", emulation, "-Ttext", hex(link_at), "-e", "_start", "-o", str(elf), str(obj)],
        check=True,
    )
    return elf


@pytest.fixture
def memory():
    mem = GuestMemory(Uc(UC_ARCH_X86, UC_MODE_32), 16 * MIB)
    yield mem
    mem.close()


@pytest.fixture
def kernel(tmp_path):
    return build_elf(tmp_path)


def c_string(memory: GuestMemory, address: int) -> str:
    data = memory.read(address, 4096)
    return data[: data.index(b"\0")].decode()


def info_field(memory: GuestMemory, info: int, offset: int) -> int:
    return memory.read_u32(info + offset)


def symbol(elf_path: Path, name: str) -> int:
    with open(elf_path, "rb") as f:
        return ELFFile(f).get_section_by_name(".symtab").get_symbol_by_name(name)[0]["st_value"]


# -- a valid kernel ------------------------------------------------------------------------------

def test_valid_kernel_enters_at_its_elf_entry_with_the_multiboot_magic(kernel, memory):
    boot = load_multiboot(kernel, memory)
    assert boot.entry == symbol(kernel, "_start")
    assert boot.eax == BOOTLOADER_MAGIC == 0x2BADB002
    assert boot.protected


def test_every_load_segment_is_copied_and_bss_is_zeroed(kernel, memory):
    with open(kernel, "rb") as f:
        segments = [
            (s["p_paddr"], s.data(), s["p_memsz"])
            for s in ELFFile(f).iter_segments() if s["p_type"] == "PT_LOAD"
        ]
    for address, _, memsz in segments:
        memory.write(address, b"\xcc" * memsz)  # stale contents the loader must replace
    load_multiboot(kernel, memory)
    for address, data, memsz in segments:
        assert memory.read(address, len(data)) == data
        assert memory.read(address + len(data), memsz - len(data)) == bytes(memsz - len(data))
    assert memory.read(symbol(kernel, "message"), 13) == b"loaded by vmm"
    assert memory.read(symbol(kernel, "stack_top") - 0x3000, 0x3000) == bytes(0x3000)


def test_info_structure_has_flags_memory_sizes_cmdline_and_loader_name(kernel, memory):
    boot = load_multiboot(kernel, memory, cmdline="console=ttyS0 iterations=5")
    info = boot.ebx
    assert info_field(memory, info, 0) == INFO_MEM | INFO_CMDLINE | INFO_MMAP | INFO_LOADER_NAME
    assert info_field(memory, info, 4) == 639  # mem_lower, KiB
    assert info_field(memory, info, 8) == 15 * 1024  # mem_upper: 16 MiB - 1 MiB, in KiB
    assert c_string(memory, info_field(memory, info, 16)) == "console=ttyS0 iterations=5"
    assert c_string(memory, info_field(memory, info, 64)) == "vmm"


def test_info_structure_lies_below_640k_in_the_loader_area(kernel, memory):
    info = load_multiboot(kernel, memory, cmdline="x").ebx
    assert LOADER_AREA_START <= info and info + 88 <= LOADER_AREA_END
    assert info % 4 == 0


def test_empty_command_line_is_an_empty_string(kernel, memory):
    info = load_multiboot(kernel, memory).ebx
    assert info_field(memory, info, 0) & INFO_CMDLINE
    assert c_string(memory, info_field(memory, info, 16)) == ""


def test_memory_map_lists_usable_low_and_high_ram_and_reserves_the_rest(kernel, memory):
    info = load_multiboot(kernel, memory).ebx
    length, address = info_field(memory, info, 44), info_field(memory, info, 48)
    raw = memory.read(address, length)
    entries = []
    offset = 0
    while offset < length:
        size, base, size_bytes, kind = struct.unpack_from("<IQQI", raw, offset)
        entries.append((base, size_bytes, kind))
        offset += size + 4  # `size` does not count itself
    assert entries == [
        (0, 639 * 1024, 1),
        (639 * 1024, 0xA0000 - 639 * 1024, 2),
        (0xF0000, 0x10000, 2),
        (0x100000, 15 * MIB, 1),
    ]


def test_modules_are_loaded_page_aligned_after_the_kernel_with_start_end_and_string(kernel, memory, tmp_path):
    first, second = tmp_path / "initrd.img", tmp_path / "extra.bin"
    first.write_bytes(b"INITRD" * 1000)
    second.write_bytes(bytes(range(256)) * 3)
    boot = load_multiboot(kernel, memory, modules=[first, second])
    info = boot.ebx
    assert info_field(memory, info, 0) & INFO_MODS
    count, table = info_field(memory, info, 20), info_field(memory, info, 24)
    assert count == 2
    modules = [struct.unpack("<IIII", memory.read(table + 16 * i, 16)) for i in range(count)]
    kernel_end = symbol(kernel, "stack_top")
    (start1, end1, string1, _), (start2, end2, string2, _) = modules
    assert start1 >= kernel_end and start1 % 0x1000 == 0
    assert start2 >= end1 and start2 % 0x1000 == 0
    assert memory.read(start1, end1 - start1) == first.read_bytes()
    assert memory.read(start2, end2 - start2) == second.read_bytes()
    assert c_string(memory, string1) == str(first)
    assert c_string(memory, string2) == str(second)


def test_no_modules_means_the_mods_flag_is_clear(kernel, memory):
    info = load_multiboot(kernel, memory).ebx
    assert not info_field(memory, info, 0) & INFO_MODS


def test_machine_load_enters_protected_mode_with_flat_segments_and_interrupts_off(kernel, tmp_path):
    machine = Machine(MachineConfig(memory_mib=16, deterministic=True, cmdline="quiet"), serial_out=None)
    boot = machine.load(kernel)
    cpu = machine.cpu
    assert cpu.eip == boot.entry == symbol(kernel, "_start")
    assert cpu.reg("eax") == 0x2BADB002
    assert cpu.reg("ebx") == boot.ebx
    assert cpu.reg("cr0") & 1 and not cpu.reg("cr0") & (1 << 31)
    assert cpu.eflags & (1 << 9) == 0
    gdt_base = cpu.table("gdtr")[1]
    for segment in ("cs", "ds", "es", "ss", "fs", "gs"):
        descriptor = struct.unpack("<Q", machine.memory.read(gdt_base + (cpu.reg(segment) & ~7), 8))[0]
        base = (descriptor >> 16 & 0xFFFFFF) | (descriptor >> 56 & 0xFF) << 24
        limit = (descriptor & 0xFFFF) | (descriptor >> 48 & 0xF) << 16
        granular = descriptor >> 55 & 1
        assert (base, limit, granular) == (0, 0xFFFFF, 1), segment
    assert c_string(machine.memory, machine.memory.read_u32(boot.ebx + 16)) == "quiet"


def test_load_kernel_recognises_a_multiboot_elf(kernel, memory):
    boot = load_kernel(kernel, memory, "a=b")
    assert boot.eax == BOOTLOADER_MAGIC


# -- refusals ------------------------------------------------------------------------------------

def test_kernel_without_a_multiboot_header_is_refused(tmp_path, memory):
    elf = build_elf(tmp_path, multiboot_header="")
    with pytest.raises(LoaderError, match="no Multiboot header in the first 8 KiB"):
        load_multiboot(elf, memory)


def test_header_past_the_first_8k_is_not_found(tmp_path, memory):
    elf = build_elf(tmp_path, padding=8192)
    with pytest.raises(LoaderError, match="no Multiboot header in the first 8 KiB"):
        load_multiboot(elf, memory)


def test_header_with_a_bad_checksum_is_refused(tmp_path, memory):
    elf = build_elf(tmp_path, header(flags=0x3, checksum=0x12345678))
    with pytest.raises(LoaderError, match="bad checksum"):
        load_multiboot(elf, memory)
    with pytest.raises(LoaderError, match="bad checksum"):
        load_kernel(elf, memory)


def test_kernel_asking_for_a_video_mode_is_refused(tmp_path, memory):
    elf = build_elf(tmp_path, header(flags=0x7))
    with pytest.raises(LoaderError, match=r"video mode \(Multiboot flag 2\)"):
        load_multiboot(elf, memory)


def test_kernel_requiring_an_unknown_feature_is_refused(tmp_path, memory):
    elf = build_elf(tmp_path, header(flags=0x3 | 0x8))
    with pytest.raises(LoaderError, match=r"unsupported Multiboot features \(flags 0x8\)"):
        load_multiboot(elf, memory)


def test_aout_kludge_kernel_is_refused(tmp_path, memory):
    elf = build_elf(tmp_path, header(flags=0x3 | 0x10000))
    with pytest.raises(LoaderError, match="a.out-kludge"):
        load_multiboot(elf, memory)


def test_file_with_a_header_that_is_not_elf_is_refused(tmp_path, memory):
    raw = tmp_path / "kernel.bin"
    raw.write_bytes(struct.pack("<III", HEADER_MAGIC, 3, -(HEADER_MAGIC + 3) & 0xFFFFFFFF) + b"\xf4" * 64)
    with pytest.raises(LoaderError, match="not an ELF file"):
        load_multiboot(raw, memory)
    with pytest.raises(LoaderError, match="not an ELF file"):
        load_kernel(raw, memory)


def test_file_that_is_neither_elf_nor_multiboot_is_refused_by_load_kernel(tmp_path, memory):
    junk = tmp_path / "notes.txt"
    junk.write_text("just some text\n" * 100)
    with pytest.raises(LoaderError, match="neither a Linux bzImage nor a Multiboot kernel"):
        load_kernel(junk, memory)


def test_missing_kernel_file_is_refused_with_its_path(tmp_path, memory):
    missing = tmp_path / "nowhere.elf"
    with pytest.raises(LoaderError, match=f"cannot read kernel {missing}"):
        load_kernel(missing, memory)


def test_64_bit_elf_is_refused(tmp_path, memory):
    elf = build_elf(tmp_path, bits=64)
    with pytest.raises(LoaderError, match="not an i386 ELF32 kernel \\(class 64, machine EM_X86_64\\)"):
        load_multiboot(elf, memory)


def test_segment_outside_ram_is_refused_and_ram_is_untouched(tmp_path, memory):
    elf = build_elf(tmp_path, link_at=0x2000000)  # 32 MiB, RAM is 16 MiB
    with pytest.raises(LoaderError, match=r"segment at 0x[0-9a-f]+\+0x[0-9a-f]+ does not fit in RAM \(16 MiB\)"):
        load_multiboot(elf, memory)
    assert memory.read(0x9000, 4096) == bytes(4096)


def test_segment_straddling_the_end_of_ram_is_refused(tmp_path, memory):
    elf = build_elf(tmp_path, link_at=16 * MIB - 0x1000)
    with pytest.raises(LoaderError, match="does not fit in RAM"):
        load_multiboot(elf, memory)


def test_segment_over_the_loader_area_is_refused(tmp_path, memory):
    elf = build_elf(tmp_path, link_at=0x8000)
    with pytest.raises(LoaderError, match="overlaps the loader's area"):
        load_multiboot(elf, memory)


def test_module_that_does_not_fit_in_ram_is_refused(kernel, tmp_path):
    small = GuestMemory(Uc(UC_ARCH_X86, UC_MODE_32), 2 * MIB)
    big = tmp_path / "big.img"
    big.write_bytes(bytes(2 * MIB))
    with pytest.raises(LoaderError, match=f"module {big} does not fit in RAM"):
        load_multiboot(kernel, small, modules=[big])


def test_command_line_too_long_for_the_loader_area_is_refused(kernel, memory):
    with pytest.raises(LoaderError, match="do not fit below 640 KiB"):
        load_multiboot(kernel, memory, cmdline="x" * (640 * 1024))


def test_module_after_a_low_kernel_is_not_placed_over_the_loader_area(tmp_path, memory):
    low = build_elf(tmp_path, link_at=0x1000)
    module = tmp_path / "initrd.img"
    module.write_bytes(b"M" * 0x20000)
    boot = load_multiboot(low, memory, cmdline="root=/dev/sda", modules=[module])
    info = boot.ebx
    start, end, _, _ = struct.unpack("<IIII", memory.read(info_field(memory, info, 24), 16))
    assert memory.read(start, end - start) == module.read_bytes()
    assert c_string(memory, info_field(memory, info, 16)) == "root=/dev/sda"
    assert end <= LOADER_AREA_START or start >= LOADER_AREA_END
