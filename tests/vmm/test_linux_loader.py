"""The Linux 32-bit boot protocol (vmm/loaders/linux.py), with a bzImage made in the test:
a setup header and a protected-mode payload that reads the zero page the way the
kernel's startup_32 does and reports what it found on COM1."""

from __future__ import annotations

import struct
import subprocess
import sys

import pytest

from tests.helpers import REPO
from tests.unicorn.asm import assemble
from vmm.loaders import LoaderError, load_kernel

# The payload, at 1 MiB: checks CS/DS are __BOOT_CS/__BOOT_DS, prints the command line,
# the number of e820 entries, the first byte of the initrd, and exits with 0.
PAYLOAD = """
    mov ax, cs
    cmp ax, 0x10
    jne bad
    mov ax, ds
    cmp ax, 0x18
    jne bad
    mov edx, 0x3f8
    mov ebx, [esi + 0x228]
print_cmdline:
    mov al, [ebx]
    test al, al
    jz cmdline_done
    out dx, al
    inc ebx
    jmp print_cmdline
cmdline_done:
    mov al, ' '
    out dx, al
    mov al, [esi + 0x1e8]
    add al, '0'
    out dx, al
    mov al, ' '
    out dx, al
    mov ebx, [esi + 0x218]
    test ebx, ebx
    jz no_initrd
    mov al, [ebx]
    out dx, al
no_initrd:
    mov al, [esi + 0x210]
    cmp al, 0xff
    jne bad
    mov edx, 0xf4
    xor eax, eax
    out dx, eax
bad:
    mov edx, 0xf4
    mov eax, 7
    out dx, eax
"""


def bzimage(tmp_path, version: int = 0x020F, xloadflags: int = 0, loadflags: int = 0x01, name: str = "bzImage"):
    setup = bytearray(2 * 512)  # boot sector + one setup sector
    setup[0x1F1] = 1  # setup_sects
    struct.pack_into("<H", setup, 0x1FE, 0xAA55)
    setup[0x200] = 0xEB  # jmp over the header ...
    setup[0x201] = 0x66  # ... to 0x268: the header's end
    setup[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", setup, 0x206, version)
    setup[0x211] = loadflags
    struct.pack_into("<I", setup, 0x214, 0x100000)  # code32_start
    struct.pack_into("<I", setup, 0x22C, 0x37FFFFFF)  # initrd_addr_max
    struct.pack_into("<H", setup, 0x236, xloadflags)
    struct.pack_into("<I", setup, 0x238, 2047)  # cmdline_size
    path = tmp_path / name
    path.write_bytes(bytes(setup) + assemble(PAYLOAD, 0x100000).code)
    return path


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vmm", "run", *args], capture_output=True,
                          text=True, cwd=REPO, timeout=120)


def test_a_bzimage_boots_with_its_command_line_e820_map_and_initrd(tmp_path):
    initrd = tmp_path / "initrd.img"
    initrd.write_bytes(b"R" + bytes(5000))
    proc = run(str(bzimage(tmp_path)), "--append", "console=ttyS0 quiet", "--initrd", str(initrd))
    assert proc.stdout == "console=ttyS0 quiet 3 R"
    assert proc.returncode == 0, proc.stderr


def test_the_zero_page_holds_the_setup_header_and_the_loader_fields(tmp_path):
    import io

    from vmm.machine import Machine, MachineConfig

    initrd = tmp_path / "initrd.img"
    initrd.write_bytes(b"x" * 10000)
    machine = Machine(MachineConfig(memory_mib=64, cmdline="root=/dev/sda", initrds=[initrd]),
                      serial_out=io.BytesIO())
    boot = machine.load(bzimage(tmp_path))
    params = machine.memory.read(boot.esi, 4096)
    assert params[0x202:0x206] == b"HdrS"
    assert params[0x210] == 0xFF  # type_of_loader: unknown
    assert params[0x211] & 0x01  # LOADED_HIGH
    ramdisk, size = struct.unpack_from("<II", params, 0x218)
    assert size == 10000 and ramdisk % 4096 == 0 and ramdisk + size <= 64 << 20
    assert machine.memory.read(ramdisk, 4) == b"xxxx"
    cmdline = struct.unpack_from("<I", params, 0x228)[0]
    assert machine.memory.read(cmdline, 14) == b"root=/dev/sda\0"
    entries = [struct.unpack_from("<QQI", params, 0x2D0 + 20 * i) for i in range(params[0x1E8])]
    assert entries[-1] == (0x100000, (64 << 20) - 0x100000, 1)
    assert (boot.entry, boot.esi) == (0x100000, 0x10000)
    assert (machine.cpu.reg("cs"), machine.cpu.reg("ds")) == (0x10, 0x18)
    machine.close()


def test_a_64_bit_kernel_is_refused_with_the_reason(tmp_path):
    proc = run(str(bzimage(tmp_path, xloadflags=0x01)))
    assert proc.returncode == 103
    assert "64-bit kernel" in proc.stderr


def test_a_kernel_with_too_old_a_boot_protocol_is_refused(tmp_path):
    proc = run(str(bzimage(tmp_path, version=0x0202)))
    assert proc.returncode == 103
    assert "boot protocol 2.02 is too old" in proc.stderr


def test_a_zimage_loaded_low_is_refused(tmp_path):
    with pytest.raises(LoaderError, match="zImage"):
        from vmm.machine import Machine, MachineConfig
        import io
        machine = Machine(MachineConfig(memory_mib=16), serial_out=io.BytesIO())
        try:
            load_kernel(bzimage(tmp_path, loadflags=0), machine.memory)
        finally:
            machine.close()
