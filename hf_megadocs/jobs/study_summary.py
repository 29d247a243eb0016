"""What a study found: the measured real-only curve, each method × G placed on it by
interpolation with a 95% bootstrap interval (:mod:`hf_megadocs.analysis.efficiency`), the
long-context loss by position against real-only, the figures and the Markdown answer."""

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
        return _seed_std(self.losses)


def _seed_std(losses: Sequence[float]) -> float:
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


def _sizes(config: StudyConfig, planned: Sequence[PlannedRun], done: dict[str, Any]):
    """(multiple, SizeRuns) of every size with a seed that finished all its settings."""
    sizes = []
    for multiple in sorted(config.law_multiples):
        law = [p for p in planned if p.kind == "law" and p.multiple == multiple and p.name in done]
        selection: dict[str, dict[int, float]] = {}
        reported: dict[str, dict[int, float]] = {}
        tokens = []
        for p in law:
            run = done[p.name]
            chosen_by = run.summary.get("selection_loss") if run.summary else None
            if not isinstance(chosen_by, (int, float)) or not math.isfinite(chosen_by):
                continue
            selection.setdefault(p.setting, {})[p.seed] = float(chosen_by)
            reported.setdefault(p.setting, {})[p.seed] = run.iid_loss
            tokens.append(run.real_tokens)
        settings = {p.setting for p in planned if p.kind == "law" and p.multiple == multiple}
        size = SizeRuns(real_tokens=statistics.fmean(tokens) if tokens else 0.0,
                        selection=selection, reported=reported)  # fmt: skip
        if set(selection) == settings and size.complete_seeds():
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
    sized = _sizes(config, planned, done)
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
            matched = [done[p.name] for p in matched_runs(config, point) if p.name in done]
            long = [r.long_context_loss for r in runs if r.long_context_loss is not None]
            results.append(MethodResult(
                method=method, num_generations=g, point=point, search=search,
                losses=[r.iid_loss for r in runs],
                long_context_loss=statistics.fmean(long) if long else math.nan,
                long_by_position=_mean_buckets(runs),
                train_tokens=int(statistics.fmean(r.summary.get("tokens", 0) for r in runs)),
                real_tokens=runs[0].real_tokens, estimate=placed,
                matched=matched_runs(config, point)[0].name.rsplit("_s", 1)[0],
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
            plot_measured_curve([(p.real_tokens, p.loss, _seed_std(p.losses)) for p in study.points],
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


def finding(study: StudyResult) -> str:
    """The study's answer in one sentence."""
    if not study.results or len(study.points) < 2:
        return "No answer yet: the real-only curve or the methods' runs are not finished."
    d0 = study.points[0].real_tokens
    parts = [f"{r.method} G={r.num_generations} {r.estimate.describe()}"
             for r in study.results if r.estimate is not None]  # fmt: skip
    gains = [r for r in study.results if r.estimate is not None and r.estimate.low > 1]
    verdict = (
        "; the interval excludes 1× (a measured gain) for "
        + ", ".join(f"{r.method} G={r.num_generations}" for r in gains)
        if gains
        else "; no interval excludes 1×, so no method is shown to beat real data here"
    )
    return (
        f"Trained on D0 = {d0:,.0f} real tokens, each method was worth this much real data "
        f"(95% intervals over seeds): {'; '.join(parts)}{verdict}."
    )


def render_study(study: StudyResult, figures: Sequence[tuple[str, Path]] = ()) -> str:
    """The study's answer as Markdown."""
    lines = ["# Data-efficiency study", "", f"**{finding(study)}**", ""]
    d0 = study.points[0].real_tokens if study.points else math.nan
    top = max(study.multiples, default=math.nan)
    lines += [
        "How to read it: every method trained on the same base subset D0 of the real "
        "documents. Real-only runs measured the loss at nested sizes from D0 to "
        f"{top:g}·D0, each choosing its epochs and weight decay on selection documents "
        "disjoint from the reported ones. A method's multiplier is the real data at which "
        "the measured real-only curve (made non-increasing) reaches the method's reported "
        "i.i.d. loss, interpolated linearly in log D between the two bracketing sizes, "
        "divided by D0; a loss outside the measured range is reported as < 1× or as "
        "beyond the measured sizes, never as a number. The interval is a 95% bootstrap "
        "over training seeds (seeds resampled with replacement at every size and for the "
        "method, the choice of settings redone in each resample, resampled means expanded "
        "by √(n/(n−1))·t/z for n seeds), 2,000 resamples. Generator randomness is not in "
        "the interval: the generations are pinned (content hashes below) and reused.",
        "",
        "| size | real tokens D | chosen setting (per seed) | i.i.d. loss | A/D^α+E fit |",
        "|---:|---:|---|---:|---:|",
    ]
    predicted = list(study.fit.predict([p.real_tokens for p in study.points])) if study.fit else []
    for i, (multiple, point) in enumerate(zip(study.multiples, study.points)):
        law = f"{predicted[i]:.4f}" if predicted else "—"
        lines.append(
            f"| {multiple:g}·D0 ({point.real_tokens / d0:.2f}×) | {point.real_tokens:,.0f} | "
            f"{point.setting} "
            f"({', '.join(point.best_by_seed)}) | {point.loss:.4f} ± {_seed_std(point.losses):.4f} "
            f"| {law} |"
        )
    lines += [""]
    if study.grid_edges:
        lines += [
            "**Chosen at the largest epochs of the grid, so the optimum may lie beyond it: "
            + "; ".join(study.grid_edges) + ".** An under-tuned real-only curve inflates the "
            "multipliers, an under-tuned method deflates them; extend the grid "
            "(`real_epochs`, `mixed_epochs`) to be sure.",
            "",
        ]  # fmt: skip
    if study.fit is not None:
        lines.append(f"Smoother (not used for the multipliers): {study.fit.describe()}; "
                     f"{study.lack.describe() if study.lack else ''}.")  # fmt: skip
        if study.lack is not None and study.lack.rejected:
            lines.append("**Warning: the A/D^α + E law does not fit these points; a multiplier "
                         "read off it would be wrong. The interpolation above does not use it.**")  # fmt: skip
    else:
        lines.append(f"No A/D^α + E smoother ({study.fit_error}).")
    lines += [
        "",
        "| method | G | chosen m, E | seeds | train tokens | i.i.d. loss | long-context loss | "
        "multiplier [95% interval] | Δ vs compute-matched real-only on D0 |",
        "|---|---:|---|---:|---:|---:|---:|---|---|",
    ]
    for r in study.results:
        multiplier = r.estimate.describe() if r.estimate is not None else "— (curve unfinished)"
        delta = (f"{r.loss - r.matched_loss:+.4f} vs `{r.matched}`"
                 if math.isfinite(r.matched_loss) else "—")  # fmt: skip
        long = f"{r.long_context_loss:.4f}" if math.isfinite(r.long_context_loss) else "—"
        lines.append(
            f"| {r.method} | {r.num_generations} | {r.point[0]:g}, {r.point[1]:g} | "
            f"{len(r.losses)} | {r.train_tokens:,} | {r.loss:.4f} ± {r.loss_std:.4f} | {long} | "
            f"{multiplier} | {delta} |"
        )
    if study.results:
        lines += [
            "",
            "Search at the first seed (selection loss per m, E; the lowest is chosen):",
            "",
        ]
        for r in study.results:
            cells = ", ".join(f"{k}: {v:.4f}" for k, v in r.search.items())
            lines.append(f"- {r.method} G={r.num_generations}: {cells}")
    lines += _long_context_lines(study)
    tokenizers = sorted({r.tokenizer for r in study.results})
    lines += [""] + [f"Tokenizer: {name}." for name in tokenizers]
    if study.corpora:
        pins = ", ".join(f"{c['config']} `{c.get('content_hash', '?')}`" for c in study.corpora)
        lines += ["", f"Generations used (content hash of each corpus's train split): {pins}."]
    lines += ["", f"D0 = {d0:,.0f} real tokens. Train tokens are every token a run trained on "
              "(its compute). Each Δ is against real-only on D0 trained for as many steps."]  # fmt: skip
    for title, path in figures:
        lines += ["", f"![{title}](figures/{path.name})"]
    if study.missing:
        lines += ["", f"Not finished yet ({len(study.missing)}): " + ", ".join(study.missing) + "."]
    return "\n".join(lines) + "\n"


def _long_context_lines(study: StudyResult) -> list[str]:
    """Long-context loss by position: real-only on D0 and each method's gap per bucket."""
    if not study.real_long:
        return []
    labels = list(study.real_long)
    uniform = math.log(study.vocab_size) if study.vocab_size > 1 else math.nan
    real_mean = statistics.fmean(study.real_long.values())
    lines = [
        "",
        "Long-context loss by token position (long documents at the full training context; "
        "gaps are method − real-only on D0, negative is better):",
        "",
        "| | " + " | ".join(labels) + " |",
        "|---|" + "---:|" * len(labels),
        "| real-only on D0 | " + " | ".join(f"{study.real_long[k]:.3f}" for k in labels) + " |",
    ]
    for r in study.results:
        cells = [
            f"{r.long_by_position[k] - study.real_long[k]:+.3f}" if k in r.long_by_position else "—"
            for k in labels
        ]
        lines.append(f"| {r.method} G={r.num_generations} | " + " | ".join(cells) + " |")
    if math.isfinite(uniform) and real_mean >= uniform:
        lines += ["", f"**The long-context metric is uninformative at this scale:** real-only "
                  f"scores {real_mean:.3f}, no better than a uniform guess over the "
                  f"{study.vocab_size:,}-token vocabulary (ln V = {uniform:.3f})."]  # fmt: skip
    elif math.isfinite(uniform):
        lines += ["", f"Real-only scores {real_mean:.3f} on these documents, below a uniform "
                  f"guess (ln V = {uniform:.3f}), so the metric is informative."]  # fmt: skip
    return lines


__all__ = ["CORPORA_FILE", "MethodResult", "StudyResult", "finding", "render_study",
           "selection_losses", "summarise", "write_figures"]  # fmt: skip
