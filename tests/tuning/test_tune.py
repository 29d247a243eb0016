"""GRPO tuning of the embedded SmolLM2 with a LoRA adapter, end to end on CPU: the adapter
learns, the base stays put, every reward is logged, a finished run is never tuned twice,
and a simple reward rises over a few GRPO steps."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest

from hf_megadocs.generation.sources import SourceConfig
from hf_megadocs.tuning.config import TuneConfig
from hf_megadocs.tuning.influence import InfluenceConfig
from hf_megadocs.tuning.reference_set import ReferenceConfig

REWARDS = {"length": 1.0, "format": 1.0, "faithfulness": 1.0, "quality": 1.0, "influence": 3.0}
STEPS = 2


def _smoke_config(output_dir: Path, checkpoint: Path, **overrides) -> TuneConfig:
    settings = {
        "output_dir": str(output_dir),
        "source": SourceConfig(max_docs=5),
        "eval_docs": 1,
        "eval_samples": 1,
        "max_steps": STEPS,
        "num_generations": 2,
        "per_device_batch_size": 2,
        "max_completion_length": 24,
        "max_prompt_tokens": 192,
        "rewards": REWARDS,
        "influence": InfluenceConfig(
            checkpoint=str(checkpoint),
            reference=ReferenceConfig(source="analogies", max_examples=64),
            reference_steps=2,
            warmup_steps=0,
            batch_size=2,
            min_output_chars=20,
            device="cpu",
        ),
    }
    return TuneConfig(**{**settings, **overrides})


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, tiny_run):
    """One finished tuning run (all five rewards, influence on the tiny checkpoint), with
    the hashes of the base generator's weight files taken before it."""
    from hf_megadocs.generation.embedded import resolve_generator
    from hf_megadocs.tuning.tune import tune_generator

    base = Path(resolve_generator(None)[0])
    weights = sorted(base.glob("*.safetensors"))
    assert weights
    before = {p.name: _sha256(p) for p in weights}
    out = tmp_path_factory.mktemp("tune") / "run"
    config = _smoke_config(out, tiny_run)
    started = time.perf_counter()
    result = tune_generator(config)
    return {
        "config": config,
        "result": result,
        "out": out,
        "base": base,
        "before": before,
        "wall_s": time.perf_counter() - started,
    }


@pytest.mark.slow
def test_adapter_learned_and_base_untouched(smoke):
    import torch
    from safetensors.torch import load_file

    adapter = smoke["out"] / "adapter"
    assert (adapter / "adapter_config.json").is_file()
    weights = load_file(str(adapter / "adapter_model.safetensors"))
    # The adapter holds adapter weights only (no copy of the base model).
    assert weights and all("lora_A" in k or "lora_B" in k for k in weights), sorted(weights)[:5]
    assert not list(adapter.glob("model*.safetensors"))
    # peft starts every lora_B at zero: after GRPO steps some are not.
    lora_b = [v for k, v in weights.items() if "lora_B" in k]
    assert lora_b and any(torch.count_nonzero(v) > 0 for v in lora_b)
    assert json.loads((adapter / "adapter_config.json").read_text())["r"] == 16
    # The base generator's weight files are byte for byte what they were.
    after = {p.name: _sha256(p) for p in sorted(smoke["base"].glob("*.safetensors"))}
    assert after == smoke["before"]


@pytest.mark.slow
def test_every_reward_is_logged_at_every_step(smoke):
    from hf_megadocs.tuning.metrics import read_metrics

    records = read_metrics(smoke["out"] / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(1, STEPS + 1))
    for record in records:
        for name in REWARDS:
            assert f"rewards/{name}/mean" in record, (name, sorted(record))
        assert "reward" in record
        # influence is on: each step logs the share of samples it really scored
        assert 0 <= record["influence/scored_share"] <= 1 and record["influence/samples"] > 0
    scored = smoke["result"].manifest["influence_scored"]
    assert scored["samples"] == sum(r["influence/samples"] for r in records)
    assert (smoke["out"] / "rewards.png").stat().st_size > 0


