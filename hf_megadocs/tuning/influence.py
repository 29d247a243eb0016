"""Data influence of a text on the model being pre-trained (SynPro's model-aware reward).

From a checkpoint θ of this project's trainer, θ′ is θ after ``reference_steps`` optimizer
steps on a reference set (documents distinct from every evaluation split). A text's
influence is how much more θ′ than θ predicts it::

    influence(t) = CE_θ(t) − CE_θ′(t)

with CE the mean token cross-entropy over the first ``max_tokens`` tokens of ``t``, masked
so a text's score does not depend on what else is in its batch (SynPro's own scorer
averages over padding). The reward of a rewrite is influence(output) − influence(source);
the source's value is computed once per document. Outputs shorter than
``min_output_chars`` get 0, as if the source had been kept.
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

from hf_megadocs.generation.sources import SourceConfig, SourceStats, load_source

logger = logging.getLogger(__name__)


@dataclass(kw_only=True)
class InfluenceConfig:
    """Where θ comes from, the reference set that makes θ′, and how texts are scored."""

    checkpoint: str | None = None
    """θ: a run folder of ``recipes/train.py`` (its latest checkpoint) or one
    ``checkpoints/step_<N>`` folder; None = no influence reward."""
    reference: SourceConfig = field(
        default_factory=lambda: SourceConfig(source="embedded-long", max_docs=64)
    )
    """Reference documents (default: CPython's pydoc topics, unlike the news corpus the
    embedded runs evaluate on); refused if any is in the run's validation split."""
    reference_steps: int = 100
    """Optimizer steps from θ to θ′ (the paper's 100)."""
    learning_rate: float = 1e-4
    """Constant learning rate of those steps, after ``warmup_steps`` linear warm-up."""
    warmup_steps: int = 10
    batch_size: int = 8
    """Reference sequences per step."""
    max_tokens: int = 2048
    """Tokens scored per text, and the length of a reference training sequence."""
    min_output_chars: int = 500
    """Outputs shorter than this score 0 (the source is kept instead)."""
    keep_optimizer_state: bool = True
    """Start θ′'s AdamW from the checkpoint's optimizer state (as SynPro does) when saved."""
    device: str | None = None
    """"cpu", "cuda", …; None picks CUDA when available."""

    @property
    def enabled(self) -> bool:
        return self.checkpoint is not None

    def __post_init__(self) -> None:
        for name in ("reference_steps", "batch_size", "max_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"InfluenceConfig.{name} must be >= 1, got {getattr(self, name)}.")
        if self.learning_rate <= 0:
            raise ValueError(
                f"InfluenceConfig.learning_rate must be > 0, got {self.learning_rate}."
            )


def resolve_checkpoint_dir(path: str | Path) -> Path:
    """``path`` if it is a checkpoint, else the run's latest checkpoint; clear errors."""
    from hf_megadocs.training.checkpoint import checkpoint_of

    return checkpoint_of(path, "influence checkpoint")


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
        self.device = torch.device(
            config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        )
        self.tokenizer, self.model = _load_model(self.checkpoint, self.run_info, self.train_config)
        self.model.to(self.device).eval()
        reference = self._reference_texts()
        self.tuned = self._tune_on_reference(reference)
        self._source_influence: dict[str, float] = {}

    # ------------------------------------------------------------------ θ′

    def _reference_texts(self) -> list[str]:
        stats = SourceStats()
        texts = [doc.text for doc in load_source(self.config.reference, stats)]
        if not texts:
            raise ValueError(
                f"the influence reference set {self.config.reference.source!r} has no "
                f"documents ({stats.as_dict()}); give it a source with text."
            )
        held_out = _validation_keys(self.train_config)
        kept = [t for t in texts if _text_key(t) not in held_out]
        # the reference set must be distinct from every evaluation split: the documents the
        # run evaluates on are dropped from it (counted); none left is an error
        self.reference_counts = {"read": len(texts), "in_evaluation_splits": len(texts) - len(kept)}
        if not kept:
            raise ValueError(
                f"all {len(texts)} influence reference documents are in the run's evaluation "
                "splits (validation or long-context); the reference set must be distinct from "
                "them: choose another InfluenceConfig.reference source."
            )
        if len(kept) < len(texts):
            logger.warning(
                "influence reference: dropped %d of %d documents that the run evaluates on",
                len(texts) - len(kept),
                len(texts),
            )
        return kept

    def _tune_on_reference(self, texts: list[str]) -> Any:
        """θ′: a copy of θ after ``reference_steps`` AdamW steps on the reference blocks."""
        import torch

        config = self.config
        ids = [t for text in texts for t in self._ids(text) + [self.tokenizer.eos_token_id]]
        length = min(config.max_tokens, max(2, len(ids)))
        blocks = [ids[i : i + length] for i in range(0, len(ids) - length + 1, length)]
        if not blocks:
            raise ValueError("the influence reference set is empty once tokenized.")
        tuned = copy.deepcopy(self.model).train()
        optimizer = self._optimizer(tuned)
        base_lrs = [config.learning_rate for _ in optimizer.param_groups]
        generator = torch.Generator().manual_seed(0)
        for step in range(config.reference_steps):
            scale = min(1.0, (step + 1) / config.warmup_steps) if config.warmup_steps else 1.0
            for group, lr in zip(optimizer.param_groups, base_lrs, strict=True):
                group["lr"] = lr * scale
            picks = torch.randint(len(blocks), (config.batch_size,), generator=generator)
            batch = torch.tensor([blocks[i] for i in picks.tolist()], device=self.device)
            loss = tuned(input_ids=batch, labels=batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(tuned.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        logger.info(
            "θ′: %d steps on %d reference blocks of %d tokens (last loss %.4f)",
            config.reference_steps,
            len(blocks),
            length,
            loss.item(),
        )
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
        """Per text, the mean next-token cross-entropy over its first ``max_tokens`` tokens."""
        import torch

        rows = [self._ids(t)[: self.config.max_tokens] for t in texts]
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

    def reward(self, outputs: list[str], sources: list[str]) -> list[float | None]:
        """influence(output) − influence(source) per pair (0 for too-short outputs)."""
        missing = sorted({s for s in sources if _text_key(s) not in self._source_influence})
        for text, value in zip(missing, self.influence(missing), strict=True):
            self._source_influence[_text_key(text)] = value
        long_enough = [
            i for i, out in enumerate(outputs) if len(out) >= self.config.min_output_chars
        ]
        values = self.influence([outputs[i] for i in long_enough])
        rewards: list[float | None] = [0.0] * len(outputs)
        for i, value in zip(long_enough, values, strict=True):
            delta = value - self._source_influence[_text_key(sources[i])]
            rewards[i] = None if math.isnan(delta) else delta
        return rewards


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


def _validation_keys(train_config: Any) -> set[str]:
    """Text hashes of every document the run evaluates on (validation and long-context)."""
    from hf_megadocs.training.data.streams import _long_context_split, real_training_split

    real_dd, _, validation, _ = real_training_split(train_config)
    texts = list(validation[train_config.data.text_column])
    long_split = _long_context_split(real_dd, train_config.data)
    if long_split is not None:
        texts += list(long_split[train_config.data.text_column])
    return {_text_key(text) for text in texts}


__all__ = ["InfluenceConfig", "InfluenceScorer", "resolve_checkpoint_dir"]
