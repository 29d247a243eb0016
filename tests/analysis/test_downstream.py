"""Downstream evaluation: a clear message (never a crash) when lm-eval or its data is absent."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from hf_megadocs.analysis.downstream import (
    PAPER_TASKS,
    DownstreamConfig,
    find_checkpoint,
    lm_eval_missing_message,
    run_downstream,
)

needs_no_lm_eval = pytest.mark.skipif(
    importlib.util.find_spec("lm_eval") is not None, reason="lm-eval is installed here"
)


@pytest.fixture()
def run_dir(tmp_path):
    """A run directory holding a real (tiny, randomly initialised) saved checkpoint."""
    transformers = pytest.importorskip("transformers")
    run = tmp_path / "run"
    (run / "checkpoints" / "final").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"method": "real"}))  # the train config
    config = transformers.LlamaConfig(
        vocab_size=32,
        hidden_size=8,
        intermediate_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
    )
    transformers.LlamaForCausalLM(config).save_pretrained(run / "checkpoints" / "final")
    return run


@needs_no_lm_eval
def test_missing_lm_eval_gives_install_and_network_message(run_dir):
    result = run_downstream(DownstreamConfig(checkpoint=str(run_dir)))
    assert result.status == "unavailable" and not result.scores
    assert "pip install" in result.message and "lm-eval" in result.message
    assert "network" in result.message
    assert lm_eval_missing_message() == result.message


@needs_no_lm_eval
def test_cli_prints_message_without_traceback(run_dir, tmp_path):
    out = tmp_path / "downstream.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hf_megadocs.analysis.downstream",
            str(run_dir),
            "--limit",
            "5",
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and "pip install" in proc.stderr
    assert json.loads(out.read_text())["status"] == "unavailable"


def test_find_checkpoint_inside_run_dir(run_dir, tmp_path):
    assert find_checkpoint(run_dir) == run_dir / "checkpoints" / "final"
    with pytest.raises(FileNotFoundError, match="no Hugging Face model directory"):
        find_checkpoint(tmp_path / "nowhere")


def test_config_validation():
    assert DownstreamConfig(checkpoint="x").tasks == PAPER_TASKS == ("arc_easy", "piqa", "sciq")
    with pytest.raises(ValueError, match="limit"):
        DownstreamConfig(checkpoint="x", limit=0)
    with pytest.raises(ValueError, match="tasks"):
        DownstreamConfig(checkpoint="x", tasks=())
