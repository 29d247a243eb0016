"""Tune a generator with GRPO (TRL) on a rephrase or reformat prompt: SynPro's first half.

``tune_generator(config)`` builds the prompts from the user's documents, the reward
functions, and TRL's ``GRPOTrainer`` with a peft LoRA adapter (or full fine-tuning), trains,
saves the result where the generation backends serve it (``<output_dir>/adapter`` as
``BackendConfig.lora_path``, or ``<output_dir>/model`` as the generator), compares base and
tuned generators on held-out documents, and writes ``tuning.json``: the manifest that
generation keys and dataset cards take their provenance from.

A run is resumable: GRPO checkpoints go to ``<output_dir>/trainer`` every ``save_steps``
steps and a rerun with the same settings continues from the latest one; a finished run is
returned as it is (never tuned twice); a rerun with other settings is refused.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from hf_megadocs.generation.backends import BackendConfig
from hf_megadocs.generation.prompts import PromptTemplate, get_prompt
from hf_megadocs.records import SamplingConfig
from hf_megadocs.tuning.config import DEFAULT_PROMPTS, TuneConfig
from hf_megadocs.tuning.metrics import MetricsFileCallback, plot_rewards, read_metrics
from hf_megadocs.tuning.prompts import TuningPrompts, tuning_prompts
from hf_megadocs.tuning.rewards import Rewards

logger = logging.getLogger(__name__)

MANIFEST = "tuning.json"
SETTINGS = "tune_config.json"


@dataclass
class TuneResult:
    """Where a tuning run's outputs are, and its manifest."""

    output_dir: Path
    manifest: dict[str, Any]

    @property
    def backend_config(self) -> BackendConfig:
        """The backend settings that generate with the tuned generator."""
        served = self.manifest["served"]
        return BackendConfig(generator=served["generator"], lora_path=served.get("lora_path"))


def tune_generator(config: TuneConfig, *, influence_scorer: Any | None = None) -> TuneResult:
    """Run (or resume, or return the finished) GRPO tuning run ``config`` describes.

    ``influence_scorer``: an :class:`~hf_megadocs.tuning.influence.InfluenceScorer` already
    built for ``config.influence`` (a round shares one between its operations and its
    selection, so θ′ is trained once); by default one is built when influence is on.
    """
    out = Path(config.output_dir)
    if (out / MANIFEST).is_file():
        _check_same_settings(out, config)
        logger.info("%s is a finished tuning run with these settings: not tuning again", out)
        return TuneResult(out, json.loads((out / MANIFEST).read_text()))
    out.mkdir(parents=True, exist_ok=True)
    _check_same_settings(out, config)
    started = time.perf_counter()

    from transformers import AutoTokenizer

    from hf_megadocs.generation.embedded import resolve_generator

    path, generator, revision = resolve_generator(config.generator, to_load=True)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if not tokenizer.chat_template:
        raise ValueError(f"generator {generator!r} has no chat template; tune an instruct model.")
    prompt = get_prompt(
        config.prompt_id or DEFAULT_PROMPTS[config.operation], config.prompt_template_file
    )
    data = tuning_prompts(config, prompt, tokenizer)
    logger.info("tuning prompts: %s", dict(data.counters))
    scorer = influence_scorer if "influence" in config.reward_names else None
    influence = None
    if "influence" in config.reward_names:
        from hf_megadocs.tuning.influence_reward import InfluenceReward, output_floor

        floor = output_floor(config, tokenizer, [row["source"] for row in data.train])
        if scorer is None:  # after the floor check: θ′ takes a while to train
            from hf_megadocs.tuning.influence import InfluenceScorer

            scorer = InfluenceScorer(config.influence)
        influence = InfluenceReward(scorer, floor)
    judge = None
    if any(name.startswith("judge_") for name in config.reward_names):
        from hf_megadocs.tuning.judge import EndpointJudge

        judge = EndpointJudge(config.judge)
    rewards = Rewards(config.operation, config.reward_settings, influence, judge)
    functions = rewards.functions(config.reward_names)

    callbacks = []
    if influence is not None:  # before the metrics file: it adds the scored share to the logs
        from hf_megadocs.tuning.influence_reward import InfluenceShareCallback

        callbacks.append(InfluenceShareCallback(influence))
    trainer = _grpo_trainer(config, path, tokenizer, data, functions, out, callbacks)
    resume = _latest_checkpoint(out / "trainer")
    if resume:
        logger.info("resuming GRPO from %s", resume)
    trainer.train(resume_from_checkpoint=resume)
    served = _save(trainer, tokenizer, config, path, out)
    del trainer
    scored = influence.totals if influence is not None else None  # training samples only

    records = read_metrics(out / "metrics.jsonl")
    plot = plot_rewards(records, config.reward_names, out / "rewards.png") if records else None
    evaluation = _compare(config, path, served, prompt, data, functions)
    manifest = _manifest(config, generator, revision, prompt, data, served, records, evaluation)
    manifest["plot"] = plot.name if plot else None
    if scorer is not None:  # reference documents read, and dropped as evaluation documents
        manifest["influence_reference"] = scorer.reference_counts
        manifest["influence_scored"] = scored
    if judge is not None:  # answers not in the asked form were left out of the reward
        manifest["judge_unparsed"] = dict(judge.unparsed)
        judge.close()
    manifest["wall_s"] = round(time.perf_counter() - started, 1)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    logger.info("tuned generator in %s (%.0f s)", out, manifest["wall_s"])
    return TuneResult(out, manifest)


