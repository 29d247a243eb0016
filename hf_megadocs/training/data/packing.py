"""Megadoc-aware packing of tokenized units into fixed-length sequences.

Units (megadocs or plain documents, from :func:`hf_megadocs.training.data.tokenize.tokenize_corpus`)
are shuffled *as units* with a seed, concatenated, and cut into ``seq_len`` rows, as the
megadocs paper does: a unit's tokens stay contiguous and in order and a unit longer than
``seq_len`` spans consecutive rows. Nothing is padded by default; the final partial row is
dropped and its tokens counted (``PackConfig.drop_last``).

Attention modes are expressed with ``position_ids`` only. transformers 5.x
(``masking_utils.find_packed_sequence_indices``) starts a new causal block wherever
consecutive position ids do not increase by exactly 1, when ``attention_mask`` is None
and there is no KV cache; sdpa, eager and flex then attend only within blocks:

- ``cross_document``: positions 0..L-1 on every row (one causal block per row).
- ``megadoc``: positions restart at each unit start (and at each row start).
- ``document``: positions restart at each document start inside units.

In the two blocked modes the first token of a block has label -100 (it cannot be
predicted from a block it cannot see), so a packed row's loss equals the loss of its
blocks run one by one.

Everything is NumPy over whole arrays.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from hf_megadocs.training.data.tokenize import PAD_ROLE_ID

if TYPE_CHECKING:
    from datasets import Dataset


logger = logging.getLogger(__name__)

AttentionMode = Literal["cross_document", "megadoc", "document"]
ATTENTION_MODES: tuple[str, ...] = ("cross_document", "megadoc", "document")
IGNORE_INDEX = -100
"""Label value that transformers' causal-LM loss ignores."""


@dataclass(kw_only=True)
class PackConfig:
    """How tokenized units are packed into training sequences."""

    seq_len: int = 4096
    """Tokens per packed sequence (the model's context length; the paper uses 4,096)."""
    attention: AttentionMode = "cross_document"
    """``cross_document`` (paper default: attend across documents within a row),
    ``megadoc`` (within a unit only) or ``document`` (within each document only)."""
    seed: int = 0
    """Seed of the unit shuffle; the shuffle of epoch e uses (seed, e)."""
    drop_last: bool = True
    """True: drop the final partial sequence (zero padding; its tokens are counted in
    ``PackStats.dropped_tokens``). False: keep it, padded to ``seq_len`` with label -100
    and role -1 (no token lost; at most ``seq_len - 1`` padding tokens in the corpus)."""

    def __post_init__(self) -> None:
        if not isinstance(self.seq_len, int) or self.seq_len < 2:
            raise ValueError(
                f"PackConfig.seq_len must be an int >= 2, got {self.seq_len!r}; set it to the "
                "model's context length, e.g. seq_len=4096."
            )
        if self.attention not in ATTENTION_MODES:
            raise ValueError(
                f"PackConfig.attention must be one of {list(ATTENTION_MODES)}, got "
                f"{self.attention!r}."
            )


@dataclass(kw_only=True)
class PackStats:
    """Counters of one packing run; every token in is either packed or counted as dropped."""

    units: int = 0
    """Units (megadocs or documents) read."""
    documents: int = 0
    """Documents inside those units (EOS-terminated)."""
    tokens: int = 0
    """Tokens read (including EOS)."""
    sequences: int = 0
    """Packed sequences produced."""
    packed_tokens: int = 0
    """Real (non-padding) tokens placed in sequences."""
    dropped_tokens: int = 0
    """Tokens of the final partial sequence dropped under ``drop_last=True``."""
    padding_tokens: int = 0
    """Padding positions added under ``drop_last=False``."""


