"""What a study found: the data law from its real-only runs, each method × G placed on it
with a multiplier and an interval, the figures and the Markdown answer."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hf_megadocs.jobs.study_plan import PlannedRun, StudyConfig, plan_study


@dataclass
class MethodResult:
    """One method and G over its seeds, placed on the data law."""

    method: str
    num_generations: int
    losses: list[float]
    """i.i.d. loss of each finished seed."""
    long_context_loss: float
    """Long-context loss, mean over seeds (NaN when the runs did not evaluate it)."""
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


@dataclass(frozen=True)
class LawPoint:
    """One real-data size D of the law: its best epoch count and loss, over seeds."""

    real_fraction: float
    real_tokens: float
    best_epochs: list[float]
    """The best epoch count of each seed."""
    losses: list[float]
    """The i.i.d. loss at that epoch count, each seed."""

    @property
    def loss(self) -> float:
        return statistics.fmean(self.losses)


@dataclass
class StudyResult:
    """What a study found so far."""

    fit: Any
    """The data law (``hf_megadocs.analysis.fit.ScalingLawFit``), or None (``fit_error``)."""
    fit_error: str | None
    """Why there is no law yet (too few sizes finished, or the points do not fit one)."""
    points: list[LawPoint]
    """The real-only points the law is fitted to, smallest D first."""
    results: list[MethodResult]
    """Each method × G, placed on the law."""
    missing: list[str]
    """Planned runs not finished yet."""
    runs: dict[str, Any]
    """Finished runs by name (``hf_megadocs.analysis.runs.Run``)."""


def summarise(config: StudyConfig) -> StudyResult:
    """The data law, each method × G on it, and the planned runs not finished yet."""
    from hf_megadocs.analysis.fit import fit_power_law
    from hf_megadocs.analysis.runs import load_run

    out = Path(config.output_dir)
    planned = plan_study(config)
    done = {
        p.name: load_run(out / p.name) for p in planned if (out / p.name / "summary.json").is_file()
    }
    missing = [p.name for p in planned if p.name not in done]
    points = _law_points(planned, done)
    fit, fit_error = None, None
    try:
        fit = fit_power_law([p.real_tokens for p in points], [p.loss for p in points], quantity="D")
    except ValueError as error:  # too few sizes, or losses no law fits: report the losses
        fit_error = str(error)
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
            equivalent, (lo, hi) = _placed(mean, _seed_std(losses), real_tokens, fit)
            baselines = _matched_baselines(config, planned, method, done)
            base_loss = (
                statistics.fmean(done[p.name].iid_loss for p in baselines)
                if baselines
                else math.nan
            )
            long = [r.long_context_loss for r in runs if r.long_context_loss is not None]
            results.append(MethodResult(
                method=method, num_generations=g, losses=losses,
                long_context_loss=statistics.fmean(long) if long else math.nan,
                train_tokens=int(statistics.fmean(r.summary.get("tokens", 0) for r in runs)),
                real_tokens=real_tokens, equivalent_tokens=equivalent,
                multiplier=equivalent / real_tokens, interval=(lo, hi),
                baseline=baselines[0].name.rsplit("_s", 1)[0] if baselines else "(not run)",
                baseline_loss=base_loss,
                tokenizer=f"{runs[0].tokenizer} ({runs[0].config.get('vocab_size', '?')} tokens)",
            ))  # fmt: skip
    return StudyResult(
        fit=fit, fit_error=fit_error, points=points, results=results, missing=missing, runs=done
    )


def _placed(
    loss: float, spread: float, real_tokens: int, fit: Any
) -> tuple[float, tuple[float, float]]:
    """Equivalent real tokens of ``loss`` and the multiplier's interval (NaN without a law);
    the multiplier at loss ± one seed standard deviation widens the law's interval."""
    from hf_megadocs.analysis.fit import efficiency_interval, equivalent_real_tokens

    if fit is None:
        return math.nan, (math.nan, math.nan)
    lo, hi = efficiency_interval(loss, real_tokens, fit)
    lo = min(lo, equivalent_real_tokens(loss + spread, fit) / real_tokens)
    hi = max(hi, equivalent_real_tokens(loss - spread, fit) / real_tokens)
    return equivalent_real_tokens(loss, fit), (lo, hi)