def _check_same_settings(out: Path, config: TuneConfig) -> None:
    saved = out / SETTINGS
    settings = json.loads(json.dumps(config.to_dict()))
    settings.pop("output_dir")
    if not saved.is_file():
        saved.write_text(json.dumps(settings, indent=2) + "\n")
        return
    before = json.loads(saved.read_text())
    changed = sorted(k for k in settings.keys() | before.keys() if settings.get(k) != before.get(k))
    if changed:
        raise ValueError(
            f"{out} holds a tuning run with other settings (changed: {changed}); use another "
            "output_dir, or delete that folder to start over."
        )


def _latest_checkpoint(folder: Path) -> str | None:
    steps = [p for p in folder.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    return str(max(steps, key=lambda p: int(p.name.split("-")[-1]))) if steps else None


def _grpo_trainer(
    config: TuneConfig,
    path: str,
    tokenizer: Any,
    data: TuningPrompts,
    functions: list[Any],
    out: Path,
    callbacks: list[Any] | None = None,
) -> Any:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    args = GRPOConfig(
        output_dir=str(out / "trainer"),
        per_device_train_batch_size=config.per_device_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        num_generations=config.num_generations,
        max_completion_length=config.max_completion_length,
        temperature=config.temperature,
        top_p=config.top_p,
        beta=config.beta,
        loss_type=config.loss_type,
        scale_rewards=config.scale_rewards,
        reward_weights=config.reward_weights,
        learning_rate=config.learning_rate,
        lr_scheduler_type="cosine_with_min_lr",
        lr_scheduler_kwargs={"min_lr_rate": 0.1},
        warmup_steps=0.1,
        max_steps=config.max_steps,
        logging_steps=1,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=2,
        report_to="none",
        use_cpu=not cuda,
        bf16=bf16,
        seed=config.seed,
        data_seed=config.seed,
    )
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=torch.bfloat16 if bf16 else torch.float32
    )
    peft_config = None
    if not config.full_finetune:
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=config.lora.rank,
            lora_alpha=config.lora.alpha,
            lora_dropout=config.lora.dropout,
            target_modules=config.lora.target_modules,
            task_type="CAUSAL_LM",
        )
    return GRPOTrainer(
        model=model,
        reward_funcs=functions,
        args=args,
        train_dataset=Dataset.from_list(data.train),
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[*(callbacks or []), MetricsFileCallback(out / "metrics.jsonl")],
    )


def _save(trainer: Any, tokenizer: Any, config: TuneConfig, base: str, out: Path) -> dict:
    """Save the adapter (or the whole model) and say how a backend serves it."""
    from hf_megadocs.adapters import adapter_hash

    if config.full_finetune:
        target = out / "model"
        trainer.save_model(str(target))
        tokenizer.save_pretrained(target)
        return {"generator": str(target.resolve()), "lora_path": None, "adapter_hash": None}
    target = out / "adapter"
    trainer.model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return {
        "generator": base,
        "lora_path": str(target.resolve()),
        "adapter_hash": adapter_hash(target),
    }


def _compare(
    config: TuneConfig,
    base: str,
    served: dict,
    prompt: PromptTemplate,
    data: TuningPrompts,
    functions: list[Any],
) -> dict[str, Any]:
    """Mean rewards of base and tuned generators on the held-out documents."""
    from hf_megadocs.tuning.evaluation import evaluate_generator

    sampling = SamplingConfig(
        temperature=config.temperature,
        top_p=config.top_p,
        max_new_tokens=config.max_completion_length,
        seed=config.seed,
    )
    result = {}
    for name, generator, lora in (
        ("base", base, None),
        ("tuned", served["generator"], served["lora_path"]),
    ):
        backend = BackendConfig(backend=config.eval_backend, generator=generator, lora_path=lora)
        result[name] = evaluate_generator(
            backend, prompt, data.evaluation, functions, sampling, config.eval_samples
        )
    return result


def _checkpoint_step(checkpoint: str | None) -> int | None:
    """The pre-training step of the influence checkpoint θ (None without one)."""
    if checkpoint is None:
        return None
    from hf_megadocs.training.continuation import origin_step
    from hf_megadocs.tuning.influence import resolve_checkpoint_dir

    return origin_step(resolve_checkpoint_dir(checkpoint))


def _manifest(
    config: TuneConfig,
    generator: str,
    revision: str,
    prompt: PromptTemplate,
    data: TuningPrompts,
    served: dict,
    records: list[dict[str, Any]],
    evaluation: dict[str, Any],
) -> dict[str, Any]:
    return {
        "operation": config.operation,
        "base_generator": generator,
        "base_generator_revision": revision,
        "served": served,
        "full_finetune": config.full_finetune,
        "prompt": prompt.as_record(),
        "rewards": dict(config.rewards or {}),
        "influence_checkpoint": config.influence.checkpoint,
        "influence_checkpoint_step": _checkpoint_step(config.influence.checkpoint),
        "steps": records[-1]["step"] if records else 0,
        "documents": dict(data.counters),
        "final_rewards": {k: records[-1].get(f"rewards/{k}/mean") for k in config.reward_names}
        if records
        else {},
        "evaluation": evaluation,
        "settings": config.to_dict(),
        "versions": {
            name: metadata.version(name) for name in ("trl", "peft", "transformers", "torch")
        },
        "machine": platform.platform(),
    }


__all__ = ["MANIFEST", "TuneResult", "tune_generator"]
