"""`hf-megadocs report`: table, Markdown and figures from run directories."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hf_megadocs.analysis.report import main, write_report
from tests.analysis.rundirs import law_loss, write_law_runs, write_run
from tests.analysis.test_plots import _is_png


def test_report_with_fit(tmp_path, capsys):
    paths = write_law_runs(tmp_path / "runs")
    out = tmp_path / "report"
    assert main([str(p) for p in paths] + ["--out", str(out)]) == 0
    printed = capsys.readouterr().out
    row = next(line for line in printed.splitlines() if line.startswith("| stitched_g4 "))
    cells = [c.strip() for c in row.strip("|").split("|")]
    # run, method, G, real, synthetic, iid, long-context, Δ, efficiency
    assert cells[1:5] == ["stitched", "4", "4M", "20M"]
    assert float(cells[7]) == pytest.approx(law_loss(8e6) - law_loss(4e6), abs=1e-4)
    assert cells[8].startswith("2.00×") and "extrapolated" not in cells[8]  # 8M: measured
    text = (out / "report.md").read_text()
    assert "Data law" in text and "α = 0.3000" in text
    for png in (
        "loss_vs_g.png",
        "long_context_by_position.png",
        "training_curves.png",
        "scaling_law.png",
    ):
        assert _is_png(out / png)
        assert f"]({png})" in text


def test_a_multiplier_beyond_the_measured_sizes_is_marked_extrapolated(tmp_path, capsys):
    paths = write_law_runs(tmp_path / "runs")
    paths.append(write_run(tmp_path / "runs", "stitched_g8", method="stitched", num_generations=8,
                           real_tokens=16_000_000, iid_loss=law_loss(24e6)))  # fmt: skip
    assert main([str(p) for p in paths] + ["--out", str(tmp_path / "report")]) == 0
    row = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("| stitched_g8 "))
    assert "1.50×" in row and "(extrapolated: outside the measured sizes)" in row


def test_report_without_enough_real_runs_explains(tmp_path):
    root = tmp_path / "runs"
    paths = [
        write_run(root, "real", real_tokens=4_000_000),
        write_run(
            root,
            "simple_g2",
            method="simple",
            num_generations=2,
            real_tokens=4_000_000,
            synthetic_tokens=8_000_000,
            iid_loss=5.9,
        ),
    ]
    report = write_report(paths, tmp_path / "out")
    text = report.read_text()
    assert "Data efficiency not computed" in text and "needs at least 4 distinct D" in text
    assert "| simple_g2 | simple | 2 | 4M | 8M | 5.9000 |" in text
    assert not (tmp_path / "out" / "scaling_law.png").exists()


def test_bad_run_gives_exit_code_and_names_it(tmp_path, capsys):
    good = write_run(tmp_path, "good")
    bad = write_run(tmp_path, "unfinished_run", finished=False)
    assert main([str(good), str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "unfinished_run" in capsys.readouterr().err
    assert (
        main([str(good), str(bad), "--out", str(tmp_path / "o"), "--allow_unfinished", "true"]) == 0
    )
    assert "has not finished" in (tmp_path / "o" / "report.md").read_text()


def test_console_script_dispatch(tmp_path):
    paths = write_law_runs(tmp_path / "runs")
    exe = shutil.which("hf-megadocs", path=str(Path(sys.executable).parent))
    assert exe, "the hf-megadocs console script is not installed in this environment"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [exe, "report", *map(str, paths), "--out", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "| simple_g4 | simple | 4 |" in result.stdout


def test_parameter_law_and_downstream_sections(tmp_path):
    root = tmp_path / "runs"
    paths = [
        write_run(
            root,
            f"real_n{i}",
            num_params=int(n),
            real_tokens=4_000_000,
            iid_loss=50.0 / n**0.25 + 2.5,
        )
        for i, n in enumerate([1e6, 3e6, 1e7, 3e7, 1e8])
    ]
    (paths[0] / "downstream.json").write_text(
        json.dumps(
            {
                "status": "ok",
                "message": "evaluated 2 tasks",
                "checkpoint": "x",
                "scores": {"sciq": {"acc": 0.61, "acc_norm": 0.55}, "piqa": {"acc": 0.58}},
            }
        )
    )
    (paths[1] / "downstream.json").write_text(
        json.dumps({"status": "unavailable", "message": "no lm-eval"})
    )
    text = write_report(paths, tmp_path / "out").read_text()
    assert "Parameter law, real G=0, 4M real tokens" in text and "asymptote E = 2.5000" in text
    assert (
        "| real_n0 | piqa | 0.5800 | — |" in text and "| real_n0 | sciq | 0.6100 | 0.5500 |" in text
    )
    assert "real_n1 | " not in text.split("## Downstream")[1].split("##")[0]
