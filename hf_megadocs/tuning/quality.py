"""A heuristic document-quality score in [0, 1] for the quality-delta reward.

SynPro scores quality with a 1.5B rater model; none ships in a wheel, so this local
default averages Gopher- and C4-style web-text rules (each passed or failed, a few graded)
that a degenerate rewrite fails: too short, repetitive lines or n-grams, non-words,
symbols, unfinished lines, no function words. Hand-written because the rule sets that
exist (datatrove's filters) are filters, not scores, and would add a dependency.
"""

from __future__ import annotations

import re
from collections import Counter

_WORD = re.compile(r"\w+(?:[’'-]\w+)*", re.UNICODE)
_STOP_WORDS = frozenset("the be to of and that have with".split())
"""Gopher's rule: real English prose contains at least two of these."""


def quality_score(text: str) -> float:
    """The share of quality rules ``text`` passes (0 for empty text)."""
    words = _WORD.findall(text)
    if not words:
        return 0.0
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    lowered = [w.lower() for w in words]
    mean_length = sum(map(len, words)) / len(words)
    symbols = text.count("#") + text.count("...") + text.count("…")
    checks = [
        min(1.0, len(words) / 50),  # at least 50 words (graded below that)
        3 <= mean_length <= 10,
        symbols / len(words) < 0.1,
        sum(any(c.isalpha() for c in w) for w in words) / len(words) >= 0.8,
        len(_STOP_WORDS.intersection(lowered)) >= 2,
        sum(line.endswith(("...", "…")) for line in lines) / len(lines) <= 0.3,
        1 - _duplicate_share(lines) >= 0.7,
        1 - _duplicate_ngram_share(lowered, 5) >= 0.85,
        sum(line.endswith((".", "!", "?", '"', ":", ")")) for line in lines) / len(lines) >= 0.5,
    ]
    return sum(float(c) for c in checks) / len(checks)


def _duplicate_share(lines: list[str]) -> float:
    """Share of characters in lines that occur more than once."""
    counts = Counter(lines)
    total = sum(map(len, lines))
    return sum(len(line) for line in lines if counts[line] > 1) / total if total else 0.0


def _duplicate_ngram_share(words: list[str], n: int) -> float:
    """Share of word n-grams that repeat an earlier one (repetition loops)."""
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


__all__ = ["quality_score"]
