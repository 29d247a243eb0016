"""The generation store: append-only, sharded, crash-safe, shared by every corpus.

Layout under the store root::

    generations/shard-<i>-of-<n>-<host>-<pid>.jsonl   one checksummed record per line
    index/shard-<i>-of-<n>-<host>-<pid>.idx          its persisted index (store_index.py)
    prompts.jsonl                                    every prompt template used, verbatim
    runs/<writer>-<timestamp>.json                   resolved config + summary per run
    claims.lock, claims/                             what running fillers claimed (claims.py)

Each process writes only its own file, so concurrent shards never share one. Lines are
flushed and fsynced after each batch. A process killed mid-write leaves at most one torn
last line, which readers ignore. Readers see the union of all files; when a key occurs twice
the first occurrence (files in name order) wins and the duplicate is counted (except that a
generation replaces a tombstone, the record of a request the backend rejected: .store_tombstones).

Every read is verified: the line's checksum (:mod:`.store_lines`) and that it holds the key
asked for. A line that fails makes the store rebuild its file's index from the JSONL, as
when the index is missing: a damaged line then counts as corrupt and its key as missing
(the next fill generates it again), entries that pointed at the wrong line point right,
and every count (duplicates included) comes from the data again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hf_megadocs.generation.embedded import cache_root
from hf_megadocs.generation.store_index import (
    CORRUPT,
    FileIndex,
    first_report,
    key_bytes,
    key_text,
)
from hf_megadocs.generation.store_keys import LOCATION, MISSING, KeyTable
from hf_megadocs.generation.store_lines import DamagedLine, decode, verify
from hf_megadocs.generation.store_runs import PromptsAndRuns
from hf_megadocs.generation.store_tombstones import TombstoneBook
from hf_megadocs.generation.store_writer import StoreWriter, writer_name
from hf_megadocs.records import Generation

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Damage:
    """A record that did not read back intact."""

    row: int
    """Its position among the keys being read."""
    file_id: int
    offset: int
    problem: str


def resolve_store_dir(store_dir: str | os.PathLike[str] | None = None) -> Path:
    """The store root every entry point uses: ``store_dir`` (``~`` expanded), else
    ``<hf_megadocs cache>/store`` with the cache at ``$HF_MEGADOCS_CACHE`` or
    ``~/.cache/hf_megadocs``. The builder, ``hf-megadocs generate``, the trainer's corpus
    building and ``push`` all call this, so a store filled ahead of time is the one read."""
    if store_dir is not None and str(store_dir):
        return Path(store_dir).expanduser()
    return cache_root() / "store"


class StoreNotWritableError(ValueError):
    """The store folder cannot take new generations; raised before any backend starts."""


class GenerationStore(PromptsAndRuns, TombstoneBook):
    """Index over every generation under ``root``; reads records from disk on demand.

    Opening a store reads each file's persisted index (:mod:`.store_index`, 40 bytes per
    record) and parses only JSONL lines the index lacks; in memory each key costs ~32 bytes
    (:class:`~.store_keys.KeyTable`).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser()
        self._files: list[FileIndex] = []
        self._file_ids: dict[Path, int] = {}
        self._table = KeyTable()
        self.corrupt_lines = 0
        """Complete lines that are not a valid generation record (e.g. a torn line later
        followed by another writer session, or a line a read found damaged)."""
        self._unverified = 0
        self._verify_lookups = False
        self._tokens: Counter = Counter()
        self._flags: Counter = Counter()
        self._prompt_counts: Counter = Counter()
        self._reset_tombstones()  # requests the backend rejected for good (.store_tombstones)
        self.refresh()

    @property
    def generations_dir(self) -> Path:
        return self.root / "generations"

    @property
    def index_dir(self) -> Path:
        return self.root / "index"

    # ----------------------------------------------------------------- reading
    def refresh(self) -> None:
        """Index records appended since the last scan, including files of other writers,
        and write the indexes of files nobody else is writing when they lag."""
        if not self.generations_dir.is_dir():
            return
        added = []
        for path in sorted(self.generations_dir.glob("*.jsonl")):
            file_id = self._file_id(path)
            entries = self._files[file_id].catch_up()
            if len(entries):
                added.append((file_id, entries))
        self._add(added)
        for file_index in self._files:
            file_index.persist()

    def _file_id(self, path: Path) -> int:
        file_id = self._file_ids.get(path)
        if file_id is None:
            file_id = self._file_ids[path] = len(self._files)
            self._files.append(FileIndex(path, self.index_dir))
        return file_id

    def file_index(self, path: Path) -> FileIndex:
        """The index of store file ``path`` (its writer adds to it)."""
        return self._files[self._file_id(path)]

    def _add(self, added: list[tuple[int, np.ndarray]]) -> None:
        """Take new entries (file order: the first occurrence of a key wins)."""
        if not added:
            return
        entries = np.concatenate([e for _, e in added])
        file_ids = np.concatenate([np.full(len(e), i, dtype="<u4") for i, e in added])
        valid = entries["label"] != CORRUPT
        self.corrupt_lines += int((~valid).sum())
        entries, file_ids = entries[valid], file_ids[valid]
        where = np.empty(len(entries), dtype=LOCATION)
        where["file"], where["offset"], where["length"] = (
            file_ids,
            entries["offset"],
            entries["length"],
        )
        new = self._table.add(entries["key"], where)
        self._count(entries[new], file_ids[new])
        self._settle_tombstones(entries, file_ids, where, new)

    @property
    def duplicates(self) -> int:
        """Records whose key was already in the store (the first one wins)."""
        return self._table.duplicates

    def _count(self, entries: np.ndarray, file_ids: np.ndarray) -> None:
        self._tokens["prompt"] += int(entries["prompt_tokens"].sum())
        self._tokens["completion"] += int(entries["completion_tokens"].sum())
        pairs, counts = np.unique(
            (file_ids.astype(np.uint64) << 32) | entries["label"], return_counts=True
        )
        for pair, count in zip(pairs.tolist(), counts.tolist(), strict=True):
            prompt_id, flags, checked = self._files[pair >> 32].labels[pair & 0xFFFFFFFF]
            self._prompt_counts[prompt_id] += count
            self._unverified += 0 if checked else count
            for flag in flags:
                self._flags[flag] += count

    def locate(self, keys: list[str]) -> np.ndarray:
        """Where each of ``keys`` lies (``LOCATION``; ``file`` is ``MISSING`` when absent)."""
        return self._table.locate(key_bytes(keys))

    def holds(self, digests: np.ndarray) -> np.ndarray:
        """For each key digest (``S16``, :func:`key_bytes`), whether the index holds it (a
        tombstone counts as missing within :meth:`retrying_failed`)."""
        return self._unless_retried(digests, self._table.locate(digests)["file"] != MISSING)

    def contains(self, keys: list[str]) -> np.ndarray:
        """For each of ``keys``, whether the store holds it (one vectorised lookup; within
        :meth:`verifying`, :meth:`verify`; a tombstone counts as missing within
        :meth:`retrying_failed`)."""
        held = self.verify(keys) if self._verify_lookups else self.locate(keys)["file"] != MISSING
        return self._unless_retried(key_bytes(keys), held)

    def verify(self, keys: list[str]) -> np.ndarray:
        """For each of ``keys``, whether the store holds it intact: every held record is
        read back and checked (its checksum and key; a record without checksum is parsed).
        A damaged one is repaired as on any read, and counts as missing."""
        held = np.zeros(len(keys), dtype=bool)
        for row, _ in self._verified_reads(key_bytes(keys), parse=False):
            held[row] = True
        return held

    @contextlib.contextmanager
    def verifying(self) -> Iterator[None]:
        """Within it, :meth:`contains` is :meth:`verify`: a fill's survey counts a key as
        held only once its record read back intact, so a damaged one is generated again
        in the same run instead of failing the reads after it."""
        previous, self._verify_lookups = self._verify_lookups, True
        try:
            yield
        finally:
            self._verify_lookups = previous

    def keys(self) -> set[str]:
        """Every stored key."""
        return {key_text(k) for k in self._table.digests()}

    def __len__(self) -> int:
        return len(self._table)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str) or len(key) != 32:
            return False
        try:
            return bool(self.contains([key])[0])
        except ValueError:
            return False

    def get(self, key: str) -> Generation | None:
        """The stored generation for ``key``, or None."""
        return self.get_many([key]).get(key)

    def get_many(self, keys: Iterable[str]) -> dict[str, Generation]:
        """The stored generations among ``keys`` (missing keys are left out, and so are
        records that do not read back intact: see :meth:`_verified_reads`)."""
        unique = list(dict.fromkeys(keys))
        found = self._verified_reads(key_bytes(unique))
        return {unique[row]: generation for row, generation in found if generation is not None}

    def iter_generations(self) -> Iterator[Generation]:
        """Every stored generation, file by file in line order (the first of duplicated
        keys; a record re-found by a repair comes last); one record in memory at a time, for
        passes over a whole store."""
        for _, generation in self._verified_reads(self._table.digest_array()):
            if generation is not None:
                yield generation

    def _verified_reads(
        self, digests: np.ndarray, *, parse: bool = True
    ) -> Iterator[tuple[int, Generation | None]]:
        """(i, generation) for each of ``digests`` held intact, read in file and offset order
        (without ``parse``, a checksummed record is only checked: its generation is None).

        A record that fails its checksum, does not parse or holds another key is left out;
        after the pass the store is repaired (:meth:`_repair`) and those keys are read once
        more: a key whose index entry was wrong is then found, a damaged record is not.
        """
        rows = np.arange(len(digests))
        for attempt in range(2):
            where = self._table.locate(digests[rows])
            damaged = []
            for i, file_id, offset, line in self._lines(where):
                row, key = int(rows[i]), key_text(digests[rows[i]])
                generation = None
                try:
                    if parse:
                        generation = decode(line, key)[0]
                    elif not verify(line, key):
                        decode(line, key)  # no checksum: parsing is the only check
                except DamagedLine as err:
                    damaged.append(_Damage(row, file_id, offset, str(err)))
                    continue
                yield row, generation
            if not damaged:
                return
            self._repair(damaged)
            if attempt:
                return
            rows = np.array([d.row for d in damaged], dtype=np.int64)

    def _lines(self, where: np.ndarray) -> Iterator[tuple[int, int, int, bytes]]:
        """(i, file, offset, line) for the held locations among ``where``, in file and
        offset order."""
        rows = np.flatnonzero(where["file"] != MISSING)
        rows = rows[np.lexsort((where["offset"][rows], where["file"][rows]))]
        handle = None
        current = -1
        try:
            for i in rows.tolist():
                file_id, offset, length = where[i].tolist()
                if file_id != current:
                    if handle is not None:
                        handle.close()
                    handle = self._files[file_id].jsonl.open("rb")
                    current = file_id
                handle.seek(offset)
                yield i, file_id, offset, handle.read(length)
        finally:
            if handle is not None:
                handle.close()

    def _repair(self, damaged: list[_Damage]) -> None:
        """Say where records read back wrong (one WARNING per file), then rebuild the
        index of their files from the JSONL and every count from the data."""
        by_file: dict[int, list[_Damage]] = {}
        for damage in damaged:
            by_file.setdefault(damage.file_id, []).append(damage)
        for file_id, found in by_file.items():
            path = self._files[file_id].jsonl
            new = [d for d in found if first_report(path, d.offset)]
            if new:
                more = f" ({len(new) - 1} more record(s) too)" if len(new) > 1 else ""
                logger.warning(
                    "%s: the record at byte %d does not read back intact: %s%s. Rebuilding "
                    "the index of this file from its JSONL: an entry that pointed at the "
                    "wrong line points right again; a damaged line is skipped as corrupt and "
                    "its key counts as missing, so the next fill that needs it generates it.",
                    path,
                    new[0].offset,
                    new[0].problem,
                    more,
                )
        for file_id, file_index in enumerate(self._files):
            file_index.reset(rebuild=file_id in by_file)
        self._table = KeyTable()
        self.corrupt_lines = self._unverified = 0
        self._reset_tombstones()
        for counter in (self._tokens, self._flags, self._prompt_counts):
            counter.clear()
        self.refresh()

    def stats(self) -> dict[str, Any]:
        """Counts for logs and dataset cards: records, tokens, flags, files, anomalies."""
        return {
            "count": len(self),
            "prompt_tokens": self._tokens["prompt"],
            "completion_tokens": self._tokens["completion"],
            "flags": dict(self._flags),
            "by_prompt": dict(self._prompt_counts),
            "files": len(self._files),
            "duplicates": self.duplicates,
            "torn_lines": sum(f.torn for f in self._files),
            "corrupt_lines": self.corrupt_lines,
            "unverified": self._unverified,
            "tombstones": self.tombstones,
            "superseded_tombstones": self.superseded_tombstones,
        }

    def health(self) -> str:
        """One line for logs: records, files, duplicates, torn and corrupt lines (what the
        reads found included), records without checksum, tombstones, flags."""
        stats = self.stats()
        flags = ", ".join(f"{name} {count}" for name, count in sorted(stats["flags"].items()))
        unverified = stats["unverified"]
        old = f"{unverified} unverified (written without checksum); " if unverified else ""
        old += f"{self.tombstones} tombstone(s) (rejected for good); " if self.tombstones else ""
        return (
            f"store {self.root}: {stats['count']} generations in {stats['files']} file(s); "
            f"{stats['duplicates']} duplicate, {stats['torn_lines']} torn, "
            f"{stats['corrupt_lines']} corrupt line(s) skipped; {old}flags: {flags or 'none'}"
        )

    # ----------------------------------------------------------------- writing
    def ensure_writable(self) -> None:
        """Create the store's folders and prove a file can be written there.

        Called before a backend starts, so a store that is a file, read-only or on a full
        disk costs no engine start. Raises :class:`StoreNotWritableError` saying what to fix.
        """
        fix = "point store_dir (or HF_MEGADOCS_CACHE) at a folder this user can write"
        for folder in (self.root, self.generations_dir):
            if folder.exists() and not folder.is_dir():
                raise StoreNotWritableError(
                    f"generation store {self.root}: {folder} is a file, not a folder; {fix}."
                )
        try:
            self.generations_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.generations_dir):
                pass
        except OSError as err:
            raise StoreNotWritableError(
                f"generation store {self.root} is not writable ({err.strerror}: "
                f"{err.filename or self.generations_dir}); {fix}."
            ) from None

    def writer(self, shard_index: int = 0, num_shards: int = 1) -> StoreWriter:
        """An appender to this process's own file for shard ``shard_index`` of ``num_shards``."""
        return StoreWriter(self, shard_index, num_shards)

    def written(self, path: Path, entries: np.ndarray, end: int) -> FileIndex:
        """Take entries a writer of this process just appended to ``path``."""
        file_id = self._file_id(path)
        self._files[file_id].add_written(entries, end)
        self._add([(file_id, entries)])
        return self._files[file_id]


__all__ = ["GenerationStore", "StoreWriter", "writer_name"]
