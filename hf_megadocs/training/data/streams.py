"""Training data: load the real and synthetic streams, tokenize, pack, mix, batch.

``build_train_data`` returns everything the loop needs: the packed streams, the
rank-sharded ``MixingSampler`` (whose ``state_dict`` is checkpointed), a ``StepBatches``
iterator that turns one optimizer step's rows into micro-batches, the evaluation windows
and the lineage numbers written to ``config.json``. Tokenization runs under
:func:`~hf_megadocs.training.nodes.main_process_first_per_node` so the ``datasets`` cache is
filled once per node (once in all when the nodes share it), and so is the packed-rows cache
beside it, which every rank of the node then memory-maps.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hf_megadocs.mapped_pages import PageBudget
from hf_megadocs.training.evaluation import (
    EvalSet,
    eval_documents,
    iid_windows,
    long_windows,
    selection_rows,
)

if TYPE_CHECKING:
    import torch
    from accelerate import Accelerator
    from datasets import Dataset, DatasetDict

    from hf_megadocs.training.config import DataConfig, TrainConfig

logger = logging.getLogger(__name__)

FILE_BUILDERS: dict[str, str] = {
    ".txt": "text",
    ".cor": "text",
    ".jsonl": "json",
    ".json": "json",
    ".parquet": "parquet",
    ".csv": "csv",
}
"""File suffix → ``datasets`` builder for ``data.real_path`` / ``data.synthetic_path``."""


def load_stream(
    corpus: str | None, path: str | None, corpus_kwargs: dict[str, Any], field: str
) -> DatasetDict:
    """A stream's splits: a local dataset at ``path``, else the hf_megadocs corpus ``corpus``."""
    import datasets

    if path is not None:
        p = Path(path)
        if p.is_dir():
            loaded = datasets.load_from_disk(str(p))
            return (
                loaded
                if isinstance(loaded, datasets.DatasetDict)
                else datasets.DatasetDict(train=loaded)
            )
        if p.suffix not in FILE_BUILDERS:
            raise ValueError(
                f"{field}={path!r} is not allowed: expected a save_to_disk folder or a file ending "
                f"in {', '.join(FILE_BUILDERS)}."
            )
        if not p.exists():
            raise ValueError(
                f"{field}={path!r} does not exist; point it at a dataset file or folder."
            )
        if p.stat().st_size == 0:
            raise ValueError(f"{field}={path!r} is an empty file (0 rows); nothing to train on.")
        return datasets.load_dataset(FILE_BUILDERS[p.suffix], data_files=str(p))
    from hf_megadocs.corpora.load import load_corpus
    from hf_megadocs.disk_full import build_disk_full_errors
    from hf_megadocs.generation.store import resolve_store_dir

    store = resolve_store_dir(corpus_kwargs.get("store_dir"))
    # a full disk: one error naming the store, saying what is kept and that a rerun resumes
    with build_disk_full_errors(str(corpus), store, corpus_kwargs.get("cache_dir")):
        return load_corpus(corpus, **corpus_kwargs)


@dataclass(kw_only=True)
class Lineage:
    """What the run trains on, as recorded in ``config.json`` and ``summary.json``."""

    method: str
    """Synthetic method ("real" for real-only runs)."""
    num_generations: int
    """G, generations per source document (0 for real-only)."""
    real_tokens: int
    """Unique real training tokens (one epoch)."""
    synthetic_tokens: int
    """Unique synthetic training tokens (one pass)."""


def _lineage(synthetic: Dataset | None, real_tokens: int, synthetic_tokens: int) -> Lineage:
    """Method and G as the corpus recorded them (its ``method`` and ``num_generations``
    columns); a synthetic dataset from elsewhere, without them, is "synthetic" with G 0."""
    method, generations = "real", 0
    if synthetic is not None:
        if {"method", "num_generations"} <= set(synthetic.column_names):
            method, generations = str(synthetic[0]["method"]), int(synthetic[0]["num_generations"])
        else:
            method = "synthetic"
            logger.warning(
                "the synthetic dataset has no method/num_generations columns (not built by "
                "hf_megadocs): the run records method 'synthetic' and G=0"
            )
    return Lineage(
        method=method,
        num_generations=generations,
        real_tokens=real_tokens,
        synthetic_tokens=synthetic_tokens,
    )


