"""Settings of a generator-tuning run (``hf-megadocs tune-generator``).

Two profiles: ``gpu`` carries SynPro's settings (8 samples per prompt, lr 1e-6 full /
2e-5 LoRA, KL β 0.005, 2,048-token completions, temperature 1, top-p 0.9, batch 8 × 4,
cosine schedule to 10% with 10% warm-up); ``cpu`` shrinks the lengths, batch and steps
so a run on the embedded SmolLM2 takes minutes. Every field can be overridden.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Literal

from hf_megadocs.generation.sources import SourceConfig
from hf_megadocs.tuning.influence import InfluenceConfig
from hf_megadocs.tuning.judge import JudgeConfig
from hf_megadocs.tuning.rewards import (
    REPHRASE_ONLY,
    REWARD_NAMES,
    Operation,
    RewardSettings,
    drop_rephrase_only,
)

Profile = Literal["gpu", "cpu"]

LOSS_TYPES = ("grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo")
"""GRPO loss formulations of TRL 1.16 this project passes through (sequence-level ones
need settings it does not expose)."""

DEFAULT_PROMPTS: dict[str, str] = {"rephrase": "clean", "reformat": "reformat"}
"""The built-in prompt of each operation (``prompt_template_file`` replaces its wording)."""

DEFAULT_WEIGHTS: dict[str, float] = {
    "length": 1.0,
    "format": 1.0,
    "faithfulness": 1.0,
    "quality": 1.0,
    "structure": 1.0,
    "influence": 3.0,
}
"""SynPro's weights: influence 3, every other reward 1. ``structure`` is a rephrase reward
(left out of reformat runs) and is judged by the endpoint (``judge_structure``) when
``judge.base_url`` is set."""


@dataclass(kw_only=True)
class LoraSettings:
    """The peft LoRA adapter trained on the generator (ignored when ``full_finetune``)."""

    rank: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"


@dataclass(kw_only=True)
class TuneConfig:
    """One GRPO run on a rephrase or reformat prompt over the user's source documents."""

    operation: Operation = "rephrase"
    """"rephrase" (a faithful, cleaned paraphrase) or "reformat" (Topic / Content entries)."""
    output_dir: str = "runs/tune_generator"
    """Where the adapter (``adapter/``), ``tuning.json``, ``metrics.jsonl`` and the plot go."""
    profile: Profile = "cpu"
    """Defaults for the fields left unset: "gpu" (the paper's) or "cpu" (minutes)."""
    generator: str | None = None
    """HF model id or path of the generator to tune; None = the embedded SmolLM2."""
    source: SourceConfig = field(default_factory=SourceConfig)
    """The documents whose rewrites are rewarded."""
    eval_docs: int = 8
    """Documents held out of tuning to compare base and tuned generators on."""
    prompt_id: str | None = None
    """Prompt to tune on; None = the operation's built-in (:data:`DEFAULT_PROMPTS`)."""
    prompt_template_file: str | None = None
    """A template file replacing the prompt's wording (e.g. a paper's exact prompt)."""
    max_source_chars: int | None = None
    """Sources are cut to this many characters before tokens are counted; None = 7,000
    (gpu, SynPro's) / 360 (cpu: a faithful rewrite of a longer source cannot fit the 96-token
    completion, and the calibrated faithfulness reward rightly scores a cut-off one 0)."""
    max_prompt_tokens: int | None = None
    """Prompt budget in tokens (TRL 1.16 has no prompt truncation: our request builder cuts
    the document); None = 2,048 (gpu) / 384 (cpu)."""
    rewards: dict[str, float] | None = None
    """Reward name → weight; None = length, format, faithfulness, quality (weight 1) and
    influence (weight 3) when ``influence.checkpoint`` is set."""
    reward_settings: RewardSettings = field(default_factory=RewardSettings)
    influence: InfluenceConfig = field(default_factory=InfluenceConfig)
    """The pre-training checkpoint and reference set of the influence reward (off while
    ``influence.checkpoint`` is unset)."""
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    """An LLM judge endpoint for the ``judge_faithfulness`` / ``judge_quality`` rewards
    (off while ``judge.base_url`` is unset)."""
    full_finetune: bool = False
    """Train every weight instead of a LoRA adapter (the paper's choice on GPUs)."""
    lora: LoraSettings = field(default_factory=LoraSettings)
    max_lora_rank: int = 64
    """The serving engine's ``max_lora_rank`` (vLLM refuses larger adapters)."""
    num_generations: int | None = None
    """Samples per prompt (GRPO's group); None = 8 (gpu) / 4 (cpu)."""
    learning_rate: float | None = None
    """None = 1e-6 full / 2e-5 LoRA (gpu) or 2e-4 LoRA (cpu)."""
    beta: float = 0.005
    """KL coefficient to the base model (with LoRA: the base with the adapter disabled)."""
    max_completion_length: int | None = None
    """None = 2,048 (gpu) / 96 (cpu) tokens."""
    temperature: float = 1.0
    top_p: float = 0.9
    per_device_batch_size: int | None = None
    """Completions per device per micro-step; None = 8 (gpu) / 4 (cpu)."""
    gradient_accumulation_steps: int | None = None
    """None = 4 (gpu) / 1 (cpu)."""
    max_steps: int | None = None
    """GRPO optimizer steps; None = 200 (gpu) / 8 (cpu)."""
    loss_type: str = "dapo"
    """Passed to TRL explicitly (its default moves between releases)."""
    scale_rewards: str = "group"
    """Passed to TRL explicitly: "group", "batch" or "none"."""
    save_steps: int = 50
    """GRPO checkpoints every this many steps (a rerun resumes from the latest)."""
    eval_samples: int = 2
    """Samples per held-out document when base and tuned generators are compared."""
    eval_backend: str | None = None
    """Backend serving both generators for that comparison; None = "auto" (vLLM when
    installed) on the gpu profile, "transformers" on cpu (no engine start-up)."""
    seed: int = 0

    def __post_init__(self) -> None:
        if self.operation not in DEFAULT_PROMPTS:
            raise ValueError(
                f"TuneConfig.operation must be one of {sorted(DEFAULT_PROMPTS)}, got "
                f"{self.operation!r}."
            )
        if self.profile not in ("gpu", "cpu"):
            raise ValueError(f"TuneConfig.profile must be 'gpu' or 'cpu', got {self.profile!r}.")
        if self.rewards is None:
            self.rewards = {
                name: weight
                for name, weight in DEFAULT_WEIGHTS.items()
                if (name != "influence" or self.influence.enabled)
                and (name not in REPHRASE_ONLY or self.operation == "rephrase")
            }
            if self.judge.enabled and "structure" in self.rewards:
                self.rewards = {
                    ("judge_structure" if n == "structure" else n): w
                    for n, w in self.rewards.items()
                }
        self.rewards = drop_rephrase_only(self.operation, self.rewards)
        unknown = sorted(set(self.rewards) - set(REWARD_NAMES))
        if unknown:
            raise ValueError(
                f"TuneConfig.rewards names unknown reward(s) {unknown}; valid rewards: "
                f"{list(REWARD_NAMES)}."
            )
        if not self.rewards:
            raise ValueError("TuneConfig.rewards is empty; name at least one reward.")
        bad = {
            name: weight
            for name, weight in self.rewards.items()
            if isinstance(weight, bool)
            or not isinstance(weight, (int, float))
            or not math.isfinite(weight)
            or weight < 0
        }
        if bad:
            raise ValueError(
                f"TuneConfig.rewards has invalid weight(s) {bad}; each reward's weight must be "
                "a finite number >= 0 (e.g. rewards={'length': 1.0, 'influence': 3.0})."
            )
        if "influence" in self.rewards and not self.influence.enabled:
            raise ValueError(
                "the influence reward needs TuneConfig.influence.checkpoint (a checkpoint of "
                "recipes/train.py and a reference set); set it or drop the reward."
            )
        judged = sorted(n for n in self.rewards if n.startswith("judge_"))
        if judged and not self.judge.enabled:
            raise ValueError(
                f"the reward(s) {judged} need an LLM judge: set TuneConfig.judge.base_url (an "
                "OpenAI-compatible endpoint such as vllm serve's) or drop them."
            )
        if not self.full_finetune and self.lora.rank > self.max_lora_rank:
            raise ValueError(
                f"TuneConfig.lora.rank={self.lora.rank} is above the serving engine's "
                f"max_lora_rank={self.max_lora_rank}; vLLM would refuse the adapter. Lower "
                "the rank or raise max_lora_rank (and BackendConfig.max_lora_rank)."
            )
        for name in ("eval_docs", "eval_samples"):
            if getattr(self, name) < 0:
                raise ValueError(f"TuneConfig.{name} must be >= 0, got {getattr(self, name)}.")
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(
                f"TuneConfig.loss_type must be one of {list(LOSS_TYPES)}, got {self.loss_type!r}."
            )
        if self.scale_rewards not in ("group", "batch", "none"):
            raise ValueError(
                "TuneConfig.scale_rewards must be 'group', 'batch' or 'none', got "
                f"{self.scale_rewards!r}."
            )
        self._fill_profile()
        for name in (
            "per_device_batch_size",
            "gradient_accumulation_steps",
            "max_steps",
            "max_completion_length",
            "max_prompt_tokens",
            "max_source_chars",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"TuneConfig.{name} must be >= 1, got {getattr(self, name)}.")
        floor = self.influence.min_output_chars
        if "influence" in self.rewards and floor is not None:
            # a bound no tokenizer beats; tune_generator checks again with the measured ratio
            from hf_megadocs.tuning.influence_reward import MAX_CHARS_PER_TOKEN as BOUND
            from hf_megadocs.tuning.influence_reward import unreachable_floor_message

            if floor > self.max_completion_length * BOUND:
                raise ValueError(
                    unreachable_floor_message(floor, self.max_completion_length, BOUND)
                )
        if self.num_generations < 2:
            raise ValueError(
                f"TuneConfig.num_generations must be >= 2 (GRPO's advantages compare the "
                f"samples of one prompt), got {self.num_generations}."
            )
        if not self.learning_rate > 0:
            raise ValueError(f"TuneConfig.learning_rate must be > 0, got {self.learning_rate}.")
        batch = self.per_device_batch_size * self.gradient_accumulation_steps
        if batch % self.num_generations:
            raise ValueError(
                f"per_device_batch_size × gradient_accumulation_steps = {batch} completions "
                f"per step must be a multiple of num_generations={self.num_generations} "
                "(whole groups of samples of one prompt)."
            )

    def _fill_profile(self) -> None:
        gpu = self.profile == "gpu"
        defaults = {
            "max_prompt_tokens": 2048 if gpu else 384,
            "num_generations": 8 if gpu else 4,
            "learning_rate": (1e-6 if self.full_finetune else 2e-5) if gpu else 2e-4,
            "max_completion_length": 2048 if gpu else 96,
            "max_source_chars": 7000 if gpu else 360,
            "per_device_batch_size": 8 if gpu else 4,
            "gradient_accumulation_steps": 4 if gpu else 1,
            "max_steps": 200 if gpu else 8,
            "eval_backend": "auto" if gpu else "transformers",
        }
        for name, value in defaults.items():
            if getattr(self, name) is None:
                setattr(self, name, value)

    @property
    def reward_names(self) -> list[str]:
        return list(self.rewards or {})

    @property
    def reward_weights(self) -> list[float]:
        return [float(w) for w in (self.rewards or {}).values()]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


__all__ = ["DEFAULT_PROMPTS", "DEFAULT_WEIGHTS", "LoraSettings", "Profile", "TuneConfig"]
