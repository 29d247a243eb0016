"""The store's in-memory key table: ~32 bytes per key, first occurrence wins.

A sorted array of 16-byte key digests with each key's location (file, offset, length),
plus a small dict of keys added since the last merge; merged in bulk, so a cold open of
millions of keys is one sort, and appends of a few hundred keys stay cheap.
Hand-written: a Python dict of millions of keys costs ~270 bytes per key.
"""

from __future__ import annotations

import numpy as np

LOCATION = np.dtype([("file", "<u4"), ("offset", "<u8"), ("length", "<u4")])
"""Where a record lies: file number, byte offset and length of its line."""

MISSING = np.iinfo(np.uint32).max
"""``LOCATION["file"]`` of a key the table does not hold."""


class KeyTable:
    """Key digests (``S16``) → ``LOCATION``; a key added twice keeps its first location."""

    MERGE_EVERY = 1 << 16
    """Keys held in the dict before they are merged into the sorted arrays."""
    MERGE_AT_ONCE = 1 << 10
    """New keys that go straight into the sorted arrays (a cold open, a long tail)."""

    def __init__(self) -> None:
        self._keys = np.empty(0, dtype="S16")
        self._where = np.empty(0, dtype=LOCATION)
        self._recent: dict[bytes, tuple[int, int, int]] = {}
        self.duplicates = 0
        """Keys added that were already held (the first one wins)."""

    def __len__(self) -> int:
        return len(self._keys) + len(self._recent)

    def add(self, keys: np.ndarray, where: np.ndarray) -> np.ndarray:
        """Add ``keys`` (in order) at ``where``; the indices of those that were new."""
        if len(keys) < self.MERGE_AT_ONCE and len(keys) + len(self._recent) < self.MERGE_EVERY:
            new = []
            for i, (key, location) in enumerate(zip(keys.tolist(), where.tolist(), strict=True)):
                if key in self._recent or self._position(key) >= 0:
                    self.duplicates += 1
                else:
                    self._recent[key] = location
                    new.append(i)
            return np.array(new, dtype=np.int64)
        return self._merge(keys, where)

    def _merge(self, keys: np.ndarray, where: np.ndarray) -> np.ndarray:
        recent_keys = np.array(list(self._recent), dtype="S16")
        recent_where = np.array(list(self._recent.values()), dtype=LOCATION)
        all_keys = np.concatenate([self._keys, recent_keys, keys])
        all_where = np.concatenate([self._where, recent_where, where])
        order = np.argsort(all_keys, kind="stable")  # equal keys keep the order they came in
        ordered = all_keys[order]
        first = np.ones(len(all_keys), dtype=bool)
        first[1:] = ordered[1:] != ordered[:-1]
        self.duplicates += int(len(all_keys) - first.sum())
        kept = order[first]
        self._keys, self._where, self._recent = ordered[first], all_where[kept], {}
        start = len(all_keys) - len(keys)
        return np.sort(kept[kept >= start] - start)

    def relocate(self, key: bytes, location: tuple[int, int, int]) -> None:
        """Point the held ``key`` (an ``S16`` item) at ``location`` instead: a generation
        that replaces a tombstone (:mod:`.store_tombstones`)."""
        if key in self._recent:
            self._recent[key] = location
            return
        position = self._position(key)
        if position < 0:
            raise KeyError(f"key {key.hex()} is not held; only a held key can be relocated")
        self._where[position] = location

    def _position(self, key: bytes) -> int:
        i = int(np.searchsorted(self._keys, key))
        return i if i < len(self._keys) and self._keys[i] == key else -1

    def locate(self, keys: np.ndarray) -> np.ndarray:
        """Where each of ``keys`` lies (``file`` is :data:`MISSING` when absent)."""
        found = np.zeros(len(keys), dtype=LOCATION)
        found["file"] = MISSING
        if len(self._keys) and len(keys):
            positions = np.minimum(np.searchsorted(self._keys, keys), len(self._keys) - 1)
            hit = self._keys[positions] == keys
            found[hit] = self._where[positions[hit]]
        if self._recent:
            for i in np.flatnonzero(found["file"] == MISSING).tolist():
                location = self._recent.get(keys[i].item())
                if location is not None:
                    found[i] = location
        return found

    def locations(self) -> np.ndarray:
        """Where every held key lies (``LOCATION``), in no particular order."""
        recent = np.array(list(self._recent.values()), dtype=LOCATION)
        return np.concatenate([self._where, recent])

    def digest_array(self) -> np.ndarray:
        """Every key held (``S16``), in the order of :meth:`locations`."""
        return np.concatenate([self._keys, np.array(list(self._recent), dtype="S16")])

    def digests(self) -> list[bytes]:
        """Every key held (numpy's ``S16`` items: trailing zero bytes dropped)."""
        return self._keys.tolist() + list(self._recent)


__all__ = ["LOCATION", "MISSING", "KeyTable"]
