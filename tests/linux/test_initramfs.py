"""The initramfs tooling for booting Debian's 32-bit Linux: the cpio "newc" writer, the
module `.modinfo` reader and load-order resolver, and the Debian package cache."""

from __future__ import annotations

import gzip
import lzma
import stat
import struct
from pathlib import Path

import pytest

from guests.linux import debian
from guests.linux.initramfs import CpioArchive, CpioEntry, build_initramfs, newc_entry
from guests.linux.modules import ModuleError, ModuleTree, module_info, module_name


# --- an independent newc reader, written from the format description ----------------

def read_newc(archive: bytes) -> list[tuple[str, int, bytes]]:
    """(name, mode, data) of each member up to the trailer; checks alignment as it goes."""
    members = []
    offset = 0
    while True:
        assert offset % 4 == 0
        header = archive[offset : offset + 110]
        assert header[:6] == b"070701", header[:6]
        numbers = [int(header[6 + 8 * i : 14 + 8 * i], 16) for i in range(13)]
        mode, file_size, name_size = numbers[1], numbers[6], numbers[11]
        name_start = offset + 110
        name = archive[name_start : name_start + name_size]
        assert name.endswith(b"\0")
        data_start = (name_start + name_size + 3) & ~3
        data = archive[data_start : data_start + file_size]
        offset = (data_start + file_size + 3) & ~3
        if name == b"TRAILER!!!\0":
            assert offset == len(archive)
            return members
        members.append((name[:-1].decode(), mode, data))


def members_of(path: Path) -> dict[str, tuple[int, bytes]]:
    return {name: (mode, data) for name, mode, data in read_newc(gzip.decompress(path.read_bytes()))}


# --- cpio newc ------------------------------------------------------------------------

def test_newc_header_matches_the_format_byte_for_byte():
    entry = newc_entry(CpioEntry("a", stat.S_IFREG | 0o644, b"xyz"), inode=1)
    expected_header = (
        b"070701" + b"00000001" + b"000081A4" + b"00000000" + b"00000000" + b"00000001"
        + b"00000000" + b"00000003" + b"00000000" * 4 + b"00000002" + b"00000000"
    )
    # 110 header bytes + "a\0" is 112, already aligned; 3 data bytes pad to 4.
    assert entry == expected_header + b"a\0" + b"xyz\0"


def test_archive_round_trips_directories_files_and_symlinks():
    archive = CpioArchive()
    archive.add_file("etc/motd", b"hello\n", mode=0o600)
    archive.add_symlink("bin/sh", "busybox")
    archive.add_directory("tmp", mode=0o1777)
    members = read_newc(archive.to_bytes())
    assert members == [
        ("bin", stat.S_IFDIR | 0o755, b""),
        ("bin/sh", stat.S_IFLNK | 0o777, b"busybox"),
        ("etc", stat.S_IFDIR | 0o755, b""),
        ("etc/motd", stat.S_IFREG | 0o600, b"hello\n"),
        ("tmp", stat.S_IFDIR | 0o1777, b""),
    ]


def test_archive_refuses_a_path_added_twice_and_paths_leaving_the_root():
    archive = CpioArchive()
    archive.add_file("init", b"x")
    with pytest.raises(ValueError, match="'init' added twice"):
        archive.add_file("/init", b"y")
    with pytest.raises(ValueError, match="bad archive path"):
        archive.add_file("../escape", b"")


def fake_busybox(tmp_path: Path) -> Path:
    path = tmp_path / "busybox"
    path.write_bytes(b"\x7fELF not really busybox")
    return path


