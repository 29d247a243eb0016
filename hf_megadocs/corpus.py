"""Plan a corpus, fill the generations it needs, and turn the store into rows.

:func:`prepare_corpus` is what the ``datasets`` builder runs in ``_split_generators``: read
the source, split it by ``source_id`` (validation documents are never sent to the
generator), build the requests the config needs, generate only the ones the store lacks
(the backend, hence vLLM, is created only then), and check every generation once so the
rows, the counters and the run record agree (rows come from :mod:`hf_megadocs.rows`).
:func:`load_corpus` is ``load_dataset("hf_megadocs", ...)`` without
the registration.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hf_megadocs import assembly
from hf_megadocs.records import GenerationRequest, SamplingConfig, SourceDoc
from hf_megadocs.splits import split_of

if TYPE_CHECKING:
    import datasets

    from hf_megadocs.backends import BackendConfig, GenerationBackend
    from hf_megadocs.builder import MegadocsConfig
    from hf_megadocs.store import GenerationStore

logger = logging.getLogger(__name__)

SHARD_UNITS = 1000
"""Work units (documents, or document × sample) per shard in ``gen_kwargs``."""
READ_CHUNK = 4096
"""Generations fetched from the store per ``get_many`` call."""
_WORD = re.compile(r"\S+")
_KEEPS_REAL_ROWS = ("simple", "stitched", "stitched_real_first", "latent")
"""Methods whose train rows contain the real documents, so they are never empty."""


@dataclass(frozen=True, slots=True)
class DocPlan:
    """One training document and the store keys of its generations, in order."""

    doc: SourceDoc
    keys: tuple[str, ...] = ()
    """Sample 0..G-1 (rephrases, qa, …) or split point 0..G'-1 (latent rationales)."""
    points: tuple[int, ...] = ()
    """Latent split points (character offsets); empty for other methods."""


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
    train: list[DocPlan] = field(default_factory=list)
    validation: list[SourceDoc] = field(default_factory=list)
    validation_long: list[SourceDoc] = field(default_factory=list)
    unusable: frozenset[str] = frozenset()
    """Keys not assembled: missing (backend error), flagged empty/refusal, malformed."""
    counters: dict[str, Any] = field(default_factory=dict)

    def units_per_doc(self) -> int:
        """Work units per training document for this method."""
        if self.method == "simple":
            return self.num_generations + 1
        if self.method in ("reformat", "qa", "textbook"):
            return self.num_generations
        return 1

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


def _source_config(config: MegadocsConfig, source: str, max_docs: int | None) -> Any:
    from hf_megadocs.sources import SourceConfig

    return SourceConfig(
        source=source,
        text_column=config.text_column,
        id_column=config.id_column,
        split=config.source_split,
        dataset_config=config.source_config,
        max_docs=max_docs,
        on_bad_input=config.on_bad_input,
    )


def backend_config(config: MegadocsConfig) -> BackendConfig:
    """The :class:`~hf_megadocs.backends.BackendConfig` a corpus config asks for."""
    from hf_megadocs.backends import BackendConfig

    return BackendConfig(
        backend=config.backend,
        generator=config.generator,
        revision=config.generator_revision,
        base_url=config.base_url,
        max_model_len=config.max_model_len,
        dtype=config.dtype,
        tensor_parallel_size=config.tensor_parallel_size,
        gpu_memory_utilization=config.gpu_memory_utilization,
        kv_cache_memory_gb=config.kv_cache_memory_gb,
        cpu_threads=config.cpu_threads,
        enforce_eager=config.enforce_eager,
    )


def sampling_config(config: MegadocsConfig) -> SamplingConfig:
    """The sampling part of every request key."""
    return SamplingConfig(
        temperature=config.temperature,
        top_p=config.top_p,
        max_new_tokens=config.max_new_tokens,
        seed=config.seed,
    )


def _read_sources(config: MegadocsConfig, counters: Counter) -> tuple[list[SourceDoc], ...]:
    """(train, validation, validation_long) documents; raises before any generation."""
    from hf_megadocs.sources import SourceStats, load_source

    stats = SourceStats()
    train: list[SourceDoc] = []
    validation: list[SourceDoc] = []
    for doc in load_source(_source_config(config, config.source, config.max_docs), stats):
        if split_of(doc.source_id, config.validation_fraction, config.split_seed) == "validation":
            validation.append(doc)
        else:
            train.append(doc)
    counters["source_read"] = stats.read
    counters.update({f"source_dropped:{k}": v for k, v in stats.skipped.items()})
    if not train:
        raise ValueError(
            f"Source {config.source!r} gave no training documents (read {stats.read}, kept "
            f"{stats.kept}, dropped {dict(stats.skipped)}, validation {len(validation)}); check "
            "source, source_split and text_column, or lower validation_fraction."
        )
    long_docs: list[SourceDoc] = []
    if config.long_doc_min_words is not None:
        if config.source == "embedded":  # the Lee articles are short; pydoc topics are long
            candidates = list(load_source(_source_config(config, "embedded-long", None)))
        else:
            candidates = validation
        long_docs = [d for d in candidates if len(d.text.split()) >= config.long_doc_min_words]
    counters.update(
        docs_train=len(train), docs_validation=len(validation), docs_long=len(long_docs)
    )
    return train, validation, long_docs


