"""``hf-megadocs study``: plan, run and summarise a data-efficiency study from one YAML.

A study trains real-only runs at several real-data sizes D (nested subsets of the real
documents, ``data.real_fraction``), each over an epoch grid, which give the data law
L(D) = A/D^α + E; and runs of each method and G on the full real data, whose i.i.d. losses
the law turns into equivalent real tokens and a multiplier with an interval. Every run
goes through the one training launcher (:mod:`hf_megadocs.training.launch`), one after
another here, or emitted one command per line for a scheduler. Finished runs (a
``summary.json``) are skipped, interrupted ones resume from their latest checkpoint.

Fair comparisons: for each synthetic share m the planner adds a real-only run on the full
data trained for as many steps as the mixed runs (E/(1−m) real epochs), and every Δ in the
table is against that run, named in the table.
"""

from __future__ import annotations

import logging
import math
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hf_megadocs.flags import ConfigError, parse_dataclass

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
    """G values of the mixed runs (the store makes every smaller G free)."""
    synthetic_share: dict[str, float] = field(
        default_factory=lambda: {"simple": 0.75, "stitched": 0.9, "latent": 0.9}
    )
    """m per method (the paper's tuned shares); methods not listed use 0.75."""
    mixed_epochs: float = 4.0
    """E (real epochs) of every mixed run."""
    seeds: list[int] = field(default_factory=lambda: [0])
    """Seeds of every planned run (model init, data order)."""
    num_processes: int = 1
    """Training processes per run."""
    emit: str | None = None
    """Write the runs' commands to this file (one per line) instead of running them."""

    def __post_init__(self) -> None:
        if not self.real_fractions or not all(0 < f <= 1 for f in self.real_fractions):
            raise ValueError(f"real_fractions must be shares in (0, 1], got {self.real_fractions}.")
        if not self.seeds or not self.real_epochs:
            raise ValueError("seeds and real_epochs need at least one value each.")
        if any(not 0 <= self.share(m) < 1 for m in self.methods):
            raise ValueError(f"synthetic_share values must be in [0, 1): {self.synthetic_share}.")

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


def _base_flags(config: StudyConfig) -> list[str]:
    if config.train_config is not None:
        base = ["--config", config.train_config]
    else:
        base = ["--preset", config.preset] if config.preset else []
    return [*base, *config.overrides]


def run_study(config: StudyConfig) -> list[str]:
    """Run (or emit) every unfinished planned run; the names of the runs that failed."""
    from hf_megadocs.training.launch import launch_command, run_training, shell_line

    out = Path(config.output_dir)
    planned = plan_study(config)
    todo = [run for run in planned if not (out / run.name / "summary.json").is_file()]
    logger.info("study %s: %d runs planned, %d finished, %d to run", out, len(planned),
                len(planned) - len(todo), len(todo))  # fmt: skip
    commands = [
        (run, [*_base_flags(config), *run.flags(), "--output_dir", str(out / run.name),
               "--resume_from_checkpoint", "latest"])
        for run in todo
    ]  # fmt: skip
    if config.emit is not None:
        lines = [
            shell_line(launch_command(flags, num_processes=config.num_processes, portable=True))
            for _, flags in commands
        ]
        Path(config.emit).write_text("".join(line + "\n" for line in lines))
        logger.info("wrote %d commands to %s", len(lines), config.emit)
        return []
    failed = []
    for index, (run, flags) in enumerate(commands, start=1):
        logger.info("study run %d/%d: %s", index, len(commands), run.name)
        code = run_training(launch_command(flags, num_processes=config.num_processes))
        if code != 0:
            logger.error("study run %s exited with %d; the others go on", run.name, code)
            failed.append(run.name)
    return failed


@dataclass
class MethodResult:
    """One method and G over its seeds, placed on the data law."""

    method: str
    num_generations: int
    losses: list[float]
    train_tokens: int
    real_tokens: int
    equivalent_tokens: float
    multiplier: float
    interval: tuple[float, float]
    baseline: str
    baseline_loss: float
    tokenizer: str
    """The tokenizer the runs used (path or id, with its vocabulary size)."""

    @property
    def loss(self) -> float:
        return statistics.fmean(self.losses)

    @property
    def loss_std(self) -> float:
        return _seed_std(self.losses)