def _law_points(planned: Sequence[PlannedRun], done: dict[str, Any]) -> list[LawPoint]:
    """At each D, the best epoch count of each seed's real-only grid runs."""
    best: dict[float, dict[int, tuple[float, float, int]]] = {}
    for p in planned:
        if p.method == "real" and p.budget_of is None and p.name in done:
            run = done[p.name]
            seen = best.setdefault(p.real_fraction, {})
            if run.iid_loss < seen.get(p.seed, (math.inf,))[0]:
                seen[p.seed] = (run.iid_loss, p.real_epochs, run.real_tokens)
    return sorted(
        (
            LawPoint(
                real_fraction=fraction,
                real_tokens=statistics.fmean(t for _, _, t in by_seed.values()),
                best_epochs=[e for _, e, _ in by_seed.values()],
                losses=[loss for loss, _, _ in by_seed.values()],
            )
            for fraction, by_seed in best.items()
        ),
        key=lambda point: point.real_fraction,
    )


def _matched_baselines(
    config: StudyConfig, planned: Sequence[PlannedRun], method: str, done: dict[str, Any]
) -> list[PlannedRun]:
    """The finished real-only runs on the full data with as many steps as ``method``'s runs
    (a grid run can be that run: the planner keeps one run per name)."""
    epochs = round(config.mixed_epochs / (1 - config.share(method)), 9)
    return [
        p for p in planned
        if p.method == "real" and p.real_fraction == 1.0 and math.isclose(p.real_epochs, epochs)
        and p.name in done
    ]  # fmt: skip


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
    figures = []
    if study.fit is not None:
        figures.append(("Data law, each method at its equivalent real tokens (first seed)",
                        plot_scaling_law(study.fit, first_seed, folder / "data_law.png")))  # fmt: skip
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


def render_study(study: StudyResult, figures: Sequence[tuple[str, Path]] = ()) -> str:
    """The study's answer as Markdown: the law and its points, one row per method × G
    (losses, compute, multiplier, Δ against the compute-matched real-only run), figures."""
    lines = [
        "# Data-efficiency study",
        "",
        "Data law from the real-only runs (best epoch count per D, mean over seeds): "
        + (study.fit.describe() if study.fit is not None else f"none yet ({study.fit_error})")
        + ".",
        "",
        "| real-data share | real tokens D | best epochs (per seed) | i.i.d. loss |",
        "|---:|---:|---|---:|",
    ]
    for point in study.points:
        epochs = ", ".join(f"{e:g}" for e in point.best_epochs)
        lines.append(
            f"| {point.real_fraction:g} | {point.real_tokens:,.0f} | {epochs} | "
            f"{point.loss:.4f} ± {_seed_std(point.losses):.4f} |"
        )
    lines += [
        "",
        "| method | G | seeds | train tokens | i.i.d. loss | long-context loss | "
        "equivalent real tokens | multiplier [interval] | Δ vs compute-matched real-only |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in study.results:
        if study.fit is None:
            multiplier = "—"
        elif all(math.isnan(end) for end in r.interval):
            multiplier = f"{r.multiplier:.2f}× [n/a]"
        else:
            multiplier = f"{r.multiplier:.2f}× [{r.interval[0]:.2f}, {r.interval[1]:.2f}]"
        delta = (
            f"{r.loss - r.baseline_loss:+.4f} vs `{r.baseline}`"
            if math.isfinite(r.baseline_loss)
            else "—"
        )
        long = f"{r.long_context_loss:.4f}" if math.isfinite(r.long_context_loss) else "—"
        lines.append(
            f"| {r.method} | {r.num_generations} | {len(r.losses)} | {r.train_tokens:,} | "
            f"{r.loss:.4f} ± {r.loss_std:.4f} | {long} | {r.equivalent_tokens:,.0f} | "
            f"{multiplier} | {delta} |"
        )
    tokenizers: dict[str, list[str]] = {}
    for r in study.results:
        tokenizers.setdefault(r.tokenizer, []).append(f"{r.method} G={r.num_generations}")
    lines += [""] + [
        f"Tokenizer: {name}" + ("" if len(tokenizers) == 1 else f" ({', '.join(rows)})") + "."
        for name, rows in tokenizers.items()
    ]
    lines += [
        "",
        "Train tokens are every token a run trained on (its compute). The interval combines "
        "the law's uncertainty (its covariance, t-distributed), the law's residual noise and "
        "the spread over seeds ([n/a]: the law's covariance is not finite, so its "
        "uncertainty is unknown; add real-data sizes or seeds). Each Δ is against the named "
        "real-only run: the same real data trained for as many steps.",
    ]
    for title, path in figures:
        lines += ["", f"![{title}](figures/{path.name})"]
    if study.missing:
        lines += [
            "",
            f"Not finished yet ({len(study.missing)}): " + ", ".join(study.missing) + ".",
        ]
    return "\n".join(lines) + "\n"


__all__ = ["LawPoint", "MethodResult", "StudyResult", "render_study", "summarise", "write_figures"]
