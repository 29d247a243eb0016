"""Corpora with generations still missing after their fill: refused, or kept out of the cache.

A request that fails at the backend (a server's 5xx after every retry, a timeout) is not
stored, so the next fill retries it. A corpus built without it would be short of G in
some rows, and ``datasets`` would serve that corpus from its cache on every later call,
even once the store is complete. So after the fill :func:`check_complete` either raises
:class:`PartialCorpusError` (the default: it says how many generations are missing and why;
everything generated is already in the store), or, with the ``allow_partial=True`` knob,
raises :class:`KeptOutOfCache`, on which the builder builds the corpus into a folder
outside the ``datasets`` cache (:func:`partial_output_dir`), removed when the process
exits: the next call finds no cached corpus and fills the store again.

:class:`BackendErrors` keeps the first few error texts the backend returned during a fill,
so that the refusal names the cause, not only the count.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hf_megadocs.corpora.names import KEEPS_REAL_ROWS
from hf_megadocs.generation.spilled_docs import spill_folder

if TYPE_CHECKING:
    from hf_megadocs.corpora.config import MegadocsConfig
    from hf_megadocs.corpora.plan import CorpusPlan
    from hf_megadocs.generation.backends import GenerationBackend, Workload
    from hf_megadocs.records import GenerationRequest, RawOutput

logger = logging.getLogger(__name__)

MAX_ERROR_SAMPLES = 3
"""Distinct backend error texts kept per fill (each cut to :data:`ERROR_SAMPLE_CHARS`)."""
ERROR_SAMPLE_CHARS = 300


class PartialCorpusError(RuntimeError):
    """Generations of the corpus are still missing after its fill; nothing was cached."""


class KeptOutOfCache(Exception):  # noqa: N818 - a signal to the builder, not an error
    """Raised inside ``datasets``' build (before anything is written) to build ``plan``,
    which lacks some generations, outside the cache instead (``allow_partial=True``)."""

    def __init__(self, plan: CorpusPlan) -> None:
        super().__init__("partial corpus: built outside the datasets cache")
        self.plan = plan


class BackendErrors:
    """The error texts a backend returned during one fill (the first few distinct ones)."""

    def __init__(self) -> None:
        self.count = 0
        self.samples: list[str] = []

    def record(self, outputs: Sequence[RawOutput]) -> None:
        """Note the failed outputs among ``outputs``."""
        for output in outputs:
            if output.finish_reason != "error":
                continue
            self.count += 1
            text = output.text[:ERROR_SAMPLE_CHARS]
            if len(self.samples) < MAX_ERROR_SAMPLES and text not in self.samples:
                self.samples.append(text)

    def watch(
        self, backend: GenerationBackend | Callable[[Workload], GenerationBackend]
    ) -> GenerationBackend | Callable[[Workload], GenerationBackend]:
        """``backend`` (a running one, or a factory, as ``fill_store`` takes them) with
        every output it returns noted here."""
        if hasattr(backend, "generate"):
            return _Watched(backend, self)  # type: ignore[arg-type,return-value]
        factory: Callable[[Workload], GenerationBackend] = backend  # type: ignore[assignment]
        return lambda workload: _Watched(factory(workload), self)  # type: ignore[return-value]


class _Watched:
    """A backend whose outputs are noted in a :class:`BackendErrors`; the rest delegates."""

    def __init__(self, backend: GenerationBackend, errors: BackendErrors) -> None:
        self._backend = backend
        self._errors = errors

    def generate(self, requests: Sequence[GenerationRequest]) -> list[RawOutput]:
        outputs = self._backend.generate(requests)
        self._errors.record(outputs)
        return outputs

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)


def missing_generations(plan: CorpusPlan) -> int:
    """Generations ``plan``'s train split needs that the store still lacks after the fill."""
    return int(plan.counters.get("generations_missing", 0))


def describe_missing(config: MegadocsConfig, plan: CorpusPlan) -> str:
    """How many generations are missing and why (the backend's failures of this fill)."""
    missing = missing_generations(plan)
    needed = int(plan.counters.get("generations_used", 0)) + len(plan.unusable)
    generation = plan.counters.get("generation", {})
    errors = plan.counters.get("backend_errors", {})
    failed = int(generation.get("errors", 0))
    if failed:
        retried = generation.get("retries") or {}
        retries = f", after retries {retried}" if retried else ""
        samples = "; ".join(repr(s) for s in errors.get("samples", [])) or "not recorded"
        sent = int(generation.get("requests", 0)) - int(generation.get("cached", 0))
        cause = (
            f"{failed} of the {sent} requests sent to the "
            f"{generation.get('backend') or config.backend.backend} backend failed{retries}; "
            f"its errors: {samples}"
        )
    else:
        cause = "no request failed in this fill; the store lost or never kept them"
    return (
        f"{missing} of the {needed} generations corpus {config.name!r} needs are missing "
        f"from the store {plan.store_dir} ({cause})"
    )


def check_complete(config: MegadocsConfig, plan: CorpusPlan) -> None:
    """Return when ``plan`` lacks no generation; otherwise refuse the corpus.

    Raises:
        PartialCorpusError: generations are missing and ``allow_partial`` is False.
        KeptOutOfCache: generations are missing and ``allow_partial`` is True.
    """
    if not missing_generations(plan):
        return
    rows = plan.counters.get("generations_used") or plan.method in KEEPS_REAL_ROWS
    if config.allow_partial and rows:
        raise KeptOutOfCache(plan)
    instead = (
        "Or pass allow_partial=True to get the corpus without them now (rows short of G; not "
        "cached, so the next call retries them)."
        if rows
        else f"No generation is usable, so even allow_partial=True has no {plan.method} row."
    )
    raise PartialCorpusError(
        f"{describe_missing(config, plan)}. The corpus was not built and nothing was cached; "
        "every generation that succeeded is kept in the store. Fix the cause and run the same "
        f"load_dataset call again: it generates only the missing ones. {instead}"
    )


class _ProcessLifetime:
    """Owner of the partial-corpus folders: lives as long as the process."""


_PROCESS = _ProcessLifetime()


def partial_output_dir(cache_root: str | Path) -> str:
    """A new folder for a partial corpus, next to (not in) the ``datasets`` cache under
    ``cache_root``; removed when this process exits, and by a later build once the process
    that made it no longer runs."""
    folder = spill_folder(_PROCESS, Path(cache_root) / "hf_megadocs_partial")
    return str(folder / "corpus")


__all__ = [
    "BackendErrors",
    "KeptOutOfCache",
    "PartialCorpusError",
    "check_complete",
    "describe_missing",
    "missing_generations",
    "partial_output_dir",
]
