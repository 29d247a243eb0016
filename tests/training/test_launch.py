"""The one training command (hf_megadocs.training.launch)."""

from __future__ import annotations

import sys

from hf_megadocs.training.launch import RECIPE, launch_command, repo_root, shell_line


def test_local_commands_use_this_interpreter_and_the_checkout():
    command = launch_command(["--max_steps", "2"], num_processes=2)
    assert command[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert "--multi_gpu" in command and command[command.index("--num_processes") + 1] == "2"
    assert command[-3:] == [str(repo_root() / RECIPE), "--max_steps", "2"]


def test_portable_commands_read_as_a_person_types_them():
    assert shell_line(launch_command(["--preset", "tiny_cpu"], portable=True)) == (
        "accelerate launch recipes/train.py --preset tiny_cpu"
    )
    custom = launch_command(["--x", "1"], launcher=["srun", "torchrun"], recipe="train.py")
    assert custom == ["srun", "torchrun", "train.py", "--x", "1"]
