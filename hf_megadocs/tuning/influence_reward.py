"""The influence reward inside a tuning run: a reachable length floor and a scored share.

SynPro scores an output shorter than 500 characters as its source (reward 0). With short
completions (the cpu profile's 96 tokens hold about 400 characters) that floor would make
almost every reward 0 without a word in the logs. So:

- the floor is checked against what the completion cap can hold, estimated as
  ``max_completion_length`` × the generator tokenizer's characters per token on the run's
  own source documents: an unset floor becomes SynPro's 500 or half of that capacity,
  whichever is lower (logged when lowered); an explicit floor above the capacity is refused;
- :class:`InfluenceReward` counts the samples that got a real influence score (long enough
  and scorable), and :class:`InfluenceShareCallback` writes their share into each logged
  step (``influence/scored_share``, in ``metrics.jsonl``) and warns when it is under half.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

from transformers import TrainerCallback

from hf_megadocs.tuning.influence import SYNPRO_MIN_OUTPUT_CHARS

logger = logging.getLogger(__name__)

MAX_CHARS_PER_TOKEN = 8.0
"""A bound no subword tokenizer reaches on prose (English BPE gives about 4): a floor above
``max_completion_length`` × this is unreachable whatever the tokenizer (checked before any
model loads)."""
FLOOR_SHARE = 0.5
"""An unset floor is at most this share of what the completion cap holds."""
WARN_BELOW = 0.5
"""Share of samples with a real influence score under which each logged step warns."""


def chars_per_token(tokenizer: Any, texts: Sequence[str]) -> float:
    """Characters per token of ``texts`` under ``tokenizer`` (all texts together)."""
    chars = sum(len(t) for t in texts)
    tokens = sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)
    if not chars or not tokens:
        raise ValueError("no text to measure characters per token on.")
    return chars / tokens


def unreachable_floor_message(floor: int, max_completion_length: int, per_token: float) -> str:
    """The error for a floor that completions of ``max_completion_length`` tokens cannot reach."""
    capacity = int(max_completion_length * per_token)
    return (
        f"InfluenceConfig.min_output_chars={floor} cannot be reached: completions are capped "
        f"at max_completion_length={max_completion_length} tokens, about {capacity} characters "
        f"at {per_token:.2f} characters per token, so every output would be scored as its "
        f"source (influence reward 0). Lower --influence.min_output_chars to at most "
        f"{int(capacity * FLOOR_SHARE)} (or leave it unset), or raise --max_completion_length "
        f"to at least {math.ceil(floor / per_token / FLOOR_SHARE)}."
    )


def resolve_min_output_chars(
    requested: int | None, max_completion_length: int, per_token: float
) -> int:
    """The output floor of the influence reward for this completion cap (see the module)."""
    capacity = max_completion_length * per_token
    if requested is not None:
        if requested > capacity:
            raise ValueError(unreachable_floor_message(requested, max_completion_length, per_token))
        return requested
    return min(SYNPRO_MIN_OUTPUT_CHARS, int(capacity * FLOOR_SHARE))


MEASURED_SOURCES = 64
"""Source documents the characters per token are measured on."""


def output_floor(config: Any, tokenizer: Any, sources: Sequence[str]) -> int:
    """The output floor of a tuning run (a :class:`~hf_megadocs.tuning.config.TuneConfig`):
    its completion cap against the generator tokenizer's characters per token on (up to
    :data:`MEASURED_SOURCES` of) its source documents."""
    per_token = chars_per_token(tokenizer, list(sources[:MEASURED_SOURCES]))
    requested, cap = config.influence.min_output_chars, config.max_completion_length
    floor = resolve_min_output_chars(requested, cap, per_token)
    lowered = requested is None and floor < SYNPRO_MIN_OUTPUT_CHARS
    logger.info(
        "influence reward: completions of %d tokens hold about %d characters (%.2f per token "
        "on the sources); outputs shorter than %d characters%s are scored as their source "
        "(reward 0)%s",
        cap, int(cap * per_token), per_token, floor,
        f" (not SynPro's {SYNPRO_MIN_OUTPUT_CHARS}: over half of what the cap holds)"
        if lowered
        else "",
        "; --influence.min_output_chars chooses another floor" if lowered else "",
    )  # fmt: skip
    return floor


class InfluenceReward:
    """An influence scorer with this run's output floor, counting the samples it really
    scored (``reward`` has the scorer's signature, so :class:`Rewards` takes it in its place)."""

    def __init__(self, scorer: Any, min_output_chars: int) -> None:
        self.scorer = scorer
        self.min_output_chars = min_output_chars
        self.scored = 0
        self.samples = 0
        self.total_scored = 0
        self.total_samples = 0

    def reward(self, outputs: list[str], sources: list[str]) -> list[float | None]:
        """The scorer's rewards; a sample counts as scored when long enough and scorable."""
        rewards = self.scorer.reward(outputs, sources, self.min_output_chars)
        real = sum(
            len(out) >= self.min_output_chars and value is not None
            for out, value in zip(outputs, rewards, strict=True)
        )
        self.scored += real
        self.samples += len(outputs)
        self.total_scored += real
        self.total_samples += len(outputs)
        return rewards

    def take_window(self) -> tuple[int, int]:
        """(scored, samples) since the last call, and start a new window."""
        window = (self.scored, self.samples)
        self.scored = self.samples = 0
        return window

    @property
    def totals(self) -> dict[str, Any]:
        share = self.total_scored / self.total_samples if self.total_samples else None
        return {
            "scored": self.total_scored,
            "samples": self.total_samples,
            "scored_share": share,
            "min_output_chars": self.min_output_chars,
        }


class InfluenceShareCallback(TrainerCallback):
    """Adds ``influence/scored_share`` (and the counts) to each logged step, warning when
    under :data:`WARN_BELOW`; put it before the callback that writes the logs."""

    def __init__(self, reward: InfluenceReward) -> None:
        self.reward = reward

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **_: Any):
        if logs is None or "reward" not in logs:  # a training step's line, not the summary
            return
        scored, samples = self.reward.take_window()
        if not samples:
            return
        share = scored / samples
        logs.update(
            {"influence/scored": scored, "influence/samples": samples,
             "influence/scored_share": share}
        )  # fmt: skip
        if share < WARN_BELOW:
            logger.warning(
                "step %d: only %d of %d samples (%.0f%%) got a real influence score; the "
                "rest are shorter than %d characters or unscorable and get 0. Raise "
                "--max_completion_length or lower --influence.min_output_chars.",
                state.global_step, scored, samples, 100 * share, self.reward.min_output_chars,
            )  # fmt: skip


__all__ = [
    "MAX_CHARS_PER_TOKEN",
    "InfluenceReward",
    "InfluenceShareCallback",
    "chars_per_token",
    "output_floor",
    "resolve_min_output_chars",
    "unreachable_floor_message",
]