def test_initramfs_lays_out_init_busybox_modules_and_mount_points(tmp_path):
    mod_a = tmp_path / "scsi_mod.ko"
    mod_a.write_bytes(b"module a")
    mod_b = tmp_path / "crc-t10dif.ko.xz"
    mod_b.write_bytes(lzma.compress(b"module b"))
    out = build_initramfs(
        tmp_path / "out" / "initrd.gz",
        fake_busybox(tmp_path),
        [mod_a, mod_b],
        "#!/bin/sh\necho hi\n",
        extra_files={"etc/data.bin": b"\x00\x01", "bin/check": b"#!/bin/sh\n"},
        applets=["sh", "insmod", "busybox"],
    )
    members = members_of(out)
    assert members["init"] == (stat.S_IFREG | 0o755, b"#!/bin/sh\necho hi\n")
    assert members["bin/busybox"] == (stat.S_IFREG | 0o755, b"\x7fELF not really busybox")
    assert members["bin/sh"] == (stat.S_IFLNK | 0o777, b"busybox")
    assert members["bin/insmod"] == (stat.S_IFLNK | 0o777, b"busybox")
    # Modules are stored uncompressed, under their .ko name, in the order given.
    assert members["lib/modules/scsi_mod.ko"][1] == b"module a"
    assert members["lib/modules/crc-t10dif.ko"][1] == b"module b"
    assert members["lib/modules/load-order"][1] == b"scsi_mod.ko\ncrc-t10dif.ko\n"
    for directory in ("dev", "proc", "sys", "tmp", "lib", "lib/modules", "etc"):
        assert stat.S_ISDIR(members[directory][0]), directory
    assert members["etc/data.bin"] == (stat.S_IFREG | 0o644, b"\x00\x01")
    assert members["bin/check"] == (stat.S_IFREG | 0o755, b"#!/bin/sh\n")


def test_initramfs_is_the_same_bytes_for_the_same_inputs(tmp_path):
    busybox = fake_busybox(tmp_path)
    module = tmp_path / "ne.ko"
    module.write_bytes(b"ne")
    first = build_initramfs(tmp_path / "1.gz", busybox, [module], "init", applets=["sh", "ls"])
    second = build_initramfs(tmp_path / "2.gz", busybox, [module], "init", applets=["ls", "sh"])
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes()[4:8] == b"\0\0\0\0"  # gzip header mtime


# --- .modinfo and load order ------------------------------------------------------------

def module_elf(modinfo: list[str], elf_class: int = 32, endian: str = "<") -> bytes:
    """A relocatable ELF with a .modinfo section: all a module needs for this reader."""
    modinfo_section = b"".join(entry.encode() + b"\0" for entry in modinfo)
    names = b"\0.modinfo\0.shstrtab\0"
    sections = [(0, 0, b""), (1, 1, modinfo_section), (10, 3, names)]  # name, type, data
    ehsize, shentsize = (52, 40) if elf_class == 32 else (64, 64)
    body = b""
    offsets = []
    for _, _, data in sections:
        offsets.append(ehsize + len(body))
        body += data
    shoff = ehsize + len(body)
    ident = b"\x7fELF" + bytes([1 if elf_class == 32 else 2, 1 if endian == "<" else 2, 1]) + bytes(9)
    word = "I" if elf_class == 32 else "Q"
    header = struct.pack(
        endian + f"16sHHI{word}{word}{word}IHHHHHH",
        ident, 1, 3, 1, 0, 0, shoff, 0, ehsize, 0, 0, shentsize, len(sections), 2,
    )
    section_format = endian + ("IIIIIIIIII" if elf_class == 32 else "IIQQQQIIQQ")
    table = b"".join(
        struct.pack(section_format, name, kind, 0, 0, offset if kind else 0, len(data), 0, 0, 1, 0)
        for (name, kind, data), offset in zip(sections, offsets)
    )
    return header + body + table


def write_module(directory: Path, file_name: str, *modinfo: str) -> Path:
    path = directory / file_name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(module_elf(list(modinfo)))
    return path


def test_modinfo_fields_are_read_from_an_elf32_module(tmp_path):
    path = write_module(
        tmp_path, "crc-t10dif.ko",
        "softdep=pre: crct10dif", "vermagic=6.1.0-50-686 SMP preempt mod_unload",
        "depends=crct10dif_common,scsi-mod", "alias=crc-t10dif-lib", "name=crc_t10dif",
    )
    info = module_info(path)
    assert info.name == "crc_t10dif"
    assert info.depends == ("crct10dif_common", "scsi_mod")
    assert info.softdep_pre == ("crct10dif",)
    assert info.vermagic == "6.1.0-50-686 SMP preempt mod_unload"
    assert info.aliases == ("crc-t10dif-lib",)
    assert info.get("name") == "crc_t10dif"


