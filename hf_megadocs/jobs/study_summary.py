"""What a study found: the measured real-only curve, each method × G placed on it by
interpolation with a 95% bootstrap interval (:mod:`hf_megadocs.analysis.efficiency`), the
long-context loss by position against real-only, and the figures
(:mod:`hf_megadocs.jobs.study_report` writes the Markdown answer)."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hf_megadocs.analysis.efficiency import (
    CurvePoint,
    Estimate,
    LackOfFit,
    SizeRuns,
    curve_points,
    estimate,
    lack_of_fit,
)
from hf_megadocs.jobs.study_plan import (
    PlannedRun,
    StudyConfig,
    chosen_point,
    matched_runs,
    method_runs,
    plan_study,
    search_runs,
)

CORPORA_FILE = "corpora.json"
"""The study's corpora: rows, characters and a content hash each (the pinned generations)."""


@dataclass
class MethodResult:
    """One method and G at its chosen (m, E), over its seeds, placed on the curve."""

    method: str
    num_generations: int
    point: tuple[float, float]
    """The chosen (m, E)."""
    search: dict[str, float]
    """Each searched setting (``m0.75_e4``) → its selection loss at the first seed."""
    losses: list[float]
    """Reported i.i.d. loss of each finished seed."""
    long_context_loss: float
    """Long-context loss, mean over seeds (NaN when the runs did not evaluate it)."""
    long_by_position: dict[str, float]
    """Long-context loss per position bucket, mean over seeds."""
    train_tokens: int
    real_tokens: int
    estimate: Estimate | None
    """Its placement on the curve (None while the curve has fewer than 2 sizes)."""
    matched: str
    """The compute-matched real-only run on D0 (its name without the seed)."""
    matched_loss: float
    tokenizer: str

    @property
    def loss(self) -> float:
        return statistics.fmean(self.losses)

    @property
    def loss_std(self) -> float:
        return seed_std(self.losses)


def seed_std(losses: Sequence[float]) -> float:
    """Standard deviation over seeds (0 for a single seed)."""
    return statistics.stdev(losses) if len(losses) > 1 else 0.0


@dataclass
class StudyResult:
    """What a study found so far."""

    multiples: list[float]
    """Each measured size as a multiple of D0, as ``points``."""
    points: list[CurvePoint]
    """The measured real-only curve, smallest D first."""
    fit: Any
    """The A/D^α + E smoother (``hf_megadocs.analysis.fit.ScalingLawFit``), or None."""
    fit_error: str | None
    lack: LackOfFit | None
    results: list[MethodResult]
    missing: list[str]
    """Planned runs not finished yet."""
    runs: dict[str, Any]
    """Finished runs by name (``hf_megadocs.analysis.runs.Run``)."""
    real_long: dict[str, float] = field(default_factory=dict)
    """Real-only on D0 at its chosen setting: long-context loss per bucket, mean over seeds."""
    vocab_size: int = 0
    corpora: list[dict[str, Any]] = field(default_factory=list)
    """``corpora.json``: each corpus's rows and content hash."""
    grid_edges: list[str] = field(default_factory=list)
    """Choices at the largest value of their epoch grid (the optimum may lie beyond it)."""
    level: float = 0.95


def selection_losses(config: StudyConfig) -> dict[str, float]:
    """Finished run name → its selection loss, for every finished run of the study."""
    losses = {}
    for summary in Path(config.output_dir).glob("*/summary.json"):
        value = json.loads(summary.read_text()).get("selection_loss")
        if isinstance(value, (int, float)) and math.isfinite(value):
            losses[summary.parent.name] = float(value)
    return losses


def _mean_buckets(runs: Sequence[Any]) -> dict[str, float]:
    buckets: dict[str, list[float]] = {}
    for run in runs:
        for label, value in run.long_context_by_position.items():
            buckets.setdefault(label, []).append(value)
    return {label: statistics.fmean(values) for label, values in buckets.items()}


