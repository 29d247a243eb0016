"""Fill the generation store with what a list of requests lacks: the one orchestrator.

:func:`fill_store` is what every job runs, whatever built its requests (``hf-megadocs
generate`` over a source × prompt × G, the corpus builder with its rationales): it keeps
this shard's share, asks the backend only for keys the store does not have (the backend,
hence vLLM, is created only then, sized for exactly those requests), appends after every
batch, and records the prompts and a run record with the same counters for every caller.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from tqdm.auto import tqdm

from hf_megadocs.generation.backends import GenerationBackend, Workload
from hf_megadocs.generation.claims import Claims, claimed_batches
from hf_megadocs.generation.cleaning import clean_output
from hf_megadocs.generation.estimate import Estimator
from hf_megadocs.generation.failures import is_permanent, tombstone
from hf_megadocs.generation.prompts import PromptTemplate
from hf_megadocs.generation.store import GenerationStore, StoreWriter
from hf_megadocs.generation.survey import (
    RequestSource,
    Survey,
    missing_batches,
    shard_of,
    survey,
)
from hf_megadocs.locks import ExclusiveLock
from hf_megadocs.records import GenerationRequest

logger = logging.getLogger(__name__)

BackendOrFactory = GenerationBackend | Callable[[Workload], GenerationBackend]

IfBusy = Literal["wait", "refuse"]
"""What to do when another process is filling the same shard of the store: ``wait`` for it
and reuse what it generated (corpus builds), or ``refuse`` with its pid and host
(``hf-megadocs generate``, where the same shard started twice is a mistake)."""


def default_shard() -> tuple[int, int]:
    """(shard_index, num_shards) from the launcher's environment.

    ``RANK``/``WORLD_SIZE`` (torchrun, accelerate launch), else a Slurm job array
    (``SLURM_ARRAY_TASK_ID`` relative to ``SLURM_ARRAY_TASK_MIN``, ``SLURM_ARRAY_TASK_COUNT``),
    else (0, 1).
    """
    env = os.environ
    if "RANK" in env and "WORLD_SIZE" in env:
        return int(env["RANK"]), int(env["WORLD_SIZE"])
    if "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
        task = int(env["SLURM_ARRAY_TASK_ID"]) - int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
        return task, int(env["SLURM_ARRAY_TASK_COUNT"])
    return 0, 1


@dataclass
class GenerationSummary:
    """What one run did: requests seen, served from the store, generated, failed; tokens; time."""

    requests: int = 0
    """Requests for this shard (after dropping other shards' and duplicates)."""
    cached: int = 0
    """Requests already in the store (not generated again), ``other_fillers`` included."""
    other_fillers: int = 0
    """Requests missing at the survey that another filler of the store (another sharding,
    a build) stored while this one ran (:mod:`.claims`): not generated twice."""
    generated: int = 0
    """Generations written to the store in this run."""
    errors: int = 0
    """Transient backend errors (not stored; retried on the next run)."""
    failed: int = 0
    """Requests the backend rejected for good in this run: stored as tombstones (.failures)."""
    tombstoned: int = 0
    """Requests held as tombstones by earlier runs: in ``cached``, unless ``retry_failed``."""
    other_shards: int = 0
    """Requests left to the other shards."""
    duplicate_requests: int = 0
    """Requests with the same key as an earlier one in the same call."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    startup_s: float = 0.0
    """Seconds spent creating the backend (engine start), not counted in ``wall_s``."""
    wall_s: float = 0.0
    """Seconds spent generating and storing."""
    tokens_per_s: float = 0.0
    """Generated (completion) tokens per second of generation wall time."""
    flags: dict[str, int] = field(default_factory=dict)
    """Cleaning flags of the generations written in this run."""
    retries: dict[str, int] = field(default_factory=dict)
    """Attempts the backend retried, by cause ("429", "5xx", "timeout", "connection")."""
    skipped: dict[str, int] = field(default_factory=dict)
    """Documents dropped before generation, by reason ("source:empty", "request:too_long",
    "validation_split", ...)."""
    backend: str = ""
    """Backend name, or "" when nothing had to be generated."""

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view."""
        return dataclasses.asdict(self)

    def as_table(self) -> str:
        """A Markdown table of the summary, for printing."""
        rows = [
            ("requests (this shard)", self.requests),
            ("cached (already in store)", self.cached),
            ("stored meanwhile by other fillers", self.other_fillers),
            ("generated", self.generated),
            ("errors (will retry)", self.errors),
            ("failed for good (tombstones stored)", self.failed),
            ("tombstones of earlier runs", self.tombstoned),
            ("other shards", self.other_shards),
            ("duplicate requests", self.duplicate_requests),
            ("prompt tokens", self.prompt_tokens),
            ("completion tokens", self.completion_tokens),
            ("backend start (s)", f"{self.startup_s:.2f}"),
            ("generation wall time (s)", f"{self.wall_s:.2f}"),
            ("generated tok/s", f"{self.tokens_per_s:.1f}"),
            ("backend", self.backend or "(not started)"),
        ]
        rows += [(f"flag: {name}", count) for name, count in sorted(self.flags.items())]
        rows += [(f"retried: {name}", count) for name, count in sorted(self.retries.items())]
        rows += [(f"skipped: {name}", count) for name, count in sorted(self.skipped.items())]
        return "\n".join(["| metric | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows])


def shard_lock(store: GenerationStore, shard_index: int, num_shards: int) -> ExclusiveLock:
    """The lock one filler of shard ``shard_index`` of ``num_shards`` holds on ``store``."""
    return ExclusiveLock(
        store.generations_dir / f"shard-{shard_index}-of-{num_shards}.lock",
        f"shard {shard_index} of {num_shards} of the generation store {store.root}",
        fix="Let it finish (its generations are then reused), stop it, or run another shard.",
    )


def _generate_missing(
    requests: RequestSource,
    backend: BackendOrFactory,
    store: GenerationStore,
    *,
    shard_index: int = 0,
    num_shards: int = 1,
    batch_size: int = 256,
    desc: str = "generate",
    if_busy: IfBusy = "wait",
    estimator: Estimator | None = None,
) -> GenerationSummary:
    """Generate this shard's requests that the store lacks, appending after every batch.

    Only one process fills a shard at a time (:func:`shard_lock`); the lock is taken only
    when something is missing, so a read-only store that has everything still serves. Every
    batch is claimed before it is generated (:mod:`.claims`), so fillers of other shardings
    and builds on the same store never generate a key twice. The survey reads back every
    record it counts as cached (:meth:`GenerationStore.verifying`): a damaged one is
    generated again now, not found missing by the reads after the fill.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    if not 0 <= shard_index < num_shards:
        raise ValueError(f"shard_index must be in [0, num_shards={num_shards}), got {shard_index}.")
    store.refresh()
    logger.info("%s: before: %s", desc, store.health())
    with store.verifying():
        surveyed = survey(requests, store, shard_index, num_shards)
    summary = _summary(surveyed)
    if surveyed.missing:
        store.ensure_writable()
        lock = shard_lock(store, shard_index, num_shards).acquire(wait=if_busy == "wait")
        try:
            if lock.waited:  # the other filler may have generated what we lack
                store.refresh()
                with store.verifying():
                    surveyed = survey(requests, store, shard_index, num_shards)
                summary = _summary(surveyed)
            if surveyed.missing:
                if estimator is not None:  # the cost, said before any engine starts
                    backend = estimator.before(surveyed, store, backend)
                batches = functools.partial(
                    missing_batches, requests, store, batch_size, shard_index, num_shards
                )
                writer = functools.partial(store.writer, shard_index, num_shards)
                _generate(batches, surveyed, backend, writer, summary, batch_size, desc)
        finally:
            lock.release()
    if not surveyed.missing:
        logger.info(
            "%s: all %d requests are in the store; nothing to generate", desc, summary.requests
        )
    return summary


def _summary(surveyed: Survey) -> GenerationSummary:
    return GenerationSummary(
        requests=surveyed.requests,
        cached=surveyed.cached,
        other_shards=surveyed.other_shards,
        duplicate_requests=surveyed.duplicate_requests,
        tombstoned=surveyed.tombstoned,
    )


def _generate(
    batches: Callable[[], Iterator[list[GenerationRequest]]],
    surveyed: Survey,
    backend: BackendOrFactory,
    writer: Callable[[], StoreWriter],
    summary: GenerationSummary,
    batch_size: int,
    desc: str,
) -> None:
    """Start the backend if given a factory, generate the ``batches()`` this filler claims
    (:func:`~.claims.claimed_batches`) and append them one by one."""
    owned = not hasattr(backend, "generate")  # a factory, called only now that work exists
    started = time.perf_counter()
    engine: GenerationBackend = (
        backend(surveyed.workload(batch_size))  # type: ignore[operator]
        if owned
        else backend  # type: ignore[assignment]
    )
    # a running engine was started (and timed) elsewhere: recording its ~0 s here would pull
    # the start-up that later estimates take from recorded runs towards zero
    summary.startup_s = time.perf_counter() - started if owned else 0.0
    summary.backend = engine.name
    first = surveyed.shape_requests[0]
    if (engine.generator, engine.generator_revision) != (first.generator, first.generator_revision):
        logger.warning(
            "Backend generator %s@%s differs from the requests' %s@%s; outputs are stored "
            "under the requests' keys.",
            engine.generator,
            engine.generator_revision,
            first.generator,
            first.generator_revision,
        )
    flags: Counter = Counter()
    docs_done: set[str] = set()
    started = time.perf_counter()
    try:
        with (
            writer() as appender,
            Claims(appender.store, appender.name) as claims,
            tqdm(
                total=surveyed.missing, unit="req", desc=desc, smoothing=0, dynamic_ncols=True
            ) as progress,
        ):

            def stored_by_others(count: int) -> None:
                summary.cached += count
                summary.other_fillers += count
                progress.update(count)

            for chunk in claimed_batches(claims, batches, batch_size, stored_by_others):
                outputs = engine.generate(chunk)
                if len(outputs) != len(chunk):
                    raise RuntimeError(
                        f"Backend {engine.name!r} returned {len(outputs)} outputs for "
                        f"{len(chunk)} requests; backends must return one output per request."
                    )
                keep, failed, dead = [], [], []
                for request, raw in zip(chunk, outputs, strict=True):
                    generation = clean_output(raw, request, engine.name)
                    if is_permanent(raw):  # stored once, as a tombstone: not sent again
                        dead.append(tombstone(generation))
                        continue
                    if raw.finish_reason == "error":
                        summary.errors += 1
                        failed.append(request.key)
                        logger.debug("Backend error for %s: %s", generation.key, raw.text[:200])
                        continue
                    keep.append(generation)
                    flags.update(generation.flags)
                    summary.prompt_tokens += raw.prompt_tokens
                    summary.completion_tokens += raw.completion_tokens
                    docs_done.add(request.source_id)
                appender.append(keep + appender.store.unrecorded(dead))
                summary.failed += len(dead)
                claims.give_up(failed)
                summary.generated += len(keep)
                elapsed = max(time.perf_counter() - started, 1e-9)
                progress.update(len(chunk))
                progress.set_postfix(
                    tok_s=f"{summary.completion_tokens / elapsed:.1f}",
                    docs_s=f"{len(docs_done) / elapsed:.2f}",
                    errors=summary.errors,
                )
    finally:
        summary.retries = dict(getattr(engine, "retries", {}))
        if owned:
            engine.close()
    summary.wall_s = time.perf_counter() - started
    summary.tokens_per_s = summary.completion_tokens / max(summary.wall_s, 1e-9)
    summary.flags = dict(flags)
    if summary.errors:
        logger.warning(
            "%s: %d requests failed in the backend; they were not stored and the next run "
            "retries them.",
            desc,
            summary.errors,
        )
    if summary.failed:
        msg = "%s: %d requests rejected for good, kept as tombstones (retry_failed resends)"
        logger.warning(msg, desc, summary.failed)


def fill_store(
    requests: RequestSource,
    backend: BackendOrFactory,
    store: GenerationStore,
    *,
    prompts: Sequence[PromptTemplate] = (),
    run_config: Mapping[str, Any] | None = None,
    report: Callable[[GenerationSummary], Mapping[str, Any]] | None = None,
    shard_index: int = 0,
    num_shards: int = 1,
    batch_size: int = 256,
    desc: str = "generate",
    if_busy: IfBusy = "wait",
    retry_failed: bool = False,
    estimator: Estimator | None = None,
) -> GenerationSummary:
    """Generate the requests of this shard that ``store`` lacks; record prompts and the run.

    Args:
        requests: what the job needs (duplicates and other shards' keys are counted): a
            sequence, or a function building them window by window
            (:data:`~hf_megadocs.generation.survey.RequestSource`), so that millions of
            requests never sit in memory at once.
        backend: a running backend (used, not closed), or a factory taking the
            :class:`Workload` of missing requests (their count and the longest of them),
            called only when something is missing
            and closed before returning.
        prompts: the templates the requests were rendered from, kept verbatim in the store.
        run_config: the job's resolved settings, written with the summary to ``runs/``.
        report: the job's own counters for the run record, computed once generation is
            done (documents read and dropped, generations a corpus can use, ...).
        if_busy: when another process fills the same shard of this store, ``wait`` for it
            and then generate only what it left missing, or ``refuse``
            (:class:`~hf_megadocs.locks.LockHeldError` naming its pid, host and command).
        estimator: logs the estimate of what is missing before generating (:mod:`.estimate`).

    Transient backend errors are counted and not stored, so the next run retries them. A
    request the backend rejects for good is stored once as a tombstone
    (:mod:`~hf_megadocs.generation.failures`) and not sent again unless ``retry_failed``.
    """
    with store.retrying_failed(retry_failed):  # tombstones count as missing when retried
        summary = _generate_missing(
            requests,
            backend,
            store,
            shard_index=shard_index,
            num_shards=num_shards,
            batch_size=batch_size,
            desc=desc,
            if_busy=if_busy,
            estimator=estimator,
        )
    for prompt in prompts:
        store.record_prompt(prompt)
    store.record_run(
        dict(run_config or {}),
        {**summary.as_dict(), **(dict(report(summary)) if report else {})},
        shard_index=shard_index,
        num_shards=num_shards,
    )
    logger.info(
        "%s: %d requests for this shard, %d cached, %d generated, %d errors, %d failed for "
        "good, %d retried attempts, %.1f generated tok/s; after: %s",
        desc,
        summary.requests,
        summary.cached,
        summary.generated,
        summary.errors,
        summary.failed,
        sum(summary.retries.values()),
        summary.tokens_per_s,
        store.health(),
    )
    return summary


__all__ = [
    "BackendOrFactory",
    "GenerationSummary",
    "IfBusy",
    "default_shard",
    "fill_store",
    "shard_lock",
    "shard_of",
]
