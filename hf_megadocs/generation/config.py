"""The settings every generation job shares (source, split, sampling, backend, store), and
the two steps every job runs with them: read the documents, build the sample requests.

:class:`GenerationSettings` is declared once and composed by both the ``hf-megadocs
generate`` job (:class:`~hf_megadocs.generation.fill.GenerationConfig`) and the corpus
builder (:class:`~hf_megadocs.corpora.config.MegadocsConfig`), so both read the same
documents, hold out the same validation documents, key requests the same way and use the
same store unless told otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hf_megadocs.generation.backends import BackendConfig
from hf_megadocs.generation.prompts import PromptTemplate
from hf_megadocs.generation.requests import (
    CONTEXT_POLICIES,
    ContextPolicy,
    GeneratorInfo,
    RequestBatch,
    build_requests,
)
from hf_megadocs.generation.sources import SourceConfig, SourceStats, load_source
from hf_megadocs.generation.spilled_docs import SpilledDocs
from hf_megadocs.generation.splits import SplitConfig, in_subset
from hf_megadocs.records import SamplingConfig, SourceDoc
from hf_megadocs.settings import process_setting


@dataclass(kw_only=True)
class GenerationSettings:
    """What to read, what to hold out, how to sample, with which generator, into which store."""

    source: SourceConfig = field(default_factory=SourceConfig)
    """The real documents."""
    split: SplitConfig = field(default_factory=SplitConfig)
    """The validation documents held out from generation."""
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    """Temperature, top-p, max_new_tokens and base seed (part of every store key)."""
    backend: BackendConfig = field(default_factory=BackendConfig)
    """Which backend and generator, and the engine's settings."""
    prompt_template_file: str | None = None
    """A template file replacing the built-in wording of the prompt (e.g. a paper's own)."""
    context_policy: ContextPolicy = "truncate"
    """A document too long for the generator's context: "truncate" the copy sent, send it
    in parts ("chunk", ``hf-megadocs generate`` only) or "skip" it; every case is counted."""
    store_dir: str | None = None
    """Root of the generation store shared by every corpus; None = ``<hf_megadocs
    cache>/store`` (``$HF_MEGADOCS_CACHE`` or ~/.cache/hf_megadocs)."""
    batch_size: int = process_setting(256)
    """Requests per backend call and per store flush (a crash loses at most one batch)."""
    retry_failed: bool = process_setting(False)
    """Send again the requests the backend rejected for good on an earlier run (stored as
    tombstones, :mod:`~hf_megadocs.generation.failures`); a success replaces the tombstone."""
    estimate_only: bool = process_setting(False)
    """Log the estimate of what is missing (requests, tokens, time, device-hours, disk) and
    stop before generating; without a rate (``expected_tokens_per_s`` or recorded runs) a
    calibration batch is generated and stored first (:mod:`~hf_megadocs.generation.estimate`)."""
    expected_tokens_per_s: float | None = process_setting(None)
    """Generated tokens per second to estimate with; None = from the store's recorded runs of
    this generator on this hardware, else measured (a calibration batch)."""
    calibration_requests: int | None = process_setting(None)
    """Requests a calibration batch generates (``estimate_only`` without a rate), and after
    which a run logs the rate it measured; None = one batch (``batch_size``). A batched
    engine's rate grows with the sequences it runs at once, so a smaller batch than the
    run's measures a lower rate than the run will have."""

    def read_documents(
        self,
        stats: SourceStats,
        *,
        spill_to: Path | None = None,
        keep: Callable[[SourceDoc], bool] | None = None,
        whole_train_split: bool = False,
    ) -> tuple[Sequence[SourceDoc], list[SourceDoc]]:
        """(train, validation) documents of the source, split by ``source_id``; every
        dropped document is counted in ``stats``.

        The train documents are those of ``split.generate_fraction`` (counted in
        ``stats.skipped["outside_generate_fraction"]``) unless ``whole_train_split`` (the
        ``real`` corpus). ``keep`` filters them further (e.g. one shard's). With ``spill_to`` (a file
        path) they are streamed to disk and read back by position
        (:class:`~hf_megadocs.generation.spilled_docs.SpilledDocs`): a large source then
        never sits in memory as Python strings.
        """
        validation: list[SourceDoc] = []
        fraction = 1.0 if whole_train_split else self.split.generate_fraction

        def train() -> Iterator[SourceDoc]:
            for doc in load_source(self.source, stats):
                if self.split.of(doc.source_id) == "validation":
                    validation.append(doc)
                elif fraction < 1 and not in_subset(doc.source_id, fraction):
                    stats.skipped["outside_generate_fraction"] += 1
                elif keep is None or keep(doc):
                    yield doc

        if spill_to is None:
            return list(train()), validation
        return SpilledDocs.write(train(), spill_to), validation

    def sample_requests(
        self,
        docs: Sequence[SourceDoc],
        prompt: PromptTemplate,
        num_samples: int,
        info: GeneratorInfo,
    ) -> RequestBatch:
        """Samples ``0..num_samples-1`` of ``prompt`` for every document (see
        :func:`~hf_megadocs.generation.requests.build_requests`)."""
        return build_requests(
            docs,
            prompt,
            num_samples=num_samples,
            backend=info,
            sampling=self.sampling,
            lora=self.backend.lora_path,
            context_policy=self.context_policy,
        )

    def __post_init__(self) -> None:
        if self.context_policy not in CONTEXT_POLICIES:
            raise ValueError(
                f"context_policy must be one of {CONTEXT_POLICIES}, got {self.context_policy!r}."
            )
        if not isinstance(self.retry_failed, bool):
            raise ValueError(f"retry_failed must be True or False, got {self.retry_failed!r}.")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 request, got {self.batch_size}.")
        if self.expected_tokens_per_s is not None and self.expected_tokens_per_s <= 0:
            raise ValueError(
                "expected_tokens_per_s must be > 0 generated tokens per second, or None to "
                f"measure it, got {self.expected_tokens_per_s}."
            )
        if self.calibration_requests is not None and self.calibration_requests < 1:
            raise ValueError(
                f"calibration_requests must be >= 1 or None (one batch), "
                f"got {self.calibration_requests}."
            )


__all__ = ["GenerationSettings"]
