"""The ``datasets`` builder: ``load_dataset("hf_megadocs", "stitched_g32", **knobs)``.

Follows the packaged-module conventions: a documented :class:`MegadocsConfig`
(``BUILDER_CONFIG_CLASS``), ``BUILDER_CONFIGS`` for the common names, a cheap ``_info``
declaring the lineage columns, ``_split_generators`` that fills missing generations once
(:func:`hf_megadocs.corpus.prepare_corpus`) and puts shard lists in ``gen_kwargs``, and
``_generate_examples`` that only reads the store and assembles, yielding ``Key(shard, i)``.

Any grammatical name works, not only the listed ones (``stitched_g3``, ``latent_g48``):
:meth:`MegadocsBuilder._create_builder_config` builds and validates the config from the
name and the knobs, and derives the cache ``config_id`` from every knob that changes the
output (plus the prompt wording and local source files' sizes and mtimes).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import datasets
from datasets.builder import Key
from datasets.fingerprint import Hasher

from hf_megadocs import assembly, corpus, rows
from hf_megadocs.config_names import GRAMMAR, METHOD_PROMPT, common_config_names, parse_config_name
from hf_megadocs.registration import builder_module_hash
from hf_megadocs.spawn_guard import refuse_unguarded_spawn
from hf_megadocs.store import resolve_store_dir

logger = logging.getLogger(__name__)

_BASE_FIELDS = frozenset(f.name for f in fields(datasets.BuilderConfig))
NON_OUTPUT_KNOBS = frozenset(
    {
        "batch_size",
        "gpu_memory_utilization",
        "kv_cache_memory_gb",
        "dtype",
        "tensor_parallel_size",
        "cpu_threads",
        "enforce_eager",
        "on_bad_input",
    }
)
"""Knobs that change how a corpus is built, not what it contains: not in the cache id."""
GENERATION_KNOBS = frozenset(
    {
        "generator",
        "generator_revision",
        "backend",
        "base_url",
        "max_new_tokens",
        "temperature",
        "top_p",
        "seed",
        "store_dir",
        "max_model_len",
        "context_policy",
        "prompt_template_file",
        "separator",
        "latent_split_rule",
        "latent_open",
        "latent_close",
    }
)
"""Knobs without effect on the ``real`` config (left out of its cache id)."""

CORPUS_VERSION = datasets.Version("0.1.0")
"""Version of every corpus config (bumped when the row format changes)."""

FEATURES = datasets.Features(
    {
        "text": datasets.Value("string"),
        "source_id": datasets.Value("string"),
        "method": datasets.Value("string"),
        "num_generations": datasets.Value("int32"),
        "segments": datasets.List(
            {
                "role": datasets.Value("string"),
                "start": datasets.Value("int32"),
                "end": datasets.Value("int32"),
            }
        ),
        "generator": datasets.Value("string"),
        "prompt_id": datasets.Value("string"),
        "prompt_hash": datasets.Value("string"),
        "seed": datasets.Value("int64"),
    }
)
"""Row schema: text plus lineage (segments are character offsets, end exclusive)."""


@dataclass(kw_only=True)
class MegadocsConfig(datasets.BuilderConfig):
    """One corpus: the method and G come from ``name``; every other field is a knob."""

    source: str = "embedded"
    """Real documents: "embedded" (Lee news corpus), "embedded-long", a .jsonl/.json/.parquet
    file or directory, or a Hugging Face dataset name."""
    text_column: str = "text"
    """Column with the document text."""
    id_column: str | None = None
    """Column with a stable document id; None = a hash of the text."""
    source_split: str = "train"
    """Split of a Hugging Face dataset source."""
    source_config: str | None = None
    """Configuration name of a Hugging Face dataset source."""
    max_docs: int | None = None
    """Read at most this many documents (before the train/validation split); None = all."""
    on_bad_input: str = "warn"
    """Empty/duplicate source documents: "error", "warn" (drop and log) or "skip" (drop)."""
    generator: str | None = None
    """Generator model id or local checkpoint; None = the embedded SmolLM2-135M-Instruct."""
    generator_revision: str | None = None
    """Hub revision of ``generator`` (pin a commit for stable store keys)."""
    backend: str = "auto"
    """"auto" (vllm if installed, else transformers), "vllm", "openai", "transformers", "dummy"."""
    base_url: str | None = None
    """OpenAI-compatible server URL for backend="openai"."""
    max_new_tokens: int = 1024
    """Generated tokens per sample at most (the paper: 1,024)."""
    temperature: float = 1.0
    """Sampling temperature (the paper: 1.0)."""
    top_p: float = 1.0
    """Nucleus sampling mass."""
    seed: int = 0
    """Base sampling seed and the seed of the simple-rephrasing shuffle."""
    split_seed: int = 0
    """Seed of the source-id hash that picks validation documents (kept apart from ``seed``
    so corpora sampled with different seeds share one validation set)."""
    validation_fraction: float = 0.05
    """Share of source documents held out as real-only validation (never generated from)."""
    long_doc_min_words: int | None = 1000
    """Documents with at least this many words form ``validation_long`` (for the embedded
    source: CPython's pydoc topics); None = no long-document split."""
    store_dir: str | None = None
    """Generation store shared by every corpus; None = ``<hf_megadocs cache>/store``."""
    separator: str = "\n\n"
    """Text between the parts of a stitched megadoc (a ``separator`` segment → EOS)."""
    latent_split_rule: str = "equal_tokens"
    """Latent split points: "equal_tokens" (whitespace tokens) or "sentences"."""
    latent_open: str = "<thought>"
    """Text before each inserted rationale."""
    latent_close: str = "</thought>"
    """Text after each inserted rationale."""
    prompt_template_file: str | None = None
    """A template file replacing the built-in wording of the method's prompt."""
    context_policy: str = "truncate"
    """Documents longer than the generator's context: "truncate" the prompt copy, or "skip"."""
    max_model_len: int | None = None
    """Cap on the generator's context in tokens. It bounds the request budget, so it can
    change which part of a long document is rephrased (hence it is part of the cache id);
    None = the model's own. The vLLM engine itself is always sized from the job."""
    dtype: str = "auto"
    """Generator dtype for vllm / transformers ("auto", "bfloat16", "float32")."""
    tensor_parallel_size: int = 1
    """GPUs per vLLM engine."""
    gpu_memory_utilization: float | None = None
    """vLLM's share of GPU memory; None = 0.9 on CUDA, and on CPU the KV cache is sized
    in bytes from the job (a share there depends on how long the machine has been up)."""
    kv_cache_memory_gb: float | None = None
    """Explicit vLLM KV-cache size in GiB; None = from the job on CPU, the share on CUDA."""
    cpu_threads: int | None = None
    """Cores a vLLM-CPU engine computes on; None = all this process may use."""
    enforce_eager: bool = False
    """vLLM without graph capture / compilation (faster start)."""
    batch_size: int = 256
    """Requests per backend call and store flush."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self._parsed = parse_config_name(self.name)
        checks = [
            ("source", bool(self.source), "a non-empty source"),
            ("text_column", bool(self.text_column), "a non-empty column name"),
            ("max_docs", self.max_docs is None or self.max_docs >= 1, "None or an int >= 1"),
            (
                "on_bad_input",
                self.on_bad_input in ("error", "warn", "skip"),
                "'error', 'warn' or 'skip'",
            ),
            (
                "backend",
                self.backend in ("auto", "vllm", "openai", "transformers", "dummy"),
                "'auto', 'vllm', 'openai', 'transformers' or 'dummy'",
            ),
            ("max_new_tokens", self.max_new_tokens >= 1, "an int >= 1"),
            ("temperature", self.temperature >= 0, "a float >= 0"),
            ("top_p", 0 < self.top_p <= 1, "a float in (0, 1]"),
            ("validation_fraction", 0 <= self.validation_fraction < 1, "a float in [0, 1)"),
            (
                "long_doc_min_words",
                self.long_doc_min_words is None or self.long_doc_min_words >= 1,
                "None or an int >= 1",
            ),
            (
                "separator",
                isinstance(self.separator, str) and bool(self.separator),
                "a non-empty string (it marks document boundaries)",
            ),
            (
                "latent_split_rule",
                self.latent_split_rule in assembly.LATENT_SPLIT_RULES,
                " or ".join(repr(r) for r in assembly.LATENT_SPLIT_RULES),
            ),
            ("context_policy", self.context_policy in ("truncate", "skip"), "'truncate' or 'skip'"),
            (
                "max_model_len",
                self.max_model_len is None or self.max_model_len >= 1,
                "None or an int >= 1",
            ),
            (
                "gpu_memory_utilization",
                self.gpu_memory_utilization is None or 0 < self.gpu_memory_utilization <= 1,
                "None or a float in (0, 1]",
            ),
            (
                "kv_cache_memory_gb",
                self.kv_cache_memory_gb is None or self.kv_cache_memory_gb > 0,
                "None or a size in GiB > 0",
            ),
            (
                "dtype",
                self.dtype in ("auto", "bfloat16", "float16", "float32"),
                "'auto', 'bfloat16', 'float16' or 'float32'",
            ),
            ("tensor_parallel_size", self.tensor_parallel_size >= 1, "an int >= 1"),
            (
                "cpu_threads",
                self.cpu_threads is None or self.cpu_threads >= 1,
                "None or an int >= 1",
            ),
            ("batch_size", self.batch_size >= 1, "an int >= 1"),
        ]
        for knob, ok, allowed in checks:
            if not ok:
                raise ValueError(
                    f"hf_megadocs config {self.name!r}: {knob}={getattr(self, knob)!r} is not "
                    f"allowed; use {allowed} (load_dataset('hf_megadocs', {self.name!r}, "
                    f"{knob}=...))."
                )
        if self.backend == "openai" and not self.base_url:
            raise ValueError(
                f"hf_megadocs config {self.name!r}: backend='openai' needs base_url, e.g. "
                "base_url='http://127.0.0.1:8000/v1'."
            )

    @property
    def method(self) -> str:
        """The assembly method (the name's stem)."""
        return self._parsed.method

    @property
    def num_generations(self) -> int:
        """G, from the name (0 for ``real``)."""
        return self._parsed.num_generations

    @property
    def prompt_id(self) -> str:
        """The prompt id the method's generations use ("" for ``real``)."""
        return METHOD_PROMPT.get(self.method, "")

    def knobs(self) -> dict[str, Any]:
        """Every knob (all fields but the ``BuilderConfig`` base ones) and its value."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _BASE_FIELDS}

    def fingerprint(self) -> str:
        """A digest of everything that changes this corpus's rows (the cache ``config_id``)."""
        payload = {k: v for k, v in self.knobs().items() if k not in NON_OUTPUT_KNOBS}
        if self.method == "real":
            payload = {k: v for k, v in payload.items() if k not in GENERATION_KNOBS}
        else:
            from hf_megadocs.prompts import get_prompt

            payload["store_dir"] = str(resolve_store_dir(self.store_dir).resolve())
            payload["prompt_hash"] = get_prompt(
                self.prompt_id, self.prompt_template_file
            ).content_hash
        payload["source_files"] = _local_source_signature(self.source)
        payload["name"] = self.name
        return Hasher.hash(payload)[:16]


def _local_source_signature(source: str) -> list[tuple[str, int, int]]:
    """(path, size, mtime_ns) of a local source's files, so edited files rebuild the corpus."""
    if source in ("embedded", "embedded-long"):
        return []
    path = Path(source).expanduser()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files if p.is_file()]


class MegadocsBuilder(datasets.GeneratorBasedBuilder):
    """Synthetic-megadoc corpora built with the hf_megadocs generation engine."""

    VERSION = CORPUS_VERSION
    BUILDER_CONFIG_CLASS = MegadocsConfig
    BUILDER_CONFIGS = [
        MegadocsConfig(name=n, version=CORPUS_VERSION) for n in common_config_names()
    ]
    DEFAULT_CONFIG_NAME = None

    generation_backend: Any = None
    """An already-running backend for missing generations (set by ``load_corpus``); dropped
    after ``_split_generators`` so the builder stays picklable for ``num_proc`` workers."""

    config: MegadocsConfig

    def _create_builder_config(
        self, config_name=None, custom_features=None, config_id=None, **config_kwargs
    ) -> tuple[MegadocsConfig, str]:
        """Build the config from any grammatical ``config_name`` and validate every knob."""
        refuse_unguarded_spawn()
        if config_name is None:
            raise ValueError(
                f"Pick a corpus config: load_dataset('hf_megadocs', 'stitched_g32'); names are "
                f"{GRAMMAR}."
            )
        parse_config_name(config_name)
        data_files = config_kwargs.pop("data_files", None)
        data_dir = config_kwargs.pop("data_dir", None)
        if data_files or data_dir:
            raise ValueError(
                "hf_megadocs reads its documents from the 'source' knob, not data_files/data_dir: "
                "load_dataset('hf_megadocs', name, source='path/to/docs.jsonl')."
            )
        config_kwargs.pop("name", None)
        knobs = {f.name for f in fields(MegadocsConfig)} - {"name", "data_files", "data_dir"}
        unknown = sorted(set(config_kwargs) - knobs)
        if unknown:
            raise ValueError(
                f"Unknown hf_megadocs config knob(s) {unknown}; the knobs are "
                f"{sorted(knobs - _BASE_FIELDS)}."
            )
        config_kwargs.setdefault("version", self.VERSION)
        config = MegadocsConfig(name=config_name, **config_kwargs)
        if config_id is None:
            suffix = config.fingerprint()
            if custom_features is not None:
                suffix = Hasher.hash([suffix, custom_features])[:16]
            config_id = f"{config.name}-{suffix}"
        return config, config_id

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description=(
                f"hf_megadocs corpus {self.config.name!r}: method {self.config.method}, "
                f"G={self.config.num_generations}, source {self.config.source!r}."
            ),
            features=FEATURES,
        )

    def _split_generators(self, dl_manager: Any) -> list[datasets.SplitGenerator]:
        backend, self.generation_backend = self.generation_backend, None
        plan = corpus.prepare_corpus(self.config, backend=backend)
        self.plan = plan
        logger.info(
            "%s counters: %s",
            self.config.name,
            json.dumps(plan.counters, sort_keys=True, default=str),
        )
        names = [("train", datasets.Split.TRAIN)]
        if plan.validation:
            names.append(("validation", datasets.Split.VALIDATION))
        elif self.config.validation_fraction > 0:
            logger.warning(
                "%s: no source document fell into the validation split (validation_fraction=%s "
                "of %d docs); there is no 'validation' split.",
                self.config.name,
                self.config.validation_fraction,
                len(plan.train),
            )
        if plan.validation_long:
            names.append(("validation_long", datasets.NamedSplit("validation_long")))
        return [
            datasets.SplitGenerator(
                name=split_name,
                gen_kwargs={"shards": plan.shards(key), "plan": plan, "split": key},
            )
            for key, split_name in names
        ]

    def _generate_examples(
        self, shards: list[tuple[int, int, int]], plan: corpus.CorpusPlan, split: str
    ) -> Iterator[tuple[Key, dict[str, Any]]]:
        store = None
        if split == "train" and plan.method != "real":
            from hf_megadocs.store import GenerationStore

            store = GenerationStore(plan.store_dir)
        for shard_index, start, end in shards:
            for item, row in enumerate(rows.iter_rows(plan, split, start, end, store)):
                yield Key(shard_index, item), row


BUILDER_CONFIGS_BY_NAME: dict[str, MegadocsConfig] = {
    c.name: c for c in MegadocsBuilder.BUILDER_CONFIGS
}
"""The listed configs by name (any other grammatical name works too)."""

__all__ = [
    "BUILDER_CONFIGS_BY_NAME",
    "FEATURES",
    "MegadocsBuilder",
    "MegadocsConfig",
    "builder_module_hash",
]
