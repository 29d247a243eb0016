"""The front door (hf_megadocs.corpora.load): load_corpus and one engine for many corpora."""

from __future__ import annotations

import hf_megadocs.generation.backends as backends
from hf_megadocs.corpora.load import load_corpus, shared_backend

KNOBS = {"backend": "dummy", "max_docs": 6, "max_new_tokens": 8, "long_doc_min_words": None}


def test_one_backend_for_every_missing_generation_and_none_when_all_are_stored(
    tmp_path, monkeypatch
):
    knobs = {**KNOBS, "store_dir": str(tmp_path / "store")}
    made = []
    real_make = backends.make_backend

    def counting_make(config, workload=None):
        if workload is not None:
            made.append(workload)
        return real_make(config, workload)

    monkeypatch.setattr(backends, "make_backend", counting_make)
    monkeypatch.setattr("hf_megadocs.corpora.load.make_backend", counting_make)
    names = ["real", "simple_g2", "stitched_g2", "latent_g2"]
    backend = shared_backend(names, **knobs)
    assert backend is not None and len(made) == 1
    # simple and stitched share their rephrases; latent adds its rationales: one workload.
    missing = made[0].num_requests
    for name in names:
        load_corpus(name, generation_backend=backend, cache_dir=str(tmp_path / "c"), **knobs)
    backend.close()
    assert len(made) == 1  # no corpus made a backend of its own
    from hf_megadocs.generation.store import GenerationStore

    assert len(GenerationStore(knobs["store_dir"])) == missing  # counted once across corpora
    assert shared_backend(names, **knobs) is None  # all stored: no engine at all
