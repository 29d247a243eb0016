"""The repetition-only control arm of model-aware rounds, and the effective-token answer.

For every round, beside the rounds' continuation (real data plus the union of round
corpora), continuations on **organic data only, repeated**, start from the same checkpoint
and run the same number of optimizer steps. They run at several amounts of unique organic
data, as multiples of the D_0 documents the run trained on (``ControlConfig.sizes``): the
1× arm is the direct comparison (same data, same compute, no generation), and all of them
together give a repetition-only loss-vs-unique-tokens curve. The rounds' loss is placed on
that curve by the data study's estimator (:func:`hf_megadocs.analysis.efficiency.estimate`:
linear interpolation in log D, a seed bootstrap, and "beyond the measured sizes" when the
rounds beat the largest arm), which gives the **effective-token multiplier**: the unique
organic tokens a repetition-only continuation would need to reach the rounds' loss, over D_0.

Sizes above 1× take further documents of the same corpus, nested over the run's own
(``data.real_fraction`` hash subsets), so they exist only when the run trained on a share
of its corpus (SynPro trains on 10% of the Chinchilla-optimal unique tokens); sizes the
corpus cannot hold are dropped, logged and recorded. Each arm's seed changes its data order
(``mix.seed``) only, never which documents are trained on or evaluated.
"""

from __future__ import annotations

import logging
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hf_megadocs.analysis.efficiency import Estimate, SizeRuns, estimate
from hf_megadocs.tuning.continuations import continue_pretraining

logger = logging.getLogger(__name__)

ControlStart = Literal["round", "chain"]
SETTING = "repeat"
"""The one setting of every size: nothing is searched, so the estimator's choice among
settings is trivial and the selection loss plays no part."""
EPOCH_SLACK = 2.0
"""An arm plans this many times the rounds' steps (more passes over its organic data) and
stops at the rounds' count; its warmup fraction is divided by the same factor, so both arms
warm up for about the same number of steps (each arm's warmup is recorded)."""


@dataclass(kw_only=True)
class ControlConfig:
    """The repetition-only arm run beside every round."""

    enabled: bool = True
    """Run the arm (it costs one continuation per size and seed, and one more per extra
    seed for the rounds); off: the report shows the rounds alone."""
    sizes: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0, 4.0])
    """Unique organic data of each repetition arm, as multiples of the run's training
    documents (D_0); must contain 1.0. Above 1 needs a run trained on
    ``data.real_fraction`` < 1; sizes beyond the corpus are dropped (and recorded)."""
    seeds: int = 1
    """Data-order seeds per arm, the rounds' continuation included (its extra seeds are
    replicates on the same union). One seed: no interval ("no seed spread")."""
    start: ControlStart = "round"
    """"round": every round's arms start from that round's checkpoint θ_k (each round's own
    effect); "chain": each arm continues its own previous round (round 1 from θ_1), so the
    last round compares the whole sequence of rounds with repetition over the same steps."""
    level: float = 0.95
    """Nominal coverage of the multiplier's interval."""
    resamples: int = 2000
    """Bootstrap resamples of the interval."""

    def __post_init__(self) -> None:
        self.sizes = sorted({float(s) for s in self.sizes})
        if 1.0 not in self.sizes or any(s <= 0 for s in self.sizes):
            raise ValueError(
                f"control.sizes must be positive multiples of the run's organic data and "
                f"contain 1.0 (the same-data comparison), got {self.sizes}."
            )
        if self.seeds < 1:
            raise ValueError(f"control.seeds must be >= 1, got {self.seeds}.")
        if self.start not in ("round", "chain"):
            raise ValueError(f"control.start must be 'round' or 'chain', got {self.start!r}.")
        if not 0 < self.level < 1 or self.resamples < 1:
            raise ValueError(
                f"control.level must be in (0, 1) and control.resamples >= 1, got "
                f"{self.level} and {self.resamples}."
            )