@pytest.mark.parametrize("elf_class, endian", [(64, "<"), (32, ">")])
def test_modinfo_reader_also_takes_elf64_and_big_endian(tmp_path, elf_class, endian):
    path = tmp_path / "m.ko"
    path.write_bytes(module_elf(["depends=", "name=m"], elf_class, endian))
    info = module_info(path)
    assert (info.name, info.depends) == ("m", ())


def test_module_name_comes_from_the_file_name_when_modinfo_has_none(tmp_path):
    assert module_info(write_module(tmp_path, "t10-pi.ko", "depends=")).name == "t10_pi"
    assert module_name("crc-t10dif.ko.xz") == "crc_t10dif"


def test_a_file_that_is_not_elf_is_refused_naming_it(tmp_path):
    path = tmp_path / "broken.ko"
    path.write_bytes(b"not a module")
    with pytest.raises(ModuleError, match=r"broken\.ko: not an ELF file"):
        module_info(path)


def test_load_order_puts_softdeps_and_dependencies_first_each_once(tmp_path):
    kernel = tmp_path / "kernel"
    write_module(kernel / "drivers", "sd_mod.ko", "depends=scsi_mod,t10-pi", "name=sd_mod")
    write_module(kernel / "drivers", "scsi_mod.ko", "depends=scsi_common", "name=scsi_mod")
    write_module(kernel / "drivers", "scsi_common.ko", "depends=", "name=scsi_common")
    write_module(kernel / "block", "t10-pi.ko", "depends=crc64,scsi_mod", "name=t10_pi")
    write_module(kernel / "lib", "crc64.ko", "softdep=pre: crc64_generic", "depends=", "name=crc64")
    write_module(kernel / "crypto", "crc64_generic.ko", "depends=", "name=crc64_generic")
    order = [info.name for info in ModuleTree(tmp_path).load_order(["sd_mod", "scsi_mod"])]
    assert order == ["scsi_common", "scsi_mod", "crc64_generic", "crc64", "t10_pi", "sd_mod"]


def test_softdep_on_an_alias_prefers_the_generic_module_and_skips_builtins(tmp_path):
    write_module(tmp_path / "kernel/lib", "crc-t10dif.ko", "softdep=pre: crct10dif crypto-sha256", "depends=")
    write_module(tmp_path / "kernel/arch/x86/crypto", "crct10dif-pclmul.ko", "alias=crct10dif", "depends=")
    write_module(tmp_path / "kernel/crypto", "crct10dif_generic.ko", "alias=crct10dif", "depends=")
    (tmp_path / "modules.builtin.modinfo").write_bytes(
        b"sha256_generic.alias=crypto-sha256\0sha256_generic.license=GPL\0"
    )
    order = [info.name for info in ModuleTree(tmp_path).load_order(["crc_t10dif"])]
    assert order == ["crct10dif_generic", "crc_t10dif"]


def test_softdep_post_modules_load_right_after_the_module_even_when_they_need_it(tmp_path):
    write_module(tmp_path, "a.ko", "softdep=pre: p post: q r", "depends=", "name=a")
    write_module(tmp_path, "p.ko", "depends=", "name=p")
    write_module(tmp_path, "q.ko", "depends=a", "name=q")  # needs a: loads after it, no cycle
    write_module(tmp_path, "r.ko", "depends=", "name=r")
    write_module(tmp_path, "z.ko", "depends=a", "name=z")
    order = [info.name for info in ModuleTree(tmp_path).load_order(["z"])]
    assert order == ["p", "a", "q", "r", "z"]


def test_dependency_cycle_is_refused_naming_the_cycle(tmp_path):
    write_module(tmp_path, "a.ko", "depends=b", "name=a")
    write_module(tmp_path, "b.ko", "softdep=pre: c", "depends=", "name=b")
    write_module(tmp_path, "c.ko", "depends=a", "name=c")
    with pytest.raises(ModuleError, match="module dependency cycle: a -> b -> c -> a"):
        ModuleTree(tmp_path).load_order(["a"])


