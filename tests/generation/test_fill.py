"""The one orchestrator (hf_megadocs.generation.fill): only missing keys reach a backend,
factories are called only for work, errors are counted and retried."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from hf_megadocs.generation.backends.dummy import DummyBackend
from hf_megadocs.generation.fill import fill_store
from hf_megadocs.generation.prompts import get_prompt
from hf_megadocs.generation.requests import build_requests
from hf_megadocs.generation.store import GenerationStore, StoreNotWritableError
from hf_megadocs.records import RawOutput

REPO = Path(__file__).resolve().parents[2]


def stored_line_keys(store_dir) -> Counter:
    """Every valid record key in every store file, counted (what a reader would see twice)."""
    keys: Counter = Counter()
    for path in Path(store_dir, "generations").glob("*.jsonl"):
        for line in path.read_bytes().split(b"\n"):
            try:
                keys[json.loads(line)["key"]] += 1
            except ValueError:
                pass
    return keys


def test_backend_factory_is_called_only_when_something_is_missing(
    tmp_path, sample_docs, small_sampling
):
    backend = DummyBackend()
    requests = build_requests(
        sample_docs, get_prompt("qa"), num_samples=2, backend=backend, sampling=small_sampling
    ).requests
    store = GenerationStore(tmp_path)
    made = []
    workloads = []

    def factory(workload):
        workloads.append(workload)
        made.append(DummyBackend())
        return made[-1]

    fill_store(requests[:4], factory, store, batch_size=3)
    assert len(made) == 1 and made[0].calls == [3, 1]
    # The factory sees how many requests are missing and the longest of them (one per
    # distinct prompt), so an engine can be sized for them.
    assert workloads[0].num_requests == 4 and workloads[0].batch_size == 3
    assert _prompts(workloads[0].requests) == _prompts(requests[:4])
    summary = fill_store(requests[:4] + requests[:2], factory, store)
    assert len(made) == 1 and summary.duplicate_requests == 2 and summary.cached == 4
    fill_store(requests, factory, store, batch_size=100)
    assert len(made) == 2 and made[1].calls == [8]
    assert workloads[1].num_requests == len(requests) - 4
    assert _prompts(workloads[1].requests) == _prompts(requests[4:])


def _prompts(requests):
    return {r.messages[-1]["content"] for r in requests}


class FlakyBackend(DummyBackend):
    """Fails odd sample indices on its first call, as a server returning 5xx would."""

    def generate(self, requests):
        outputs = super().generate(requests)
        if len(self.calls) > 1:
            return outputs
        return [
            RawOutput("HTTP 503", 0, 0, "error") if r.sample_index % 2 else o
            for r, o in zip(requests, outputs, strict=True)
        ]


def test_errors_are_counted_not_stored_and_retried(tmp_path, sample_docs, small_sampling):
    backend = FlakyBackend()
    requests = build_requests(
        sample_docs, get_prompt("wiki"), num_samples=2, backend=backend, sampling=small_sampling
    ).requests
    store = GenerationStore(tmp_path)
    summary = fill_store(requests, backend, store, batch_size=100)
    assert summary.errors == 6 and summary.generated == 6 and len(store) == 6
    assert all(store.get(r.key) is None for r in requests if r.sample_index % 2)
    summary = fill_store(requests, backend, store, batch_size=100)
    assert summary.cached == 6 and summary.generated == 6 and summary.errors == 0
    assert backend.calls == [12, 6] and len(store) == 12


def test_a_store_that_cannot_be_written_fails_before_any_backend_starts(
    tmp_path, sample_docs, small_sampling
):
    requests = build_requests(
        sample_docs,
        get_prompt("qa"),
        num_samples=1,
        backend=DummyBackend(),
        sampling=small_sampling,
    ).requests
    not_a_folder = tmp_path / "store"
    not_a_folder.write_text("a file where the store should be")
    started = []
    with pytest.raises(StoreNotWritableError, match="is a file, not a folder.*store_dir"):
        fill_store(
            requests, lambda workload: started.append(workload), GenerationStore(not_a_folder)
        )
    assert started == []  # no engine was paid for
    assert not_a_folder.read_text() == "a file where the store should be"
