"""Read real documents: the embedded corpora, local JSONL/JSON/Parquet files, or any HF dataset.

Every reader yields plain records (dicts); :func:`load_source` turns them into
:class:`~hf_megadocs.records.SourceDoc` with a stable ``source_id``, applying the bad-input
policy and counting every document it drops, by reason, in a :class:`SourceStats`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hf_megadocs.records import SourceDoc

logger = logging.getLogger(__name__)

EMBEDDED_SOURCES = ("embedded", "embedded-long")
FILE_SUFFIXES = (".jsonl", ".json", ".parquet")
OnBadInput = Literal["error", "warn", "skip"]
_MAX_WARNINGS = 20
"""Bad-input warnings logged per run under on_bad_input="warn"; the rest are only counted."""


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
    """What to do with an empty, non-string or duplicate document: raise ("error"), log and
    drop ("warn") or drop silently ("skip"). Drops are always counted."""

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
    """Dropped documents by reason: "empty", "non_string_text", "missing_id",
    "duplicate_id", "bad_json"."""

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


def _source_files(source: str) -> list[Path] | None:
    """The data files ``source`` names, or None when it is not a local path."""
    path = Path(source).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in FILE_SUFFIXES)
        if not files:
            raise ValueError(
                f"SourceConfig.source={source!r} is a directory without {', '.join(FILE_SUFFIXES)} "
                "files; point it at a directory or file holding the documents."
            )
        return files
    if path.is_file():
        if path.suffix not in FILE_SUFFIXES:
            raise ValueError(
                f"SourceConfig.source={source!r} has suffix {path.suffix!r}; local files must be "
                f"one of {', '.join(FILE_SUFFIXES)}."
            )
        return [path]
    if path.suffix in FILE_SUFFIXES or source.startswith((".", "/", "~")):
        raise ValueError(f"SourceConfig.source={source!r} does not exist; check the path.")
    return None


def _json_file_records(path: Path, bad: list[str]) -> Iterator[dict[str, Any]]:
    """JSON Lines (.jsonl, or .json that is not one array) or one JSON array of objects."""
    with path.open(encoding="utf-8") as handle:
        first = handle.read(1)
        while first and first.isspace():
            first = handle.read(1)
        handle.seek(0)
        if path.suffix == ".json" and first == "[":
            for item in json.load(handle):
                if isinstance(item, dict):
                    yield item
                else:
                    bad.append(f"{path}: array item is {type(item).__name__}, not an object")
            return
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                bad.append(f"{path}:{line_number}: invalid JSON ({error.msg})")
                continue
            if isinstance(record, dict):
                yield record
            else:
                bad.append(f"{path}:{line_number}: a {type(record).__name__}, not a JSON object")


def _parquet_records(path: Path, columns: list[str]) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    names = parquet.schema_arrow.names
    missing = [c for c in columns if c not in names]
    if missing:
        raise ValueError(_missing_column_message(missing[0], names, str(path)))
    for batch in parquet.iter_batches(batch_size=1024, columns=columns):
        yield from batch.to_pylist()


def _hub_records(config: SourceConfig) -> Iterator[dict[str, Any]]:
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
    yield from dataset


def _missing_column_message(column: str, available: list[str], where: str) -> str:
    return (
        f"Column {column!r} is not in source {where!r}; available columns: {sorted(available)}. "
        "Set SourceConfig.text_column / id_column (--text-column / --id-column) to one of them."
    )


def _records(config: SourceConfig, bad: list[str]) -> Iterator[dict[str, Any]]:
    if config.source in EMBEDDED_SOURCES:
        yield from _embedded_records(config.source)
        return
    files = _source_files(config.source)
    if files is None:
        yield from _hub_records(config)
        return
    columns = [config.text_column] + ([config.id_column] if config.id_column else [])
    for path in files:
        if path.suffix == ".parquet":
            yield from _parquet_records(path, columns)
        else:
            yield from _json_file_records(path, bad)


def load_source(config: SourceConfig, stats: SourceStats | None = None) -> Iterator[SourceDoc]:
    """Yield the source's documents, dropping (and counting in ``stats``) bad ones.

    A missing text or id column is always an error naming the available columns, whatever
    ``on_bad_input`` says: it is a configuration mistake, not a bad document.
    """
    stats = SourceStats() if stats is None else stats
    seen: set[str] = set()
    bad_lines: list[str] = []
    warnings = 0

    def drop(reason: str, detail: str) -> None:
        nonlocal warnings
        stats.skipped[reason] += 1
        if config.on_bad_input == "error":
            raise ValueError(
                f"Bad document in source {config.source!r}: {detail}. Fix the data, or set "
                "on_bad_input='warn' or 'skip' to drop such documents (they are counted)."
            )
        if config.on_bad_input == "warn":
            warnings += 1
            if warnings <= _MAX_WARNINGS:
                logger.warning("Dropping document (%s): %s", reason, detail)
            elif warnings == _MAX_WARNINGS + 1:
                logger.warning("More bad documents: counting them without further warnings.")

    for record in _records(config, bad_lines):
        while bad_lines:
            stats.read += 1
            drop("bad_json", bad_lines.pop(0))
        stats.read += 1
        where = f"record {stats.read - 1}"
        if config.text_column not in record:
            raise ValueError(
                _missing_column_message(config.text_column, list(record), config.source)
            )
        text = record[config.text_column]
        if not isinstance(text, str):
            drop("non_string_text", f"{where}: text is {type(text).__name__}, not str")
            continue
        if not text.strip():
            drop("empty", f"{where}: text is empty or whitespace")
            continue
        if config.id_column:
            if config.id_column not in record:
                raise ValueError(
                    _missing_column_message(config.id_column, list(record), config.source)
                )
            if record[config.id_column] is None:
                drop("missing_id", f"{where}: id is null")
                continue
            source_id = str(record[config.id_column])
        else:
            source_id = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
        if source_id in seen:
            drop("duplicate_id", f"{where}: id {source_id!r} was already read")
            continue
        seen.add(source_id)
        stats.kept += 1
        yield SourceDoc(source_id=source_id, text=text)
        if config.max_docs is not None and stats.kept >= config.max_docs:
            break
    for detail in bad_lines:
        stats.read += 1
        drop("bad_json", detail)
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
