"""Tokenize text rows into *units* with per-token role lineage.

A unit is one training row of the corpus: a megadoc (several documents joined by
``separator`` segments) or a plain document. Each unit becomes ``input_ids`` with an EOS
after every document (every separator becomes one EOS; the unit ends with one), a
per-token ``roles`` array carrying the builder's segment lineage into token space, the
token offsets where each document starts (``doc_starts``) and ``num_tokens``.

The hot path is batched: one fast-tokenizer call per batch of documents, then NumPy for
EOS insertion and the char-segment → token-role lookup (no Python loop over tokens).
"""

from __future__ import annotations

import itertools
import logging
import os
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hf_megadocs.mapped_pages import PageBudget

if TYPE_CHECKING:
    from datasets import Dataset, IterableDataset

logger = logging.getLogger(__name__)

_PAGES = PageBudget()
"""Hands back the Arrow pages tokenization has read (per process: each map worker its own)."""

ROLE_NAMES: tuple[str, ...] = (
    "real",
    "rephrase",
    "rationale",
    "reformat",
    "qa",
    "textbook",
    "separator",
)
"""Role names in id order. Ids are stable: new roles are only ever appended."""

ROLE_IDS: dict[str, int] = {name: i for i, name in enumerate(ROLE_NAMES)}
"""Role name → the int8 id stored per token. ``separator`` never appears on a token:
separator characters become one EOS, which takes the role of the document it ends."""

PAD_ROLE_ID = -1
"""Role id of padding positions (only ever produced by ``PackConfig(drop_last=False)``)."""

DEFAULT_ROLE_ID = ROLE_IDS["real"]
BATCH_CHARS = 4_000_000
"""Characters per tokenizer call (about 1M tokens): a batch of 24k-token megadocs is ~40
rows, not 1,000 (24M tokens as Python lists)."""
PARALLEL_CHARS = 64_000_000
"""Above this many characters (estimated), tokenization uses every available core."""
"""Role of characters not covered by any segment, and of rows without segments."""


def _features() -> Any:
    from datasets import Features, List, Value

    return Features(
        {
            "input_ids": List(Value("int32")),
            "roles": List(Value("int8")),
            "doc_starts": List(Value("int32")),
            "num_tokens": Value("int32"),
        }
    )


def _check_tokenizer(tokenizer: Any) -> int:
    """Return the EOS id, or raise a ValueError saying what to fix."""
    eos_id = getattr(tokenizer, "eos_token_id", None)
    if eos_id is None:
        raise ValueError(
            f"tokenizer {type(tokenizer).__name__} ({getattr(tokenizer, 'name_or_path', '?')!r}) "
            "has no eos_token_id; packing needs an EOS after every document. Set one, e.g. "
            "tokenizer.eos_token = '<|endoftext|>' (a token in its vocabulary), or use the "
            "model's own tokenizer."
        )
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            f"tokenizer {type(tokenizer).__name__} is not a fast (Rust) tokenizer; the char → "
            "token role mapping needs offset mappings. Load it with "
            "AutoTokenizer.from_pretrained(..., use_fast=True)."
        )
    return int(eos_id)


