"""The sweep on disk (hf_megadocs.jobs.sweep, recipes/sweep.py): command emission,
resumability, the start point, and (slow) a real sweep through recipes/train.py followed by
the report."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from hf_megadocs.jobs import sweep
from hf_megadocs.training import get_preset


def test_emit_commands_and_resume_skip_finished_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "sweep"
    argv = [
        "--presets",
        "[tiny_cpu]",
        "--out",
        str(out),
        "--emit_commands",
        "true",
        "--grid",
        "{optim.lr: [1e-3, 3e-3, 1e-2]}",
        "--drop_axes",
        "[mix.real_epochs, optim.weight_decay, mix.synthetic_share]",
        "--",
        "--max_steps",
        "3",
    ]
    assert sweep.main(argv) == 0
    lines = [l for l in capsys.readouterr().out.splitlines() if l and not l.startswith("#")]
    # tiny_cpu starts at lr 3e-3: the centre and both neighbours are needed.
    assert len(lines) == 3
    assert (
        lines[0].startswith("accelerate launch ")
        and "--preset tiny_cpu --optim.lr 0.003" in lines[0]
    )
    assert lines[0].endswith(f"--output_dir {out / 'tiny_cpu' / 'lr0.003'} --max_steps 3")

    # A scheduler finishes two runs (summary.json written as the trainer does); lr 1e-3 is best.
    for name, loss in (("lr0.003", 5.0), ("lr0.001", 4.5)):
        run = out / "tiny_cpu" / name
        run.mkdir(parents=True)
        lr = float(name[2:])
        (run / "config.json").write_text(
            json.dumps(
                {
                    "method": "stitched",
                    "num_generations": 2,
                    "optim": {"lr": lr, "weight_decay": 0.4},
                    "mix": {"real_epochs": 2, "synthetic_share": 0.5},
                }
            )
        )
        (run / "summary.json").write_text(json.dumps({"iid_loss": loss}))
    assert sweep.main(argv) == 0
    captured = capsys.readouterr()
    pending = [l for l in captured.out.splitlines() if l and not l.startswith("#")]
    assert len(pending) == 1 and "--optim.lr 0.01" in pending[0]  # finished runs are not rerun
    assert "| stitched | 2 | 2 | 0.001 | 0.4 | 0.5 | 4.5000 |" in captured.err
    assert (out / "sweep_summary.md").is_file()

    (out / "tiny_cpu" / "lr0.01").mkdir()
    (out / "tiny_cpu" / "lr0.01" / "summary.json").write_text(json.dumps({"iid_loss": 5.5}))
    assert sweep.main(argv) == 0
    assert [l for l in capsys.readouterr().out.splitlines() if l and not l.startswith("#")] == []


def test_real_only_config_does_not_search_m():
    grid, start = sweep.study_grid_and_start(
        sweep.Study(name="r", preset="tiny_cpu"),
        sweep.DEFAULT_GRID,
        {},
        ["--data.synthetic_corpus", "null", "--mix.synthetic_share", "0"],
    )
    assert "mix.synthetic_share" not in grid
    preset = get_preset("tiny_cpu")
    assert start == {
        "mix.real_epochs": preset.mix.real_epochs,
        "optim.lr": preset.optim.lr,
        "optim.weight_decay": preset.optim.weight_decay,
    }
    with pytest.raises(ValueError, match="'optim.learning_rate' is not a TrainConfig field"):
        sweep.study_grid_and_start(
            sweep.Study(name="r", preset="tiny_cpu"), {"optim.learning_rate": (1e-3, 3e-3)}, {}
        )


@pytest.mark.slow
def test_real_sweep_through_the_recipe_then_report(tmp_path, capsys, monkeypatch):
    """Two real (tiny, real-only) training runs through recipes/train.py, resumed, reported."""
    import gensim

    from hf_megadocs.analysis.report import main as report_main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    lee = Path(gensim.__file__).parent / "test" / "test_data" / "lee_background.cor"
    real = tmp_path / "real.jsonl"
    with real.open("w") as fh:
        for i, line in enumerate(lee.read_text(encoding="latin-1").splitlines()[:120]):
            fh.write(json.dumps({"id": str(i), "text": line}) + "\n")
    out = tmp_path / "sweep"
    launcher = f"{sys.executable} -m accelerate.commands.launch --cpu --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no"
    argv = [
        "--presets",
        "[tiny_cpu]",
        "--out",
        str(out),
        "--launcher",
        launcher,
        "--grid",
        "{optim.lr: [1e-3, 3e-3]}",
        "--drop_axes",
        "[mix.real_epochs, optim.weight_decay]",
        "--",
        "--data.real_path",
        str(real),
        "--data.synthetic_corpus",
        "null",
        "--mix.synthetic_share",
        "0",
        "--max_steps",
        "2",
        "--data.validation_docs",
        "8",
        "--eval.max_docs",
        "8",
        "--eval.long_context_docs",
        "2",
        "--log_with",
        "none",
        "--save_every",
        "0",
        "--data.seq_len",
        "64",
        "--mix.global_batch_size",
        "4",
        "--micro_batch_size",
        "4",
        "--eval.position_bucket",
        "16",
    ]
    assert sweep.main(argv) == 0
    runs = sorted(p.parent for p in (out / "tiny_cpu").glob("*/summary.json"))
    assert [p.name for p in runs] == ["lr0.001", "lr0.003"]
    assert "| real | 0 |" in capsys.readouterr().out
    mtimes = [(p / "summary.json").stat().st_mtime for p in runs]
    assert sweep.main(argv) == 0  # resumed: nothing is retrained
    assert [(p / "summary.json").stat().st_mtime for p in runs] == mtimes

    assert report_main([str(p) for p in runs] + ["--out", str(tmp_path / "report")]) == 0
    text = (tmp_path / "report" / "report.md").read_text()
    assert "| lr0.001 | real | 0 |" in text and "Data efficiency not computed" in text
    # The report's losses are the runs' own, to the digit it prints.
    for run in runs:
        loss = json.loads((run / "summary.json").read_text())["iid_loss"]
        assert f"| {run.name} | real | 0 |" in text and f"{loss:.4f}" in text
