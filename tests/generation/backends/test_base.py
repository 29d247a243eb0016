"""The backend protocol (hf_megadocs.generation.backends.base) and its factory."""

from __future__ import annotations

import pytest

from hf_megadocs.generation.backends import (
    BACKEND_NAMES,
    BackendConfig,
    GenerationBackend,
    make_backend,
)


def test_every_in_process_backend_class_implements_the_protocol():
    from hf_megadocs.generation.backends.dummy import DummyBackend
    from hf_megadocs.generation.backends.openai_backend import OpenAIBackend
    from hf_megadocs.generation.backends.transformers_backend import TransformersBackend
    from hf_megadocs.generation.backends.vllm_backend import VLLMBackend

    members = ("generate", "count_tokens", "max_context_tokens", "close", "name")
    for cls in (DummyBackend, OpenAIBackend, TransformersBackend, VLLMBackend):
        assert all(hasattr(cls, m) for m in members), cls
    assert isinstance(make_backend(BackendConfig(backend="dummy")), GenerationBackend)


def test_backend_names_are_one_list_and_bad_ones_say_which_exist():
    assert BACKEND_NAMES == ("auto", "vllm", "openai", "transformers", "dummy")
    with pytest.raises(ValueError, match="must be one of"):
        BackendConfig(backend="tgi")
    with pytest.raises(ValueError, match="base_url is required"):
        BackendConfig(backend="openai")
