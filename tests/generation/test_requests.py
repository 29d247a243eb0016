from __future__ import annotations

import pytest

from hf_megadocs.generation.backends.dummy import DummyBackend
from hf_megadocs.generation.prompts import get_prompt
from hf_megadocs.generation.requests import build_requests, document_budget, make_request
from hf_megadocs.records import SamplingConfig, SourceDoc


def test_one_request_per_doc_and_sample(sample_docs, dummy_backend, small_sampling):
    prompt = get_prompt("wiki")
    batch = build_requests(
        sample_docs, prompt, num_samples=3, backend=dummy_backend, sampling=small_sampling
    )
    assert len(batch.requests) == 18 and batch.docs == 6
    assert [(r.source_id, r.sample_index) for r in batch.requests[:4]] == [
        ("doc-0", 0),
        ("doc-0", 1),
        ("doc-0", 2),
        ("doc-1", 0),
    ]
    assert len({r.key for r in batch.requests}) == 18
    first = batch.requests[0]
    assert first.prompt_hash == prompt.content_hash and first.generator == "dummy-generator"
    assert sample_docs[0].text in first.messages[-1]["content"]
    assert first.input_part == "" and first.lora is None


def test_sample_keys_do_not_depend_on_g(sample_docs, dummy_backend, small_sampling, tmp_path):
    prompt = get_prompt("wiki")
    g2 = build_requests(
        sample_docs, prompt, num_samples=2, backend=dummy_backend, sampling=small_sampling
    )
    g4 = build_requests(
        sample_docs, prompt, num_samples=4, backend=dummy_backend, sampling=small_sampling
    )
    assert {r.key for r in g2.requests} < {r.key for r in g4.requests}
    other_seed = SamplingConfig(max_new_tokens=16, seed=1)
    g2b = build_requests(
        sample_docs, prompt, num_samples=2, backend=dummy_backend, sampling=other_seed
    )
    assert not {r.key for r in g2.requests} & {r.key for r in g2b.requests}
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"r": 8}')
    (adapter / "adapter_model.safetensors").write_bytes(b"weights one")

    def with_adapter():
        return build_requests(
            sample_docs,
            prompt,
            num_samples=2,
            backend=dummy_backend,
            sampling=small_sampling,
            lora=str(adapter),
        )

    lora = with_adapter()
    assert not {r.key for r in g2.requests} & {r.key for r in lora.requests}
    # retrained into the same folder: new weights, new keys (no stale reuse)
    (adapter / "adapter_model.safetensors").write_bytes(b"weights two")
    assert not {r.key for r in lora.requests} & {r.key for r in with_adapter().requests}
    with pytest.raises(ValueError, match="no peft adapter"):
        build_requests(
            sample_docs, prompt, num_samples=1, backend=dummy_backend,
            sampling=small_sampling, lora=str(tmp_path / "missing"),
        )  # fmt: skip


LONG = SourceDoc(source_id="long", text=" ".join(f"w{i}" for i in range(1000)))


def _budget():
    backend = DummyBackend(context_tokens=400)
    sampling = SamplingConfig(max_new_tokens=16)
    return backend, sampling, document_budget(get_prompt("wiki"), backend, sampling)


def test_too_long_doc_truncated_token_accurately(sample_docs):
    backend, sampling, budget = _budget()
    assert 100 < budget < 300
    batch = build_requests(
        [LONG, *sample_docs[:1]],
        get_prompt("wiki"),
        num_samples=2,
        backend=backend,
        sampling=sampling,
    )
    assert batch.truncated == 1 and len(batch.requests) == 4
    part = batch.requests[0].input_part
    assert part == f"truncated:{budget}"
    kept = " ".join(f"w{i}" for i in range(budget))
    assert f"<document>\n{kept}\n</document>" in batch.requests[0].messages[-1]["content"]
    assert batch.requests[2].input_part == ""


