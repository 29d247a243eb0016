"""vLLM engine arguments from the job (hf_megadocs.generation.backends.vllm_engine): what a
fresh machine gets, what a user's setting overrides, what fails before the engine starts."""

from __future__ import annotations

import dataclasses

import pytest

from hf_megadocs.generation.backends import BackendConfig, sizing
from hf_megadocs.generation.backends.sizing import GiB, NodeMemory, Workload
from hf_megadocs.generation.backends.vllm_engine import engine_kwargs
from tests.generation.backends.test_sizing import FRESH_NODE, SMOLLM2, request, words


def cpu_kwargs(config, requests, *, memory=FRESH_NODE, batch_size=256):
    """``engine_kwargs`` for the SmolLM2 shape on a CPU node showing ``memory``."""
    return engine_kwargs(
        config,
        "/models/smollm2",
        workload=Workload(requests=requests, batch_size=batch_size) if requests else None,
        count_tokens=words,
        on_cuda=False,
        model_config=SMOLLM2,
        model_max_len=8192,
        memory=memory,
    )


def test_a_fresh_machine_gets_a_cache_sized_by_the_job_not_by_a_share() -> None:
    """The README job on a node showing 9 GiB: the settings that result."""
    requests = [request(" ".join(["w"] * 350), sample=i) for i in range(160)]
    kwargs, reason = cpu_kwargs(BackendConfig(backend="vllm"), requests)
    assert "gpu_memory_utilization" not in kwargs  # never a share on CPU by default
    assert kwargs["max_model_len"] == 768  # 350 + 64 margin + 160 new -> 574 -> 768
    # 160 sequences x 768 tokens x 23,040 B = 2.64 GiB, capped at 1 GiB.
    assert kwargs["kv_cache_memory_bytes"] == sizing.KV_CACHE_CAP_BYTES
    assert kwargs["enable_chunked_prefill"] is False
    assert kwargs["max_num_batched_tokens"] >= kwargs["max_model_len"]
    assert "max_model_len=768" in reason and "1.00 GiB" in reason
    # The old default, a 0.15 share of this node, left 0.12 GiB once weights were in; the
    # job's size does not depend on how long the machine has been up.
    assert kwargs["kv_cache_memory_bytes"] > 0.12 * GiB
    later = NodeMemory(total_bytes=22 * GiB, available_bytes=21 * GiB, source="an hour later")
    again, _ = cpu_kwargs(BackendConfig(backend="vllm"), requests, memory=later)
    assert again == kwargs


def test_a_small_job_gets_a_small_cache_above_the_floor() -> None:
    requests = [request("a short note", max_new_tokens=32) for _ in range(2)]
    kwargs, _ = cpu_kwargs(BackendConfig(backend="vllm"), requests)
    assert kwargs["max_model_len"] == 256
    assert kwargs["kv_cache_memory_bytes"] == sizing.KV_CACHE_FLOOR_BYTES


def test_explicit_settings_win() -> None:
    requests = [request("a short note")]
    common = dict(
        workload=Workload(requests=requests, batch_size=8),
        count_tokens=words,
        model_config=SMOLLM2,
        model_max_len=8192,
        memory=FRESH_NODE,
    )
    kwargs, _ = engine_kwargs(
        BackendConfig(backend="vllm", kv_cache_memory_gb=0.5, max_model_len=1024),
        "m",
        on_cuda=False,
        **common,
    )
    assert kwargs["kv_cache_memory_bytes"] == GiB // 2
    assert kwargs["max_model_len"] == 256  # the job is short; max_model_len only caps
    shared, reason = engine_kwargs(
        BackendConfig(backend="vllm", gpu_memory_utilization=0.4), "m", on_cuda=False, **common
    )
    assert shared["gpu_memory_utilization"] == 0.4 and "kv_cache_memory_bytes" not in shared
    assert "as configured" in reason
    cuda, _ = engine_kwargs(BackendConfig(backend="vllm"), "m", on_cuda=True, **common)
    assert cuda["gpu_memory_utilization"] == 0.9 and "kv_cache_memory_bytes" not in cuda
    assert "enable_chunked_prefill" not in cuda


def test_too_little_memory_is_refused_before_the_engine_with_the_fix() -> None:
    tiny = dataclasses.replace(FRESH_NODE, available_bytes=50 << 20)
    with pytest.raises(ValueError, match="max_model_len") as error:
        cpu_kwargs(BackendConfig(backend="vllm"), [request("note")], memory=tiny)
    assert "available on the NUMA node" in str(error.value)
    with pytest.raises(ValueError, match="kv_cache_memory_gb"):
        cpu_kwargs(BackendConfig(backend="vllm", kv_cache_memory_gb=1.0), [], memory=tiny)


def test_throughput_knobs_reach_the_engine_and_not_the_fingerprint() -> None:
    from hf_megadocs.generation.generate import GenerationConfig
    from hf_megadocs.settings import output_settings

    knobs = dict(
        max_num_seqs=64,
        max_num_batched_tokens=16384,
        enable_prefix_caching=True,
        speculative_config={"method": "ngram", "num_speculative_tokens": 4},
    )
    kwargs, _ = cpu_kwargs(BackendConfig(backend="vllm", **knobs), [request("a short note")])
    assert {name: kwargs[name] for name in knobs} == knobs
    plain, _ = cpu_kwargs(BackendConfig(backend="vllm"), [request("a short note")])
    assert not {"max_num_seqs", "enable_prefix_caching", "speculative_config"} & set(plain)
    tuned = GenerationConfig(backend=BackendConfig(backend="vllm", data_parallel_size=2, **knobs))
    assert output_settings(tuned) == output_settings(
        GenerationConfig(backend=BackendConfig(backend="vllm"))
    )


def test_a_cpu_step_budget_below_the_context_is_refused_with_the_fix() -> None:
    config = BackendConfig(backend="vllm", max_num_batched_tokens=128)
    with pytest.raises(ValueError, match="max_num_batched_tokens=128 is below"):
        cpu_kwargs(config, [request("a short note", max_new_tokens=200)])


def test_speculative_config_must_be_a_mapping() -> None:
    with pytest.raises(ValueError, match="speculative_config must be a mapping"):
        BackendConfig(backend="vllm", speculative_config="ngram")  # type: ignore[arg-type]
