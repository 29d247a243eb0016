"""Say so before a corpus build generates far more than usual (``stitched_g100000``).

Any G >= 1 is a valid config name, so a typo can ask for hundreds of thousands of
requests. The rule (:func:`scale_warning`): a WARNING, before the backend starts, when the
requests to generate (those the store lacks) exceed :data:`MANY_REQUESTS`, or when G
exceeds :data:`LARGE_G` and anything is to be generated. It states the requests, the
documents, G and an upper estimate of the generated tokens (requests × max_new_tokens).
The listed configs go up to G = 32 and the tests and demos stay far below 10,000 requests;
a paper-scale build (millions of requests) is warned about too, which is the point: it is
hours of generation, and the message says what it will cost before it starts.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

from hf_megadocs.corpora.doc_plans import DocPlans

if TYPE_CHECKING:
    from hf_megadocs.corpora.config import MegadocsConfig
    from hf_megadocs.corpora.plan import CorpusPlan
    from hf_megadocs.generation.store import GenerationStore

logger = logging.getLogger(__name__)

MANY_REQUESTS = 10_000
"""Requests to generate above which a build warns before it starts."""
LARGE_G = 256
"""G above which a build that generates anything warns (8× the largest listed G)."""
LOOKUP_CHUNK = 65_536
"""Keys looked up in the store index per call."""


def scale_warning(
    *, requests: int, docs: int, num_generations: int, max_new_tokens: int
) -> str | None:
    """The warning for a build about to generate ``requests`` requests for ``docs`` documents
    at G = ``num_generations``, or None when that is within the usual (see the module)."""
    if requests <= MANY_REQUESTS and not (num_generations > LARGE_G and requests > 0):
        return None
    return (
        f"about to generate {requests:,} requests for {docs:,} document(s) at "
        f"G={num_generations:,}: up to {requests * max_new_tokens:,} generated tokens "
        f"(max_new_tokens={max_new_tokens:,}). That is far beyond the usual (warned above "
        f"{MANY_REQUESTS:,} requests or G > {LARGE_G}): check the config name's G and "
        "max_docs. Interrupting is safe: what is generated is kept in the store."
    )


def _needed_keys(plan: CorpusPlan) -> int:
    if isinstance(plan.train, DocPlans):
        return plan.train.num_keys
    return sum(doc_plan.num_keys for doc_plan in plan.train)


def _missing_keys(plan: CorpusPlan, store: GenerationStore) -> int:
    """Keys of ``plan`` that ``store`` lacks (index lookups; no record or text is read)."""
    if isinstance(plan.train, DocPlans):
        chunks = plan.train.iter_keys(LOOKUP_CHUNK)
    else:
        chunks = iter([[key for doc_plan in plan.train for key in doc_plan.keys]])
    missing = 0
    for keys in chunks:
        if keys:
            missing += int(np.count_nonzero(~store.contains(keys)))
    return missing


def warn_if_large(config: MegadocsConfig, plan: CorpusPlan, store: GenerationStore) -> None:
    """Log :func:`scale_warning` for ``plan`` when it applies (before the fill starts).

    The store is looked up only when the needed requests alone could trigger the rule, so
    a usual build pays nothing.
    """
    needed = _needed_keys(plan)
    if needed <= MANY_REQUESTS and config.num_generations <= LARGE_G:
        return
    message = scale_warning(
        requests=_missing_keys(plan, store),
        docs=len(plan.train),
        num_generations=config.num_generations,
        max_new_tokens=config.sampling.max_new_tokens,
    )
    if message:
        logger.warning("%s: %s", config.name, message)


__all__ = ["LARGE_G", "MANY_REQUESTS", "scale_warning", "warn_if_large"]
