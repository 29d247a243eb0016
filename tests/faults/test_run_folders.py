"""What an earlier run left in ``output_dir`` (hf_megadocs.training.run_folder).

Before: a truncated ``tokenizer/tokenizer.json`` (a full disk while saving it) blocked its
run folder for good with "Expecting value: line 799 column 7", naming no file; rerunning a
training command without ``--resume_from_checkpoint`` deleted ``metrics.jsonl``, replaced
``summary.json`` and moved ``latest`` back beside the old run's later checkpoints; a resume
with a changed ``--data.seq_len`` was refused only after data and model were built.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hf_megadocs.training import load_config, train
from tests.faults.helpers import ENV, RECIPE, ROOT, lee_text_file, tiny_train_flags


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> Path:
    return lee_text_file(tmp_path_factory.mktemp("real"))


@pytest.fixture(scope="module")
def finished(real, tmp_path_factory) -> Path:
    """A finished tiny run: 2 steps, a checkpoint after each (copied by each test)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    train(
        load_config(overrides=tiny_train_flags(real, out, "--max_steps", "2", "--save_every", "1"))
    )
    return out


def _copy(finished: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    return out


def _files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by relative path, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _steps(out: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_a_truncated_run_tokenizer_is_named_and_trained_again_unless_a_checkpoint_needs_it(
    real, tmp_path, caplog
):
    from hf_megadocs.training.tokenizer_training import train_bpe_tokenizer

    out = tmp_path / "run"
    tokenizer_json = out / "tokenizer" / "tokenizer.json"
    train_bpe_tokenizer(real.read_text().splitlines(), 512, out / "tokenizer")
    text = tokenizer_json.read_text()
    tokenizer_json.write_text(text[: len(text) // 2])  # the disk filled up mid-save
    flags = tiny_train_flags(real, out, "--model.train_tokenizer_vocab", "512")
    with caplog.at_level(logging.WARNING):
        summary = train(load_config(overrides=[*flags, "--max_steps", "1"]))
    assert f"{tokenizer_json} is damaged (Expecting" in caplog.text
    assert summary["vocab_size"] == 512 and summary["steps"] == 1
    assert json.loads(tokenizer_json.read_text())["model"]["type"] == "BPE"
    assert sorted(p.name for p in out.iterdir() if "tokenizer" in p.name) == ["tokenizer"]

    # Now a checkpoint was trained with it: retraining could change the token ids.
    tokenizer_json.write_text(text[:100])
    resumed = [*flags, "--max_steps", "2", "--resume_from_checkpoint", "latest"]
    with pytest.raises(ValueError, match=re.escape(f"{tokenizer_json} is damaged")):
        train(load_config(overrides=resumed))
    assert tokenizer_json.read_text() == text[:100] and _steps(out)[-1] == 1


def test_a_rerun_without_resume_is_refused_and_changes_nothing(real, finished, tmp_path):
    out = _copy(finished, tmp_path)
    before = _files(out)
    done = subprocess.run(
        [sys.executable, str(RECIPE), *tiny_train_flags(real, out, "--max_steps", "1")],
        env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "holds an earlier run (checkpoints/ and summary.json)" in errors[0]
    assert "--resume_from_checkpoint latest" in errors[0] and "--overwrite_output_dir" in errors[0]
    assert _files(out) == before  # metrics.jsonl, summary.json, latest: all as they were


def test_a_resume_of_a_finished_run_whose_checkpoints_were_deleted_is_refused(
    real, finished, tmp_path
):
    out = _copy(finished, tmp_path)
    shutil.rmtree(out / "checkpoints")
    before = _files(out)
    flags = tiny_train_flags(real, out, "--max_steps", "1", "--resume_from_checkpoint", "latest")
    with pytest.raises(ValueError, match="summary.json but no checkpoint to resume"):
        train(load_config(overrides=flags))
    assert _files(out) == before


def test_overwrite_output_dir_deletes_the_earlier_run_and_trains_afresh(
    real, finished, tmp_path, caplog
):
    out = _copy(finished, tmp_path)
    with caplog.at_level(logging.WARNING):
        summary = train(
            load_config(overrides=tiny_train_flags(real, out, "--max_steps", "1",
                                                   "--overwrite_output_dir"))
        )  # fmt: skip
    assert "overwrite_output_dir: deleted the earlier run's checkpoints, summary.json" in (
        caplog.text
    )
    assert summary["steps"] == 1 and json.loads((out / "summary.json").read_text())["steps"] == 1
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["latest", "step_1"]
    assert (out / "checkpoints" / "latest").read_text() == "step_1"
    assert set(_steps(out)) == {1}  # no record of the earlier run's steps
    assert "overwrite_output_dir" not in json.loads((out / "config.json").read_text())

    both = tiny_train_flags(
        real, out, "--overwrite_output_dir", "--resume_from_checkpoint", "latest"
    )
    with pytest.raises(ValueError, match="exclude each other"):
        train(load_config(overrides=both))
    assert (out / "checkpoints" / "latest").read_text() == "step_1"


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--data.seq_len", "32", "data.seq_len was 64 in the checkpoint and is 32 now"),
        ("--data.attention", "document", "data.attention was 'cross_document'"),
        ("--mix.seed", "1", "mix.seed was 0 in the checkpoint and is 1 now"),
    ],
)
def test_a_resume_with_changed_settings_is_refused_before_data_and_model_are_built(
    real, finished, tmp_path, monkeypatch, flag, value, message
):
    from hf_megadocs.training import model
    from hf_megadocs.training.data import streams

    def built(*args: object, **kwargs: object) -> None:
        raise AssertionError("data or model built before the resume was checked")

    for module, name in ((model, "load_tokenizer"), (model, "build_model"),
                         (streams, "build_train_data")):  # fmt: skip
        monkeypatch.setattr(module, name, built)
    out = _copy(finished, tmp_path)
    before = _files(out)
    flags = tiny_train_flags(real, out, "--max_steps", "3", "--resume_from_checkpoint", "latest")
    with pytest.raises(ValueError, match=re.escape(message)):
        train(load_config(overrides=[*flags, flag, value]))
    assert _files(out) == before
