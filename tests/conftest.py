"""Shared test fixtures. Tests never download: the hub is offline for the whole session."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest  # noqa: E402

from hf_megadocs.generation.backends.dummy import DummyBackend  # noqa: E402
from hf_megadocs.records import SamplingConfig, SourceDoc  # noqa: E402


@pytest.fixture
def dummy_backend() -> DummyBackend:
    """A fresh in-process echo backend (records the size of every generate call)."""
    return DummyBackend()


@pytest.fixture
def small_sampling() -> SamplingConfig:
    """Sampling with a tiny completion budget, for fast tests."""
    return SamplingConfig(max_new_tokens=16, seed=0)


@pytest.fixture
def sample_docs() -> list[SourceDoc]:
    """Six short hand-made documents with distinct ids."""
    texts = [
        "The river flooded the valley in spring, and the farmers moved their cattle uphill.",
        "A new bridge opened in the city after three years of construction work.",
        "Scientists measured the glacier and found it had retreated two hundred metres.",
        "The orchestra played a programme of early music on period instruments.",
        "Local elections saw record turnout as voters queued well into the evening.",
        "The museum acquired a rare map of the coast drawn by an eighteenth-century sailor.",
    ]
    return [SourceDoc(source_id=f"doc-{i}", text=t) for i, t in enumerate(texts)]
