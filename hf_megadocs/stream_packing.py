"""Streaming packing: pack a stream of tokenized units with bounded memory.

Same contract as :func:`hf_megadocs.packing.pack` (units stay contiguous, rows of
``seq_len``, position ids per attention mode, remainder dropped or padded), but units are
shuffled with a seeded buffer of ``buffer_size`` units instead of a global permutation,
and rows are produced in chunks, so memory is bounded by the buffer and one chunk
whatever the corpus size.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from hf_megadocs.packing import (
    PackConfig,
    PackedSequences,
    PackStats,
    _list_column,
    _positions,
    _row_positions,
)
from hf_megadocs.tokenize import PAD_ROLE_ID

logger = logging.getLogger(__name__)


class IterablePacker:
    """Packs a stream of units with a bounded, seeded shuffle buffer (see :func:`pack_iterable`)."""

    def __init__(
        self,
        units: Iterable[Mapping[str, Any]],
        config: PackConfig,
        *,
        buffer_size: int = 1024,
        epoch: int = 0,
        chunk_sequences: int = 64,
    ) -> None:
        if buffer_size < 1:
            raise ValueError(f"pack_iterable buffer_size must be >= 1, got {buffer_size}.")
        if chunk_sequences < 1:
            raise ValueError(f"pack_iterable chunk_sequences must be >= 1, got {chunk_sequences}.")
        self.units = units
        self.config = config
        self.buffer_size = buffer_size
        self.epoch = epoch
        self.chunk_sequences = chunk_sequences
        self.stats = PackStats()
        """Counters, final once iteration has finished."""

    def _unit_arrays(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(input_ids, roles, doc_starts) per unit; datasets are read as Arrow batches."""
        units = self.units
        if hasattr(units, "with_format") and hasattr(units, "iter"):  # datasets (Iterable)Dataset
            for table in units.with_format("arrow").iter(batch_size=256):
                ids_v, lens = _list_column(table, "input_ids")
                ids_v = ids_v.astype(np.int32, copy=False)
                roles_v = _list_column(table, "roles")[0].astype(np.int8, copy=False)
                if "doc_starts" in table.column_names:
                    docs_v, n_docs = _list_column(table, "doc_starts")
                else:
                    docs_v, n_docs = np.zeros(len(lens), np.int64), np.ones(len(lens), np.int64)
                ends, doc_ends = np.cumsum(lens).tolist(), np.cumsum(n_docs).tolist()
                a = d = 0
                for b, e in zip(ends, doc_ends):
                    # Copies, so a buffered unit does not pin its whole Arrow batch in memory.
                    yield ids_v[a:b].copy(), roles_v[a:b].copy(), docs_v[d:e].copy()
                    a, d = b, e
            return
        for unit in units:
            yield (
                np.asarray(unit["input_ids"], dtype=np.int32),
                np.asarray(unit["roles"], dtype=np.int8),
                np.asarray(unit.get("doc_starts", [0]), dtype=np.int64),
            )

    def _shuffled(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        rng = np.random.default_rng([self.config.seed, self.epoch])
        buf: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        for unit in self._unit_arrays():
            if len(buf) < self.buffer_size:
                buf.append(unit)
                continue
            j = int(rng.integers(self.buffer_size))
            yield buf[j]
            buf[j] = unit
        for j in rng.permutation(len(buf)):
            yield buf[j]

    def _rows(
        self, ids: np.ndarray, roles: np.ndarray, starts: np.ndarray, n: int
    ) -> Iterator[dict[str, np.ndarray]]:
        L = self.config.seq_len
        if self.config.attention == "cross_document":
            pos = _row_positions(n, L)
        else:
            pos = _positions(n * L, L, starts).reshape(n, L)
        packed = PackedSequences(
            input_ids=ids[: n * L].reshape(n, L),
            roles=roles[: n * L].reshape(n, L),
            position_ids=pos,
            attention=self.config.attention,
        )
        self.stats.sequences += n
        for i in range(n):
            yield packed[i]

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        cfg, st = self.config, self.stats
        L = cfg.seq_len
        flush_at = L * self.chunk_sequences
        ids_parts: list[np.ndarray] = []
        role_parts: list[np.ndarray] = []
        start_parts: list[np.ndarray] = []
        held = 0  # tokens in the parts above
        for ids, roles, docs in self._shuffled():
            if len(ids) == 0:
                continue
            st.units += 1
            st.tokens += len(ids)
            st.documents += len(docs)
            ids_parts.append(ids)
            role_parts.append(roles)
            if cfg.attention == "megadoc":
                start_parts.append(np.array([held], dtype=np.int64))
            elif cfg.attention == "document":
                start_parts.append(docs + held)
            held += len(ids)
            if held >= flush_at:
                ids_all, roles_all = np.concatenate(ids_parts), np.concatenate(role_parts)
                starts = np.concatenate(start_parts) if start_parts else np.zeros(0, np.int64)
                n = held // L
                yield from self._rows(ids_all, roles_all, starts, n)
                st.packed_tokens += n * L
                cut = n * L
                ids_parts, role_parts = [ids_all[cut:]], [roles_all[cut:]]
                start_parts = [starts[starts >= cut] - cut]
                held -= cut
        # Tail: fewer than flush_at tokens left.
        if held:
            ids_all, roles_all = np.concatenate(ids_parts), np.concatenate(role_parts)
            starts = np.concatenate(start_parts) if start_parts else np.zeros(0, np.int64)
            n, rem = divmod(held, L)
            if rem and not cfg.drop_last:
                pad = L - rem
                st.padding_tokens += pad
                ids_all = np.concatenate([ids_all, np.full(pad, ids_all[-1], np.int32)])
                roles_all = np.concatenate([roles_all, np.full(pad, PAD_ROLE_ID, np.int8)])
                n += 1
                st.packed_tokens += rem
            elif rem:
                st.dropped_tokens += rem
            st.packed_tokens += (held // L) * L
            if n:
                yield from self._rows(ids_all, roles_all, starts, n)
        logger.info(
            "stream-packed %d units (%d tokens) into %d sequences; dropped %d, padded %d",
            st.units,
            st.tokens,
            st.sequences,
            st.dropped_tokens,
            st.padding_tokens,
        )


def pack_iterable(
    units: Iterable[Mapping[str, Any]],
    config: PackConfig,
    *,
    buffer_size: int = 1024,
    epoch: int = 0,
) -> IterablePacker:
    """Pack a (streaming) iterable of tokenized units into sequences with bounded memory.

    ``units`` is a ``datasets`` (Iterable)Dataset from :func:`tokenize_corpus` (read as
    Arrow batches, no per-token Python objects) or any iterable of mappings with
    ``input_ids``, ``roles`` and optionally ``doc_starts``. Units are shuffled with a
    seeded buffer of ``buffer_size`` units (like ``IterableDataset.shuffle``), so memory
    is bounded by the buffer plus one chunk of sequences, whatever the corpus size.
    Iterating yields one dict per sequence (as :meth:`PackedSequences.__getitem__`); the
    returned object's ``.stats`` holds the counters once iteration ends. Same remainder
    policy as :func:`pack`.
    """
    return IterablePacker(units, config, buffer_size=buffer_size, epoch=epoch)
