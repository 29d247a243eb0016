"""The generate job (hf_megadocs.generation.generate): G samples of a prompt over a source,
sharded with no coordinator, validation documents never generated."""

from __future__ import annotations

from collections import Counter

import pytest

from hf_megadocs.generation.backends import BackendConfig
from hf_megadocs.generation.backends.dummy import DummyBackend
from hf_megadocs.generation.fill import default_shard, shard_of
from hf_megadocs.generation.generate import GenerationConfig, generate
from hf_megadocs.generation.prompts import get_prompt
from hf_megadocs.generation.requests import build_requests
from hf_megadocs.generation.sources import SourceConfig, load_source
from hf_megadocs.generation.splits import SplitConfig, split_of
from hf_megadocs.generation.store import GenerationStore
from hf_megadocs.records import SamplingConfig
from tests.generation.test_fill import stored_line_keys


def config(store_dir, **overrides) -> GenerationConfig:
    values = dict(
        source=SourceConfig(source="embedded", max_docs=6),
        num_samples=4,
        sampling=SamplingConfig(max_new_tokens=16),
        backend=BackendConfig(backend="dummy"),
        store_dir=str(store_dir),
        batch_size=5,
        num_shards=1,
        shard_index=0,
    )
    values.update(overrides)
    return GenerationConfig(**values)


def test_smaller_g_after_larger_g_sends_no_request(tmp_path):
    first = DummyBackend()
    summary = generate(config(tmp_path), backend=first)
    assert summary.generated == summary.requests == 24 and summary.cached == 0
    assert first.calls == [5, 5, 5, 5, 4]
    again = DummyBackend()
    summary = generate(config(tmp_path, num_samples=2), backend=again)
    assert again.calls == []
    assert summary.cached == summary.requests == 12 and summary.generated == 0
    assert "| cached (already in store) | 12 |" in summary.as_table()
    store = GenerationStore(tmp_path)
    assert len(store) == 24 and [p["prompt_id"] for p in store.prompts()] == ["wiki"]
    assert len(store.runs()) == 2 and store.runs()[0]["summary"]["generated"] == 24


def test_three_shards_cover_every_key_exactly_once(tmp_path):
    totals = Counter()
    for index in range(3):
        summary = generate(
            config(tmp_path, num_shards=3, shard_index=index), backend=DummyBackend()
        )
        totals["requests"] += summary.requests
        totals["generated"] += summary.generated
        assert summary.other_shards == 0  # other shards' documents are not even built
        others = summary.skipped.get("documents_of_other_shards", 0)
        assert summary.requests == 4 * (6 - others)
    expected = {
        r.key
        for r in build_requests(
            list(load_source(SourceConfig(source="embedded", max_docs=6))),
            get_prompt("wiki"),
            num_samples=4,
            backend=DummyBackend(),
            sampling=SamplingConfig(max_new_tokens=16),
        ).requests
    }
    assert totals == {"requests": 24, "generated": 24}
    docs = list(load_source(SourceConfig(source="embedded", max_docs=6)))
    assert len({shard_of(d.source_id, 3) for d in docs}) == 3
    assert set(stored_line_keys(tmp_path)) == expected
    assert set(stored_line_keys(tmp_path).values()) == {1}
    files = sorted(p.name for p in (tmp_path / "generations").glob("*.jsonl"))
    assert [f.split("-")[1] for f in files] == ["0", "1", "2"]
    locks = sorted(p.name for p in (tmp_path / "generations").glob("*.lock"))
    assert locks == [f"shard-{i}-of-3.lock" for i in range(3)]  # one writer per shard


def test_validation_docs_are_never_generated(tmp_path):
    summary = generate(
        config(
            tmp_path,
            source=SourceConfig(source="embedded", max_docs=40),
            num_samples=1,
            split=SplitConfig(validation_fraction=0.25),
        ),
        backend=DummyBackend(),
    )
    held_out = summary.skipped["validation_split"]
    assert 2 <= held_out <= 20 and summary.requests == 40 - held_out
    store = GenerationStore(tmp_path)
    source_ids = {g.source_id for g in store.get_many(store.keys()).values()}
    assert (
        all(split_of(s, 0.25, 0) == "train" for s in source_ids)
        and len(source_ids) == 40 - held_out
    )


def test_config_errors_name_the_field(monkeypatch):
    with pytest.raises(ValueError, match="prompt_id='summary' is unknown; use one of wiki"):
        GenerationConfig(prompt_id="summary")
    with pytest.raises(ValueError, match="latent_g"):
        GenerationConfig(prompt_id="rationale")
    with pytest.raises(ValueError, match="num_samples must be >= 1"):
        GenerationConfig(num_samples=0)
    with pytest.raises(ValueError, match="shard_index and num_shards go together"):
        GenerationConfig(num_shards=2)
    with pytest.raises(ValueError, match="shard_index must be in"):
        GenerationConfig(num_shards=2, shard_index=2)
    with pytest.raises(ValueError, match="validation_fraction"):
        GenerationConfig(split=SplitConfig(validation_fraction=1.0))
    for name in ("RANK", "WORLD_SIZE", "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT"):
        monkeypatch.delenv(name, raising=False)
    assert default_shard() == (0, 1)
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "5")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "4")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "3")
    assert default_shard() == (1, 3)
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "4")
    cfg = GenerationConfig()
    assert (cfg.shard_index, cfg.num_shards) == (2, 4)


def test_shards_filled_apart_serve_the_corpus_build_without_a_request(tmp_path):
    """The cluster recipe: N `generate` shards into one store, then the builder reads it."""
    from hf_megadocs.corpora.config import config_from_knobs
    from hf_megadocs.corpora.plan import prepare_corpus

    for index in range(3):
        generate(config(tmp_path, num_shards=3, shard_index=index), backend=DummyBackend())
    stitched = config_from_knobs(
        "stitched_g4", source="embedded", max_docs=6, max_new_tokens=16, backend="dummy",
        store_dir=str(tmp_path),
    )  # fmt: skip
    counters = prepare_corpus(stitched).counters
    assert counters["generation"]["generated"] == 0
    assert counters["generation"]["cached"] == counters["generations_used"] > 0
