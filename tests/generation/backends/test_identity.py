"""A generator's identity without an engine (hf_megadocs.generation.backends.identity)."""

from __future__ import annotations

from hf_megadocs.generation.backends import BackendConfig, generator_info
from hf_megadocs.generation.embedded import EMBEDDED_GENERATOR_NAME


def test_the_embedded_generator_is_identified_from_its_tokenizer_and_config():
    info = generator_info(BackendConfig(backend="vllm"))  # no engine is started for this
    assert info.generator == EMBEDDED_GENERATOR_NAME
    assert info.generator_revision.startswith("gguf-sha256:")
    assert info.max_context_tokens == 8192
    assert 0 < info.count_tokens("The river flooded the valley.") < 12
    capped = generator_info(BackendConfig(backend="vllm", max_model_len=1024))
    assert capped.max_context_tokens == 1024


def test_cheap_backends_identify_themselves():
    info = generator_info(BackendConfig(backend="dummy"))
    assert info.generator == "dummy-generator" and hasattr(info, "generate")
