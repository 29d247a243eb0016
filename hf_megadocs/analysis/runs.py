"""Read and validate training run directories written by ``recipes/train.py``.

A run directory holds ``config.json`` (the resolved TrainConfig plus ``num_params``,
``tokenizer``, ``method``, ``num_generations``, ``real_tokens``, ``synthetic_tokens``),
``metrics.jsonl`` (one ``{"kind": "train" | "eval", ...}`` object per line) and, once the
run has finished, ``summary.json``. Every problem is a :class:`RunError` that names the run
and says what to fix; nothing here guesses a missing number.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

REQUIRED_CONFIG_FIELDS: tuple[str, ...] = (
    "method",
    "num_generations",
    "real_tokens",
    "synthetic_tokens",
    "num_params",
    "tokenizer",
)
"""Fields of ``config.json`` the analysis needs; the trainer writes all of them."""

REAL_METHOD = "real"
"""The ``method`` value of real-only runs (the baseline and the data-scaling-law points)."""


class RunError(ValueError):
    """A run directory (or a set of runs) that the analysis cannot use; names the run."""


@dataclass(frozen=True, kw_only=True)
class Run:
    """One training run, read from its directory and checked."""

    path: Path
    """The run directory."""
    config: dict[str, Any]
    """``config.json`` as written by the trainer."""
    train_records: tuple[dict[str, Any], ...]
    """``metrics.jsonl`` records with ``kind == "train"``, in file order."""
    eval_records: tuple[dict[str, Any], ...]
    """``metrics.jsonl`` records with ``kind == "eval"``, in file order (at least one)."""
    summary: dict[str, Any] | None = None
    """``summary.json``; None for a run that has not finished (only with allow_unfinished)."""
    skipped_lines: int = 0
    """Unparseable ``metrics.jsonl`` lines that were skipped (only a torn last line)."""

    @property
    def name(self) -> str:
        """The directory name; used in tables, legends and error messages."""
        return self.path.name

    @property
    def method(self) -> str:
        return str(self.config["method"])

    @property
    def num_generations(self) -> int:
        """G, the generations per real document (0 for real-only runs)."""
        return int(self.config["num_generations"])

    @property
    def real_tokens(self) -> int:
        """Unique real training tokens (D of the data scaling law)."""
        return int(self.config["real_tokens"])

    @property
    def synthetic_tokens(self) -> int:
        return int(self.config["synthetic_tokens"])

    @property
    def num_params(self) -> int:
        return int(self.config["num_params"])

    @property
    def tokenizer(self) -> str:
        return str(self.config["tokenizer"])

    @property
    def finished(self) -> bool:
        return self.summary is not None

    @property
    def iid_loss(self) -> float:
        """Final i.i.d. held-out loss: ``summary.json`` when finished, else the last eval."""
        if self.summary is not None and _is_number(self.summary.get("iid_loss")):
            return float(self.summary["iid_loss"])
        return float(self.eval_records[-1]["iid_loss"])

    @property
    def long_context_loss(self) -> float | None:
        """Final long-context loss, or None when the run did not evaluate it."""
        if self.summary is not None and _is_number(self.summary.get("long_context_loss")):
            return float(self.summary["long_context_loss"])
        value = self.eval_records[-1].get("long_context_loss")
        return float(value) if _is_number(value) else None

    @property
    def long_context_by_position(self) -> dict[str, float]:
        """Final long-context loss per token-position bucket (``"0-512"`` → loss), in order."""
        for record in reversed(self.eval_records):
            buckets = record.get("long_context_loss_by_position")
            if isinstance(buckets, dict) and buckets:
                return {str(k): float(v) for k, v in sorted(buckets.items(), key=_bucket_start)}
        return {}

    @property
    def label(self) -> str:
        """A short human label: ``real`` or ``stitched G=32``."""
        if self.method == REAL_METHOD:
            return REAL_METHOD
        return f"{self.method} G={self.num_generations}"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _bucket_start(item: tuple[str, Any]) -> float:
    head = str(item[0]).split("-", 1)[0]
    try:
        return float(head)
    except ValueError:
        return math.inf


def _read_json(path: Path, run_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise RunError(f"run {run_dir}: {path.name} is not valid JSON ({err}).") from err
    if not isinstance(data, dict):
        raise RunError(
            f"run {run_dir}: {path.name} must hold a JSON object, got {type(data).__name__}."
        )
    return data


def _read_metrics(path: Path, run_dir: Path) -> tuple[list[dict], list[dict], int]:
    lines = path.read_text(encoding="utf-8").splitlines()
    train, evals, skipped = [], [], 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            # A crash mid-write tears only the last line; anything earlier is corruption.
            if number == len(lines):
                logger.warning(
                    "run %s: skipping torn last line %d of metrics.jsonl", run_dir, number
                )
                skipped += 1
                continue
            raise RunError(
                f"run {run_dir}: metrics.jsonl line {number} is not valid JSON ({err}); "
                "the file is corrupt, rerun or repair it."
            ) from err
        kind = record.get("kind") if isinstance(record, dict) else None
        if kind == "train":
            train.append(record)
        elif kind == "eval":
            if not _is_number(record.get("iid_loss")):
                raise RunError(
                    f"run {run_dir}: eval record on metrics.jsonl line {number} has no finite "
                    f"'iid_loss' (got {record.get('iid_loss')!r}); the eval was partial."
                )
            evals.append(record)
        else:
            raise RunError(
                f"run {run_dir}: metrics.jsonl line {number} has kind={kind!r}; "
                "allowed kinds are 'train' and 'eval'."
            )
    return train, evals, skipped


def load_run(run_dir: str | Path, *, allow_unfinished: bool = False) -> Run:
    """Read and validate one run directory.

    Raises :class:`RunError` naming the run when ``config.json`` or ``metrics.jsonl`` is
    missing or malformed, a required config field is absent, there is no eval record, or
    (unless ``allow_unfinished``) ``summary.json`` is missing.
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise RunError(f"run {path}: not a directory; pass the run's output directory.")
    config_path, metrics_path = path / "config.json", path / "metrics.jsonl"
    for required in (config_path, metrics_path):
        if not required.is_file():
            raise RunError(
                f"run {path}: missing {required.name}; is this a directory written by "
                "recipes/train.py?"
            )
    config = _read_json(config_path, path)
    missing = [name for name in REQUIRED_CONFIG_FIELDS if name not in config]
    if missing:
        raise RunError(
            f"run {path}: config.json lacks {missing}; the analysis needs {list(REQUIRED_CONFIG_FIELDS)}."
        )
    train, evals, skipped = _read_metrics(metrics_path, path)
    if not evals:
        raise RunError(
            f"run {path}: metrics.jsonl has no eval record (partial metrics: "
            f"{len(train)} train records); let the run reach its first eval."
        )
    summary_path = path / "summary.json"
    summary = _read_json(summary_path, path) if summary_path.is_file() else None
    if summary is None and not allow_unfinished:
        raise RunError(
            f"run {path}: no summary.json, so the run has not finished; finish or resume it, "
            "or pass allow_unfinished=True (--allow-unfinished) to use its last eval."
        )
    return Run(
        path=path,
        config=config,
        train_records=tuple(train),
        eval_records=tuple(evals),
        summary=summary,
        skipped_lines=skipped,
    )


