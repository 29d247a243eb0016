"""Read local source files (JSON Lines, one JSON array, Parquet) record by record.

Every reader yields ``(where, item)``: ``where`` locates the record (``path:line`` for JSON
Lines, ``path: item i`` for an array, ``path: row i`` for Parquet) and ``item`` is either
the record (a dict) or a :class:`BadRecord` saying why that line could not be read, so the
caller counts and reports it under its bad-input policy instead of aborting the whole source.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FILE_SUFFIXES = (".jsonl", ".json", ".parquet")
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class BadRecord:
    """A line or item that could not be read as a record."""

    reason: str
    """``"bad_encoding"`` (not UTF-8) or ``"bad_json"`` (not JSON, or not an object)."""
    detail: str
    """What is wrong with it, without its location."""


Located = tuple[str, "dict[str, Any] | BadRecord"]
"""Where a record is, and the record (or why it could not be read)."""


def source_files(source: str) -> list[Path] | None:
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


def missing_column_message(column: str, available: list[str], where: str) -> str:
    """The error for a column that the source does not have at all."""
    return (
        f"Column {column!r} is not in source {where!r}; available columns: {sorted(available)}. "
        "Set SourceConfig.text_column / id_column (--text-column / --id-column) to one of them."
    )


def unencodable(value: str) -> str | None:
    """Why ``value`` cannot be written as UTF-8 (a lone surrogate, e.g. JSON ``"\\ud800"``),
    or None when it can."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        return (
            f"lone surrogate U+{ord(value[error.start]):04X} at character {error.start} "
            "(not encodable as UTF-8)"
        )
    return None


def file_records(paths: list[Path], columns: list[str]) -> Iterator[Located]:
    """The records of every file in ``paths``, located; Parquet files read only ``columns``."""
    for path in paths:
        if path.suffix == ".parquet":
            yield from _parquet_records(path, columns)
        else:
            yield from _json_file_records(path)


def _json_file_records(path: Path) -> Iterator[Located]:
    """JSON Lines (.jsonl, or .json that is not one array) or one JSON array of objects."""
    with path.open("rb") as handle:
        head = handle.read(4096).removeprefix(_BOM).lstrip()
        if path.suffix == ".json" and head.startswith(b"["):
            handle.seek(0)
            yield from _json_array_records(path, handle.read())
            return
        handle.seek(0)
        for line_number, raw in enumerate(handle, start=1):
            where = f"{path}:{line_number}"
            try:
                # utf-8-sig: a byte-order mark (first line of a file, or of each file that
                # `cat` joined) is read as one, not as part of the first record
                line = raw.decode("utf-8-sig")
            except UnicodeDecodeError as error:
                detail = (
                    f"not valid UTF-8 (byte 0x{raw[error.start]:02X} at byte {error.start + 1} "
                    "of the line)"
                )
                yield where, BadRecord("bad_encoding", detail)
                continue
            if not line.strip():
                continue
            try:
                record = json.loads(line.rstrip("\r\n"))
            except json.JSONDecodeError as error:
                yield where, BadRecord("bad_json", f"invalid JSON ({error.msg})")
                continue
            if isinstance(record, dict):
                yield where, record
            else:
                yield where, BadRecord("bad_json", f"a {type(record).__name__}, not a JSON object")


def _json_array_records(path: Path, data: bytes) -> Iterator[Located]:
    """The objects of a JSON array file. Bytes that are not UTF-8 become lone surrogates
    (found and dropped per record by the caller); a file that is not JSON is an error."""
    text = data.removeprefix(_BOM).decode("utf-8", errors="surrogateescape")
    try:
        items = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{path}:{error.lineno}:{error.colno}: invalid JSON ({error.msg}); a .json file "
            "starting with '[' is read as one JSON array. Fix the file, or write it as JSON "
            "Lines (one object per line), where a bad line is dropped and counted."
        ) from error
    for index, item in enumerate(items):
        where = f"{path}: item {index}"
        if isinstance(item, dict):
            yield where, item
        else:
            yield where, BadRecord("bad_json", f"a {type(item).__name__}, not an object")


def _parquet_records(path: Path, columns: list[str]) -> Iterator[Located]:
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    names = parquet.schema_arrow.names
    missing = [c for c in columns if c not in names]
    if missing:  # the file's schema lacks it: a configuration mistake, not a bad row
        raise ValueError(missing_column_message(missing[0], names, str(path)))
    row = 0
    for batch in parquet.iter_batches(batch_size=1024, columns=columns):
        for record in batch.to_pylist():
            yield f"{path}: row {row}", record
            row += 1


__all__ = [
    "FILE_SUFFIXES",
    "BadRecord",
    "Located",
    "file_records",
    "missing_column_message",
    "source_files",
    "unencodable",
]
