"""Fixtures of the tuning tests: a tiny checkpoint of this project's trainer."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.helpers import lee_text_file, tiny_train_flags


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """The output_dir of a 2-step real-only run of recipes/train.py (a Llama of hidden 32 on
    the Lee corpus, ~8 s), checkpointed at its last step (``checkpoints/step_2``)."""
    from hf_megadocs.training import load_config, train

    root = tmp_path_factory.mktemp("tiny_run")
    out = root / "run"
    flags = tiny_train_flags(lee_text_file(root), out, "--max_steps", "2", "--save_every", "2")
    train(load_config(overrides=flags))
    assert (out / "checkpoints" / "latest").read_text() == "step_2"
    return out
