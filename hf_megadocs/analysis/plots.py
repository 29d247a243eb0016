"""Report figures (matplotlib, Agg backend): each function writes one PNG and returns its path.

- :func:`plot_loss_vs_g` — loss against G per method, real-only as a reference line (the
  shape of the megadocs paper's main figure); a second panel for long-context loss.
- :func:`plot_long_context_by_position` — long-context loss per token-position bucket.
- :func:`plot_training_curves` — training loss of the real and synthetic streams.
- :func:`plot_scaling_law` — the fitted L(D) with the real-only points, and every other
  run placed at its equivalent real tokens.
- :func:`plot_loss_vs_g_with_seeds` — a study's mean loss vs G per method, seed error bars.
- :func:`plot_loss_by_step` — loss against optimizer step per arm, with marked boundaries
  (model-aware rounds against repetition).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from hf_megadocs.analysis.runs import REAL_METHOD, Run
from hf_megadocs.extras import require

if TYPE_CHECKING:
    from hf_megadocs.analysis.fit import ScalingLawFit

logger = logging.getLogger(__name__)

DPI = 120


def _pyplot():
    matplotlib = require("matplotlib", "analysis", "Report figures")
    matplotlib.use("Agg", force=True)
    return require("matplotlib.pyplot", "analysis", "Report figures")


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    _pyplot().close(fig)
    logger.info("wrote %s", path)
    return path


def _legend(ax, entries: int) -> None:
    """A legend inside the axes for a few entries, to the right of it for many."""
    if entries > 6:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        ax.legend(fontsize=8)


def legend_names(runs: Sequence[Run]) -> dict[str, str]:
    """run name → legend text: the run's label, plus its directory name when labels repeat."""
    counts: dict[str, int] = {}
    for run in runs:
        counts[run.label] = counts.get(run.label, 0) + 1
    return {
        run.name: run.label if counts[run.label] == 1 else f"{run.label} ({run.name})"
        for run in runs
    }


def _common_real_tokens(runs: Sequence[Run]) -> int | None:
    """The real-token count shared by most synthetic runs (the comparison's fixed D)."""
    counts: dict[int, int] = {}
    for run in runs:
        if run.method != REAL_METHOD:
            counts[run.real_tokens] = counts.get(run.real_tokens, 0) + 1
    return max(counts, key=lambda d: (counts[d], d)) if counts else None


def _best_by_method_g(runs: Sequence[Run], metric: str) -> dict[str, dict[int, float]]:
    """method → G → lowest value of ``metric`` among runs with that (method, G)."""
    table: dict[str, dict[int, float]] = {}
    for run in runs:
        value = getattr(run, metric)
        if value is None:
            continue
        per_g = table.setdefault(run.method, {})
        per_g[run.num_generations] = min(value, per_g.get(run.num_generations, math.inf))
    return table


def plot_loss_vs_g(runs: Sequence[Run], path: str | Path) -> Path:
    """Loss vs G (log2 axis), one line per synthetic method, real-only dashed.

    All points share one real-data size D (the one most synthetic runs use), so the
    real-only line is the baseline at that D; several runs with the same (method, G),
    e.g. from a sweep, contribute their best.
    """
    plt = _pyplot()
    d = _common_real_tokens(runs)
    if d is not None:
        skipped = [run.name for run in runs if run.real_tokens != d]
        if skipped:
            logger.info(
                "loss vs G at D=%d real tokens; leaving out runs at other D: %s", d, skipped
            )
        runs = [run for run in runs if run.real_tokens == d]
    metrics = [("iid_loss", "i.i.d. loss (held-out real docs)")]
    if any(run.long_context_loss is not None for run in runs):
        metrics.append(("long_context_loss", "long-context loss"))
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 4.0), squeeze=False)
    for ax, (metric, title) in zip(axes[0], metrics):
        table = _best_by_method_g(runs, metric)
        all_g = sorted(
            {g for method, per_g in table.items() if method != REAL_METHOD for g in per_g}
        )
        for method in sorted(m for m in table if m != REAL_METHOD):
            per_g = table[method]
            gs = sorted(per_g)
            ax.plot(gs, [per_g[g] for g in gs], marker="o", label=method)
        if REAL_METHOD in table:
            baseline = min(table[REAL_METHOD].values())
            ax.axhline(baseline, color="black", linestyle="--", linewidth=1, label="real only")
        if all_g:
            ax.set_xscale("log", base=2)
            ax.set_xticks(all_g, [str(g) for g in all_g])
        ax.set_xlabel("generations per document G")
        ax.set_ylabel("loss (nats/token)")
        ax.set_title(title if d is None else f"{title}, D = {d:,} real tokens", fontsize=10)
        ax.grid(True, alpha=0.3)
        _legend(ax, len(table))
    return _save(fig, path)


