"""TuneConfig: bad settings are refused before any training; profiles fill the defaults."""

from __future__ import annotations

import pytest

from hf_megadocs.tuning.config import DEFAULT_WEIGHTS, TuneConfig
from hf_megadocs.tuning.influence import InfluenceConfig
from hf_megadocs.tuning.reference_set import ReferenceConfig
from hf_megadocs.tuning.rewards import REWARD_NAMES


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"rewards": {"length": 1.0, "brevity": 1.0}}, r"unknown reward\(s\) \['brevity'\]"),
        ({"rewards": {}}, "rewards is empty"),
        ({"rewards": {"influence": 3.0}}, "influence reward needs TuneConfig.influence.checkpoint"),
        ({"lora": {"rank": 128}}, "lora.rank=128 is above the serving engine's max_lora_rank=64"),
        (
            {"per_device_batch_size": 6, "num_generations": 4},
            "= 6 completions per step must be a multiple of num_generations=4",
        ),
        (
            {"per_device_batch_size": 2, "gradient_accumulation_steps": 3, "num_generations": 4},
            "= 6 completions",
        ),
        ({"loss_type": "ppo"}, "loss_type must be one of"),
        ({"scale_rewards": "std"}, "scale_rewards must be 'group', 'batch' or 'none'"),
        ({"operation": "summarize"}, "operation must be one of"),
        ({"profile": "tpu"}, "profile must be 'gpu' or 'cpu'"),
        ({"eval_docs": -1}, "eval_docs must be >= 0"),
        ({"num_generations": 1, "per_device_batch_size": 1}, "num_generations must be >= 2"),
        ({"num_generations": 0}, "num_generations must be >= 2"),
        ({"max_steps": 0}, "max_steps must be >= 1"),
        ({"per_device_batch_size": 0}, "per_device_batch_size must be >= 1"),
        ({"learning_rate": 0.0}, "learning_rate must be > 0"),
        ({"rewards": {"length": "heavy"}}, "invalid weight"),
        ({"rewards": {"length": -1.0}}, "must be a finite number >= 0"),
        ({"rewards": {"length": float("nan")}}, "invalid weight"),
        ({"rewards": {"length": True}}, "invalid weight"),
        ({"rewards": {"length": None}}, "invalid weight"),
    ],
)
def test_bad_settings_are_refused(settings, message):
    from hf_megadocs.tuning.config import LoraSettings

    if "lora" in settings:
        settings = {**settings, "lora": LoraSettings(**settings["lora"])}
    with pytest.raises(ValueError, match=message):
        TuneConfig(**settings)


def test_rank_above_max_is_fine_for_full_finetuning_or_a_raised_limit():
    from hf_megadocs.tuning.config import LoraSettings

    TuneConfig(lora=LoraSettings(rank=128), full_finetune=True)
    TuneConfig(lora=LoraSettings(rank=128), max_lora_rank=128)


def test_default_rewards_add_influence_only_with_a_checkpoint():
    assert TuneConfig().rewards == {k: v for k, v in DEFAULT_WEIGHTS.items() if k != "influence"}
    influence = InfluenceConfig(
        checkpoint="runs/pretrain", reference=ReferenceConfig(source="analogies")
    )
    with_checkpoint = TuneConfig(influence=influence)
    assert with_checkpoint.rewards == DEFAULT_WEIGHTS
    assert with_checkpoint.rewards["influence"] == 3.0
    assert set(DEFAULT_WEIGHTS) <= set(REWARD_NAMES)


def test_reward_names_and_weights_line_up():
    config = TuneConfig(rewards={"quality": 0.5, "length": 2, "format": 0.0})
    assert config.reward_names == ["quality", "length", "format"]
    assert config.reward_weights == [0.5, 2.0, 0.0]
    assert all(isinstance(w, float) for w in config.reward_weights)


def test_gpu_profile_has_the_papers_settings():
    lora = TuneConfig(profile="gpu")
    assert lora.num_generations == 8
    assert lora.learning_rate == 2e-5
    assert lora.beta == 0.005
    assert lora.max_completion_length == 2048
    assert lora.max_source_chars == 7000  # SynPro's
    assert lora.max_prompt_tokens == 2048
    assert lora.temperature == 1.0 and lora.top_p == 0.9
    assert (lora.per_device_batch_size, lora.gradient_accumulation_steps) == (8, 4)
    assert lora.max_steps == 200
    assert lora.eval_backend == "auto"
    assert TuneConfig(profile="gpu", full_finetune=True).learning_rate == 1e-6


def test_cpu_profile_is_small():
    cpu = TuneConfig()
    assert cpu.profile == "cpu"
    assert cpu.num_generations == 4
    assert cpu.learning_rate == 2e-4
    assert cpu.max_completion_length == 96
    assert cpu.max_source_chars == 360  # a faithful rewrite fits 96 tokens
    assert cpu.max_prompt_tokens == 384
    assert (cpu.per_device_batch_size, cpu.gradient_accumulation_steps) == (4, 1)
    assert cpu.max_steps == 8
    assert cpu.eval_backend == "transformers"
    assert cpu.beta == 0.005 and cpu.temperature == 1.0 and cpu.top_p == 0.9


def test_explicit_values_win_over_the_profile():
    config = TuneConfig(
        profile="gpu",
        num_generations=2,
        learning_rate=1e-3,
        max_completion_length=32,
        per_device_batch_size=2,
        gradient_accumulation_steps=1,
        max_steps=3,
        eval_backend="transformers",
    )
    assert (config.num_generations, config.learning_rate, config.max_completion_length) == (
        2,
        1e-3,
        32,
    )
    assert (config.per_device_batch_size, config.max_steps, config.eval_backend) == (
        2,
        3,
        "transformers",
    )


def test_to_dict_round_trips_the_settings():
    config = TuneConfig(rewards={"length": 1.0}, max_steps=3)
    settings = config.to_dict()
    assert settings["rewards"] == {"length": 1.0}
    assert settings["max_steps"] == 3 and settings["num_generations"] == 4
    assert settings["influence"]["checkpoint"] is None
