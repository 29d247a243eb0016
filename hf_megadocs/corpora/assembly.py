"""Pure assembly of corpus rows from a real document and its generations.

No I/O, no model, no hidden randomness: every function maps texts (or stored
:class:`~hf_megadocs.records.Generation` records) to an :class:`Assembled` text with
:class:`~hf_megadocs.records.Segment` offsets, so the golden tests run on hand-made strings.

Invariant: joining the ``real`` segments of a stitched or latent row gives back the real
document exactly (:func:`real_text`).

Latent-thought split points use a whitespace-token proxy (runs of non-space characters),
not the generator's tokenizer: it keeps this module dependency-free, and piece lengths only
need to be roughly equal.
"""

from __future__ import annotations

import bisect
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from hf_megadocs.records import Generation, Role, Segment

RealPosition = Literal["last", "first", "none"]
LatentSplitRule = Literal["equal_tokens", "sentences"]
LATENT_SPLIT_RULES: tuple[str, ...] = ("equal_tokens", "sentences")

GeneratedText = str | Generation
"""A generation as plain text, or a stored record (its ``text`` and ``key`` are used)."""

_WORD = re.compile(r"\S+")
# A sentence starts after ., ! or ? (plus closing quotes/brackets) and whitespace, or after
# a blank line; the match end is the first character of the next sentence.
_SENTENCE_BREAK = re.compile(r"(?:(?<=[.!?])[\"'\u201d\u2019)\]]*\s+|\n\s*\n\s*)(?=\S)")
_REFORMAT_LABEL = r"[ \t]*(?:[-*#>]+[ \t]*|\d+[.)][ \t]*)?(?:\*\*)?{label}(?:\*\*)?[ \t]*:(?:\*\*)?"
_TOPIC = re.compile(_REFORMAT_LABEL.format(label="Topic"), re.IGNORECASE)
_CONTENT = re.compile(_REFORMAT_LABEL.format(label="Content"), re.IGNORECASE)
# "Content:" later on a topic's own line: the one-line form "- Topic: … Content: …".
_INLINE_CONTENT = re.compile(r"[\s.,;|–—-]*(?:\*\*)?\bContent(?:\*\*)?[ \t]*:(?:\*\*)?", re.I)
MAX_REFORMAT_ENTRIES = 8
"""Entries a reformat output may hold (SynPro's cap); more make it malformed."""


@dataclass(frozen=True, slots=True)
class Assembled:
    """One assembled row: its text and role-tagged character spans."""

    text: str
    segments: tuple[Segment, ...]
    row_generations: int
    """Generations used in this row (rephrases, rationales or the one generation)."""


class _Parts:
    """Accumulates text parts and their segments."""

    def __init__(self) -> None:
        self.chunks: list[str] = []
        self.segments: list[Segment] = []
        self.length = 0
        self.generations = 0

    def add(self, text: str, role: Role, key: str | None = None) -> None:
        if not text:
            return
        self.segments.append(Segment(role, self.length, self.length + len(text), key))
        self.chunks.append(text)
        self.length += len(text)
        if role not in ("real", "separator"):
            self.generations += 1

    def build(self) -> Assembled:
        return Assembled("".join(self.chunks), tuple(self.segments), self.generations)


def _text_and_key(item: GeneratedText) -> tuple[str, str | None]:
    if isinstance(item, Generation):
        return item.text, item.key
    return item, None


def segments_text(assembled: Assembled, roles: Iterable[str]) -> str:
    """The concatenated text of the segments whose role is in ``roles``, in order."""
    wanted = set(roles)
    return "".join(assembled.text[s.start : s.end] for s in assembled.segments if s.role in wanted)


def real_text(assembled: Assembled) -> str:
    """The row with every non-real segment removed (the real document for stitched/latent)."""
    return segments_text(assembled, ("real",))


# --------------------------------------------------------------------------- real, simple


def assemble_real(doc: str) -> Assembled:
    """The real document as one ``real`` segment."""
    parts = _Parts()
    parts.add(doc, "real")
    return parts.build()


def assemble_generation(generation: GeneratedText, role: Role) -> Assembled:
    """One generation as its own row (qa, textbook, or one rephrase of simple rephrasing)."""
    text, key = _text_and_key(generation)
    parts = _Parts()
    parts.add(text, role, key)
    return parts.build()


