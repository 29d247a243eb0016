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
    generate_fraction: float = 1.0
    """Share of the training documents that synthetic corpora are generated from, in
    (0, 1]: the documents the trainer keeps at ``data.real_fraction`` equal to it (the same
    nested hash, :func:`in_subset`). A data-efficiency study generates for its base subset
    D0 only, so its larger real-only sizes cost no generation. The ``real`` corpus ignores
    it (it always holds every training document)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(
                f"SplitConfig.validation_fraction must be in [0, 1), got "
                f"{self.validation_fraction}; e.g. 0.05 holds out 5% (0 disables the split)."
            )
        if not 0.0 < self.generate_fraction <= 1.0:
            raise ValueError(
                f"SplitConfig.generate_fraction must be in (0, 1], got "
                f"{self.generate_fraction}; e.g. 0.125 generates for one eighth of the training "
                "documents (1 generates for all)."
            )

    def of(self, source_id: str) -> Split:
        """The split of the document ``source_id``."""
        return split_of(source_id, self.validation_fraction, self.seed)


def split_unit(source_id: str, seed: int) -> float:
    """A uniform number in [0, 1) from the sha256 of ``f"{seed}:{source_id}"``."""
    digest = hashlib.sha256(f"{seed}:{source_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


SUBSET_HASH_SEED = 1_000_003
"""Seed of the ``source_id`` hash that picks nested subsets of the training documents
(``data.real_fraction``, ``generate_fraction``), apart from the validation split's, so a
subset is not correlated with the held-out documents."""


def in_subset(source_id: str, fraction: float) -> bool:
    """Whether the document ``source_id`` is in the nested subset of share ``fraction``:
    a document kept at ``f`` is kept at every larger ``f``."""
    return split_unit(source_id, SUBSET_HASH_SEED) < fraction


def split_of(source_id: str, validation_fraction: float, seed: int) -> Split:
    """``"validation"`` when the document's hash unit is below ``validation_fraction``."""
    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError(
            f"validation_fraction must be in [0, 1), got {validation_fraction}; use e.g. 0.05 "
            "to hold out 5% of the source documents (0 disables the validation split)."
        )
    return "validation" if split_unit(source_id, seed) < validation_fraction else "train"


__all__ = ["SUBSET_HASH_SEED", "Split", "SplitConfig", "in_subset", "split_of", "split_unit"]
