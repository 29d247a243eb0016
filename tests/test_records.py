"""The typed records (hf_megadocs.records): store keys and per-sample seeds."""

from __future__ import annotations

import dataclasses

import pytest

from hf_megadocs.records import Generation, GenerationRequest, SamplingConfig, stable_hash


def _request(**changes) -> GenerationRequest:
    base = GenerationRequest(
        source_id="doc-1",
        prompt_id="wiki",
        prompt_hash="abc",
        generator="g",
        generator_revision="r",
        sampling=SamplingConfig(max_new_tokens=32, seed=3),
        sample_index=0,
        messages=({"role": "user", "content": "Rewrite: hello"},),
    )
    return dataclasses.replace(base, **changes)


def _adapter(folder, weights: bytes):
    folder.mkdir()
    (folder / "adapter_config.json").write_text('{"r": 8, "peft_type": "LORA"}')
    (folder / "adapter_model.safetensors").write_bytes(weights)
    return str(folder)


def test_every_field_that_decides_the_output_changes_the_key(tmp_path):
    base = _request()
    changes = {
        "source_id": "doc-2",
        "prompt_hash": "abd",
        "generator": "h",
        "generator_revision": "s",
        "sampling": SamplingConfig(max_new_tokens=33, seed=3),
        "sample_index": 1,
        "messages": ({"role": "user", "content": "Rewrite: hullo"},),
        "input_part": "truncated:10",
        "lora": _adapter(tmp_path / "a", b"weights"),
    }
    keys = {name: _request(**{name: value}).key for name, value in changes.items()}
    assert base.key not in keys.values() and len(set(keys.values())) == len(keys)
    assert _request().key == base.key  # and nothing else does


def test_an_adapter_retrained_into_the_same_folder_gets_a_new_key(tmp_path):
    path = _adapter(tmp_path / "a", b"round 1")
    first = _request(lora=path).key
    (tmp_path / "a" / "adapter_model.safetensors").write_bytes(b"round 2, other weights")
    assert _request(lora=path).key != first


def test_a_lora_path_without_an_adapter_is_refused_with_the_fix(tmp_path):
    with pytest.raises(ValueError, match="adapter_config.json"):
        _request(lora=str(tmp_path))


def test_sample_seed_depends_on_the_sample_not_on_its_neighbours():
    seeds = [_request(sample_index=i).sample_seed for i in range(8)]
    assert len(set(seeds)) == 8 and all(0 <= s < 2**31 for s in seeds)
    assert _request(sample_index=3).sample_seed == seeds[3]
    other_base = _request(sampling=SamplingConfig(max_new_tokens=32, seed=4), sample_index=3)
    assert other_base.sample_seed != seeds[3]


def test_generation_round_trips_through_json():
    generation = Generation(
        key="k",
        source_id="d",
        prompt_id="wiki",
        prompt_hash="h",
        generator="g",
        generator_revision="r",
        sampling=SamplingConfig().key(),
        sample_index=0,
        input_part="",
        text="t",
        raw_text=" t",
        prompt_tokens=3,
        completion_tokens=1,
        finish_reason="stop",
        flags=("preamble_stripped",),
    )
    assert Generation.from_json(generation.to_json()) == generation
    assert generation.usable and not dataclasses.replace(generation, flags=("refusal",)).usable


def test_stable_hash_ignores_key_order():
    assert stable_hash({"a": 1, "b": [2, 3]}) == stable_hash({"b": [2, 3], "a": 1})