def _sizes(
    config: StudyConfig,
    planned: Sequence[PlannedRun],
    done: dict[str, Any],
    selection: dict[str, float],
):
    """(multiple, SizeRuns) of every size with a seed that finished all its settings
    (``selection``: finished run name → selection loss)."""
    sizes = []
    for multiple in sorted(config.law_multiples):
        law = [p for p in planned if p.kind == "law" and p.multiple == multiple and p.name in done]
        chosen_by: dict[str, dict[int, float]] = {}
        reported: dict[str, dict[int, float]] = {}
        tokens = []
        for p in law:
            if p.name not in selection:
                continue
            run = done[p.name]
            chosen_by.setdefault(p.setting, {})[p.seed] = selection[p.name]
            reported.setdefault(p.setting, {})[p.seed] = run.iid_loss
            tokens.append(run.real_tokens)
        settings = {p.setting for p in planned if p.kind == "law" and p.multiple == multiple}
        size = SizeRuns(real_tokens=statistics.fmean(tokens) if tokens else 0.0,
                        selection=chosen_by, reported=reported)  # fmt: skip
        if set(chosen_by) == settings and size.complete_seeds():
            sizes.append((multiple, size))
    return sizes


def summarise(config: StudyConfig) -> StudyResult:
    """The measured curve, each method × G on it, and the planned runs not finished yet."""
    from hf_megadocs.analysis.fit import fit_power_law
    from hf_megadocs.analysis.runs import load_run

    out = Path(config.output_dir)
    selection = selection_losses(config)
    planned = plan_study(config, selection)
    done = {
        p.name: load_run(out / p.name) for p in planned if (out / p.name / "summary.json").is_file()
    }
    missing = [p.name for p in planned if p.name not in done]
    sized = _sizes(config, planned, done, selection)
    multiples, sizes = [m for m, _ in sized], [s for _, s in sized]
    points = curve_points(sizes) if sizes else []
    fit, fit_error, lack = None, None, None
    try:
        fit = fit_power_law([p.real_tokens for p in points], [p.loss for p in points], quantity="D")
        lack = lack_of_fit(list(fit.predict([p.real_tokens for p in points])), points)
    except ValueError as error:  # too few sizes, or losses no law fits: the curve stands alone
        fit_error = str(error)
    results = []
    for method in config.methods:
        for g in sorted(config.generations):
            point = chosen_point(config, method, g, selection)
            runs = [
                done[p.name] for p in method_runs(config, method, g, selection) if p.name in done
            ]
            if point is None or not runs:
                continue
            placed = (
                estimate(dict(enumerate(r.iid_loss for r in runs)), runs[0].real_tokens, sizes)
                if len(sizes) >= 2
                else None
            )
            search = {
                run.setting: selection.get(run.name, math.nan)
                for run in search_runs(config, method, g)
            }
            matched_plan = matched_runs(config, point)
            matched = [done[p.name] for p in matched_plan if p.name in done]
            long = [r.long_context_loss for r in runs if r.long_context_loss is not None]
            results.append(MethodResult(
                method=method, num_generations=g, point=point, search=search,
                losses=[r.iid_loss for r in runs],
                long_context_loss=statistics.fmean(long) if long else math.nan,
                long_by_position=_mean_buckets(runs),
                train_tokens=int(statistics.fmean(r.summary.get("tokens", 0) for r in runs)),
                real_tokens=runs[0].real_tokens, estimate=placed,
                matched=matched_plan[0].name.rsplit("_s", 1)[0],
                matched_loss=statistics.fmean(r.iid_loss for r in matched) if matched else math.nan,
                tokenizer=f"{runs[0].tokenizer} ({runs[0].config.get('vocab_size', '?')} tokens)",
            ))  # fmt: skip
    real_long: dict[str, float] = {}
    if points and multiples[0] == 1:
        base = [done[p.name] for p in planned if p.kind == "law" and p.multiple == 1
                and p.setting == points[0].setting and p.name in done]  # fmt: skip
        real_long = _mean_buckets(base)
    grid_edges = [
        f"real-only at {multiple:g}·D0 ({point.setting})"
        for multiple, point in zip(multiples, points)
        if len(config.real_epochs) > 1 and point.setting.startswith(f"e{max(config.real_epochs):g}_")
    ] + [
        f"{r.method} G={r.num_generations} (m {r.point[0]:g}, E {r.point[1]:g})"
        for r in results
        if len(config.mixed_epochs) > 1 and r.point[1] == max(config.mixed_epochs)
    ]  # fmt: skip
    corpora_path = out / CORPORA_FILE
    any_run = next(iter(done.values()), None)
    return StudyResult(
        multiples=multiples, points=points, fit=fit, fit_error=fit_error, lack=lack,
        results=results, missing=missing, runs=done, real_long=real_long, grid_edges=grid_edges,
        vocab_size=int(any_run.config.get("vocab_size", 0)) if any_run else 0,
        corpora=json.loads(corpora_path.read_text()) if corpora_path.is_file() else [],
    )  # fmt: skip


