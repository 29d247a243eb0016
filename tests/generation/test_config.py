"""The shared generation settings (hf_megadocs.generation.config)."""

from __future__ import annotations

import pytest

from hf_megadocs.generation.backends import BackendConfig
from hf_megadocs.generation.backends.dummy import DummyBackend
from hf_megadocs.generation.config import GenerationSettings
from hf_megadocs.generation.prompts import get_prompt
from hf_megadocs.generation.sources import SourceConfig, SourceStats
from hf_megadocs.generation.splits import SplitConfig


def test_documents_split_by_id_and_every_read_document_is_counted():
    settings = GenerationSettings(
        source=SourceConfig(source="embedded", max_docs=40),
        split=SplitConfig(validation_fraction=0.25),
    )
    stats = SourceStats()
    train, validation = settings.read_documents(stats)
    assert len(train) + len(validation) == stats.kept == 40 and validation
    assert all(settings.split.of(d.source_id) == "validation" for d in validation)
    assert all(settings.split.of(d.source_id) == "train" for d in train)


def test_sample_requests_carry_the_settings(sample_docs, tmp_path):
    (tmp_path / "adapter_config.json").write_text("{}")
    settings = GenerationSettings(backend=BackendConfig(backend="dummy", lora_path=str(tmp_path)))
    batch = settings.sample_requests(sample_docs, get_prompt("qa"), 3, DummyBackend())
    assert len(batch.requests) == 3 * len(sample_docs)
    assert {r.lora for r in batch.requests} == {str(tmp_path)}
    assert {r.sampling for r in batch.requests} == {settings.sampling}


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="context_policy"):
        GenerationSettings(context_policy="squeeze")
    with pytest.raises(ValueError, match="batch_size"):
        GenerationSettings(batch_size=0)
