"""The VM image file: a suspended VM on disk (format in docs/vm-image.md).

    header   magic "VMMIMAGE", format version (u32), section count (u32),
             then per section: name (16 bytes, NUL-padded), offset (u64), length (u64),
             CRC-32 (u32); the header ends with the CRC-32 of everything before it
    sections "state": the machine's saved state as JSON (bytes as {"$b": base64})
             "ram":   u64 RAM size, u32 page size, a bitmap of the pages stored (the
                      all-zero ones are not), then those pages as one zstd frame

Every part is checked before anything is used: a truncated, damaged, foreign or newer
image is refused with a message naming the file and the damage. Writing goes to a
temporary file that replaces the target only when complete.
"""

from __future__ import annotations

import base64
import json
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zstandard

MAGIC = b"VMMIMAGE"
FORMAT_VERSION = 1
PAGE = 4096
_PREFIX = struct.Struct("<8sII")
_ENTRY = struct.Struct("<16sQQI")
_RAM_HEADER = struct.Struct("<QI")


class ImageError(Exception):
    """The image cannot be used; the message names the file and says why."""


@dataclass
class Image:
    state: dict[str, Any]
    ram_section: bytes  # packed: see unpack_ram_into
    where: str

    @property
    def ram_size(self) -> int:
        return _RAM_HEADER.unpack_from(self.ram_section)[0]

    def load_ram(self, ram: memoryview) -> None:
        """Write the stored pages into ``ram``, which must be all zero (fresh RAM)."""
        unpack_ram_into(self.ram_section, ram, self.where)


# -- plain data with bytes, as JSON --------------------------------------------------------

def _encode(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$b": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$b"}:
            return base64.b64decode(value["$b"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


# -- RAM: zero pages skipped, the rest compressed ----------------------------------------------

def pack_ram(ram: memoryview, level: int = 1) -> bytes:
    size = len(ram)
    pages = np.frombuffer(ram, dtype=np.uint64).reshape(-1, PAGE // 8)
    stored = pages.any(axis=1)
    compressor = zstandard.ZstdCompressor(level=level, threads=-1)
    body = compressor.compress(pages[stored].tobytes())
    return _RAM_HEADER.pack(size, PAGE) + np.packbits(stored, bitorder="little").tobytes() + body


def _ram_layout(data: bytes, where: str) -> tuple[int, np.ndarray, int]:
    """(RAM size, which pages are stored, where the zstd frame starts)."""
    try:
        size, page = _RAM_HEADER.unpack_from(data)
    except struct.error:
        raise ImageError(f"{where}: RAM section too short") from None
    if page != PAGE or size % PAGE:
        raise ImageError(f"{where}: RAM section has page size {page} and RAM size {size}")
    count = size // PAGE
    bitmap_len = (count + 7) // 8
    offset = _RAM_HEADER.size
    if len(data) < offset + bitmap_len:
        raise ImageError(f"{where}: RAM section too short for its page bitmap")
    stored = np.unpackbits(np.frombuffer(data, np.uint8, bitmap_len, offset), bitorder="little")[:count]
    return size, stored.astype(bool), offset + bitmap_len


def unpack_ram_into(data: bytes, ram: memoryview, where: str) -> None:
    """Decompress the stored pages straight into their places in ``ram``."""
    size, stored, body_at = _ram_layout(data, where)
    if len(ram) != size:
        raise ImageError(f"{where}: RAM of {size} bytes does not fit a machine with {len(ram)}")
    expected = int(stored.sum()) * PAGE
    try:
        body = zstandard.ZstdDecompressor().decompress(data[body_at:], max_output_size=expected)
    except zstandard.ZstdError as exc:
        raise ImageError(f"{where}: RAM pages do not decompress ({exc})") from None
    if len(body) != expected:
        raise ImageError(f"{where}: RAM section holds {len(body)} bytes of pages, expected {expected}")
    pages = np.frombuffer(ram, dtype=np.uint8).reshape(-1, PAGE)
    pages[stored] = np.frombuffer(body, np.uint8).reshape(-1, PAGE)


# -- the file -------------------------------------------------------------------------------------

def write_image(path: str | Path, state: dict[str, Any], ram: memoryview) -> int:
    """Write the image atomically; returns its size in bytes."""
    path = Path(path)
    sections = [
        (b"state", json.dumps(_encode(state), separators=(",", ":")).encode()),
        (b"ram", pack_ram(ram)),
    ]
    header_len = _PREFIX.size + len(sections) * _ENTRY.size + 4
    header = bytearray(_PREFIX.pack(MAGIC, FORMAT_VERSION, len(sections)))
    offset = header_len
    for name, body in sections:
        header += _ENTRY.pack(name, offset, len(body), zlib.crc32(body))
        offset += len(body)
    header += struct.pack("<I", zlib.crc32(header))
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "wb") as out:
        out.write(header)
        for _, body in sections:
            out.write(body)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)
    return offset


def read_image(path: str | Path) -> Image:
    path = Path(path)
    where = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageError(f"{where}: {exc.strerror}") from None
    if len(data) < _PREFIX.size or data[:8] != MAGIC:
        raise ImageError(f"{where}: not a VM image (no VMMIMAGE magic)")
    _, version, count = _PREFIX.unpack_from(data)
    if version > FORMAT_VERSION:
        raise ImageError(f"{where}: made by a newer vmm (image format {version}, this one reads up to {FORMAT_VERSION})")
    if version < 1 or count > 64:
        raise ImageError(f"{where}: header damaged (format {version}, {count} sections)")
    header_len = _PREFIX.size + count * _ENTRY.size + 4
    if len(data) < header_len:
        raise ImageError(f"{where}: truncated inside the header ({len(data)} bytes)")
    (crc,) = struct.unpack_from("<I", data, header_len - 4)
    if zlib.crc32(data[: header_len - 4]) != crc:
        raise ImageError(f"{where}: header damaged (checksum mismatch)")
    sections: dict[str, bytes] = {}
    for i in range(count):
        name, offset, length, crc = _ENTRY.unpack_from(data, _PREFIX.size + i * _ENTRY.size)
        label = name.rstrip(b"\0").decode(errors="replace")
        if offset + length > len(data):
            raise ImageError(f"{where}: truncated: section {label} needs {offset + length} bytes, the file has {len(data)}")
        body = data[offset : offset + length]
        if zlib.crc32(body) != crc:
            raise ImageError(f"{where}: section {label} damaged (checksum mismatch)")
        sections[label] = body
    for required in ("state", "ram"):
        if required not in sections:
            raise ImageError(f"{where}: no {required} section")
    try:
        state = _decode(json.loads(sections["state"]))
    except ValueError as exc:
        raise ImageError(f"{where}: state section is not valid JSON ({exc})") from None
    _ram_layout(sections["ram"], where)  # the layout is checked before anything is used
    return Image(state, sections["ram"], where)
