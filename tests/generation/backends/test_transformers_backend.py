"""Real transformers generation with the embedded SmolLM2 generator (few tokens)."""

from __future__ import annotations

import pytest

from hf_megadocs.generation.backends import BackendConfig, GenerationBackend
from hf_megadocs.generation.backends.transformers_backend import SeededSampler, TransformersBackend
from hf_megadocs.generation.embedded import EMBEDDED_GENERATOR_NAME
from hf_megadocs.records import GenerationRequest, SamplingConfig

TEXTS = [
    "Bees visit flowers to collect nectar, which they turn into honey.",
    "The bridge was closed for repairs after a storm damaged its supports during the night.",
    "Snow fell.",
]


def make_request(
    text: str, sample_index: int, *, max_new_tokens: int = 8, temperature: float = 1.0
) -> GenerationRequest:
    return GenerationRequest(
        source_id=text[:10],
        prompt_id="test-rephrase",
        prompt_hash="0",
        generator=EMBEDDED_GENERATOR_NAME,
        generator_revision="test",
        sampling=SamplingConfig(temperature=temperature, max_new_tokens=max_new_tokens, seed=5),
        sample_index=sample_index,
        messages=({"role": "user", "content": f"Rephrase in plain words: {text}"},),
    )


@pytest.fixture(scope="module")
def backend():
    engine = TransformersBackend(
        BackendConfig(backend="transformers", dtype="float32", transformers_batch_size=4)
    )
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def batch() -> list[GenerationRequest]:
    return [make_request(text, i) for text in TEXTS for i in range(2)]


@pytest.fixture(scope="module")
def together(backend, batch):
    # 6 requests with batch_size 4: two generate calls, different padding in each.
    return backend.generate(batch)


@pytest.mark.slow
def test_generates_in_order_with_sane_counts(backend, batch, together) -> None:
    assert isinstance(backend, GenerationBackend)
    assert backend.generator == EMBEDDED_GENERATOR_NAME
    assert backend.max_context_tokens == 8192
    assert len(together) == 6
    for request, output in zip(batch, together):
        assert output.finish_reason in {"stop", "length"} and output.text.strip()
        assert output.prompt_tokens > backend.count_tokens(request.messages[0]["content"])
        assert 0 < output.completion_tokens <= 8
        if output.finish_reason == "length":
            assert output.completion_tokens == 8


@pytest.mark.slow
def test_sample_depends_on_seed_not_on_batch(backend, batch, together) -> None:
    # Alone (no padding, batch of one) and among other neighbours: same seed, same sample.
    alone = backend.generate([batch[3]])[0]
    regrouped = backend.generate([make_request(TEXTS[1], 2), batch[3], make_request(TEXTS[1], 3)])
    assert alone.text == together[3].text == regrouped[1].text
    # Other sample indices of the same document get other seeds, hence other texts.
    assert len({together[3].text, regrouped[0].text, regrouped[2].text}) == 3


@pytest.mark.slow
def test_temperature_zero_is_greedy_and_long_prompts_error(backend) -> None:
    greedy = [make_request(TEXTS[0], i, temperature=0.0) for i in range(2)]
    too_long = make_request("word " * 9000, 0)
    outputs = backend.generate([*greedy, too_long])
    assert outputs[0].text == outputs[1].text  # different seeds, but no sampling
    assert outputs[2].finish_reason == "error" and "exceeds the context" in outputs[2].text


def test_seeded_sampler_respects_top_p() -> None:
    import torch

    scores = torch.log(torch.tensor([[0.6, 0.3, 0.1]] * 2))
    sampler = SeededSampler([1, 2], [1.0, 1.0], [0.5, 1.0], device="cpu")
    draws = [sampler(None, scores).argmax(dim=-1).tolist() for _ in range(200)]
    assert {row[0] for row in draws} == {0}  # top_p=0.5 keeps only the 0.6 token
    assert {row[1] for row in draws} == {0, 1, 2}
