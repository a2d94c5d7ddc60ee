"""Kernel modules: read a module's `.modinfo`, and order a set of modules for `insmod`.

Debian's kernel package ships no modules.dep (depmod runs at install time), and an
initramfs has no modprobe database either, so the load order is worked out here from
each module's own `depends=` and `softdep=pre:` fields.
"""

from __future__ import annotations

import gzip
import lzma
import struct
from dataclasses import dataclass, field
from pathlib import Path

ELF_MAGIC = b"\x7fELF"
ELFCLASS32, ELFCLASS64 = 1, 2
ELFDATA2LSB, ELFDATA2MSB = 1, 2
MODULE_SUFFIXES = (".ko", ".ko.xz", ".ko.gz")


class ModuleError(Exception):
    """A module file that cannot be read, or a set of modules that cannot be ordered."""


@dataclass(frozen=True)
class ModuleInfo:
    """The fields of one module's `.modinfo` that loading it depends on."""

    name: str
    path: Path
    depends: tuple[str, ...]
    softdep_pre: tuple[str, ...]
    softdep_post: tuple[str, ...]
    vermagic: str
    aliases: tuple[str, ...]
    # Every key=value pair in section order; keys such as alias or parm repeat.
    fields: tuple[tuple[str, str], ...] = field(repr=False)

    def get(self, key: str) -> str | None:
        """The first value of `key`, or None."""
        return next((value for k, value in self.fields if k == key), None)


def module_name(file_name: str) -> str:
    """The module name a file name stands for: `crc-t10dif.ko` is module `crc_t10dif`."""
    for suffix in MODULE_SUFFIXES:
        if file_name.endswith(suffix):
            file_name = file_name[: -len(suffix)]
            break
    return normalize(file_name)


def normalize(name: str) -> str:
    """Module names treat '-' and '_' alike; the kernel spells them with '_'."""
    return name.replace("-", "_")


def read_module_bytes(path: Path) -> bytes:
    """The ELF image of a module file, decompressed if it ends in .xz or .gz."""
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".gz"):
        return gzip.decompress(data)
    return data


def section_bytes(elf: bytes, wanted: str, origin: str = "<bytes>") -> bytes | None:
    """The contents of the section named `wanted` in an ELF image, or None if absent.

    Reads only the ELF header and section headers (ELF32 or ELF64, either byte order):
    that is all a module's `.modinfo` needs.
    """
    if len(elf) < 16 or elf[:4] != ELF_MAGIC:
        raise ModuleError(f"{origin}: not an ELF file")
    elf_class, byte_order = elf[4], elf[5]
    if byte_order not in (ELFDATA2LSB, ELFDATA2MSB):
        raise ModuleError(f"{origin}: unknown ELF byte order {byte_order}")
    endian = "<" if byte_order == ELFDATA2LSB else ">"
    if elf_class == ELFCLASS32:
        # e_shoff at 0x20; e_shentsize, e_shnum, e_shstrndx at 0x2E.
        header_format, shoff_at, counts_at = "I", 0x20, 0x2E
        # sh_name, sh_type, sh_flags, sh_addr, sh_offset, sh_size
        section_format = endian + "IIIIII"
    elif elf_class == ELFCLASS64:
        header_format, shoff_at, counts_at = "Q", 0x28, 0x3A
        section_format = endian + "IIQQQQ"
    else:
        raise ModuleError(f"{origin}: unknown ELF class {elf_class}")
    try:
        (shoff,) = struct.unpack_from(endian + header_format, elf, shoff_at)
        shentsize, shnum, shstrndx = struct.unpack_from(endian + "HHH", elf, counts_at)
        if shnum == 0 or shstrndx >= shnum or shentsize < struct.calcsize(section_format):
            raise ModuleError(f"{origin}: no usable section header table")
        headers = [
            struct.unpack_from(section_format, elf, shoff + index * shentsize)
            for index in range(shnum)
        ]
    except struct.error:
        raise ModuleError(f"{origin}: section headers run past the end of the file") from None

    def contents(header: tuple[int, ...]) -> bytes:
        offset, size = header[4], header[5]
        if offset + size > len(elf):
            raise ModuleError(f"{origin}: a section runs past the end of the file")
        return elf[offset : offset + size]

    names = contents(headers[shstrndx])
    for header in headers:
        name_end = names.find(b"\0", header[0])
        if name_end >= 0 and names[header[0] : name_end].decode("latin-1") == wanted:
            return contents(header)
    return None


def parse_modinfo(section: bytes) -> tuple[tuple[str, str], ...]:
    """The key=value strings of a `.modinfo` section (NUL-separated, NUL-padded)."""
    pairs = []
    for entry in section.split(b"\0"):
        if b"=" in entry:
            key, _, value = entry.decode("utf-8", "replace").partition("=")
            pairs.append((key, value))
    return tuple(pairs)


def parse_softdep(text: str) -> tuple[list[str], list[str]]:
    """Split a softdep value such as "pre: a b post: c" into its pre and post lists."""
    pre: list[str] = []
    post: list[str] = []
    current: list[str] | None = None
    for word in text.split():
        if word == "pre:":
            current = pre
        elif word == "post:":
            current = post
        elif current is not None:
            current.append(normalize(word))
    return pre, post