def shuffled_order(num_rows: int, seed: int) -> list[int]:
    """A seeded permutation of ``range(num_rows)`` (the global shuffle of simple rows)."""
    order = list(range(num_rows))
    random.Random(seed).shuffle(order)
    return order


# --------------------------------------------------------------------------- stitched


def assemble_stitched(
    doc: str,
    rephrases: Sequence[GeneratedText],
    *,
    real_position: RealPosition = "last",
    separator: str = "\n\n",
) -> Assembled:
    """A stitched megadoc: rephrase_1 … rephrase_G and the real document, joined by
    ``separator`` (each occurrence is a ``separator`` segment the trainer turns into EOS).

    ``real_position``: "last" (the paper's best), "first", or "none" (no real doc inside).
    """
    if real_position not in ("last", "first", "none"):
        raise ValueError(f"real_position must be 'last', 'first' or 'none', got {real_position!r}.")
    items: list[tuple[str, Role, str | None]] = []
    for rephrase in rephrases:
        text, key = _text_and_key(rephrase)
        items.append((text, "rephrase", key))
    if real_position == "first":
        items.insert(0, (doc, "real", None))
    elif real_position == "last":
        items.append((doc, "real", None))
    parts = _Parts()
    for index, (text, role, key) in enumerate(items):
        if index:
            parts.add(separator, "separator")
        parts.add(text, role, key)
    return parts.build()


# --------------------------------------------------------------------------- latent


def _word_starts(text: str) -> list[int]:
    return [m.start() for m in _WORD.finditer(text)]


def latent_split_points(
    text: str, num_splits: int, rule: LatentSplitRule = "equal_tokens"
) -> list[int]:
    """Up to ``num_splits`` character offsets where ``text`` is split for latent thoughts.

    - ``equal_tokens``: pieces with (nearly) equal numbers of whitespace tokens, split at
      the start of a token;
    - ``sentences``: sentence (or paragraph) starts, chosen nearest to the equal-token
      targets.

    Fewer points come back when the document is too short (G is clamped: at most one
    point per token gap, or per sentence boundary); the caller counts that.
    """
    if num_splits < 1:
        raise ValueError(f"num_splits must be >= 1 (G), got {num_splits}.")
    if rule not in LATENT_SPLIT_RULES:
        raise ValueError(f"latent_split_rule must be one of {LATENT_SPLIT_RULES}, got {rule!r}.")
    starts = _word_starts(text)
    n = len(starts)
    if rule == "equal_tokens":
        g = min(num_splits, max(n - 1, 0))
        return [starts[round(i * n / (g + 1))] for i in range(1, g + 1)]
    candidates = sorted(
        {m.end() for m in _SENTENCE_BREAK.finditer(text) if 0 < m.end() < len(text)}
    )
    g = min(num_splits, len(candidates))
    word_index = [bisect.bisect_left(starts, c) for c in candidates]
    points: list[int] = []
    lo = 0
    for i in range(1, g + 1):
        target = i * n / (g + 1)
        hi = len(candidates) - (g - i)  # leave enough candidates for the remaining points
        best = min(range(lo, hi), key=lambda j: (abs(word_index[j] - target), j))
        points.append(candidates[best])
        lo = best + 1
    return points


def latent_fields(text: str, points: Sequence[int]) -> list[dict[str, str]]:
    """The ``rationale`` prompt fields for each split point: everything before the point
    (``prefix``) and the piece that follows it, up to the next point (``suffix``)."""
    bounds = list(points) + [len(text)]
    return [
        {"prefix": text[:start], "suffix": text[start:end]}
        for start, end in zip(bounds, bounds[1:])
    ]


def assemble_latent(
    doc: str,
    points: Sequence[int],
    rationales: Sequence[GeneratedText | None],
    *,
    open_delimiter: str = "<thought>",
    close_delimiter: str = "</thought>",
) -> Assembled:
    """A latent-thought megadoc: the real doc with ``open + rationale + close`` inserted at
    each split point (before the suffix). A ``None`` rationale (unusable) is left out."""
    if len(points) != len(rationales):
        raise ValueError(
            f"assemble_latent needs one rationale per split point, got {len(points)} points "
            f"and {len(rationales)} rationales."
        )
    if list(points) != sorted(set(points)) or (
        points and not 0 < points[0] <= points[-1] < len(doc)
    ):
        raise ValueError(
            f"split points must be increasing offsets inside the document, got {list(points)}."
        )
    parts = _Parts()
    previous = 0
    for point, rationale in zip(points, rationales):
        parts.add(doc[previous:point], "real")
        previous = point
        if rationale is None:
            continue
        text, key = _text_and_key(rationale)
        parts.add(f"{open_delimiter}{text}{close_delimiter}", "rationale", key)
    parts.add(doc[previous:], "real")
    return parts.build()


