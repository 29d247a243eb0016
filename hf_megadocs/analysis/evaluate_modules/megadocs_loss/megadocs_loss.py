"""`evaluate` metric: token-weighted language-modelling loss, overall and by token position.

Load it from its folder, offline:

    import evaluate
    from hf_megadocs.analysis.evaluate_modules import module_path
    metric = evaluate.load(module_path("megadocs_loss"))
    metric.compute(token_losses=[[2.1, 1.9, 1.7], [2.4, 2.0]], position_bucket=512)

Each input row holds the per-token losses (nats) of one document, in document order,
token 0 first, as a model's cross-entropy with ``reduction="none"`` returns them. The
result is what the hf_megadocs trainer logs: the loss over all tokens (not the mean of
per-document means), its perplexity, and the loss per position bucket ("0-512", ...),
which is the long-context curve when the documents are long.
"""

from __future__ import annotations

import math

import datasets
import numpy as np

from hf_megadocs.extras import require

evaluate = require("evaluate", "analysis", "The megadocs_loss metric")

_DESCRIPTION = """Token-weighted mean loss (nats/token), perplexity and loss by token-position
bucket, computed from per-token losses of each document. Matches the i.i.d. and
long-context losses of hf_megadocs training runs."""

_KWARGS_DESCRIPTION = """
Args:
    token_losses (list of list of float): per-token losses of each document, in order.
    position_bucket (int, default 512): width in tokens of the position buckets.
    first_position (int, default 1): document position of each row's first loss; causal
        LM losses start at position 1 (token 0 is never predicted).
Returns:
    loss (float): sum of all token losses / number of tokens.
    perplexity (float): exp(loss).
    num_tokens (int), num_documents (int), empty_documents (int, rows with no loss).
    loss_by_position (dict[str, float]): mean loss per bucket "lo-hi" of positions [lo, hi).
Examples:
    >>> metric = evaluate.load(path_to_megadocs_loss)
    >>> metric.compute(token_losses=[[1.0, 3.0], [2.0]])["loss"]
    2.0
"""

_CITATION = """@misc{hf_megadocs,
  title = {hf_megadocs: data-efficient pre-training with synthetic megadocs},
  year = {2026}
}"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MegadocsLoss(evaluate.Metric):
    """Token-weighted loss and loss by token position from per-token losses."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"token_losses": datasets.Sequence(datasets.Value("float64"))}
            ),
            codebase_urls=["https://github.com/hf-megadocs/hf_megadocs"],
        )

    def _compute(
        self, token_losses: list[list[float]], position_bucket: int = 512, first_position: int = 1
    ) -> dict:
        if position_bucket < 1:
            raise ValueError(
                f"position_bucket must be a positive number of tokens, got {position_bucket}; "
                "use e.g. 512."
            )
        if first_position < 0:
            raise ValueError(f"first_position must be >= 0, got {first_position}.")
        sums: dict[int, float] = {}
        counts: dict[int, int] = {}
        empty = 0
        for row in token_losses:
            values = np.asarray(row, dtype=np.float64)
            if values.size == 0:
                empty += 1
                continue
            if not np.all(np.isfinite(values)):
                raise ValueError("token_losses contains NaN or inf; check the model's outputs.")
            buckets = (np.arange(values.size) + first_position) // position_bucket
            for bucket in np.unique(buckets):
                chosen = values[buckets == bucket]
                sums[int(bucket)] = sums.get(int(bucket), 0.0) + float(chosen.sum())
                counts[int(bucket)] = counts.get(int(bucket), 0) + int(chosen.size)
        num_tokens = sum(counts.values())
        if num_tokens == 0:
            raise ValueError(
                f"no token losses to average ({len(token_losses)} rows, {empty} empty); "
                "pass at least one non-empty row."
            )
        loss = sum(sums.values()) / num_tokens
        return {
            "loss": loss,
            "perplexity": math.exp(loss),
            "num_tokens": num_tokens,
            "num_documents": len(token_losses) - empty,
            "empty_documents": empty,
            "loss_by_position": {
                f"{b * position_bucket}-{(b + 1) * position_bucket}": sums[b] / counts[b]
                for b in sorted(sums)
            },
        }
