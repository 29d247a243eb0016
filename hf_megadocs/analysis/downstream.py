"""Optional downstream evaluation of a trained checkpoint with lm-evaluation-harness.

The megadocs paper reports ARC-Easy, PIQA and SciQ accuracy. When ``lm_eval`` is
importable and the tasks' data can be loaded (it comes from the Hugging Face Hub, so the
first run needs network or a pre-filled ``datasets`` cache), :func:`run_downstream` runs
them on a checkpoint and returns accuracies. Otherwise it returns a result whose
``status`` is ``"unavailable"`` and whose message says what to install or fetch; it never
raises for a missing harness, missing data or a failing task.

Command line: ``python -m hf_megadocs.analysis.downstream CHECKPOINT_OR_RUN_DIR [--limit N]``.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

logger = logging.getLogger(__name__)

PAPER_TASKS: tuple[str, ...] = ("arc_easy", "piqa", "sciq")
"""The downstream tasks of the megadocs paper, by their lm-eval names."""

INSTALL_HINT = 'pip install "hf_megadocs[eval]"  (or: pip install "lm-eval>=0.4.13,<0.5")'

NETWORK_HINT = (
    "lm-eval loads each task's data from the Hugging Face Hub; run once on a machine with "
    "network (or copy its ~/.cache/huggingface/datasets) and then set HF_DATASETS_OFFLINE=1."
)

Status = Literal["ok", "unavailable", "failed"]


@dataclass(kw_only=True)
class DownstreamConfig:
    """What to evaluate and how."""

    checkpoint: str
    """A Hugging Face model directory (with a config.json that has ``model_type``) or a run
    directory containing one."""
    tasks: tuple[str, ...] = PAPER_TASKS
    """lm-eval task names."""
    num_fewshot: int = 0
    """Few-shot examples per prompt (the paper's small models are scored zero-shot)."""
    limit: int | None = None
    """Examples per task; None = all. Use a small number only for smoke tests."""
    batch_size: int = 8
    """lm-eval batch size."""
    device: str = "cpu"
    """Torch device, e.g. "cpu" or "cuda:0"."""
    output: str | None = None
    """Write the result as JSON here; None = RUN_DIR/downstream.json when given a run
    directory (hf-megadocs report then shows it)."""

    def __post_init__(self) -> None:
        self.tasks = tuple(self.tasks)
        if not self.tasks:
            raise ValueError(f"DownstreamConfig.tasks is empty; use e.g. {list(PAPER_TASKS)}.")
        if self.num_fewshot < 0:
            raise ValueError(f"DownstreamConfig.num_fewshot must be >= 0, got {self.num_fewshot}.")
        if self.limit is not None and self.limit < 1:
            raise ValueError(
                f"DownstreamConfig.limit must be >= 1 or None (all), got {self.limit}."
            )
        if self.batch_size < 1:
            raise ValueError(f"DownstreamConfig.batch_size must be >= 1, got {self.batch_size}.")


@dataclass(kw_only=True)
class DownstreamResult:
    """The outcome: scores when ``status == "ok"``, otherwise a message saying why not."""

    status: Status
    message: str
    checkpoint: str | None = None
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    """task → {"acc": ..., "acc_norm": ..., "acc_stderr": ...} (what the task reports)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _is_model_dir(path: Path) -> bool:
    config = path / "config.json"
    if not config.is_file():
        return False
    try:
        return "model_type" in json.loads(config.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, OSError):
        return False


def find_checkpoint(path: str | Path) -> Path:
    """The model directory at ``path``, or the newest one below it (e.g. inside a run dir).

    Raises ``FileNotFoundError`` naming the path when there is none.
    """
    root = Path(path)
    if _is_model_dir(root):
        return root
    candidates = (
        [p.parent for p in root.glob("**/config.json") if _is_model_dir(p.parent)]
        if root.is_dir()
        else []
    )
    if not candidates:
        raise FileNotFoundError(
            f"no Hugging Face model directory (config.json with model_type) at or below {root}; "
            "pass the checkpoint directory the trainer saved."
        )
    return max(candidates, key=lambda p: (p.name == "final", (p / "config.json").stat().st_mtime))


def lm_eval_missing_message() -> str | None:
    """None when ``lm_eval`` is importable, else the message saying how to get it."""
    if importlib.util.find_spec("lm_eval") is not None:
        return None
    return (
        "Downstream evaluation (ARC-Easy, PIQA, SciQ) needs lm-evaluation-harness, which is "
        f"not installed: {INSTALL_HINT}. {NETWORK_HINT}"
    )


_NETWORK_WORDS = (
    "offline",
    "connection",
    "connect",
    "network",
    "resolve",
    "timed out",
    "not found in cache",
    "couldn't reach",
)


def _looks_like_missing_data(err: BaseException) -> bool:
    text = f"{type(err).__name__}: {err}".lower()
    return isinstance(err, ConnectionError) or any(word in text for word in _NETWORK_WORDS)


def _scores(results: dict[str, Any], tasks: tuple[str, ...]) -> dict[str, dict[str, float]]:
    scores: dict[str, dict[str, float]] = {}
    for task in tasks:
        metrics = results.get("results", {}).get(task, {})
        picked = {}
        for key, value in metrics.items():
            name, _, filt = key.partition(",")
            if (
                filt in {"", "none"}
                and isinstance(value, (int, float))
                and not isinstance(value, bool)
            ):
                picked[name] = float(value)
        scores[task] = picked
    return scores


def run_downstream(config: DownstreamConfig) -> DownstreamResult:
    """Evaluate ``config.checkpoint`` on ``config.tasks``; never raises for unavailability."""
    missing = lm_eval_missing_message()
    if missing is not None:
        logger.warning("%s", missing)
        return DownstreamResult(status="unavailable", message=missing)
    try:
        checkpoint = find_checkpoint(config.checkpoint)
    except FileNotFoundError as err:
        return DownstreamResult(status="failed", message=str(err))
    import lm_eval

    logger.info("lm-eval on %s: tasks %s, limit %s", checkpoint, list(config.tasks), config.limit)
    try:
        results = lm_eval.simple_evaluate(
            model="hf",
            model_args={"pretrained": str(checkpoint), "dtype": "float32"},
            tasks=list(config.tasks),
            num_fewshot=config.num_fewshot,
            limit=config.limit,
            batch_size=config.batch_size,
            device=config.device,
        )
    except Exception as err:  # lm-eval raises many types; the caller must get a result
        if _looks_like_missing_data(err):
            message = (
                f"task data for {list(config.tasks)} is not available here ({err}). {NETWORK_HINT}"
            )
            return DownstreamResult(
                status="unavailable", message=message, checkpoint=str(checkpoint)
            )
        logger.exception("lm-eval failed on %s", checkpoint)
        return DownstreamResult(
            status="failed",
            message=f"lm-eval failed: {type(err).__name__}: {err}",
            checkpoint=str(checkpoint),
        )
    scores = _scores(results or {}, config.tasks)
    return DownstreamResult(
        status="ok",
        message=f"evaluated {len(scores)} tasks",
        checkpoint=str(checkpoint),
        scores=scores,
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m hf_megadocs.analysis.downstream CHECKPOINT [--tasks ...]``: 0 when
    evaluated, 1 when unavailable or failed, 2 for a bad command line."""
    from hf_megadocs.flags import ConfigError, parse_dataclass

    try:
        config = parse_dataclass(
            DownstreamConfig,
            argv,
            prog="python -m hf_megadocs.analysis.downstream",
            description="ARC-Easy / PIQA / SciQ accuracy of a checkpoint with lm-eval-harness.",
            positional="checkpoint",
        )
    except ConfigError as err:
        print(f"downstream: error: {err}", file=sys.stderr)
        return 2
    result = run_downstream(config)
    output = config.output
    if output is None and (Path(config.checkpoint) / "metrics.jsonl").is_file():
        output = str(Path(config.checkpoint) / "downstream.json")
    if output:
        Path(output).write_text(json.dumps(result.to_json(), indent=2), encoding="utf-8")
    if result.status != "ok":
        print(f"downstream {result.status}: {result.message}", file=sys.stderr)
        return 1
    for task, metrics in result.scores.items():
        print(f"{task}: " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
