"""``hf-megadocs report RUN_DIR... [--out DIR]``: the data-efficiency report of training runs.

Reads each run's ``config.json``, ``metrics.jsonl`` and ``summary.json``; writes
``report.md`` and PNG figures into the output folder and prints the results table
(method, G, real tokens, synthetic tokens, i.i.d. loss, long-context loss, Δ vs
real-only and, when a real-only data law can be fitted, data efficiency).
"""

from __future__ import annotations

import json
import logging
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hf_megadocs.analysis import plots
from hf_megadocs.analysis.fit import (
    MIN_POINTS,
    InsufficientPointsError,
    ScalingLawFit,
    data_efficiency,
    efficiency_interval,
    fit_data_scaling_law,
    fit_parameter_scaling_law,
)
from hf_megadocs.analysis.runs import REAL_METHOD, Run, RunError, load_runs

logger = logging.getLogger(__name__)

COLUMNS: tuple[str, ...] = (
    "run",
    "method",
    "G",
    "real tokens",
    "synthetic tokens",
    "i.i.d. loss",
    "long-context loss",
    "Δ vs real-only",
    "data efficiency",
)


@dataclass(kw_only=True)
class Analysis:
    """Everything the report shows, computed once from the runs."""

    runs: list[Run]
    data_fits: dict[tuple[str, int], ScalingLawFit] = field(default_factory=dict)
    """(tokenizer, num_params) → the real-only L(D) fit of that group."""
    param_fits: dict[tuple[str, str, int, int], ScalingLawFit] = field(default_factory=dict)
    """(tokenizer, method, G, real_tokens) → L(N) fit over model sizes."""
    notes: list[str] = field(default_factory=list)
    """Why a fit or a column was not computed, and other caveats."""


def _group(runs: Iterable[Run], *attributes: str) -> dict[tuple, list[Run]]:
    groups: dict[tuple, list[Run]] = {}
    for run in runs:
        groups.setdefault(tuple(getattr(run, a) for a in attributes), []).append(run)
    return groups


def analyse(runs: Sequence[Run]) -> Analysis:
    """Fit every law the runs allow; record why the others were not fitted."""
    analysis = Analysis(runs=list(runs))
    for (tokenizer, num_params), group in _group(runs, "tokenizer", "num_params").items():
        real = [run for run in group if run.method == REAL_METHOD]
        if not real:
            continue
        try:
            analysis.data_fits[(tokenizer, num_params)] = fit_data_scaling_law(real)
        except InsufficientPointsError as err:
            analysis.notes.append(
                f"Data efficiency not computed for {num_params:,}-parameter runs: {err}"
            )
    for key, group in _group(runs, "tokenizer", "method", "num_generations", "real_tokens").items():
        if len({run.num_params for run in group}) >= MIN_POINTS:
            analysis.param_fits[key] = fit_parameter_scaling_law(group)
    if len({run.tokenizer for run in runs}) > 1:
        analysis.notes.append(
            "Runs use more than one tokenizer; losses are only comparable within a tokenizer, "
            "and Δ and data efficiency are computed within each."
        )
    for run in runs:
        if not run.finished:
            analysis.notes.append(f"Run {run.name} has not finished; its last eval is used.")
        if run.skipped_lines:
            analysis.notes.append(f"Run {run.name}: {run.skipped_lines} torn metrics line skipped.")
    return analysis


def _baseline(run: Run, runs: Sequence[Run]) -> Run | None:
    """The best real-only run with the same tokenizer, model size and real tokens."""
    matches = [
        other
        for other in runs
        if other.method == REAL_METHOD
        and other.tokenizer == run.tokenizer
        and other.num_params == run.num_params
        and other.real_tokens == run.real_tokens
    ]
    return min(matches, key=lambda r: r.iid_loss) if matches else None


def _tokens(n: int) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return str(n)