def load_runs(run_dirs: Iterable[str | Path], *, allow_unfinished: bool = False) -> list[Run]:
    """Load several run directories; an empty list or a duplicate directory is an error."""
    paths = [Path(p) for p in run_dirs]
    if not paths:
        raise RunError("no run directories given; pass at least one RUN_DIR.")
    seen: set[Path] = set()
    for path in paths:
        resolved = path.resolve()
        if resolved in seen:
            raise RunError(f"run {path}: given twice; pass each run directory once.")
        seen.add(resolved)
    return [load_run(p, allow_unfinished=allow_unfinished) for p in paths]


def check_same(runs: Sequence[Run], attribute: str, purpose: str) -> None:
    """Refuse runs that differ in ``attribute`` (e.g. ``tokenizer``) for one ``purpose``.

    Losses under different tokenizers are in different units, and a data-scaling law fit
    across model sizes mixes two laws; the error lists each value with the runs that have it.
    """
    if not runs:
        raise RunError(f"{purpose}: no runs given.")
    by_value: dict[Any, list[str]] = {}
    for run in runs:
        by_value.setdefault(getattr(run, attribute), []).append(run.name)
    if len(by_value) > 1:
        detail = "; ".join(f"{value!r}: {names}" for value, names in by_value.items())
        raise RunError(
            f"{purpose}: runs differ in {attribute} ({detail}); use runs with one {attribute}."
        )
