"""Check values of redo overlay data clusters (docs/storage-formats.md §2.2).

Version 1 overlays store ``zlib.crc32`` of each cluster: about 4 GB/s here, slower
than the page cache the clusters come from, so it capped sequential disk I/O.
Version 2 stores a CRC32 of the cluster's *block sums*: the cluster is cut into
4 KiB blocks (the whole cluster if smaller), each block is summed as little-endian
u64 words modulo 2^64 (one vectorised numpy pass, memory speed), and the CRC32 is
taken over those sums. A change is caught when it alters some block's sum: every
change of a single word, and a torn, zeroed, stale or misplaced block whose sum
differs from the right one's. What it misses and CRC32 would not is a set of changes
within one block that cancel in its sum (e.g. the same bit set in one word and
cleared in another), or two blocks of equal sums swapped.
"""

from __future__ import annotations

import zlib

import numpy as np

CRC32 = 1  # redo format version 1: zlib.crc32 of the cluster
BLOCK_SUMS = 2  # redo format version 2: CRC32 of the 4 KiB block sums
SUM_BLOCK = 4096


def block_sums(data: memoryview, cluster_size: int) -> np.ndarray:
    """Per cluster, the u64 sum (mod 2^64) of each 4 KiB block: shape (clusters, blocks)."""
    block = min(SUM_BLOCK, cluster_size)
    words = np.frombuffer(data, dtype="<u8").reshape(-1, cluster_size // block, block // 8)
    return np.add.reduce(words, axis=2)


def cluster_checks(data: memoryview, cluster_size: int, kind: int) -> np.ndarray:
    """Check values (uint32) of the whole clusters in ``data``, by method ``kind``."""
    cs = cluster_size
    count = len(data) // cs
    if kind == CRC32:
        return np.fromiter((zlib.crc32(data[k * cs:(k + 1) * cs]) for k in range(count)),
                           dtype=np.uint32, count=count)
    return checks_from_sums(block_sums(data, cs))


def checks_from_sums(sums: np.ndarray) -> np.ndarray:
    """Version 2 check values from :func:`block_sums` (CRC32 of each cluster's row)."""
    sums = sums.astype("<u8", copy=False)  # the stored bytes are little-endian
    return np.fromiter((zlib.crc32(row) for row in sums), dtype=np.uint32, count=len(sums))
