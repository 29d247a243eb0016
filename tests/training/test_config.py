"""The training config tree (hf_megadocs.training.config): every bad value names its field."""

from __future__ import annotations

from pathlib import Path

import pytest

from hf_megadocs.training.presets import load_config

CONFIGS = Path(__file__).resolve().parents[2] / "recipes" / "configs"


@pytest.mark.parametrize(
    ("flags", "match"),
    [
        (["--optim.lrr", "1"], r"optim\.lrr"),
        (["--nope", "1"], r"nope"),
        (["--mix.synthetic_share", "1.0"], r"synthetic_share.*\[0, 1\)"),
        (["--mix.synthetic_share", "-0.1"], r"synthetic_share.*\[0, 1\)"),
        (["--mix.real_epochs", "0"], r"real_epochs must be > 0"),
        (["--optim.lr", "fast"], r"optim\.lr.*fast"),
        (["--data.attention", "block"], r"data\.attention.*block"),
        (["--data.seq_len", "1024"], r"data\.seq_len=1024.*max_position_embeddings \(512\)"),
        (["--model.hidden_size", "66"], r"num_attention_heads=4.*divisor"),
        (["--compile", "maybe"], r"compile.*maybe"),
        (["--data.synthetic_corpus", "null"], r"mix\.synthetic_share=0\.5.*synthetic_corpus"),
        (["--optim.betas", "[0.9]"], r"optim\.betas"),
    ],
)
def test_bad_values_raise_naming_the_field(flags, match):
    with pytest.raises(ValueError, match=match):
        load_config(CONFIGS / "tiny_cpu.yaml", flags)


def test_gradient_accumulation_is_derived_and_checked():
    config = load_config(
        CONFIGS / "tiny_cpu.yaml", ["--mix.global_batch_size", "16", "--micro_batch_size", "4"]
    )
    assert config.gradient_accumulation_steps(1) == 4
    assert config.gradient_accumulation_steps(2) == 2
    with pytest.raises(ValueError, match="not divisible by micro_batch_size × processes = 4 × 3"):
        config.gradient_accumulation_steps(3)
