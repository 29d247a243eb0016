"""The run directory: checkpoints, the latest pointer, metrics truncation, resume checks
(hf_megadocs.training.checkpoint)."""

from __future__ import annotations

import json

import pytest


def test_checkpoint_pointer_and_metrics_truncation(tmp_path):
    from hf_megadocs.training.checkpoint import (
        append_jsonl,
        check_resumable,
        resolve_checkpoint,
        truncate_metrics,
    )
    from hf_megadocs.training.presets import get_preset

    assert resolve_checkpoint(tmp_path, "latest") is None  # nothing saved yet: fresh start
    (tmp_path / "checkpoints" / "step_6").mkdir(parents=True)
    (tmp_path / "checkpoints" / "step_6" / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoints" / "latest").write_text("step_6")
    assert resolve_checkpoint(tmp_path, "latest") == tmp_path / "checkpoints" / "step_6"
    with pytest.raises(ValueError, match="not a checkpoint folder"):
        resolve_checkpoint(tmp_path, str(tmp_path / "checkpoints"))

    metrics = tmp_path / "metrics.jsonl"
    for step in (1, 2, 3, 4):
        append_jsonl(metrics, {"kind": "train", "step": step})
    with metrics.open("a") as handle:
        handle.write('{"kind": "train", "st')  # the run was killed mid-line
    truncate_metrics(metrics, 2)
    assert [json.loads(line)["step"] for line in metrics.read_text().splitlines()] == [1, 2]
    with metrics.open("a") as handle:
        handle.write('{"kind": "train", "st')
    append_jsonl(metrics, {"kind": "train", "step": 3})  # resumed: the record gets its own line
    assert metrics.read_text().splitlines()[-1] == '{"kind": "train", "step": 3}'

    config = get_preset("tiny_cpu")
    saved = {"num_processes": 2, "config": config.to_dict()}
    check_resumable(saved, config, world_size=2)
    with pytest.raises(ValueError, match="num_processes was 2 in the checkpoint and is 1 now"):
        check_resumable(saved, config, world_size=1)


def test_latest_pointing_at_a_deleted_folder_says_what_to_do(tmp_path):
    from hf_megadocs.training.checkpoint import resolve_checkpoint

    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "latest").write_text("step_4\n")
    with pytest.raises(ValueError, match="delete the pointer to start fresh"):
        resolve_checkpoint(tmp_path, "latest")
