"""The calibrated rephrase faithfulness score: rescaled BERTScore F1 plus a fact check.

SynPro's rephrase reward is 1 when BERTScore F1 (deberta-large-mnli) with the source
exceeds 0.65. That number belongs to that model: raw cosine similarities of another
encoder sit on another scale. Over all-MiniLM-L6-v2's last layer, two *unrelated* news
articles already score F1 ≈ 0.35, and 0.65 passes word salad and cut-off rewrites.

So, as BERTScore's own baseline rescaling does, the F1 here is rescaled
``(f1 − b) / (1 − b)`` with ``b`` = :data:`F1_BASELINE`, the mean F1 of unrelated pairs
of a real corpus, so 0 means "as similar as two unrelated documents" and 1 "identical".
The threshold :data:`RESCALED_THRESHOLD` was chosen on the labelled check set of
:mod:`hf_megadocs.tuning.faithfulness_checks` (hand-written paraphrases of real passages
against shuffled, entity-swapped, truncated and unrelated texts). Both constants are
recomputed by ``benchmarks/bench_faithfulness.py``.

A rephrase is asked to drop boilerplate (menus, share buttons, footers), which plain F1
punishes as lost recall. :func:`faithfulness_f1` therefore takes recall over the source's
:func:`content_lines` only (C4-style: lines of five or more words that end a sentence),
and precision over the whole source and those lines.

Embedding similarity barely notices a swapped name or number (a swapped paraphrase
shares almost all its tokens with a faithful one), so the reward also asks that most of
the output's names and numbers occur in the source: :func:`fact_support`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

F1_BASELINE = 0.3468
"""Mean :func:`faithfulness_f1` (all-MiniLM-L6-v2, last layer, no idf) of 2,000 random
pairs of distinct articles of the embedded Lee corpus (``lee_background``: 293 distinct
news articles; ``random.Random(0)``), measured by
``benchmarks/bench_faithfulness.py --pairs 2000 --seed 0`` (standard deviation 0.077,
5th–95th percentile 0.237–0.477)."""

RESCALED_THRESHOLD = 0.73
"""A rephrase is faithful above this rescaled F1 (raw F1 ≈ 0.824 with :data:`F1_BASELINE`):
the midpoint, rounded, between the highest unfaithful (0.705, an entity-swapped text) and
the lowest faithful (0.749) score of the check set."""

FACT_SUPPORT = 0.8
"""A rephrase is faithful only if at least this share of its names and numbers occur in
the source (every faithful check paraphrase: ≥ 0.90; every entity-swapped one: ≤ 0.65)."""

_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_WORD = re.compile(r"[^\W_][\w'’-]*")
_NAME = re.compile(r"(?<!\n)(?<![.!?:]\s)(?<![.!?:]\s\")\b[A-Z][\w'’-]*")
"""A capitalised word not at the start of a sentence: a cheap stand-in for a name."""


_SENTENCE_END = (".", "!", "?", '"', "'", "”", "’", ")")
_BOILERPLATE = re.compile(
    r"cookie|javascript|privacy policy|terms of (?:use|service)|all rights reserved|"
    r"lorem ipsum|subscribe|sign up|log ?in\b",
    re.IGNORECASE,
)
_MIN_CONTENT_WORDS = 5


def content_lines(source: str) -> str:
    """``source``'s lines that read as content, C4-style: five or more words, ending like a
    sentence, no boilerplate phrase; the whole source when no line qualifies (a list, a
    table, code)."""
    kept = [
        line.strip()
        for line in source.splitlines()
        if len(line.split()) >= _MIN_CONTENT_WORDS
        and line.rstrip().endswith(_SENTENCE_END)
        and not _BOILERPLATE.search(line)
    ]
    return "\n".join(kept) if kept else source


def faithfulness_f1(encoder: Any, outputs: Sequence[str], sources: Sequence[str]) -> list[float]:
    """Per output, greedy-matching F1 against its source (raw, not rescaled): precision over
    the source's tokens and its content lines' tokens, recall over the content lines'.

    ``encoder`` is a :class:`~hf_megadocs.tuning.encoder.TextEncoder`; each distinct text
    is encoded once."""
    import torch

    from hf_megadocs.tuning.encoder import greedy_f1

    if len(outputs) != len(sources):
        raise ValueError(f"{len(outputs)} outputs for {len(sources)} sources")
    contents = [content_lines(s) for s in sources]
    unique = list(dict.fromkeys([*outputs, *sources, *contents]))
    embedded = dict(zip(unique, encoder.token_embeddings(unique), strict=True))
    scores = []
    for output, source, content in zip(outputs, sources, contents, strict=True):
        reference = embedded[source]
        if content != source:
            reference = torch.cat([reference, embedded[content]])
        scores.append(greedy_f1(embedded[output], reference, embedded[content]))
    return scores


def rescale(f1: float, baseline: float = F1_BASELINE) -> float:
    """BERTScore-style baseline rescaling: ``(f1 − baseline) / (1 − baseline)``."""
    if not 0 <= baseline < 1:
        raise ValueError(f"the F1 baseline must be in [0, 1), got {baseline}.")
    return (f1 - baseline) / (1 - baseline)


def _word(word: str) -> str:
    word = word.casefold().replace("’", "'")
    return word.removesuffix("'s")


def _facts(text: str) -> list[str]:
    text = text.strip()
    names = [_word(m.group()) for m in _NAME.finditer(text) if m.start() > 0]
    numbers = [n.replace(",", "") for n in _NUMBER.findall(text)]
    return names + numbers


def fact_support(output: str, source: str) -> float:
    """Share of ``output``'s names (capitalised words inside a sentence) and numbers that
    occur in ``source`` (1.0 when the output has none)."""
    facts = _facts(output)
    if not facts:
        return 1.0
    known = {_word(w) for w in _WORD.findall(source)}
    known |= {n.replace(",", "") for n in _NUMBER.findall(source)}
    return sum(fact in known for fact in facts) / len(facts)


def auc(positives: Sequence[float], negatives: Sequence[float]) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    if not positives or not negatives:
        raise ValueError("auc needs at least one positive and one negative score.")
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


def separating_threshold(positives: Sequence[float], negatives: Sequence[float]) -> float | None:
    """The midpoint between the highest negative and the lowest positive score, or None
    when they overlap (no threshold separates them)."""
    low, high = max(negatives), min(positives)
    return (low + high) / 2 if high > low else None


__all__ = [
    "F1_BASELINE",
    "FACT_SUPPORT",
    "RESCALED_THRESHOLD",
    "auc",
    "content_lines",
    "fact_support",
    "faithfulness_f1",
    "rescale",
    "separating_threshold",
]
