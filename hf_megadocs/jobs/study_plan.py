"""The plan of a data-efficiency study: its config, its runs and their flags, and the
tokenizer every run shares (:mod:`hf_megadocs.jobs.study` runs it)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)


@dataclass(kw_only=True)
class StudyConfig:
    """One study: the runs it plans and where they go."""

    output_dir: str = "runs/study"
    """Folder of the study: one run folder per planned run, plus ``study.md``."""
    train_config: str | None = None
    """Training YAML every run starts from (``--config``); None uses ``preset``."""
    preset: str | None = "tiny_cpu"
    """Training preset every run starts from, when ``train_config`` is None."""
    overrides: list[str] = field(default_factory=list)
    """Training flags for every run (``["--data.corpus_kwargs", "{max_docs: 80}"]``)."""
    real_fractions: list[float] = field(default_factory=lambda: [0.125, 0.25, 0.5, 1.0])
    """Real-data sizes D as shares of the real training documents (nested subsets)."""
    real_epochs: list[float] = field(default_factory=lambda: [1.0, 2.0, 4.0, 8.0])
    """Epoch grid of the real-only runs at each D; the best per D enters the law."""
    methods: list[str] = field(default_factory=lambda: ["simple", "stitched", "latent"])
    """Corpus methods of the mixed runs (``<method>_g<G>`` corpora)."""
    generations: list[int] = field(default_factory=lambda: [1, 2, 4])
    """G values of the mixed runs (simple and stitched share one set of rephrases, so the
    store makes their smaller G free; latent thoughts are generated per G)."""
    synthetic_share: dict[str, float] = field(
        default_factory=lambda: {"simple": 0.75, "stitched": 0.9, "latent": 0.9}
    )
    """m per method (the paper's tuned shares); methods not listed use 0.75."""
    mixed_epochs: float = 4.0
    """E (real epochs) of every mixed run."""
    seeds: list[int] = field(default_factory=lambda: [0])
    """Seeds of every planned run (model init, data order)."""
    tokenizer_vocab: int | None = None
    """Train one byte-level BPE of this many tokens on the full real training split (never
    validation, never synthetic text) into ``<output_dir>/tokenizer`` and give it to every
    run, so losses at every D are in the same tokens; None keeps the training config's."""
    method_overrides: dict[str, list[str]] = field(default_factory=dict)
    """Training flags per method ("real" or a corpus method), after ``overrides``: each
    method's tuned settings (``{real: [--optim.weight_decay, "1.6"]}``)."""
    num_processes: int = 1
    """Training processes per run."""
    emit: str | None = None
    """Write the runs' commands to this file (one per line) instead of running them."""
    build_only: bool = False
    """Build the corpora (fill the generation store) and stop: run this where generation
    is cheap, then the study without it where it trains, on the same store."""

    def __post_init__(self) -> None:
        if not self.real_fractions or not all(0 < f <= 1 for f in self.real_fractions):
            raise ValueError(f"real_fractions must be shares in (0, 1], got {self.real_fractions}.")
        if not self.seeds or not self.real_epochs:
            raise ValueError("seeds and real_epochs need at least one value each.")
        if any(not 0 <= self.share(m) < 1 for m in self.methods):
            raise ValueError(f"synthetic_share values must be in [0, 1): {self.synthetic_share}.")
        unknown = sorted(set(self.method_overrides) - {"real", *self.methods})
        if unknown:
            raise ValueError(
                f"method_overrides names methods the study does not run: {unknown}; "
                f"use 'real' or one of {self.methods}."
            )

    def share(self, method: str) -> float:
        return self.synthetic_share.get(method, 0.75)


@dataclass(frozen=True)
class PlannedRun:
    """One training run of a study."""

    name: str
    """Its folder under the study's ``output_dir``."""
    method: str
    """"real" or a corpus method."""
    num_generations: int
    real_fraction: float
    real_epochs: float
    synthetic_share: float
    seed: int
    budget_of: float | None = None
    """For a compute-matched real-only run: the synthetic share whose runs it matches."""

    def flags(self) -> list[str]:
        """Training flags that make this run what it is (after the study's own flags)."""
        corpus = "null" if self.method == "real" else f"{self.method}_g{self.num_generations}"
        return [
            "--data.synthetic_corpus", corpus,
            "--mix.synthetic_share", f"{self.synthetic_share:g}",
            "--mix.real_epochs", f"{self.real_epochs:g}",
            "--data.real_fraction", f"{self.real_fraction:g}",
            "--seed", str(self.seed), "--mix.seed", str(self.seed),
        ]  # fmt: skip


def plan_study(config: StudyConfig) -> list[PlannedRun]:
    """Every run of ``config``: real-only grid, compute-matched real-only runs, mixed runs."""
    runs: dict[str, PlannedRun] = {}

    def add(run: PlannedRun) -> None:
        runs.setdefault(run.name, run)

    for seed in config.seeds:
        for fraction in sorted(config.real_fractions):
            for epochs in sorted(config.real_epochs):
                add(PlannedRun(f"real_d{fraction:g}_e{epochs:g}_s{seed}", "real", 0, fraction,
                               epochs, 0.0, seed))  # fmt: skip
        for share in sorted({config.share(m) for m in config.methods}):
            epochs = round(config.mixed_epochs / (1 - share), 9)  # the mixed runs' steps
            add(PlannedRun(f"real_d1_e{epochs:g}_s{seed}", "real", 0, 1.0, epochs, 0.0, seed,
                           budget_of=share))  # fmt: skip
        for method in config.methods:
            for g in sorted(config.generations):
                add(PlannedRun(f"{method}_g{g}_s{seed}", method, g, 1.0, config.mixed_epochs,
                               config.share(method), seed))  # fmt: skip
    return list(runs.values())


def training_flags(config: StudyConfig) -> list[str]:
    """The study's training config and overrides, before the shared tokenizer."""
    if config.train_config is not None:
        base = ["--config", config.train_config]
    else:
        base = ["--preset", config.preset] if config.preset else []
    return [*base, *config.overrides]


def base_flags(config: StudyConfig) -> list[str]:
    """The flags every run of the study starts with."""
    flags = training_flags(config)
    if config.tokenizer_vocab is not None:
        flags += ["--model.tokenizer", str(study_tokenizer_dir(config))]
    return flags


def run_flags(config: StudyConfig, run: PlannedRun, run_dir: Path) -> list[str]:
    """The whole training command line of ``run`` (after the launcher and the recipe)."""
    return [
        *base_flags(config), *config.method_overrides.get(run.method, []), *run.flags(),
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


__all__ = ["PlannedRun", "StudyConfig", "base_flags", "plan_study", "run_flags",
           "study_tokenizer_dir", "train_study_tokenizer", "training_flags"]  # fmt: skip
