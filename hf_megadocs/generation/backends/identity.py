"""A generator's identity, tokenizer and context, read without starting an engine.

Request keys need the generator's name, revision and tokenizer; :func:`generator_info`
gives them from the config alone, so the store can be consulted (and a fully cached build
finished) without loading weights or starting vLLM.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hf_megadocs.generation.embedded import resolve_generator

if TYPE_CHECKING:
    from hf_megadocs.generation.backends import BackendConfig


@dataclass
class TokenizerInfo:
    """A generator's identity, tokenizer and context length, without loading its weights."""

    generator: str
    generator_revision: str
    tokenizer: Any
    context_tokens: int

    def count_tokens(self, text: str) -> int:
        """Tokens in ``text`` (no special tokens)."""
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    @property
    def max_context_tokens(self) -> int:
        return self.context_tokens


def tokenizer_info(config: BackendConfig) -> TokenizerInfo:
    """The generator's tokenizer and model config, read with transformers (no weights)."""
    # resolved (and a missing generator refused) before transformers' slow import
    path, display_name, revision = resolve_generator(
        config.generator, config.revision, to_load=True
    )
    from transformers import AutoConfig, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, revision=config.revision)
    model_config = AutoConfig.from_pretrained(path, revision=config.revision)
    context = getattr(model_config, "max_position_embeddings", None) or tokenizer.model_max_length
    if config.max_model_len:
        context = min(context, config.max_model_len)
    if not context or context > 10**8:  # tokenizers report a huge sentinel when unknown
        raise ValueError(
            f"Cannot tell the context length of generator {display_name!r}; set "
            "BackendConfig.max_model_len (--backend.max_model_len)."
        )
    return TokenizerInfo(
        generator=display_name,
        generator_revision=revision,
        tokenizer=tokenizer,
        context_tokens=int(context),
    )


__all__ = ["TokenizerInfo", "tokenizer_info"]