@dataclass(frozen=True)
class Arm:
    """One continuation of the control: a rounds replicate or a repetition arm."""

    kind: Literal["rounds", "repeat"]
    size: float
    seed: int
    """Offset added to the run's ``mix.seed``."""

    @property
    def name(self) -> str:
        if self.kind == "rounds":
            return f"rounds_seed{self.seed}"
        return f"repeat_x{self.size:g}_seed{self.seed}"


def plan_arms(config: ControlConfig, real_fraction: float) -> tuple[list[Arm], list[float]]:
    """The arms to run beside a round, and the sizes dropped because the run's corpus
    cannot hold them (``real_fraction``: the share of its corpus the run trained on)."""
    kept = [s for s in config.sizes if s * real_fraction <= 1 + 1e-9]
    dropped = [s for s in config.sizes if s not in kept]
    if dropped:
        logger.warning(
            "control arm: sizes %s dropped: the run trained on data.real_fraction=%g of its "
            "corpus, so at most %g× its organic data exists; train it on a smaller share to "
            "measure beyond",
            dropped, real_fraction, 1 / real_fraction,
        )  # fmt: skip
    arms = [Arm(kind="rounds", size=1.0, seed=j) for j in range(1, config.seeds)]
    arms += [Arm(kind="repeat", size=s, seed=j) for s in kept for j in range(config.seeds)]
    return arms, dropped


def run_control(
    config: ControlConfig,
    *,
    rounds_dir: Path,
    index: int,
    checkpoint: Path,
    run_info: dict[str, Any],
    rounds_changes: dict[str, dict[str, Any]],
    steps: int,
    num_processes: int = 1,
    train_flags: list[str] | None = None,
) -> dict[str, Any]:
    """Round ``index``'s control arms, each ``steps`` optimizer steps; returns what each
    reached. ``rounds_changes``: the settings the rounds' continuation changed from the
    checkpoint's run (its extra seeds reuse them, the repetition arms drop the synthetic
    stream)."""
    real_fraction = float(run_info["data"].get("real_fraction", 1.0))
    arms, dropped = plan_arms(config, real_fraction)
    control_dir = rounds_dir / f"round_{index}" / "control"
    control_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    for arm in arms:
        start = _start(config, arm, rounds_dir, index, checkpoint)
        changes = _changes(arm, run_info, rounds_changes, real_fraction)
        logger.info("round %d control arm %s from %s (%d steps)", index, arm.name, start, steps)
        reached = continue_pretraining(
            run_info, start, control_dir / arm.name / "train",
            control_dir / f"{arm.name}_config.yaml", changes=changes, max_steps=steps,
            num_processes=num_processes, train_flags=train_flags,
        )  # fmt: skip
        results[arm.name] = {
            "kind": arm.kind, "size": arm.size, "seed": arm.seed,
            "start_checkpoint": str(start.resolve()), **reached,
        }  # fmt: skip
    return {
        "start": config.start,
        "seeds": config.seeds,
        "sizes": [s for s in config.sizes if s not in dropped],
        "dropped_sizes": dropped,
        "real_fraction": real_fraction,
        "steps": steps,
        "arms": results,
    }


def _start(config: ControlConfig, arm: Arm, rounds_dir: Path, index: int, checkpoint: Path) -> Path:
    """θ_k, or (chain) the arm's own run of the previous round."""
    from hf_megadocs.training.checkpoint import checkpoint_of

    if config.start == "round" or index == 1:
        return checkpoint
    previous = rounds_dir / f"round_{index - 1}" / "control" / arm.name / "train"
    if not (previous / "summary.json").is_file():
        raise ValueError(
            f"control.start='chain': round {index}'s arm {arm.name} continues {previous}, "
            "which did not finish; run every round with the same control settings, or use "
            "control.start='round'."
        )
    return checkpoint_of(previous, "control arm")


