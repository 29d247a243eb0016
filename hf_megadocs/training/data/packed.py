"""Packed training sequences: fixed-length rows of token ids, roles and position ids, in
memory or memory-mapped from the ``.npy`` files the packer writes."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from hf_megadocs.training.data.tokenize import PAD_ROLE_ID

AttentionMode = Literal["cross_document", "megadoc", "document"]
IGNORE_INDEX = -100
"""Label value that transformers' causal-LM loss ignores."""


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
            pos = row_positions(ids.shape[0], ids.shape[1])
        else:
            pos = np.load(d / "position_ids.npy", mmap_mode=mode)
        return cls(
            input_ids=ids,
            roles=roles,
            position_ids=pos,
            attention=meta["attention"],
            stats=PackStats(**meta["stats"]),
        )


def row_positions(n: int, seq_len: int) -> np.ndarray:
    return np.broadcast_to(np.arange(seq_len, dtype=np.int32), (n, seq_len))


__all__ = ["IGNORE_INDEX", "AttentionMode", "PackStats", "PackedSequences", "row_positions"]
