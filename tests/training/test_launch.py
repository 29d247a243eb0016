"""The one training command (hf_megadocs.training.launch) and the bundled configs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from hf_megadocs.configs import CONFIG_DIR, bundled_config_names, with_bundled_configs
from hf_megadocs.flags import ConfigError
from hf_megadocs.training import load_config
from hf_megadocs.training.launch import TRAIN_MODULE, launch_command, shell_line

ROOT = Path(__file__).resolve().parents[2]


def test_local_commands_use_this_interpreter_and_the_installed_module():
    command = launch_command(["--max_steps", "2"], num_processes=2)
    assert command[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert "--multi_gpu" in command and command[command.index("--num_processes") + 1] == "2"
    assert command[-4:] == ["-m", TRAIN_MODULE, "--max_steps", "2"]


def test_portable_commands_read_as_a_person_types_them():
    assert shell_line(launch_command(["--preset", "tiny_cpu"], portable=True)) == (
        "accelerate launch -m hf_megadocs.train --preset tiny_cpu"
    )
    custom = launch_command(["--x", "1"], launcher=["srun", "torchrun"], recipe="train.py")
    assert custom == ["srun", "torchrun", "train.py", "--x", "1"]


def test_bundled_configs_are_named_and_the_checkout_links_to_them():
    assert {"tiny_cpu", "paper_300m", "study_cpu", "study_gpu"} <= set(bundled_config_names())
    assert (ROOT / "recipes" / "configs").resolve() == CONFIG_DIR
    assert with_bundled_configs(["--config", "tiny_cpu", "--x", "1"]) == [
        "--config", str(CONFIG_DIR / "tiny_cpu.yaml"), "--x", "1",
    ]  # fmt: skip
    assert with_bundled_configs(["--config=study_cpu.yaml"]) == [
        f"--config={CONFIG_DIR / 'study_cpu.yaml'}"
    ]


def test_a_name_and_a_path_give_the_same_training_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # names resolve wherever the command runs
    by_name = load_config(overrides=["--config", "tiny_cpu"])
    by_path = load_config(overrides=["--config", str(ROOT / "recipes/configs/tiny_cpu.yaml")])
    assert by_name == by_path and by_name.preset is None
    local = tmp_path / "tiny_cpu.yaml"  # a file in the working folder wins over the bundled one
    local.write_text("max_steps: 3\n")
    assert load_config(overrides=["--config", "tiny_cpu.yaml"]).max_steps == 3


def test_an_unknown_config_lists_the_bundled_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="nor a bundled config .*tiny_cpu"):
        load_config(overrides=["--config", "tiny_gpu"])
