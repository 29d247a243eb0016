"""Faults found before anything expensive starts, and records that tell the truth.

Before: a store dir that is a file failed with a raw traceback after a full vLLM start; a
broken resume target was found only after data and model were built; a torn
metrics.jsonl tail made resume fail with a JSONDecodeError; resuming a finished run
appended a second final eval; `--mix.synthetic_share 0` with a synthetic corpus still
built it and recorded the run as that method.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

from hf_megadocs.training import load_config, train
from tests.faults.helpers import ENV, HF_MEGADOCS, RECIPE, ROOT, lee_text_file, tiny_train_flags


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    return lee_text_file(tmp_path_factory.mktemp("real"))


def test_a_store_that_is_a_file_is_refused_before_the_engine_starts(tmp_path):
    store = tmp_path / "store"
    store.write_text("not a folder")
    done = subprocess.run(
        [HF_MEGADOCS, "generate", "--backend.backend", "vllm", "--source.max_docs", "2",
         "--store_dir", str(store)],
        env=ENV, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-3000:]
    assert "is a file, not a folder" in done.stderr and "Traceback" not in done.stderr
    assert "Loading weights" not in done.stderr + done.stdout  # no engine was started
    assert store.read_text() == "not a folder"


@pytest.mark.parametrize("target", ["dangling_latest", "empty_folder", "half_written"])
def test_a_broken_resume_target_is_refused_before_data_and_model(real, tmp_path, target):
    out = tmp_path / "run"
    checkpoints = out / "checkpoints"
    (checkpoints / "step_4").mkdir(parents=True)
    if target == "dangling_latest":  # the pointer survived, its folder was deleted
        (checkpoints / "latest").write_text("step_8")
        resume, message = "latest", "names 'step_8'"
    elif target == "empty_folder":
        resume, message = str(tmp_path), "not a checkpoint folder"
    else:  # killed inside save_state: weights there, trainer_state.json not yet
        (checkpoints / "step_4" / "model.safetensors").write_bytes(b"\0" * 16)
        resume, message = str(checkpoints / "step_4"), "not a checkpoint folder"
    done = subprocess.run(
        [sys.executable, str(RECIPE), *tiny_train_flags(real, out), "--resume_from_checkpoint",
         resume],
        env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-3000:]
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not (out / "metrics.jsonl").exists() and not (out / "config.json").exists()


def test_a_real_only_run_is_recorded_as_real_and_builds_no_synthetic_corpus(real, tmp_path, caplog):
    out = tmp_path / "run"
    flags = tiny_train_flags(real, out, "--max_steps", "1")
    flags += ["--data.synthetic_corpus", "stitched_g2", "--mix.synthetic_share", "0"]
    with caplog.at_level(logging.WARNING):
        summary = train(load_config(overrides=flags))
    assert "dropping the synthetic stream (stitched_g2)" in caplog.text
    recorded = json.loads((out / "config.json").read_text())
    for record in (recorded, summary):
        assert (record["method"], record["num_generations"], record["synthetic_tokens"]) == (
            "real",
            0,
            0,
        )
    assert recorded["data"]["synthetic_corpus"] is None


def test_a_torn_metrics_tail_resumes_and_a_finished_run_is_left_alone(
    real, tmp_path, caplog, capsys
):
    out = tmp_path / "run"
    train(load_config(overrides=tiny_train_flags(real, out, "--max_steps", "3")))
    metrics = out / "metrics.jsonl"
    with metrics.open("a") as handle:
        handle.write('{"kind": "train", "st')  # a writer killed mid-line
    resumed = tiny_train_flags(real, out, "--max_steps", "4", "--resume_from_checkpoint", "latest")
    with caplog.at_level(logging.WARNING):
        summary = train(load_config(overrides=resumed))
    assert summary["steps"] == 4
    assert "metrics.jsonl" in caplog.text and "byte" in caplog.text  # said once, with where
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2, 3, 4]

    before = metrics.read_bytes(), (out / "summary.json").read_bytes()
    again = train(load_config(overrides=resumed))
    assert "already finished at step 4; nothing to do" in capsys.readouterr().out
    assert again == summary
    assert (metrics.read_bytes(), (out / "summary.json").read_bytes()) == before
