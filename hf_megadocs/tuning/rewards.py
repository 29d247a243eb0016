"""Reward functions for generator tuning, each with TRL's reward signature.

A reward is called as ``reward(prompts=..., completions=..., **columns)`` with one list
entry per sampled completion; the dataset's columns arrive as keyword lists (here
``source``: the document the prompt was rendered from). It returns one float per
completion, or None where it cannot score one (TRL then leaves it out of the sum).

- ``length``: 1 if the output is at most ``max_length_ratio`` × the source (characters);
- ``format``: 1 if the output has the expected form exactly once (rephrase: no repeated
  paragraph or lead-in, i.e. no loop; reformat: 1..``max_entries`` well-formed entries,
  no repeated topic);
- ``faithfulness``: rephrase: 1 if the BERTScore F1 with the source (over the embedded
  encoder), rescaled against unrelated pairs, exceeds ``faithfulness_threshold`` and most
  of the output's names and numbers occur in the source
  (:mod:`hf_megadocs.tuning.faithfulness`); reformat: the fraction of entries the source
  supports, both semantically (an embedding-similar source sentence) and lexically (their
  numbers and most content words occur in the source);
- ``structure`` (rephrase): how well the output keeps the source's paragraphs, lists,
  code blocks, tables and headings, graded in [0, 1] (:mod:`hf_megadocs.tuning.structure`);
- ``quality``: heuristic quality of the output minus that of the source;
- ``influence``: data influence on the model being pre-trained
  (:mod:`hf_megadocs.tuning.influence`), output minus source;
- ``judge_faithfulness`` / ``judge_structure`` / ``judge_quality``: the same judgements
  by an LLM behind an OpenAI-compatible endpoint (:mod:`hf_megadocs.tuning.judge`), for
  users with a GPU judge.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from hf_megadocs.corpora.assembly import parse_reformat
from hf_megadocs.generation.cleaning import clean_text
from hf_megadocs.tuning.faithfulness import (
    F1_BASELINE,
    FACT_SUPPORT,
    RESCALED_THRESHOLD,
    fact_support,
    faithfulness_f1,
    rescale,
)
from hf_megadocs.tuning.quality import quality_score
from hf_megadocs.tuning.structure import structure_score

logger = logging.getLogger(__name__)

Operation = Literal["rephrase", "reformat"]
RewardFunc = Callable[..., list[float | None]]

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_CONTENT_WORD = re.compile(r"[^\W\d_]{4,}", re.UNICODE)
"""Words of 4+ letters: a cheap stand-in for content words (skips most function words)."""


@dataclass(kw_only=True)
class RewardSettings:
    """Thresholds of the built-in rewards (the paper's where it gives one)."""

    max_length_ratio: float = 1.25
    """``length``: the output may be at most this many times the source's characters."""
    max_entries: int = 8
    """``format`` for reformat: at most this many Topic / Content entries."""
    faithfulness_baseline: float = F1_BASELINE
    """``faithfulness`` for rephrase: the encoder's mean F1 on unrelated pairs; F1 is
    rescaled ``(f1 - b) / (1 - b)`` (measured by ``benchmarks/bench_faithfulness.py``)."""
    faithfulness_threshold: float = RESCALED_THRESHOLD
    """``faithfulness`` for rephrase: the *rescaled* F1 an output must exceed (chosen on
    the check set of :mod:`hf_megadocs.tuning.faithfulness_checks`)."""
    fact_support: float = FACT_SUPPORT
    """``faithfulness`` for rephrase: share of the output's names and numbers that must
    occur in the source (0 turns the check off)."""
    entry_similarity: float = 0.5
    """``faithfulness`` for reformat: cosine similarity an entry needs to its closest
    source sentence."""
    entry_lexical_support: float = 0.6
    """``faithfulness`` for reformat: share of an entry's content words found in the source
    (and every number it states must be found)."""
    lead_in: str | None = None
    """``format``: a lead-in line the prompt asks for (a paper's template has one); when
    set it must occur exactly once and only the text after it is scored."""
    min_repeat_chars: int = 40
    """``format`` for rephrase: paragraphs at least this long may not repeat."""

    def __post_init__(self) -> None:
        if not 0 <= self.faithfulness_baseline < 1:
            raise ValueError(
                "RewardSettings.faithfulness_baseline must be in [0, 1) (the encoder's mean "
                f"F1 on unrelated pairs), got {self.faithfulness_baseline}."
            )
        if not 0 <= self.fact_support <= 1:
            raise ValueError(
                f"RewardSettings.fact_support must be in [0, 1], got {self.fact_support}."
            )


def raw_completion(completion: Any) -> str:
    """The generated text of a TRL completion: a string or a list of chat messages."""
    if completion is None:
        return ""
    if isinstance(completion, str):
        return completion
    return "".join(m.get("content") or "" for m in completion if m.get("role") != "user")


def completion_text(completion: Any, lead_in: str | None = None) -> str:
    """A completion's text cut after ``lead_in`` (when the prompt asks for one) and
    cleaned like stored generations."""
    text = raw_completion(completion)
    if lead_in and lead_in in text:
        text = text.split(lead_in, 1)[1]
    return clean_text(text)[0]


def _key(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


@dataclass
class Rewards:
    """The reward functions of one tuning run, built lazily (the encoder loads on first use)."""

    operation: Operation
    settings: RewardSettings = field(default_factory=RewardSettings)
    influence: Any | None = None
    """An :class:`~hf_megadocs.tuning.influence.InfluenceScorer`, needed by ``influence``."""
    judge: Any | None = None
    """An :class:`~hf_megadocs.tuning.judge.EndpointJudge`, needed by the ``judge_*`` rewards."""
    _encoder: Any = None
    _source_quality: dict[str, float] = field(default_factory=dict)

    @property
    def encoder(self) -> Any:
        if self._encoder is None:
            from hf_megadocs.tuning.encoder import TextEncoder

            self._encoder = TextEncoder()
        return self._encoder

    def _texts(self, completions: Sequence[Any]) -> list[str]:
        return [completion_text(c, self.settings.lead_in) for c in completions]

    # ------------------------------------------------------------------ the rewards

    def length(
        self, completions: Sequence[Any], source: Sequence[str], **_: Any
    ) -> list[float | None]:
        limit = self.settings.max_length_ratio
        return [
            float(0 < len(text) <= limit * len(src))
            for text, src in zip(self._texts(completions), source, strict=True)
        ]

    def format(self, completions: Sequence[Any], **_: Any) -> list[float | None]:
        lead_in = self.settings.lead_in
        scores: list[float | None] = []
        for completion in completions:
            if lead_in and raw_completion(completion).count(lead_in) != 1:
                scores.append(0.0)
                continue
            text = completion_text(completion, lead_in)
            scores.append(float(self._well_formed(text)))
        return scores

    def _well_formed(self, text: str) -> bool:
        if not text.strip():
            return False
        if self.operation == "reformat":
            entries = parse_reformat(text, max_entries=self.settings.max_entries)
            if not entries:
                return False
            topics = [topic.casefold() for topic, _ in entries]
            return len(set(topics)) == len(topics)
        paragraphs = [
            p.strip() for p in text.split("\n") if len(p.strip()) >= self.settings.min_repeat_chars
        ]
        return len(set(paragraphs)) == len(paragraphs)

    def faithfulness(
        self, completions: Sequence[Any], source: Sequence[str], **_: Any
    ) -> list[float | None]:
        texts = self._texts(completions)
        if self.operation == "rephrase":
            scorable = [i for i, text in enumerate(texts) if text]
            f1 = faithfulness_f1(
                self.encoder, [texts[i] for i in scorable], [source[i] for i in scorable]
            )
            settings = self.settings
            scores: list[float | None] = [0.0] * len(texts)
            for i, value in zip(scorable, f1, strict=True):
                scores[i] = float(
                    rescale(value, settings.faithfulness_baseline) > settings.faithfulness_threshold
                    and fact_support(texts[i], source[i]) >= settings.fact_support
                )
            return scores
        return [self._supported_share(text, src) for text, src in zip(texts, source, strict=True)]

    def _supported_share(self, text: str, source: str) -> float:
        """Share of ``text``'s reformat entries that ``source`` supports (0 if none parse)."""
        entries = parse_reformat(text, max_entries=self.settings.max_entries)
        sentences = [s for s in _SENTENCE_END.split(source) if s.strip()]
        if not entries or not sentences:
            return 0.0
        contents = [content for _, content in entries]
        vectors = self.encoder.sentence_embeddings(contents + sentences)
        similarity = vectors[: len(contents)] @ vectors[len(contents) :].T
        best = similarity.max(dim=1).values.tolist()
        source_words = {w.casefold() for w in _CONTENT_WORD.findall(source)}
        source_numbers = set(_NUMBER.findall(source))
        supported = 0
        for content, closeness in zip(contents, best, strict=True):
            words = [w.casefold() for w in _CONTENT_WORD.findall(content)]
            lexical = sum(w in source_words for w in words) / len(words) if words else 0.0
            numbers_found = set(_NUMBER.findall(content)) <= source_numbers
            supported += (
                closeness >= self.settings.entry_similarity
                and lexical >= self.settings.entry_lexical_support
                and numbers_found
            )
        return supported / len(entries)

    def structure(
        self, completions: Sequence[Any], source: Sequence[str], **_: Any
    ) -> list[float | None]:
        return [
            structure_score(text, src)
            for text, src in zip(self._texts(completions), source, strict=True)
        ]

    def quality(
        self, completions: Sequence[Any], source: Sequence[str], **_: Any
    ) -> list[float | None]:
        scores: list[float | None] = []
        for text, src in zip(self._texts(completions), source, strict=True):
            key = _key(src)
            if key not in self._source_quality:  # the source's score once per document
                self._source_quality[key] = quality_score(src)
            scores.append(quality_score(text) - self._source_quality[key])
        return scores

    def influence_delta(
        self, completions: Sequence[Any], source: Sequence[str], **_: Any
    ) -> list[float | None]:
        if self.influence is None:
            raise ValueError(
                "the influence reward needs an influence scorer: set TuneConfig.influence "
                "(a checkpoint of this project's trainer and a reference set)."
            )
        return list(self.influence.reward(self._texts(completions), list(source)))

    def _endpoint(self) -> Any:
        if self.judge is None:
            raise ValueError(
                "the judge_* rewards need an LLM judge endpoint: set TuneConfig.judge.base_url "
                "(e.g. http://127.0.0.1:8000/v1 of 'vllm serve <judge model>')."
            )
        return self.judge

    def judge_faithfulness(
        self, completions: Sequence[Any], source: Sequence[str], **_: Any
    ) -> list[float | None]:
        judge, texts = self._endpoint(), self._texts(completions)
        if self.operation == "rephrase":
            return judge.rephrase_faithfulness(texts, list(source))
        limit = self.settings.max_entries
        return judge.entry_faithfulness([parse_reformat(t, max_entries=limit) for t in texts],
                                        list(source))  # fmt: skip

    def judge_structure(
        self, completions: Sequence[Any], source: Sequence[str], **_: Any
    ) -> list[float | None]:
        return self._endpoint().rephrase_structure(self._texts(completions), list(source))

    def judge_quality(
        self, completions: Sequence[Any], source: Sequence[str], **_: Any
    ) -> list[float | None]:
        return self._endpoint().quality_delta(self._texts(completions), list(source))

    def functions(self, names: Sequence[str]) -> list[RewardFunc]:
        """The reward callables for ``names`` (each named as TRL logs it)."""
        table = {
            "length": self.length,
            "format": self.format,
            "faithfulness": self.faithfulness,
            "quality": self.quality,
            "influence": self.influence_delta,
            "judge_faithfulness": self.judge_faithfulness,
            "judge_quality": self.judge_quality,
            "structure": self.structure,
            "judge_structure": self.judge_structure,
        }
        unknown = [n for n in names if n not in table]
        if unknown:
            raise ValueError(f"unknown reward(s) {unknown}; valid rewards: {sorted(table)}.")
        misplaced = [n for n in names if n in REPHRASE_ONLY and self.operation != "rephrase"]
        if misplaced:
            raise ValueError(
                f"the reward(s) {misplaced} score a rephrase's block structure; a "
                f"{self.operation} output changes the structure on purpose: drop them."
            )
        return [_named(table[n], n) for n in names]


REWARD_NAMES = (
    "length",
    "format",
    "faithfulness",
    "quality",
    "influence",
    "judge_faithfulness",
    "judge_quality",
    "structure",
    "judge_structure",
)
REPHRASE_ONLY = ("structure", "judge_structure")
"""Rewards that only make sense for the rephrase operation."""


def drop_rephrase_only(operation: str, rewards: dict[str, float]) -> dict[str, float]:
    """``rewards`` without the rephrase-only ones when ``operation`` is not rephrase (e.g. a
    rounds template's rewards reused for its reformat run), each drop logged."""
    if operation == "rephrase":
        return rewards
    dropped = [name for name in rewards if name in REPHRASE_ONLY]
    if dropped:
        logger.warning(
            "left the reward(s) %s out of this %s run: they score a rephrase's block "
            "structure, which %s changes on purpose",
            dropped, operation, operation,
        )  # fmt: skip
    return {name: weight for name, weight in rewards.items() if name not in REPHRASE_ONLY}


def _named(method: Callable[..., list[float | None]], name: str) -> RewardFunc:
    def reward(prompts: Any = None, completions: Any = None, **columns: Any) -> list[float | None]:
        return method(completions=completions, **columns)

    reward.__name__ = reward.__qualname__ = name
    return reward


__all__ = [
    "REPHRASE_ONLY",
    "REWARD_NAMES",
    "RewardSettings",
    "Rewards",
    "completion_text",
    "drop_rephrase_only",
    "raw_completion",
]
