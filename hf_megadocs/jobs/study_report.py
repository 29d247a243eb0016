"""The Markdown answer of a study (``study.md``): one sentence, how to read it, the measured
curve, each method's multiplier with its 95% interval, the search, long-context loss by
position against real-only, the pinned generations and the figures."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from pathlib import Path

from hf_megadocs.jobs.study_summary import StudyResult, seed_std


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
            f"({', '.join(point.best_by_seed)}) | {point.loss:.4f} ± {seed_std(point.losses):.4f} "
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


__all__ = ["finding", "render_study"]
