"""End-to-end tests of the Accelerate trainer (hf_megadocs.train.loop) and recipes/train.py.

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

ROOT = Path(__file__).resolve().parents[1]
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
    _run(_flags(corpus, reference, "--max_steps", "8", "--save_every", "3"))

    # Same run without the step cap (so it cannot finish first), killed after a checkpoint.
    argv = _flags(corpus, killed, "--save_every", "3")
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
            "--resume_from_checkpoint",
            "latest",
        )
    )
    ref, got = _records(reference, "train"), _records(killed, "train")
    assert [r["step"] for r in got] == list(range(1, 9))
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


@pytest.fixture(scope="module")
def tokenizer():
    from hf_megadocs.train.config import ModelConfig
    from hf_megadocs.train.loop import load_tokenizer

    os.environ["HF_HUB_OFFLINE"] = "1"
    return load_tokenizer(ModelConfig())


def test_tokenizer_without_eos_is_refused(tokenizer, tmp_path):
    from hf_megadocs.train.config import ModelConfig
    from hf_megadocs.train.loop import load_tokenizer

    tokenizer.save_pretrained(tmp_path)
    config_path = tmp_path / "tokenizer_config.json"
    data = json.loads(config_path.read_text())
    data["eos_token"] = None
    config_path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="has no EOS token"):
        load_tokenizer(ModelConfig(tokenizer=str(tmp_path)))


def test_tokenizer_larger_than_model_vocab_is_refused(tokenizer):
    from hf_megadocs.train.config import ModelConfig
    from hf_megadocs.train.loop import build_model

    config = ModelConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=128,
        vocab_size=1000,
    )
    with pytest.raises(
        ValueError, match=r"tokenizer has 49152 tokens but the model's vocab_size is 1000"
    ):
        build_model(config, tokenizer, seq_len=64)


def test_context_longer_than_pretrained_model_is_refused(tokenizer, tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    from hf_megadocs.train.config import ModelConfig
    from hf_megadocs.train.loop import build_model

    LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=64,
        )
    ).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"data.seq_len=128 is longer than the model allows.*64"):
        build_model(ModelConfig(pretrained=str(tmp_path)), tokenizer, seq_len=128)
    assert build_model(
        ModelConfig(pretrained=str(tmp_path)), tokenizer, seq_len=64
    ).config.vocab_size == len(tokenizer)


def test_empty_dataset_is_refused_before_training(corpus, tmp_path):
    from hf_megadocs.train.config import load_config
    from hf_megadocs.train.loop import train

    empty = tmp_path / "empty.txt"
    empty.write_text("")
    config = load_config(
        None, _flags(corpus, tmp_path / "run", synthetic=False) + ["--data.real_path", str(empty)]
    )
    with pytest.raises(ValueError, match=r"empty|0 rows"):
        train(config)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


# ---------------------------------------------------------------- pure pieces of the loop


def test_token_losses_aggregate_by_stream_and_role():
    import torch
    import torch.nn.functional as F

    from hf_megadocs.tokenize import ROLE_IDS, ROLE_NAMES
    from hf_megadocs.train.loop import stats_to_metrics, token_losses, tokens_seen

    torch.manual_seed(0)
    vocab, length = 11, 6
    logits = torch.randn(2, length, vocab)
    ids = torch.randint(0, vocab, (2, length))
    labels = ids.clone()
    labels[1, 3] = -100  # a block start in a blocked attention mode
    roles = torch.full((2, length), ROLE_IDS["real"])
    roles[1, :4] = ROLE_IDS["rephrase"]
    batch = {"labels": labels, "roles": roles, "stream": torch.tensor([0, 1])}
    mean, stats = token_losses(logits, batch, len(ROLE_NAMES))

    per_token = F.cross_entropy(
        logits[:, :-1].reshape(-1, vocab), ids[:, 1:].reshape(-1), reduction="none"
    )
    per_token = per_token.view(2, length - 1)
    valid = labels[:, 1:] != -100
    assert mean.item() == pytest.approx(per_token[valid].mean().item(), rel=1e-6)
    metrics = stats_to_metrics(stats, ROLE_NAMES)
    assert metrics["loss"] == pytest.approx(mean.item(), rel=1e-6)
    assert metrics["loss_real"] == pytest.approx(per_token[0].mean().item(), rel=1e-6)
    assert metrics["loss_synthetic"] == pytest.approx(
        per_token[1][valid[1]].mean().item(), rel=1e-6
    )
    # Roles of the *predicted* tokens: row 1 targets 1..3 are rephrase, 3 is masked.
    rephrase = per_token[1, :2]
    real = torch.cat([per_token[0], per_token[1, 3:]])
    assert metrics["loss_role/rephrase"] == pytest.approx(rephrase.mean().item(), rel=1e-6)
    assert metrics["loss_role/real"] == pytest.approx(real.mean().item(), rel=1e-6)
    assert "loss_role/rationale" not in metrics  # no tokens, no key
    counts = stats.view(-1, 2)[:, 1]
    assert counts[0].item() == valid.sum().item() == 9
    padded = dict(batch, roles=batch["roles"].clone())
    padded["roles"][1, 4:] = -1  # padding is not a token seen
    assert tokens_seen(padded).tolist() == [10.0, 6.0, 4.0]


def test_eval_windows_and_buckets():
    from hf_megadocs.train.evaluation import bucket_labels, iid_windows, long_windows

    docs = [list(range(10)), [1], list(range(5))]
    assert iid_windows(docs, 4) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9], [0, 1, 2, 3]]
    assert long_windows(docs, 4, max_docs=2) == [[0, 1, 2, 3], [0, 1, 2, 3]]
    assert bucket_labels(1000, 512) == ["0-512", "512-1000"]
    assert bucket_labels(4096, 512)[-1] == "3584-4096"


def test_checkpoint_pointer_and_metrics_truncation(tmp_path):
    from hf_megadocs.train.checkpoint import (
        append_jsonl,
        check_resumable,
        resolve_checkpoint,
        truncate_metrics,
    )
    from hf_megadocs.train.presets import get_preset

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
    truncate_metrics(metrics, 2)
    assert [json.loads(line)["step"] for line in metrics.read_text().splitlines()] == [1, 2]

    config = get_preset("tiny_cpu")
    saved = {"num_processes": 2, "config": config.to_dict()}
    check_resumable(saved, config, world_size=2)
    with pytest.raises(ValueError, match="num_processes was 2 in the checkpoint and is 1 now"):
        check_resumable(saved, config, world_size=1)


def test_generations_come_from_the_corpus_name_not_the_row_column():
    from datasets import Dataset

    from hf_megadocs.train.data import _generations_of

    rows = Dataset.from_dict({"text": ["a", "b"], "num_generations": [1, 1]})
    assert _generations_of(rows, "simple_g4") == 4  # simple rows hold one generation each
    assert _generations_of(rows, None) == 1  # no name anywhere: the column is all there is
    assert _generations_of(Dataset.from_dict({"text": ["a"]}), None) == 0
