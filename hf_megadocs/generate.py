"""Fill the generation store with the generations a source corpus needs, and nothing more.

:func:`generate` reads the source, builds the requests, keeps this shard's share and asks
the backend only for keys the store does not have; the backend (and so vLLM) is created
only when something is missing. :func:`run_requests` is the reusable core: the corpus
builder calls it with its own requests (e.g. latent-thought rationales).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from tqdm.auto import tqdm

from hf_megadocs.backends import BackendConfig, GenerationBackend, Workload, make_backend
from hf_megadocs.cleaning import clean_output
from hf_megadocs.prompts import PROMPT_IDS, get_prompt
from hf_megadocs.records import GenerationRequest, SamplingConfig
from hf_megadocs.requests import CONTEXT_POLICIES, build_requests, generator_info
from hf_megadocs.sources import SourceConfig, SourceStats, load_source, validate_source
from hf_megadocs.splits import split_of
from hf_megadocs.store import GenerationStore, resolve_store_dir

logger = logging.getLogger(__name__)

BackendOrFactory = GenerationBackend | Callable[[Workload], GenerationBackend]


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


def shard_of(key: str, num_shards: int) -> int:
    """The shard that owns ``key`` (a hex store key)."""
    return int(key, 16) % num_shards


@dataclass(kw_only=True)
class GenerationConfig:
    """Everything that decides which generations a run produces, and where they go."""

    source: SourceConfig = field(default_factory=SourceConfig)
    """The real documents to rephrase."""
    prompt_id: str = "wiki"
    """Built-in prompt id (see ``hf_megadocs.prompts.PROMPT_IDS``); "rationale" needs the
    corpus builder (it fills prefix/suffix), not this command."""
    prompt_template_file: str | None = None
    """A template file replacing the built-in wording of ``prompt_id``."""
    num_samples: int = 4
    """G: generations per document (sample indices 0..G-1; a later larger G reuses these)."""
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    """Temperature, top-p, max_new_tokens and base seed."""
    backend: BackendConfig = field(default_factory=BackendConfig)
    """Which backend and generator."""
    store_dir: str | None = None
    """Root of the generation store (shared by every corpus built from it); None = the
    builder's default, ``<hf_megadocs cache>/store`` (``$HF_MEGADOCS_CACHE`` honoured)."""
    num_shards: int | None = None
    """Number of cooperating processes; None = from RANK/WORLD_SIZE, Slurm array, else 1."""
    shard_index: int | None = None
    """This process's shard in [0, num_shards); None = from the environment, else 0."""
    batch_size: int = 256
    """Requests per backend call and per store flush (a crash loses at most one batch)."""
    context_policy: Literal["truncate", "chunk", "skip"] = "truncate"
    """What to do with a document too long for the generator's context."""
    validation_fraction: float = 0.05
    """Share of documents held out as validation (never sent to the generator); the
    builder's default too, so pre-generating with the defaults wastes nothing."""
    split_seed: int = 0
    """Seed of the source-id hash that assigns documents to splits."""

    def __post_init__(self) -> None:
        if self.prompt_id not in PROMPT_IDS:
            raise ValueError(
                f"GenerationConfig.prompt_id={self.prompt_id!r} is unknown; use one of "
                f"{', '.join(PROMPT_IDS)}."
            )
        if self.prompt_id == "rationale":
            raise ValueError(
                "GenerationConfig.prompt_id='rationale' needs prefix/suffix fields that only the "
                "corpus builder fills; build a latent-thought corpus with "
                "load_dataset('hf_megadocs', 'latent_g<G>') instead."
            )
        if self.num_samples < 1:
            raise ValueError(
                f"GenerationConfig.num_samples must be >= 1 (G, samples per document), "
                f"got {self.num_samples}."
            )
        if self.batch_size < 1:
            raise ValueError(f"GenerationConfig.batch_size must be >= 1, got {self.batch_size}.")
        if self.context_policy not in CONTEXT_POLICIES:
            raise ValueError(
                f"GenerationConfig.context_policy must be one of {CONTEXT_POLICIES}, "
                f"got {self.context_policy!r}."
            )
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(
                f"GenerationConfig.validation_fraction must be in [0, 1), "
                f"got {self.validation_fraction}."
            )
        if (self.shard_index is None) != (self.num_shards is None):
            raise ValueError(
                "GenerationConfig.shard_index and num_shards go together: set both "
                f"(got shard_index={self.shard_index}, num_shards={self.num_shards}) or neither."
            )
        if self.num_shards is None:
            self.shard_index, self.num_shards = default_shard()
        if self.num_shards < 1 or not 0 <= self.shard_index < self.num_shards:
            raise ValueError(
                f"GenerationConfig.shard_index must be in [0, num_shards) with num_shards >= 1, "
                f"got shard_index={self.shard_index}, num_shards={self.num_shards}."
            )


