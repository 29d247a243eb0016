"""The ``hf-megadocs generate`` job: G samples of one prompt for every document of a source.

It reads the source, holds out the validation documents, builds the requests and hands
them to :func:`~hf_megadocs.generation.fill.fill_store`, the same orchestrator the corpus
builder uses, so a store filled here is exactly what ``load_dataset("hf_megadocs", ...)``
later reads (same split, same keys, same default store).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

from hf_megadocs.disk_full import disk_full_errors, store_disk_full_errors
from hf_megadocs.generation.backends import GenerationBackend, generator_info, make_backend
from hf_megadocs.generation.calibration import estimate_only
from hf_megadocs.generation.config import GenerationSettings
from hf_megadocs.generation.estimate import GenerationEstimate, estimator_for
from hf_megadocs.generation.fill import GenerationSummary, default_shard, fill_store, shard_of
from hf_megadocs.generation.prompts import PROMPT_IDS, get_prompt
from hf_megadocs.generation.sources import SourceStats, validate_source
from hf_megadocs.generation.spilled_docs import spill_folder
from hf_megadocs.generation.store import GenerationStore, resolve_store_dir
from hf_megadocs.generation.survey import DocumentRequests
from hf_megadocs.records import GenerationRequest, SourceDoc
from hf_megadocs.settings import output_settings, process_setting

logger = logging.getLogger(__name__)


@dataclass(kw_only=True)
class GenerationConfig(GenerationSettings):
    """One generation job: the shared settings plus the prompt, G and this process's shard."""

    prompt_id: str = "wiki"
    """Built-in prompt id (one of ``hf_megadocs.generation.prompts.PROMPT_IDS``);
    "rationale" needs prefix/suffix fields that only the latent-thought builder fills."""
    num_samples: int = 4
    """G: generations per document (sample indices 0..G-1; a later larger G reuses these)."""
    num_shards: int | None = process_setting(None)
    """Cooperating processes; None = from RANK/WORLD_SIZE, a Slurm array, else 1."""
    shard_index: int | None = process_setting(None)
    """This process's shard in [0, num_shards); None = from the environment, else 0."""

    def __post_init__(self) -> None:
        super().__post_init__()
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
class EstimateSummary(GenerationSummary):
    """What ``generate`` returns with ``estimate_only``: the estimate, and the calibration
    batch it generated (``generated``), if any."""

    estimate: GenerationEstimate | None = None


def generate(
    config: GenerationConfig, backend: GenerationBackend | None = None
) -> GenerationSummary:
    """Fill the store with ``config``'s missing generations for this shard; return a summary.

    The estimate of what is missing (:mod:`~hf_megadocs.generation.estimate`) is logged
    before any engine generates; with ``estimate_only`` it is all that is done (with a
    calibration batch when no rate is known) and an :class:`EstimateSummary` is returned.

    ``backend`` (optional) is used as given and not closed; otherwise one is made from
    ``config.backend`` only if some request is missing from the store, or with
    ``backend.data_parallel_size`` N > 1 one per engine process
    (:mod:`~hf_megadocs.generation.data_parallel`; raises
    :class:`~hf_megadocs.generation.data_parallel.EngineFailedError` if one failed).
    """
    validate_source(config.source)
    prompt = get_prompt(config.prompt_id, config.prompt_template_file)
    # a store that cannot be written is refused before the generator is resolved (the
    # embedded one is converted on first use) and before any engine starts
    store = GenerationStore(resolve_store_dir(config.store_dir))
    store.ensure_writable()
    parallel = config.backend.data_parallel_size > 1 and not config.estimate_only
    if backend is None and parallel:  # N engine processes
        from hf_megadocs.generation.parallel_jobs import generate_in_parallel

        return generate_in_parallel(config, generate)
    source_stats = SourceStats()
    other_shards = 0

    def is_mine(doc: SourceDoc) -> bool:
        nonlocal other_shards
        mine = shard_of(doc.source_id, config.num_shards) == config.shard_index
        other_shards += not mine
        return mine

    # this shard's documents spilled to a memory-mapped file: constant memory at any size
    spill = spill_folder(source_stats)
    with disk_full_errors(
        spill,
        what=f"the documents' scratch copy {spill}",
        kept="Nothing already stored is lost (the store was not written yet).",
        resume="rerun the same command",
    ):
        mine, held_out = config.read_documents(
            source_stats, spill_to=spill / "documents.docs", keep=is_mine
        )
    info = backend if backend is not None else generator_info(config.backend)

    def build(window: Sequence[SourceDoc], counters: Counter) -> list[GenerationRequest]:
        batch = config.sample_requests(list(window), prompt, config.num_samples, info)
        batch.tally(counters)
        return batch.requests

    requests = DocumentRequests(mine, build)  # built per window: bounded memory
    built = requests.counters
    skipped = {f"source:{reason}": n for reason, n in source_stats.skipped.items()}
    if held_out:
        skipped["validation_split"] = len(held_out)
    if other_shards:
        skipped["documents_of_other_shards"] = other_shards

    def report(_: GenerationSummary) -> dict:
        skipped.update(
            {f"request:{k[8:]}": n for k, n in built.items() if k.startswith("skipped:")}
        )
        last = estimator.last  # the estimate beside what the run measured
        return {
            "skipped": skipped,
            "source": source_stats.as_dict(),
            "requests_built": built,
            "estimate": last.as_dict() if last is not None else None,
        }

    run_config = {
        **output_settings(config),
        "prompt_hash": prompt.content_hash,
        "generator": info.generator,
        "generator_revision": info.generator_revision,
    }
    desc = f"generate {prompt.prompt_id} shard {config.shard_index}/{config.num_shards}"
    estimator = estimator_for(config, info, desc)
    # a calibration batch runs on one engine: its rate is per engine, as the estimate's is
    engines = replace(config.backend, data_parallel_size=1) if config.estimate_only else None
    engine = (
        backend if backend is not None else lambda w: make_backend(engines or config.backend, w)
    )
    with store_disk_full_errors(store.root):  # names the store, says a rerun resumes
        if config.estimate_only:
            estimate = estimate_only(
                [requests], store, estimator, engine, batch_size=config.batch_size,
                run_config=run_config, shard_index=config.shard_index,
                num_shards=config.num_shards, desc=desc,
            )  # fmt: skip
            return EstimateSummary(
                requests=estimate.requests or 0,
                cached=(estimate.requests or 0) - estimate.missing - estimate.calibrated,
                generated=estimate.calibrated,
                estimate=estimate,
            )
        summary = fill_store(
            requests,
            engine,
            store,
            prompts=[prompt],
            run_config=run_config,
            report=report,
            shard_index=config.shard_index,
            num_shards=config.num_shards,
            batch_size=config.batch_size,
            desc=desc,
            if_busy="refuse",  # one shard started twice would pay for every generation twice
            retry_failed=config.retry_failed,
            estimator=estimator,
        )
    summary.skipped = skipped
    logger.info(
        "%d documents (%d held out for validation), %d of them on shard %d/%d: %d requests built",
        len(mine) + other_shards,
        len(held_out),
        len(mine),
        config.shard_index,
        config.num_shards,
        built["requests"],
    )
    return summary


__all__ = ["EstimateSummary", "GenerationConfig", "generate"]
