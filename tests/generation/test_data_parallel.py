"""Several engines on one node (hf_megadocs.generation.data_parallel): where each engine
runs, which documents it owns, and what the command reports once they are done."""

from __future__ import annotations

import pytest

from hf_megadocs.generation.backends import BackendConfig
from hf_megadocs.generation.data_parallel import (
    EngineFailedError,
    EngineRun,
    EngineSlot,
    engine_backend,
    engine_shard,
    engine_slots,
)
from hf_megadocs.generation.parallel_jobs import merge_summaries
from hf_megadocs.generation.survey import shard_of


def test_cpu_engines_get_contiguous_equal_shares_of_the_cores() -> None:
    slots = engine_slots(3, cores=[0, 1, 2, 3, 4, 5, 6])
    assert [slot.cores for slot in slots] == [(0, 1, 2), (3, 4), (5, 6)]
    assert slots[0].describe() == "engine 0 (cores 0-2)"
    assert slots[1].environment()["VLLM_CPU_OMP_THREADS_BIND"] == "3,4"
    assert engine_slots(2, 2, cores=[0, 1, 2, 3])[1].environment(2) == {
        "VLLM_CPU_OMP_THREADS_BIND": "2|3"  # one list per tensor-parallel rank
    }
    with pytest.raises(ValueError, match="need at least one core each; this process may use 2"):
        engine_slots(3, cores=[0, 1])


def test_gpu_engines_get_tensor_parallel_groups_of_the_visible_devices() -> None:
    slots = engine_slots(2, 2, devices=["4", "5", "6", "7"])
    assert [slot.environment() for slot in slots] == [
        {"CUDA_VISIBLE_DEVICES": "4,5"},
        {"CUDA_VISIBLE_DEVICES": "6,7"},
    ]
    with pytest.raises(ValueError, match="needs 6 GPUs; 4 are visible"):
        engine_slots(3, 2, devices=["4", "5", "6", "7"])


def test_the_engines_of_a_shard_own_exactly_its_documents_each_wholly() -> None:
    ids = [f"doc-{i}" for i in range(2000)]
    for shard, shards, engines in [(0, 1, 2), (1, 3, 4), (2, 3, 1)]:
        mine = {d for d in ids if shard_of(d, shards) == shard}
        owners = {}
        for engine in range(engines):
            index, count = engine_shard(shard, shards, engine, engines)
            for d in ids:
                if shard_of(d, count) == index:
                    assert d not in owners  # one engine per document: its G samples together
                    owners[d] = engine
        assert set(owners) == mine
        assert len(set(owners.values())) == engines  # every engine gets work


def test_each_engine_runs_one_engine_on_its_share() -> None:
    config = BackendConfig(backend="vllm", data_parallel_size=2, max_num_seqs=32)
    one = engine_backend(config, EngineSlot(1, cores=(2, 3, 4)))
    assert (one.data_parallel_size, one.cpu_threads, one.max_num_seqs) == (1, 3, 32)
    smaller = BackendConfig(backend="vllm", data_parallel_size=2, cpu_threads=2)
    assert engine_backend(smaller, EngineSlot(0, cores=(0, 1, 2))).cpu_threads == 2
    assert engine_backend(config, EngineSlot(0, devices=("0",))).cpu_threads is None


def test_openai_data_parallelism_is_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match="set max_concurrency"):
        BackendConfig(backend="openai", base_url="http://x/v1", data_parallel_size=2)


def test_the_engines_summaries_add_up_and_a_failure_is_reported() -> None:
    source = {"source:empty": 3, "validation_split": 5}
    parts = [
        {"requests": 10, "generated": 6, "cached": 4, "completion_tokens": 60, "startup_s": 2.0,
         "wall_s": 10.0,
         "flags": {"short": 1}, "backend": "vllm",
         "skipped": {**source, "request:too_long": 1, "documents_of_other_shards": 7}},
        {"requests": 8, "generated": 8, "completion_tokens": 90, "startup_s": 3.0, "wall_s": 6.0,
         "flags": {"short": 2}, "backend": "vllm",
         "skipped": {**source, "request:too_long": 2, "documents_of_other_shards": 9}},
    ]  # fmt: skip
    merged = merge_summaries(parts)
    assert (merged.requests, merged.generated, merged.cached) == (18, 14, 4)
    assert merged.flags == {"short": 3} and (merged.startup_s, merged.wall_s) == (3.0, 10.0)
    assert merged.tokens_per_s == 15.0 and merged.backend == "vllm"
    # source counters are counted by every engine over the same source: once, not twice
    assert merged.skipped == {**source, "request:too_long": 3}
    dead = EngineRun(EngineSlot(1, cores=(1,)), -9, None)
    error = EngineFailedError([dead], merged, total=2)
    assert "engine 1 (cores 1) was killed by SIGKILL" in str(error)
    assert "rerun the same command" in str(error) and error.summary is merged
