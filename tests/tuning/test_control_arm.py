"""The repetition control arm of rounds (hf_megadocs.tuning.control_arm) and rounds.md
(hf_megadocs.tuning.rounds_report), on hand-made round manifests: fast, no training."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from hf_megadocs.analysis.efficiency import SizeRuns, estimate
from hf_megadocs.tuning.control_arm import (
    Arm,
    ControlConfig,
    _changes,
    compare,
    plan_arms,
)
from hf_megadocs.tuning.rounds_report import FIGURE, REPORT, write_rounds_report

D0 = 1000.0
"""Unique organic tokens of the rounds (and of the 1× repetition arm)."""


def _arm(kind, size, seed, loss, out: Path | None = None):
    name = f"rounds_seed{seed}" if kind == "rounds" else f"repeat_x{size:g}_seed{seed}"
    return name, {
        "kind": kind, "size": size, "seed": seed, "iid_loss": loss, "real_tokens": size * D0,
        "output_dir": str((out or Path("/nonexistent")) / name), "warmup_steps": 1,
    }  # fmt: skip


def _manifest(rounds: list[float], repeat: dict[float, list[float]], *, index=1, start="round",
              out: Path | None = None, step=10, steps=20) -> dict:  # fmt: skip
    arms = dict(_arm("rounds", 1.0, j, x, out) for j, x in enumerate(rounds) if j)
    arms |= dict(
        _arm("repeat", s, j, x, out) for s, losses in repeat.items() for j, x in enumerate(losses)
    )
    return {
        "round": index, "checkpoint": str((out or Path("/nonexistent")) / f"run{index}/checkpoints/step_{step}"),
        "checkpoint_step": step,
        "training": {"iid_loss": rounds[0], "steps": step + steps, "real_tokens": D0,
                     "warmup_steps": 1, "output_dir": str((out or Path("/x")) / f"train{index}")},
        "control": {"start": start, "seeds": len(rounds), "sizes": sorted(repeat),
                    "dropped_sizes": [], "real_fraction": 0.25, "steps": steps, "arms": arms},
    }  # fmt: skip


def test_the_multiplier_is_the_data_study_estimate_on_the_repetition_curve():
    manifest = _manifest([2.7], {0.5: [3.2], 1.0: [3.0], 2.0: [2.8], 4.0: [2.6]})
    c = compare(manifest)
    # 2.7 lies halfway (in loss) between 2 and 4 × D0: halfway in log tokens → √8 ≈ 2.83×.
    assert c.estimate.placement == "inside"
    assert c.estimate.multiplier == pytest.approx(math.sqrt(8))
    assert c.rounds_loss == 2.7 and c.repetition_loss == 3.0
    # The same number as the shared estimator gives on the same curve.
    sizes = [SizeRuns(real_tokens=s * D0, selection={"x": {0: v}}, reported={"x": {0: v}})
             for s, v in ((0.5, 3.2), (1.0, 3.0), (2.0, 2.8), (4.0, 2.6))]  # fmt: skip
    shared = estimate({0: 2.7}, D0, sizes)
    assert (c.estimate.multiplier, c.estimate.max_multiplier) == (
        shared.multiplier, shared.max_multiplier,
    )  # fmt: skip
    assert "no seed spread" in c.estimate.describe()


def test_beyond_the_largest_arm_is_a_bound_never_a_number():
    beyond = compare(_manifest([2.5], {1.0: [3.0], 2.0: [2.8], 4.0: [2.6]}))
    assert beyond.estimate.placement == "above" and math.isnan(beyond.estimate.multiplier)
    assert beyond.estimate.describe().startswith("> 4× (beyond the measured sizes)")
    worse = compare(_manifest([3.1], {1.0: [3.0], 2.0: [2.8]}))
    assert worse.estimate.placement == "below"
    # A run on its whole corpus: only sizes ≤ 1×, so better than repetition is "> 1×".
    whole = compare(_manifest([2.9], {0.5: [3.2], 1.0: [3.0]}))
    assert whole.estimate.describe().startswith("> 1× (beyond") and "bounded" in whole.note
    alone = compare(_manifest([2.9], {1.0: [3.0]}))
    assert alone.estimate is None and "two sizes" in alone.note
    assert compare(_manifest([2.9], {1.0: [3.0]}) | {"control": None}) is None


def test_seeds_give_an_interval_with_the_rounds_replicates_as_the_method():
    manifest = _manifest(
        [2.70, 2.72, 2.68], {1.0: [3.0, 3.02, 2.98], 2.0: [2.8, 2.83, 2.79], 4.0: [2.6, 2.62, 2.6]}
    )
    c = compare(manifest, ControlConfig(seeds=3, resamples=500))
    assert c.rounds_losses == [2.70, 2.72, 2.68] and c.estimate.seeds == 3
    assert c.estimate.low < c.estimate.multiplier < c.estimate.high


def test_arms_drop_sizes_the_corpus_cannot_hold_and_replicate_the_rounds_per_seed():
    config = ControlConfig(sizes=[4, 0.5, 1, 2], seeds=2)
    arms, dropped = plan_arms(config, real_fraction=1.0)
    assert dropped == [2.0, 4.0]
    assert [a.name for a in arms] == [
        "rounds_seed1", "repeat_x0.5_seed0", "repeat_x0.5_seed1", "repeat_x1_seed0",
        "repeat_x1_seed1",
    ]  # fmt: skip
    arms, dropped = plan_arms(config, real_fraction=0.25)
    assert dropped == [] and {a.size for a in arms} == {0.5, 1.0, 2.0, 4.0}
    with pytest.raises(ValueError, match="contain 1.0"):
        ControlConfig(sizes=[0.5, 2])
    with pytest.raises(ValueError, match="control.start"):
        ControlConfig(start="fork")


def test_a_repetition_arm_trains_on_organic_data_only_for_the_rounds_steps():
    run_info = {"data": {"real_fraction": 0.25}, "mix": {"real_epochs": 3, "seed": 7}}
    rounds = {
        "data": {"synthetic_corpus": None, "synthetic_path": "/union"},
        "mix": {"synthetic_share": 0.5},
        "optim": {"schedule": "constant", "warmup_fraction": 0.02},
    }
    repeat = _changes(Arm(kind="repeat", size=2.0, seed=1), run_info, rounds, 0.25)
    assert repeat["data"] == {"synthetic_corpus": None, "synthetic_path": None,
                              "real_fraction": 0.5}  # fmt: skip
    # D0·E/(1 − m) rows of the rounds' plan; 2·D0 needs E/(2·0.5) passes, times the slack 2.
    assert repeat["mix"] == {"synthetic_share": 0.0, "real_epochs": 6.0, "seed": 8}
    assert repeat["optim"] == {"schedule": "constant", "warmup_fraction": 0.01}
    replicate = _changes(Arm(kind="rounds", size=1.0, seed=2), run_info, rounds, 0.25)
    assert replicate["data"]["synthetic_path"] == "/union" and replicate["mix"]["seed"] == 9
    assert "seed" not in repeat and "seed" not in replicate  # which documents: never changed


def _metrics(folder: Path, points: list[tuple[int, float]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.jsonl").write_text("".join(
        json.dumps({"kind": "eval", "step": s, "iid_loss": v}) + "\n" for s, v in points
    ))  # fmt: skip


def test_rounds_md_reports_each_round_the_cumulative_answer_and_the_figure(tmp_path):
    first = _manifest([2.7], {1.0: [3.0], 2.0: [2.8], 4.0: [2.6]}, out=tmp_path, start="chain")
    second = _manifest([2.5], {1.0: [2.9], 2.0: [2.7], 4.0: [2.6]}, index=2, out=tmp_path,
                       start="chain", step=30)  # fmt: skip
    _metrics(tmp_path / "run1", [(5, 3.5), (10, 3.2)])
    _metrics(tmp_path / "train1", [(30, 2.7)])
    _metrics(tmp_path / "train2", [(50, 2.5)])
    _metrics(tmp_path / "repeat_x1_seed0", [(30, 3.0)])
    path = write_rounds_report(tmp_path, [first, second], ControlConfig(start="chain"))
    text = path.read_text()
    assert path.name == REPORT and (tmp_path / FIGURE).stat().st_size > 0
    assert "| 1 | 10 | 20 | 2.7000 | 3.0000 | -0.3000 | 2.83× [no seed spread: 1 seed] |" in text
    assert "| 2 | 30 | 20 | 2.5000 | 2.9000 | -0.4000 | > 4× (beyond the measured sizes)" in text
    assert "From step 10 to step 50 (2 round(s))" in text
    assert "repetition 2× | 2,000 | 2.8000" in text and "Not measured:" in text
    # Branches from every round's checkpoint (as recorded) answer per round only, and say so.
    branches = [m | {"control": m["control"] | {"start": "round"}} for m in (first, second)]
    branched = write_rounds_report(tmp_path, branches, ControlConfig(start="chain")).read_text()
    assert "--control.start chain" in branched and "that round's own effect" in branched
    # A round without its control arm is reported as such, not compared.
    plain = write_rounds_report(tmp_path, [{**first, "control": None}]).read_text()
    assert "control arm not run" in plain and "No control arm ran" in plain
