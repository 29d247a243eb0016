"""Source documents on disk: a flat file read by position as a ``Sequence[SourceDoc]``.

A paper-scale source (164k documents of ~1,300 tokens) is about 1 GB of text. Held as
Python strings it would sit in every process that plans, generates or assembles a corpus,
and in every ``num_proc`` worker's pickled copy of the plan. Written once to disk, each
document is read with one ``pread`` when it is needed: private memory holds two offsets
per document, the texts stay in the kernel's page cache (shared by every process, and not
in any process's resident set, as the pages of a memory map would be: a builder that
reads documents in shuffled order would otherwise make the whole file resident), and the
object pickles as its path.

Hand-written over ``datasets.Dataset`` and Arrow: a plan needs random access to single
documents by position from several processes, without a cache fingerprint and without
mapping the file.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from array import array
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, overload

import numpy as np

from hf_megadocs.generation.embedded import cache_root
from hf_megadocs.records import SourceDoc


def spill_folder(owner: object, root: str | Path | None = None) -> Path:
    """A new folder under ``<hf_megadocs cache>/tmp`` (on disk, unlike a tmpfs ``/tmp``),
    removed when ``owner`` is garbage-collected or the process exits.

    Folders left by processes that no longer run (killed before they could clean up) are
    removed first, so crashes do not accumulate spilled plans.
    """
    base = Path(root) if root is not None else cache_root() / "tmp"
    base.mkdir(parents=True, exist_ok=True)
    for stale in base.glob("spill-*-*"):
        pid = stale.name.split("-")[1]
        if pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    folder = Path(tempfile.mkdtemp(prefix=f"spill-{os.getpid()}-", dir=base))
    weakref.finalize(owner, shutil.rmtree, folder, ignore_errors=True)
    return folder


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


class SpilledDocs(Sequence[SourceDoc]):
    """Documents in a flat file (``path``: each document's id then its text, UTF-8) with
    their boundaries in ``<path>.offsets.npy``; opened on first access, in each process."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._bounds: np.ndarray | None = None
        self._fd = -1

    @property
    def offsets_path(self) -> Path:
        return self.path.with_name(self.path.name + ".offsets.npy")

    @classmethod
    def write(cls, docs: Iterable[SourceDoc], path: str | Path) -> SpilledDocs:
        """Write ``docs`` (consumed once, one at a time) to ``path``."""
        spilled = cls(path)
        bounds = array("q", [0])  # id i is bounds[2i]:bounds[2i+1], its text up to bounds[2i+2]
        with open(spilled.path, "wb") as data:
            for doc in docs:
                for part in (doc.source_id.encode(), doc.text.encode()):
                    data.write(part)
                    bounds.append(bounds[-1] + len(part))
        np.save(spilled.offsets_path, np.frombuffer(bounds, dtype=np.int64))
        return spilled

    def _open(self) -> np.ndarray:
        if self._bounds is None:
            self._bounds = np.load(self.offsets_path)
            self._fd = os.open(self.path, os.O_RDONLY)
            weakref.finalize(self, os.close, self._fd)
        return self._bounds

    def __len__(self) -> int:
        return (len(self._open()) - 1) // 2

    @overload
    def __getitem__(self, index: int) -> SourceDoc: ...
    @overload
    def __getitem__(self, index: slice) -> list[SourceDoc]: ...
    def __getitem__(self, index: int | slice) -> SourceDoc | list[SourceDoc]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        length = len(self)
        if index < 0:
            index += length
        if not 0 <= index < length:
            raise IndexError(f"document {index} of {length}")
        start, middle, end = (int(b) for b in self._open()[2 * index : 2 * index + 3])
        raw = os.pread(self._fd, end - start, start)
        if len(raw) != end - start:
            raise OSError(f"{self.path} is shorter than its offsets say; it was changed or cut")
        return SourceDoc(
            source_id=raw[: middle - start].decode(), text=raw[middle - start :].decode()
        )

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}  # a worker opens the file itself

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])


__all__ = ["SpilledDocs", "spill_folder"]
