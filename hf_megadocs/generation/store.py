"""The generation store: append-only, sharded, crash-safe, shared by every corpus.

Layout under the store root::

    generations/shard-<i>-of-<n>-<host>-<pid>.jsonl   one Generation.to_json() per line
    index/shard-<i>-of-<n>-<host>-<pid>.idx          its persisted index (store_index.py)
    prompts.jsonl                                    every prompt template used, verbatim
    runs/<writer>-<timestamp>.json                   resolved config + summary per run

Each process writes only its own file, so concurrent shards never share one. Lines are
flushed and fsynced after each batch. A process killed mid-write leaves at most one torn
last line, which readers ignore. Readers see the union of all files; when a key occurs twice
the first occurrence (files in name order) wins and the duplicate is counted.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from hf_megadocs.generation.embedded import cache_root
from hf_megadocs.generation.prompts import PromptTemplate
from hf_megadocs.generation.store_index import (
    CORRUPT,
    ENTRY,
    FileIndex,
    index_lock,
    key_bytes,
    key_text,
)
from hf_megadocs.generation.store_keys import LOCATION, MISSING, KeyTable
from hf_megadocs.jsonl import append_record, read_records
from hf_megadocs.records import Generation

logger = logging.getLogger(__name__)


def resolve_store_dir(store_dir: str | os.PathLike[str] | None = None) -> Path:
    """The store root every entry point uses: ``store_dir`` (``~`` expanded), else
    ``<hf_megadocs cache>/store`` with the cache at ``$HF_MEGADOCS_CACHE`` or
    ``~/.cache/hf_megadocs``. The builder, ``hf-megadocs generate``, the trainer's corpus
    building and ``push`` all call this, so a store filled ahead of time is the one read."""
    if store_dir is not None and str(store_dir):
        return Path(store_dir).expanduser()
    return cache_root() / "store"


def writer_name(shard_index: int, num_shards: int) -> str:
    """``shard-<i>-of-<n>-<host>-<pid>``: unique per process, so no two writers share a file."""
    host = re.sub(r"[^A-Za-z0-9.-]+", "-", socket.gethostname()) or "host"
    return f"shard-{shard_index}-of-{num_shards}-{host}-{os.getpid()}"


def _dumps(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


class StoreNotWritableError(ValueError):
    """The store folder cannot take new generations; raised before any backend starts."""


class GenerationStore:
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
        followed by another writer session)."""
        self._tokens = Counter()
        self._flags: Counter = Counter()
        self._prompt_counts: Counter = Counter()
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
            prompt_id, flags = self._files[pair >> 32].labels[pair & 0xFFFFFFFF]
            self._prompt_counts[prompt_id] += count
            for flag in flags:
                self._flags[flag] += count

    def locate(self, keys: list[str]) -> np.ndarray:
        """Where each of ``keys`` lies (``LOCATION``; ``file`` is ``MISSING`` when absent)."""
        return self._table.locate(key_bytes(keys))

    def contains(self, keys: list[str]) -> np.ndarray:
        """For each of ``keys``, whether the store holds it (one vectorised lookup)."""
        return self.locate(keys)["file"] != MISSING

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
        """The stored generations among ``keys`` (missing keys are left out)."""
        unique = list(dict.fromkeys(keys))
        where = self.locate(unique)
        present = np.flatnonzero(where["file"] != MISSING)
        return {unique[i]: generation for i, generation in self._read(where, present)}

    def iter_generations(self) -> Iterator[Generation]:
        """Every stored generation, file by file in line order (the first of duplicated
        keys); one record in memory at a time, for passes over a whole store."""
        where = self._table.locations()
        for _, generation in self._read(where, np.arange(len(where))):
            yield generation

    def _read(self, where: np.ndarray, rows: np.ndarray) -> Iterator[tuple[int, Generation]]:
        """(row, record) for the ``where[rows]`` locations, read in file and offset order."""
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
                yield i, Generation.from_json(json.loads(handle.read(length)))
        finally:
            if handle is not None:
                handle.close()

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
        }

    def health(self) -> str:
        """One line for logs: records, files, duplicates, torn and corrupt lines, flags."""
        stats = self.stats()
        flags = ", ".join(f"{name} {count}" for name, count in sorted(stats["flags"].items()))
        return (
            f"store {self.root}: {stats['count']} generations in {stats['files']} file(s); "
            f"{stats['duplicates']} duplicate, {stats['torn_lines']} torn, "
            f"{stats['corrupt_lines']} corrupt line(s) skipped; flags: {flags or 'none'}"
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

    def _written(self, path: Path, entries: np.ndarray, end: int) -> FileIndex:
        """Take entries a writer of this process just appended to ``path``."""
        file_id = self._file_id(path)
        self._files[file_id].add_written(entries, end)
        self._add([(file_id, entries)])
        return self._files[file_id]

    def record_prompt(self, template: PromptTemplate) -> None:
        """Add ``template`` verbatim to ``prompts.jsonl`` unless its hash is already there."""
        if any(p["content_hash"] == template.content_hash for p in self.prompts()):
            return
        self.root.mkdir(parents=True, exist_ok=True)
        append_record(self.root / "prompts.jsonl", template.as_record())

    def prompts(self) -> list[dict[str, Any]]:
        """Every recorded prompt template (id, content_hash, system, user), first use first."""
        path = self.root / "prompts.jsonl"
        if not path.is_file():
            return []
        seen: dict[str, dict[str, Any]] = {}
        for record in read_records(path)[0]:
            seen.setdefault(record["content_hash"], record)
        return list(seen.values())

    def record_run(
        self,
        config: dict[str, Any],
        summary: dict[str, Any],
        *,
        shard_index: int = 0,
        num_shards: int = 1,
    ) -> Path:
        """Write ``runs/<writer>-<timestamp>.json`` with the resolved config and summary."""
        runs = self.root / "runs"
        runs.mkdir(parents=True, exist_ok=True)
        now = time.time()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}"
        path = runs / f"{writer_name(shard_index, num_shards)}-{stamp}Z.json"
        tmp = path.with_suffix(".tmp")
        payload = {"config": config, "summary": summary, "created_utc": stamp + "Z"}
        with tmp.open("w", encoding="utf-8") as handle:
            handle.write(json.dumps(payload, indent=2, sort_keys=True, default=str))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        return path

    def runs(self) -> list[dict[str, Any]]:
        """Every recorded run (config, summary, created_utc), oldest first."""
        folder = self.root / "runs"
        if not folder.is_dir():
            return []
        records = []
        for path in folder.glob("*.json"):
            try:
                records.append((json.loads(path.read_text(encoding="utf-8")), path.name))
            except ValueError as err:
                # Run records are written atomically; a broken one was damaged afterwards.
                logger.warning("Skipping unreadable run record %s (%s)", path, err)
        records.sort(key=lambda item: (item[0].get("created_utc", ""), item[1]))
        return [record for record, _ in records]


