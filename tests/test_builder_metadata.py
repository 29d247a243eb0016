"""Listing a corpus generates nothing; streaming reads a complete store or refuses (issue 26).

``get_dataset_split_names`` / ``get_dataset_config_info`` / ``get_dataset_infos`` and
``streaming=True`` reach the builder's ``_split_generators`` with a
``StreamingDownloadManager``; before the fix that filled the store (started the backend and
generated every request). Every test starts from empty caches and a dummy backend whose
``generate`` calls are counted.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import datasets
import pytest

import hf_megadocs  # registers the builder (conftest.py keeps the hub offline)
from hf_megadocs.corpora.stored import CorpusNotGeneratedError, generate_command
from hf_megadocs.generation.backends.dummy import DummyBackend
from hf_megadocs.generation.store import GenerationStore

FAST = {"backend": "dummy", "max_docs": 16, "max_new_tokens": 12, "validation_fraction": 0.25}
ALL_SPLITS = ["train", "validation", "validation_long"]


@pytest.fixture
def where(tmp_path, monkeypatch):
    """Empty caches (HF_MEGADOCS_CACHE, HF_HOME, the datasets cache) and the store in them."""
    monkeypatch.setenv("HF_MEGADOCS_CACHE", str(tmp_path / "megadocs"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    return {"cache_dir": str(tmp_path / "hf" / "datasets"), "store_dir": str(tmp_path / "store")}


@pytest.fixture
def generated(monkeypatch):
    """The number of requests every DummyBackend was asked to generate, in call order."""
    calls: list[int] = []
    real_generate = DummyBackend.generate

    def counting_generate(self, requests):
        calls.append(len(requests))
        return real_generate(self, requests)

    monkeypatch.setattr(DummyBackend, "generate", counting_generate)
    return calls


def _assert_nothing_generated(where, generated):
    assert generated == []
    assert len(GenerationStore(where["store_dir"])) == 0
    assert not Path(where["store_dir"]).exists()  # not even a run record


@pytest.mark.parametrize("name", ["simple_g4", "stitched_g2", "latent_g2", "real"])
def test_split_names_generate_nothing_and_match_the_built_corpus(name, where, generated):
    names = datasets.get_dataset_split_names("hf_megadocs", name, **where, **FAST)
    assert names == ALL_SPLITS
    _assert_nothing_generated(where, generated)
    built = datasets.load_dataset("hf_megadocs", name, **where, **FAST)
    assert list(built) == names
    assert (sum(generated) > 0) == (name != "real")


def test_split_names_follow_the_source_without_generating(where, generated):
    knobs = {**FAST, "validation_fraction": 0.0, "long_doc_min_words": None}
    assert datasets.get_dataset_split_names("hf_megadocs", "simple_g2", **where, **knobs) == [
        "train"
    ]
    _assert_nothing_generated(where, generated)


def test_config_names_and_infos_generate_nothing(where, generated):
    names = datasets.get_dataset_config_names("hf_megadocs")
    assert "stitched_g32" in names and "real" in names
    info = datasets.get_dataset_config_info("hf_megadocs", "stitched_g32", **where, **FAST)
    assert list(info.splits) == ALL_SPLITS
    assert "segments" in info.features
    infos = datasets.get_dataset_infos("hf_megadocs", **where, **FAST)
    assert set(infos) == set(names)
    assert all(list(i.splits) == ALL_SPLITS for i in infos.values())
    _assert_nothing_generated(where, generated)


def test_streaming_an_ungenerated_corpus_refuses_naming_generate(where, generated):
    with pytest.raises(CorpusNotGeneratedError, match="hf-megadocs generate") as refused:
        datasets.load_dataset("hf_megadocs", "simple_g2", streaming=True, **where, **FAST)
    assert "streaming=True never generates" in str(refused.value)
    _assert_nothing_generated(where, generated)
    with pytest.raises(CorpusNotGeneratedError, match="Only the corpus builder"):
        hf_megadocs.load_corpus("latent_g2", streaming=True, **where, **FAST)
    _assert_nothing_generated(where, generated)


def test_streaming_a_partly_generated_corpus_refuses_with_the_count(where, generated):
    hf_megadocs.load_corpus("simple_g1", **where, **FAST)  # sample 0 of every train document
    filled = sum(generated)
    assert filled > 0
    with pytest.raises(CorpusNotGeneratedError, match=f"{filled} of the {2 * filled} gen"):
        datasets.load_dataset("hf_megadocs", "stitched_g2", streaming=True, **where, **FAST)
    assert sum(generated) == filled  # the refusal generated nothing


def test_validation_splits_stream_without_generations(where, generated):
    streamed = datasets.load_dataset(
        "hf_megadocs", "stitched_g2", split="validation", streaming=True, **where, **FAST
    )
    rows = list(streamed)
    _assert_nothing_generated(where, generated)
    built = datasets.load_dataset("hf_megadocs", "stitched_g2", split="validation", **where, **FAST)
    assert rows == list(built) and len(rows) > 0


def test_the_refusals_command_fills_the_store_then_streaming_matches_the_build(where, generated):
    from hf_megadocs.generation.cli import main as generate_main

    with pytest.raises(CorpusNotGeneratedError) as refused:
        datasets.load_dataset("hf_megadocs", "simple_g2", streaming=True, **where, **FAST)
    command = next(
        line.strip() for line in str(refused.value).splitlines() if "hf-megadocs generate " in line
    )
    argv = shlex.split(command)
    assert argv[:2] == ["hf-megadocs", "generate"]
    assert generate_main(argv[2:]) == 0
    filled = sum(generated)
    assert filled > 0
    streamed = datasets.load_dataset("hf_megadocs", "simple_g2", streaming=True, **where, **FAST)
    assert isinstance(streamed, datasets.IterableDatasetDict) and list(streamed) == ALL_SPLITS
    first = next(iter(streamed["train"]))
    built = datasets.load_dataset("hf_megadocs", "simple_g2", **where, **FAST)
    assert sum(generated) == filled  # the build found every generation stored
    assert first == built["train"][0]
    for split in ALL_SPLITS:
        assert list(streamed[split]) == list(built[split]), split


def test_generate_command_spells_the_corpus_generation_settings(tmp_path):
    from hf_megadocs.corpora.config import config_from_knobs
    from hf_megadocs.flags import parse_dataclass
    from hf_megadocs.generation.generate import GenerationConfig

    config = config_from_knobs(
        "qa_g3",
        **FAST,
        store_dir=str(tmp_path / "my store"),
        temperature=0.7,
        source_split="train",
        context_policy="skip",
    )
    command = generate_command(config)
    assert command is not None
    parsed = parse_dataclass(GenerationConfig, shlex.split(command)[2:], prog="generate")
    assert (parsed.prompt_id, parsed.num_samples) == ("qa", 3)
    for section in ("source", "split", "sampling", "backend", "context_policy", "store_dir"):
        assert getattr(parsed, section) == getattr(config, section), section
    assert generate_command(config_from_knobs("latent_g2", **FAST)) is None


class _FlaggingBackend(DummyBackend):
    """Every third output empty (flagged, unusable), so assembly has generations to skip."""

    def generate(self, requests):
        outputs = super().generate(requests)
        for i in range(0, len(outputs), 3):
            outputs[i] = type(outputs[i])("", 0, 0, "stop")
        return outputs


@pytest.mark.parametrize("name", ["simple_g2", "stitched_g2", "qa_g2"])
def test_streaming_skips_the_unusable_generations_the_build_skips(name, where):
    built = hf_megadocs.load_corpus(name, generation_backend=_FlaggingBackend(), **where, **FAST)
    counters = GenerationStore(where["store_dir"]).runs()[-1]["summary"]["corpus"]
    assert counters["generations_unusable:empty"] > 0
    streamed = datasets.load_dataset(
        "hf_megadocs", name, split="train", streaming=True, **where, **FAST
    )
    assert list(streamed) == list(built["train"])
