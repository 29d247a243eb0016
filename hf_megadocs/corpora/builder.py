"""The ``datasets`` builder: ``load_dataset("hf_megadocs", "stitched_g32", **knobs)``.

Follows the packaged-module conventions: a documented :class:`MegadocsConfig`
(``BUILDER_CONFIG_CLASS``), ``BUILDER_CONFIGS`` for the common names, a cheap ``_info``
declaring the lineage columns, ``_split_generators`` that fills missing generations once
(:func:`hf_megadocs.corpora.plan.prepare_corpus`) and puts shard lists in ``gen_kwargs``, and
``_generate_examples`` that only reads the store and assembles, yielding ``Key(shard, i)``.

Only ``download_and_prepare`` generates. ``datasets`` also calls ``_split_generators``, with a
``StreamingDownloadManager``, to list splits (``get_dataset_split_names``,
``get_dataset_config_info``, ``get_dataset_infos``) and to stream: like a streaming download
manager that downloads nothing, those calls generate nothing. Split names come from reading
the source alone (:func:`~hf_megadocs.corpora.plan.split_sizes`), and ``streaming=True`` reads
a store that already holds every generation, or refuses naming ``hf-megadocs generate``
(:mod:`hf_megadocs.corpora.stored`).

Any grammatical name works, not only the listed ones (``stitched_g3``, ``latent_g48``):
:meth:`MegadocsBuilder._create_builder_config` builds and validates the config from the
name and the knobs, and derives the cache ``config_id`` from every knob that changes the
output (plus the prompt wording and a digest of each local source file).

A corpus still lacking generations after its fill (requests that failed at the backend) is
never cached: it is refused (:class:`~hf_megadocs.corpora.partial.PartialCorpusError`), or,
with ``allow_partial=True``, built into a folder outside the cache that the process removes
when it exits (:mod:`hf_megadocs.corpora.partial`), so the next call fills the store again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import datasets
from datasets.builder import Key
from datasets.download.streaming_download_manager import StreamingDownloadManager
from datasets.fingerprint import Hasher

from hf_megadocs.corpora import plan as corpus
from hf_megadocs.corpora import rows
from hf_megadocs.corpora.config import MegadocsConfig, config_from_knobs
from hf_megadocs.corpora.names import (
    GRAMMAR,
    ONE_ROW_PER_DOC,
    common_config_names,
    parse_config_name,
)
from hf_megadocs.corpora.partial import (
    KeptOutOfCache,
    check_complete,
    describe_missing,
    partial_output_dir,
)
from hf_megadocs.corpora.stored import stored_corpus
from hf_megadocs.generation.spawn_guard import refuse_unguarded_spawn

logger = logging.getLogger(__name__)

CORPUS_VERSION = datasets.Version("0.2.0")
"""Version of every corpus config (bumped when the row format changes)."""

FEATURES = datasets.Features(
    {
        "text": datasets.Value("string"),
        "source_id": datasets.Value("string"),
        "method": datasets.Value("string"),
        "num_generations": datasets.Value("int32"),
        "row_generations": datasets.Value("int32"),
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
"""Row schema: text plus lineage (segments are character offsets, end exclusive);
``num_generations`` is the corpus's G, ``row_generations`` the generations in the row."""
VALIDATION_SPLITS = ("validation", "validation_long")
"""Splits of real held-out documents: streaming them needs no generation."""


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

    _streamed: corpus.CorpusPlan | None = None
    """The checked plan :meth:`as_streaming_dataset` streams, while it runs."""

    _partial: corpus.CorpusPlan | None = None
    """A filled plan that lacks generations, while it is built outside the cache."""

    config: MegadocsConfig

    def __init__(self, *args: Any, writer_batch_size: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, writer_batch_size=writer_batch_size, **kwargs)
        if writer_batch_size is None and self.config.method in ONE_ROW_PER_DOC:
            # A megadoc row holds G + 1 documents (≈24k tokens at G = 32): datasets' default
            # of 1,000 rows per write would buffer ≈0.5 GB of text; keep about as many
            # documents per write as a one-row-per-generation corpus does.
            per_row = self.config.num_generations + 1
            self._writer_batch_size = max(8, datasets.config.DEFAULT_MAX_BATCH_SIZE // per_row)

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
        config_kwargs.setdefault("version", self.VERSION)
        config = config_from_knobs(config_name, **config_kwargs)
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
                f"G={self.config.num_generations}, source {self.config.source.source!r}."
            ),
            features=FEATURES,
        )

    def as_streaming_dataset(
        self, split: str | None = None, base_path: str | None = None
    ) -> datasets.IterableDataset | dict[str, datasets.IterableDataset]:
        """Stream rows assembled from the generation store; never generates.

        Raises :class:`~hf_megadocs.corpora.stored.CorpusNotGeneratedError` (naming the
        ``hf-megadocs generate`` command that fills the store) unless the store holds every
        generation the train split needs; the validation splits alone stream regardless.
        """
        self.generation_backend = None  # never used here; the streamed builder gets pickled
        only_validation = split is not None and str(split) in VALIDATION_SPLITS
        self._streamed = stored_corpus(self.config, require_generations=not only_validation)
        try:
            return super().as_streaming_dataset(split=split, base_path=base_path)
        finally:
            self._streamed = None

    def download_and_prepare(self, output_dir: str | None = None, **kwargs: Any) -> None:
        """``datasets``' ``download_and_prepare``; a corpus that lacks generations after its
        fill is refused, or with ``allow_partial=True`` built outside the cache (see the
        module), in ``output_dir`` when one is given."""
        try:
            super().download_and_prepare(output_dir, **kwargs)
        except KeptOutOfCache as kept:
            where = output_dir or partial_output_dir(self._cache_dir_root)
            logger.warning(
                "%s; allow_partial=True: building the corpus without them in %s, outside the "
                "datasets cache%s, so the next call generates them again.",
                describe_missing(self.config, kept.plan),
                where,
                "" if output_dir else " (removed when this process exits)",
            )
            self._partial = kept.plan
            try:
                super().download_and_prepare(where, **kwargs)
            finally:
                self._partial = None

    def _split_generators(self, dl_manager: Any) -> list[datasets.SplitGenerator]:
        if self._streamed is not None:
            plan = self._streamed
        elif self._partial is not None:
            plan = self._partial
        elif isinstance(dl_manager, StreamingDownloadManager):
            # Listing splits (get_dataset_split_names, get_dataset_config_info): the names
            # only, from the source; no request is built and nothing is generated.
            sizes = corpus.split_sizes(self.config)
            names = self._split_names(sizes.train, sizes.validation, sizes.validation_long)
            return [datasets.SplitGenerator(name=split_name) for _, split_name in names]
        else:
            backend, self.generation_backend = self.generation_backend, None
            if backend is None and self.config.backend.data_parallel_size > 1:
                from hf_megadocs.corpora.parallel_fill import fill_corpus_in_parallel

                fill_corpus_in_parallel(self.config)  # N engine processes fill the store
            plan = corpus.prepare_corpus(self.config, backend=backend)
            check_complete(self.config, plan)  # raises while some generation is missing
        logger.info(
            "%s counters: %s",
            self.config.name,
            json.dumps(plan.counters, sort_keys=True, default=str),
        )
        names = self._split_names(len(plan.train), len(plan.validation), len(plan.validation_long))
        return [
            datasets.SplitGenerator(
                name=split_name,
                gen_kwargs={"shards": plan.shards(key), "plan": plan, "split": key},
            )
            for key, split_name in names
        ]

    def _split_names(
        self, train: int, validation: int, validation_long: int
    ) -> list[tuple[str, datasets.NamedSplit]]:
        """(plan split, dataset split) for each split that has documents."""
        names = [("train", datasets.Split.TRAIN)]
        if validation:
            names.append(("validation", datasets.Split.VALIDATION))
        elif self.config.split.validation_fraction > 0:
            logger.warning(
                "%s: no source document fell into the validation split (validation_fraction=%s "
                "of %d docs); there is no 'validation' split.",
                self.config.name,
                self.config.split.validation_fraction,
                train,
            )
        if validation_long:
            names.append(("validation_long", datasets.NamedSplit("validation_long")))
        return names

    def _generate_examples(
        self, shards: list[tuple[int, int, int]], plan: corpus.CorpusPlan, split: str
    ) -> Iterator[tuple[Key, dict[str, Any]]]:
        store = None
        if split == "train" and plan.method != "real":
            from hf_megadocs.generation.store import GenerationStore

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
    "VALIDATION_SPLITS",
    "MegadocsBuilder",
    "MegadocsConfig",
]