def _list_column(table: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(flat values, per-row lengths) of a list column of a pyarrow Table, any chunking."""
    values, lengths = [], []
    for chunk in table.column(name).chunks:
        offsets = chunk.offsets.to_numpy()
        lengths.append(np.diff(offsets).astype(np.int64))
        values.append(chunk.flatten().to_numpy(zero_copy_only=False))
    if not values:
        return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int64)
    if len(values) == 1:  # zero-copy view of the Arrow buffer
        return values[0], lengths[0]
    return np.concatenate(values), np.concatenate(lengths)


def _unit_spans(lengths: np.ndarray, order: np.ndarray) -> tuple[list[int], list[int]]:
    """(starts, stops) of the rows ``order`` in the flat values of a list column."""
    ends = np.cumsum(lengths)
    return (ends - lengths)[order].tolist(), ends[order].tolist()


def _gather_units(values: np.ndarray, spans: tuple[list[int], list[int]]) -> np.ndarray:
    """Concatenate ``values[start:stop]`` for each span, in order.

    One ``np.concatenate`` of slice views, a memcpy per unit: 3x faster than building an
    int64 index per token (measured on 3M tokens, 12k units).
    """
    if not spans[0]:
        return values[:0]
    return np.concatenate([values[a:b] for a, b in zip(*spans)])


def _positions(total: int, seq_len: int, block_starts: np.ndarray | None) -> np.ndarray:
    """Position ids restarting at every row start and at each index in ``block_starts``."""
    starts = np.arange(0, total, seq_len, dtype=np.int64)
    if block_starts is not None and len(block_starts):
        starts = np.union1d(starts, block_starts[block_starts < total])
    lengths = np.diff(starts, append=total)
    dtype = np.int32 if total < 2**31 else np.int64
    return (np.arange(total, dtype=dtype) - np.repeat(starts.astype(dtype), lengths)).astype(
        np.int32, copy=False
    )


@dataclass(kw_only=True)
class PackedSequences:
    """Fixed-length packed sequences as NumPy arrays (optionally memory-mapped).

    ``position_ids`` is a read-only broadcast view (no memory) in ``cross_document`` mode.
    Padding (only with ``drop_last=False``) has role ``-1`` and label -100.
    """

    input_ids: np.ndarray
    """[N, L] int32 token ids."""
    roles: np.ndarray
    """[N, L] int8 role ids (``hf_megadocs.training.data.tokenize.ROLE_IDS``; -1 = padding)."""
    position_ids: np.ndarray
    """[N, L] int32 position ids encoding the attention blocks (see module doc)."""
    attention: AttentionMode
    """The attention mode these sequences were packed for."""
    stats: PackStats = field(default_factory=PackStats)
    """Counters of the packing run."""

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def seq_len(self) -> int:
        return int(self.input_ids.shape[1])

    def batch(self, indices: Any) -> dict[str, np.ndarray]:
        """Arrays ``input_ids``, ``labels``, ``position_ids``, ``roles`` for rows ``indices``."""
        idx = np.asarray(indices, dtype=np.int64)
        ids = self.input_ids[idx]
        roles = self.roles[idx]
        labels = ids.astype(np.int64)
        if self.attention == "cross_document":
            pos = np.broadcast_to(self.position_ids[0], ids.shape) if len(self) else ids * 0
        else:
            pos = self.position_ids[idx]
            starts = pos == 0
            starts[:, 0] = False
            labels[starts] = IGNORE_INDEX
        labels[roles == PAD_ROLE_ID] = IGNORE_INDEX
        return {"input_ids": ids, "labels": labels, "position_ids": pos, "roles": roles}

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        """One sequence: ``input_ids``, ``labels``, ``position_ids``, ``roles`` (1-D arrays)."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"sequence index {i} out of range for {len(self)} sequences")
        return {k: v[0] for k, v in self.batch([i % len(self)]).items()}

    def save(self, directory: str | Path) -> None:
        """Write ``.npy`` arrays and ``meta.json`` so :meth:`load` can memory-map them."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        np.save(d / "input_ids.npy", np.ascontiguousarray(self.input_ids))
        np.save(d / "roles.npy", np.ascontiguousarray(self.roles))
        if self.attention != "cross_document":
            np.save(d / "position_ids.npy", np.ascontiguousarray(self.position_ids))
        meta = {"version": 1, "attention": self.attention, "stats": asdict(self.stats)}
        (d / "meta.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, directory: str | Path, *, mmap: bool = True) -> PackedSequences:
        """Load what :meth:`save` wrote; ``mmap=True`` keeps the arrays on disk."""
        d = Path(directory)
        meta = json.loads((d / "meta.json").read_text())
        if meta.get("version") != 1:
            raise ValueError(f"{d}/meta.json has version {meta.get('version')!r}; expected 1.")
        mode = "r" if mmap else None
        ids = np.load(d / "input_ids.npy", mmap_mode=mode)
        roles = np.load(d / "roles.npy", mmap_mode=mode)
        if meta["attention"] == "cross_document":
            pos = _row_positions(ids.shape[0], ids.shape[1])
        else:
            pos = np.load(d / "position_ids.npy", mmap_mode=mode)
        return cls(
            input_ids=ids,
            roles=roles,
            position_ids=pos,
            attention=meta["attention"],
            stats=PackStats(**meta["stats"]),
        )


def _row_positions(n: int, seq_len: int) -> np.ndarray:
    return np.broadcast_to(np.arange(seq_len, dtype=np.int32), (n, seq_len))


def _finish(
    ids: np.ndarray,
    roles: np.ndarray,
    block_starts: np.ndarray | None,
    config: PackConfig,
    stats: PackStats,
) -> PackedSequences:
    """Cut the concatenated stream into rows (dropping or padding the remainder)."""
    L = config.seq_len
    total = len(ids)
    n_full, rem = divmod(total, L)
    if rem and config.drop_last:
        stats.dropped_tokens += rem
        total = n_full * L
        ids, roles = ids[:total], roles[:total]
    elif rem:
        pad = L - rem
        stats.padding_tokens += pad
        # Pad with the last token (an EOS); labels and role mark it as padding.
        ids = np.concatenate([ids, np.full(pad, ids[-1], dtype=ids.dtype)])
        roles = np.concatenate([roles, np.full(pad, PAD_ROLE_ID, dtype=np.int8)])
    n = len(ids) // L
    if n == 0:
        raise ValueError(
            f"packing produced no sequence: the corpus has {stats.tokens} tokens, fewer than "
            f"PackConfig.seq_len={L}. Use a larger corpus, a smaller seq_len, or "
            "drop_last=False to pad the single partial sequence."
        )
    stats.sequences += n
    stats.packed_tokens += min(total, stats.tokens)
    if config.attention == "cross_document":
        pos = _row_positions(n, L)
    else:
        pos = _positions(n * L, L, block_starts).reshape(n, L)
    return PackedSequences(
        input_ids=ids.reshape(n, L),
        roles=roles.reshape(n, L),
        position_ids=pos,
        attention=config.attention,
        stats=stats,
    )


def pack(
    tokenized: Dataset,
    config: PackConfig,
    *,
    epoch: int = 0,
    cache_dir: str | Path | None = None,
) -> PackedSequences:
    """Shuffle units (seeded by ``config.seed`` and ``epoch``), concatenate, cut into rows.

    Args:
        tokenized: output of :func:`hf_megadocs.training.data.tokenize.tokenize_corpus` (columns
            ``input_ids``, ``roles``, ``doc_starts``); read once into memory as Arrow.
        config: sequence length, attention mode, seed, remainder policy.
        epoch: mixes into the shuffle seed; the trainer packs once (epoch 0) and lets the
            mixing sampler reshuffle sequences per pass.
        cache_dir: when set, the result is saved under ``cache_dir/<key>`` (key: the
            dataset fingerprint, config and epoch) and returned memory-mapped; a later call
            with the same key only maps the files. Packing on the main process first and
            then on the others (``accelerator.main_process_first()``) makes all ranks share
            one copy in the page cache instead of one copy each in RAM.

    Returns:
        :class:`PackedSequences` with counters in ``.stats``.
    """
    if cache_dir is not None:
        return _pack_cached(tokenized, config, epoch, Path(cache_dir))
    if not hasattr(tokenized, "__len__"):
        raise ValueError(
            f"pack() needs a map-style datasets.Dataset, got {type(tokenized).__name__}; "
            "materialise a streaming corpus first (Dataset.from_generator or save_to_disk)."
        )
    missing = {"input_ids", "roles", "doc_starts"} - set(tokenized.column_names)
    if missing:
        raise ValueError(
            f"pack() needs the columns of tokenize_corpus(); missing {sorted(missing)} "
            f"(columns: {tokenized.column_names}). Run tokenize_corpus(dataset, tokenizer) first."
        )
    if len(tokenized) == 0:
        raise ValueError("pack() got an empty tokenized dataset (0 units).")
    table = tokenized.with_format("arrow")[:]
    ids_v, lens = _list_column(table, "input_ids")
    roles_v, role_lens = _list_column(table, "roles")
    if not np.array_equal(lens, role_lens):
        raise ValueError("tokenized dataset has rows whose roles and input_ids lengths differ.")
    n_units = len(lens)
    order = np.random.default_rng([config.seed, epoch]).permutation(n_units)
    stats = PackStats(units=n_units, tokens=int(lens.sum()))
    spans = _unit_spans(lens, order)
    ids = _gather_units(ids_v.astype(np.int32, copy=False), spans)
    roles = _gather_units(roles_v.astype(np.int8, copy=False), spans)
    out_lens = lens[order]
    unit_starts = np.cumsum(out_lens) - out_lens
    doc_v, n_docs = _list_column(table, "doc_starts")
    stats.documents = int(n_docs.sum())
    block_starts: np.ndarray | None = None
    if config.attention == "megadoc":
        block_starts = unit_starts
    elif config.attention == "document":
        docs = _gather_units(doc_v.astype(np.int64), _unit_spans(n_docs, order))
        block_starts = docs + np.repeat(unit_starts, n_docs[order])
    packed = _finish(ids, roles, block_starts, config, stats)
    logger.info(
        "packed %d units (%d docs, %d tokens) into %d x %d sequences; dropped %d, padded %d",
        stats.units,
        stats.documents,
        stats.tokens,
        stats.sequences,
        config.seq_len,
        stats.dropped_tokens,
        stats.padding_tokens,
    )
    return packed


def _pack_cached(
    tokenized: Dataset, config: PackConfig, epoch: int, cache_dir: Path
) -> PackedSequences:
    fingerprint = getattr(tokenized, "_fingerprint", None)
    if fingerprint is None:
        raise ValueError(
            f"pack(cache_dir=...) needs a datasets.Dataset with a fingerprint, got "
            f"{type(tokenized).__name__}; drop cache_dir or pass the tokenize_corpus() output."
        )
    payload = json.dumps(
        {"v": 1, "fingerprint": fingerprint, "config": asdict(config), "epoch": epoch},
        sort_keys=True,
    )
    target = cache_dir / f"packed-{hashlib.sha256(payload.encode()).hexdigest()[:16]}"
    if (target / "meta.json").exists():
        logger.info("loading packed sequences from %s", target)
        return PackedSequences.load(target)
    packed = pack(tokenized, config, epoch=epoch)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".packing-", dir=cache_dir))
    try:
        packed.save(tmp)
        os.replace(tmp, target)  # atomic: readers see all files or none
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (target / "meta.json").exists():  # not a lost race with another writer
            raise
    return PackedSequences.load(target)