def test_missing_module_is_named_with_what_needs_it(tmp_path):
    write_module(tmp_path, "ne.ko", "depends=8390p", "name=ne")
    tree = ModuleTree(tmp_path)
    with pytest.raises(ModuleError, match=r"module '8390p' not found under .* \(needed by ne\)"):
        tree.load_order(["ne"])
    with pytest.raises(ModuleError, match="module 'sym53c8xx' not found"):
        tree.load_order(["sym53c8xx"])


# --- the Debian cache ---------------------------------------------------------------------

def test_newest_kernel_is_chosen_by_numeric_abi_among_those_apt_can_fetch(monkeypatch):
    def fake_run(command, cwd=None, capture=True):
        if command[:2] == ["apt-cache", "pkgnames"]:
            return "\n".join(
                f"linux-image-6.1.0-{abi}-686-unsigned" for abi in (9, 47, 100, 99)
            ) + "\nlinux-image-6.1.0-99-amd64\n"
        assert command[:2] == ["apt-cache", "policy"]
        if "-100-" in command[2]:
            return f"{command[2]}:\n  Installed: (none)\n  Candidate: (none)\n"
        return f"{command[2]}:\n  Installed: (none)\n  Candidate: 6.1.{command[2][18:20]}-1\n"

    monkeypatch.setattr(debian, "run", fake_run)
    assert debian.newest_kernel_package() == debian.Package(
        "linux-image-6.1.0-99-686-unsigned", "6.1.99-1"
    )


def test_find_cached_is_none_until_the_cache_is_complete(tmp_path):
    assert debian.find_cached(tmp_path) is None
    (tmp_path / "kernel/boot").mkdir(parents=True)
    (tmp_path / "kernel/boot/vmlinuz-6.1.0-7-686").write_bytes(b"k")
    (tmp_path / "kernel/lib/modules/6.1.0-7-686").mkdir(parents=True)
    (tmp_path / "versions.json").write_text(
        '{"kernel_release": "6.1.0-7-686",'
        ' "kernel_package": {"name": "linux-image-6.1.0-7-686-unsigned", "version": "6.1.1-1"},'
        ' "busybox_package": {"name": "busybox-static", "version": "1:1.35.0-4"}}'
    )
    assert debian.find_cached(tmp_path) is None  # busybox still missing
    (tmp_path / "busybox/bin").mkdir(parents=True)
    (tmp_path / "busybox/bin/busybox").write_bytes(b"b")
    found = debian.find_cached(tmp_path)
    assert found.kernel_release == "6.1.0-7-686"
    assert found.vmlinuz == tmp_path / "kernel/boot/vmlinuz-6.1.0-7-686"
    assert found.kernel_package.version == "6.1.1-1"


# --- the real Debian packages (skipped until fetched) ----------------------------------

def test_debian_scsi_and_ne2000_modules_resolve_in_load_order(linux):
    order = ModuleTree(linux.modules_dir).load_order(["sym53c8xx", "sd_mod", "ne"])
    names = [info.name for info in order]
    for module, dependency in [
        ("sym53c8xx", "scsi_transport_spi"), ("scsi_transport_spi", "scsi_mod"),
        ("scsi_mod", "scsi_common"), ("sd_mod", "t10_pi"), ("t10_pi", "crc_t10dif"),
        ("t10_pi", "crc64_rocksoft"), ("crc_t10dif", "crct10dif_generic"), ("ne", "8390p"),
    ]:
        assert names.index(dependency) < names.index(module), (dependency, module)
    assert len(names) == len(set(names))
    assert all(info.vermagic.split()[0] == linux.kernel_release for info in order)


def test_debian_initramfs_links_every_applet_busybox_lists(linux, tmp_path):
    order = ModuleTree(linux.modules_dir).load_order(["ne"])
    out = build_initramfs(tmp_path / "initrd.gz", linux.busybox, [i.path for i in order], "#!/bin/sh\n")
    members = members_of(out)
    for applet in ("sh", "mount", "insmod", "dd", "cmp", "sha256sum", "ip", "poweroff", "["):
        assert members[f"bin/{applet}"] == (stat.S_IFLNK | 0o777, b"busybox"), applet
    assert members["lib/modules/load-order"][1] == b"8390p.ko\nne.ko\n"
