"""Corpus-builder faults (issue 27): knob order, partial corpora, stale sources, a store
that is a symlink loop, and builds far larger than usual. All with the dummy backend."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import datasets  # noqa: E402

import hf_megadocs  # noqa: E402, F401  (registers the builder)
from hf_megadocs.corpora.builder import MegadocsBuilder  # noqa: E402
from hf_megadocs.corpora.config import config_from_knobs  # noqa: E402
from hf_megadocs.corpora.load import load_corpus  # noqa: E402
from hf_megadocs.corpora.plan import prepare_corpus  # noqa: E402
from hf_megadocs.corpora.registration import builder_module_hash  # noqa: E402
from hf_megadocs.generation.backends.dummy import DummyBackend  # noqa: E402
from hf_megadocs.generation.store import GenerationStore, StoreNotWritableError  # noqa: E402

URL = "http://127.0.0.1:8000/v1"


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_MEGADOCS_CACHE", str(tmp_path / "megadocs-cache"))


# --------------------------------------------------------------------------- 1: knob order


ORDERS = [{"backend": "openai", "base_url": URL}, {"base_url": URL, "backend": "openai"}]


def test_knobs_of_one_section_are_applied_together_in_any_order(tmp_path):
    for knobs in ORDERS:  # the README's order first; before the fix only the other worked
        config = config_from_knobs("stitched_g2", **knobs)
        assert (config.backend.backend, config.backend.base_url) == ("openai", URL)
        builder = datasets.load_dataset_builder(
            "hf_megadocs", "stitched_g2", cache_dir=str(tmp_path / "hf"), **knobs
        )
        assert (builder.config.backend.backend, builder.config.backend.base_url) == (
            "openai",
            URL,
        )


def test_a_section_error_names_the_one_knob_at_fault():
    with pytest.raises(ValueError, match=r"dtype='bogus' is not allowed"):
        config_from_knobs("stitched_g2", backend="openai", base_url=URL, dtype="bogus")
    with pytest.raises(ValueError, match=r"backend='openai' is not allowed.*base_url"):
        config_from_knobs("stitched_g2", backend="openai")
    with pytest.raises(ValueError, match=r"temperature=-1.0 is not allowed"):
        config_from_knobs("stitched_g2", max_new_tokens=8, temperature=-1.0)


# --------------------------------------------------------------------------- 4: partial corpora


def _knobs(tmp_path: Path, **extra) -> dict:
    return {
        "backend": "dummy",
        "max_docs": 8,
        "max_new_tokens": 16,
        "validation_fraction": 0.25,
        "long_doc_min_words": None,
        "store_dir": str(tmp_path / "store"),
        "cache_dir": str(tmp_path / "hf"),
        **extra,
    }


class _MustNotGenerate(DummyBackend):
    def generate(self, requests):
        raise AssertionError(f"asked to generate {len(requests)} requests; the store is full")


def _cached(name: str, knobs: dict) -> bool:
    config_knobs = {k: v for k, v in knobs.items() if k != "cache_dir"}
    builder = MegadocsBuilder(
        cache_dir=knobs["cache_dir"],
        dataset_name="hf_megadocs",
        config_name=name,
        hash=builder_module_hash(),
        **config_knobs,
    )
    return (Path(builder.cache_dir) / datasets.config.DATASET_INFO_FILENAME).is_file()


def test_a_partial_corpus_is_refused_or_returned_but_never_cached(tmp_path):
    knobs = _knobs(tmp_path)
    config = config_from_knobs(
        "stitched_g2", **{k: v for k, v in knobs.items() if k != "cache_dir"}
    )
    failing = DummyBackend(fail_every=2)
    with pytest.raises(RuntimeError) as raised:
        load_corpus("stitched_g2", generation_backend=failing, **knobs)
    message = str(raised.value)
    needed = sum(failing.calls)
    failed = needed // 2
    assert f"{failed} of the {needed} generations" in message
    assert "injected failure" in message and "allow_partial=True" in message
    assert len(GenerationStore(knobs["store_dir"])) == needed - failed  # nothing lost
    assert not _cached("stitched_g2", knobs)

    partial = load_corpus(
        "stitched_g2", generation_backend=DummyBackend(fail_every=2), allow_partial=True, **knobs
    )
    short = [row for row in partial["train"] if row["row_generations"] < 2]
    assert short, "the partial corpus should have rows short of G"
    assert not _cached("stitched_g2", knobs)

    prepare_corpus(config, backend=DummyBackend())  # fill the store outside datasets
    full = load_corpus("stitched_g2", generation_backend=_MustNotGenerate(), **knobs)
    assert all(row["row_generations"] == 2 for row in full["train"])
    assert len(full["train"]) == len(partial["train"])
    assert _cached("stitched_g2", knobs)


def test_a_corpus_whose_every_request_failed_names_the_cause_even_with_allow_partial(tmp_path):
    knobs = _knobs(tmp_path, allow_partial=True)
    with pytest.raises(RuntimeError, match=r"injected failure.*even allow_partial=True"):
        load_corpus("qa_g1", generation_backend=DummyBackend(fail_every=1), **knobs)
    assert not _cached("qa_g1", knobs)


# --------------------------------------------------------------------------- 11: stale sources


def test_a_same_size_edit_with_the_mtime_kept_rebuilds_the_corpus(tmp_path):
    source = tmp_path / "docs.jsonl"
    texts = [f"document {i} about alpha rivers and valleys" for i in range(4)]
    source.write_text(
        "".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(texts))
    )
    knobs = {
        "source": str(source),
        "validation_fraction": 0.0,
        "long_doc_min_words": None,
        "cache_dir": str(tmp_path / "hf"),
    }
    first = datasets.load_dataset("hf_megadocs", "real", **knobs)
    assert any("alpha" in row["text"] for row in first["train"])
    stat = source.stat()
    source.write_text(source.read_text().replace("alpha", "omega"))  # same size
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # mtime kept, as cp -p does
    assert (source.stat().st_size, source.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)
    second = datasets.load_dataset("hf_megadocs", "real", **knobs)
    assert all("alpha" not in row["text"] for row in second["train"])
    assert any("omega" in row["text"] for row in second["train"])


# --------------------------------------------------------------------------- 13: symlink loop


def test_a_store_dir_that_is_a_symlink_loop_is_a_clear_error(tmp_path):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(StoreNotWritableError, match="is not writable.*symbolic links"):
        datasets.load_dataset(
            "hf_megadocs",
            "stitched_g2",
            backend="dummy",
            store_dir=str(tmp_path / "a"),
            cache_dir=str(tmp_path / "hf"),
        )


# --------------------------------------------------------------------------- 14: huge builds


def test_a_build_far_beyond_the_usual_says_what_it_will_generate(tmp_path, caplog):
    knobs = _knobs(tmp_path, max_docs=1, max_new_tokens=4, validation_fraction=0.0)
    with caplog.at_level(logging.WARNING, logger="hf_megadocs"):
        corpus = load_corpus("stitched_g300", **knobs)
    assert len(corpus["train"]) == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    big = [m for m in warnings if "300 requests" in m]
    assert big, warnings
    assert "1 document" in big[0] and "G=300" in big[0] and "1,200" in big[0]


def test_the_scale_rule():
    from hf_megadocs.corpora.scale import scale_warning

    assert scale_warning(requests=64, docs=32, num_generations=2, max_new_tokens=512) is None
    huge = scale_warning(requests=200_000, docs=2, num_generations=100_000, max_new_tokens=512)
    assert huge is not None and "200,000 requests" in huge and "102,400,000" in huge
    many = scale_warning(requests=20_000, docs=625, num_generations=32, max_new_tokens=512)
    assert many is not None and "G=32" in many
