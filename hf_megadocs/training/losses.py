"""Per-token loss, split by stream and by role, in sums that add across micro-batches.

The loss of a micro-batch is computed once per token (``reduction="none"``); its sums and
token counts per group (:data:`LOSS_GROUPS`: all tokens, each stream, each role) form one
``[group, (sum, count)]`` tensor, so micro-steps and processes are summed before dividing
and one all-reduce per step carries every group.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hf_megadocs.training.data.tokenize import ROLE_NAMES

if TYPE_CHECKING:
    import torch

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


def token_losses(
    logits: torch.Tensor, batch: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean loss of the micro-batch (for backward) and its ``[group, (sum, count)]`` sums."""
    import torch
    import torch.nn.functional as F

    # Shift the labels, not the logits: a view of the full logits avoids copying them, and
    # cross_entropy over [N, V] rows is far faster on CPU than over a transposed [B, V, T].
    labels = F.pad(batch["labels"], (0, 1), value=-100)[:, 1:]
    valid = labels != -100
    loss = F.cross_entropy(
        logits.float().reshape(-1, logits.size(-1)),
        labels.reshape(-1),
        ignore_index=-100,
        reduction="none",
    ).view_as(labels)
    mean = loss.sum() / valid.sum().clamp(min=1)
    with torch.no_grad():
        stream = batch["stream"].view(-1, 1).expand_as(labels)
        roles = F.pad(batch["roles"], (0, 1), value=-1)[:, 1:]
        groups = [valid] + [valid & (stream == s) for s in range(len(STREAM_NAMES))]
        groups += [valid & (roles == r) for r in range(len(ROLE_NAMES))]
        mask = torch.stack(groups).to(loss.dtype)
        sums = (mask * loss.detach()).flatten(1).sum(1)
        counts = mask.flatten(1).sum(1)
    return mean, torch.stack([sums, counts], dim=1).double()


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
    "loss_metrics",
    "token_losses",
    "tokens_seen",
]