def _seed_std(losses: Sequence[float]) -> float:
    """Standard deviation over seeds (0 for a single seed)."""
    return statistics.stdev(losses) if len(losses) > 1 else 0.0


@dataclass
class StudyResult:
    """What a study found so far."""

    fit: Any
    """The data law (``hf_megadocs.analysis.fit.ScalingLawFit``)."""
    results: list[MethodResult]
    """Each method × G, placed on the law."""
    missing: list[str]
    """Planned runs not finished yet."""
    runs: dict[str, Any]
    """Finished runs by name (``hf_megadocs.analysis.runs.Run``)."""


def summarise(config: StudyConfig) -> StudyResult:
    """The data law, each method × G on it, and the planned runs not finished yet."""
    from hf_megadocs.analysis.fit import efficiency_interval, equivalent_real_tokens, fit_power_law
    from hf_megadocs.analysis.runs import load_run

    out = Path(config.output_dir)
    planned = plan_study(config)
    done = {
        p.name: load_run(out / p.name) for p in planned if (out / p.name / "summary.json").is_file()
    }
    missing = [p.name for p in planned if p.name not in done]
    # The law: at each D, the best epoch count per seed, then the mean over seeds.
    best: dict[float, dict[int, tuple[float, int]]] = {}
    for p in planned:
        if p.method == "real" and p.budget_of is None and p.name in done:
            run = done[p.name]
            seen = best.setdefault(p.real_fraction, {})
            if run.iid_loss < seen.get(p.seed, (math.inf, 0))[0]:
                seen[p.seed] = (run.iid_loss, run.real_tokens)
    points = sorted(
        (statistics.fmean(t for _, t in by_seed.values()), statistics.fmean(l for l, _ in by_seed.values()))
        for by_seed in best.values()
    )  # fmt: skip
    fit = fit_power_law([d for d, _ in points], [l for _, l in points], quantity="D")
    results = []
    for method in config.methods:
        for g in sorted(config.generations):
            group = [p for p in planned if (p.method, p.num_generations) == (method, g)]
            runs = [done[p.name] for p in group if p.name in done]
            if not runs:
                continue
            losses = [r.iid_loss for r in runs]
            mean = statistics.fmean(losses)
            real_tokens = runs[0].real_tokens
            spread = _seed_std(losses)
            lo, hi = efficiency_interval(mean, real_tokens, fit)
            # Seed spread: the multiplier at mean ± one standard deviation widens the interval.
            lo = min(lo, equivalent_real_tokens(mean + spread, fit) / real_tokens)
            hi = max(hi, equivalent_real_tokens(mean - spread, fit) / real_tokens)
            baselines = [
                p for p in planned
                if p.budget_of == config.share(method) and p.name in done
            ]  # fmt: skip
            base_loss = (
                statistics.fmean(done[p.name].iid_loss for p in baselines)
                if baselines
                else math.nan
            )
            equivalent = equivalent_real_tokens(mean, fit)
            results.append(MethodResult(
                method=method, num_generations=g, losses=losses,
                train_tokens=int(statistics.fmean(r.summary.get("tokens", 0) for r in runs)),
                real_tokens=real_tokens, equivalent_tokens=equivalent,
                multiplier=equivalent / real_tokens, interval=(lo, hi),
                baseline=baselines[0].name.rsplit("_s", 1)[0] if baselines else "(not run)",
                baseline_loss=base_loss,
                tokenizer=f"{runs[0].tokenizer} ({runs[0].config.get('vocab_size', '?')} tokens)",
            ))  # fmt: skip
    return StudyResult(fit=fit, results=results, missing=missing, runs=done)