def plot_long_context_by_position(runs: Sequence[Run], path: str | Path) -> Path | None:
    """Long-context loss per token-position bucket, one line per run; None if no run has it."""
    with_buckets = [run for run in runs if run.long_context_by_position]
    if not with_buckets:
        logger.info("no run logged long_context_loss_by_position; skipping %s", path)
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    names = legend_names(with_buckets)
    for run in with_buckets:
        # Buckets are drawn at their centre positions, so runs with different bucket widths
        # or context lengths share one position axis.
        centres, losses = [], []
        for label, loss in run.long_context_by_position.items():
            bounds = _bucket_bounds(label)
            if bounds is not None:
                centres.append(sum(bounds) / 2)
                losses.append(loss)
        ax.plot(centres, losses, marker="o", label=names[run.name])
    ax.set_xlabel("token position in document")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title("long-context loss by position")
    ax.grid(True, alpha=0.3)
    _legend(ax, len(with_buckets))
    return _save(fig, path)


def _bucket_bounds(label: str) -> tuple[float, float] | None:
    """``"512-1024"`` → (512, 1024); None for a label that is not a numeric range."""
    lo, sep, hi = label.partition("-")
    try:
        return (float(lo), float(hi)) if sep else None
    except ValueError:
        return None


STREAMS: tuple[tuple[str, str], ...] = (
    ("loss_real", "real stream"),
    ("loss_synthetic", "synthetic stream"),
)


def plot_training_curves(runs: Sequence[Run], path: str | Path) -> Path | None:
    """Training loss against tokens seen, one panel per stream, one line per run."""
    streams = [(key, title) for key, title in STREAMS if any(_series(run, key)[0] for run in runs)]
    if not streams:
        logger.info("no run has per-stream training losses; skipping %s", path)
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(streams), figsize=(5.2 * len(streams), 4.0), squeeze=False)
    names = legend_names(runs)
    for ax, (key, title) in zip(axes[0], streams):
        drawn = 0
        for run in runs:
            xs, ys = _series(run, key)
            if xs:
                ax.plot(xs, ys, linewidth=1.2, label=names[run.name])
                drawn += 1
        ax.set_xlabel("tokens seen")
        ax.set_ylabel("training loss")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        _legend(ax, drawn)
    return _save(fig, path)


