"""The store's tombstones: requests the backend rejected for good (:mod:`.failures`).

A tombstone is an ordinary store record (checksummed, keyed like its request, indexed and
rebuilt like any other), told apart by its :data:`~.failures.FAILED_FLAG` flag, which the
index keeps in each entry's label; so knowing which keys hold one costs no read of the JSONL.

Two rules differ from "the first record of a key wins":

* a generation of a key whose record so far is a tombstone replaces it (``retry_failed``
  sent the request again and it succeeded), whatever the order of the files;
* a tombstone of a key that holds a generation is *superseded*, not a duplicate.

Both are counted (``superseded_tombstones``); every other count follows the record that
wins, so a store reads the same whether its index was persisted or rebuilt.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np

from hf_megadocs.generation.failures import FAILED_FLAG
from hf_megadocs.generation.store_index import key_bytes

if TYPE_CHECKING:
    from hf_megadocs.generation.store_index import FileIndex
    from hf_megadocs.generation.store_keys import KeyTable
    from hf_megadocs.records import Generation


class TombstoneBook:
    """The tombstone side of :class:`~hf_megadocs.generation.store.GenerationStore`."""

    _table: KeyTable
    _files: list[FileIndex]
    _tokens: Counter
    _flags: Counter
    _prompt_counts: Counter
    _unverified: int
    _retry_failed: bool = False
    _count: Callable[[np.ndarray, np.ndarray], None]

    def _reset_tombstones(self) -> None:
        self._tombstones: dict[bytes, tuple[int, int, int, int]] = {}
        """Key (``S16`` item) → (file, label, prompt tokens, completion tokens) of the
        tombstone it holds."""
        self.superseded_tombstones = 0
        """Tombstones whose key now holds a generation (a retry that succeeded)."""

    @property
    def tombstones(self) -> int:
        """Keys whose record is a tombstone."""
        return len(self._tombstones)

    def tombstoned(self, digests: np.ndarray) -> np.ndarray:
        """For each key digest (``S16``), whether its record is a tombstone."""
        if not self._tombstones:
            return np.zeros(len(digests), dtype=bool)
        return np.array([d in self._tombstones for d in digests.tolist()], dtype=bool)

    def unrecorded(self, tombstones: list[Generation]) -> list[Generation]:
        """Those of ``tombstones`` whose key holds no tombstone yet: a request retried with
        ``retry_failed`` that fails the same way again is not recorded twice."""
        if not tombstones:
            return []
        held = self.tombstoned(key_bytes([t.key for t in tombstones])).tolist()
        return [t for t, again in zip(tombstones, held, strict=True) if not again]

    @contextlib.contextmanager
    def retrying_failed(self, enabled: bool = True) -> Iterator[None]:
        """Within it (when ``enabled``), :meth:`contains` counts a tombstone as missing, so
        a fill sends its request again (``retry_failed=True``)."""
        previous, self._retry_failed = self._retry_failed, enabled
        try:
            yield
        finally:
            self._retry_failed = previous

    def _unless_retried(self, digests: np.ndarray, held: np.ndarray) -> np.ndarray:
        """``held``, with tombstones counted as missing while retrying failed requests."""
        if not (self._retry_failed and self._tombstones):
            return held
        return held & ~self.tombstoned(digests)

    def _settle_tombstones(
        self, entries: np.ndarray, file_ids: np.ndarray, where: np.ndarray, new: np.ndarray
    ) -> None:
        """After the store took ``entries`` (``new``: the indices that were new keys, already
        counted): note the new tombstones, let a generation replace its key's tombstone, and
        count a tombstone behind its key's generation as superseded, not as a duplicate."""
        failed = self._failed_mask(entries, file_ids)
        if not failed.any() and not self._tombstones:
            return
        is_new = np.zeros(len(entries), dtype=bool)
        is_new[new] = True
        keys = entries["key"].tolist()
        for i in np.flatnonzero(failed & is_new).tolist():
            entry = entries[i]
            self._tombstones[keys[i]] = (
                int(file_ids[i]),
                int(entry["label"]),
                int(entry["prompt_tokens"]),
                int(entry["completion_tokens"]),
            )
        for i in np.flatnonzero(~is_new).tolist():
            held = self._tombstones.get(keys[i])
            if failed[i]:
                if held is None:  # the key holds a generation already
                    self._supersede()
                continue
            if held is not None:  # a generation replaces the tombstone its key held
                del self._tombstones[keys[i]]
                self._table.relocate(keys[i], tuple(where[i].tolist()))
                self._uncount(*held)
                self._count(entries[i : i + 1], file_ids[i : i + 1])
                self._supersede()

    def _supersede(self) -> None:
        self.superseded_tombstones += 1
        self._table.duplicates -= 1  # the key table counted it as a duplicate

    def _failed_mask(self, entries: np.ndarray, file_ids: np.ndarray) -> np.ndarray:
        """Which ``entries`` are tombstones (their label carries the failed flag)."""
        failed_pairs = [
            (file_id << 32) | label
            for file_id in np.unique(file_ids).tolist()
            for label, (_, flags, _) in enumerate(self._files[file_id].labels)
            if FAILED_FLAG in flags
        ]
        if not failed_pairs:
            return np.zeros(len(entries), dtype=bool)
        pairs = (file_ids.astype(np.uint64) << np.uint64(32)) | entries["label"]
        return np.isin(pairs, np.array(failed_pairs, dtype=np.uint64))

    def _uncount(self, file_id: int, label: int, prompt_tokens: int, completion: int) -> None:
        """Take a replaced tombstone out of the store's counts."""
        prompt_id, flags, checked = self._files[file_id].labels[label]
        self._tokens["prompt"] -= prompt_tokens
        self._tokens["completion"] -= completion
        self._unverified -= 0 if checked else 1
        for counter, name in [(self._prompt_counts, prompt_id), *((self._flags, f) for f in flags)]:
            counter[name] -= 1
            if counter[name] <= 0:
                del counter[name]


__all__ = ["TombstoneBook"]
