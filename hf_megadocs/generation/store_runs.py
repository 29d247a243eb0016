"""The store's side records: every prompt template used, and a record of every run.

A run record holds the job's resolved settings, its summary (requests, tokens, seconds,
generated tokens per second) and the hardware it ran on
(:func:`~hf_megadocs.generation.hardware.current_hardware`): the pre-run estimate
(:mod:`.estimate`) reads the rate of earlier runs of a generator on the same hardware, and
the mean output length of its stored generations, from these records.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hf_megadocs.generation.hardware import current_hardware
from hf_megadocs.generation.prompts import PromptTemplate
from hf_megadocs.generation.store_writer import writer_name
from hf_megadocs.jsonl import append_record, read_records

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecordedRate:
    """The generation rate of earlier runs of a generator on this hardware."""

    tokens_per_s: float
    runs: int
    tokens: int
    startup_s: float | None
    """Mean engine start-up of the runs that started their own engine; None if none did."""


def _same_generator(run: Mapping[str, Any], generator: str, revision: str) -> bool:
    config = run.get("config", {})
    return config.get("generator") == generator and config.get("generator_revision") == revision


def recorded_rate(
    runs: Iterable[Mapping[str, Any]],
    generator: str,
    revision: str,
    hardware: str,
    backend: str | None = None,
) -> RecordedRate | None:
    """The generated tokens per second of ``runs`` of this generator that generated
    something on ``hardware`` (with ``backend`` when given), pooled: all their tokens over
    all their generation seconds. None when there is none."""
    tokens, seconds, count, startups = 0, 0.0, 0, []
    for run in runs:
        summary = run.get("summary", {})
        if not _same_generator(run, generator, revision) or run.get("hardware") != hardware:
            continue
        if backend is not None and summary.get("backend") != backend:
            continue
        if summary.get("completion_tokens", 0) <= 0 or summary.get("wall_s", 0) <= 0:
            continue
        tokens += int(summary["completion_tokens"])
        seconds += float(summary["wall_s"])
        count += 1
        if summary.get("startup_s", 0) > 0:
            startups.append(float(summary["startup_s"]))
    if not count:
        return None
    startup = sum(startups) / len(startups) if startups else None
    return RecordedRate(tokens / seconds, count, tokens, startup)


def recorded_output_tokens(
    runs: Iterable[Mapping[str, Any]],
    generator: str,
    revision: str,
    prompt_hash: str,
    max_new_tokens: int,
) -> tuple[float, int] | None:
    """(mean output tokens, generations) of the store's finished generations of this
    generator, prompt and ``max_new_tokens``, from its run records (a calibration batch
    records them per prompt); None when there is none."""
    tokens = generated = 0
    for run in runs:
        config, summary = run.get("config", {}), run.get("summary", {})
        if not _same_generator(run, generator, revision):
            continue
        parts = summary.get("outputs_by_prompt")
        if parts is not None:  # a calibration batch of several prompts
            for part in parts:
                if (part["prompt_hash"], part["max_new_tokens"]) == (prompt_hash, max_new_tokens):
                    tokens += int(part["completion_tokens"])
                    generated += int(part["generated"])
            continue
        if config.get("prompt_hash") != prompt_hash:
            continue
        if config.get("sampling.max_new_tokens") != max_new_tokens:
            continue
        tokens += int(summary.get("completion_tokens", 0))
        generated += int(summary.get("generated", 0))
    return (tokens / generated, generated) if generated else None


class PromptsAndRuns:
    """``prompts.jsonl`` and ``runs/`` under the store's ``root``."""

    root: Path

    def record_prompt(self, template: PromptTemplate) -> None:
        """Add ``template`` verbatim to ``prompts.jsonl`` unless its hash is already there."""
        if any(p["content_hash"] == template.content_hash for p in self.prompts()):
            return
        self.root.mkdir(parents=True, exist_ok=True)
        append_record(self.root / "prompts.jsonl", template.as_record())

    def prompts(self) -> list[dict[str, Any]]:
        """Every recorded prompt template (id, content_hash, system, user), first use first."""
        path = self.root / "prompts.jsonl"
        if not path.is_file():
            return []
        seen: dict[str, dict[str, Any]] = {}
        for record in read_records(path)[0]:
            seen.setdefault(record["content_hash"], record)
        return list(seen.values())

    def record_run(
        self,
        config: dict[str, Any],
        summary: dict[str, Any],
        *,
        shard_index: int = 0,
        num_shards: int = 1,
    ) -> Path:
        """Write ``runs/<writer>-<timestamp>.json`` with the resolved config, the summary and
        the hardware label of this machine."""
        runs = self.root / "runs"
        runs.mkdir(parents=True, exist_ok=True)
        now = time.time()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}"
        path = runs / f"{writer_name(shard_index, num_shards)}-{stamp}Z.json"
        tmp = path.with_suffix(".tmp")
        payload = {
            "config": config,
            "summary": summary,
            "created_utc": stamp + "Z",
            "hardware": current_hardware().label,
        }
        with tmp.open("w", encoding="utf-8") as handle:
            handle.write(json.dumps(payload, indent=2, sort_keys=True, default=str))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        return path

    def runs(self) -> list[dict[str, Any]]:
        """Every recorded run (config, summary, created_utc), oldest first."""
        folder = self.root / "runs"
        if not folder.is_dir():
            return []
        records = []
        for path in folder.glob("*.json"):
            try:
                records.append((json.loads(path.read_text(encoding="utf-8")), path.name))
            except ValueError as err:
                # Run records are written atomically; a broken one was damaged afterwards.
                logger.warning("Skipping unreadable run record %s (%s)", path, err)
        records.sort(key=lambda item: (item[0].get("created_utc", ""), item[1]))
        return [record for record, _ in records]


__all__ = ["PromptsAndRuns", "RecordedRate", "recorded_output_tokens", "recorded_rate"]
