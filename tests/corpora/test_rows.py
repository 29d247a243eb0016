"""Rows from a plan and the store (hf_megadocs.corpora.rows): order, lineage, skipped units."""

from __future__ import annotations

import dataclasses

from hf_megadocs.corpora.config import config_from_knobs
from hf_megadocs.corpora.plan import prepare_corpus
from hf_megadocs.corpora.rows import iter_rows
from hf_megadocs.generation.backends.dummy import DummyBackend
from hf_megadocs.generation.store import GenerationStore

KNOBS = {"backend": "dummy", "max_docs": 6, "max_new_tokens": 8, "long_doc_min_words": None}


def _plan(name, tmp_path):
    config = config_from_knobs(name, validation_fraction=0.0, store_dir=str(tmp_path), **KNOBS)
    return prepare_corpus(config, backend=DummyBackend()), GenerationStore(tmp_path)


def test_simple_rows_are_every_document_and_rephrase_once_in_a_seeded_order(tmp_path):
    plan, store = _plan("simple_g2", tmp_path)
    rows = list(iter_rows(plan, "train", 0, plan.num_units("train"), store))
    assert len(rows) == 6 * 3
    assert sorted(r["row_generations"] for r in rows) == [0] * 6 + [1] * 12
    assert {r["num_generations"] for r in rows} == {2} and {r["method"] for r in rows} == {"simple"}
    again = list(iter_rows(plan, "train", 0, plan.num_units("train"), store))
    assert [r["text"] for r in again] == [r["text"] for r in rows]  # deterministic
    # Shards cover the units exactly once, in order.
    halves = list(iter_rows(plan, "train", 0, 9, store)) + list(
        iter_rows(plan, "train", 9, 18, store)
    )
    assert [r["text"] for r in halves] == [r["text"] for r in rows]


def test_an_unusable_generation_leaves_its_megadoc_without_it(tmp_path):
    plan, store = _plan("stitched_g2", tmp_path)
    dropped = plan.train[0].keys[0]
    skipping = dataclasses.replace(plan, unusable=frozenset({dropped}))
    full = next(iter_rows(plan, "train", 0, 1, store))
    short = next(iter_rows(skipping, "train", 0, 1, store))
    assert full["row_generations"] == 2 and short["row_generations"] == 1
    dropped_text = store.get_many([dropped])[dropped].text
    assert dropped_text in full["text"] and dropped_text not in short["text"]
    assert short["text"].endswith(plan.train[0].doc.text)  # the real document still last
