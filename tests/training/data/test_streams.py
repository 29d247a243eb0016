"""The training streams (hf_megadocs.training.data.streams): lineage, bad datasets."""

from __future__ import annotations


def test_lineage_reads_g_from_the_corpus_not_from_the_rows(tmp_path):
    from datasets import Dataset

    from hf_megadocs.corpora.load import load_corpus
    from hf_megadocs.training.data.streams import _lineage

    train = load_corpus(
        "simple_g4",
        backend="dummy",
        max_docs=4,
        max_new_tokens=8,
        validation_fraction=0.0,
        long_doc_min_words=None,
        store_dir=str(tmp_path / "store"),
        cache_dir=str(tmp_path / "cache"),
    )["train"]
    # Each simple row holds the real document or one rephrase; G is the corpus's.
    assert set(train["row_generations"]) == {0, 1} and set(train["num_generations"]) == {4}
    lineage = _lineage(train, real_tokens=10, synthetic_tokens=20)
    assert (lineage.method, lineage.num_generations) == ("simple", 4)
    elsewhere = _lineage(Dataset.from_dict({"text": ["a"]}), 1, 1)
    assert (elsewhere.method, elsewhere.num_generations) == ("synthetic", 0)


def _real_and_stitched(tmp_path):
    from hf_megadocs.corpora.load import load_corpus

    kwargs = dict(
        backend="dummy",
        max_docs=12,
        max_new_tokens=8,
        validation_fraction=0.0,  # no validation split: the trainer must hold out itself
        long_doc_min_words=None,
        store_dir=str(tmp_path / "store"),
        cache_dir=str(tmp_path / "cache"),
    )
    return load_corpus("real", **kwargs), load_corpus("stitched_g2", **kwargs)


def test_documents_held_out_for_validation_leave_the_synthetic_stream_too(tmp_path, caplog):
    import logging

    from datasets import DatasetDict

    from hf_megadocs.training.config import DataConfig
    from hf_megadocs.training.data.streams import _train_and_validation, _without_documents

    real, stitched = _real_and_stitched(tmp_path)
    data = DataConfig(validation_docs=3)
    train, validation, held_out = _train_and_validation(
        DatasetDict(train=real["train"]), data, seed=0
    )
    assert held_out == set(validation["source_id"]) and len(held_out) == 3
    assert not held_out & set(train["source_id"])
    with caplog.at_level(logging.WARNING):
        kept = _without_documents(stitched["train"], held_out)
    assert not held_out & set(kept["source_id"])  # no validation text is trained on
    assert set(kept["source_id"]) == set(stitched["train"]["source_id"]) - held_out
    dropped = len(stitched["train"]) - len(kept)
    assert dropped > 0 and f"dropped {dropped} of {len(stitched['train'])} synthetic" in caplog.text


def test_synthetic_rows_with_ids_the_real_rows_lack_are_refused(tmp_path):
    import pytest

    from hf_megadocs.training.data.streams import _without_documents

    _, stitched = _real_and_stitched(tmp_path)
    with pytest.raises(ValueError, match="cannot be removed from the synthetic"):
        _without_documents(stitched["train"], held_out=set())


def test_real_fractions_are_nested_and_pick_the_same_documents_in_both_streams(tmp_path):
    import pytest

    from hf_megadocs.training.data.streams import real_subset

    real, stitched = _real_and_stitched(tmp_path)
    kept = {}
    for fraction in (0.25, 0.5, 1.0):
        real_ids = set(real_subset(real["train"], fraction, "real")["source_id"])
        synthetic_ids = set(real_subset(stitched["train"], fraction, "synthetic")["source_id"])
        assert synthetic_ids == real_ids  # megadocs of exactly the kept documents
        kept[fraction] = real_ids
    assert kept[0.25] <= kept[0.5] <= kept[1.0] == set(real["train"]["source_id"])
    assert len(kept[0.25]) < len(kept[1.0])
    from datasets import Dataset

    with pytest.raises(ValueError, match="needs a source_id column"):
        real_subset(Dataset.from_dict({"text": ["a"]}), 0.5, "real")


def test_eval_documents_are_the_first_and_the_longest_without_listing_the_split():
    import random

    from datasets import Dataset

    from hf_megadocs.training.config import EvalConfig
    from hf_megadocs.training.evaluation import eval_documents, long_windows

    rng = random.Random(0)
    docs = [list(range(i, i + rng.choice([3, 5, 5, 9, 9, 12]))) for i in range(200)]  # ties
    split = Dataset.from_dict({"input_ids": docs, "num_tokens": [len(d) for d in docs]})
    cfg = EvalConfig(max_docs=16, long_context_docs=7)
    iid, selection, long = eval_documents(split, split, cfg)
    assert iid == docs[:16] and selection == []
    assert long == sorted(docs, key=len, reverse=True)[:7]  # stable among equal lengths
    assert long_windows(long, 8, 7) == long_windows(docs, 8, 7)
    assert eval_documents(split, None, cfg) == (docs[:16], [], docs[:16])
    everything = EvalConfig(max_docs=None, long_context_docs=500)
    assert eval_documents(split, split, everything)[0] == docs


def test_selection_documents_are_disjoint_from_the_reported_ones():
    """With eval.selection_fraction the settings are chosen on documents whose loss is
    never reported: the two sets are disjoint, split by source_id, and cover the split."""
    import pytest
    from datasets import Dataset

    from hf_megadocs.training.config import EvalConfig
    from hf_megadocs.training.evaluation import eval_documents, selection_rows

    docs = [[i, i + 1, i + 2] for i in range(100)]
    split = Dataset.from_dict({"input_ids": docs, "source_id": [f"doc-{i}" for i in range(100)]})
    rows = selection_rows(split, 0.5)
    iid, selection, _ = eval_documents(split, None, EvalConfig(max_docs=None), rows)
    assert 30 < len(selection) < 70 and len(iid) + len(selection) == 100
    assert not {tuple(d) for d in iid} & {tuple(d) for d in selection}
    assert selection_rows(split, 0) == ([], list(range(100)))
    with pytest.raises(ValueError, match="source_id column"):
        selection_rows(split.remove_columns("source_id"), 0.5)