@pytest.mark.slow
def test_manifest_says_how_to_serve_and_compares_base_and_tuned(smoke):
    from hf_megadocs.adapters import adapter_hash

    manifest = json.loads((smoke["out"] / "tuning.json").read_text())
    assert manifest == smoke["result"].manifest
    served = manifest["served"]
    assert served["lora_path"] == str((smoke["out"] / "adapter").resolve())
    assert served["adapter_hash"] == adapter_hash(smoke["out"] / "adapter")
    assert Path(served["generator"]) == smoke["base"]
    assert manifest["steps"] == STEPS and manifest["rewards"] == REWARDS
    assert set(manifest["final_rewards"]) == set(REWARDS)
    for name in ("base", "tuned"):
        evaluation = manifest["evaluation"][name]
        assert evaluation["outputs"] == 1
        assert set(evaluation["rewards"]) <= set(REWARDS) and evaluation["rewards"]
    assert manifest["plot"] == "rewards.png"
    backend = smoke["result"].backend_config
    assert backend.lora_path == served["lora_path"]


@pytest.mark.slow
def test_a_finished_run_is_never_tuned_twice(smoke):
    from hf_megadocs.tuning.tune import tune_generator

    metrics = smoke["out"] / "metrics.jsonl"
    lines = metrics.read_text()
    adapter = (smoke["out"] / "adapter" / "adapter_model.safetensors").stat().st_mtime_ns
    config = _smoke_config(smoke["out"], Path(smoke["config"].influence.checkpoint))
    started = time.perf_counter()
    again = tune_generator(config)
    assert time.perf_counter() - started < 5
    assert again.manifest == smoke["result"].manifest
    assert metrics.read_text() == lines
    assert (smoke["out"] / "adapter" / "adapter_model.safetensors").stat().st_mtime_ns == adapter


@pytest.mark.slow
def test_other_settings_in_the_same_folder_are_refused(smoke):
    from hf_megadocs.tuning.tune import tune_generator

    config = _smoke_config(
        smoke["out"], Path(smoke["config"].influence.checkpoint), max_steps=STEPS + 1
    )
    with pytest.raises(ValueError, match=r"other settings \(changed: \['max_steps'\]\)"):
        tune_generator(config)


@pytest.mark.slow
def test_a_simple_reward_rises_over_grpo_steps(tmp_path):
    """GRPO with a LoRA adapter at a high learning rate learns to start its answer with
    "The" within a few steps (calibrated on CPU: seeds 0-2 give group means ~0.5 over the
    first three steps and 1.0 over the last three; the run is deterministic per seed)."""
    from transformers import AutoTokenizer

    from hf_megadocs.generation.embedded import resolve_generator
    from hf_megadocs.tuning.config import LoraSettings
    from hf_megadocs.tuning.metrics import read_metrics
    from hf_megadocs.tuning.prompts import TuningPrompts
    from hf_megadocs.tuning.rewards import completion_text
    from hf_megadocs.tuning.tune import _grpo_trainer

    def starts_with_the(prompts=None, completions=None, **_):
        return [1.0 if completion_text(c).strip().startswith("The") else 0.0 for c in completions]

    path, _, _ = resolve_generator(None)
    tokenizer = AutoTokenizer.from_pretrained(path)
    questions = [
        "Name a color.",
        "What color is the sky?",
        "Tell me one color.",
        "Pick a colour you like.",
    ]
    rows = [
        {"prompt": [{"role": "user", "content": q}], "source": q, "source_id": str(i)}
        for i, q in enumerate(questions)
    ]
    steps = 8
    config = TuneConfig(
        output_dir=str(tmp_path),
        rewards={"length": 1.0},  # unused: the trainer gets the function below
        num_generations=8,
        per_device_batch_size=8,
        max_completion_length=4,
        max_steps=steps,
        learning_rate=2e-3,
        beta=0.0,
        seed=0,
        lora=LoraSettings(rank=8, alpha=16, dropout=0.0),
        save_steps=1000,
    )
    trainer = _grpo_trainer(
        config, path, tokenizer, TuningPrompts(rows, []), [starts_with_the], tmp_path
    )
    trainer.train()
    means = [r["rewards/starts_with_the/mean"] for r in read_metrics(tmp_path / "metrics.jsonl")]
    assert len(means) == steps
    first, last = sum(means[:3]) / 3, sum(means[-3:]) / 3
    assert last > first + 0.3, means
    assert last >= 0.8, means
