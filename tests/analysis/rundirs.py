"""Write small run directories that follow the trainer's contract, for analysis tests.

The layout is the one ``recipes/train.py`` writes: ``config.json``, ``metrics.jsonl``
(train and eval records) and ``summary.json``. Losses come from a known law so that the
expected data-efficiency multipliers can be computed by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

LAW = {"A": 400.0, "alpha": 0.3, "E": 2.0}
"""The law the fixture losses follow: L(D) = 400 / D^0.3 + 2."""


def law_loss(tokens: float) -> float:
    return LAW["A"] / tokens ** LAW["alpha"] + LAW["E"]


def write_run(
    root: Path,
    name: str,
    *,
    method: str = "real",
    num_generations: int = 0,
    real_tokens: int = 1_000_000,
    synthetic_tokens: int = 0,
    iid_loss: float | None = None,
    selection_loss: float | None = None,
    long_context_loss: float | None = 3.0,
    num_params: int = 1_000_000,
    tokenizer: str = "HuggingFaceTB/SmolLM2-135M-Instruct",
    steps: int = 4,
    finished: bool = True,
) -> Path:
    """Create ``root/name`` with config, metrics and (if finished) summary; return it."""
    run = root / name
    run.mkdir(parents=True)
    iid = law_loss(real_tokens) if iid_loss is None else iid_loss
    config = {
        "seed": 0,
        "optim": {"lr": 3e-3, "weight_decay": 0.4},
        "mix": {"synthetic_share": 0.75},
        "method": method,
        "num_generations": num_generations,
        "real_tokens": real_tokens,
        "synthetic_tokens": synthetic_tokens,
        "num_params": num_params,
        "tokenizer": tokenizer,
    }
    (run / "config.json").write_text(json.dumps(config))
    lines = []
    for step in range(1, steps + 1):
        record = {
            "kind": "train",
            "step": step,
            "loss": iid + 2.0 / step,
            "lr": 1e-3,
            "tokens": 1024 * step,
            "real_tokens_seen": 512 * step,
            "synthetic_tokens_seen": 512 * step,
            "tokens_per_s": 1000.0,
            "loss_real": iid + 2.2 / step,
        }
        if method != "real":
            record["loss_synthetic"] = iid + 1.5 / step
            record["loss_role/rephrase"] = iid + 1.4 / step
        lines.append(record)
    evaluation = {"kind": "eval", "step": steps, "iid_loss": iid}
    if long_context_loss is not None:
        evaluation["long_context_loss"] = long_context_loss
        evaluation["long_context_loss_by_position"] = {
            "0-512": long_context_loss + 0.3,
            "512-1024": long_context_loss,
            "1024-2048": long_context_loss - 0.2,
        }
    lines.append(evaluation)
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    if finished:
        summary = {
            "iid_loss": iid,
            "selection_loss": iid if selection_loss is None else selection_loss,
            "long_context_loss": long_context_loss,
            "steps": steps,
            "tokens": 1024 * steps,
            "wall_s": 1.0,
            **config,
        }
        (run / "summary.json").write_text(json.dumps(summary))
    return run


def write_law_runs(root: Path, sizes=(1e6, 2e6, 4e6, 8e6, 16e6)) -> list[Path]:
    """Real-only runs at ``sizes`` on the law, plus simple (1.5×) and stitched (2×) G=4 runs
    at 4M real tokens (their losses are the law's at 6M and 8M tokens)."""
    runs = [write_run(root, f"real_{int(d / 1e6)}m", real_tokens=int(d)) for d in sizes]
    runs.append(
        write_run(
            root,
            "simple_g4",
            method="simple",
            num_generations=4,
            real_tokens=4_000_000,
            synthetic_tokens=20_000_000,
            iid_loss=law_loss(6e6),
            long_context_loss=2.9,
        )
    )
    runs.append(
        write_run(
            root,
            "stitched_g4",
            method="stitched",
            num_generations=4,
            real_tokens=4_000_000,
            synthetic_tokens=20_000_000,
            iid_loss=law_loss(8e6),
            long_context_loss=2.7,
        )
    )
    return runs
