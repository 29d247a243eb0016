"""The one appender of a store file: this process's own, for its shard."""

from __future__ import annotations

import os
import re
import socket
from typing import TYPE_CHECKING

import numpy as np

from hf_megadocs.generation.store_index import ENTRY, index_lock, key_bytes
from hf_megadocs.generation.store_lines import encode
from hf_megadocs.records import Generation

if TYPE_CHECKING:
    from hf_megadocs.generation.store import GenerationStore


def writer_name(shard_index: int, num_shards: int) -> str:
    """``shard-<i>-of-<n>-<host>-<pid>``: unique per process, so no two writers share a file."""
    host = re.sub(r"[^A-Za-z0-9.-]+", "-", socket.gethostname()) or "host"
    return f"shard-{shard_index}-of-{num_shards}-{host}-{os.getpid()}"


class StoreWriter:
    """Appends generations to this process's shard file; flush + fsync after each batch.

    Holds the file's index lock while open and writes the index entries of every batch
    right after the batch itself is durable. Every line carries a checksum
    (:mod:`.store_lines`).
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
        self._index = store.file_index(self.path)
        self._index.persist(locked=True)

    def append(self, generations: list[Generation]) -> None:
        """Write ``generations`` durably, then add them to the store's index."""
        if not generations:
            return
        keys = key_bytes([g.key for g in generations])  # a malformed key: refused unwritten
        offset = self._handle.tell()
        lines = [encode(g.to_json()) for g in generations]
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
            self._index.label_id((g.prompt_id, tuple(g.flags), True)) for g in generations
        ]
        end = offset + int(lengths.sum())
        self.store.written(self.path, entries, end).persist(locked=True)
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


__all__ = ["StoreWriter", "writer_name"]
