"""Continue pre-training from another run's checkpoint on new data (SynPro's rounds).

A resume (:mod:`~hf_megadocs.training.checkpoint`) restores everything, data order
included, and refuses any change to the data. A continuation is the other case: the
model and its AdamW moments go on, the global step and token counts go on, but the data
streams and the learning-rate schedule are planned afresh from the new config (after a
generation round the synthetic stream is the union of every round's corpus). What the
run came from is recorded in ``config.json`` under ``continued_from``.

Refused before any step: a model whose architecture differs from the checkpoint's, or a
tokenizer other than the one it was trained with.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hf_megadocs.training.checkpoint import checkpoint_of

if TYPE_CHECKING:
    from hf_megadocs.training.config import TrainConfig

logger = logging.getLogger(__name__)

ARCHITECTURE_FIELDS = (
    "pretrained",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "tie_word_embeddings",
)
"""``model.*`` fields that must equal the checkpoint's (they decide the weights' shapes)."""


def continuation_origin(config: TrainConfig) -> Path | None:
    """The checkpoint ``config.continue_from`` names (resolved), or None."""
    if config.continue_from is None:
        return None
    origin = checkpoint_of(config.continue_from, "continue_from")
    if not (origin / "model.safetensors").is_file():
        raise ValueError(
            f"continue_from: {origin} has no model.safetensors; pass a checkpoint that "
            "recipes/train.py saved (checkpoints/step_<N>)."
        )
    return origin


def origin_step(origin: Path | None) -> int:
    """The global step the continuation starts from (0 without one)."""
    if origin is None:
        return 0
    return int(json.loads((origin / "trainer_state.json").read_text())["step"])


def check_continuable(origin: Path, config: TrainConfig, tokenizer: Any) -> dict[str, Any]:
    """The origin's ``config.json`` after checking model and tokenizer match; else ValueError."""
    saved = json.loads((origin / "config.json").read_text())
    for name in ARCHITECTURE_FIELDS:
        before, now = saved["model"].get(name), getattr(config.model, name)
        if before != now:
            raise ValueError(
                f"cannot continue from {origin}: model.{name} was {before!r} there and is "
                f"{now!r} now; set --model.{name} {before} (a continuation keeps the model)."
            )
    if len(tokenizer) != saved["vocab_size"]:
        raise ValueError(
            f"cannot continue from {origin}: it was trained with a {saved['vocab_size']}-token "
            f"tokenizer ({saved['tokenizer']!r}) and this run's has {len(tokenizer)}; set "
            f"--model.tokenizer {saved['tokenizer']} and leave model.train_tokenizer_vocab unset."
        )
    return saved


def continuation_record(origin: Path, origin_config: dict[str, Any]) -> dict[str, Any]:
    """What ``config.json`` records under ``continued_from``: the checkpoint, its step, the
    data it was trained on, and its own origin (a chain of rounds stays traceable)."""
    return {
        "checkpoint": str(origin.resolve()),
        "step": origin_step(origin),
        "method": origin_config.get("method"),
        "num_generations": origin_config.get("num_generations"),
        "data": origin_config["data"],
        "mix": origin_config["mix"],
        "continued_from": origin_config.get("continued_from"),
    }


def load_origin(accelerator: Any, model: Any, optimizer: Any, origin: Path) -> dict[str, Any]:
    """The origin's weights into ``model`` and its AdamW state into ``optimizer``; returns
    its ``trainer_state.json`` (step and token counters, which the run continues).

    The optimizer keeps this run's hyperparameters (lr, weight decay, betas): only the
    moments and step counts come from the checkpoint.
    """
    import torch
    from safetensors.torch import load_file

    state = json.loads((origin / "trainer_state.json").read_text())
    accelerator.print(f"continuing from {origin} at step {state['step']} on new data")
    weights = load_file(str(origin / "model.safetensors"))
    accelerator.unwrap_model(model).load_state_dict(weights, strict=True)
    state_path = origin / "optimizer.bin"
    if not state_path.is_file():
        logger.warning("%s has no optimizer.bin: AdamW starts afresh", origin)
        return state
    hyper = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    saved = torch.load(state_path, map_location="cpu", weights_only=True)
    if len(saved["param_groups"]) != len(hyper):
        raise ValueError(
            f"cannot continue from {origin}: its optimizer has {len(saved['param_groups'])} "
            f"parameter groups and this run's has {len(hyper)}."
        )
    optimizer.load_state_dict(saved)
    for group, settings in zip(optimizer.param_groups, hyper, strict=True):
        group.update(settings)
    return state


__all__ = [
    "ARCHITECTURE_FIELDS",
    "check_continuable",
    "continuation_origin",
    "continuation_record",
    "load_origin",
    "origin_step",
]
