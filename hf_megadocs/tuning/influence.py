"""Data influence of a text on the model being pre-trained (SynPro's model-aware reward).

From a checkpoint θ of this project's trainer, θ′ is θ after ``reference_steps`` optimizer
steps on a reference task (:mod:`hf_megadocs.tuning.reference_set`: prompt/answer examples
with the loss on the answers, or plain text), kept apart from everything the run evaluates
on. A text's influence is how much more θ′ than θ predicts it::

    influence(t) = CE_θ(t) − CE_θ′(t)

with CE the mean token cross-entropy over the first ``length`` tokens of ``t``, masked so a
text's score does not depend on what else is in its batch (SynPro's own scorer averages
over padding). ``length`` is the checkpoint's own training sequence length: θ′ trains on
rows of that length and texts are scored up to it, so the θ→θ′ change is not about
positions θ never saw (which would reward length). The reward of a rewrite is
influence(output) − influence(source); the source's value is computed once per document.
Outputs shorter than the floor (:mod:`hf_megadocs.tuning.influence_reward`) get 0, as if
the source had been kept.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hf_megadocs.tuning.reference_set import (
    REFERENCE_HELP,
    ReferenceConfig,
    collate,
    drop_evaluation_overlap,
    load_reference,
    reference_rows,
    refuse_evaluated_source,
)

logger = logging.getLogger(__name__)

SYNPRO_MIN_OUTPUT_CHARS = 500
"""SynPro's floor: a shorter extracted output is scored as its source (reward 0)."""


