"""The plan of a data-efficiency study: its config, its runs and their flags, and the
tokenizer every run shares (:mod:`hf_megadocs.jobs.study` runs it)."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

logger = logging.getLogger(__name__)


@dataclass(kw_only=True)
class StudyConfig:
    """One study: the runs it plans and where they go.

    Methods train on a base subset D0 of the real training documents; real-only runs at
    nested sizes from D0 to ``max(law_multiples)``·D0 measure the curve that a method's loss
    is placed on, so every multiplier up to that bound is an interpolation.
    """

    output_dir: str = "runs/study"
    """Folder of the study: one run folder per planned run, plus ``study.md``."""
    train_config: str | None = None
    """Training YAML every run starts from (``--config``); None uses ``preset``."""
    preset: str | None = "tiny_cpu"
    """Training preset every run starts from, when ``train_config`` is None."""
    overrides: list[str] = field(default_factory=list)
    """Training flags for every run (``["--data.corpus_kwargs", "{max_docs: 80}"]``)."""
    base_fraction: float = 0.125
    """D0, the methods' real data, as a share of the real training documents (nested by
    the same ``source_id`` hash as ``data.real_fraction``). Corpora are generated for these
    documents only (the builder's ``generate_fraction``)."""
    law_multiples: list[float] = field(default_factory=lambda: [1, 1.5, 2, 3, 4, 6, 8])
    """Real-only sizes as multiples of D0 (1 must be one; base_fraction × the largest ≤ 1):
    the largest is the largest multiplier the study can measure."""
    real_epochs: list[float] = field(default_factory=lambda: [4.0, 8.0, 16.0, 32.0])
    """Epoch grid of the real-only runs at each size."""
    real_weight_decays: list[float] = field(default_factory=lambda: [0.4, 1.6])
    """Weight-decay grid of the real-only runs at each size (the paper's real-only optimum is
    1.6, the methods' 0.4–0.8). The first is also the compute-matched runs' setting."""
    methods: list[str] = field(default_factory=lambda: ["simple", "stitched", "latent"])
    """Corpus methods of the mixed runs (``<method>_g<G>`` corpora)."""
    generations: list[int] = field(default_factory=lambda: [1, 2, 4])
    """G values of the mixed runs (simple and stitched share one set of rephrases, so the
    store makes their smaller G free; latent thoughts are generated per G)."""
    synthetic_shares: list[float] = field(default_factory=lambda: [0.75, 0.9])
    """m values searched for every method and G at the first seed (the paper tunes m = 0.75
    for every method up to G = 16, and 0.9 at G = 32)."""
    mixed_epochs: list[float] = field(default_factory=lambda: [4.0, 8.0])
    """E values searched for every method and G at the first seed, with each m."""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """Seeds (model init, data order). Every real-only setting runs at every seed; each
    method's search runs at the first, its chosen point at all of them."""
    selection_fraction: float = 0.5
    """Share of the validation documents that choose settings (``eval.selection_fraction``);
    the reported i.i.d. loss is over the others."""
    tokenizer_vocab: int | None = None
    """Train one byte-level BPE of this many tokens on the full real training split (never
    validation, never synthetic text) into ``<output_dir>/tokenizer`` and give it to every
    run, so losses at every D are in the same tokens; None keeps the training config's."""
    method_overrides: dict[str, list[str]] = field(default_factory=dict)
    """Training flags per method, after ``overrides``: keyed "real", a corpus method, or a
    method and G (``stitched_g32``, applied after ``stitched``'s), e.g. the paper's
    per-G learning rates (``{stitched_g32: [--optim.lr, "1e-3"]}``)."""
    num_processes: int = 1
    """Training processes per run."""
    emit: str | None = None
    """Write the runs' commands to this file (one per line) instead of running them; rerun
    after they finish for the next step (each method's seeds at its chosen point)."""
    build_only: bool = False
    """Build the corpora (fill the generation store) and stop: run this where generation
    is cheap, then the study without it where it trains, on the same store."""
    estimate_only: bool = False
    """Log what building the corpora would generate (requests, tokens, time, device-hours,
    disk) and stop before generating (a calibration batch when no rate is known)."""
    expected_tokens_per_s: float | None = None
    """Generated tokens per second for that estimate; None = from the store's recorded runs
    of the generator on this hardware, else measured."""

    def __post_init__(self) -> None:
        if not 0 < self.base_fraction <= 1:
            raise ValueError(f"base_fraction must be a share in (0, 1], got {self.base_fraction}.")
        top = self.base_fraction * max(self.law_multiples, default=0)
        if 1 not in self.law_multiples or min(self.law_multiples) < 1 or top > 1 + 1e-9:
            raise ValueError(
                f"law_multiples must include 1, be >= 1 and keep base_fraction × the largest "
                f"<= 1; got {self.law_multiples} with base_fraction {self.base_fraction} "
                f"(largest share {top:g}). Lower base_fraction or the multiples."
            )
        if len(self.law_multiples) < 2:
            raise ValueError(f"law_multiples needs at least 2 sizes, got {self.law_multiples}.")
        if not self.seeds or not self.real_epochs or not self.real_weight_decays:
            raise ValueError("seeds, real_epochs and real_weight_decays need a value each.")
        if self.methods and not (self.synthetic_shares and self.mixed_epochs):
            raise ValueError("synthetic_shares and mixed_epochs need a value each.")
        if any(not 0 < m < 1 for m in self.synthetic_shares):
            raise ValueError(f"synthetic_shares must be in (0, 1): {self.synthetic_shares}.")
        if not 0 < self.selection_fraction < 1:
            raise ValueError(
                f"selection_fraction must be in (0, 1), got {self.selection_fraction}: settings "
                "are chosen on validation documents whose loss is not reported."
            )
        keys = {"real", *self.methods}
        keys |= {f"{m}_g{g}" for m in self.methods for g in self.generations}
        unknown = sorted(set(self.method_overrides) - keys)
        if unknown:
            raise ValueError(
                f"method_overrides names methods the study does not run: {unknown}; use "
                f"'real', a method or a method and G, one of {sorted(keys)}."
            )

    def share_of(self, multiple: float) -> float:
        """``data.real_fraction`` of the real-only size ``multiple`` × D0."""
        return min(1.0, round(self.base_fraction * multiple, 9))


RunKind = Literal["law", "search", "seed", "matched"]


@dataclass(frozen=True)
class PlannedRun:
    """One training run of a study."""

    name: str
    """Its folder under the study's ``output_dir``."""
    kind: RunKind
    """"law": a real-only size and setting; "search": a method's (m, E) point at the first
    seed; "seed": a method's chosen point at another seed; "matched": real-only on D0 for
    as many steps as a method's chosen point."""
    method: str
    """"real" or a corpus method."""
    num_generations: int
    real_fraction: float
    real_epochs: float
    synthetic_share: float
    seed: int
    multiple: float = 1.0
    """Real data as a multiple of D0."""
    weight_decay: float | None = None
    """``optim.weight_decay`` of the run; None keeps the training config's."""

    @property
    def setting(self) -> str:
        """The run's searched setting: ``e16_wd1.6`` (real-only) or ``m0.75_e4`` (a method)."""
        if self.method == "real":
            return f"e{self.real_epochs:g}" + (
                "" if self.weight_decay is None else f"_wd{self.weight_decay:g}"
            )
        return f"m{self.synthetic_share:g}_e{self.real_epochs:g}"

    @property
    def corpus(self) -> str | None:
        """The synthetic corpus it trains on (``stitched_g4``); None for real-only runs."""
        return None if self.method == "real" else f"{self.method}_g{self.num_generations}"

    def flags(self) -> list[str]:
        """Training flags that make this run what it is (after the study's own flags)."""
        wd = [] if self.weight_decay is None else ["--optim.weight_decay", f"{self.weight_decay:g}"]
        return [
            "--data.synthetic_corpus", self.corpus or "null",
            "--mix.synthetic_share", f"{self.synthetic_share:g}",
            "--mix.real_epochs", f"{self.real_epochs:g}",
            "--data.real_fraction", f"{self.real_fraction:g}",
            *wd, "--seed", str(self.seed), "--mix.seed", str(self.seed),
        ]  # fmt: skip


def _law_run(config: StudyConfig, multiple: float, epochs: float, wd: float, seed: int,
             kind: RunKind = "law") -> PlannedRun:  # fmt: skip
    return PlannedRun(
        f"real_x{multiple:g}_e{epochs:g}_wd{wd:g}_s{seed}", kind, "real", 0,
        config.share_of(multiple), epochs, 0.0, seed, multiple, wd,
    )  # fmt: skip


def _method_run(config: StudyConfig, method: str, g: int, share: float, epochs: float,
                seed: int, kind: RunKind) -> PlannedRun:  # fmt: skip
    return PlannedRun(
        f"{method}_g{g}_m{share:g}_e{epochs:g}_s{seed}", kind, method, g,
        config.share_of(1), epochs, share, seed,
    )  # fmt: skip


def search_runs(config: StudyConfig, method: str, g: int) -> list[PlannedRun]:
    """The (m, E) search of ``method`` at G: every point of the grid at the first seed."""
    return [
        _method_run(config, method, g, share, epochs, config.seeds[0], "search")
        for share in config.synthetic_shares
        for epochs in config.mixed_epochs
    ]


def chosen_point(
    config: StudyConfig, method: str, g: int, selection: Mapping[str, float]
) -> tuple[float, float] | None:
    """The (m, E) of ``method`` at G with the lowest selection loss at the first seed, or
    None while any of its search runs is unfinished (``selection``: finished run name →
    selection loss)."""
    runs = search_runs(config, method, g)
    if any(run.name not in selection for run in runs):
        return None
    best = min(runs, key=lambda run: (selection[run.name], run.synthetic_share, run.real_epochs))
    return best.synthetic_share, best.real_epochs


def plan_study(
    config: StudyConfig, selection: Mapping[str, float] | None = None
) -> list[PlannedRun]:
    """Every run of ``config`` known so far: the real-only grid at every size and seed, each
    method's (m, E) search at the first seed and, for each method whose search has finished
    (``selection``: finished run name → selection loss), its chosen point at the other seeds
    and the compute-matched real-only runs on D0."""
    selection = selection or {}
    runs: dict[str, PlannedRun] = {}

    def add(run: PlannedRun) -> None:
        runs.setdefault(run.name, run)

    for seed in config.seeds:
        for multiple in sorted(config.law_multiples):
            for epochs in sorted(config.real_epochs):
                for wd in config.real_weight_decays:
                    add(_law_run(config, multiple, epochs, wd, seed))
    for method in config.methods:
        for g in sorted(config.generations):
            for run in search_runs(config, method, g):
                add(run)
            point = chosen_point(config, method, g, selection)
            if point is not None:
                for run in [
                    *method_runs(config, method, g, selection),
                    *matched_runs(config, point),
                ]:
                    add(run)
    return list(runs.values())


def method_runs(
    config: StudyConfig, method: str, g: int, selection: Mapping[str, float]
) -> list[PlannedRun]:
    """The runs of ``method`` at G's chosen point, one per seed ([] before its search ends)."""
    point = chosen_point(config, method, g, selection)
    if point is None:
        return []
    return [
        _method_run(config, method, g, *point, seed, "search" if i == 0 else "seed")
        for i, seed in enumerate(config.seeds)
    ]


def matched_runs(config: StudyConfig, point: tuple[float, float]) -> list[PlannedRun]:
    """The compute-matched real-only runs on D0 of a method's chosen (m, E), one per seed."""
    share, epochs = point
    budget = round(epochs / (1 - share), 9)  # the chosen runs' steps, in D0 epochs
    return [
        _law_run(config, 1, budget, config.real_weight_decays[0], seed, "matched")
        for seed in config.seeds
    ]


def training_flags(config: StudyConfig) -> list[str]:
    """The study's training config and overrides, before the shared tokenizer."""
    if config.train_config is not None:
        base = ["--config", config.train_config]
    else:
        base = ["--preset", config.preset] if config.preset else []
    return [*base, *config.overrides]


def study_corpus_kwargs(config: StudyConfig) -> dict[str, Any]:
    """The corpus options of every run: the training config's, generating for D0 only."""
    from hf_megadocs.training.presets import load_config

    kwargs = dict(load_config(overrides=training_flags(config)).data.corpus_kwargs)
    given = kwargs.get("generate_fraction", config.base_fraction)
    if not math.isclose(float(given), config.base_fraction):
        raise ValueError(
            f"data.corpus_kwargs sets generate_fraction {given} but the study's base_fraction "
            f"is {config.base_fraction}; drop generate_fraction (the study sets it)."
        )
    return {**kwargs, "generate_fraction": config.base_fraction}


def base_flags(config: StudyConfig) -> list[str]:
    """The flags every run of the study starts with."""
    flags = [
        *training_flags(config),
        "--data.corpus_kwargs", json.dumps(study_corpus_kwargs(config)),
        "--eval.selection_fraction", f"{config.selection_fraction:g}",
    ]  # fmt: skip
    if config.tokenizer_vocab is not None:
        flags += ["--model.tokenizer", str(study_tokenizer_dir(config))]
    return flags


def run_flags(config: StudyConfig, run: PlannedRun, run_dir: Path) -> list[str]:
    """The whole training command line of ``run`` (after the launcher and the recipe)."""
    overrides = config.method_overrides
    per_g = (
        overrides.get(f"{run.method}_g{run.num_generations}", []) if run.method != "real" else []
    )
    return [
        *base_flags(config), *overrides.get(run.method, []), *per_g, *run.flags(),
        "--output_dir", str(run_dir), "--resume_from_checkpoint", "latest",
    ]  # fmt: skip


def study_tokenizer_dir(config: StudyConfig) -> Path:
    """Where the study's shared tokenizer lives (``tokenizer_vocab`` set)."""
    return (Path(config.output_dir) / "tokenizer").resolve()


def train_study_tokenizer(config: StudyConfig) -> Path | None:
    """Train the shared tokenizer once, on the full real training split of the study's
    training config (``data.real_fraction`` 1: every D is a subset of what it saw)."""
    from hf_megadocs.training.presets import load_config
    from hf_megadocs.training.tokenizer_training import train_on_real_split

    if config.tokenizer_vocab is None:
        return None
    folder = study_tokenizer_dir(config)
    train_config = load_config(overrides=[*training_flags(config), "--data.real_fraction", "1"])
    train_on_real_split(train_config, config.tokenizer_vocab, folder)
    return folder


__all__ = ["PlannedRun", "RunKind", "StudyConfig", "base_flags", "chosen_point", "matched_runs",
           "method_runs", "plan_study", "run_flags", "search_runs", "study_corpus_kwargs",
           "study_tokenizer_dir", "train_study_tokenizer", "training_flags"]  # fmt: skip
