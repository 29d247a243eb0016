"""End-to-end tests of the Accelerate trainer (hf_megadocs.training.loop) and recipes/train.py.

The slow tests launch the real recipe in subprocesses (``accelerate launch --multi_gpu`` for two
processes) on the Lee news corpus with a tiny Llama (hidden 32, the 49k SmolLM2 vocab).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "train.py"
ENV = {
    **os.environ,
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "OMP_NUM_THREADS": "1",
}


def _lee_lines(name: str) -> list[str]:
    from gensim.test.utils import datapath

    return [
        line.strip()
        for line in Path(datapath(name)).read_text(encoding="latin-1").splitlines()
        if line.strip()
    ]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    """A real text file and a synthetic JSONL of two-document megadocs with role segments."""
    root = tmp_path_factory.mktemp("corpus")
    real = root / "real.txt"
    real.write_text("\n".join(_lee_lines("lee_background.cor")) + "\n")
    lines = _lee_lines("lee.cor")
    rows = []
    for a, b in zip(lines[0::2], lines[1::2]):
        text = a + "\n\n" + b
        segments = [
            {"role": "rephrase", "start": 0, "end": len(a)},
            {"role": "separator", "start": len(a), "end": len(a) + 2},
            {"role": "real", "start": len(a) + 2, "end": len(text)},
        ]
        rows.append(
            {"text": text, "segments": segments, "method": "stitched", "num_generations": 1}
        )
    synthetic = root / "synthetic.jsonl"
    synthetic.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"real": real, "synthetic": synthetic}


def _flags(
    corpus: dict[str, Path], output_dir: Path, *extra: str, synthetic: bool = True
) -> list[str]:
    flags = [
        "--preset",
        "tiny_cpu",
        "--data.real_path",
        str(corpus["real"]),
        "--data.seq_len",
        "64",
        "--model.hidden_size",
        "32",
        "--model.intermediate_size",
        "64",
        "--model.num_attention_heads",
        "2",
        "--mix.global_batch_size",
        "4",
        "--micro_batch_size",
        "2",
        "--optim.lr",
        "1e-2",
        "--optim.warmup_fraction",
        "0",
        "--eval.max_docs",
        "8",
        "--eval.long_context_docs",
        "4",
        "--eval.position_bucket",
        "16",
        "--eval_every",
        "0",
        "--log_with",
        "none",
        "--output_dir",
        str(output_dir),
    ]
    if synthetic:
        flags += [
            "--data.synthetic_path",
            str(corpus["synthetic"]),
            "--data.synthetic_corpus",
            "null",
            "--mix.synthetic_share",
            "0.5",
        ]
    else:
        flags += ["--data.synthetic_corpus", "null", "--mix.synthetic_share", "0"]
    return flags + list(extra)


def _run(argv: list[str], *, processes: int = 1) -> subprocess.CompletedProcess:
    if processes == 1:
        cmd = [sys.executable, str(RECIPE), *argv]
    else:
        cmd = [
            str(Path(sys.executable).parent / "accelerate"),
            "launch",
            "--multi_gpu",
            "--num_processes",
            str(processes),
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            str(RECIPE),
            *argv,
        ]
    done = subprocess.run(cmd, env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return done


def _records(output_dir: Path, kind: str) -> list[dict]:
    lines = (output_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def test_train_runs_in_process_top_to_bottom(corpus, tmp_path):
    """A few real optimizer steps in this process (no subprocess): setup, steps, logging,
    checkpoint, final eval, summary and the final model folder."""
    from hf_megadocs.training import load_config, train

    out = tmp_path / "run"
    config = load_config(overrides=_flags(corpus, out, "--max_steps", "3", "--save_every", "2"))
    summary = train(config)
    assert summary["steps"] == 3 and (summary["method"], summary["num_generations"]) == (
        "stitched",
        1,
    )
    records = _records(out, "train")
    assert [r["step"] for r in records] == [1, 2, 3]
    for record in records:
        assert record["loss_real"] > 0 and record["loss_synthetic"] > 0 and record["lr"] > 0
        # Every token is counted once, in exactly one stream.
        assert record["real_tokens_seen"] + record["synthetic_tokens_seen"] == record["tokens"]
    assert records[-1]["tokens"] == summary["tokens"] == 3 * 4 * 64  # steps × batch × seq_len
    assert [r["step"] for r in _records(out, "eval")] == [3]
    assert summary["iid_loss"] == _records(out, "eval")[-1]["iid_loss"]
    assert (out / "checkpoints" / "latest").read_text() == "step_3"
    assert (out / "checkpoints" / "step_2" / "trainer_state.json").is_file()
    assert (out / "final" / "config.json").is_file()
    assert json.loads((out / "config.json").read_text())["total_steps"] == summary["total_steps"]


def test_long_context_loss_can_read_a_separate_out_of_domain_dataset(corpus, tmp_path, caplog):
    import logging

    from hf_megadocs.training import load_config, train

    caplog.set_level(logging.INFO, logger="hf_megadocs")
    long_docs = tmp_path / "papers.jsonl"
    paper = " ".join(
        f"Theorem {i} holds for every compact manifold of dimension {i}." for i in range(80)
    )
    long_docs.write_text("".join(json.dumps({"text": f"{k}: {paper}"}) + "\n" for k in range(3)))
    out = tmp_path / "run"
    config = load_config(overrides=_flags(
        corpus, out, "--max_steps", "1", "--data.long_context_path", str(long_docs),
    ))  # fmt: skip
    summary = train(config)
    assert f"3 long docs ({long_docs} split)" in caplog.text
    assert summary["long_context_loss"] > 0
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"body": paper}) + "\n")
    config = load_config(
        overrides=_flags(corpus, tmp_path / "bad", "--data.long_context_path", str(bad))
    )
    with pytest.raises(ValueError, match="data.long_context_path=.*has no 'text' column"):
        train(config)
    assert not (tmp_path / "bad" / "checkpoints").exists()  # refused before any step


@pytest.mark.slow
def test_two_processes_equal_one_process_with_double_accumulation(corpus, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    _run(_flags(corpus, one, "--max_steps", "4", "--save_every", "0"))
    _run(_flags(corpus, two, "--max_steps", "4", "--save_every", "0"), processes=2)

    cfg_one, cfg_two = (json.loads((d / "config.json").read_text()) for d in (one, two))
    assert (
        cfg_one["gradient_accumulation_steps"] == 2 and cfg_two["gradient_accumulation_steps"] == 1
    )
    assert cfg_two["num_processes"] == 2
    for key in (
        "num_params",
        "tokenizer",
        "method",
        "num_generations",
        "real_tokens",
        "synthetic_tokens",
    ):
        assert cfg_one[key] == cfg_two[key]
    assert cfg_one["method"] == "stitched" and cfg_one["num_generations"] == 1
    assert cfg_one["real_tokens"] > 0 and cfg_one["synthetic_tokens"] > 0

    train_one, train_two = _records(one, "train"), _records(two, "train")
    assert [r["step"] for r in train_one] == [1, 2, 3, 4] == [r["step"] for r in train_two]
    for a, b in zip(train_one, train_two):
        for key in ("loss", "loss_real", "loss_synthetic", "loss_role/rephrase", "loss_role/real"):
            assert a[key] == pytest.approx(b[key], rel=1e-4), key
        # Exact composition: 2 real + 2 synthetic rows of 64 tokens per step.
        assert b["real_tokens_seen"] - a["real_tokens_seen"] == 0
        assert a["tokens"] == a["step"] * 4 * 64
        assert a["real_tokens_seen"] == a["synthetic_tokens_seen"] == a["step"] * 2 * 64
    assert train_one[-1]["loss"] < train_one[0]["loss"]  # it learns at lr 1e-2
    eval_one, eval_two = _records(one, "eval")[-1], _records(two, "eval")[-1]
    assert eval_one["iid_loss"] == pytest.approx(eval_two["iid_loss"], rel=1e-4)
    assert eval_one["long_context_loss"] == pytest.approx(eval_two["long_context_loss"], rel=1e-4)
    assert list(eval_one["long_context_loss_by_position"]) == ["0-16", "16-32", "32-48", "48-64"]
    summary = json.loads((one / "summary.json").read_text())
    assert summary["steps"] == 4 and summary["iid_loss"] == eval_one["iid_loss"]
    assert summary["tokens"] == 4 * 4 * 64 and summary["method"] == "stitched"


@pytest.mark.slow
def test_killed_run_resumes_with_the_same_data_and_losses(corpus, tmp_path):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    _run(_flags(corpus, reference, "--max_steps", "8", "--save_every", "3", "--log_every", "2"))

    # Same run without the step cap (so it cannot finish first), killed after a checkpoint.
    argv = _flags(corpus, killed, "--save_every", "3", "--log_every", "2")
    proc = subprocess.Popen(
        [sys.executable, str(RECIPE), *argv],
        env=ENV,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    pointer = killed / "checkpoints" / "latest"
    deadline = time.monotonic() + 300
    while not pointer.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    assert pointer.exists()

    _run(
        _flags(
            corpus,
            killed,
            "--max_steps",
            "8",
            "--save_every",
            "3",
            "--log_every",
            "2",
            "--resume_from_checkpoint",
            "latest",
        )
    )
    ref, got = _records(reference, "train"), _records(killed, "train")
    # Saves (every 3) fall between logs (every 2): the record after the resume also holds
    # the losses of the step before the checkpoint, as the uninterrupted run's does.
    assert [r["step"] for r in got] == [2, 4, 6, 8] == [r["step"] for r in ref]
    for a, b in zip(ref, got):
        for key in ("loss", "loss_real", "loss_synthetic", "tokens", "real_tokens_seen", "lr"):
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), (a["step"], key)
    assert _records(killed, "eval")[-1]["iid_loss"] == pytest.approx(
        _records(reference, "eval")[-1]["iid_loss"], rel=1e-5
    )
    ckpt = killed / "checkpoints" / (killed / "checkpoints" / "latest").read_text().strip()
    assert json.loads((ckpt / "trainer_state.json").read_text())["step"] == 8
    assert json.loads((ckpt / "config.json").read_text())["real_tokens"] > 0


# ---------------------------------------------------------------- bad input, before step 1


def test_empty_dataset_is_refused_before_training(corpus, tmp_path):
    from hf_megadocs.training.loop import train
    from hf_megadocs.training.presets import load_config

    empty = tmp_path / "empty.txt"
    empty.write_text("")
    config = load_config(
        None, _flags(corpus, tmp_path / "run", synthetic=False) + ["--data.real_path", str(empty)]
    )
    with pytest.raises(ValueError, match=r"empty|0 rows"):
        train(config)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