# --------------------------------------------------------------------------- reformat


def parse_reformat(
    text: str, max_entries: int | None = MAX_REFORMAT_ENTRIES
) -> list[tuple[str, str]] | None:
    """The ``(topic, content)`` entries of a reformat output, or None when it is malformed.

    Well-formed: after optional blank lines, the text is a sequence of entries, each a
    ``Topic:`` line followed by ``Content:`` text, or both on one line
    (``- Topic: … Content: …``); markdown bold, bullets or numbering on the labels are
    tolerated. Any other text, an empty topic or content, a label out of order, or more
    than ``max_entries`` entries makes the whole output malformed.
    """
    lines = _split_inline_entries(text.strip().splitlines())
    entries: list[tuple[str, str]] = []
    topic: str | None = None
    content: list[str] | None = None

    def close() -> bool:
        if topic is None:
            return True
        body = "\n".join(content or []).strip()
        if not topic or not body:
            return False
        entries.append((topic, body))
        return True

    for line in lines:
        topic_match = _TOPIC.match(line)
        content_match = _CONTENT.match(line)
        if topic_match:
            if content is None and topic is not None:  # two topics in a row
                return None
            if not close():
                return None
            topic, content = line[topic_match.end() :].strip().strip("*").strip(), None
        elif content_match:
            if topic is None or content is not None:
                return None
            content = [line[content_match.end() :].strip()]
        elif content is not None:
            content.append(line)
        elif line.strip():  # text outside an entry
            return None
    if topic is not None and content is None:
        return None
    if not close() or not entries:
        return None
    if max_entries is not None and len(entries) > max_entries:
        return None
    return entries


def _split_inline_entries(lines: list[str]) -> list[str]:
    """Lines with a ``Content:`` label after their ``Topic:`` label, split in two."""
    out = []
    for line in lines:
        topic = _TOPIC.match(line)
        inline = _INLINE_CONTENT.search(line, topic.end()) if topic else None
        if inline is None:
            out.append(line)
        else:
            out += [line[: inline.start()], "Content: " + line[inline.end() :].strip()]
    return out


def render_reformat(entries: Sequence[tuple[str, str]]) -> str:
    """The canonical text of reformat entries: ``Topic: …`` / ``Content: …``, blank-line separated."""
    return "\n\n".join(f"Topic: {topic}\nContent: {content}" for topic, content in entries)


def assemble_reformat(generation: GeneratedText) -> Assembled | None:
    """A reformat row in canonical form, or None when the output is malformed."""
    text, key = _text_and_key(generation)
    entries = parse_reformat(text)
    if entries is None:
        return None
    parts = _Parts()
    parts.add(render_reformat(entries), "reformat", key)
    return parts.build()


# --------------------------------------------------------------------------- rows


def make_row(
    assembled: Assembled,
    *,
    source_id: str,
    method: str,
    num_generations: int,
    generator: str,
    prompt_id: str,
    prompt_hash: str,
    seed: int,
) -> dict[str, Any]:
    """The builder's row: text plus lineage columns (segments as role/start/end structs).

    ``num_generations`` is the corpus's G, the same on every row; ``row_generations``
    counts the generations inside this row (1 for a simple rephrase, G for a megadoc).
    """
    return {
        "text": assembled.text,
        "source_id": source_id,
        "method": method,
        "num_generations": num_generations,
        "row_generations": assembled.row_generations,
        "segments": [{"role": s.role, "start": s.start, "end": s.end} for s in assembled.segments],
        "generator": generator,
        "prompt_id": prompt_id,
        "prompt_hash": prompt_hash,
        "seed": seed,
    }


__all__ = [
    "LATENT_SPLIT_RULES",
    "Assembled",
    "GeneratedText",
    "LatentSplitRule",
    "RealPosition",
    "assemble_generation",
    "assemble_latent",
    "assemble_real",
    "assemble_reformat",
    "assemble_stitched",
    "latent_fields",
    "latent_split_points",
    "make_row",
    "parse_reformat",
    "MAX_REFORMAT_ENTRIES",
    "real_text",
    "render_reformat",
    "segments_text",
    "shuffled_order",
]
