"""The dummy backend (hf_megadocs.generation.backends.dummy): deterministic, one output each."""

from __future__ import annotations

import dataclasses

from hf_megadocs.generation.backends.dummy import DummyBackend
from hf_megadocs.generation.prompts import get_prompt
from hf_megadocs.generation.requests import build_requests


def test_outputs_are_seeded_per_sample_and_independent_of_batching(sample_docs, small_sampling):
    backend = DummyBackend()
    requests = build_requests(
        sample_docs, get_prompt("wiki"), num_samples=2, backend=backend, sampling=small_sampling
    ).requests
    together = backend.generate(requests)
    alone = [backend.generate([r])[0] for r in requests]
    assert together == alone and len(together) == len(requests)
    assert backend.calls == [len(requests)] + [1] * len(requests)
    other = dataclasses.replace(requests[0], sample_index=5)
    assert backend.generate([other])[0].text != together[0].text  # another sample, another seed
