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
