"""Presets and load_config (hf_megadocs.training.presets): preset → YAML → flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from hf_megadocs.settings import flat_settings
from hf_megadocs.training.config import TrainConfig
from hf_megadocs.training.presets import PRESETS, get_preset, load_config

CONFIGS = Path(__file__).resolve().parents[2] / "recipes" / "configs"


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds_and_round_trips_through_flags(name):
    config = get_preset(name)
    assert isinstance(config, TrainConfig)
    loaded = load_config(overrides=["--preset", name])
    assert loaded.preset == name
    loaded.preset = None
    assert loaded == config
    # Every field spelled as a flag gives the same config back (one spelling, all fields).
    settings = {k: v for k, v in flat_settings(config).items() if k != "preset"}
    flags = [item for key, value in settings.items() for item in _flag(key, value)]
    assert load_config(overrides=flags) == config


def _flag(key, value):
    import json

    if isinstance(value, str):
        return [f"--{key}", value]
    return [f"--{key}", json.dumps(list(value) if isinstance(value, tuple) else value)]


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
    for name in ("real_only_300m", "simple_g32_300m", "stitched_g32_300m", "latent_g32_300m"):
        assert get_preset(name).eval.max_docs == 1000  # the paper's 1k i.i.d. documents


def test_unknown_preset_lists_valid_ones():
    with pytest.raises(ValueError, match="stitched_g32_300m"):
        get_preset("nope")


def test_flags_are_nested_and_typed():
    config = load_config(
        overrides=[
            "--preset",
            "tiny_cpu",
            "--optim.lr",
            "1e-3",
            "--mix.synthetic_share=0.9",
            "--max_steps",
            "5",
            "--optim.betas",
            "[0.9, 0.99]",
            "--data.synthetic_corpus",
            "stitched_g4",
            "--resume_from_checkpoint",
            "latest",
            "--data.corpus_kwargs",
            '{"max_docs": 14}',
        ]
    )
    assert config.optim.lr == 1e-3 and isinstance(config.optim.lr, float)
    assert config.mix.synthetic_share == 0.9 and config.max_steps == 5
    assert config.optim.betas == (0.9, 0.99) and config.data.synthetic_corpus == "stitched_g4"
    assert config.resume_from_checkpoint == "latest"
    assert config.data.corpus_kwargs == {"max_docs": 14}  # replaces the preset's mapping


@pytest.mark.parametrize("argv", [["--optim.lr"], ["lr", "1"], ["--preset", "nope"]])
def test_malformed_flags_are_refused(argv):
    with pytest.raises(ValueError):
        load_config(overrides=argv)


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


def test_yaml_no_stays_a_string_for_literal_fields(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("mixed_precision: no\nlog_with: none\n")
    config = load_config(path, ["--mixed_precision", "no"])
    assert config.mixed_precision == "no" and config.log_with == "none"


def test_tiny_cpu_yaml_matches_its_preset():
    assert load_config(CONFIGS / "tiny_cpu.yaml") == get_preset("tiny_cpu")


def test_a_real_only_mix_drops_the_synthetic_stream_so_it_is_neither_built_nor_credited(caplog):
    config = load_config(None, ["--preset", "tiny_cpu", "--mix.synthetic_share", "0"])
    assert get_preset("tiny_cpu").data.synthetic_corpus == "stitched_g2"  # the preset has one
    assert config.data.synthetic_corpus is None and config.data.synthetic_path is None
    assert not config.data.has_synthetic
    assert config.to_dict()["data"]["synthetic_corpus"] is None  # what config.json records
    assert "dropping the synthetic stream (stitched_g2)" in caplog.text