@dataclass(kw_only=True)
class TrainData:
    """Packed streams, the sampler and everything derived from the data."""

    real: Any
    """Packed real sequences (``hf_megadocs.training.data.packing.PackedSequences``)."""
    synthetic: Any | None
    """Packed synthetic sequences, or None for real-only runs."""
    sampler: Any
    """This rank's ``MixingSampler``; register it for checkpointing."""
    collator: Any
    """``MixedBatchCollator`` turning (stream, index) rows into tensors."""
    eval_set: EvalSet
    """Validation windows."""
    lineage: Lineage
    """Method, G and unique token counts."""


def build_train_data(config: TrainConfig, tokenizer: Any, accelerator: Accelerator) -> TrainData:
    """Load, tokenize (once per node, see module doc), pack and shard this rank's streams."""
    from hf_megadocs.training.data.collate import MixedBatchCollator
    from hf_megadocs.training.data.mixing import MixingSampler
    from hf_megadocs.training.data.packing import PackConfig, pack
    from hf_megadocs.training.data.tokenize import tokenize_corpus
    from hf_megadocs.training.nodes import main_process_first_per_node

    data = config.data
    with main_process_first_per_node(accelerator):
        real_dd, real_train, validation, held_out = real_training_split(config)
        synthetic_train = None
        if data.has_synthetic:
            syn_dd = load_stream(
                data.synthetic_corpus,
                data.synthetic_path,
                data.corpus_kwargs,
                "data.synthetic_path",
            )
            synthetic_train = _split(syn_dd, "train", "data.synthetic_corpus")
            if held_out is not None:
                synthetic_train = _without_documents(synthetic_train, held_out)
            if data.real_fraction < 1:
                synthetic_train = real_subset(
                    synthetic_train, data.real_fraction, "the synthetic stream"
                )
        tokenize = dict(text_column=data.text_column, num_proc=data.num_proc)
        real_tok = tokenize_corpus(real_train, tokenizer, **tokenize)
        syn_tok = (
            tokenize_corpus(synthetic_train, tokenizer, **tokenize)
            if synthetic_train is not None
            else None
        )
        val_tok = tokenize_corpus(validation, tokenizer, **tokenize)
        long_split = _long_context_split(real_dd, data)
        long_tok = (
            tokenize_corpus(long_split, tokenizer, **tokenize)
            if long_split is not None
            else val_tok
        )
        # Packed once per node into files beside the tokenized Arrow cache; the node's
        # other ranks then map the same files (one copy in its page cache).
        pack_config = PackConfig(seq_len=data.seq_len, attention=data.attention, seed=config.seed)
        real = pack(real_tok, pack_config, cache_dir=packed_cache_dir(real_tok))
        synthetic = (
            pack(syn_tok, pack_config, cache_dir=packed_cache_dir(syn_tok))
            if syn_tok is not None
            else None
        )
    if len(real) == 0:
        raise ValueError(
            f"the real stream packs into 0 sequences of data.seq_len={data.seq_len}; "
            "use more documents or a shorter data.seq_len."
        )
    if synthetic is not None and len(synthetic) == 0 and config.mix.synthetic_share > 0:
        raise ValueError(
            "the synthetic stream packs into 0 sequences; check data.synthetic_corpus."
        )
    sampler = MixingSampler(
        len(real),
        len(synthetic) if synthetic is not None else 0,
        config.mix,
        rank=accelerator.process_index,
        world_size=accelerator.num_processes,
    )
    collator = MixedBatchCollator(real, synthetic)

    rows = selection_rows(validation, config.eval.selection_fraction)
    val_docs, selection_docs, long_docs = eval_documents(
        val_tok, long_tok if long_split is not None else None, config.eval, rows
    )
    eval_set = EvalSet(
        iid=iid_windows(val_docs, data.seq_len),
        selection=iid_windows(selection_docs, data.seq_len),
        long=long_windows(long_docs, data.seq_len, config.eval.long_context_docs),
    )
    logger.info(
        "eval: %d i.i.d. windows from %d validation docs, %d selection windows from %d; "
        "%d long docs (%s split)",
        len(eval_set.iid),
        len(val_docs),
        len(eval_set.selection),
        len(selection_docs),
        len(eval_set.long),
        data.long_context_path or data.long_context_split
        if long_split is not None
        else "longest validation",
    )
    # From the packers' counts: summing num_tokens would read every Arrow record batch of
    # the tokenized corpora again, one scattered read (and a mapped folio) each.
    real_tokens = real.stats.tokens
    syn_tokens = synthetic.stats.tokens if synthetic is not None else 0
    return TrainData(
        real=real,
        synthetic=synthetic,
        sampler=sampler,
        collator=collator,
        eval_set=eval_set,
        lineage=_lineage(synthetic_train, real_tokens, syn_tokens),
    )