def _series(run: Run, key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for record in run.train_records:
        value = record.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            xs.append(float(record.get("tokens", record.get("step", len(xs)))))
            ys.append(float(value))
    return xs, ys


def plot_scaling_law(fit: ScalingLawFit, runs: Sequence[Run], path: str | Path) -> Path:
    """The fitted L(D) with its points; other runs drawn at (equivalent D, loss).

    Each non-real run gets an arrow from the real tokens it used to its equivalent real
    tokens: the arrow's length on the log axis is the data-efficiency multiplier.
    """
    import numpy as np

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    others = [run for run in runs if run.method != REAL_METHOD]
    eq = {run.name: fit.inverse(run.iid_loss) for run in others}
    finite_eq = [v for v in eq.values() if math.isfinite(v)]
    lo = min(list(fit.x) + [run.real_tokens for run in others]) / 1.5
    hi = max(list(fit.x) + finite_eq) * 1.5
    grid = np.geomspace(lo, hi, 200)
    ax.plot(
        grid,
        fit.predict(grid),
        color="black",
        linewidth=1.2,
        label=f"fit: α={fit.alpha:.3f}, E={fit.E:.3f}",
    )
    ax.axhline(fit.E, color="gray", linestyle=":", linewidth=1, label="E (asymptote)")
    ax.scatter(fit.x, fit.loss, color="black", zorder=3, label="real-only runs")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    names = legend_names(others)
    for i, run in enumerate(others):
        color = colors[i % len(colors)]
        target = eq[run.name]
        if math.isfinite(target):
            ax.annotate(
                "",
                xy=(target, run.iid_loss),
                xytext=(run.real_tokens, run.iid_loss),
                arrowprops={"arrowstyle": "->", "color": color, "linewidth": 1},
            )
            ax.scatter(
                [target],
                [run.iid_loss],
                color=color,
                marker="D",
                zorder=4,
                label=f"{names[run.name]}: {target / run.real_tokens:.2f}×",
            )
        else:
            ax.scatter(
                [run.real_tokens],
                [run.iid_loss],
                color=color,
                marker="x",
                zorder=4,
                label=f"{names[run.name]}: below E",
            )
    _loss_vs_d_axes(ax, "real-only data scaling law", len(others) + 3)
    return _save(fig, path)


def _loss_vs_d_axes(ax, title: str, entries: int) -> None:
    """Log-D x axis, loss y axis, grid and legend of the two loss-vs-D figures."""
    ax.set_xscale("log")
    ax.set_xlabel("unique real training tokens D")
    ax.set_ylabel("i.i.d. loss (nats/token)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.25)
    _legend(ax, entries)


def plot_loss_vs_g_with_seeds(
    points: dict[str, list[tuple[int, float, float]]],
    path: str | Path,
    *,
    baseline: tuple[str, float] | None = None,
) -> Path:
    """Mean i.i.d. loss vs G per method with ± one seed standard deviation as error bars
    (the shape of the megadocs paper's Figures 2 and 5); ``baseline`` is (label, loss)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 4.0))
    all_g = sorted({g for series in points.values() for g, _, _ in series})
    for method in sorted(points):
        series = sorted(points[method])
        ax.errorbar(
            [g for g, _, _ in series],
            [mean for _, mean, _ in series],
            yerr=[std for _, _, std in series],
            marker="o",
            capsize=3,
            label=method,
        )
    if baseline is not None:
        ax.axhline(baseline[1], color="black", linestyle="--", linewidth=1, label=baseline[0])
    if all_g:
        ax.set_xscale("log", base=2)
        ax.set_xticks(all_g, [str(g) for g in all_g])
    ax.set_xlabel("generations per document G")
    ax.set_ylabel("i.i.d. loss (nats/token), mean ± std over seeds")
    ax.grid(True, alpha=0.3)
    _legend(ax, len(points) + 1)
    return _save(fig, path)


def plot_measured_curve(
    points: Sequence[tuple[float, float, float]],
    placed: Sequence[tuple[str, float, float, float, float]],
    path: str | Path,
    *,
    law: ScalingLawFit | None = None,
) -> Path:
    """The real-only curve as measured and each method placed on it.

    ``points``: (D, mean loss, seed std) per size, joined by the interpolation the
    multipliers use (straight in log D). ``placed``: (label, method loss, equivalent D or
    nan, interval low D, interval high D) per method, drawn at its equivalent D with the
    95% interval as a horizontal bar (an end outside the sizes runs to the axis edge).
    ``law``: the A/D^α + E fit, dashed, as a smoother only.
    """
    import numpy as np

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.8, 4.6))
    d = [p[0] for p in points]
    ax.errorbar(d, [p[1] for p in points], yerr=[p[2] for p in points], color="black",
                marker="o", capsize=3, zorder=3, label="real-only, measured (± seed std)")  # fmt: skip
    if law is not None:
        grid = np.geomspace(min(d), max(d), 100)
        ax.plot(grid, law.predict(grid), color="gray", linestyle="--", linewidth=1,
                label=f"A/D^α + E fit (α={law.alpha:.3f}, E={law.E:.2f})")  # fmt: skip
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, loss, eq, low, high) in enumerate(placed):
        color = colors[i % len(colors)]
        low = min(max(low, min(d)), max(d)) if math.isfinite(low) else min(d)
        high = min(max(high, min(d)), max(d)) if math.isfinite(high) else max(d)
        ax.hlines(loss, low, high, color=color, linewidth=2, alpha=0.5)
        x = eq if math.isfinite(eq) else (min(d) if loss > points[0][1] else max(d))
        marker = "D" if math.isfinite(eq) else ("<" if loss > points[0][1] else ">")
        ax.scatter([x], [loss], color=color, marker=marker, zorder=4, label=label)
    _loss_vs_d_axes(ax, "methods placed on the measured real-only curve", len(placed) + 2)
    return _save(fig, path)


def plot_loss_by_step(
    series: Sequence[tuple[str, Sequence[float], Sequence[float], bool]],
    boundaries: Sequence[float],
    path: str | Path,
    *,
    ylabel: str = "i.i.d. loss (nats/token)",
) -> Path:
    """Loss against optimizer step: ``series`` is (label, steps, losses, emphasised) per
    line (faint when not emphasised; a one-point series is a marker), ``boundaries`` the
    steps drawn as dotted vertical lines (where each round starts)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.8, 4.4))
    for step in boundaries:
        ax.axvline(step, color="gray", linestyle=":", linewidth=1)
    for label, steps, losses, strong in series:
        ax.plot(list(steps), list(losses), marker="o", markersize=3 if strong else 2,
                linewidth=1.6 if strong else 0.9, alpha=1.0 if strong else 0.55, label=label)  # fmt: skip
    ax.set_xlabel("optimizer step (dotted: a round starts)")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    _legend(ax, len(series))
    return _save(fig, path)
