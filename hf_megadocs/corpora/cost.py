"""What a corpus build's generation will cost, said before it starts (and ``estimate_only``).

A build logs the scale warning (:mod:`.scale`) and hands the fill an
:class:`~hf_megadocs.generation.estimate.Estimator`, which logs the estimate of what the
store lacks before the engine starts. With the ``estimate_only`` knob the build stops
there instead (:class:`~hf_megadocs.generation.calibration.EstimateOnlyStop`, carrying the
estimate), after a calibration batch when no rate is known.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hf_megadocs.corpora.scale import warn_if_large
from hf_megadocs.generation.calibration import EstimateOnlyStop, estimate_only
from hf_megadocs.generation.estimate import Estimator, estimator_for

if TYPE_CHECKING:
    from hf_megadocs.corpora.config import MegadocsConfig
    from hf_megadocs.corpora.plan import CorpusRequests
    from hf_megadocs.generation.fill import BackendOrFactory
    from hf_megadocs.generation.store import GenerationStore


def corpus_estimator(
    config: MegadocsConfig,
    planned: CorpusRequests,
    store: GenerationStore,
    backend: BackendOrFactory,
) -> Estimator:
    """The estimator of ``config``'s fill; with ``estimate_only``, the estimate (calibrated
    with ``backend`` if needed) raised as :class:`EstimateOnlyStop`."""
    warn_if_large(config, planned.plan, store)
    desc = f"{config.name}: generate"
    estimator = estimator_for(config, planned.info, desc)
    if config.estimate_only:
        estimate = estimate_only(
            [planned.requests],
            store,
            estimator,
            backend,
            batch_size=config.batch_size,
            run_config=corpus_run_config(config, planned.info),
            desc=desc,
        )
        raise EstimateOnlyStop(estimate, f"hf_megadocs config {config.name!r}")
    return estimator


def corpus_run_config(config: MegadocsConfig, info: Any) -> dict[str, Any]:
    """The settings a corpus build records with its runs (prompt fields are added per
    prompt)."""
    return {
        **config.row_settings(),
        "config_name": config.name,
        "generator": info.generator,
        "generator_revision": info.generator_revision,
    }


__all__ = ["corpus_estimator", "corpus_run_config"]