def _efficiency_cell(run: Run, analysis: Analysis) -> str:
    if run.method == REAL_METHOD:
        return "—"
    fit = analysis.data_fits.get((run.tokenizer, run.num_params))
    if fit is None:
        return "—"
    value = data_efficiency(run, fit)
    if not math.isfinite(value):
        return "> fit (loss ≤ E)"
    lo, hi = efficiency_interval(run.iid_loss, run.real_tokens, fit)
    cell = f"{value:.2f}×"
    if math.isfinite(lo):
        cell += f" [{lo:.2f}, {hi:.2f}]" if math.isfinite(hi) else f" [{lo:.2f}, ∞)"
    if not min(fit.x) <= run.real_tokens * value <= max(fit.x):
        cell += " (extrapolated: outside the measured sizes)"
    return cell


def table_rows(analysis: Analysis) -> list[list[str]]:
    """One row of :data:`COLUMNS` per run: real-only first, then by method and G."""
    rows = []
    order = sorted(
        analysis.runs,
        key=lambda r: (r.method != REAL_METHOD, r.method, r.num_generations, r.real_tokens, r.name),
    )
    for run in order:
        base = _baseline(run, analysis.runs)
        delta = "—" if base is None or base is run else f"{run.iid_loss - base.iid_loss:+.4f}"
        lc = run.long_context_loss
        rows.append(
            [
                run.name,
                run.method,
                str(run.num_generations),
                _tokens(run.real_tokens),
                _tokens(run.synthetic_tokens),
                f"{run.iid_loss:.4f}",
                "—" if lc is None else f"{lc:.4f}",
                delta,
                _efficiency_cell(run, analysis),
            ]
        )
    return rows


def markdown_table(rows: Sequence[Sequence[str]], columns: Sequence[str] = COLUMNS) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


DOWNSTREAM_FILE = "downstream.json"
"""Written into a run directory by ``python -m hf_megadocs.analysis.downstream RUN_DIR``."""


def downstream_rows(runs: Sequence[Run]) -> list[list[str]]:
    """run, task, accuracy, normalised accuracy for runs with a successful ``downstream.json``."""
    rows = []
    for run in runs:
        path = run.path / DOWNSTREAM_FILE
        if not path.is_file():
            continue
        try:
            result = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            logger.warning(
                "run %s: %s is not valid JSON; leaving it out", run.name, DOWNSTREAM_FILE
            )
            continue
        if result.get("status") != "ok":
            continue
        for task, metrics in sorted(result.get("scores", {}).items()):
            cells = [metrics.get(k) for k in ("acc", "acc_norm")]
            rows.append([run.name, task, *("—" if v is None else f"{v:.4f}" for v in cells)])
    return rows


def _figures(analysis: Analysis, out_dir: Path) -> list[tuple[str, Path]]:
    figures: list[tuple[str, Path | None]] = [
        (
            "Loss against G per method",
            plots.plot_loss_vs_g(analysis.runs, out_dir / "loss_vs_g.png"),
        ),
        (
            "Long-context loss by token position",
            plots.plot_long_context_by_position(
                analysis.runs, out_dir / "long_context_by_position.png"
            ),
        ),
        (
            "Training loss per stream",
            plots.plot_training_curves(analysis.runs, out_dir / "training_curves.png"),
        ),
    ]
    for (tokenizer, num_params), fit in analysis.data_fits.items():
        group = [
            r for r in analysis.runs if r.tokenizer == tokenizer and r.num_params == num_params
        ]
        suffix = "" if len(analysis.data_fits) == 1 else f"_{num_params}"
        figures.append(
            (
                f"Real-only data scaling law ({num_params:,} parameters)",
                plots.plot_scaling_law(fit, group, out_dir / f"scaling_law{suffix}.png"),
            )
        )
    return [(title, path) for title, path in figures if path is not None]


