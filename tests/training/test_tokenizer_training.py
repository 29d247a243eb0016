"""The run's own tokenizer (hf_megadocs.training.tokenizer_training): real training text only."""

from __future__ import annotations

from pathlib import Path

import pytest

from hf_megadocs.training.tokenizer_training import END_OF_TEXT, train_bpe_tokenizer


def _lee() -> list[str]:
    from gensim.test.utils import datapath

    text = Path(datapath("lee_background.cor")).read_text(encoding="latin-1")
    return [line.strip() for line in text.splitlines() if line.strip()]


def test_a_trained_tokenizer_has_the_size_asked_for_and_round_trips(tmp_path):
    tokenizer = train_bpe_tokenizer(_lee(), 1024, tmp_path / "tok")
    assert len(tokenizer) == 1024 and tokenizer.eos_token == END_OF_TEXT
    text = "The Prime Minister said on Monday — naïvely — that 3.5% was enough."
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text  # byte-level: nothing lost
    with pytest.raises(ValueError, match="256 bytes"):
        train_bpe_tokenizer(["a"], 100, tmp_path / "tiny")


def test_the_run_tokenizer_never_sees_validation_documents(tmp_path):
    from accelerate import Accelerator
    from datasets import Dataset, DatasetDict

    from hf_megadocs.training import load_config
    from hf_megadocs.training.tokenizer_training import run_tokenizer

    lee = _lee()
    train_only, validation_only = "plimbopl", "zqxjkvw"
    real = DatasetDict(
        train=Dataset.from_dict({"text": lee + [" ".join([train_only] * 300)]}),
        validation=Dataset.from_dict({"text": [" ".join([validation_only] * 300)] * 5}),
    )
    real.save_to_disk(str(tmp_path / "real"))
    config = load_config(
        overrides=[
            "--preset", "tiny_cpu", "--data.real_path", str(tmp_path / "real"),
            "--data.synthetic_corpus", "null", "--mix.synthetic_share", "0",
            "--model.train_tokenizer_vocab", "2048", "--output_dir", str(tmp_path / "run"),
        ]
    )  # fmt: skip
    tokenizer = run_tokenizer(config, Accelerator(cpu=True))
    assert len(tokenizer) == 2048 and (tmp_path / "run" / "tokenizer" / "tokenizer.json").is_file()
    pieces = lambda word: len(tokenizer(" " + word)["input_ids"])  # noqa: E731
    assert pieces(train_only) <= 2  # a word it trained on, 300 times, is merged
    assert pieces(validation_only) >= 4  # the validation-only word was never seen
    again = run_tokenizer(config, Accelerator(cpu=True))  # a resume reuses the saved one
    assert again.get_vocab() == tokenizer.get_vocab()


def test_a_run_trains_with_its_own_tokenizer_and_records_it(tmp_path):
    import json

    from hf_megadocs.training import load_config, train

    real = tmp_path / "real.txt"
    real.write_text("\n".join(_lee()) + "\n")
    out = tmp_path / "run"
    flags = [
        "--preset", "tiny_cpu", "--data.real_path", str(real), "--data.synthetic_corpus", "null",
        "--mix.synthetic_share", "0", "--model.train_tokenizer_vocab", "512", "--data.seq_len",
        "64", "--mix.global_batch_size", "4", "--micro_batch_size", "4", "--max_steps", "2",
        "--eval.max_docs", "4", "--eval.long_context_docs", "2", "--log_with", "none",
        "--output_dir", str(out),
    ]  # fmt: skip
    summary = train(load_config(overrides=flags))
    recorded = json.loads((out / "config.json").read_text())
    assert recorded["vocab_size"] == summary["vocab_size"] == 512
    assert recorded["tokenizer"] == str(out / "tokenizer")
    assert recorded["num_params"] < 200_000  # the output layer no longer dominates
    assert (out / "final" / "tokenizer.json").is_file()
