"""Planned training documents kept on disk (corpora.doc_plans)."""

from __future__ import annotations

import pickle

import pytest

from hf_megadocs.corpora.doc_plans import DocPlan, DocPlans
from hf_megadocs.generation.spilled_docs import SpilledDocs
from hf_megadocs.records import SourceDoc


def test_each_document_gets_back_its_own_keys_and_points(tmp_path):
    docs = [SourceDoc(source_id=f"d{i}", text=f"text {i}") for i in range(4)]
    keys = [[f"{i:02x}{j:030x}" for j in range(i)] for i in range(4)]  # 0..3 keys each
    points = [[], [5], [1, 7], []]
    spilled = SpilledDocs.write(docs, tmp_path / "docs")
    plans = DocPlans.write(spilled, (bytes.fromhex("".join(k)) for k in keys), points, tmp_path)
    expected = [DocPlan.of(d, k, p) for d, k, p in zip(docs, keys, points, strict=True)]
    assert list(plans) == expected
    assert plans[2].keys == tuple(keys[2]) and plans[-1].num_keys == 3
    assert list(pickle.loads(pickle.dumps(plans))) == expected  # a num_proc worker's copy


def test_a_key_list_per_document_is_required(tmp_path):
    spilled = SpilledDocs.write([SourceDoc(source_id="a", text="x")] * 2, tmp_path / "d")
    with pytest.raises(ValueError, match="1 key lists for 2 documents"):
        DocPlans.write(spilled, [b""], [[]], tmp_path)