def _changes(
    arm: Arm,
    run_info: dict[str, Any],
    rounds_changes: dict[str, dict[str, Any]],
    real_fraction: float,
) -> dict[str, dict[str, Any]]:
    """The arm's settings: the rounds' for a replicate; organic data only for repetition."""
    mix_seed = int(run_info["mix"].get("seed", 0)) + arm.seed
    if arm.kind == "rounds":
        return {**rounds_changes, "mix": {**rounds_changes["mix"], "seed": mix_seed}}
    share = float(rounds_changes["mix"]["synthetic_share"])
    epochs = float(rounds_changes["mix"].get("real_epochs", run_info["mix"]["real_epochs"]))
    warmup = float(rounds_changes["optim"]["warmup_fraction"])
    return {
        "data": {
            "synthetic_corpus": None,
            "synthetic_path": None,
            "real_fraction": min(1.0, real_fraction * arm.size),
        },
        "mix": {
            "synthetic_share": 0.0,
            # The rounds read D_0 E times while it fills 1 − m of each batch; an arm with
            # size·D_0 needs E / (size (1 − m)) passes for as many steps, times the slack.
            "real_epochs": EPOCH_SLACK * epochs / (arm.size * (1 - share)),
            "seed": mix_seed,
        },
        "optim": {**rounds_changes["optim"], "warmup_fraction": warmup / EPOCH_SLACK},
    }


@dataclass
class Comparison:
    """One round's rounds-vs-repetition comparison (losses are the reported ``iid_loss``)."""

    round: int
    rounds_losses: list[float]
    repetition: dict[float, list[float]]
    """Size (× D_0) → the repetition arm's loss at each seed."""
    real_tokens: dict[float, float]
    """Size → unique organic tokens of that arm."""
    estimate: Estimate | None
    note: str
    """Why there is no estimate, or what limits it ("" when nothing does)."""

    @property
    def rounds_loss(self) -> float:
        return statistics.fmean(self.rounds_losses)

    @property
    def repetition_loss(self) -> float:
        """The same-data (1×) repetition arm's mean loss."""
        return statistics.fmean(self.repetition[1.0]) if 1.0 in self.repetition else math.nan


def compare(manifest: dict[str, Any], config: ControlConfig | None = None) -> Comparison | None:
    """The round's comparison and effective-token multiplier, or None without a control."""
    control = manifest.get("control")
    if not control:
        return None
    config = config or ControlConfig()
    arms = control["arms"].values()
    rounds = {0: float(manifest["training"]["iid_loss"])}
    rounds |= {a["seed"]: float(a["iid_loss"]) for a in arms if a["kind"] == "rounds"}
    by_size: dict[float, dict[int, float]] = {}
    tokens: dict[float, list[float]] = {}
    for a in arms:
        if a["kind"] == "repeat":
            by_size.setdefault(float(a["size"]), {})[a["seed"]] = float(a["iid_loss"])
            tokens.setdefault(float(a["size"]), []).append(float(a["real_tokens"]))
    real_tokens = {s: statistics.fmean(t) for s, t in sorted(tokens.items())}
    sizes = [
        SizeRuns(real_tokens=real_tokens[s], selection={SETTING: runs}, reported={SETTING: runs})
        for s, runs in sorted(by_size.items())
    ]
    method_tokens = manifest["training"].get("real_tokens") or real_tokens.get(1.0)
    placed, note = None, ""
    if len({s.real_tokens for s in sizes}) < 2:
        note = (
            "one organic size only: the effective-token multiplier needs repetition arms at "
            "two sizes or more (control.sizes)"
        )
    else:
        placed = estimate(
            rounds, float(method_tokens), sizes, level=config.level, resamples=config.resamples
        )
        if placed.max_multiplier <= 1 + 1e-9:
            note = (
                "no arm had more unique organic data than the rounds (the run trained on its "
                "whole corpus), so a multiplier above 1× cannot be measured, only bounded"
            )
    return Comparison(
        round=int(manifest["round"]),
        rounds_losses=[rounds[k] for k in sorted(rounds)],
        repetition={s: [r[k] for k in sorted(r)] for s, r in sorted(by_size.items())},
        real_tokens=real_tokens,
        estimate=placed,
        note=note,
    )


__all__ = [
    "Arm",
    "Comparison",
    "ControlConfig",
    "ControlStart",
    "compare",
    "plan_arms",
    "run_control",
]
