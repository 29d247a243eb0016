"""Requests read window by window (hf_megadocs.generation.survey): counts, duplicates across
windows, shards and generation agree with the whole list, and counters come from one pass."""

from __future__ import annotations

from collections import Counter

from hf_megadocs.generation.backends.dummy import DummyBackend
from hf_megadocs.generation.cleaning import clean_output
from hf_megadocs.generation.fill import fill_store
from hf_megadocs.generation.prompts import get_prompt
from hf_megadocs.generation.requests import build_requests
from hf_megadocs.generation.store import GenerationStore
from hf_megadocs.generation.survey import (
    DocumentRequests,
    missing_batches,
    shard_of,
    survey,
)


def _requests(docs, sampling, samples=3):
    return build_requests(
        docs, get_prompt("wiki"), num_samples=samples, backend=DummyBackend(), sampling=sampling
    ).requests


def _windows_of(requests, size):
    """A request source whose windows are ``size`` long (and cut through documents)."""
    return lambda: (requests[i : i + size] for i in range(0, len(requests), size))


def test_survey_counts_duplicates_across_windows_once(tmp_path, sample_docs, small_sampling):
    requests = _requests(sample_docs, small_sampling)
    repeated = requests + requests[:5]  # the repeats fall in later windows
    store = GenerationStore(tmp_path)
    fill_store(requests[:4], DummyBackend(), store)
    surveyed = survey(_windows_of(repeated, 4), store)
    assert surveyed.requests == len(requests) and surveyed.duplicate_requests == 5
    assert surveyed.cached == 4 and surveyed.missing == len(requests) - 4
    assert {r.key for r in surveyed.shape_requests} <= {r.key for r in requests[4:]}
    assert surveyed.workload(8).num_requests == surveyed.missing


def test_missing_batches_hand_out_each_missing_key_once_in_full_batches(
    tmp_path, sample_docs, small_sampling
):
    requests = _requests(sample_docs, small_sampling)
    store = GenerationStore(tmp_path)
    fill_store(requests[:3], DummyBackend(), store)
    source = _windows_of(requests + requests[3:9], 5)
    backend, batches = DummyBackend(), []
    with store.writer() as writer:
        for batch in missing_batches(source, store, batch_size=4):
            batches.append(batch)  # written before the next is asked for, as fill does
            outputs = backend.generate(batch)
            writer.append([clean_output(o, r, backend.name) for r, o in zip(batch, outputs)])
    handed = [r.key for batch in batches for r in batch]
    assert handed == [r.key for r in requests[3:]]  # request order, no repeats, none stored
    assert [len(b) for b in batches[:-1]] == [4] * (len(batches) - 1)


def test_windowed_fill_equals_whole_list_fill_and_respects_shards(
    tmp_path, sample_docs, small_sampling
):
    requests = _requests(sample_docs, small_sampling)
    whole, windowed = GenerationStore(tmp_path / "a"), GenerationStore(tmp_path / "b")
    for index in range(2):
        a = fill_store(requests, DummyBackend(), whole, shard_index=index, num_shards=2)
        b = fill_store(
            _windows_of(requests, 4), DummyBackend(), windowed, shard_index=index, num_shards=2
        )
        timing = {"wall_s": 0, "tokens_per_s": 0, "startup_s": 0}
        assert a.as_dict() | timing == b.as_dict() | timing
        mine = {r.key for r in requests if shard_of(r.source_id, 2) <= index}
        assert whole.keys() == windowed.keys() == mine


def test_document_requests_count_on_their_first_pass_only(sample_docs, small_sampling):
    built = []

    def build(docs, counters: Counter):
        counters["docs"] += len(docs)
        built.append(len(docs))
        return _requests(docs, small_sampling, samples=1)

    source = DocumentRequests(sample_docs, build)
    first = [r.key for window in source() for r in window]
    second = [r.key for window in source() for r in window]
    assert first == second and len(first) == len(sample_docs)
    assert source.counters == Counter(docs=len(sample_docs)) and sum(built) == 2 * len(sample_docs)
