"""Continuing pre-training from another run's checkpoint on new data (training.continuation).

A tiny real-only run saves a checkpoint; a second run continues from it with a synthetic
stream added: its weights and AdamW moments start where the first ended, the global step
and token counts go on, config.json records the origin, and a mismatched model or
tokenizer is refused before any step.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hf_megadocs.training import load_config, train
from tests.faults.helpers import lee_text_file, tiny_train_flags


def _synthetic_file(folder: Path) -> Path:
    from gensim.test.utils import datapath

    lines = [
        line.strip()
        for line in Path(datapath("lee.cor")).read_text(encoding="latin-1").splitlines()
        if line.strip()
    ]
    rows = [
        {
            "text": line,
            "segments": [{"role": "rephrase", "start": 0, "end": len(line)}],
            "method": "rephrase",
            "num_generations": 1,
        }
        for line in lines
    ]
    path = folder / "synthetic.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _config(*flags: str):
    return load_config(overrides=list(flags))


@pytest.fixture(scope="module")
def origin(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("continue")
    real = lee_text_file(root)
    first = root / "first"
    train(_config(*tiny_train_flags(real, first, "--max_steps", "3")))
    return {"root": root, "real": real, "first": first}


def _continued_flags(origin: dict[str, Path], out: Path, *extra: str) -> list[str]:
    saved = json.loads((origin["first"] / "config.json").read_text())
    flags = tiny_train_flags(origin["real"], out, *extra)
    flags += [
        "--continue_from", str(origin["first"]),
        "--model.tokenizer", saved["tokenizer"],
        "--data.synthetic_path", str(_synthetic_file(origin["root"])),
        "--mix.synthetic_share", "0.5",
        "--optim.schedule", "constant", "--optim.warmup_fraction", "0",
        "--max_steps", "2",
    ]  # fmt: skip
    return flags


@pytest.mark.slow
def test_a_continuation_starts_from_the_checkpoint_and_records_it(origin, tmp_path):
    import torch
    from safetensors.torch import load_file

    out = tmp_path / "second"
    summary = train(_config(*_continued_flags(origin, out)))
    first_state = json.loads(
        (origin["first"] / "checkpoints" / "step_3" / "trainer_state.json").read_text()
    )
    assert summary["steps"] == 5  # the global step goes on: 3 + 2
    assert summary["tokens"] > first_state["tokens"]
    assert summary["synthetic_tokens_seen"] > 0 == first_state["synthetic_tokens_seen"]
    record = json.loads((out / "config.json").read_text())["continued_from"]
    assert record["step"] == 3 and record["checkpoint"].endswith("step_3")
    assert record["data"]["synthetic_path"] is None  # what the origin trained on
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert min(steps) == 4 and max(steps) == 5
    # The constant schedule (no warmup here): every step at optim.lr.
    lrs = [
        json.loads(line)["lr"]
        for line in (out / "metrics.jsonl").read_text().splitlines()
        if json.loads(line)["kind"] == "train"
    ]
    assert lrs == pytest.approx([json.loads((out / "config.json").read_text())["optim"]["lr"]] * 2)
    # It started from the first run's weights: far closer to them than a fresh init is.
    before = load_file(str(origin["first"] / "checkpoints" / "step_3" / "model.safetensors"))
    after = load_file(str(out / "checkpoints" / "step_5" / "model.safetensors"))
    name = "model.embed_tokens.weight"
    moved = (after[name] - before[name]).abs().max().item()
    assert moved < 0.05, moved
    assert not torch.equal(after[name], before[name])


@pytest.mark.slow
def test_a_killed_continuation_resumes_its_own_checkpoint(origin, tmp_path):
    out = tmp_path / "second"
    train(_config(*_continued_flags(origin, out, "--save_every", "1")))
    (out / "summary.json").unlink()
    again = train(_config(*_continued_flags(origin, out, "--resume_from_checkpoint", "latest")))
    assert again["steps"] == 5  # resumed its own step 5, not the origin's step 3


def test_a_different_model_is_refused_before_any_step(origin, tmp_path):
    flags = _continued_flags(origin, tmp_path / "x") + ["--model.hidden_size", "64"]
    with pytest.raises(ValueError, match="model.hidden_size was 32 there"):
        train(_config(*flags))
    assert not (tmp_path / "x" / "metrics.jsonl").exists()


def test_another_tokenizer_is_refused_with_the_flag_to_set(origin, tmp_path):
    from hf_megadocs.training.model import LLAMA3_TOKENIZER

    flags = _continued_flags(origin, tmp_path / "x")
    flags[flags.index("--model.tokenizer") + 1] = LLAMA3_TOKENIZER
    with pytest.raises(ValueError, match="--model.tokenizer .*smollm2"):
        train(_config(*flags))


def test_continue_from_a_folder_without_checkpoints_says_what_to_pass(origin, tmp_path):
    flags = _continued_flags(origin, tmp_path / "x")
    flags[flags.index("--continue_from") + 1] = str(tmp_path)
    with pytest.raises(ValueError, match="continue_from=.*neither a checkpoint folder"):
        train(_config(*flags))