def render_markdown(analysis: Analysis, figures: Sequence[tuple[str, Path]], out_dir: Path) -> str:
    """The text of ``report.md``."""
    parts = [
        "# hf_megadocs report",
        "",
        f"{len(analysis.runs)} runs. Losses are in nats per token on held-out real documents "
        "(i.i.d.) and on long documents (long-context). Δ is against the best real-only run "
        "with the same tokenizer, model size and real tokens (negative is better). Data "
        "efficiency is the real tokens a real-only run would need to reach the run's i.i.d. "
        "loss under the fitted law L(D) = A/D^α + E, divided by the real tokens the run used "
        "(in brackets a 68% interval from the fit's uncertainty and the run's loss noise; "
        "`benchmarks/bench_fit.py` measures its coverage). A multiplier whose equivalent "
        "tokens lie outside the real-only sizes is marked extrapolated: it is not a "
        "measurement. `hf-megadocs study` gives interpolated multipliers with 95% intervals.",
        "",
        markdown_table(table_rows(analysis)),
        "",
    ]
    if analysis.data_fits or analysis.param_fits:
        parts += ["## Fits", ""]
        for (_, num_params), fit in analysis.data_fits.items():
            parts.append(f"- Data law, {num_params:,} parameters: {fit.describe()}")
        for (_, method, g, real_tokens), fit in analysis.param_fits.items():
            parts.append(
                f"- Parameter law, {method} G={g}, {_tokens(real_tokens)} real tokens: "
                f"{fit.describe()}; asymptote E = {fit.E:.4f} ± {fit.E_err:.2g}"
            )
        parts.append("")
    downstream = downstream_rows(analysis.runs)
    if downstream:
        parts += [
            "## Downstream (lm-eval-harness)",
            "",
            markdown_table(downstream, ("run", "task", "acc", "acc_norm")),
            "",
        ]
    if analysis.notes:
        parts += ["## Notes", ""] + [f"- {note}" for note in analysis.notes] + [""]
    parts += ["## Figures", ""]
    for title, path in figures:
        parts += [f"### {title}", "", f"![{title}]({path.relative_to(out_dir).as_posix()})", ""]
    parts += ["## Runs", ""] + [f"- `{run.name}`: `{run.path}`" for run in analysis.runs] + [""]
    return "\n".join(parts)


def _write(runs: Sequence[Run], out_dir: str | Path) -> tuple[Path, Analysis]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    analysis = analyse(runs)
    figures = _figures(analysis, out)
    report = out / "report.md"
    report.write_text(render_markdown(analysis, figures, out), encoding="utf-8")
    logger.info("wrote %s (%d runs, %d figures)", report, len(runs), len(figures))
    return report, analysis


def write_report(
    run_dirs: Sequence[str | Path], out_dir: str | Path, *, allow_unfinished: bool = False
) -> Path:
    """Analyse ``run_dirs`` and write ``report.md`` plus PNGs into ``out_dir``; return the .md path."""
    return _write(load_runs(run_dirs, allow_unfinished=allow_unfinished), out_dir)[0]


@dataclass(kw_only=True)
class ReportConfig:
    """Which runs to analyse and where the report goes."""

    run_dirs: list[str]
    """Training run directories (also the leading arguments: ``report runs/*``)."""
    out: str = "report"
    """Folder for report.md and the PNG plots."""
    allow_unfinished: bool = False
    """Use the last eval of runs without summary.json."""


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``hf-megadocs report``; prints the table, returns an exit code."""
    from hf_megadocs.flags import ConfigError, parse_dataclass

    try:
        config = parse_dataclass(
            ReportConfig,
            argv,
            prog="hf-megadocs report",
            description="Data-efficiency report (Markdown + PNG) from training run directories.",
            positional="run_dirs",
        )
        runs = load_runs(config.run_dirs, allow_unfinished=config.allow_unfinished)
        path, analysis = _write(runs, config.out)
    except (ConfigError, RunError) as err:
        print(f"hf-megadocs report: {err}", file=sys.stderr)
        return 2
    print(markdown_table(table_rows(analysis)))
    for note in analysis.notes:
        print(f"note: {note}")
    print(f"\nreport written to {path}")
    return 0
