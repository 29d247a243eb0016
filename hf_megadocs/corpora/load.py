"""The front door: ``load_corpus`` (``load_dataset`` without the registration) and one
generation engine shared by several corpora."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from hf_megadocs.corpora.builder import MegadocsBuilder
from hf_megadocs.corpora.config import config_from_knobs
from hf_megadocs.corpora.cost import corpus_run_config
from hf_megadocs.corpora.plan import plan_corpus
from hf_megadocs.corpora.registration import builder_module_hash
from hf_megadocs.generation.backends import Workload, make_backend
from hf_megadocs.generation.calibration import EstimateOnlyStop, estimate_only, merge_shares
from hf_megadocs.generation.estimate import estimator_for
from hf_megadocs.generation.store import GenerationStore, resolve_store_dir
from hf_megadocs.generation.survey import survey

if TYPE_CHECKING:
    import datasets

    from hf_megadocs.generation.backends import GenerationBackend

logger = logging.getLogger(__name__)

LOAD_ARGUMENTS = frozenset({"cache_dir", "num_proc"})
""":func:`load_corpus` arguments that are not corpus settings (where and how to build)."""


def load_corpus(
    name: str,
    *,
    split: str | None = None,
    streaming: bool = False,
    cache_dir: str | None = None,
    download_mode: str | None = None,
    num_proc: int | None = None,
    generation_backend: GenerationBackend | None = None,
    **config_kwargs: Any,
) -> (
    datasets.DatasetDict
    | datasets.Dataset
    | datasets.IterableDatasetDict
    | datasets.IterableDataset
):
    """``load_dataset("hf_megadocs", name, **config_kwargs)`` without the registration.

    ``generation_backend`` (not a config knob, not part of the cache fingerprint) is an
    already-running backend used for any missing generation, e.g. one vLLM engine shared
    by several corpora in one process (:func:`shared_backend`). With ``streaming=True``
    nothing is generated (and ``generation_backend`` is unused): the rows stream from a
    store that holds every generation the corpus needs, or
    :class:`~hf_megadocs.corpora.stored.CorpusNotGeneratedError` says how to fill it.
    """
    builder = MegadocsBuilder(
        cache_dir=cache_dir,
        dataset_name="hf_megadocs",
        config_name=name,
        hash=builder_module_hash(),
        **config_kwargs,
    )
    builder.generation_backend = generation_backend
    if streaming:
        return builder.as_streaming_dataset(split=split)
    builder.download_and_prepare(download_mode=download_mode, num_proc=num_proc)
    return builder.as_dataset(split=split)


def shared_backend(names: list[str], **config_kwargs: Any) -> GenerationBackend | None:
    """One backend for every corpus in ``names``, sized for all their missing requests.

    Plans each corpus (no generation), collects the requests the store lacks and starts
    one engine for all of them; hand it to :func:`load_corpus` (``generation_backend=``)
    for each name and close it after. None when nothing is missing: no engine starts.
    The estimate of all their missing generations is logged first; with ``estimate_only``
    it is raised instead (:class:`EstimateOnlyStop`), after a calibration batch if no
    rate is known.
    All names share the generator settings in ``config_kwargs``; the :data:`LOAD_ARGUMENTS`
    among them (where and how to build) are ignored here, so the same keyword arguments
    can go to both functions.
    """
    knobs = {k: v for k, v in config_kwargs.items() if k not in LOAD_ARGUMENTS}
    configs = [config_from_knobs(name, **knobs) for name in names]
    synthetic = [c for c in configs if c.method != "real"]
    if not synthetic:
        return None
    store = GenerationStore(resolve_store_dir(synthetic[0].store_dir))
    info = None
    missing_keys, longest, jobs, surveys = [], [], [], []
    for config in synthetic:
        planned = plan_corpus(config, info=info)
        info = planned.info
        surveyed = survey(planned.requests, store)
        missing_keys.append(surveyed.missing_keys)
        longest += surveyed.shape_requests
        jobs.append(planned.requests)
        surveys.append(surveyed)
    first = synthetic[0]
    label = ", ".join(c.name for c in synthetic)
    estimator = estimator_for(first, info, f"{label}: generate")
    if first.estimate_only:  # every corpus's estimate at once, then stop
        estimate = estimate_only(
            jobs, store, estimator, lambda work: make_backend(first.backend, work),
            batch_size=first.batch_size, desc=estimator.desc,
            run_config={**corpus_run_config(first, info), "config_name": label},
        )  # fmt: skip
        raise EstimateOnlyStop(estimate, label)
    missing = len(np.unique(np.concatenate(missing_keys)))
    if not missing:
        logger.info("every generation of %s is in the store; no engine started", names)
        return None
    estimator.announce(merge_shares(surveys), store, requests=None)
    store.ensure_writable()
    logger.info("%d generations missing across %s: starting one backend", missing, names)
    return make_backend(
        synthetic[0].backend,
        Workload(requests=longest, batch_size=synthetic[0].batch_size, num_requests=missing),
    )


__all__ = ["LOAD_ARGUMENTS", "load_corpus", "shared_backend"]