def _cut(text: str, budget: int, count_tokens: Any, keep: str) -> str:
    """The longest whitespace-aligned head (``keep="head"``) or tail of ``text`` within
    ``budget`` tokens (binary search; the tokenizer decides)."""
    if len(text.encode("utf-8")) + 1 <= budget or count_tokens(text) <= budget:
        return text
    cuts = [m.start() for m in _WORD.finditer(text)][1:]
    if keep == "tail":
        cuts = cuts[::-1]
    lo, hi, best = 0, len(cuts) - 1, ""
    while lo <= hi:
        mid = (lo + hi) // 2
        piece = text[: cuts[mid]] if keep == "head" else text[cuts[mid] :]
        if count_tokens(piece) <= budget:
            best, lo = piece, mid + 1
        else:
            hi = mid - 1
    return best


def _latent_requests(
    config: MegadocsConfig, train: list[SourceDoc], prompt: Any, info: Any, counters: Counter
) -> tuple[list[DocPlan], list[GenerationRequest]]:
    from hf_megadocs.requests import document_budget, make_request

    g, rule = config.num_generations, config.latent_split_rule
    sampling = sampling_config(config)
    budget = document_budget(prompt, info, sampling)
    plans, requests = [], []
    for doc in train:
        points = assembly.latent_split_points(doc.text, g, rule)  # type: ignore[arg-type]
        if len(points) < g:
            counters["latent_clamped_docs"] += 1
        counters["latent_split_points"] += len(points)
        keys = []
        for i, fields in enumerate(assembly.latent_fields(doc.text, points)):
            suffix = _cut(fields["suffix"], budget // 2, info.count_tokens, "head")
            prefix = _cut(
                fields["prefix"], budget - info.count_tokens(suffix), info.count_tokens, "tail"
            )
            if (prefix, suffix) != (fields["prefix"], fields["suffix"]):
                counters["latent_fields_truncated"] += 1
            request = make_request(
                doc.source_id,
                prompt,
                {"prefix": prefix, "suffix": suffix},
                sample_index=0,
                backend=info,
                sampling=sampling,
                input_part=f"latent:{rule}:{i}/{len(points)}",
            )
            requests.append(request)
            keys.append(request.key)
        plans.append(DocPlan(doc, tuple(keys), tuple(points)))
    return plans, requests


def _sample_requests(
    config: MegadocsConfig, train: list[SourceDoc], prompt: Any, info: Any, counters: Counter
) -> tuple[list[DocPlan], list[GenerationRequest]]:
    from hf_megadocs.requests import build_requests

    batch = build_requests(
        train,
        prompt,
        num_samples=config.num_generations,
        backend=info,
        sampling=sampling_config(config),
        context_policy=config.context_policy,
    )
    counters["requests_truncated_docs"] = batch.truncated
    counters.update({f"requests_skipped:{k}": v for k, v in batch.skipped.items()})
    by_doc: dict[str, list[str]] = {}
    for request in batch.requests:
        by_doc.setdefault(request.source_id, []).append(request.key)
    return [DocPlan(doc, tuple(by_doc.get(doc.source_id, ()))) for doc in train], batch.requests


def _check_generations(
    plan: CorpusPlan, store: GenerationStore, counters: Counter
) -> frozenset[str]:
    """Keys that assembly must skip, counted by reason (one pass over the needed records)."""
    keys = [key for doc_plan in plan.train for key in doc_plan.keys]
    unusable: set[str] = set()
    for start in range(0, len(keys), READ_CHUNK):
        chunk = keys[start : start + READ_CHUNK]
        found = store.get_many(chunk)
        for key in chunk:
            generation = found.get(key)
            if generation is None:
                counters["generations_missing"] += 1
                unusable.add(key)
            elif not generation.usable:
                for flag in {"empty", "refusal"} & set(generation.flags):
                    counters[f"generations_unusable:{flag}"] += 1
                unusable.add(key)
            elif plan.method == "reformat" and assembly.parse_reformat(generation.text) is None:
                counters["generations_malformed_reformat"] += 1
                unusable.add(key)
    counters["generations_used"] = len(keys) - len(unusable)
    return frozenset(unusable)


@dataclass
class CorpusRequests:
    """A planned corpus and the generation requests it needs (nothing generated yet)."""

    plan: CorpusPlan
    requests: list[GenerationRequest]
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
    from hf_megadocs.store import resolve_store_dir

    counters: Counter = Counter()
    train, validation, long_docs = _read_sources(config, counters)
    plan = CorpusPlan(
        method=config.method,
        num_generations=config.num_generations,
        seed=config.seed,
        store_dir=str(resolve_store_dir(config.store_dir)),
        separator=config.separator,
        latent_open=config.latent_open,
        latent_close=config.latent_close,
        validation=validation,
        validation_long=long_docs,
    )
    if config.method == "real":
        plan.train = [DocPlan(doc) for doc in train]
        return CorpusRequests(plan, [], None, counters, None)

    from hf_megadocs.prompts import get_prompt
    from hf_megadocs.requests import generator_info

    prompt = get_prompt(config.prompt_id, config.prompt_template_file)
    info = info if info is not None else generator_info(backend_config(config))
    make = _latent_requests if config.method == "latent" else _sample_requests
    plan.train, requests = make(config, train, prompt, info, counters)
    plan.generator, plan.prompt_id, plan.prompt_hash = (
        info.generator,
        prompt.prompt_id,
        prompt.content_hash,
    )
    return CorpusRequests(plan, requests, prompt, counters, info)


def shared_backend(names: list[str], **config_kwargs: Any) -> GenerationBackend | None:
    """One backend for every corpus in ``names``, sized for all their missing requests.

    Plans each corpus (no generation), collects the requests the store lacks and starts
    one engine for all of them; hand it to :func:`load_corpus` (``generation_backend=``)
    for each name and close it after. None when nothing is missing: no engine starts.
    All names must share the generator settings in ``config_kwargs``.
    """
    from hf_megadocs.backends import Workload, make_backend
    from hf_megadocs.builder import MegadocsConfig
    from hf_megadocs.store import GenerationStore

    configs = [MegadocsConfig(name=name, **config_kwargs) for name in names]
    synthetic = [c for c in configs if c.method != "real"]
    if not synthetic:
        return None
    info = None
    missing: dict[str, GenerationRequest] = {}
    for config in synthetic:
        planned = plan_corpus(config, info=info)
        info = planned.info
        store = GenerationStore(planned.plan.store_dir)
        missing.update((r.key, r) for r in planned.requests if r.key not in store)
    if not missing:
        logger.info("every generation of %s is in the store; no engine started", names)
        return None
    logger.info("%d generations missing across %s: starting one backend", len(missing), names)
    return make_backend(
        backend_config(synthetic[0]),
        Workload(requests=list(missing.values()), batch_size=synthetic[0].batch_size),
    )


def prepare_corpus(
    config: MegadocsConfig, *, backend: GenerationBackend | None = None
) -> CorpusPlan:
    """Plan ``config``'s corpus and fill the store with the generations it lacks.

    ``backend``: an already-running backend to use (and leave open); by default one is
    made from the config only when some request is missing from the store.
    """
    from hf_megadocs.store import GenerationStore

    planned = plan_corpus(config, info=backend)
    plan, requests, prompt, counters, info = (
        planned.plan,
        planned.requests,
        planned.prompt,
        planned.counters,
        planned.info,
    )
    if prompt is None:  # the real corpus: no generation
        plan.counters = dict(counters)
        return plan

    from hf_megadocs.backends import make_backend
    from hf_megadocs.generate import run_requests

    bconfig = backend_config(config)
    store_dir = plan.store_dir
    store = GenerationStore(store_dir)
    store.record_prompt(prompt)
    summary = run_requests(
        requests,
        backend if backend is not None else (lambda workload: make_backend(bconfig, workload)),
        store,
        batch_size=config.batch_size,
        desc=f"{config.name}: generate",
    )
    plan.unusable = _check_generations(plan, store, counters)
    plan.counters = {**dict(counters), "generation": summary.as_dict()}
    if counters["generations_used"] == 0 and config.method not in _KEEPS_REAL_ROWS:
        raise ValueError(
            f"{config.name}: none of the {len(requests)} generations is usable, so the train "
            f"split would be empty (counters: {dict(counters)}). Check the generator and "
            "max_new_tokens, or the prompt (prompt_template_file); see the store's runs/ "
            "records for details."
        )
    store.record_run(
        {
            **config.knobs(),
            "config_name": config.name,
            "prompt_id": prompt.prompt_id,
            "prompt_hash": prompt.content_hash,
            "generator": info.generator,
            "generator_revision": info.generator_revision,
        },
        {**summary.as_dict(), "corpus": dict(counters)},
    )
    logger.info(
        "%s: %d train docs, %d validation, %d long; %d requests (%d cached, %d generated, "
        "%d errors); %d generations used, %d unusable",
        config.name,
        len(plan.train),
        len(plan.validation),
        len(plan.validation_long),
        summary.requests,
        summary.cached,
        summary.generated,
        summary.errors,
        counters["generations_used"],
        len(plan.unusable),
    )
    return plan


# --------------------------------------------------------------------------- front door


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
    by several corpora in one process.
    """
    from hf_megadocs.builder import MegadocsBuilder, builder_module_hash

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


__all__ = [
    "SHARD_UNITS",
    "CorpusPlan",
    "DocPlan",
    "backend_config",
    "CorpusRequests",
    "load_corpus",
    "plan_corpus",
    "prepare_corpus",
    "shared_backend",
    "sampling_config",
]
