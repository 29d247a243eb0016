"""``rounds.md``: model-aware rounds against the repetition-only control arm.

Per round and cumulatively: the rounds' reported loss, the same-data repetition arm's, the
repetition arms at every size, and the effective-token multiplier with its interval
(:func:`hf_megadocs.tuning.control_arm.compare`), then what was measured and what was not,
and ``rounds.png`` (loss against step for both arms, round starts marked).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from hf_megadocs.tuning.control_arm import EPOCH_SLACK, Comparison, ControlConfig, compare

logger = logging.getLogger(__name__)

REPORT, FIGURE = "rounds.md", "rounds.png"


def _loss(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) and math.isfinite(value) else "—"


def _multiplier(comparison: Comparison | None) -> str:
    if comparison is None:
        return "— (control arm not run)"
    if comparison.estimate is None:
        return f"— ({comparison.note})"
    return comparison.estimate.describe()


def _per_round(manifests: list[dict[str, Any]], comparisons: list[Comparison | None]) -> list[str]:
    header = (
        "| round | from step | steps | rounds | repetition, same data (1×) | rounds − repetition "
        "| effective-token multiplier |"
    )
    lines = [header, "|---:|---:|---:|---:|---:|---:|---|"]
    for manifest, c in zip(manifests, comparisons, strict=True):
        start = manifest["checkpoint_step"]
        steps = manifest["training"]["steps"] - start
        rounds = c.rounds_loss if c else manifest["training"].get("iid_loss")
        repetition = c.repetition_loss if c else math.nan
        delta = rounds - repetition if c else math.nan
        lines.append(
            f"| {manifest['round']} | {start} | {steps} | {_loss(rounds)} | {_loss(repetition)} "
            f"| {'—' if math.isnan(delta) else f'{delta:+.4f}'} | {_multiplier(c)} |"
        )
    return lines


def _recorded_start(manifests: list[dict[str, Any]], config: ControlConfig) -> str:
    """How the last round's arms started, as recorded (the config's when none ran)."""
    return (manifests[-1].get("control") or {}).get("start", config.start)


def _mode(start: str) -> str:
    if start == "chain":
        return (
            "Each control arm continued its own previous round (`control.start chain`): a "
            "row compares every round so far with repetition over the same steps."
        )
    return (
        "Each round's control arms started from that round's checkpoint (`control.start "
        "round`): a row is that round's own effect."
    )


def _by_size(manifests: list[dict[str, Any]], comparisons: list[Comparison | None]) -> list[str]:
    lines = [
        "| round | arm | unique organic tokens | loss (mean over seeds) | seeds | warmup steps |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for manifest, c in zip(manifests, comparisons, strict=True):
        if c is None:
            continue
        training = manifest["training"]
        warm = {a["size"]: a.get("warmup_steps") for a in manifest["control"]["arms"].values()
                if a["kind"] == "repeat" and a["seed"] == 0}  # fmt: skip
        tokens = training.get("real_tokens") or c.real_tokens.get(1.0, math.nan)
        lines.append(
            f"| {c.round} | rounds (real + union) | {tokens:,.0f} | {_loss(c.rounds_loss)} "
            f"| {len(c.rounds_losses)} | {training.get('warmup_steps', '—')} |"
        )
        for size, losses in c.repetition.items():
            lines.append(
                f"| {c.round} | repetition {size:g}× | {c.real_tokens[size]:,.0f} "
                f"| {_loss(sum(losses) / len(losses))} | {len(losses)} | {warm.get(size, '—')} |"
            )
    return lines


def _cumulative(
    manifests: list[dict[str, Any]], comparisons: list[Comparison | None], config: ControlConfig
) -> str:
    last, c = manifests[-1], comparisons[-1]
    if c is None:
        return "Not measured: the last round ran no control arm."
    if len(manifests) > 1 and _recorded_start(manifests, config) != "chain":
        return (
            "Not measured: every round's control arm started from that round's own checkpoint "
            "(`control.start round`), so each row above is that round's own effect. To compare "
            "the whole sequence of rounds with repetition over the same steps, run with "
            "`--control.start chain` (each arm then continues its own previous round)."
        )
    return (
        f"From step {manifests[0]['checkpoint_step']} to step {last['training']['steps']} "
        f"({len(manifests)} round(s)): rounds {_loss(c.rounds_loss)}, repetition on the same "
        f"data {_loss(c.repetition_loss)}; effective-token multiplier **{_multiplier(c)}**."
    )


def _measured(manifests: list[dict[str, Any]]) -> list[str]:
    controls = [m["control"] for m in manifests if m.get("control")]
    if not controls:
        return ["- No control arm ran (`--control.enabled false`): there is nothing to compare."]
    control = controls[-1]
    dropped = sorted({s for c in controls for s in c.get("dropped_sizes", [])})
    origin = (
        "same checkpoint as the round"
        if control["start"] == "round"
        else "first round's checkpoint and then from each arm's own previous round"
    )
    sizes = ", ".join(f"{s:g}×" for s in control["sizes"])
    measured = (
        "- Measured: for each round, beside the rounds' continuation (real data plus the union "
        "of round corpora), continuations on organic data only, repeated, from the "
        f"{origin}, for as many optimizer steps as the rounds (the table's steps), at {sizes} the organic "
        f"documents the run trained on (nested document subsets; {control['seeds']} data-order "
        "seed(s) each, the rounds' extra seeds being replicates on the same union)."
    )
    reported = (
        "- Losses are the reported i.i.d. validation loss, on the same documents for every arm; "
        "no arm and no trigger chose anything by it (the plateau trigger reads the held-out "
        "`selection_loss`)."
    )
    multiplier = (
        "- The multiplier is the unique organic tokens at which the measured repetition curve "
        "(straight in log tokens between sizes, made non-increasing) reaches the rounds' loss, "
        "over the rounds' own organic tokens: the data a repetition-only *continuation from this "
        "checkpoint* would need, not a run from scratch. A rounds loss below the largest arm is "
        "reported as beyond the measured sizes, never extrapolated."
    )
    missing = (
        "- Not measured: repetition beyond the largest size; the randomness of pre-training "
        "before the checkpoint and of generation (the interval covers data-order seeds only; "
        "with one seed there is none); downstream tasks."
    )
    warmup = (
        f"- Each repetition arm plans {EPOCH_SLACK:g}× the rounds' steps and stops at their "
        "count, its warmup fraction scaled to match: warmup steps can differ by rounding "
        "(table above)."
    )
    lines = [measured, reported, multiplier, missing, warmup]
    if dropped:
        lines.append(
            f"- Sizes dropped: {', '.join(f'{s:g}×' for s in dropped)}: the run trained on "
            f"data.real_fraction={control['real_fraction']:g} of its corpus, so no more organic "
            "data exists; pre-train on a smaller share to measure them."
        )
    return lines


def _eval_series(run_dir: Path) -> tuple[list[float], list[float]]:
    from hf_megadocs.jsonl import read_records

    path = run_dir / "metrics.jsonl"
    records = read_records(path)[0] if path.is_file() else []
    points = sorted(
        (int(r["step"]), float(r["iid_loss"])) for r in records
        if r.get("kind") == "eval" and isinstance(r.get("iid_loss"), int | float)
    )  # fmt: skip
    return [p[0] for p in points], [p[1] for p in points]


def _start_point(manifest: dict[str, Any]) -> tuple[list[float], list[float]]:
    """θ's own evaluation at its step, when its run evaluated there."""
    run_dir = Path(manifest["checkpoint"]).parent.parent
    steps, losses = _eval_series(run_dir)
    at = [(s, v) for s, v in zip(steps, losses) if s == manifest["checkpoint_step"]]
    return ([at[0][0]], [at[0][1]]) if at else ([], [])


