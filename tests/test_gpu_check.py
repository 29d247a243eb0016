"""The GPU check's smoke mode on CPU: the command a lent GPU will run, at tiny sizes, must
work and write every figure it promises."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHON": sys.executable}


def _check(out: Path, parts: set[str]) -> dict:
    result = json.loads((out / "gpu_check.json").read_text())
    assert result["smoke"] is True and set(result["parts"]) == parts
    assert result["environment"]["device"].startswith("CPU")
    assert result["environment"]["torch"] and result["wall_s"] > 0
    assert (out / "gpu_check.md").read_text().startswith("# GPU check (smoke)")
    return result


def _gpu_check_module(monkeypatch):
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_check", module)  # its dataclasses look it up
    spec.loader.exec_module(module)
    return module


def test_smoke_mode_writes_every_figure(tmp_path, monkeypatch):
    """Every part at tiny sizes in this process: trainer, generation, data path."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets"))
    out = tmp_path / "out"
    assert _gpu_check_module(monkeypatch).main(["--smoke", "--in-process", "--out", str(out)]) == 0
    result = _check(out, {"data", "train_eager", "generate", "train_compile"})
    sizes, parts = result["sizes"], result["parts"]

    train = parts["train_eager"]
    assert train["compile"] is False and train["precision"] == "no"  # CPU: no bf16
    assert train["tokens_per_s"] > 0 and train["step_s"] > 0 and train["first_step_s"] > 0
    assert train["micro_batch_size"] * train["gradient_accumulation_steps"] == 4
    assert train["seq_len"] == 64 and math.isfinite(train["final_loss"])
    # The lm head multiplies, the input embedding (vocab × hidden, untied) does not.
    assert train["num_params"] - train["multiplying_params"] == train["vocab_size"] * 32
    assert "mfu" not in train  # no peak is known for a CPU
    assert parts["train_compile"] == {"skipped": "not run in smoke mode (inductor on CPU)"}

    generate = parts["generate"]
    assert [b["batch"] for b in generate["batches"]] == sizes["generation_batches"]
    for row in generate["batches"]:
        assert row["new_tokens"] == row["batch"] * sizes["new_tokens"]
        assert row["tokens_per_s"] == pytest.approx(row["new_tokens"] / row["seconds"])

    data = parts["data"]
    assert data["documents"] == sizes["data_documents"] and data["tokens"] > data["documents"]
    assert data["tokenize_tokens_per_s"] > 0 and data["pack_collate_tokens_per_s"] > 0
    # Every packed row reaches a batch at least once (one pass, the last batch wrapping).
    assert data["collated_tokens"] >= data["sequences"] * data["seq_len"]
    assert "| train_eager |" in (out / "gpu_check.md").read_text()


@pytest.mark.slow
def test_the_shell_command_runs_parts_in_child_processes_and_records_a_failing_part(tmp_path):
    """The command a lent GPU runs (gpu_check.sh: one child process per part), and a part
    that fails: its error is recorded beside the others' figures and the exit code is 1."""
    out = tmp_path / "out"
    command = [
        "bash",
        str(ROOT / "benchmarks" / "gpu_check.sh"),
        "--smoke",
        "--parts",
        "generate,train_eager",
        "--micro-batch-size",
        "3",
        "--out",
        str(out),
    ]
    done = subprocess.run(
        command, check=False, env=ENV, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-3000:]
    parts = _check(out, {"generate", "train_eager"})["parts"]
    assert parts["generate"]["batches"][0]["tokens_per_s"] > 0
    # A global batch of 4 does not split into micro-batches of 3: refused by the config.
    assert "is not divisible by micro_batch_size" in parts["train_eager"]["error"]
    assert "train_eager" in (out / "gpu_check.md").read_text()
