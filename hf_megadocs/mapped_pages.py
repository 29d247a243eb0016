"""Hand back the pages of memory-mapped data files that a pass has read (Linux).

datasets reads its Arrow caches, and the trainer its packed ``.npy`` rows, through
read-only memory maps. Every page a pass touches stays in the process's resident set until
the map is closed, so one pass over a corpus shows a resident size that grows with the
corpus, although those pages are the kernel's page cache: shared, clean and reclaimable.
``madvise(MADV_DONTNEED)`` on a read-only file mapping drops this process's references and
changes no data; the next access faults the page back in from the page cache (or the
disk). Neither datasets, pyarrow nor NumPy exposes this, hence this small hand-written
helper. A release walks every mapping of the process, so callers pay for it once per
:data:`RELEASE_EVERY_BYTES` read (:class:`PageBudget`): resident memory stays bounded by
that much, and the cost by a syscall sweep per that many bytes.

A read costs more resident memory than its bytes: a read fault maps the pages around the
faulting one that are already in the page cache ("fault-around", 64 KiB by default), and
where the page cache holds large folios the kernel maps the whole folio, up to a PMD
(measured on Linux 6.18, ext4: 2 MiB mapped per 1-byte read, with or without
``MADV_RANDOM``). So a scattered gather of 5 KB units made a whole file resident after
reading a tenth of it. :meth:`PageBudget.read` therefore charges every separate place
read with :data:`MAPPED_PER_FAULT` at each end as well as its bytes.
"""

from __future__ import annotations

import ctypes
import logging
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

MADV_DONTNEED = 4
DATA_SUFFIXES = (".arrow", ".npy")
"""Files whose mappings are released: datasets' Arrow caches and packed rows."""

RELEASE_EVERY_BYTES = 64 << 20
"""Bytes a pass reads from mapped files between two releases (bounds their residency)."""


def _mapped_per_fault() -> int:
    """The most one read fault can map: a PMD where the kernel has large folios (their
    size is in sysfs), else the default fault-around window."""
    try:
        pmd = int(Path("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size").read_text())
    except (OSError, ValueError):
        pmd = 0
    return max(64 << 10, pmd)


MAPPED_PER_FAULT = _mapped_per_fault()
"""Bytes one read fault of a file mapping can make resident (2 MiB on x86-64 Linux with
large folios); a read that spans pages can fault at both ends."""

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
        if not line.rstrip().endswith(suffixes):
            continue
        parts = line.split(maxsplit=5)
        if len(parts) < 6 or "w" in parts[1]:
            continue
        start, end = (int(x, 16) for x in parts[0].split("-"))
        if _libc.madvise(start, end - start, MADV_DONTNEED) == 0:
            advised += end - start
    return advised


class PageBudget:
    """Releases mapped pages once a pass has read ``every_bytes`` (default
    :data:`RELEASE_EVERY_BYTES`) from mapped files, fault-around included."""

    def __init__(self, every_bytes: int | None = None) -> None:
        self.every_bytes = RELEASE_EVERY_BYTES if every_bytes is None else every_bytes
        self.pending = 0

    @property
    def places_per_release(self) -> int:
        """How many separate places a pass can read between two releases."""
        return max(1, self.every_bytes // (2 * MAPPED_PER_FAULT))

    def read(self, nbytes: int, places: int = 1) -> None:
        """Count ``nbytes`` read from mapped files at ``places`` separate places (a
        sequential read is one place, a gather of rows one per row and column); release
        when the budget is spent."""
        self.pending += nbytes + places * 2 * MAPPED_PER_FAULT
        if self.pending >= self.every_bytes:
            self.pending = 0
            release_mapped_pages()


__all__ = [
    "DATA_SUFFIXES",
    "MAPPED_PER_FAULT",
    "RELEASE_EVERY_BYTES",
    "PageBudget",
    "release_mapped_pages",
]