class StoreWriter:
    """Appends generations to this process's shard file; flush + fsync after each batch.

    Holds the file's index lock while open and writes the index entries of every batch
    right after the batch itself is durable.
    """

    def __init__(self, store: GenerationStore, shard_index: int, num_shards: int) -> None:
        if not 0 <= shard_index < num_shards:
            raise ValueError(
                f"shard_index must be in [0, num_shards={num_shards}), got {shard_index}."
            )
        self.store = store
        self.name = writer_name(shard_index, num_shards)
        store.generations_dir.mkdir(parents=True, exist_ok=True)
        self.path = store.generations_dir / f"{self.name}.jsonl"
        self._lock = index_lock(self.path, store.index_dir).acquire()
        self._handle = self.path.open("ab")
        self.written = 0
        if self._handle.tell() > 0:
            with self.path.open("rb") as existing:
                existing.seek(-1, os.SEEK_END)
                if existing.read(1) != b"\n":  # keep an earlier torn tail on its own line
                    self._handle.write(b"\n")
                    self._handle.flush()
        store.refresh()  # the file's earlier lines are indexed before ours follow them
        self._index = store._files[store._file_id(self.path)]
        self._index.persist(locked=True)

    def append(self, generations: list[Generation]) -> None:
        """Write ``generations`` durably, then add them to the store's index."""
        if not generations:
            return
        keys = key_bytes([g.key for g in generations])  # a malformed key: refused unwritten
        offset = self._handle.tell()
        lines = [_dumps(g.to_json()) for g in generations]
        self._handle.write(b"".join(lines))
        self._handle.flush()
        os.fsync(self._handle.fileno())
        lengths = np.array([len(line) for line in lines], dtype="<u8")
        entries = np.empty(len(generations), dtype=ENTRY)
        entries["key"] = keys
        entries["length"] = lengths
        entries["offset"] = offset + np.cumsum(lengths) - lengths
        entries["prompt_tokens"] = [g.prompt_tokens for g in generations]
        entries["completion_tokens"] = [g.completion_tokens for g in generations]
        entries["label"] = [
            self._index.label_id((g.prompt_id, tuple(g.flags))) for g in generations
        ]
        end = offset + int(lengths.sum())
        self.store._written(self.path, entries, end).persist(locked=True)
        self.written += len(generations)

    def close(self) -> None:
        """Close the file and give up its index lock. Safe to call twice."""
        if not self._handle.closed:
            self._handle.close()
        self._lock.release()

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


__all__ = ["GenerationStore", "StoreWriter", "writer_name"]