def test_too_long_doc_chunked():
    backend, sampling, budget = _budget()
    batch = build_requests(
        [LONG],
        get_prompt("wiki"),
        num_samples=2,
        backend=backend,
        sampling=sampling,
        context_policy="chunk",
    )
    n = -(-1000 // budget)
    assert batch.chunked == 1 and batch.chunks == n and len(batch.requests) == 2 * n
    parts = [r.input_part for r in batch.requests[::2]]
    assert parts == [f"chunk:{i}/{n}" for i in range(n)]
    texts = [
        r.messages[-1]["content"].split("<document>\n")[1].split("\n</document>")[0]
        for r in batch.requests[::2]
    ]
    assert all(backend.count_tokens(t) <= budget for t in texts)
    assert " ".join(texts).split() == LONG.text.split()


def test_too_long_doc_skipped(sample_docs):
    backend, sampling, _ = _budget()
    batch = build_requests(
        [LONG, *sample_docs],
        get_prompt("wiki"),
        num_samples=1,
        backend=backend,
        sampling=sampling,
        context_policy="skip",
    )
    assert dict(batch.skipped) == {"too_long": 1} and len(batch.requests) == 6
    assert batch.as_dict()["skipped"] == {"too_long": 1}


def test_no_room_for_document_is_a_clear_error(sample_docs):
    with pytest.raises(ValueError, match="lower max_new_tokens"):
        build_requests(
            sample_docs,
            get_prompt("wiki"),
            num_samples=1,
            backend=DummyBackend(context_tokens=200),
            sampling=SamplingConfig(max_new_tokens=150),
        )


def test_argument_errors(sample_docs, dummy_backend, small_sampling):
    with pytest.raises(ValueError, match="num_samples must be >= 1"):
        build_requests(
            sample_docs,
            get_prompt("wiki"),
            num_samples=0,
            backend=dummy_backend,
            sampling=small_sampling,
        )
    with pytest.raises(ValueError, match="context_policy must be one of"):
        build_requests(
            sample_docs,
            get_prompt("wiki"),
            num_samples=1,
            backend=dummy_backend,
            sampling=small_sampling,
            context_policy="drop",
        )
    with pytest.raises(ValueError, match="make_request"):
        build_requests(
            sample_docs,
            get_prompt("rationale"),
            num_samples=1,
            backend=dummy_backend,
            sampling=small_sampling,
        )


def test_make_request_for_rationales(dummy_backend, small_sampling):
    prompt = get_prompt("rationale")
    a = make_request(
        "doc-1",
        prompt,
        {"prefix": "Before.", "suffix": "After."},
        sample_index=0,
        backend=dummy_backend,
        sampling=small_sampling,
        input_part="latent:equal_tokens:1/4",
    )
    b = make_request(
        "doc-1",
        prompt,
        {"prefix": "Before.", "suffix": "After."},
        sample_index=0,
        backend=dummy_backend,
        sampling=small_sampling,
        input_part="latent:equal_tokens:2/4",
    )
    assert a.prompt_id == "rationale" and "Before." in a.messages[-1]["content"]
    assert a.key != b.key
    with pytest.raises(ValueError, match="missing"):
        make_request(
            "d",
            prompt,
            {"prefix": "x"},
            sample_index=0,
            backend=dummy_backend,
            sampling=small_sampling,
        )


@pytest.mark.slow
def test_real_tokenizer_truncation_is_token_accurate():
    from hf_megadocs.generation.backends import BackendConfig, generator_info

    info = generator_info(BackendConfig(backend="transformers", max_model_len=512))
    assert info.max_context_tokens == 512
    sampling = SamplingConfig(max_new_tokens=64)
    budget = document_budget(get_prompt("wiki"), info, sampling)
    text = "Résumé naïve café: " * 400
    batch = build_requests(
        [SourceDoc(source_id="x", text=text)],
        get_prompt("wiki"),
        num_samples=1,
        backend=info,
        sampling=sampling,
    )
    n_kept = int(batch.requests[0].input_part.split(":")[1])
    assert budget - 8 <= n_kept <= budget
    assert batch.requests[0].generator == info.generator
