"""Read real documents: the embedded corpora, local JSONL/JSON/Parquet files, or any HF dataset.

Every reader yields plain records (dicts); :func:`load_source` turns them into
:class:`~hf_megadocs.records.SourceDoc` with a stable ``source_id``, applying the bad-input
policy and counting every document it drops, by reason, in a :class:`SourceStats`.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hf_megadocs.generation.source_files import (
    FILE_SUFFIXES,
    BadRecord,
    Located,
    file_records,
    missing_column_message,
    source_files,
    unencodable,
)
from hf_megadocs.records import SourceDoc

logger = logging.getLogger(__name__)

EMBEDDED_SOURCES = ("embedded", "embedded-long")
OnBadInput = Literal["error", "warn", "skip"]
_MAX_WARNINGS = 20
"""Bad-input warnings logged per run under on_bad_input="warn"; the rest are only counted."""
_SCHEMA_PROBE = 1000
"""Records read, none with the text (or id) column, before that is a whole-source error."""


@dataclass(kw_only=True)
class SourceConfig:
    """Where the real documents come from and how to read them."""

    source: str = "embedded"
    """"embedded" (gensim's Lee news corpus, 300 articles), "embedded-long" (CPython's pydoc
    topics, long reference documents), a .jsonl/.json/.parquet file or a directory of them,
    or a Hugging Face dataset name or path (read with ``datasets.load_dataset(streaming=True)``)."""
    text_column: str = "text"
    """Column holding the document text."""
    id_column: str | None = None
    """Column holding a document id; None = sha256 of the text (first 16 hex digits)."""
    split: str = "train"
    """Dataset split to read (HF datasets only)."""
    dataset_config: str | None = None
    """Dataset configuration name (HF datasets only)."""
    max_docs: int | None = None
    """Stop after this many kept documents; None = all."""
    on_bad_input: OnBadInput = "warn"
    """What to do with a bad line or document (not UTF-8, not JSON, no text or id, empty,
    non-string, duplicate): raise ("error"), log its ``file:line`` and drop it ("warn") or
    drop it silently ("skip"). Drops are always counted, by reason."""

    def __post_init__(self) -> None:
        if not self.source:
            raise ValueError(
                "SourceConfig.source is empty; use 'embedded', 'embedded-long', a file or "
                "directory path, or a Hugging Face dataset name."
            )
        if not self.text_column:
            raise ValueError("SourceConfig.text_column is empty; name the column with the text.")
        if self.max_docs is not None and self.max_docs < 1:
            raise ValueError(
                f"SourceConfig.max_docs must be >= 1 or None (all documents), got {self.max_docs}."
            )
        if self.on_bad_input not in ("error", "warn", "skip"):
            raise ValueError(
                f"SourceConfig.on_bad_input must be 'error', 'warn' or 'skip', "
                f"got {self.on_bad_input!r}."
            )


@dataclass
class SourceStats:
    """What reading a source did: documents read, kept, and dropped by reason."""

    read: int = 0
    """Records read from the source (before any filtering)."""
    kept: int = 0
    """Documents yielded."""
    skipped: Counter = field(default_factory=Counter)
    """Dropped documents by reason: "bad_encoding" (not UTF-8, or a lone surrogate),
    "bad_json", "missing_text", "non_string_text", "empty", "missing_id", "duplicate_id"."""

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view."""
        return {"read": self.read, "kept": self.kept, "skipped": dict(self.skipped)}


def _embedded_records(name: str) -> Iterator[dict[str, Any]]:
    if name == "embedded":
        from hf_megadocs.generation.embedded import embedded_corpus_path

        path = Path(embedded_corpus_path("lee_background"))
        with path.open(encoding="utf-8") as handle:
            for line_number, line in enumerate(handle):
                yield {"id": f"lee-{line_number:03d}", "text": line.rstrip("\n")}
        return
    from pydoc_data.topics import topics  # CPython's bundled long reference documents

    # Some topic names are aliases of one text; the bundled set is the distinct texts, so
    # an embedded build does not warn about a duplicate it cannot fix.
    texts: set[str] = set()
    for topic in sorted(topics):
        if topics[topic] not in texts:
            texts.add(topics[topic])
            yield {"id": topic, "text": _without_underlines(topics[topic])}


