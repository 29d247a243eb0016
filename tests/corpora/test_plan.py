"""Planning a corpus (hf_megadocs.corpora.plan): what is requested, what is held out."""

from __future__ import annotations

from hf_megadocs.corpora.config import config_from_knobs
from hf_megadocs.corpora.plan import plan_corpus, prepare_corpus
from hf_megadocs.generation.backends.dummy import DummyBackend
from hf_megadocs.generation.store import GenerationStore

KNOBS = {"backend": "dummy", "max_docs": 20, "max_new_tokens": 8, "long_doc_min_words": None}


def test_validation_documents_are_never_requested_and_samples_are_per_document(tmp_path):
    config = config_from_knobs(
        "simple_g3", validation_fraction=0.3, store_dir=str(tmp_path), **KNOBS
    )
    planned = plan_corpus(config)
    held_out = {doc.source_id for doc in planned.plan.validation}
    requested = {r.source_id for r in _all(planned.requests)}
    assert held_out and requested and not (held_out & requested)
    assert len(_all(planned.requests)) == 3 * len(planned.plan.train)
    for doc_plan in planned.plan.train:  # each document's keys are its samples 0..G-1
        assert len(doc_plan.keys) == 3
    assert planned.counters["docs_train"] + planned.counters["docs_validation"] == 20


def test_latent_requests_one_rationale_per_split_point(tmp_path):
    config = config_from_knobs(
        "latent_g4", validation_fraction=0.0, store_dir=str(tmp_path), **KNOBS
    )
    planned = plan_corpus(config)
    for doc_plan in planned.plan.train:
        assert len(doc_plan.keys) == len(doc_plan.points) <= 4
        assert list(doc_plan.points) == sorted(doc_plan.points)
    parts = {r.input_part for r in _all(planned.requests)}
    assert all(part.startswith("latent:equal_tokens:") for part in parts)


def test_prepare_generates_once_and_records_the_corpus_counters(tmp_path):
    config = config_from_knobs(
        "stitched_g2", validation_fraction=0.0, store_dir=str(tmp_path), **KNOBS
    )
    backend = DummyBackend()
    plan = prepare_corpus(config, backend=backend)
    assert sum(backend.calls) == 40 and plan.counters["generations_used"] == 40
    again = DummyBackend()
    prepare_corpus(config, backend=again)
    assert again.calls == []  # everything is in the store now
    run = GenerationStore(tmp_path).runs()[-1]
    assert run["config"]["config_name"] == "stitched_g2"
    assert run["summary"]["corpus"]["generations_used"] == 40
    assert "backend.kv_cache_memory_gb" not in run["config"]  # only settings that change rows


def _all(requests):
    """Every request of a plan (built window by window)."""
    return [request for window in requests() for request in window]