def real_training_split(
    config: TrainConfig,
) -> tuple[DatasetDict, Dataset, Dataset, set[str] | None]:
    """The real stream: all its splits, the rows trained on (``data.real_fraction``
    applied), the validation rows, and the ids the trainer held out itself (or None)."""
    data = config.data
    real_dd = load_stream(data.real_corpus, data.real_path, data.corpus_kwargs, "data.real_path")
    real_train, validation, held_out = _train_and_validation(real_dd, data, config.seed)
    if data.real_fraction < 1:
        real_train = real_subset(real_train, data.real_fraction, "the real stream")
    return real_dd, real_train, validation, held_out


def packed_cache_dir(tokenized: Dataset) -> Path | None:
    """Where the packed rows of ``tokenized`` go: beside its Arrow cache files (node-local,
    reused by every run of the same data), or None for an in-memory dataset."""
    files = tokenized.cache_files
    return Path(files[0]["filename"]).parent / "hf_megadocs_packed" if files else None


def _long_context_split(real_dd: DatasetDict, data: DataConfig) -> Dataset | None:
    """The long documents of the long-context loss: ``data.long_context_path`` (its first
    split) when set, else the real corpus's ``data.long_context_split`` (None if absent)."""
    if data.long_context_path is None:
        return real_dd.get(data.long_context_split)
    dd = load_stream(None, data.long_context_path, {}, "data.long_context_path")
    split = _split(dd, next(iter(dd)), "data.long_context_path")
    if data.text_column not in split.column_names:
        raise ValueError(
            f"data.long_context_path={data.long_context_path!r} has no {data.text_column!r} "
            f"column (columns: {split.column_names}); set data.text_column or rename it."
        )
    return split


def _split(dd: DatasetDict, name: str, field: str) -> Dataset:
    if name not in dd:
        raise ValueError(f"{field}: the dataset has no {name!r} split (splits: {list(dd)}).")
    if len(dd[name]) == 0:
        raise ValueError(f"{field}: the {name!r} split is empty (0 rows); nothing to train on.")
    return dd[name]


def _train_and_validation(
    dd: DatasetDict, data: DataConfig, seed: int
) -> tuple[Dataset, Dataset, set[str] | None]:
    """The real train and validation splits, and the held-out ``source_id`` set when the
    trainer had to hold documents out itself (there was no validation split)."""
    train = _split(dd, "train", "data.real_corpus / data.real_path")
    if data.validation_split in dd and len(dd[data.validation_split]):
        return train, dd[data.validation_split], None
    if len(train) <= data.validation_docs:
        raise ValueError(
            f"the real dataset has no {data.validation_split!r} split and only {len(train)} rows, "
            f"too few to hold out data.validation_docs={data.validation_docs}; lower it or add "
            "a split."
        )
    logger.warning(
        "real dataset has no %r split: holding out %d of %d rows (seed %d) for validation",
        data.validation_split,
        data.validation_docs,
        len(train),
        seed,
    )
    parts = train.train_test_split(test_size=data.validation_docs, seed=seed, shuffle=True)
    held_out = set(parts["test"]["source_id"]) if "source_id" in train.column_names else set()
    return parts["train"], parts["test"], held_out


