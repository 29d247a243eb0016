"""Optimizer pieces: weight-decay groups by parameter name, AdamW, cosine schedule.

The schedule is a pure function of the step (``lr_at``) so it can be tested and printed
without building a model; ``build_scheduler`` only wraps it in a ``LambdaLR``.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from hf_megadocs.training.config import OptimConfig

logger = logging.getLogger(__name__)

NO_DECAY_NAME_PARTS: tuple[str, ...] = ("embed", "wte", "wpe", "norm", "ln_", "layernorm")
"""Substrings of a parameter's (lower-cased) name that mark it as exempt from weight decay.

Embeddings and normalisation weights are matched by name; biases by the ``.bias`` suffix.
A dimension-based rule (``ndim < 2``) would wrongly decay the 2-D embedding matrix.
The output projection (``lm_head``) is an ordinary linear layer and is decayed, as in the
paper's untied setup.
"""


def is_no_decay(name: str) -> bool:
    """Whether the parameter called ``name`` is excluded from weight decay."""
    lowered = name.lower()
    if lowered.endswith(".bias") or lowered == "bias":
        return True
    return any(part in lowered for part in NO_DECAY_NAME_PARTS)


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Split trainable parameters into a decayed and a non-decayed AdamW group.

    Shared (tied) parameters appear once. Each group carries a ``names`` list so tests
    and logs can see what went where; ``torch.optim.AdamW`` ignores extra keys.
    """
    decay, no_decay = [], []
    decay_names, no_decay_names = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if is_no_decay(name):
            no_decay.append(param)
            no_decay_names.append(name)
        else:
            decay.append(param)
            decay_names.append(name)
    n_decay = sum(p.numel() for p in decay)
    n_no_decay = sum(p.numel() for p in no_decay)
    logger.info(
        "weight decay %.3g on %d tensors (%d params); none on %d tensors (%d params)",
        weight_decay,
        len(decay),
        n_decay,
        len(no_decay),
        n_no_decay,
    )
    return [
        {"params": decay, "weight_decay": weight_decay, "names": decay_names},
        {"params": no_decay, "weight_decay": 0.0, "names": no_decay_names},
    ]


def build_optimizer(model: torch.nn.Module, config: OptimConfig) -> torch.optim.Optimizer:
    """AdamW with decoupled weight decay on the groups from ``param_groups``."""
    import torch

    groups = param_groups(model, config.weight_decay)
    # The fused kernel (one pass over all tensors) runs on CPU and CUDA; Accelerate moves
    # the parameters to the device after this, so decide by what the run will use.
    devices = {p.device.type for group in groups for p in group["params"]}
    fused = devices <= {"cpu", "cuda"}
    return torch.optim.AdamW(
        groups,
        lr=config.lr,
        betas=tuple(config.betas),
        eps=config.eps,
        fused=fused or None,
    )


def warmup_steps(total_steps: int, warmup_fraction: float) -> int:
    """Number of linear-warmup steps: ``ceil(fraction · total)``, at least 1 when > 0."""
    if warmup_fraction <= 0:
        return 0
    return max(1, math.ceil(warmup_fraction * total_steps))


def lr_at(step: int, *, lr: float, total_steps: int, warmup: int, min_lr: float = 0.0) -> float:
    """Learning rate for optimizer step ``step`` (0-based): linear warmup, cosine to ``min_lr``.

    Step ``warmup - 1`` reaches ``lr``; the last step ``total_steps - 1`` is the first
    one above ``min_lr`` and ``lr_at(total_steps) == min_lr``.
    """
    if step < warmup:
        return lr * (step + 1) / warmup
    if step >= total_steps:
        return min_lr
    decay_steps = max(1, total_steps - warmup)
    progress = (step - warmup) / decay_steps
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: OptimConfig, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` with factor ``lr_at(step) / lr`` (or linear warmup then 1 for the
    "constant" schedule): one scheduler step per optimizer step."""
    import torch

    warmup = warmup_steps(total_steps, config.warmup_fraction)

    def factor(step: int) -> float:
        if config.schedule == "constant":
            return min(1.0, (step + 1) / warmup) if warmup else 1.0
        return (
            lr_at(step, lr=config.lr, total_steps=total_steps, warmup=warmup, min_lr=config.min_lr)
            / config.lr
        )

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
