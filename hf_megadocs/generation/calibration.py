"""``estimate_only``: say what a generation will cost and stop, calibrating the rate if needed.

With a rate from the user or from recorded runs of the generator on this hardware, no
engine starts: the estimate is made from the survey of the store alone. Without one, a
*calibration batch* measures it: the first ``calibration_requests`` missing requests (split
across the job's prompts) are generated with the job's own backend as one batch, the way the
run will send them (the rate depends on how many sequences run at once), and stored like any
others through :func:`~hf_megadocs.generation.fill.fill_store`, so its run record (rate,
hardware, output lengths per prompt, engine start-up) is what later estimates read, and the
real run does not generate them again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hf_megadocs.generation.backends.sizing import Workload
from hf_megadocs.generation.estimate import Estimator, GenerationEstimate
from hf_megadocs.generation.survey import (
    FIRST_MISSING,
    PROMPT_SAMPLES,
    PromptShare,
    RequestSource,
    Survey,
    survey,
)
from hf_megadocs.records import GenerationRequest

if TYPE_CHECKING:
    from hf_megadocs.generation.fill import BackendOrFactory
    from hf_megadocs.generation.store import GenerationStore

logger = logging.getLogger(__name__)


class EstimateOnlyStop(Exception):
    """A build asked for ``estimate_only`` stopped after its estimate (nothing more is
    generated; a calibration batch, if one ran, is stored)."""

    def __init__(self, estimate: GenerationEstimate, what: str) -> None:
        self.estimate = estimate
        super().__init__(
            f"{what}: estimate_only is set, so it stopped before generating "
            f"{estimate.missing:,} missing request(s); rerun without estimate_only to generate "
            f"them.\n{estimate.as_text()}"
        )


def calibration_batch(
    shares: Sequence[PromptShare], count: int
) -> list[tuple[PromptShare, list[GenerationRequest]]]:
    """Up to ``count`` of the first missing requests, taken in turn from each prompt's share
    (so every prompt's output length is measured), grouped by share."""
    picked: list[list[GenerationRequest]] = [[] for _ in shares]
    taken = 0
    for index in range(FIRST_MISSING):
        for share, chosen in zip(shares, picked, strict=True):
            if taken < count and index < len(share.first):
                chosen.append(share.first[index])
                taken += 1
        if taken >= count:
            break
    return [(s, chosen) for s, chosen in zip(shares, picked, strict=True) if chosen]


def calibrate(
    shares: Sequence[PromptShare],
    backend: BackendOrFactory,
    store: GenerationStore,
    *,
    count: int,
    batch_size: int,
    run_config: Mapping[str, Any],
    desc: str = "generate",
) -> int:
    """Generate and store a calibration batch of ``count`` requests of ``shares``; the
    number stored. ``backend``: a running one (left open) or a factory (started once for the
    batch, its start-up time recorded, then closed)."""
    from hf_megadocs.generation.fill import fill_store

    batches = calibration_batch(shares, count)
    if not batches:
        return 0
    requests = [r for _, chosen in batches for r in chosen]
    owned = not hasattr(backend, "generate")
    started = time.perf_counter()
    engine = (
        backend(Workload(requests=requests, batch_size=batch_size))  # type: ignore[operator]
        if owned
        else backend
    )
    startup = time.perf_counter() - started if owned else 0.0
    logger.info(
        "%s: calibration batch of %d request(s): %s", desc, len(requests),
        ", ".join(f"{len(chosen)} of prompt {share.prompt_id}" for share, chosen in batches),
    )  # fmt: skip
    try:  # one batch, as the run will send them: the rate depends on how many run at once
        summary = fill_store(
            requests,
            engine,  # type: ignore[arg-type]
            store,
            run_config={**run_config, "calibration": True},
            report=lambda _: {"startup_s": startup, "outputs_by_prompt": _outputs(requests, store)},
            batch_size=max(batch_size, len(requests)),
            desc=f"{desc}: calibrate",
        )
    finally:
        if owned:
            engine.close()  # type: ignore[union-attr]
    return summary.generated


def _outputs(requests: Sequence[GenerationRequest], store: GenerationStore) -> list[dict]:
    """Per prompt hash and ``max_new_tokens``: the stored generations among ``requests``
    and their output tokens (what :func:`~.estimate.recorded_output_tokens` reads)."""
    found = store.get_many(r.key for r in requests)
    tally: dict[tuple[str, int], list[int]] = {}
    for request in requests:
        generation = found.get(request.key)
        if generation is None or generation.finish_reason == "error":
            continue
        counts = tally.setdefault((request.prompt_hash, request.sampling.max_new_tokens), [0, 0])
        counts[0] += 1
        counts[1] += generation.completion_tokens
    return [
        {"prompt_hash": h, "max_new_tokens": m, "generated": n, "completion_tokens": t}
        for (h, m), (n, t) in tally.items()
    ]


def merge_shares(surveys: Iterable[Survey]) -> list[PromptShare]:
    """The prompt shares of several jobs' surveys on one store, as one job's: keys of the
    same prompt united (corpora that share requests count them once)."""
    merged: dict[tuple[str, int], PromptShare] = {}
    for surveyed in surveys:
        for group, share in surveyed.prompts.items():
            into = merged.setdefault(group, PromptShare(share.prompt_id, *group))
            into.lacking += share.lacking
            into.prompt_bytes += share.prompt_bytes
            into.parts.append(share.keys)
            seen = {id(m) for m in into.samples}
            into.samples += [m for m in share.samples if id(m) not in seen]
            into.samples = into.samples[:PROMPT_SAMPLES]
            known = {r.key for r in into.first}
            into.first += [r for r in share.first if r.key not in known]
            into.first = into.first[:FIRST_MISSING]
            into.stored = list(dict.fromkeys(into.stored + share.stored))[:FIRST_MISSING]
    for share in merged.values():
        share.finish()
    return list(merged.values())


def estimate_only(
    jobs: Sequence[RequestSource],
    store: GenerationStore,
    estimator: Estimator,
    backend: BackendOrFactory,
    *,
    batch_size: int,
    run_config: Mapping[str, Any],
    shard_index: int = 0,
    num_shards: int = 1,
    desc: str = "generate",
) -> GenerationEstimate:
    """The estimate of ``jobs`` (the requests of one job, or of several on the same store),
    calibrated when no rate is known (see the module); logged, and returned."""

    def look() -> tuple[list[PromptShare], int | None]:
        store.refresh()
        surveys = [survey(job, store, shard_index, num_shards) for job in jobs]
        # jobs may share requests: their total is only known for one
        return merge_shares(surveys), surveys[0].requests if len(surveys) == 1 else None

    shares, total = look()
    estimate = estimator.estimate(shares, store, requests=total)
    if estimate.missing and estimate.tokens_per_s is None:
        store.ensure_writable()
        stored = calibrate(
            shares,
            backend,
            store,
            count=estimator.calibration_requests,
            batch_size=batch_size,
            run_config=run_config,
            desc=desc,
        )
        shares, total = look()
        estimate = estimator.estimate(
            shares,
            store,
            requests=total,
            calibrated=stored,
            rate_from=f"calibration batch of {stored} request(s), generated and stored now",
        )
    logger.info("%s: %s", desc, estimate.as_text())
    return estimate


__all__ = [
    "EstimateOnlyStop",
    "calibrate",
    "calibration_batch",
    "estimate_only",
    "merge_shares",
]
