"""Source documents on disk: a memory-mapped Arrow file read as a ``Sequence[SourceDoc]``.

A paper-scale source (164k documents of ~1,300 tokens) is about 1 GB of text. Held as
Python strings it would sit in every process that plans, generates or assembles a corpus,
and in every ``num_proc`` worker's pickled copy of the plan. Written once as an Arrow IPC
file and memory-mapped, its pages are shared through the page cache, private memory stays
constant, and the object pickles as its path.

Hand-written over ``datasets.Dataset``: a plan needs random access to single documents by
position from several processes without a cache fingerprint; a plain IPC file does that.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import weakref
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, overload

import pyarrow as pa

from hf_megadocs.generation.embedded import cache_root
from hf_megadocs.mapped_pages import PageBudget
from hf_megadocs.records import SourceDoc

BATCH_ROWS = 1024
"""Documents per Arrow record batch (the unit a reader maps and decodes)."""

_SCHEMA = pa.schema([("source_id", pa.large_string()), ("text", pa.large_string())])


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
    """Documents in an Arrow IPC file, mapped on first access (in each process). The pages
    a pass has read are handed back as it goes (:class:`~hf_megadocs.mapped_pages.PageBudget`),
    so reading every document does not make the whole file resident."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._batches: list[pa.RecordBatch] | None = None
        self._length = -1
        self._pages = PageBudget()
        self._last_batch = -1

    @classmethod
    def write(cls, docs: Iterable[SourceDoc], path: str | Path) -> SpilledDocs:
        """Write ``docs`` (consumed once, :data:`BATCH_ROWS` at a time) to ``path``."""
        iterator = iter(docs)
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, _SCHEMA) as writer:
            while chunk := list(itertools.islice(iterator, BATCH_ROWS)):
                columns = [[d.source_id for d in chunk], [d.text for d in chunk]]
                writer.write_batch(pa.record_batch(columns, schema=_SCHEMA))
        return cls(path)

    def _open(self) -> list[pa.RecordBatch]:
        if self._batches is None:
            reader = pa.ipc.open_file(pa.memory_map(str(self.path), "r"))
            self._batches = [reader.get_batch(i) for i in range(reader.num_record_batches)]
            self._length = sum(b.num_rows for b in self._batches)
        return self._batches

    def __len__(self) -> int:
        self._open()
        return self._length

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
        batch = self._open()[index // BATCH_ROWS]  # every batch but the last is full
        row = index % BATCH_ROWS
        doc = SourceDoc(source_id=batch.column(0)[row].as_py(), text=batch.column(1)[row].as_py())
        # Reads in order stay within one batch's contiguous columns; a jump is a new place.
        jumped = index // BATCH_ROWS != self._last_batch
        self._last_batch = index // BATCH_ROWS
        self._pages.read(len(doc.text) + len(doc.source_id), places=2 if jumped else 0)
        return doc

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}  # a worker maps the file itself

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])


__all__ = ["BATCH_ROWS", "SpilledDocs", "spill_folder"]
