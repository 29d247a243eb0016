"""A round's documents and corpora: what it may regenerate, and what it trains on.

- :func:`training_documents`: the pre-training run's real training documents with their
  ids (the candidates of a round's selection);
- :func:`generate_round_corpus`: one operation's corpus of a round, built with the
  ``datasets`` builder from the selected documents and the round's adapter
  (``rephrase_g<G>_r<k>``), saved under the round;
- :func:`union_of_rounds`: every round's corpora so far, concatenated (SynPro trains on
  the union, not the latest round alone).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

OPERATION_METHOD: dict[str, str] = {"rephrase": "rephrase", "reformat": "reformat"}
"""The corpus method that assembles each operation's generations."""

ROUND_MANIFEST = "round.json"


def training_documents(run_info: dict[str, Any]) -> tuple[list[str], list[str], Counter]:
    """The run's real training documents (ids, texts): what a round may regenerate."""
    from hf_megadocs.training.config import TrainConfig
    from hf_megadocs.training.data.streams import real_training_split

    train_config = TrainConfig.from_dict(run_info)
    _, real_train, _, held_out = real_training_split(train_config)
    texts = list(real_train[train_config.data.text_column])
    if "source_id" in real_train.column_names:
        ids = [str(i) for i in real_train["source_id"]]
    elif held_out is None:  # a validation split of its own: name documents by their content
        ids = ["doc-" + hashlib.blake2b(t.encode(), digest_size=8).hexdigest() for t in texts]
    else:
        raise ValueError(
            "the run's real dataset has neither a source_id column nor a validation split, so "
            "the continuation could not keep the validation documents' rewrites out of "
            "training; train on the hf_megadocs 'real' corpus, or give data.real_path a "
            "source_id column (or a validation split)."
        )
    counters: Counter = Counter(training_documents=len(texts))
    return ids, texts, counters


def write_documents(path: Path, ids: list[str], texts: list[str]) -> Path:
    """``ids`` and ``texts`` as JSON Lines (``source_id``, ``text``) at ``path``, atomically."""
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as handle:
        for source_id, text in zip(ids, texts, strict=True):
            handle.write(json.dumps({"source_id": source_id, "text": text}) + "\n")
    tmp.replace(path)
    return path


def generate_round_corpus(
    op: str,
    *,
    index: int,
    num_generations: int,
    lora_path: str,
    documents: Path,
    round_dir: Path,
    corpus_kwargs: dict[str, Any],
    generator: str | None = None,
) -> dict[str, Any]:
    """Round ``index``'s corpus of ``op`` (``num_generations`` per document of
    ``documents``), generated with the adapter at ``lora_path`` (on ``generator``, its base;
    None = the embedded one) and saved under ``round_dir``."""
    from hf_megadocs.corpora.load import load_corpus
    from hf_megadocs.corpora.names import format_config_name

    name = format_config_name(OPERATION_METHOD[op], num_generations, index)
    kwargs = {
        **corpus_kwargs,
        "source": str(documents),
        "id_column": "source_id",
        "text_column": "text",
        "max_docs": None,
        "validation_fraction": 0.0,  # every document here is already a training document
        "long_doc_min_words": None,
        "lora_path": lora_path,
    }
    if generator is not None:
        kwargs.setdefault("generator", generator)
    corpus = load_corpus(name, split="train", **kwargs)
    path = round_dir / "corpora" / name
    corpus.save_to_disk(str(path))
    logger.info("round %d: %s has %d rows (%s)", index, name, len(corpus), path)
    return {"name": name, "path": str(path), "rows": len(corpus), "load_kwargs": kwargs}


def union_of_rounds(
    rounds_dir: Path, index: int, round_dir: Path, paths: list[str]
) -> dict[str, Any]:
    """Every round's corpora so far, concatenated: the synthetic stream of the continuation."""
    import datasets

    earlier: list[str] = []
    for previous in range(1, index):
        manifest = rounds_dir / f"round_{previous}" / ROUND_MANIFEST
        if not manifest.is_file():
            raise ValueError(
                f"round {index} needs round {previous}'s corpora, but {manifest} is missing; "
                "run the rounds in order (hf-megadocs rounds resumes where it stopped)."
            )
        earlier += [c["path"] for c in json.loads(manifest.read_text())["corpora"].values()]
    members = earlier + paths
    union = datasets.concatenate_datasets([datasets.load_from_disk(p) for p in members])
    path = round_dir / "union"
    union.save_to_disk(str(path))
    return {"path": str(path), "rows": len(union), "members": members}


__all__ = [
    "OPERATION_METHOD",
    "ROUND_MANIFEST",
    "generate_round_corpus",
    "training_documents",
    "union_of_rounds",
    "write_documents",
]
