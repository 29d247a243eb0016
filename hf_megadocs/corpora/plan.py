"""Plan a corpus: read and split the source, build its requests, fill what the store lacks.

:func:`plan_corpus` reads the source, splits it by ``source_id`` (validation documents are
never sent to the generator) and builds the requests the config needs, without generating.
:func:`prepare_corpus` is what the ``datasets`` builder runs in ``_split_generators``: it
plans, hands the requests to :func:`~hf_megadocs.generation.fill.fill_store` (the backend,
hence vLLM, is created only when something is missing) and checks every needed generation
once, so the rows (:mod:`~hf_megadocs.corpora.rows`), the counters and the run record agree.
:func:`split_sizes` only reads the source: what listing a corpus's splits needs.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hf_megadocs.adapters import adapter_hash, lora_label
from hf_megadocs.corpora import assembly
from hf_megadocs.corpora.config import MegadocsConfig
from hf_megadocs.corpora.doc_plans import DocPlan, DocPlans
from hf_megadocs.corpora.names import KEEPS_REAL_ROWS, ONE_ROW_PER_DOC
from hf_megadocs.generation.requests import document_budget, fit_tokens, make_request
from hf_megadocs.generation.sources import SourceStats, load_source
from hf_megadocs.generation.spilled_docs import spill_folder
from hf_megadocs.generation.store import GenerationStore, resolve_store_dir
from hf_megadocs.generation.survey import DocumentRequests
from hf_megadocs.records import GenerationRequest, SourceDoc

if TYPE_CHECKING:
    from hf_megadocs.generation.backends import GenerationBackend

logger = logging.getLogger(__name__)

SHARD_UNITS = 1000
"""Work units (documents, or document × sample) per shard in ``gen_kwargs``."""
READ_CHUNK = 4096
"""Generations fetched from the store per ``get_many`` call."""


@dataclass
class CorpusPlan:
    """Everything row assembly needs; picklable, so ``num_proc`` workers get a copy."""

    method: str
    num_generations: int
    seed: int
    store_dir: str
    separator: str = "\n\n"
    latent_open: str = "<thought>"
    latent_close: str = "</thought>"
    generator: str = ""
    prompt_id: str = ""
    prompt_hash: str = ""
    train: Sequence[DocPlan] = field(default_factory=list)
    """:class:`~hf_megadocs.corpora.doc_plans.DocPlans` when planned (on disk)."""
    validation: list[SourceDoc] = field(default_factory=list)
    validation_long: list[SourceDoc] = field(default_factory=list)
    unusable: frozenset[str] = frozenset()
    """Keys not assembled: missing (backend error), flagged empty/refusal, malformed."""
    counters: dict[str, Any] = field(default_factory=dict)

    def units_per_doc(self) -> int:
        """Work units per training document for this method."""
        if self.method == "real" or self.method in ONE_ROW_PER_DOC:
            return 1
        if self.method == "simple":  # the real document is a row of its own too
            return self.num_generations + 1
        return self.num_generations  # one row per generation

    def num_units(self, split: str) -> int:
        """Work units in ``split`` (each gives at most one row)."""
        if split == "validation":
            return len(self.validation)
        if split == "validation_long":
            return len(self.validation_long)
        return len(self.train) * self.units_per_doc()

    def shards(self, split: str) -> list[tuple[int, int, int]]:
        """``(shard_index, start, end)`` unit ranges: the list ``gen_kwargs`` splits over jobs."""
        total = self.num_units(split)
        return [
            (i, start, min(start + SHARD_UNITS, total))
            for i, start in enumerate(range(0, total, SHARD_UNITS))
        ]


# --------------------------------------------------------------------------- planning


def _read_sources(
    config: MegadocsConfig, counters: Counter, folder: Path | None
) -> tuple[Sequence[SourceDoc], list[SourceDoc], list[SourceDoc]]:
    """(train, validation, validation_long) documents, the train ones spilled to
    ``folder`` (None: only counted, in ``counters["docs_train"]``, and not returned);
    raises before any generation."""
    import dataclasses

    stats = SourceStats()
    num_train = 0

    def count(_: SourceDoc) -> bool:
        nonlocal num_train
        num_train += 1
        return folder is not None

    train, validation = config.read_documents(
        stats,
        spill_to=None if folder is None else folder / "train.docs",
        keep=count,
        whole_train_split=config.method == "real",
    )
    counters["source_read"] = stats.read
    counters.update({f"source_dropped:{k}": v for k, v in stats.skipped.items()})
    if not num_train:
        raise ValueError(
            f"Source {config.source.source!r} gave no training documents (read {stats.read}, "
            f"kept {stats.kept}, dropped {dict(stats.skipped)}, validation {len(validation)}); "
            "check source, source_split and text_column, or lower validation_fraction."
        )
    long_docs: list[SourceDoc] = []
    if config.long_doc_min_words is not None:
        if config.source.source == "embedded":  # the Lee articles are short; pydoc topics are long
            long_source = dataclasses.replace(config.source, source="embedded-long", max_docs=None)
            candidates = list(load_source(long_source))
        else:
            candidates = validation
        long_docs = [d for d in candidates if len(d.text.split()) >= config.long_doc_min_words]
    counters.update(docs_train=num_train, docs_validation=len(validation), docs_long=len(long_docs))
    return train, validation, long_docs


@dataclass(frozen=True)
class SplitSizes:
    """Documents in each split of a corpus (rows come later, from the generations)."""

    train: int
    validation: int
    validation_long: int


def split_sizes(config: MegadocsConfig) -> SplitSizes:
    """How many documents each split of ``config``'s corpus has, from the source alone.

    Builds no request and loads no generator or tokenizer; the train documents are counted,
    not kept. Raises as :func:`plan_corpus` does when the source gives no train document.
    """
    counters: Counter = Counter()
    _, validation, long_docs = _read_sources(config, counters, None)
    return SplitSizes(counters["docs_train"], len(validation), len(long_docs))


def _latent_builder(
    config: MegadocsConfig, prompt: Any, info: Any
) -> Callable[[Sequence[SourceDoc], Counter], list[GenerationRequest]]:
    """Requests of a latent-thought corpus: one rationale per split point of each document."""
    g, rule = config.num_generations, config.latent_split_rule
    sampling = config.sampling
    budget = document_budget(prompt, info, sampling)

    def build(docs: Sequence[SourceDoc], counters: Counter) -> list[GenerationRequest]:
        requests = []
        for doc in docs:
            points = assembly.latent_split_points(doc.text, g, rule)  # type: ignore[arg-type]
            if len(points) < g:
                counters["latent_clamped_docs"] += 1
            counters["latent_split_points"] += len(points)
            for i, fields in enumerate(assembly.latent_fields(doc.text, points)):
                suffix = fit_tokens(fields["suffix"], budget // 2, info.count_tokens, "head")
                prefix = fit_tokens(
                    fields["prefix"], budget - info.count_tokens(suffix), info.count_tokens, "tail"
                )
                if (prefix, suffix) != (fields["prefix"], fields["suffix"]):
                    counters["latent_fields_truncated"] += 1
                requests.append(
                    make_request(
                        doc.source_id,
                        prompt,
                        {"prefix": prefix, "suffix": suffix},
                        sample_index=0,
                        backend=info,
                        sampling=sampling,
                        input_part=f"latent:{rule}:{i}/{len(points)}",
                    )
                )
        return requests

    return build


def _sample_builder(
    config: MegadocsConfig, prompt: Any, info: Any
) -> Callable[[Sequence[SourceDoc], Counter], list[GenerationRequest]]:
    """Requests of the other corpora: G samples of the prompt per document."""

    def build(docs: Sequence[SourceDoc], counters: Counter) -> list[GenerationRequest]:
        batch = config.sample_requests(list(docs), prompt, config.num_generations, info)
        counters["requests_truncated_docs"] += batch.truncated
        counters.update({f"requests_skipped:{k}": v for k, v in batch.skipped.items()})
        return batch.requests

    return build


def _doc_plans(config: MegadocsConfig, requests: DocumentRequests, folder: Path) -> DocPlans:
    """Each document with the keys of its requests in order (one pass over the requests:
    its counters are the plan's) and, for latent thoughts, its split points."""

    def keys() -> Iterator[bytes]:
        for docs, window in requests.by_window():
            by_doc: dict[str, list[str]] = {}
            for request in window:
                by_doc.setdefault(request.source_id, []).append(request.key)
            for doc in docs:
                yield bytes.fromhex("".join(by_doc.get(doc.source_id, ())))

    def points() -> Iterator[list[int]]:
        for doc in requests.docs:
            if config.method != "latent":
                yield []
                continue
            yield assembly.latent_split_points(
                doc.text, config.num_generations, config.latent_split_rule
            )

    return DocPlans.write(requests.docs, keys(), points(), folder)  # type: ignore[arg-type]


def _check_generations(
    plan: CorpusPlan, store: GenerationStore, counters: Counter
) -> frozenset[str]:
    """Keys that assembly must skip, counted by reason (one pass over the needed records)."""
    unusable: set[str] = set()
    needed = 0
    per_chunk = max(1, READ_CHUNK // max(plan.num_generations, 1))
    for start in range(0, len(plan.train), per_chunk):
        chunk = [key for doc_plan in plan.train[start : start + per_chunk] for key in doc_plan.keys]
        needed += len(chunk)
        found = store.get_many(chunk)
        for key in chunk:
            generation = found.get(key)
            if generation is None:
                counters["generations_missing"] += 1
                unusable.add(key)
            elif not generation.usable:
                for flag in {"empty", "refusal", "failed"} & set(generation.flags):
                    counters[f"generations_unusable:{flag}"] += 1
                unusable.add(key)
            elif plan.method == "reformat" and assembly.parse_reformat(generation.text) is None:
                counters["generations_malformed_reformat"] += 1
                unusable.add(key)
    counters["generations_used"] = needed - len(unusable)
    return frozenset(unusable)


@dataclass
class CorpusRequests:
    """A planned corpus and the generation requests it needs (nothing generated yet)."""

    plan: CorpusPlan
    requests: DocumentRequests | list[GenerationRequest]
    """Built anew, window by window, each time it is read (empty for ``real``)."""
    prompt: Any | None
    """The prompt template (None for ``real``)."""
    counters: Counter
    info: Any | None
    """The generator identity the request keys were built with (None for ``real``)."""


def plan_corpus(config: MegadocsConfig, *, info: Any | None = None) -> CorpusRequests:
    """Read ``config``'s source, split it, and build the requests its corpus needs.

    ``info``: the generator's identity and tokenizer (a running backend qualifies); by
    default read from the config without starting an engine.
    """
    counters: Counter = Counter()
    plan = CorpusPlan(
        method=config.method,
        num_generations=config.num_generations,
        seed=config.sampling.seed,
        store_dir=str(resolve_store_dir(config.store_dir)),
        separator=config.separator,
        latent_open=config.latent_open,
        latent_close=config.latent_close,
    )
    folder = spill_folder(plan)
    train, plan.validation, plan.validation_long = _read_sources(config, counters, folder)
    if config.method == "real":
        plan.train = DocPlans.write(train, (b"" for _ in train), ([] for _ in train), folder)  # type: ignore[arg-type]
        return CorpusRequests(plan, [], None, counters, None)

    from hf_megadocs.generation.backends import generator_info
    from hf_megadocs.generation.prompts import get_prompt

    prompt = get_prompt(config.prompt_id, config.prompt_template_file)
    info = info if info is not None else generator_info(config.backend)
    lora = config.backend.lora_path
    make = _latent_builder if config.method == "latent" else _sample_builder
    requests = DocumentRequests(train, make(config, prompt, info))
    plan.train = _doc_plans(config, requests, folder)
    counters.update(requests.counters)
    plan.generator, plan.prompt_id, plan.prompt_hash = (
        lora_label(info.generator, lora and adapter_hash(lora)),
        prompt.prompt_id,
        prompt.content_hash,
    )
    return CorpusRequests(plan, requests, prompt, counters, info)


def prepare_corpus(
    config: MegadocsConfig, *, backend: GenerationBackend | None = None
) -> CorpusPlan:
    """Plan ``config``'s corpus and fill the store with the generations it lacks.

    ``backend``: an already-running backend to use (and leave open); by default one is
    made from the config only when some request is missing from the store.
    """
    planned = plan_corpus(config, info=backend)
    plan, counters = planned.plan, planned.counters
    if planned.prompt is None:  # the real corpus: no generation
        plan.counters = dict(counters)
        return plan

    from hf_megadocs.corpora.cost import corpus_estimator, corpus_run_config
    from hf_megadocs.corpora.partial import BackendErrors
    from hf_megadocs.disk_full import store_disk_full_errors
    from hf_megadocs.generation.backends import make_backend
    from hf_megadocs.generation.fill import fill_store

    store = GenerationStore(plan.store_dir)
    engine = backend if backend is not None else lambda work: make_backend(config.backend, work)
    estimator = corpus_estimator(config, planned, store, engine)  # estimate_only stops here
    errors = BackendErrors()

    def check(_: Any) -> dict[str, Any]:
        plan.unusable = _check_generations(plan, store, counters)
        return {"corpus": dict(counters)}

    with store_disk_full_errors(plan.store_dir):  # names the store, says a rerun resumes
        summary = fill_store(
            planned.requests,
            errors.watch(engine),
            store,
            prompts=[planned.prompt],
            run_config={
                **corpus_run_config(config, planned.info),
                "prompt_id": planned.prompt.prompt_id,
                "prompt_hash": planned.prompt.content_hash,
            },
            report=check,
            batch_size=config.batch_size,
            desc=f"{config.name}: generate",
            retry_failed=config.retry_failed,
            estimator=estimator,
        )
    plan.counters = {**dict(counters), "generation": summary.as_dict()}
    plan.counters["backend_errors"] = {"count": errors.count, "samples": errors.samples}
    nothing = counters["generations_used"] == 0 and not counters["generations_missing"]
    if nothing and config.method not in KEEPS_REAL_ROWS:  # missing ones: see corpora.partial
        raise ValueError(
            f"{config.name}: none of the {summary.requests} generations is usable, so the "
            f"train split would be empty (counters: {dict(counters)}). Check the generator and "
            "max_new_tokens, or the prompt (prompt_template_file); see the store's runs/ "
            "records for details."
        )
    logger.info(
        "%s: %d train docs, %d validation, %d long; %d generations used, %d unusable",
        config.name,
        len(plan.train),
        len(plan.validation),
        len(plan.validation_long),
        counters["generations_used"],
        len(plan.unusable),
    )
    return plan


__all__ = [
    "READ_CHUNK",
    "SHARD_UNITS",
    "CorpusPlan",
    "CorpusRequests",
    "DocPlan",
    "SplitSizes",
    "plan_corpus",
    "prepare_corpus",
    "split_sizes",
]