def real_subset(dataset: Dataset, fraction: float, what: str) -> Dataset:
    """Rows whose ``source_id`` hashes below ``fraction``: nested across fractions."""
    from hf_megadocs.generation.splits import in_subset

    if "source_id" not in dataset.column_names:
        raise ValueError(
            f"data.real_fraction={fraction} needs a source_id column in {what} to pick the "
            "same documents in both streams; use hf_megadocs corpora or add the column."
        )
    kept = dataset.filter(
        lambda ids: [in_subset(i, fraction) for i in ids],
        input_columns="source_id",
        batched=True,
    )
    logger.info(
        "data.real_fraction=%s: %s keeps %d of %d rows", fraction, what, len(kept), len(dataset)
    )
    if len(kept) == 0:
        raise ValueError(
            f"data.real_fraction={fraction} keeps none of the {len(dataset)} rows of {what}; "
            "raise it or use more documents."
        )
    return kept


def _without_documents(synthetic: Dataset, held_out: set[str]) -> Dataset:
    """``synthetic`` minus the rows made from held-out documents (a stitched or latent row
    contains its document itself: training on it would leak the validation text)."""
    if "source_id" not in synthetic.column_names:
        logger.warning(
            "the synthetic dataset has no source_id column: rows made from the documents "
            "held out for validation cannot be removed from it; give the real dataset a "
            "validation split to be sure validation text is never trained on"
        )
        return synthetic
    if not held_out:
        raise ValueError(
            "the synthetic rows carry source_id but the real rows do not, so the documents "
            "the trainer holds out for validation cannot be removed from the synthetic "
            "stream (stitched and latent rows contain their document). Give the real "
            "dataset a validation split, or a source_id column matching the synthetic one."
        )
    kept = synthetic.filter(
        lambda ids: [i not in held_out for i in ids], input_columns="source_id", batched=True
    )
    logger.warning(
        "dropped %d of %d synthetic rows made from the %d documents held out for validation",
        len(synthetic) - len(kept),
        len(synthetic),
        len(held_out),
    )
    return kept


class StepBatches:
    """Turns the sampler's per-step rows into ``accumulation`` micro-batches on ``device``.

    Not a ``DataLoader`` passed through ``accelerator.prepare``: the sampler already gives
    each process its own disjoint rows, and preparing would shard them a second time.
    """

    def __init__(
        self, data: TrainData, micro_batch_size: int, accumulation: int, device: torch.device
    ):
        self.data = data
        self.micro_batch_size = micro_batch_size
        self.accumulation = accumulation
        self.device = device
        self._steps: Iterator[list] | None = None
        self._pages = PageBudget()  # the packed rows read: resident memory bounded on long runs

    def next_step(self) -> list[dict[str, torch.Tensor]]:
        """The micro-batches of the next optimizer step."""
        if self._steps is None:
            self._steps = iter(self.data.sampler)
        rows = next(self._steps)
        expected = self.micro_batch_size * self.accumulation
        if len(rows) != expected:
            raise RuntimeError(
                f"sampler gave {len(rows)} rows for one step on this process, expected "
                f"micro_batch_size × accumulation = {expected}."
            )
        out = []
        for i in range(0, expected, self.micro_batch_size):
            batch = self.data.collator(rows[i : i + self.micro_batch_size])
            # Each row was read at its own place in every mapped array the batch came from;
            # the int64 copies' bytes bound what those reads touched.
            nbytes = sum(v.nbytes for v in batch.values())
            self._pages.read(nbytes, places=len(batch["input_ids"]) * len(batch))
            out.append({k: v.to(self.device, non_blocking=True) for k, v in batch.items()})
        return out