def _segments_of_batch(
    batch: pa.Table, segments_column: str | None, n_rows: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The batch's segments as (row, start, end, role_id) arrays, sorted by (row, start)."""
    empty = np.zeros(0, dtype=np.int64)
    if segments_column is None:
        return empty, empty, empty, empty.astype(np.int8)
    col = batch.column(segments_column).combine_chunks()
    offsets = col.offsets.to_numpy().astype(np.int64)
    offsets = offsets - offsets[0]
    counts = np.diff(offsets)
    if col.null_count:
        counts = np.where(col.is_null().to_numpy(zero_copy_only=False), 0, counts)
    flat = col.flatten()  # respects slicing and drops null rows
    if len(flat) == 0:
        return empty, empty, empty, empty.astype(np.int8)
    rows = np.repeat(np.arange(n_rows, dtype=np.int64), counts)
    starts = flat.field("start").to_numpy(zero_copy_only=False).astype(np.int64)
    ends = flat.field("end").to_numpy(zero_copy_only=False).astype(np.int64)
    role_idx = pc.index_in(flat.field("role"), value_set=pa.array(ROLE_NAMES))
    if role_idx.null_count:
        unknown = sorted(set(pc.filter(flat.field("role"), role_idx.is_null()).to_pylist()))
        raise ValueError(
            f"segments.role has unknown values {unknown[:5]}; allowed: {list(ROLE_NAMES)}. "
            "Fix the builder output or map the roles before tokenizing."
        )
    roles = role_idx.to_numpy(zero_copy_only=False).astype(np.int8)
    order = np.lexsort((starts, rows))
    return rows[order], starts[order], ends[order], roles[order]


def _tokenize_batch(
    batch: pa.Table,
    *,
    tokenizer: Any,
    eos_id: int,
    text_column: str,
    segments_column: str | None,
) -> pa.Table:
    texts: list[str] = batch.column(text_column).to_pylist()
    _PAGES.read(batch.nbytes, batch.num_columns)  # copied out: its mapped pages can go
    n_rows = len(texts)
    texts = ["" if t is None else t for t in texts]
    seg_row, seg_start, seg_end, seg_role = _segments_of_batch(batch, segments_column, n_rows)

    # Documents = text between separator segments; empty pieces are skipped.
    is_sep = seg_role == ROLE_IDS["separator"]
    sep_rows, sep_starts, sep_ends = seg_row[is_sep], seg_start[is_sep], seg_end[is_sep]
    sep_bounds = np.searchsorted(sep_rows, np.arange(n_rows + 1))
    pieces: list[str] = []
    piece_row: list[int] = []
    piece_char0: list[int] = []
    for r, text in enumerate(texts):
        lo, hi = sep_bounds[r], sep_bounds[r + 1]
        cut = 0
        for s, e in zip(sep_starts[lo:hi].tolist(), sep_ends[lo:hi].tolist()):
            if s > cut:
                pieces.append(text[cut:s])
                piece_row.append(r)
                piece_char0.append(cut)
            cut = max(cut, e)
        if cut < len(text):
            pieces.append(text[cut:])
            piece_row.append(r)
            piece_char0.append(cut)

    if not pieces:
        return _features().arrow_schema.empty_table()
    need_offsets = len(seg_row) > 0
    enc = tokenizer(
        pieces,
        add_special_tokens=False,
        return_attention_mask=False,
        return_offsets_mapping=need_offsets,
    )
    ids_lists = enc["input_ids"]
    piece_len = np.fromiter(map(len, ids_lists), dtype=np.int64, count=len(pieces))
    n_tok = int(piece_len.sum())
    flat_ids = np.fromiter(itertools.chain.from_iterable(ids_lists), dtype=np.int32, count=n_tok)

    # Output layout: each piece's tokens followed by one EOS.
    out_len = piece_len + 1
    out_end = np.cumsum(out_len)
    out_start = out_end - out_len
    total = int(out_end[-1]) if len(pieces) else 0
    eos_pos = out_end - 1
    is_eos = np.zeros(total, dtype=bool)
    is_eos[eos_pos] = True
    input_ids = np.empty(total, dtype=np.int32)
    input_ids[~is_eos] = flat_ids
    input_ids[eos_pos] = eos_id

    roles = np.full(total, DEFAULT_ROLE_ID, dtype=np.int8)
    if need_offsets and total:
        # One char axis for the whole batch: row r's chars start at row_base[r].
        row_base = np.zeros(n_rows + 1, dtype=np.int64)
        row_base[1:] = np.cumsum(np.fromiter(map(len, texts), dtype=np.int64, count=n_rows))
        p_row = np.asarray(piece_row, dtype=np.int64)
        p_base = row_base[p_row] + np.asarray(piece_char0, dtype=np.int64)
        tok_char = np.fromiter(
            (o[0] for offs in enc["offset_mapping"] for o in offs), dtype=np.int64, count=n_tok
        ) + np.repeat(p_base, piece_len)
        # EOS takes the role of the last character of the document it ends.
        p_last_char = p_base + np.array([len(p) for p in pieces], dtype=np.int64) - 1
        g_start = row_base[seg_row] + seg_start
        g_end = row_base[seg_row] + seg_end

        def lookup(chars: np.ndarray) -> np.ndarray:
            k = np.searchsorted(g_start, chars, side="right") - 1
            kc = np.clip(k, 0, None)
            inside = (k >= 0) & (chars < g_end[kc])
            return np.where(inside, seg_role[kc], DEFAULT_ROLE_ID).astype(np.int8)

        roles[~is_eos] = lookup(tok_char)
        roles[eos_pos] = lookup(p_last_char)

    # Group pieces back into units (rows); rows with no text yield no unit.
    unit_tokens = np.bincount(
        np.asarray(piece_row, dtype=np.int64), weights=out_len, minlength=n_rows
    )
    unit_docs = np.bincount(np.asarray(piece_row, dtype=np.int64), minlength=n_rows)
    keep = unit_docs > 0
    unit_tokens = unit_tokens[keep].astype(np.int64)
    unit_offsets = np.zeros(len(unit_tokens) + 1, dtype=np.int32)
    np.cumsum(unit_tokens, out=unit_offsets[1:])
    doc_offsets = np.zeros(len(unit_tokens) + 1, dtype=np.int32)
    np.cumsum(unit_docs[keep], out=doc_offsets[1:])
    unit_of_piece_start = np.repeat(unit_offsets[:-1].astype(np.int64), unit_docs[keep])
    doc_starts = (out_start - unit_of_piece_start).astype(np.int32)

    return pa.table(
        {
            "input_ids": pa.ListArray.from_arrays(pa.array(unit_offsets), pa.array(input_ids)),
            "roles": pa.ListArray.from_arrays(pa.array(unit_offsets), pa.array(roles)),
            "doc_starts": pa.ListArray.from_arrays(pa.array(doc_offsets), pa.array(doc_starts)),
            "num_tokens": pa.array(unit_tokens.astype(np.int32)),
        }
    )


def tokenize_corpus(
    dataset: Dataset | IterableDataset,
    tokenizer: Any,
    *,
    text_column: str = "text",
    segments_column: str = "segments",
    num_proc: int | None = None,
    batch_size: int | None = None,
) -> Dataset | IterableDataset:
    """Tokenize a text dataset into units with EOS after every document and per-token roles.

    Args:
        dataset: rows with ``text_column`` and optionally ``segments_column`` (a list of
            ``{role, start, end}`` char spans, as the hf_megadocs builder writes). Without
            segments each row is one ``real`` document. A ``datasets.IterableDataset``
            (streaming) is tokenized lazily.
        tokenizer: a fast transformers tokenizer with an EOS token. BOS is not added.
        text_column: column holding the text.
        segments_column: column holding role segments; ignored when absent.
        num_proc: worker processes for ``Dataset.map``; None uses every available core
            when the corpus is estimated above ``PARALLEL_CHARS`` characters, else one.
        batch_size: rows per tokenizer call (and per Arrow write); None sizes batches by
            characters (``BATCH_CHARS``), so memory does not grow with the row length.

    Returns:
        A dataset with columns ``input_ids`` (int32), ``roles`` (int8, ids in ``ROLE_IDS``),
        ``doc_starts`` (int32 token offsets of each document in the unit) and
        ``num_tokens``; rows whose text is empty are dropped (the count is logged).

    Raises:
        ValueError: tokenizer without EOS or not fast, missing text column, empty dataset,
            unknown segment roles, bad ``batch_size``.
    """
    from datasets import Dataset

    eos_id = _check_tokenizer(tokenizer)
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"tokenize_corpus batch_size must be >= 1, got {batch_size}.")
    columns = dataset.column_names
    if columns is None:  # a streaming dataset with unresolved features: peek at one row
        columns = list(next(iter(dataset.take(1)), {}).keys())
    columns = list(columns)
    if text_column not in columns:
        raise ValueError(
            f"tokenize_corpus text_column={text_column!r} is not a column of the dataset "
            f"(columns: {columns}); pass text_column=<the text column>."
        )
    is_map_style = isinstance(dataset, Dataset)
    if is_map_style and len(dataset) == 0:
        raise ValueError("tokenize_corpus got an empty dataset (0 rows); nothing to train on.")
    seg_col = segments_column if segments_column in columns else None
    if is_map_style:
        batch_size, num_proc = _map_plan(dataset, text_column, batch_size, num_proc)
    kwargs: dict[str, Any] = {
        "batched": True,
        "batch_size": batch_size or 1000,
        "remove_columns": columns,
        "features": _features(),
        "fn_kwargs": {
            "tokenizer": tokenizer,
            "eos_id": eos_id,
            "text_column": text_column,
            "segments_column": seg_col,
        },
    }
    if is_map_style:
        kwargs.update(num_proc=num_proc, writer_batch_size=batch_size, desc="Tokenizing units")
    out = dataset.with_format("arrow").map(_tokenize_batch, **kwargs).with_format(None)
    if is_map_style:
        dropped = len(dataset) - len(out)
        if dropped:
            logger.warning("tokenize_corpus dropped %d empty rows of %d", dropped, len(dataset))
        if len(out) == 0:
            raise ValueError(
                f"tokenize_corpus: every row has empty text; check text_column={text_column!r}."
            )
    return out


def _map_plan(
    dataset: Dataset, text_column: str, batch_size: int | None, num_proc: int | None
) -> tuple[int, int | None]:
    """Rows per batch and worker processes, from the mean length of a sample of rows."""
    sample = dataset.select(range(min(64, len(dataset))))[text_column]
    mean_chars = max(1.0, sum(len(t or "") for t in sample) / max(1, len(sample)))
    if batch_size is None:
        batch_size = int(min(1000, max(1, BATCH_CHARS // mean_chars)))
    if num_proc is None and mean_chars * len(dataset) > PARALLEL_CHARS:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        num_proc = min(cores or 1, max(1, len(dataset) // batch_size)) or None
        num_proc = num_proc if num_proc and num_proc > 1 else None
    if num_proc or batch_size < 1000:
        logger.info(
            "tokenize_corpus: %d rows of ~%.0f characters, %d rows per batch, %s",
            len(dataset), mean_chars, batch_size,
            f"{num_proc} processes" if num_proc else "one process",
        )  # fmt: skip
    return batch_size, num_proc
