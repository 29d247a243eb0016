"""Evaluation windows and position buckets (hf_megadocs.training.evaluation)."""

from __future__ import annotations


def test_eval_windows_and_buckets():
    from hf_megadocs.training.evaluation import bucket_labels, iid_windows, long_windows

    docs = [list(range(10)), [1], list(range(5))]
    assert iid_windows(docs, 4) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9], [0, 1, 2, 3]]
    assert long_windows(docs, 4, max_docs=2) == [[0, 1, 2, 3], [0, 1, 2, 3]]
    assert bucket_labels(1000, 512) == ["0-512", "512-1000"]
    assert bucket_labels(4096, 512)[-1] == "3584-4096"