_UNDERLINE = re.compile(r"^[ \t]*([*=\-~^#])\1{2,}[ \t]*\n?", re.MULTILINE)
"""A reStructuredText heading underline (a line of one repeated punctuation mark)."""


def _without_underlines(text: str) -> str:
    """``text`` without its heading underlines: a row of 14-41 ``*`` after every title is
    trivially predictable and would carry a long-context gap that measures format, not
    context (seen in the CPU study: the method gaps sat in tokens 0-64)."""
    return _UNDERLINE.sub("", text)


def _hub_records(config: SourceConfig) -> Iterator[Located]:
    import datasets

    try:
        dataset = datasets.load_dataset(
            config.source, config.dataset_config, split=config.split, streaming=True
        )
    except Exception as error:  # datasets raises many types for "not found"
        raise ValueError(
            f"SourceConfig.source={config.source!r} is not 'embedded', 'embedded-long', an "
            f"existing {'/'.join(FILE_SUFFIXES)} file or directory, nor a loadable Hugging Face "
            f"dataset (split={config.split!r}, dataset_config={config.dataset_config!r}): "
            f"{type(error).__name__}: {error}"
        ) from error
    features = getattr(dataset, "features", None)
    for column in _columns(config) if features is not None else ():
        if column not in features:
            raise ValueError(missing_column_message(column, list(features), config.source))
    records = iter(dataset)
    index = 0
    while True:
        try:
            record = next(records)
        except StopIteration:
            return
        except Exception as error:  # datasets cannot skip a line it cannot read: say where
            raise ValueError(
                f"Source {config.source!r} could not be read past record {index} "
                f"({type(error).__name__}: {error}). `datasets` cannot skip such a line; fix "
                "the data, or point SourceConfig.source at the local .jsonl/.json/.parquet "
                "files, where each bad line is dropped and counted."
            ) from error
        yield f"{config.source} record {index}", record
        index += 1


def _columns(config: SourceConfig) -> list[str]:
    return [config.text_column] + ([config.id_column] if config.id_column else [])


def _records(config: SourceConfig) -> Iterator[Located]:
    if config.source in EMBEDDED_SOURCES:
        for index, record in enumerate(_embedded_records(config.source)):
            yield f"{config.source} record {index}", record
        return
    files = source_files(config.source)
    if files is None:
        yield from _hub_records(config)
    else:
        yield from file_records(files, _columns(config))


def _absent_or_null(record: dict[str, Any], column: str) -> str:
    if column in record:
        return f"{column!r} is null"
    return f"{column!r} is absent; available columns: {sorted(record)}"


def _document(config: SourceConfig, record: dict[str, Any], where: str) -> SourceDoc | BadRecord:
    """The record as a document, or why it is dropped (its location in the detail)."""
    text = record.get(config.text_column)
    if text is None:
        return BadRecord(
            "missing_text", f"{where}: no text ({_absent_or_null(record, config.text_column)})"
        )
    if not isinstance(text, str):
        return BadRecord("non_string_text", f"{where}: text is {type(text).__name__}, not str")
    if not text.strip():
        return BadRecord("empty", f"{where}: text is empty or whitespace")
    problem = unencodable(text)  # it would crash hashing now, or writing the store later
    if problem:
        return BadRecord("bad_encoding", f"{where}: text has a {problem}")
    if not config.id_column:
        return SourceDoc(source_id=hashlib.sha256(text.encode("utf-8")).hexdigest()[:16], text=text)
    if record.get(config.id_column) is None:
        return BadRecord(
            "missing_id", f"{where}: no id ({_absent_or_null(record, config.id_column)})"
        )
    source_id = str(record[config.id_column])
    problem = unencodable(source_id)
    if problem:
        return BadRecord("bad_encoding", f"{where}: id has a {problem}")
    return SourceDoc(source_id=source_id, text=text)


