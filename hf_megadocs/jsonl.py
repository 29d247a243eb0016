"""Append-only JSON Lines files that survive a writer killed mid-line.

Every append-only file hf_megadocs keeps outside the generation store (``prompts.jsonl``,
a run's ``metrics.jsonl``) goes through these two functions. A crash can leave at most one
torn line, at the end: readers skip it and say so once at WARNING, with the file and the
byte offset; writers first end a torn tail with a newline, so the next record never lands
on the fragment. The generation store's shard files follow the same rules in
:mod:`hf_megadocs.generation.store`, which also indexes byte offsets.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SkippedLine:
    """A line a reader could not use: a torn tail, or a fragment a writer ended later."""

    offset: int
    """Byte offset where the line starts."""
    length: int
    """Bytes in the line."""


def append_record(path: Path, record: dict[str, Any], *, fsync: bool = True) -> None:
    """Append ``record`` as one line, after ending any torn tail with a newline."""
    line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            logger.warning(
                "%s ended in a torn line at byte %d; starting the next record on a new line",
                path,
                size,
            )
            line = b"\n" + line
        os.write(fd, line)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def read_records(path: Path) -> tuple[list[dict[str, Any]], list[SkippedLine]]:
    """Every JSON-object line of ``path``, and the lines that were skipped.

    A line that is not a JSON object is a torn write: the last line of a writer that was
    killed, or such a fragment that a later writer ended with a newline. Each is skipped,
    and one WARNING per call names the file, how many lines and their byte offsets, so a
    damaged file is never read silently. Empty lines are ignored.
    """
    records: list[dict[str, Any]] = []
    skipped: list[SkippedLine] = []
    offset = 0
    for raw in path.read_bytes().splitlines(keepends=True):
        start, offset = offset, offset + len(raw)
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except ValueError:
            record = None
        if isinstance(record, dict):
            records.append(record)
        else:
            skipped.append(SkippedLine(start, len(raw)))
    if skipped:
        logger.warning(
            "%s: skipped %d line(s) that are not complete JSON records (torn writes), at "
            "byte offset(s) %s",
            path,
            len(skipped),
            ", ".join(str(line.offset) for line in skipped),
        )
    return records, skipped
