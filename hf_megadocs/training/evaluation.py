"""Evaluation: i.i.d. loss on real validation documents and long-context loss by position.

Documents are never packed together here: each i.i.d. document is cut into windows of
``seq_len`` tokens, and each long document is truncated to ``seq_len``, so every window
starts at position 0 and the loss at position p is the loss of the document's token p.
Windows are sharded across processes, per-rank loss sums are collected with
``gather_for_metrics`` and summed, so the result does not depend on the process count.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch
    from accelerate import Accelerator
    from datasets import Dataset

    from hf_megadocs.training.config import EvalConfig

logger = logging.getLogger(__name__)


@dataclass(kw_only=True)
class EvalSet:
    """Token windows to evaluate (each a list of ids starting at document position 0)."""

    iid: list[list[int]]
    """Windows of the real validation documents (each document cut into ``seq_len`` pieces)."""
    long: list[list[int]]
    """Long documents truncated to ``seq_len``, for loss by token position."""


def iid_windows(docs: list[list[int]], seq_len: int) -> list[list[int]]:
    """Cut each document into consecutive windows of at most ``seq_len`` tokens (>= 2 each)."""
    out = []
    for ids in docs:
        for start in range(0, len(ids), seq_len):
            window = ids[start : start + seq_len]
            if len(window) >= 2:
                out.append(window)
    return out


def long_windows(docs: list[list[int]], seq_len: int, max_docs: int) -> list[list[int]]:
    """The ``max_docs`` longest documents, each truncated to its first ``seq_len`` tokens."""
    ranked = sorted(docs, key=len, reverse=True)[:max_docs]
    return [ids[:seq_len] for ids in ranked if len(ids) >= 2]


def eval_documents(
    validation: Dataset, long_split: Dataset | None, eval_config: EvalConfig
) -> tuple[list[list[int]], list[list[int]]]:
    """Token ids of the i.i.d. evaluation documents (the first ``eval.max_docs`` of the
    tokenized validation split) and of the long-context ones (the
    ``eval.long_context_docs`` longest of ``long_split``, in that order; the i.i.d. ones
    when None). Only these become Python lists: a validation split can be 5% of a corpus."""
    n_val = len(validation) if eval_config.max_docs is None else eval_config.max_docs
    iid = list(validation.select(range(min(n_val, len(validation))))["input_ids"])
    if long_split is None:
        return iid, iid
    longest = np.argsort(-np.asarray(long_split["num_tokens"]), kind="stable")
    return iid, list(long_split.select(longest[: eval_config.long_context_docs])["input_ids"])


def bucket_labels(seq_len: int, width: int) -> list[str]:
    """Names of the position buckets, e.g. ``["0-512", "512-1024", ...]``."""
    return [f"{lo}-{min(lo + width, seq_len)}" for lo in range(0, seq_len, width)]


def _loss_sums(
    model: torch.nn.Module,
    windows: list[list[int]],
    *,
    batch_size: int,
    device: torch.device,
    n_buckets: int,
    width: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-bucket (sum of token losses, token count) over ``windows``, in float64."""
    import torch
    import torch.nn.functional as F

    sums = torch.zeros(n_buckets, dtype=torch.float64, device=device)
    counts = torch.zeros(n_buckets, dtype=torch.float64, device=device)
    for i in range(0, len(windows), batch_size):
        batch = windows[i : i + batch_size]
        length = max(map(len, batch))
        ids = torch.zeros(len(batch), length, dtype=torch.long)
        mask = torch.zeros(len(batch), length, dtype=torch.long)
        for row, window in enumerate(batch):
            ids[row, : len(window)] = torch.tensor(window)
            mask[row, : len(window)] = 1
        ids, mask = ids.to(device), mask.to(device)
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        targets = ids[:, 1:]
        valid = mask[:, 1:].bool()
        loss = F.cross_entropy(
            logits.reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="none"
        ).view_as(targets)
        # The token predicted at index j sits at document position j + 1.
        positions = torch.arange(1, length, device=device).expand_as(targets)
        bucket = (positions // width).clamp(max=n_buckets - 1)[valid]
        sums.index_add_(0, bucket, loss[valid].double())
        counts.index_add_(0, bucket, torch.ones_like(bucket, dtype=torch.float64))
    return sums, counts


def evaluate(
    accelerator: Accelerator,
    model: torch.nn.Module,
    eval_set: EvalSet,
    *,
    seq_len: int,
    batch_size: int,
    position_bucket: int,
) -> dict[str, Any]:
    """Mean i.i.d. loss, long-context loss and long-context loss per position bucket.

    Runs on the unwrapped model (no DDP collectives per forward), in eval mode, then
    restores train mode. Keys are missing when their set is empty.
    """
    import torch

    rank, world = accelerator.process_index, accelerator.num_processes
    labels = bucket_labels(seq_len, position_bucket)
    n_buckets = len(labels)
    inner = accelerator.unwrap_model(model)
    was_training = inner.training
    inner.eval()
    with torch.no_grad(), accelerator.autocast():
        iid_sum, iid_count = _loss_sums(
            inner,
            eval_set.iid[rank::world],
            batch_size=batch_size,
            device=accelerator.device,
            n_buckets=1,
            width=seq_len,
        )
        long_sum, long_count = _loss_sums(
            inner,
            eval_set.long[rank::world],
            batch_size=batch_size,
            device=accelerator.device,
            n_buckets=n_buckets,
            width=position_bucket,
        )
    inner.train(was_training)
    local = torch.cat([iid_sum, iid_count, long_sum, long_count]).unsqueeze(0)
    total = accelerator.gather_for_metrics(local).sum(0).cpu()
    iid_sum, iid_count = total[0].item(), total[1].item()
    long_sum, long_count = total[2 : 2 + n_buckets], total[2 + n_buckets :]
    out: dict[str, Any] = {}
    if iid_count:
        out["iid_loss"] = iid_sum / iid_count
    if long_count.sum() > 0:
        out["long_context_loss"] = (long_sum.sum() / long_count.sum()).item()
        out["long_context_loss_by_position"] = {
            label: (s / c).item() for label, s, c in zip(labels, long_sum, long_count) if c > 0
        }
    return out
