"""The main job: a small data-efficiency study on real vLLM-CPU corpora and real runs."""

from __future__ import annotations

import json
import logging

import pytest

from hf_megadocs.jobs.demo import DemoConfig, main
from hf_megadocs.jobs.study import plan_study


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="num_generations"):
        DemoConfig(num_generations=0)
    with pytest.raises(ValueError, match="methods"):
        DemoConfig(methods=("stitched", "bogus"))
    with pytest.raises(ValueError, match="synthetic_shares"):
        DemoConfig(synthetic_shares=(1.0,)).study()
    with pytest.raises(ValueError, match="real_epoch_grid"):
        DemoConfig(real_epoch_grid=(2, 0))
    assert main(["--num_generations", "0"]) == 2


def test_the_demo_is_a_study_from_d0_to_8_d0_with_every_method_at_d0(tmp_path):
    config = DemoConfig(output_dir=str(tmp_path))
    study = config.study()
    runs = plan_study(study)
    real = [r for r in runs if r.method == "real"]
    assert sorted({r.real_fraction for r in real}) == [0.0625, 0.125, 0.25, 0.5]
    assert len(real) == 4 * 2 * 2  # sizes × epochs × seeds
    search = [r for r in runs if r.method != "real"]
    assert {r.real_fraction for r in search} == {0.0625} and {r.seed for r in search} == {0}
    assert len(search) == 3 * 2 * 2  # methods × m × E
    flags = dict(zip(study.overrides, study.overrides[1:]))
    assert json.loads(flags["--data.corpus_kwargs"]) == config.corpus_kwargs()
    assert "max_docs" not in config.corpus_kwargs()  # the whole embedded corpus
    assert study.tokenizer_vocab == 2048 and len(study.seeds) >= 2


@pytest.mark.slow
def test_main_job_end_to_end_at_tiny_size(tmp_path, capsys, caplog):
    caplog.set_level(logging.INFO, logger="hf_megadocs")
    out = tmp_path / "demo"
    argv = [
        "--output_dir", str(out), "--store_dir", str(tmp_path / "store"),
        "--max_docs", "16", "--max_new_tokens", "24", "--max_steps", "2",
        "--validation_fraction", "0.25", "--base_fraction", "0.5", "--law_multiples", "[1, 2]",
        "--real_epoch_grid", "[1]", "--real_weight_decays", "[0.4]", "--mixed_epochs", "[1]",
        "--synthetic_shares", "[0.5]", "--tokenizer_vocab", "300",
    ]  # fmt: skip
    assert main(argv) == 0
    # One vLLM engine for every corpus of the job, sized from the job, never by a share.
    starts = [r.getMessage() for r in caplog.records if "Starting vLLM engine" in r.getMessage()]
    assert len(starts) == 1, starts
    assert "KV cache" in starts[0] and "max_model_len=" in starts[0]
    caplog.clear()
    printed = capsys.readouterr().out
    study = out / "study"
    text = (study / "study.md").read_text()
    assert text in printed
    tokenizer = study / "tokenizer"
    for name in (
        "simple_g2_m0.5_e1_s1",
        "stitched_g2_m0.5_e1_s0",
        "latent_g2_m0.5_e1_s0",
        "real_x2_e1_wd0.4_s1",
    ):
        summary = json.loads((study / name / "summary.json").read_text())
        assert summary["steps"] == 2 and summary["iid_loss"] > 0
        config = json.loads((study / name / "config.json").read_text())
        assert config["model"]["tokenizer"] == str(tokenizer)  # one tokenizer for every run
    for method in ("simple", "stitched", "latent"):
        row = next(line for line in text.splitlines() if line.startswith(f"| {method} | 2 |"))
        assert "| 0.5, 1 | 2 |" in row and "vs `real_x1_e2_wd0.4`" in row
    assert f"Tokenizer: {tokenizer} (300 tokens)." in text
    corpora = {c["config"]: c for c in json.loads((study / "corpora.json").read_text())}
    # simple holds each document and its usable rephrases as separate rows; stitched one per doc.
    assert corpora["simple_g2"]["train_rows"] > corpora["stitched_g2"]["train_rows"] > 0

    # A rerun trains nothing and generates nothing: every run and generation is reused.
    assert main(argv) == 0
    assert "generate:" not in capsys.readouterr().err
    assert not [r for r in caplog.records if "Starting vLLM engine" in r.getMessage()]