class _Columns:
    """Which of the text/id columns no record has had yet, and the columns seen meanwhile.

    A column that some records lack is a per-record drop; one that no record has is a
    configuration mistake, an error naming the available columns: raised at the end of the
    source, or once ``_SCHEMA_PROBE`` records have gone by without it.
    """

    def __init__(self, columns: list[str], source: str) -> None:
        self.unseen = list(columns)
        self.available: set[str] = set()
        self.records = 0
        self.source = source

    def see(self, record: dict[str, Any]) -> None:
        """Note one record's columns; raise if a column is still absent after the probe."""
        self.records += 1
        self.unseen = [c for c in self.unseen if c not in record]
        if self.unseen:
            self.available.update(record)
            if self.records >= _SCHEMA_PROBE:
                self.check(f" (none of its first {self.records} records has it)")

    def check(self, note: str = "") -> None:
        """Raise if records were read and none had one of the columns."""
        if self.unseen and self.records:
            message = missing_column_message(self.unseen[0], list(self.available), self.source)
            raise ValueError(message + note)


def load_source(config: SourceConfig, stats: SourceStats | None = None) -> Iterator[SourceDoc]:
    """Yield the source's documents, dropping (and counting in ``stats``) bad ones.

    Each bad line or record (not UTF-8 or a lone surrogate, not JSON, no text or id, empty,
    duplicate) is dropped and counted by reason, and located (``file:line``) in the warning
    or, under ``on_bad_input="error"``, in the error. A text or id column that no record has
    is always an error naming the available columns, whatever ``on_bad_input`` says: it is a
    configuration mistake, not a bad document.
    """
    stats = SourceStats() if stats is None else stats
    seen: set[str] = set()
    columns = _Columns(_columns(config), config.source)
    held: list[tuple[str, str]] = []
    """Missing-column warnings held until that column is known to exist somewhere."""
    warnings = 0

    def warn(reason: str, detail: str) -> None:
        nonlocal warnings
        warnings += 1
        if warnings <= _MAX_WARNINGS:
            logger.warning("Dropping document (%s): %s", reason, detail)
        elif warnings == _MAX_WARNINGS + 1:
            logger.warning("More bad documents: counting them without further warnings.")

    def drop(bad: BadRecord) -> None:
        stats.skipped[bad.reason] += 1
        if config.on_bad_input == "error":
            raise ValueError(
                f"Bad document in source {config.source!r}: {bad.detail}. Fix the data, or set "
                "on_bad_input='warn' or 'skip' to drop such documents (they are counted)."
            )
        if config.on_bad_input == "warn":
            if columns.unseen and bad.reason.startswith("missing_"):
                held.append((bad.reason, bad.detail))
                del held[_MAX_WARNINGS:]
            else:
                warn(bad.reason, bad.detail)

    for where, record in _records(config):
        stats.read += 1
        if isinstance(record, BadRecord):
            drop(BadRecord(record.reason, f"{where}: {record.detail}"))
            continue
        if columns.unseen:
            columns.see(record)
        doc = _document(config, record, where)
        if not columns.unseen and held:
            for reason, detail in held:
                warn(reason, detail)
            held.clear()
        if isinstance(doc, BadRecord):
            drop(doc)
            continue
        if doc.source_id in seen:
            drop(BadRecord("duplicate_id", f"{where}: id {doc.source_id!r} was already read"))
            continue
        seen.add(doc.source_id)
        stats.kept += 1
        yield doc
        if config.max_docs is not None and stats.kept >= config.max_docs:
            break
    columns.check()
    if stats.skipped:
        logger.info(
            "Source %r: read %d, kept %d, dropped %s",
            config.source,
            stats.read,
            stats.kept,
            dict(stats.skipped),
        )


def validate_source(config: SourceConfig) -> None:
    """Check cheaply, before any generation, that the source exists, has the columns and
    yields at least one usable document. Raises ``ValueError`` saying what to fix."""
    stats = SourceStats()
    for _ in load_source(config, stats):
        return
    raise ValueError(
        f"Source {config.source!r} has no usable documents (read {stats.read}, dropped "
        f"{dict(stats.skipped)}); check SourceConfig.source, split and text_column."
    )


__all__ = ["SourceConfig", "SourceStats", "load_source", "validate_source"]