@dataclass
class GenerationSummary:
    """What one run did: requests seen, served from the store, generated, failed; tokens; time."""

    requests: int = 0
    """Requests for this shard (after dropping other shards' and duplicates)."""
    cached: int = 0
    """Requests already in the store (not generated again)."""
    generated: int = 0
    """Generations written to the store in this run."""
    errors: int = 0
    """Backend errors (not stored; retried on the next run)."""
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
            ("generated", self.generated),
            ("errors (will retry)", self.errors),
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
        rows += [(f"skipped: {name}", count) for name, count in sorted(self.skipped.items())]
        return "\n".join(["| metric | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows])


def run_requests(
    requests: Sequence[GenerationRequest],
    backend: BackendOrFactory,
    store: GenerationStore,
    *,
    shard_index: int = 0,
    num_shards: int = 1,
    batch_size: int = 256,
    desc: str = "generate",
) -> GenerationSummary:
    """Generate this shard's requests that the store lacks, appending after every batch.

    ``backend`` may be a backend or a factory taking the :class:`Workload` (the missing
    requests, so an engine can be sized for them); a factory is called only when
    something is missing, and the backend it makes is closed before returning. Backend
    errors are counted and not stored, so the next run retries them.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    if not 0 <= shard_index < num_shards:
        raise ValueError(f"shard_index must be in [0, num_shards={num_shards}), got {shard_index}.")
    store.refresh()
    summary = GenerationSummary()
    missing: list[tuple[str, GenerationRequest]] = []
    seen: set[str] = set()
    for request in requests:
        key = request.key
        if shard_of(key, num_shards) != shard_index:
            summary.other_shards += 1
        elif key in seen:
            summary.duplicate_requests += 1
        else:
            seen.add(key)
            summary.requests += 1
            if key in store:
                summary.cached += 1
            else:
                missing.append((key, request))
    if not missing:
        logger.info(
            "%s: all %d requests are in the store; nothing to generate", desc, summary.requests
        )
        return summary

    owned = not hasattr(backend, "generate")  # a factory, called only now that work exists
    started = time.perf_counter()
    engine: GenerationBackend = (
        backend(Workload(requests=[r for _, r in missing], batch_size=batch_size))  # type: ignore[operator]
        if owned
        else backend  # type: ignore[assignment]
    )
    summary.startup_s = time.perf_counter() - started
    summary.backend = engine.name
    first = missing[0][1]
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
            store.writer(shard_index, num_shards) as writer,
            tqdm(total=len(missing), unit="req", desc=desc, dynamic_ncols=True) as progress,
        ):
            for start in range(0, len(missing), batch_size):
                chunk = missing[start : start + batch_size]
                outputs = engine.generate([request for _, request in chunk])
                if len(outputs) != len(chunk):
                    raise RuntimeError(
                        f"Backend {engine.name!r} returned {len(outputs)} outputs for "
                        f"{len(chunk)} requests; backends must return one output per request."
                    )
                keep = []
                for (_, request), raw in zip(chunk, outputs, strict=True):
                    generation = clean_output(raw, request, engine.name)
                    if raw.finish_reason == "error":
                        summary.errors += 1
                        logger.debug("Backend error for %s: %s", generation.key, raw.text[:200])
                        continue
                    keep.append(generation)
                    flags.update(generation.flags)
                    summary.prompt_tokens += raw.prompt_tokens
                    summary.completion_tokens += raw.completion_tokens
                    docs_done.add(request.source_id)
                writer.append(keep)
                summary.generated += len(keep)
                elapsed = max(time.perf_counter() - started, 1e-9)
                progress.update(len(chunk))
                progress.set_postfix(
                    tok_s=f"{summary.completion_tokens / elapsed:.1f}",
                    docs_s=f"{len(docs_done) / elapsed:.2f}",
                    errors=summary.errors,
                )
    finally:
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
    return summary


def generate(
    config: GenerationConfig, backend: GenerationBackend | None = None
) -> GenerationSummary:
    """Fill the store with ``config``'s missing generations for this shard; return a summary.

    ``backend`` (optional) is used as given and not closed; otherwise one is made from
    ``config.backend`` only if some request is missing from the store.
    """
    validate_source(config.source)
    prompt = get_prompt(config.prompt_id, config.prompt_template_file)
    source_stats = SourceStats()
    docs = []
    held_out = 0
    for doc in load_source(config.source, source_stats):
        if config.validation_fraction and (
            split_of(doc.source_id, config.validation_fraction, config.split_seed) == "validation"
        ):
            held_out += 1
            continue
        docs.append(doc)
    info = backend if backend is not None else generator_info(config.backend)
    batch = build_requests(
        docs,
        prompt,
        num_samples=config.num_samples,
        backend=info,
        sampling=config.sampling,
        lora=config.backend.lora_path,
        context_policy=config.context_policy,
    )
    store = GenerationStore(resolve_store_dir(config.store_dir))
    summary = run_requests(
        batch.requests,
        backend
        if backend is not None
        else (lambda workload: make_backend(config.backend, workload)),
        store,
        shard_index=config.shard_index,
        num_shards=config.num_shards,
        batch_size=config.batch_size,
        desc=f"generate {prompt.prompt_id} shard {config.shard_index}/{config.num_shards}",
    )
    skipped = {f"source:{reason}": n for reason, n in source_stats.skipped.items()}
    skipped.update({f"request:{reason}": n for reason, n in batch.skipped.items()})
    if held_out:
        skipped["validation_split"] = held_out
    summary.skipped = skipped
    store.record_prompt(prompt)
    store.record_run(
        {
            **dataclasses.asdict(config),
            "prompt_hash": prompt.content_hash,
            "generator": info.generator,
            "generator_revision": info.generator_revision,
        },
        {**summary.as_dict(), "source": source_stats.as_dict(), "requests_built": batch.as_dict()},
        shard_index=config.shard_index,
        num_shards=config.num_shards,
    )
    logger.info(
        "Generation done: %d docs, %d requests for this shard, %d cached, %d generated, "
        "%d errors, %.1f generated tok/s; store %s now holds %d generations",
        len(docs),
        summary.requests,
        summary.cached,
        summary.generated,
        summary.errors,
        summary.tokens_per_s,
        store.root,
        len(store),
    )
    return summary


__all__ = [
    "GenerationConfig",
    "GenerationSummary",
    "default_shard",
    "generate",
    "run_requests",
    "shard_of",
]