def _equivalent_range(r: MethodResult) -> tuple[float, float, float]:
    """(equivalent D, interval low D, interval high D) of a result, in tokens."""
    est = r.estimate
    if est is None:
        return math.nan, math.nan, math.nan
    low, high = (m * r.real_tokens if math.isfinite(m) else m for m in (est.low, est.high))
    return est.equivalent_tokens, low, high


def write_figures(config: StudyConfig, study: StudyResult) -> list[tuple[str, Path]]:
    """The measured curve with every method placed, loss vs G with seed error bars,
    long-context loss by position against real-only: PNGs under ``<output_dir>/figures``."""
    from hf_megadocs.analysis.plots import (
        plot_long_context_by_position,
        plot_loss_vs_g_with_seeds,
        plot_measured_curve,
    )

    folder = Path(config.output_dir) / "figures"
    figures = []
    if len(study.points) >= 2:
        placed = [
            (f"{r.method} G={r.num_generations}", r.loss,
             *_equivalent_range(r))
            for r in study.results
        ]  # fmt: skip
        figures.append((
            "Methods placed on the measured real-only curve (95% intervals as bars)",
            plot_measured_curve([(p.real_tokens, p.loss, seed_std(p.losses)) for p in study.points],
                                placed, folder / "data_law.png", law=study.fit),
        ))  # fmt: skip
    series: dict[str, list[tuple[int, float, float]]] = {}
    for r in study.results:
        series.setdefault(r.method, []).append((r.num_generations, r.loss, r.loss_std))
    if series:
        baseline = (
            (f"real only on D0 ({study.points[0].setting})", study.points[0].loss)
            if study.points
            else None
        )
        figures.append(("i.i.d. loss vs G (mean ± std over seeds)",
                        plot_loss_vs_g_with_seeds(series, folder / "loss_vs_g.png",
                                                  baseline=baseline)))  # fmt: skip
    first_seed = [
        run for name, run in study.runs.items()
        if name.endswith(f"_s{config.seeds[0]}") and (
            any(name.startswith(f"{r.method}_g{r.num_generations}_m{r.point[0]:g}_e{r.point[1]:g}_")
                for r in study.results)
            or (study.points and name.startswith(f"real_x1_{study.points[0].setting}_"))
        )
    ]  # fmt: skip
    long = plot_long_context_by_position(first_seed, folder / "long_context_by_position.png")
    if long is not None:
        figures.append(("Long-context loss by position, real-only on D0 and each method (first seed)",
                        long))  # fmt: skip
    return figures


__all__ = ["CORPORA_FILE", "MethodResult", "StudyResult", "seed_std", "selection_losses",
           "summarise", "write_figures"]  # fmt: skip
