"""The planned training documents: each document with the store keys of its generations.

:class:`DocPlans` keeps them on disk in a spill folder, so a paper-scale plan (164k
documents, 5.2M keys) costs a constant amount of private memory in the builder and in each
``num_proc`` worker: the texts are a flat file read by position
(:class:`~hf_megadocs.generation.spilled_docs.SpilledDocs`), the keys one array of 16-byte
digests and the latent split points one array of offsets, both memory-mapped ``.npy``
files, with per-document start positions.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

import numpy as np

from hf_megadocs.generation.spilled_docs import SpilledDocs
from hf_megadocs.records import SourceDoc


@dataclass(frozen=True, slots=True)
class DocPlan:
    """One training document and the store keys of its generations, in order."""

    doc: SourceDoc
    digests: bytes = b""
    """The keys as 16 bytes each (a 32-character key string costs 81 bytes in Python)."""
    points: tuple[int, ...] = ()
    """Latent split points (character offsets); empty for other methods."""

    @classmethod
    def of(cls, doc: SourceDoc, keys: Sequence[str], points: Sequence[int] = ()) -> DocPlan:
        """The plan of ``doc`` with the store ``keys`` of its generations, in order."""
        return cls(doc, bytes.fromhex("".join(keys)), tuple(points))

    @property
    def keys(self) -> tuple[str, ...]:
        """Sample 0..G-1 (rephrases, qa, …) or split point 0..G'-1 (latent rationales)."""
        return tuple(self.key(i) for i in range(self.num_keys))

    @property
    def num_keys(self) -> int:
        return len(self.digests) // 16

    def key(self, index: int) -> str:
        """Key ``index`` (0 ≤ index < :attr:`num_keys`)."""
        return self.digests[16 * index : 16 * index + 16].hex()


class DocPlans(Sequence[DocPlan]):
    """:class:`DocPlan` s of spilled documents, keys and points read from mapped files."""

    def __init__(self, docs: SpilledDocs, folder: Path) -> None:
        self.docs = docs
        self.folder = Path(folder)
        self._arrays: dict[str, np.ndarray] | None = None

    @classmethod
    def write(
        cls,
        docs: SpilledDocs,
        keys: Iterable[bytes],
        points: Iterable[Sequence[int]],
        folder: Path,
    ) -> DocPlans:
        """Store, for each of ``docs`` in order, its key digests and its split points."""
        key_starts, point_starts = [0], [0]
        with (
            (folder / "keys.bin").open("wb") as key_file,
            (folder / "points.bin").open("wb") as point_file,
        ):
            for digests, doc_points in zip(keys, points, strict=True):
                key_file.write(digests)
                point_file.write(np.asarray(doc_points, dtype="<i8").tobytes())
                key_starts.append(key_starts[-1] + len(digests) // 16)
                point_starts.append(point_starts[-1] + len(doc_points))
        if len(key_starts) - 1 != len(docs):
            raise ValueError(f"{len(key_starts) - 1} key lists for {len(docs)} documents")
        np.save(folder / "key_starts.npy", np.asarray(key_starts, dtype="<i8"))
        np.save(folder / "point_starts.npy", np.asarray(point_starts, dtype="<i8"))
        return cls(docs, folder)

    def _open(self) -> dict[str, np.ndarray]:
        if self._arrays is None:
            self._arrays = {
                "key_starts": np.load(self.folder / "key_starts.npy", mmap_mode="r"),
                "point_starts": np.load(self.folder / "point_starts.npy", mmap_mode="r"),
                "keys": _mapped(self.folder / "keys.bin", "S16"),
                "points": _mapped(self.folder / "points.bin", "<i8"),
            }
        return self._arrays

    def __len__(self) -> int:
        return len(self.docs)

    @property
    def num_keys(self) -> int:
        """Keys of every document together (the generations the plan needs)."""
        return int(self._open()["key_starts"][-1])

    def iter_keys(self, chunk: int) -> Iterator[list[str]]:
        """Every document's keys in plan order, ``chunk`` at a time (no text is read)."""
        keys = self._open()["keys"]
        for start in range(0, len(keys), chunk):
            raw = keys[start : start + chunk].tobytes()
            yield [raw[i : i + 16].hex() for i in range(0, len(raw), 16)]

    @overload
    def __getitem__(self, index: int) -> DocPlan: ...
    @overload
    def __getitem__(self, index: slice) -> list[DocPlan]: ...
    def __getitem__(self, index: int | slice) -> DocPlan | list[DocPlan]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        arrays = self._open()
        k0, k1 = int(arrays["key_starts"][index]), int(arrays["key_starts"][index + 1])
        p0, p1 = int(arrays["point_starts"][index]), int(arrays["point_starts"][index + 1])
        return DocPlan(
            self.docs[index],
            arrays["keys"][k0:k1].tobytes(),
            tuple(arrays["points"][p0:p1].tolist()),
        )

    def __getstate__(self) -> dict[str, Any]:
        return {"docs": self.docs, "folder": self.folder}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["docs"], state["folder"])


def _mapped(path: Path, dtype: str) -> np.ndarray:
    """``path`` as a read-only array (empty files included: numpy cannot map those)."""
    if path.stat().st_size == 0:
        return np.empty(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r")


__all__ = ["DocPlan", "DocPlans"]
