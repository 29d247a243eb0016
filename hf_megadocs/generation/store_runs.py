"""The store's side records: every prompt template used, and a record of every run."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from hf_megadocs.generation.prompts import PromptTemplate
from hf_megadocs.generation.store_writer import writer_name
from hf_megadocs.jsonl import append_record, read_records

logger = logging.getLogger(__name__)


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
        """Write ``runs/<writer>-<timestamp>.json`` with the resolved config and summary."""
        runs = self.root / "runs"
        runs.mkdir(parents=True, exist_ok=True)
        now = time.time()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}"
        path = runs / f"{writer_name(shard_index, num_shards)}-{stamp}Z.json"
        tmp = path.with_suffix(".tmp")
        payload = {"config": config, "summary": summary, "created_utc": stamp + "Z"}
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


__all__ = ["PromptsAndRuns"]