@dataclass(kw_only=True)
class InfluenceConfig:
    """Where θ comes from, the reference task that makes θ′, and how texts are scored."""

    checkpoint: str | None = None
    """θ: a run folder of ``recipes/train.py`` (its latest checkpoint) or one
    ``checkpoints/step_<N>`` folder; None = no influence reward."""
    reference: ReferenceConfig = field(default_factory=ReferenceConfig)
    """The reference task (prompt/answer records, loss on the answers; or plain text). No
    default ships: it is required once ``checkpoint`` is set, and must not overlap what the
    run evaluates on (the embedded corpora are refused; overlapping items are dropped)."""
    reference_steps: int = 100
    """Optimizer steps from θ to θ′ (the paper's 100)."""
    learning_rate: float = 1e-4
    """Constant learning rate of those steps, after ``warmup_steps`` linear warm-up."""
    warmup_steps: int = 10
    batch_size: int = 8
    """Reference rows per step, and texts per scoring batch."""
    max_tokens: int | None = None
    """Tokens scored per text and the length of a reference row; None = the checkpoint's
    training sequence length (a larger value is lowered to it, with a warning)."""
    min_output_chars: int | None = None
    """Outputs shorter than this score 0 (the source is kept instead); None = SynPro's 500,
    lowered to half of what the tuning run's completion cap can hold (an explicit value the
    cap cannot reach is refused)."""
    keep_optimizer_state: bool = True
    """Start θ′'s AdamW from the checkpoint's optimizer state (as SynPro does) when saved."""
    device: str | None = None
    """"cpu", "cuda", …; None picks CUDA when available."""

    @property
    def enabled(self) -> bool:
        return self.checkpoint is not None

    def __post_init__(self) -> None:
        for name in ("reference_steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"InfluenceConfig.{name} must be >= 1, got {getattr(self, name)}.")
        for name, least in (("max_tokens", 2), ("min_output_chars", 0)):
            value = getattr(self, name)
            if value is not None and value < least:
                raise ValueError(f"InfluenceConfig.{name} must be >= {least} or None, got {value}.")
        if self.learning_rate <= 0:
            raise ValueError(
                f"InfluenceConfig.learning_rate must be > 0, got {self.learning_rate}."
            )
        if self.enabled and self.reference.source is None:
            raise ValueError(f"the influence reward has no reference set; {REFERENCE_HELP}")


def resolve_checkpoint_dir(path: str | Path) -> Path:
    """``path`` if it is a checkpoint, else the run's latest checkpoint; clear errors."""
    from hf_megadocs.training.checkpoint import checkpoint_of

    return checkpoint_of(path, "influence checkpoint")


def context_length(
    trained_seq_len: int | None, max_positions: int | None, requested: int | None
) -> int:
    """The tokens per text θ and θ′ see: the checkpoint's training sequence length (capped
    by its position limit), or ``requested`` when shorter. A longer request is lowered, with
    a warning: past the trained length the θ→θ′ change measures position extrapolation."""
    own = trained_seq_len or max_positions
    if own is None:
        raise ValueError(
            "the checkpoint's config.json gives neither data.seq_len nor "
            "max_position_embeddings; set InfluenceConfig.max_tokens."
        )
    if max_positions:
        own = min(own, max_positions)
    if requested is None:
        return own
    if requested > own:
        logger.warning(
            "InfluenceConfig.max_tokens=%d is past the checkpoint's trained length %d: "
            "scoring and training θ′ at %d tokens instead",
            requested,
            own,
            own,
        )
        return own
    return requested


def _text_key(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


class InfluenceScorer:
    """θ and θ′ in memory, scoring texts with masked mean cross-entropy."""

    def __init__(self, config: InfluenceConfig) -> None:
        import torch

        if config.checkpoint is None:
            raise ValueError("InfluenceConfig.checkpoint is unset: name a checkpoint to score on.")
        self.config = config
        self.checkpoint = resolve_checkpoint_dir(config.checkpoint)
        from hf_megadocs.training.config import TrainConfig

        self.run_info = json.loads((self.checkpoint / "config.json").read_text())
        self.train_config = TrainConfig.from_dict(self.run_info)
        data = self.train_config.data
        refuse_evaluated_source(config.reference, [data.real_path, data.long_context_path])
        self.device = torch.device(
            config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        )
        self.tokenizer, self.model = _load_model(self.checkpoint, self.run_info, self.train_config)
        self.model.to(self.device).eval()
        self.length = context_length(
            data.seq_len, getattr(self.model.config, "max_position_embeddings", None),
            config.max_tokens,
        )  # fmt: skip
        self.reference_counts: dict[str, Any] = {}
        self.tuned = self._tune_on_reference(self._reference_rows())
        self._source_influence: dict[str, float] = {}

    # ------------------------------------------------------------------ θ′

    def _reference_rows(self) -> list[tuple[list[int], list[int]]]:
        reference = load_reference(self.config.reference)
        read = len(reference.examples)
        if not read:
            raise ValueError(
                f"the influence reference set {self.config.reference.source!r} has no usable "
                f"examples ({dict(reference.counts)}); {REFERENCE_HELP}"
            )
        # the reference task must be distinct from everything the run evaluates on
        reference = drop_evaluation_overlap(reference, _evaluation_texts(self.train_config))
        counts = reference.counts
        if not reference.examples:
            raise ValueError(
                f"all {read} influence reference examples overlap the run's evaluation "
                "documents (validation or long-context); the reference set must be distinct "
                f"from them: {REFERENCE_HELP}"
            )
        if counts["in_evaluation"]:
            logger.warning(
                "influence reference: dropped %d of %d examples that overlap the run's "
                "evaluation documents", counts["in_evaluation"], read,
            )  # fmt: skip
        eos = self.tokenizer.eos_token_id
        pairs = [(self._ids(e.prompt) if e.prompt else [], self._ids(e.answer))
                 for e in reference.examples]  # fmt: skip
        rows = reference_rows(reference.kind, pairs, self.length, eos, counts)
        if not rows:
            raise ValueError(
                f"the influence reference set gives no training rows of up to {self.length} "
                f"tokens ({dict(counts)}); use shorter examples or more text."
            )
        if counts["too_long"]:
            logger.warning(
                "influence reference: dropped %d examples longer than the checkpoint's %d "
                "tokens", counts["too_long"], self.length,
            )  # fmt: skip
        logger.info(
            "influence reference %r: %d %s examples -> %d rows of up to %d tokens, loss on %s",
            self.config.reference.source, len(reference.examples),
            "prompt/answer" if reference.kind == "prompt_answer" else "plain-text",
            len(rows), self.length,
            "the answers only" if reference.kind == "prompt_answer" else "every token (plain text)",
        )  # fmt: skip
        self.reference_counts = {
            "kind": reference.kind, **dict(counts), "examples": len(reference.examples),
            "rows": len(rows), "length": self.length,
        }  # fmt: skip
        return rows

    def _tune_on_reference(self, rows: list[tuple[list[int], list[int]]]) -> Any:
        """θ′: a copy of θ after ``reference_steps`` AdamW steps on the reference rows."""
        import torch

        config = self.config
        pad = self.tokenizer.pad_token_id
        pad = self.tokenizer.eos_token_id if pad is None else pad
        tuned = copy.deepcopy(self.model).train()
        optimizer = self._optimizer(tuned)
        base_lrs = [config.learning_rate for _ in optimizer.param_groups]
        generator = torch.Generator().manual_seed(0)
        for step in range(config.reference_steps):
            scale = min(1.0, (step + 1) / config.warmup_steps) if config.warmup_steps else 1.0
            for group, lr in zip(optimizer.param_groups, base_lrs, strict=True):
                group["lr"] = lr * scale
            picks = torch.randint(len(rows), (config.batch_size,), generator=generator)
            batch = collate([rows[i] for i in picks.tolist()], pad)
            loss = reference_loss(tuned, {k: v.to(self.device) for k, v in batch.items()})
            loss.backward()
            torch.nn.utils.clip_grad_norm_(tuned.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        logger.info("θ′: %d steps (last loss %.4f)", config.reference_steps, loss.item())
        return tuned.eval()

    def _optimizer(self, model: Any) -> Any:
        import torch

        from hf_megadocs.training.optim import build_optimizer

        optimizer = build_optimizer(model, self.train_config.optim)
        state = self.checkpoint / "optimizer.bin"
        if self.config.keep_optimizer_state and state.is_file():
            optimizer.load_state_dict(
                torch.load(state, map_location=self.device, weights_only=True)
            )
        elif self.config.keep_optimizer_state:
            logger.warning("no optimizer state in %s: θ′ starts AdamW afresh", self.checkpoint)
        return optimizer

    # ------------------------------------------------------------------ scoring

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]

    def cross_entropy(self, model: Any, texts: list[str]) -> list[float]:
        """Per text, the mean next-token cross-entropy over its first ``length`` tokens."""
        import torch

        rows = [self._ids(t)[: self.length] for t in texts]
        scores = [math.nan] * len(texts)
        scorable = [i for i, row in enumerate(rows) if len(row) >= 2]
        for start in range(0, len(scorable), self.config.batch_size):
            chunk = scorable[start : start + self.config.batch_size]
            width = max(len(rows[i]) for i in chunk)
            ids = torch.zeros(len(chunk), width, dtype=torch.long)
            mask = torch.zeros(len(chunk), width, dtype=torch.long)
            for row, i in enumerate(chunk):
                ids[row, : len(rows[i])] = torch.tensor(rows[i])
                mask[row, : len(rows[i])] = 1
            ids, mask = ids.to(self.device), mask.to(self.device)
            with torch.inference_mode():
                logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
            losses = torch.nn.functional.cross_entropy(
                logits.transpose(1, 2), ids[:, 1:], reduction="none"
            )
            valid = mask[:, 1:].float()
            means = (losses * valid).sum(dim=1) / valid.sum(dim=1)
            for row, i in enumerate(chunk):
                scores[i] = means[row].item()
        return scores

    def influence(self, texts: list[str]) -> list[float]:
        """CE_θ − CE_θ′ per text (NaN for a text of fewer than two tokens)."""
        before = self.cross_entropy(self.model, texts)
        after = self.cross_entropy(self.tuned, texts)
        return [b - a for b, a in zip(before, after, strict=True)]

    def reward(
        self, outputs: list[str], sources: list[str], min_output_chars: int | None = None
    ) -> list[float | None]:
        """influence(output) − influence(source) per pair: 0 for an output shorter than
        ``min_output_chars`` (default: the config's, else SynPro's 500), None where a text
        has too few tokens to score."""
        floor = min_output_chars
        if floor is None:
            floor = self.config.min_output_chars
        floor = SYNPRO_MIN_OUTPUT_CHARS if floor is None else floor
        missing = sorted({s for s in sources if _text_key(s) not in self._source_influence})
        for text, value in zip(missing, self.influence(missing), strict=True):
            self._source_influence[_text_key(text)] = value
        long_enough = [i for i, out in enumerate(outputs) if len(out) >= floor]
        values = self.influence([outputs[i] for i in long_enough])
        rewards: list[float | None] = [0.0] * len(outputs)
        for i, value in zip(long_enough, values, strict=True):
            delta = value - self._source_influence[_text_key(sources[i])]
            rewards[i] = None if math.isnan(delta) else delta
        return rewards


def reference_loss(model: Any, batch: dict[str, Any]) -> Any:
    """Mean next-token cross-entropy over the labelled tokens of ``batch`` (from
    :func:`~hf_megadocs.tuning.reference_set.collate`): prompts and padding do not count."""
    return model(**batch).loss


def _load_model(checkpoint: Path, run_info: dict[str, Any], train_config: Any) -> tuple[Any, Any]:
    """The trainer's tokenizer and model with the checkpoint's weights."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    from hf_megadocs.training.model import build_model

    weights = checkpoint / "model.safetensors"
    if not weights.is_file():
        raise ValueError(
            f"{checkpoint} has no model.safetensors; it is not a checkpoint of this "
            "project's trainer (recipes/train.py saves one with every checkpoint)."
        )
    tokenizer = AutoTokenizer.from_pretrained(run_info["tokenizer"])
    if len(tokenizer) != run_info.get("vocab_size", len(tokenizer)):
        raise ValueError(
            f"the tokenizer at {run_info['tokenizer']!r} has {len(tokenizer)} tokens but the "
            f"checkpoint was trained with {run_info['vocab_size']}; restore the run's tokenizer."
        )
    model = build_model(train_config.model, tokenizer, train_config.data.seq_len)
    try:
        model.load_state_dict(load_file(str(weights)), strict=True)
    except RuntimeError as error:  # shapes or names differ from the run's config.json
        raise ValueError(
            f"the weights in {weights} do not match the model its config.json describes "
            f"({str(error).splitlines()[0]}); pass a checkpoint of the same run."
        ) from None
    return tokenizer, model


def _evaluation_texts(train_config: Any) -> list[str]:
    """Every document the run evaluates on (validation and long-context)."""
    from hf_megadocs.training.data.streams import _long_context_split, real_training_split

    real_dd, _, validation, _ = real_training_split(train_config)
    texts = list(validation[train_config.data.text_column])
    long_split = _long_context_split(real_dd, train_config.data)
    if long_split is not None:
        texts += list(long_split[train_config.data.text_column])
    return texts


__all__ = [
    "SYNPRO_MIN_OUTPUT_CHARS",
    "InfluenceConfig",
    "InfluenceScorer",
    "context_length",
    "reference_loss",
    "resolve_checkpoint_dir",
]
