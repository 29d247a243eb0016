"""A corpus build's generations on several engines of this node (``data_parallel_size``).

Before the build plans and assembles, each engine process plans the same corpus and fills
its share of the missing generations (documents split as ``hf-megadocs generate`` splits
them, :mod:`hf_megadocs.generation.data_parallel`); the build then finds them stored.
"""

from __future__ import annotations

import copy
from typing import Any

from hf_megadocs.corpora.config import MegadocsConfig
from hf_megadocs.generation.data_parallel import EngineSlot, engine_backend
from hf_megadocs.generation.fill import GenerationSummary
from hf_megadocs.generation.parallel_jobs import run_on_engines


def fill_corpus_in_parallel(config: MegadocsConfig) -> GenerationSummary:
    """Fill the store with what corpus ``config`` lacks, on ``config.backend.
    data_parallel_size`` engines; raises
    :class:`~hf_megadocs.generation.data_parallel.EngineFailedError` if one failed."""

    def engine_args(slot: EngineSlot, engines: int) -> tuple[Any, ...]:
        one = copy.copy(config)  # a BuilderConfig: no second __post_init__
        object.__setattr__(one, "backend", engine_backend(config.backend, slot))
        return (one, slot.index, engines)

    return run_on_engines(_fill_corpus_share, engine_args, config.backend)


def _fill_corpus_share(config: MegadocsConfig, engine: int, engines: int) -> GenerationSummary:
    from hf_megadocs.corpora.plan import plan_corpus
    from hf_megadocs.generation.backends import make_backend
    from hf_megadocs.generation.fill import fill_store
    from hf_megadocs.generation.store import GenerationStore

    planned = plan_corpus(config)
    if planned.prompt is None:  # the real corpus: nothing to generate
        return GenerationSummary()
    return fill_store(
        planned.requests,
        lambda work: make_backend(config.backend, work),
        GenerationStore(planned.plan.store_dir),
        prompts=[planned.prompt],
        run_config={
            **config.row_settings(),
            "config_name": config.name,
            "prompt_id": planned.prompt.prompt_id,
            "prompt_hash": planned.prompt.content_hash,
            "generator": planned.info.generator,
            "generator_revision": planned.info.generator_revision,
        },
        shard_index=engine,
        num_shards=engines,
        batch_size=config.batch_size,
        desc=f"{config.name}: generate (engine {engine}/{engines})",
    )


__all__ = ["fill_corpus_in_parallel"]
