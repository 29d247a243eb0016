"""Hand back the pages of memory-mapped data files that a pass has read (Linux).

datasets reads its Arrow caches, and the trainer its packed ``.npy`` rows, through
read-only memory maps. Every page a pass touches stays in the process's resident set
until the map is closed, so one pass over a corpus shows a resident size that grows with
the corpus, although those pages are the kernel's page cache: shared, clean and
reclaimable. ``madvise(MADV_DONTNEED)`` on a read-only file mapping drops this process's
references and changes no data; the next access faults the page back in from the page
cache (or the disk). Neither datasets, pyarrow nor NumPy exposes this, hence this small
hand-written helper. A release walks every mapping of the process, so callers pay for it
once per :data:`RELEASE_EVERY_BYTES` read (:class:`PageBudget`): resident memory stays
bounded by that much, and the cost by a syscall sweep per that many bytes.
"""

from __future__ import annotations

import ctypes
import logging
import sys

logger = logging.getLogger(__name__)

MADV_DONTNEED = 4
DATA_SUFFIXES = (".arrow", ".npy")
"""Files whose mappings are released: datasets' Arrow caches and packed rows."""

RELEASE_EVERY_BYTES = 64 << 20
"""Bytes a pass reads from mapped files between two releases (bounds their residency)."""

_libc: ctypes.CDLL | None = None


def release_mapped_pages(suffixes: tuple[str, ...] = DATA_SUFFIXES) -> int:
    """Drop this process's resident pages of read-only mappings of ``suffixes`` files.

    Returns the bytes of mappings advised (0 off Linux, or where madvise is refused).
    Writable mappings are never touched: dropping their pages could lose data.
    """
    global _libc
    if not sys.platform.startswith("linux"):
        return 0
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    advised = 0
    try:
        with open("/proc/self/maps") as maps:
            lines = maps.readlines()
    except OSError:
        return 0
    for line in lines:
        parts = line.split(maxsplit=5)
        if len(parts) < 6 or "w" in parts[1] or not parts[5].rstrip().endswith(suffixes):
            continue
        start, end = (int(x, 16) for x in parts[0].split("-"))
        if _libc.madvise(start, end - start, MADV_DONTNEED) == 0:
            advised += end - start
    return advised


class PageBudget:
    """Releases mapped pages once every ``every_bytes`` bytes a pass reports reading."""

    def __init__(self, every_bytes: int = RELEASE_EVERY_BYTES) -> None:
        self.every_bytes = every_bytes
        self.pending = 0

    def read(self, nbytes: int) -> None:
        """Count ``nbytes`` read from mapped files; release when the budget is spent."""
        self.pending += nbytes
        if self.pending >= self.every_bytes:
            self.pending = 0
            release_mapped_pages()


__all__ = ["DATA_SUFFIXES", "RELEASE_EVERY_BYTES", "PageBudget", "release_mapped_pages"]
