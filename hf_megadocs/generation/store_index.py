"""A persisted index per store file, so that opening a store costs its index, not its texts.

Beside every writer file ``generations/NAME.jsonl`` the store keeps::

    index/NAME.idx            one fixed-width entry per complete JSONL line (ENTRY)
    index/NAME.labels.jsonl   the distinct (prompt_id, flags) pairs that entries point to
    index/NAME.lock           held while the index is written (by the file's writer)

The JSONL stays the source of truth. An index that is missing, torn, or does not match its
JSONL (entries that overlap, bytes between two entries that are not blank, a last entry
that is not the line of its key) is rebuilt from the JSONL; so is one whose records a read
finds damaged or under another key (:meth:`FileIndex.reset`, called by the store);
lines appended after the index (a writer killed between its fsync and its index write, a
file written before indexes existed) are read from the JSONL and added. Only a process
holding ``NAME.lock`` writes ``NAME.idx``, so concurrent readers never tear it.

Hand-written: neither datasets nor huggingface_hub indexes a growing set of JSONL files.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from hf_megadocs.generation.store_lines import DamagedLine, decode
from hf_megadocs.jsonl import append_record, read_records
from hf_megadocs.locks import ExclusiveLock, LockHeldError

logger = logging.getLogger(__name__)

ENTRY = np.dtype(
    [
        ("key", "S16"),  # the 32-hex-digit store key as 16 bytes
        ("offset", "<u8"),
        ("length", "<u4"),
        ("prompt_tokens", "<u4"),
        ("completion_tokens", "<u4"),
        ("label", "<u4"),  # line of the labels file, or CORRUPT
    ]
)
"""One index entry: 40 bytes per stored generation."""

CORRUPT = 0xFFFFFFFF
"""The label of a complete line that is not a generation record (kept so counts persist)."""

Label = tuple[str, tuple[str, ...], bool]
"""(prompt_id, flags, checked) of a generation: what the store's statistics count;
``checked``: its line carries a checksum (:mod:`.store_lines`)."""

_reported: set[tuple[Path, int]] = set()
"""Damaged lines (file, byte offset) already reported at WARNING by this process: each is
reported once, however many store objects and rebuilds meet it."""


def first_report(path: Path, offset: int) -> bool:
    """Whether the damaged line of ``path`` at ``offset`` is reported for the first time
    (it counts as reported from now on)."""
    if (path, offset) in _reported:
        return False
    _reported.add((path, offset))
    return True


def key_bytes(keys: list[str]) -> np.ndarray:
    """Store keys (32 hex digits each) as an ``S16`` array, in one conversion."""
    try:
        raw = bytes.fromhex("".join(keys))
    except ValueError:
        raw = b""
    if len(raw) != 16 * len(keys):
        bad = next(k for k in keys if len(k) != 32 or not _is_hex(k))
        raise ValueError(
            f"store keys are 32 hexadecimal digits (GenerationRequest.key); got {bad!r}."
        )
    return np.frombuffer(raw, dtype="S16")


def key_text(raw: bytes) -> str:
    """Inverse of :func:`key_bytes` for one key (numpy drops trailing zero bytes)."""
    return raw.ljust(16, b"\0").hex()


def index_lock(jsonl: Path, index_dir: Path) -> ExclusiveLock:
    """The lock whose holder alone writes the index of store file ``jsonl``."""
    return ExclusiveLock(
        index_dir / f"{jsonl.stem}.lock",
        f"the index of store file {jsonl.name}",
        fix="Two writers of one store file in one store: give each process its own.",
    )


def _is_hex(text: str) -> bool:
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return True


@dataclass
class FileIndex:
    """The entries of one writer file: loaded from its index, then from its JSONL tail."""

    jsonl: Path
    index_dir: Path
    labels: list[Label] = field(default_factory=list)
    label_ids: dict[Label, int] = field(default_factory=dict)
    covered: int = 0
    """Bytes of the JSONL those entries cover."""
    torn: bool = False
    """Whether the JSONL ends in an incomplete line (left for a later refresh)."""
    pending: list[np.ndarray] = field(default_factory=list)
    """Entries known in memory but not yet in ``NAME.idx``."""
    persisted: int = 0
    """Entries and labels already on disk (a rebuild rewrites both)."""
    persisted_labels: int = 0
    rewrite: bool = False

    @property
    def count(self) -> int:
        """Entries known in memory (all of them lie before ``covered``)."""
        return self.persisted + sum(len(chunk) for chunk in self.pending)

    @property
    def name(self) -> str:
        return self.jsonl.stem

    @property
    def idx_path(self) -> Path:
        return self.index_dir / f"{self.name}.idx"

    @property
    def labels_path(self) -> Path:
        return self.index_dir / f"{self.name}.labels.jsonl"

    @property
    def lock(self) -> ExclusiveLock:
        return index_lock(self.jsonl, self.index_dir)

    # ----------------------------------------------------------------- reading
    def catch_up(self) -> np.ndarray:
        """Entries added since the last call: first from ``NAME.idx``, then from the JSONL."""
        found = []
        if not self.rewrite:
            chunk = self._from_index()
            if len(chunk):
                found.append(chunk)
                self.covered = int(chunk["offset"][-1] + chunk["length"][-1])
        tail, self.covered, torn = self._parse(self.covered)
        if torn and not self.torn:
            logger.warning(
                "Skipping the incomplete last line of %s at byte %d (a writer was stopped "
                "mid-line, or is writing it now)",
                self.jsonl,
                self.covered,
            )
        self.torn = torn
        if len(tail):
            self.pending.append(tail)
            found.append(tail)
        return np.concatenate(found) if found else np.empty(0, ENTRY)

    def _from_index(self) -> np.ndarray:
        """Valid entries of ``NAME.idx`` beyond those already known (empty if stale)."""
        try:
            size = self.idx_path.stat().st_size
        except OSError:
            self.rewrite = True  # missing: written whole at the next persist
            return np.empty(0, ENTRY)
        total = size // ENTRY.itemsize  # a torn last entry is ignored
        if total <= self.persisted or self.pending or self.persisted_labels < len(self.labels):
            return np.empty(0, ENTRY)  # nothing new, or memory is ahead of the disk
        entries = np.fromfile(
            self.idx_path,
            dtype=ENTRY,
            count=total - self.persisted,
            offset=self.persisted * ENTRY.itemsize,
        )
        labels = [
            (str(record["prompt_id"]), tuple(record["flags"]), bool(record.get("checked")))
            for record in read_records(self.labels_path)[0]
        ] if self.labels_path.is_file() else []  # fmt: skip
        problem = self._check(entries, labels)
        if problem:
            logger.warning("Rebuilding the index of %s from the JSONL: %s", self.jsonl, problem)
            self.rewrite = True
            return np.empty(0, ENTRY)
        self.labels = labels
        self.label_ids = {label: i for i, label in enumerate(labels)}
        self.persisted += len(entries)
        self.persisted_labels = len(labels)
        corrupt = entries["offset"][entries["label"] == CORRUPT].tolist()
        new = [offset for offset in corrupt if first_report(self.jsonl, offset)]
        if new:
            logger.warning(
                "Skipping %d line(s) of %s that are not generation records (first at byte %d)",
                len(new),
                self.jsonl,
                new[0],
            )
        return entries

    def _check(self, entries: np.ndarray, labels: list[Label]) -> str:
        """Why ``entries`` do not describe the JSONL, or "" when they do."""
        if labels[: len(self.labels)] != self.labels:
            return "its labels file changed"
        offsets, lengths = entries["offset"], entries["length"]
        if offsets[0] < self.covered or np.any(offsets[1:] < offsets[:-1] + lengths[:-1]):
            return "its entries overlap"
        used = entries["label"][entries["label"] != CORRUPT]
        if len(used) and int(used.max()) >= len(labels):
            return "an entry names a label the labels file lacks"
        try:
            with self.jsonl.open("rb") as handle:
                problem = self._check_gaps(handle, offsets, lengths)
                handle.seek(int(offsets[-1]))
                last = handle.read(int(lengths[-1]))
        except OSError as err:
            return f"the JSONL cannot be read ({err.strerror})"
        if problem:
            return problem
        if len(last) != int(lengths[-1]) or not last.endswith(b"\n"):
            return f"the JSONL is shorter than the {int(offsets[-1] + lengths[-1]):,} bytes indexed"
        if entries["label"][-1] != CORRUPT and _line_key(last) != entries["key"][-1]:
            return f"the line at byte {int(offsets[-1])} is not the indexed key"
        return ""

    def _check_gaps(self, handle: BinaryIO, offsets: np.ndarray, lengths: np.ndarray) -> str:
        """Why the bytes between consecutive entries are not blank lines, or "".

        Entries tile the JSONL but for blank lines, so an entry whose length or offset is
        wrong leaves part of a line between two entries. Gaps are rare: this reads only
        them, never a record.
        """
        starts = np.concatenate(([self.covered], offsets[:-1] + lengths[:-1]))
        for i in np.flatnonzero(offsets > starts).tolist():
            start, stop = int(starts[i]), int(offsets[i])
            handle.seek(start)
            if handle.read(stop - start).strip():
                where = f"the entry at byte {int(offsets[i - 1])}" if i else "the first entry"
                return f"{where} ends at byte {start}, but the next line begins at byte {stop}"
        return ""

    def _parse(self, start: int, stop: int | None = None) -> tuple[np.ndarray, int, bool]:
        """Entries of the complete JSONL lines from byte ``start`` (to ``stop``), the byte
        after the last of them, and whether an incomplete line followed."""
        rows = []
        offset = start
        torn = False
        with self.jsonl.open("rb") as handle:
            handle.seek(offset)
            for line in handle:
                if stop is not None and offset >= stop:
                    break
                if not line.endswith(b"\n"):
                    # A torn tail (writer killed mid-line) or a line still being written:
                    # left uncovered, so a later refresh reads it once it is complete.
                    torn = True
                    break
                if line.strip():
                    rows.append(self._entry(line, offset))
                offset += len(line)
        return np.array(rows, dtype=ENTRY), offset, torn

    def _entry(self, line: bytes, offset: int) -> tuple[bytes, int, int, int, int, int]:
        # A line counts as a record only if a read would serve it: the same decode.
        try:
            generation, checked = decode(line)
        except DamagedLine as err:
            if first_report(self.jsonl, offset):
                logger.warning(
                    "Skipping a line that is not a generation record in %s at byte %d: %s",
                    self.jsonl,
                    offset,
                    err,
                )
            return (b"", offset, len(line), 0, 0, CORRUPT)
        label = (generation.prompt_id, generation.flags, checked)
        tokens = (generation.prompt_tokens, generation.completion_tokens)
        return (bytes.fromhex(generation.key), offset, len(line), *tokens, self.label_id(label))

    def label_id(self, label: Label) -> int:
        """The id of ``label`` in this file's labels table, adding it when new."""
        found = self.label_ids.get(label)
        if found is None:
            found = self.label_ids[label] = len(self.labels)
            self.labels.append(label)
        return found

    def reset(self, *, rebuild: bool) -> None:
        """Forget every entry, so that the next :meth:`catch_up` loads them all again:
        from ``NAME.idx``, or (``rebuild``) from the JSONL, as when the index is missing;
        the next :meth:`persist` then writes the rebuilt index whole."""
        self.labels, self.label_ids = [], {}
        self.covered = self.persisted = self.persisted_labels = 0
        self.pending = []
        self.rewrite = self.rewrite or rebuild

    # ----------------------------------------------------------------- writing
    def add_written(self, entries: np.ndarray, end: int) -> None:
        """Record entries this process just appended to the JSONL (ending at byte ``end``)."""
        self.pending.append(entries)
        self.covered = end

    def persist(self, *, locked: bool = False) -> None:
        """Write pending entries to ``NAME.idx`` (the whole index after a rebuild).

        ``locked``: the caller holds ``NAME.lock`` (a writer); otherwise the lock is tried
        without waiting and nothing is written while someone holds it. A read-only store
        keeps its index in memory only.
        """
        if not self.pending and not self.rewrite:
            return
        lock = None
        try:
            self.index_dir.mkdir(parents=True, exist_ok=True)
            if not locked:
                lock = self.lock.acquire()
            self._write()
        except LockHeldError:
            return  # its holder writes it
        except OSError as err:
            logger.debug("Index of %s kept in memory only (%s)", self.jsonl, err)
        finally:
            if lock is not None:
                lock.release()

    def _write(self) -> None:
        if not self.rewrite:
            with self.idx_path.open("ab") as handle:
                if handle.tell() == self.persisted * ENTRY.itemsize:
                    for label in self.labels[self.persisted_labels :]:
                        append_record(self.labels_path, _label_record(label), fsync=False)
                    for chunk in self.pending:
                        handle.write(chunk.tobytes())
                else:
                    self.rewrite = True  # not the index this process read: write it whole
        if self.rewrite:
            on_disk = self._on_disk()
            labels = "".join(json.dumps(_label_record(label)) + "\n" for label in self.labels)
            _replace(self.labels_path, labels.encode("utf-8"))
            _replace(self.idx_path, b"".join(c.tobytes() for c in (on_disk, *self.pending)))
            self.rewrite = False
        self.persisted = self.count  # what was pending is on disk now
        self.persisted_labels = len(self.labels)
        self.pending = []

    def _on_disk(self) -> np.ndarray:
        """The entries counted as persisted, from the index or else again from the JSONL."""
        if not self.persisted:
            return np.empty(0, ENTRY)
        try:
            entries = np.fromfile(self.idx_path, dtype=ENTRY, count=self.persisted)
        except (OSError, ValueError):
            entries = np.empty(0, ENTRY)
        if len(entries) == self.persisted:
            return entries
        stop = int(self.pending[0]["offset"][0]) if self.pending else self.covered
        return self._parse(0, stop)[0]


def _label_record(label: Label) -> dict[str, object]:
    record: dict[str, object] = {"prompt_id": label[0], "flags": list(label[1])}
    if label[2]:
        record["checked"] = True  # absent in labels files written before checksums
    return record


def _line_key(line: bytes) -> bytes | None:
    try:
        return bytes.fromhex(decode(line)[0].key).rstrip(b"\0")
    except DamagedLine:
        return None


def _replace(path: Path, payload: bytes) -> None:
    """Write ``path`` atomically (temp file, then rename)."""
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    tmp.write_bytes(payload)
    os.replace(tmp, path)


__all__ = [
    "CORRUPT",
    "ENTRY",
    "FileIndex",
    "Label",
    "first_report",
    "index_lock",
    "key_bytes",
    "key_text",
]
