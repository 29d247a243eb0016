"""What a tuning run logs: TRL's log lines appended to ``metrics.jsonl``, and a reward plot.

TRL logs each reward as ``rewards/<name>/mean`` and ``rewards/<name>/std``, the weighted
sum as ``reward``, and ``kl``, ``loss``, ``completions/mean_length`` and friends; this
callback writes every log line as it comes (so a crashed run keeps what it logged).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from hf_megadocs.jsonl import append_record


class MetricsFileCallback(TrainerCallback):
    """Appends each of the trainer's log lines, with its step, to ``path``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **_: Any):
        if logs and state.is_world_process_zero:
            record = {"step": state.global_step, **_finite(logs)}
            append_record(self.path, record, fsync=False)


def _finite(logs: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in logs.items()
    }


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The log lines of ``metrics.jsonl`` (training steps only, not the final summary), one
    per step in step order: a resumed run logs again the steps after its checkpoint, and
    the latest line of a step wins."""
    lines = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    by_step = {line["step"]: line for line in lines if "reward" in line}
    return [by_step[step] for step in sorted(by_step)]


def reward_means(records: list[dict[str, Any]], names: list[str]) -> dict[str, list[float]]:
    """Per reward name, its logged group mean at each step (and ``reward``: the weighted sum)."""
    series = {name: [r.get(f"rewards/{name}/mean") for r in records] for name in names}
    series["reward"] = [r.get("reward") for r in records]
    return series


def plot_rewards(records: list[dict[str, Any]], names: list[str], path: str | Path) -> Path:
    """Each reward's mean per step (one panel per reward, the weighted sum last)."""
    from hf_megadocs.analysis.plots import _pyplot, _save

    plt = _pyplot()
    series = reward_means(records, names)
    steps = [r["step"] for r in records]
    fig, axes = plt.subplots(1, len(series), figsize=(3.2 * len(series), 2.8), squeeze=False)
    for ax, (name, values) in zip(axes[0], series.items(), strict=True):
        points = [(s, v) for s, v in zip(steps, values, strict=True) if v is not None]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", markersize=3)
        ax.set_title("weighted sum" if name == "reward" else name)
        ax.set_xlabel("GRPO step")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("mean reward")
    fig.tight_layout()
    return _save(fig, path)


__all__ = ["MetricsFileCallback", "plot_rewards", "read_metrics", "reward_means"]
