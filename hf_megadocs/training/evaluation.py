"""Evaluation: i.i.d. loss on real validation documents and long-context loss by position.

Documents are never packed together here: each i.i.d. (and selection) document is cut
into windows of ``seq_len`` tokens, and each long document is truncated to ``seq_len``
(the model's whole training context), so every window
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
    from hf_megadocs.training.losses import LossConfig

logger = logging.getLogger(__name__)


@dataclass(kw_only=True)
class EvalSet:
    """Token windows to evaluate (each a list of ids starting at document position 0)."""

    iid: list[list[int]]
    """Windows of the real validation documents (each document cut into ``seq_len`` pieces)."""
    selection: list[list[int]]
    """Windows of the validation documents held apart for choosing settings
    (``eval.selection_fraction``; empty when 0), disjoint from ``iid``'s."""
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


SELECTION_HASH_SEED = 2_000_003
"""Seed of the ``source_id`` hash that assigns validation documents to the selection set
(apart from the split's and the subsets' hashes)."""


def selection_rows(validation: Dataset, fraction: float) -> tuple[list[int], list[int]]:
    """Row indices of ``validation`` in the selection set and in the reported set: a
    document is a selection document when its ``source_id`` hashes below ``fraction``."""
    from hf_megadocs.generation.splits import split_unit

    if fraction == 0:
        return [], list(range(len(validation)))
    if "source_id" not in validation.column_names:
        raise ValueError(
            f"eval.selection_fraction={fraction} needs a source_id column in the validation "
            "split to hold documents apart; use an hf_megadocs corpus, add the column, or set "
            "eval.selection_fraction 0."
        )
    chosen = [split_unit(i, SELECTION_HASH_SEED) < fraction for i in validation["source_id"]]
    selection = [row for row, keep in enumerate(chosen) if keep]
    reported = [row for row, keep in enumerate(chosen) if not keep]
    if not selection or not reported:
        raise ValueError(
            f"eval.selection_fraction={fraction} puts {len(selection)} of {len(chosen)} "
            "validation documents in the selection set and leaves "
            f"{len(reported)} to report; use more validation documents or another fraction."
        )
    return selection, reported


def eval_documents(
    validation: Dataset,
    long_split: Dataset | None,
    eval_config: EvalConfig,
    rows: tuple[list[int], list[int]] | None = None,
) -> tuple[list[list[int]], list[list[int]], list[list[int]]]:
    """Token ids of the i.i.d. evaluation documents (the first ``eval.max_docs`` of the
    tokenized validation split outside the selection set), of the selection documents (as
    many, from the selection set) and of the long-context ones (the
    ``eval.long_context_docs`` longest of ``long_split``, in that order; the i.i.d. ones
    when None). ``rows`` are (selection, reported) row indices (:func:`selection_rows` of
    the untokenized split); None reports every row. Only these become Python lists: a
    validation split can be 5% of a corpus."""
    selection_ids, reported_ids = rows or ([], list(range(len(validation))))
    n_val = len(validation) if eval_config.max_docs is None else eval_config.max_docs
    iid = list(validation.select(reported_ids[:n_val])["input_ids"])
    selection = list(validation.select(selection_ids[:n_val])["input_ids"])
    if long_split is None:
        return iid, selection, iid
    longest = np.argsort(-np.asarray(long_split["num_tokens"]), kind="stable")
    long = list(long_split.select(longest[: eval_config.long_context_docs])["input_ids"])
    return iid, selection, long


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
    loss_config: LossConfig,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-bucket (sum of token losses, token count) over ``windows``, in float64."""
    import torch

    from hf_megadocs.training.losses import next_token_losses

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
        labels = ids.masked_fill(mask == 0, -100)
        _, loss = next_token_losses(model, ids, labels, loss_config, attention_mask=mask)
        loss, valid = loss[:, :-1], mask[:, 1:].bool()
        # The token predicted at index j sits at document position j + 1.
        positions = torch.arange(1, length, device=device).expand_as(loss)
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
    loss: LossConfig | None = None,
) -> dict[str, Any]:
    """Mean i.i.d. loss, selection loss, long-context loss and its value per position bucket.

    Runs on the unwrapped model (no DDP collectives per forward), in eval mode, then
    restores train mode; token losses as training computes them (``loss``; None: the
    default, chunked). Keys are missing when their set is empty.
    """
    import torch

    from hf_megadocs.training.losses import LossConfig

    rank, world = accelerator.process_index, accelerator.num_processes
    labels = bucket_labels(seq_len, position_bucket)
    n_buckets = len(labels)
    inner = accelerator.unwrap_model(model)
    was_training = inner.training
    inner.eval()

    def sums(windows: list[list[int]], buckets: int, width: int) -> tuple[Any, Any]:
        return _loss_sums(inner, windows[rank::world], batch_size=batch_size,
                          device=accelerator.device, n_buckets=buckets, width=width,
                          loss_config=loss or LossConfig())  # fmt: skip

    with torch.no_grad(), accelerator.autocast():
        iid_sum, iid_count = sums(eval_set.iid, 1, seq_len)
        selection_sum, selection_count = sums(eval_set.selection, 1, seq_len)
        long_sum, long_count = sums(eval_set.long, n_buckets, position_bucket)
    inner.train(was_training)
    local = torch.cat(
        [iid_sum, iid_count, selection_sum, selection_count, long_sum, long_count]
    ).unsqueeze(0)
    total = accelerator.gather_for_metrics(local).sum(0).cpu()
    iid_sum, iid_count = total[0].item(), total[1].item()
    selection_sum, selection_count = total[2].item(), total[3].item()
    long_sum, long_count = total[4 : 4 + n_buckets], total[4 + n_buckets :]
    out: dict[str, Any] = {}
    if iid_count:
        out["iid_loss"] = iid_sum / iid_count
    if selection_count:
        out["selection_loss"] = selection_sum / selection_count
    if long_count.sum() > 0:
        out["long_context_loss"] = (long_sum.sum() / long_count.sum()).item()
        out["long_context_loss_by_position"] = {
            label: (s / c).item() for label, s, c in zip(labels, long_sum, long_count) if c > 0
        }
    return out
