"""Leakage-safe train/validation split by a hash of ``source_id``.

A document's split depends only on its id, the validation fraction and the seed, never on
the order, the number of documents or the method, so every corpus built from one source
agrees on which documents are held out, and held-out documents are never sent to the
generator.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

Split = Literal["train", "validation"]


@dataclass(frozen=True, kw_only=True)
class SplitConfig:
    """Which source documents are held out as real-only validation (never generated from).

    One default for every entry point (``hf-megadocs generate``, the builder, the trainer's
    corpus loads), so a store filled ahead of time covers exactly the documents a corpus uses.
    """

    validation_fraction: float = 0.05
    """Share of source documents held out, in [0, 1); 0 disables the validation split."""
    seed: int = 0
    """Seed of the source-id hash that assigns documents to splits (kept apart from the
    sampling seed, so corpora sampled with different seeds share one validation set)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(
                f"SplitConfig.validation_fraction must be in [0, 1), got "
                f"{self.validation_fraction}; e.g. 0.05 holds out 5% (0 disables the split)."
            )

    def of(self, source_id: str) -> Split:
        """The split of the document ``source_id``."""
        return split_of(source_id, self.validation_fraction, self.seed)


def split_unit(source_id: str, seed: int) -> float:
    """A uniform number in [0, 1) from the sha256 of ``f"{seed}:{source_id}"``."""
    digest = hashlib.sha256(f"{seed}:{source_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_of(source_id: str, validation_fraction: float, seed: int) -> Split:
    """``"validation"`` when the document's hash unit is below ``validation_fraction``."""
    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError(
            f"validation_fraction must be in [0, 1), got {validation_fraction}; use e.g. 0.05 "
            "to hold out 5% of the source documents (0 disables the validation split)."
        )
    return "validation" if split_unit(source_id, seed) < validation_fraction else "train"


__all__ = ["Split", "SplitConfig", "split_of", "split_unit"]
