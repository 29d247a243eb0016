"""Tests for hf_megadocs.train.config: presets, YAML + flag overrides, validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from hf_megadocs.train.config import (
    TrainConfig,
    config_from_dict,
    load_config,
    parse_overrides,
)
from hf_megadocs.train.presets import PRESETS, get_preset

CONFIGS = Path(__file__).resolve().parents[1] / "recipes" / "configs"


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds_and_round_trips(name):
    config = get_preset(name)
    assert isinstance(config, TrainConfig)
    assert config_from_dict(config.to_dict()) == config


def test_paper_presets_carry_the_tuned_settings():
    real = get_preset("real_only_300m")
    assert (real.mix.real_epochs, real.optim.lr, real.optim.weight_decay) == (16, 3e-3, 1.6)
    assert real.mix.synthetic_share == 0 and not real.data.has_synthetic
    simple = get_preset("simple_g32_300m")
    assert (simple.mix.real_epochs, simple.mix.synthetic_share, simple.optim.weight_decay) == (
        16,
        0.75,
        0.4,
    )
    assert simple.optim.lr == 3e-3 and simple.data.synthetic_corpus == "simple_g32"
    for name in ("stitched_g32_300m", "latent_g32_300m"):
        c = get_preset(name)
        assert (c.mix.real_epochs, c.mix.synthetic_share, c.optim.lr, c.optim.weight_decay) == (
            32,
            0.9,
            1e-3,
            0.4,
        )
    model = real.model
    assert (
        model.hidden_size,
        model.intermediate_size,
        model.num_hidden_layers,
        model.num_attention_heads,
    ) == (768, 2688, 12, 12)
    assert model.tie_word_embeddings is False
    assert real.data.seq_len == 4096 and real.global_batch_size == 64
    assert real.optim.betas == (0.9, 0.95) and real.optim.eps == 1e-8 and real.optim.clip == 1.0
    assert real.optim.warmup_fraction == 0.01 and real.optim.min_lr == 0.0


def test_unknown_preset_lists_valid_ones():
    with pytest.raises(ValueError, match="stitched_g32_300m"):
        get_preset("nope")


def test_parse_overrides_nested_and_typed():
    out = parse_overrides(
        [
            "--optim.lr",
            "1e-3",
            "--mix.synthetic_share=0.9",
            "--max_steps",
            "5",
            "--optim.betas",
            "[0.9, 0.99]",
            "--data.synthetic_corpus",
            "null",
            "--resume_from_checkpoint",
            "latest",
        ]
    )
    assert out == {
        "optim": {"lr": "1e-3", "betas": [0.9, 0.99]},
        "mix": {"synthetic_share": 0.9},
        "max_steps": 5,
        "data": {"synthetic_corpus": None},
        "resume_from_checkpoint": "latest",
    }


@pytest.mark.parametrize("argv", [["--optim.lr"], ["lr", "1"], ["--"]])
def test_parse_overrides_rejects_malformed_flags(argv):
    with pytest.raises(ValueError, match="flag|expected"):
        parse_overrides(argv)


def test_yaml_then_flags_override_in_order(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("preset: stitched_g32_300m\noptim:\n  lr: 2.0e-3\noutput_dir: runs/a\n")
    config = load_config(path, ["--optim.weight_decay", "0.8", "--output_dir", "runs/b"])
    assert config.optim.lr == 2e-3  # YAML over preset
    assert config.optim.weight_decay == 0.8  # flag over preset
    assert config.output_dir == "runs/b"  # flag over YAML
    assert config.mix.synthetic_share == 0.9  # untouched preset value
    assert isinstance(config.optim.lr, float)


def test_shipped_configs_parse():
    tiny = load_config(CONFIGS / "tiny_cpu.yaml")
    assert (
        tiny.data.synthetic_corpus == "stitched_g2"
        and tiny.data.seq_len <= tiny.model.max_position_embeddings
    )
    paper = load_config(CONFIGS / "paper_300m.yaml")
    assert paper.model.hidden_size == 768 and paper.mixed_precision == "bf16"
    assert paper.mix.synthetic_share == 0.9 and paper.mix.real_epochs == 32


@pytest.mark.parametrize(
    ("flags", "match"),
    [
        (["--optim.lrr", "1"], r"optim\.lrr.*valid fields of optim: betas, clip, eps, lr"),
        (["--nope", "1"], r"unknown config field.*nope.*valid fields: compile, data"),
        (["--mix.synthetic_share", "1.0"], r"synthetic_share.*\[0, 1\)"),
        (["--mix.synthetic_share", "-0.1"], r"synthetic_share.*\[0, 1\)"),
        (["--mix.real_epochs", "0"], r"real_epochs must be > 0"),
        (["--optim.lr", "fast"], r"optim\.lr='fast'.*number"),
        (["--data.attention", "block"], r"data\.attention='block'.*cross_document"),
        (["--data.seq_len", "1024"], r"data\.seq_len=1024.*max_position_embeddings \(512\)"),
        (["--model.hidden_size", "66"], r"num_attention_heads=4.*divisor"),
        (["--compile", "maybe"], r"compile='maybe'.*true or false"),
        (["--data.synthetic_corpus", "null"], r"mix\.synthetic_share=0\.5.*synthetic_corpus"),
        (["--optim.betas", "[0.9]"], r"optim\.betas"),
    ],
)
def test_bad_values_raise_naming_the_field(flags, match):
    with pytest.raises(ValueError, match=match):
        load_config(CONFIGS / "tiny_cpu.yaml", flags)


def test_yaml_no_stays_a_string_for_literal_fields(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("mixed_precision: no\nlog_with: none\n")
    config = load_config(path, ["--mixed_precision", "no"])
    assert config.mixed_precision == "no" and config.log_with == "none"


def test_gradient_accumulation_is_derived_and_checked():
    config = load_config(
        CONFIGS / "tiny_cpu.yaml", ["--mix.global_batch_size", "16", "--micro_batch_size", "4"]
    )
    assert config.gradient_accumulation_steps(1) == 4
    assert config.gradient_accumulation_steps(2) == 2
    with pytest.raises(ValueError, match="not divisible by micro_batch_size × processes = 4 × 3"):
        config.gradient_accumulation_steps(3)


def test_tiny_cpu_yaml_matches_its_preset():
    assert load_config(CONFIGS / "tiny_cpu.yaml") == get_preset("tiny_cpu")