def module_info(path: Path) -> ModuleInfo:
    """Read the `.modinfo` of one module file."""
    section = section_bytes(read_module_bytes(path), ".modinfo", str(path))
    if section is None:
        raise ModuleError(f"{path}: no .modinfo section, not a kernel module")
    fields = parse_modinfo(section)

    def values(key: str) -> list[str]:
        return [value for k, value in fields if k == key]

    depends = [normalize(d) for text in values("depends") for d in text.split(",") if d]
    pre: list[str] = []
    post: list[str] = []
    for text in values("softdep"):
        more_pre, more_post = parse_softdep(text)
        pre += more_pre
        post += more_post
    names = values("name")
    return ModuleInfo(
        name=normalize(names[0]) if names else module_name(path.name),
        path=path,
        depends=tuple(depends),
        softdep_pre=tuple(pre),
        softdep_post=tuple(post),
        vermagic=(values("vermagic") or [""])[0],
        aliases=tuple(values("alias")),
        fields=fields,
    )


class ModuleTree:
    """The modules of one kernel (`lib/modules/<release>`), found by name or alias."""

    def __init__(self, modules_dir: Path) -> None:
        self.modules_dir = Path(modules_dir)
        if not self.modules_dir.is_dir():
            raise ModuleError(f"{self.modules_dir}: no such modules directory")
        self.paths: dict[str, Path] = {}
        for path in sorted(self.modules_dir.rglob("*.ko*")):
            if path.name.endswith(MODULE_SUFFIXES):
                self.paths.setdefault(module_name(path.name), path)
        self.builtin_names, self.builtin_aliases = self._read_builtin()
        self._infos: dict[str, ModuleInfo] = {}
        self._alias_index: dict[str, list[str]] | None = None

    def _read_builtin(self) -> tuple[set[str], set[str]]:
        """Names and aliases of modules compiled into the kernel: nothing to load."""
        names: set[str] = set()
        aliases: set[str] = set()
        builtin_list = self.modules_dir / "modules.builtin"
        if builtin_list.exists():
            names |= {module_name(Path(line).name) for line in builtin_list.read_text().split()}
        builtin_info = self.modules_dir / "modules.builtin.modinfo"
        if builtin_info.exists():
            for key, value in parse_modinfo(builtin_info.read_bytes()):
                module, _, field_name = key.partition(".")
                names.add(normalize(module))
                if field_name == "alias":
                    aliases.add(normalize(value))
        return names, aliases

    def info(self, name: str) -> ModuleInfo:
        """The `.modinfo` of the module file called `name`."""
        name = normalize(name)
        if name not in self._infos:
            if name not in self.paths:
                raise ModuleError(f"module {name!r} not found under {self.modules_dir}")
            self._infos[name] = module_info(self.paths[name])
        return self._infos[name]

    def is_builtin(self, name: str) -> bool:
        name = normalize(name)
        return name in self.builtin_names or name in self.builtin_aliases

    def resolve_name(self, name: str) -> str | None:
        """The module file that provides `name`, a module name or an alias (softdeps use
        aliases such as "crct10dif"); None if the kernel has it built in. Like modprobe,
        this treats '-' and '_' alike in aliases too."""
        name = normalize(name)
        if name in self.paths:
            return name
        if self.is_builtin(name):
            return None
        providers = self._aliases().get(name, [])
        if not providers:
            raise ModuleError(f"module {name!r} not found under {self.modules_dir}")
        # Prefer the portable implementation (crypto/, lib/) over an arch/ one that
        # needs a CPU feature (e.g. PCLMULQDQ) the virtual CPU may lack.
        providers.sort(key=lambda n: ("/arch/" in str(self.paths[n]), n))
        return providers[0]

    def _aliases(self) -> dict[str, list[str]]:
        # Reading every module's .modinfo takes a moment: only done when a softdep
        # names something that is not a module file.
        if self._alias_index is None:
            self._alias_index = {}
            for name in self.paths:
                for alias in self.info(name).aliases:
                    self._alias_index.setdefault(normalize(alias), []).append(name)
        return self._alias_index

    def load_order(self, wanted: list[str]) -> list[ModuleInfo]:
        """The modules to insmod, in order, so that `wanted` load: each module after its
        `softdep=pre:` modules and its `depends=`, and before its `softdep=post:` ones
        (as modprobe does), each once. A cycle among the modules that must come first is
        refused; a post module that needs the module itself is fine."""
        order: list[ModuleInfo] = []
        done: set[str] = set()
        in_progress: list[str] = []

        def visit(name: str, needed_by: str | None) -> None:
            try:
                resolved = self.resolve_name(name)
            except ModuleError as error:
                raise ModuleError(
                    f"{error}" + (f" (needed by {needed_by})" if needed_by else "")
                ) from None
            if resolved is None or resolved in done:
                return
            if resolved in in_progress:
                cycle = in_progress[in_progress.index(resolved) :] + [resolved]
                raise ModuleError("module dependency cycle: " + " -> ".join(cycle))
            in_progress.append(resolved)
            info = self.info(resolved)
            for dependency in info.softdep_pre + info.depends:
                visit(dependency, resolved)
            in_progress.pop()
            done.add(resolved)
            order.append(info)
            for follower in info.softdep_post:
                visit(follower, resolved)

        for name in wanted:
            visit(name, None)
        return order
