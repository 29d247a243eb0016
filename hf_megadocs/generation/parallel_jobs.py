"""The jobs that run on several engines (:mod:`.data_parallel`) and their merged summary.

:func:`generate_in_parallel` is ``hf-megadocs generate`` with
``--backend.data_parallel_size N``; :func:`run_on_engines` runs any such job (a corpus
build's fill: :mod:`hf_megadocs.corpora.parallel_fill`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from hf_megadocs.generation.backends import BackendConfig
from hf_megadocs.generation.data_parallel import (
    EngineFailedError,
    EngineSlot,
    engine_backend,
    engine_shard,
    node_slots,
    run_engines,
)

logger = logging.getLogger(__name__)


def generate_in_parallel(config: Any, generate: Callable[[Any], Any]) -> Any:
    """``hf-megadocs generate`` on ``config.backend.data_parallel_size`` engines: each
    engine process runs ``generate`` (the one-engine job, passed in by its module) on its
    share of this command's shard.

    Returns the merged :class:`~hf_megadocs.generation.fill.GenerationSummary`; raises
    :class:`EngineFailedError` (with it) when some engine failed.
    """

    def engine_args(slot: EngineSlot, engines: int) -> tuple[Any, ...]:
        shard, shards = engine_shard(config.shard_index, config.num_shards, slot.index, engines)
        backend = engine_backend(config.backend, slot)
        return (dataclasses.replace(config, shard_index=shard, num_shards=shards, backend=backend),)

    return run_on_engines(generate, engine_args, config.backend)


def run_on_engines(
    job: Callable[..., Any],
    engine_args: Callable[[EngineSlot, int], tuple[Any, ...]],
    backend: BackendConfig,
) -> Any:
    """Run ``job(*engine_args(slot, N))`` on each of ``backend``'s N engine slots of this
    node; merge the summaries the jobs return. ``job``: a module-level function (it is
    pickled by name) returning a :class:`~hf_megadocs.generation.fill.GenerationSummary`.
    Raises :class:`EngineFailedError`, with the merged summary, when some engine failed."""
    _resolve_generator_once(backend)
    slots = node_slots(backend)
    args = [engine_args(slot, len(slots)) for slot in slots]
    logger.info(
        "data_parallel_size=%d: %s", len(slots), "; ".join(slot.describe() for slot in slots)
    )
    started = time.perf_counter()
    runs = run_engines(job, args, slots, tensor_parallel_size=backend.tensor_parallel_size)
    summary = merge_summaries([run.result for run in runs if run.result is not None])
    logger.info(
        "%d engines done in %.1f s (start-up included): %d generated, %d cached, %s",
        len(runs),
        time.perf_counter() - started,
        summary.generated,
        summary.cached,
        "; ".join(f"{run.slot.describe()}: {'ok' if run.ok else 'FAILED'}" for run in runs),
    )
    failed = [run for run in runs if not run.ok]
    if failed:
        raise EngineFailedError(failed, summary, len(runs))
    return summary


def _resolve_generator_once(backend: BackendConfig) -> None:
    # The embedded generator is converted on first use: once here, not raced by N workers.
    from hf_megadocs.generation.backends import resolve_backend_name

    if resolve_backend_name(backend) in ("vllm", "transformers"):
        from hf_megadocs.generation.embedded import resolve_generator

        resolve_generator(backend.generator, backend.revision, to_load=True)


def merge_summaries(parts: Sequence[dict[str, Any]]) -> Any:
    """One :class:`~hf_megadocs.generation.fill.GenerationSummary` from the engines'.

    Counts and counters add up. Source counters (``source:*``, ``validation_split``), which
    every engine counts over the whole source, are taken once; ``documents_of_other_shards``
    is left out: each engine counts the other engines' documents there, which this command
    did generate. Start-up and generation time are the slowest engine's (the engines run
    side by side), so ``tokens_per_s`` is the node's rate while they generate.
    """
    from hf_megadocs.generation.fill import GenerationSummary

    merged = GenerationSummary()
    skipped: Counter = Counter()
    for part in parts:
        for field in dataclasses.fields(GenerationSummary):
            value = part.get(field.name)
            if field.name == "skipped" or value is None:
                continue
            current = getattr(merged, field.name)
            if isinstance(current, dict):
                setattr(merged, field.name, dict(Counter(current) + Counter(value)))
            elif isinstance(current, int):
                setattr(merged, field.name, current + int(value))
            elif field.name in ("startup_s", "wall_s"):
                setattr(merged, field.name, max(current, float(value)))
            elif isinstance(current, str) and not current:
                setattr(merged, field.name, value)
        for key, count in (part.get("skipped") or {}).items():
            if key.startswith("request:"):
                skipped[key] += count
            elif key != "documents_of_other_shards":
                skipped[key] = count  # counted over the whole source: the same in every part
    merged.skipped = dict(skipped)
    merged.tokens_per_s = merged.completion_tokens / max(merged.wall_s, 1e-9)
    return merged


__all__ = ["generate_in_parallel", "merge_summaries", "run_on_engines"]