def write_figures(config: StudyConfig, study: StudyResult) -> list[tuple[str, Path]]:
    """L(D) with every method placed, loss vs G with seed error bars, long-context loss by
    position: PNGs under ``<output_dir>/figures``; (title, path) each."""
    from hf_megadocs.analysis.plots import (
        plot_long_context_by_position,
        plot_loss_vs_g_with_seeds,
        plot_scaling_law,
    )

    folder = Path(config.output_dir) / "figures"
    first_seed = [
        run for name, run in study.runs.items()
        if run.method != "real" and name.endswith(f"_s{config.seeds[0]}")
    ]  # fmt: skip
    figures = [("Data law, each method at its equivalent real tokens (first seed)",
                plot_scaling_law(study.fit, first_seed, folder / "data_law.png"))]  # fmt: skip
    points: dict[str, list[tuple[int, float, float]]] = {}
    for r in study.results:
        points.setdefault(r.method, []).append((r.num_generations, r.loss, r.loss_std))
    baselines = [r for r in study.results if math.isfinite(r.baseline_loss)]
    baseline = (
        (f"real only ({baselines[0].baseline})", baselines[0].baseline_loss) if baselines else None
    )
    figures.append(("i.i.d. loss vs G (mean ± std over seeds)",
                    plot_loss_vs_g_with_seeds(points, folder / "loss_vs_g.png", baseline=baseline)))  # fmt: skip
    long = plot_long_context_by_position(first_seed, folder / "long_context_by_position.png")
    if long is not None:
        figures.append(("Long-context loss by position (first seed)", long))
    return figures


def render_study(
    fit: Any,
    results: Sequence[MethodResult],
    missing: Sequence[str],
    figures: Sequence[tuple[str, Path]] = (),
) -> str:
    """The study's answer as Markdown: the law, one row per method × G, the figures."""
    lines = [
        "# Data-efficiency study",
        "",
        f"Data law from the real-only runs (best epoch count per D, mean over seeds): "
        f"{fit.describe()}.",
        "",
        "| method | G | seeds | train tokens | i.i.d. loss | equivalent real tokens | "
        "multiplier [interval] | Δ vs compute-matched real-only | tokenizer |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in results:
        interval = f"[{r.interval[0]:.2f}, {r.interval[1]:.2f}]"
        delta = (
            f"{r.loss - r.baseline_loss:+.4f} vs `{r.baseline}`"
            if math.isfinite(r.baseline_loss)
            else "—"
        )
        lines.append(
            f"| {r.method} | {r.num_generations} | {len(r.losses)} | {r.train_tokens:,} | "
            f"{r.loss:.4f} ± {r.loss_std:.4f} | {r.equivalent_tokens:,.0f} | "
            f"{r.multiplier:.2f}× {interval} | {delta} | {r.tokenizer} |"
        )
    lines += [
        "",
        "The interval combines the law's uncertainty (its covariance, t-distributed), the "
        "law's residual noise and the spread over seeds. Each Δ is against the real-only run "
        "on the same real data trained for the same number of steps.",
    ]
    for title, path in figures:
        lines += ["", f"![{title}](figures/{path.name})"]
    if missing:
        lines += ["", f"Not finished yet ({len(missing)}): " + ", ".join(missing) + "."]
    return "\n".join(lines) + "\n"


DESCRIPTION = (
    "Plan, run (or emit) and summarise a data-efficiency study: real-only runs at several "
    "real-data sizes over an epoch grid give the data law; runs of each method and G get "
    "equivalent real tokens and a multiplier with an interval. Finished runs are skipped."
)


def main(argv: list[str] | None = None) -> int:
    """Run ``hf-megadocs study``; 0 when every run finished and the study is written."""
    from hf_megadocs.analysis.fit import InsufficientPointsError

    try:
        config = parse_dataclass(
            StudyConfig, argv, prog="hf-megadocs study", description=DESCRIPTION
        )
    except (ConfigError, ValueError) as error:
        print(f"hf-megadocs study: error: {error}", file=sys.stderr)
        return 2
    failed = run_study(config)
    if config.emit is not None:
        return 0
    try:
        study = summarise(config)
    except InsufficientPointsError as error:
        print(f"hf-megadocs study: no data law yet: {error}", file=sys.stderr)
        return 1
    figures = write_figures(config, study)
    text = render_study(study.fit, study.results, study.missing, figures)
    path = Path(config.output_dir) / "study.md"
    path.write_text(text)
    print(text + f"\nwritten to {path}")
    return 1 if failed or study.missing else 0


__all__ = ["MethodResult", "PlannedRun", "StudyConfig", "StudyResult", "main", "plan_study",
           "render_study", "run_study", "summarise", "write_figures"]  # fmt: skip