def draw_figure(manifests: list[dict[str, Any]], path: Path) -> Path:
    """``rounds.png``: the rounds' chain and each round's repetition arms (seed 0)."""
    from hf_megadocs.analysis.plots import plot_loss_by_step

    rounds_steps, rounds_losses = _start_point(manifests[0])
    arms: dict[str, tuple[list[float], list[float]]] = {}
    for manifest in manifests:
        steps, losses = _eval_series(Path(manifest["training"]["output_dir"]))
        rounds_steps += steps
        rounds_losses += losses
        start = _start_point(manifest)
        for arm in (manifest.get("control") or {}).get("arms", {}).values():
            if arm["kind"] != "repeat" or arm["seed"] != 0:
                continue
            label = f"repetition {arm['size']:g}× organic"
            line = arms.setdefault(label, ([], []))
            if manifest["control"]["start"] == "round" or not line[0]:
                if line[0]:  # a new branch from θ_k: break the line (NaN) before it
                    line[0].append(line[0][-1])
                    line[1].append(math.nan)
                line[0].extend(start[0])
                line[1].extend(start[1])
            steps, losses = _eval_series(Path(arm["output_dir"]))
            line[0].extend(steps)
            line[1].extend(losses)
    series = [("rounds (real + union of round corpora)", rounds_steps, rounds_losses, True)]
    series += [(label, s, v, "1×" in label) for label, (s, v) in sorted(arms.items())]
    return plot_loss_by_step(series, [m["checkpoint_step"] for m in manifests], path)


def write_rounds_report(
    output_dir: Path, manifests: list[dict[str, Any]], config: ControlConfig | None = None
) -> Path:
    """``output_dir/rounds.md`` (and ``rounds.png``) for ``manifests``; returns its path."""
    from hf_megadocs.extras import MissingExtraError

    config = config or ControlConfig()
    comparisons = [compare(m, config) for m in manifests]
    figure = ""
    try:
        draw_figure(manifests, output_dir / FIGURE)
        figure = f"![loss against step, rounds against repetition]({FIGURE})"
    except MissingExtraError as error:
        figure = f"(No figure: {error})"
        logger.warning("rounds report without its figure: %s", error)
    text = "\n".join([
        "# Model-aware rounds against repetition", "",
        (f"{len(manifests)} round(s) from `{manifests[0]['checkpoint']}`. Every loss is the "
         "reported i.i.d. validation loss (nats/token) at the end of a continuation; lower is "
         "better."), "",
        "## Per round", "", *_per_round(manifests, comparisons), "", _mode(_recorded_start(manifests, config)), "",
        "## Every arm", "", *_by_size(manifests, comparisons), "",
        "## Cumulative", "", _cumulative(manifests, comparisons, config), "",
        "## What was measured, and what was not", "", *_measured(manifests), "",
        figure, "",
    ])  # fmt: skip
    path = output_dir / REPORT
    path.write_text(text)
    logger.info("wrote %s", path)
    return path


__all__ = ["FIGURE", "REPORT", "draw_figure", "write_rounds_report"]
