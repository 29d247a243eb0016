"""Base vs tuned generator on held-out documents: mean reward per component.

Both generators are served by the project's own generation backends (the tuned one
through ``BackendConfig.lora_path``, as corpora will be generated), on the same prompts
with the same per-sample seeds, and scored by the run's reward functions.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import Any

from hf_megadocs.generation.backends import BackendConfig, make_backend
from hf_megadocs.generation.backends.sizing import Workload
from hf_megadocs.generation.prompts import PromptTemplate
from hf_megadocs.records import GenerationRequest, SamplingConfig

logger = logging.getLogger(__name__)


def evaluate_generator(
    backend: BackendConfig,
    prompt: PromptTemplate,
    rows: Sequence[dict[str, Any]],
    rewards: Sequence[Any],
    sampling: SamplingConfig,
    samples_per_doc: int = 2,
) -> dict[str, Any]:
    """Generate ``samples_per_doc`` outputs per row and average each reward over them.

    Returns ``{"rewards": {name: mean}, "scored": {name: n}, "outputs": n, "wall_s": s}``;
    a reward that returns None for an output leaves it out of that reward's mean.
    """
    if not rows:
        return {"rewards": {}, "scored": {}, "outputs": 0, "wall_s": 0.0}
    started = time.perf_counter()
    requests = [
        GenerationRequest(
            source_id=row["source_id"],
            prompt_id=prompt.prompt_id,
            prompt_hash=prompt.content_hash,
            generator=backend.generator or "",
            generator_revision="",
            sampling=sampling,
            sample_index=index,
            messages=tuple(row["prompt"]),
            lora=backend.lora_path,
        )
        for row in rows
        for index in range(samples_per_doc)
    ]
    engine = make_backend(backend, Workload(requests=requests, batch_size=len(requests)))
    try:
        outputs = engine.generate(requests)
    finally:
        engine.close()
    completions = [[{"role": "assistant", "content": out.text}] for out in outputs]
    sources = [row["source"] for row in rows for _ in range(samples_per_doc)]
    means: dict[str, float] = {}
    scored: dict[str, int] = {}
    for reward in rewards:
        values = [v for v in reward(completions=completions, source=sources) if v is not None]
        values = [v for v in values if not math.isnan(v)]
        scored[reward.__name__] = len(values)
        means[reward.__name__] = sum(values) / len(values) if values else math.nan
    wall = time.perf_counter() - started
    logger.info(
        "evaluated %s%s on %d outputs in %.1f s: %s",
        backend.generator,
        f" + {backend.lora_path}" if backend.lora_path else "",
        len(outputs),
        wall,
        ", ".join(f"{k}={v:.3f}" for k, v in means.items()),
    )
    return {"rewards": means, "scored": scored, "outputs": len(outputs), "wall_s": wall}


__all__ = ["evaluate_generator"]
