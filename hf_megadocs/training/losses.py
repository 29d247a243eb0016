"""Per-token loss, split by stream and by role, in sums that add across micro-batches.

The loss of a micro-batch is computed once per token (:func:`next_token_losses`: in chunks
that never hold the full logits, or plainly, per :class:`LossConfig`); its sums and token
counts per group (:data:`LOSS_GROUPS`: all tokens, each stream, each role) form one
``[group, (sum, count)]`` tensor, so micro-steps and processes are summed before dividing
and one all-reduce per step carries every group.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from hf_megadocs.training.data.tokenize import ROLE_NAMES

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

STREAM_NAMES: tuple[str, ...] = ("real", "synthetic")
"""Stream ids as the collator's ``stream`` tensor holds them: 0 = real, 1 = synthetic."""
LOSS_GROUPS: tuple[str, ...] = (
    "loss",
    *(f"loss_{stream}" for stream in STREAM_NAMES),
    *(f"loss_role/{role}" for role in ROLE_NAMES),
)
"""Metric names of the rows of the loss-sums tensor, in order."""
SEEN_GROUPS: tuple[str, ...] = ("tokens", "real_tokens_seen", "synthetic_tokens_seen")
"""Names of the token counts :func:`tokens_seen` returns, in order."""
_WARNED_PLAIN: set[str] = set()
"""Model classes already warned about falling back to the plain loss."""


@dataclass(kw_only=True)
class LossConfig:
    """How the next-token loss is computed; both ways give the same per-token losses."""

    implementation: Literal["chunked", "plain"] = "chunked"
    """"chunked": output projection and cross-entropy over ``chunk_size`` tokens at a time,
    the full logits never materialised (Liger's fused kernel on CUDA when ``liger_kernel`` is
    installed and ``fused_kernel``); models outside ``CHUNKED_LOSS_MODEL_TYPES`` use "plain"
    with a warning. "plain": the full ``[batch, seq, vocab]`` logits, then cross-entropy."""
    chunk_size: int = 1024
    """Tokens per chunk of the chunked loss; a chunk's logits take 4 × chunk_size × vocab bytes."""
    fused_kernel: bool = True
    """Use Liger's fused linear cross-entropy on CUDA when the package is installed."""

    def __post_init__(self) -> None:
        if self.implementation not in ("chunked", "plain"):
            raise ValueError(
                f"loss.implementation={self.implementation!r} is not allowed: expected "
                '"chunked" or "plain".'
            )
        if self.chunk_size < 1:
            raise ValueError(f"loss.chunk_size={self.chunk_size!r} must be an integer >= 1.")


def next_token_losses(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    labels: torch.Tensor,
    config: LossConfig,
    *,
    position_ids: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of the next-token losses (for backward) and the ``[batch, seq]`` fp32 loss of
    each position (detached): position t predicts ``labels[:, t + 1]``; the last position
    and those whose next label is -100 have loss 0."""
    import torch.nn.functional as F

    from hf_megadocs.training.chunked_loss import (
        IGNORE_INDEX,
        final_hidden_states,
        linear_cross_entropy,
        output_projection,
    )

    # Shift the labels, not the logits: no copy of the logits, and cross_entropy over
    # [N, V] rows is far faster on CPU than over a transposed [B, V, T].
    targets = F.pad(labels, (0, 1), value=IGNORE_INDEX)[:, 1:]
    head = output_projection(model) if config.implementation == "chunked" else None
    if config.implementation == "chunked" and head is None:
        _warn_plain_once(model)
    inputs = {"position_ids": position_ids, "attention_mask": attention_mask}
    if head is None:
        logits = model(input_ids=input_ids, **inputs).logits
        loss = F.cross_entropy(
            logits.float().reshape(-1, logits.size(-1)),
            targets.reshape(-1),
            ignore_index=IGNORE_INDEX,
            reduction="none",
        ).view_as(targets)
        return loss.sum(), loss.detach()
    hidden = final_hidden_states(model, input_ids, **inputs)
    total, per_token = linear_cross_entropy(
        hidden.reshape(-1, hidden.size(-1)),
        head.weight,
        targets.reshape(-1),
        chunk_size=config.chunk_size,
        fused_kernel=config.fused_kernel,
    )
    return total, per_token.view_as(targets)


def _warn_plain_once(model: torch.nn.Module) -> None:
    name = type(model).__name__
    if name not in _WARNED_PLAIN:
        _WARNED_PLAIN.add(name)
        logger.warning(
            "loss.implementation=chunked: %s is not one of the model families the chunked "
            "loss reproduces exactly (CHUNKED_LOSS_MODEL_TYPES); using the plain loss, which "
            "materialises the full logits",
            name,
        )


def token_losses(
    model: torch.nn.Module, batch: dict[str, torch.Tensor], config: LossConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean loss of the micro-batch (for backward) and its ``[group, (sum, count)]`` sums."""
    total, per_token = next_token_losses(
        model, batch["input_ids"], batch["labels"], config, position_ids=batch.get("position_ids")
    )
    valid = batch["labels"][:, 1:] != -100
    return total / valid.sum().clamp(min=1), group_sums(per_token, batch)


def group_sums(per_token: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """``[group, (sum, count)]`` (float64) of ``[batch, seq]`` next-token losses, by
    :data:`LOSS_GROUPS`: position t counts when ``labels[:, t + 1]`` is not -100, in the
    row's stream and in the role of the token it predicts."""
    import torch
    import torch.nn.functional as F

    with torch.no_grad():
        labels = F.pad(batch["labels"], (0, 1), value=-100)[:, 1:]
        valid = labels != -100
        stream = batch["stream"].view(-1, 1).expand_as(labels)
        roles = F.pad(batch["roles"], (0, 1), value=-1)[:, 1:]
        groups = [valid] + [valid & (stream == s) for s in range(len(STREAM_NAMES))]
        groups += [valid & (roles == r) for r in range(len(ROLE_NAMES))]
        mask = torch.stack(groups).to(per_token.dtype)
        sums = (mask * per_token.detach()).flatten(1).sum(1)
        counts = mask.flatten(1).sum(1)
    return torch.stack([sums, counts], dim=1).double()


def tokens_seen(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Input tokens (padding excluded) of the micro-batch, as :data:`SEEN_GROUPS`."""
    import torch

    per_row = (batch["roles"] >= 0).sum(1).double()  # role -1 marks padding
    by_stream = [per_row[batch["stream"] == s].sum() for s in range(len(STREAM_NAMES))]
    return torch.stack([per_row.sum(), *by_stream])


def loss_metrics(sums: torch.Tensor) -> dict[str, float]:
    """``{group: sum / count}`` for the groups that had tokens."""
    return {
        name: total / count
        for name, (total, count) in zip(LOSS_GROUPS, sums.tolist(), strict=True)
        if count > 0
    }


__all__ = [
    "LOSS_GROUPS",
    "SEEN_GROUPS",
    "STREAM_NAMES",
    "LossConfig",
    "group_sums",
    "loss_metrics",
    "next_token_losses",
    "token_losses",
    "tokens_seen",
]
