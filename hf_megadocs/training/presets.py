"""Named presets (plain functions returning a ``TrainConfig``) and :func:`load_config`.

A variant calls its base and changes what differs; ``PRESETS`` is the explicit name →
function map that ``--preset NAME`` and a YAML ``preset:`` key look up. :func:`load_config`
resolves preset → YAML → flags onto the config tree.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import yaml

from hf_megadocs.configs import bundled_config_names, with_bundled_configs
from hf_megadocs.flags import ConfigError, parse_dataclass
from hf_megadocs.settings import flat_settings
from hf_megadocs.training.config import (
    LLAMA3_TOKENIZER,
    DataConfig,
    EvalConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
)
from hf_megadocs.training.data.mixing import MixConfig


def paper_300m() -> TrainConfig:
    """The paper's 300M Llama: hidden 768, FFN 2688, 12 layers/heads, untied, 64×4096 batch,
    Llama 3 tokenizer (with SmolLM2's 49k vocabulary the same shape is a 178M model)."""
    return TrainConfig(
        model=ModelConfig(
            tokenizer=LLAMA3_TOKENIZER,
            hidden_size=768,
            intermediate_size=2688,
            num_hidden_layers=12,
            num_attention_heads=12,
            max_position_embeddings=4096,
            tie_word_embeddings=False,
        ),
        data=DataConfig(seq_len=4096),
        mix=MixConfig(synthetic_share=0.0, real_epochs=16, global_batch_size=64, seed=0),
        optim=OptimConfig(lr=3e-3, weight_decay=1.6),
        eval=EvalConfig(max_docs=1000),  # the paper's i.i.d. eval: 1k held-out documents
        mixed_precision="bf16",
        micro_batch_size=8,
        eval_every=500,
        save_every=500,
        log_every=10,
    )


def real_only_300m() -> TrainConfig:
    """Tuned real-only baseline: E=16, lr 3e-3, wd 1.6."""
    return paper_300m()


def simple_g32_300m() -> TrainConfig:
    """Tuned simple rephrasing at G=32: E=16, m=0.75, lr 3e-3, wd 0.4."""
    config = paper_300m()
    config.data.synthetic_corpus = "simple_g32"
    config.mix = MixConfig(synthetic_share=0.75, real_epochs=16, global_batch_size=64, seed=0)
    config.optim = OptimConfig(lr=3e-3, weight_decay=0.4)
    return config


def simple_g32_m30_300m() -> TrainConfig:
    """Simple rephrasing at G=32 with Demystifying's ≈30% rephrase share (m=0.3); the other
    settings are simple_g32_300m's (not tuned at this m)."""
    config = simple_g32_300m()
    config.mix.synthetic_share = 0.3
    return config


def stitched_g32_300m() -> TrainConfig:
    """Tuned stitched megadocs at G=32: E=32, m=0.9, lr 1e-3, wd 0.4."""
    config = paper_300m()
    config.data.synthetic_corpus = "stitched_g32"
    config.mix = MixConfig(synthetic_share=0.9, real_epochs=32, global_batch_size=64, seed=0)
    config.optim = OptimConfig(lr=1e-3, weight_decay=0.4)
    return config


def latent_g32_300m() -> TrainConfig:
    """Tuned latent-thought megadocs at G=32: same settings as stitched."""
    config = stitched_g32_300m()
    config.data.synthetic_corpus = "latent_g32"
    return config


def tiny_cpu() -> TrainConfig:
    """A run of a few minutes on a 2-core CPU: tiny Llama, short context, small corpora."""
    return TrainConfig(
        model=ModelConfig(
            hidden_size=64,
            intermediate_size=256,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=512,
        ),
        data=DataConfig(
            seq_len=256,
            synthetic_corpus="stitched_g2",
            corpus_kwargs={"max_docs": 50, "max_new_tokens": 256, "enforce_eager": True},
        ),
        mix=MixConfig(synthetic_share=0.5, real_epochs=4, global_batch_size=8, seed=0),
        optim=OptimConfig(lr=3e-3, weight_decay=0.4, warmup_fraction=0.05),
        eval=EvalConfig(max_docs=32, long_context_docs=8, position_bucket=64),
        output_dir="runs/tiny_cpu",
        micro_batch_size=4,
        eval_every=20,
        save_every=20,
    )


PRESETS: dict[str, Callable[[], TrainConfig]] = {
    "paper_300m": paper_300m,
    "real_only_300m": real_only_300m,
    "simple_g32_300m": simple_g32_300m,
    "simple_g32_m30_300m": simple_g32_m30_300m,
    "stitched_g32_300m": stitched_g32_300m,
    "latent_g32_300m": latent_g32_300m,
    "tiny_cpu": tiny_cpu,
}


def get_preset(name: str) -> TrainConfig:
    """The preset called ``name``; an unknown name lists the valid ones."""
    if name not in PRESETS:
        raise ValueError(
            f"preset={name!r} is unknown; valid presets: {', '.join(sorted(PRESETS))}."
        )
    return PRESETS[name]()


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    preset: str | None = None,
) -> TrainConfig:
    """Resolve a ``TrainConfig``: preset (or the defaults) → YAML at ``path`` → flags.

    ``overrides`` may hold ``--config FILE`` itself (as ``hf-megadocs train`` passes its
    command line); ``FILE`` may name a bundled config (``tiny_cpu``). The preset is
    ``--preset NAME``, else ``preset``, else the file's ``preset:`` key. Flags are ``--section.field value`` (``--optim.lr 1e-3``), parsed by
    :func:`hf_megadocs.flags.parse_dataclass`, so ``hf-megadocs train --help`` lists them.

    Raises:
        ConfigError: an unknown field, a wrong type or a rejected value (says which).
    """
    argv = (["--config", str(path)] if path is not None else []) + list(overrides or [])
    argv = with_bundled_configs(argv)
    named = _flag_value(argv, "--preset") or preset
    config_file = _flag_value(argv, "--config")
    if named is None and config_file is not None:
        if not Path(config_file).is_file():
            raise ConfigError(
                f"--config {config_file}: no such file, nor a bundled config "
                f"({', '.join(bundled_config_names())})."
            )
        loaded = yaml.safe_load(Path(config_file).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(
                f"config file {config_file} must hold a mapping of fields, got "
                f"{type(loaded).__name__}."
            )
        named = loaded.get("preset")
    base = get_preset(named) if named else TrainConfig()
    if named:
        base.preset = named
    return parse_dataclass(
        TrainConfig,
        argv,
        prog="hf-megadocs train",
        description="Train a language model on real + synthetic megadoc corpora.",
        defaults=flat_settings(base),
    )


def _flag_value(argv: list[str], flag: str) -> str | None:
    """The value of the last ``flag VALUE`` / ``flag=VALUE`` in ``argv``, if any."""
    value = None
    for i, item in enumerate(argv):
        if item == flag and i + 1 < len(argv):
            value = argv[i + 1]
        elif item.startswith(flag + "="):
            value = item.split("=", 1)[1]
    return value
