"""The one place that builds the command starting a training run.

Every job that trains (the main job, sweeps, the study runner) and every text that tells a
person how to train (the dataset card) gets its ``accelerate launch recipes/train.py ...``
command from :func:`launch_command`, so flags, process counts and the recipe path are
spelled one way.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

RECIPE = "recipes/train.py"
"""The training entry point, relative to a checkout of hf_megadocs."""


def repo_root() -> Path:
    """The checkout holding ``recipes/`` (the package lives next to it)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / RECIPE).is_file():
        raise FileNotFoundError(
            f"{RECIPE} not found next to the package ({root}); run training jobs from a "
            "checkout of hf_megadocs (git clone ... && make demo)."
        )
    return root


def launch_command(
    train_args: Sequence[str],
    *,
    num_processes: int = 1,
    launcher: Sequence[str] | None = None,
    recipe: str | None = None,
    portable: bool = False,
) -> list[str]:
    """``accelerate launch [...] recipes/train.py <train_args>`` as an argument list.

    Args:
        train_args: flags of ``recipes/train.py`` (``--config``, ``--section.field V``, ...).
        num_processes: processes per run; more than one adds ``--multi_gpu`` (gloo on CPU).
        launcher: a custom prefix replacing ``accelerate launch ...`` (``srun torchrun ...``).
        recipe: the entry point; default this checkout's ``recipes/train.py``.
        portable: spell the command for a person's shell (``accelerate launch``, the recipe
            relative to the checkout) instead of this interpreter's absolute paths.
    """
    if num_processes < 1:
        raise ValueError(f"num_processes must be >= 1, got {num_processes}.")
    processes = ["--multi_gpu", "--num_processes", str(num_processes)] if num_processes > 1 else []
    if launcher is None and portable:
        launcher = ["accelerate", "launch", *processes]
    elif launcher is None:
        launcher = [
            *(sys.executable, "-m", "accelerate.commands.launch"),
            *(processes or ["--num_processes", "1"]),
            # The run's own config sets precision and compilation; these only silence
            # accelerate's "defaults were used" warning.
            *("--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"),
        ]
    recipe = recipe or (RECIPE if portable else str(repo_root() / RECIPE))
    return [*launcher, recipe, *train_args]


def shell_line(command: Sequence[str]) -> str:
    """The command as one shell line."""
    return shlex.join(command)


def run_training(command: Sequence[str]) -> int:
    """Run a launch command from the checkout, offline unless told otherwise; its exit code."""
    env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    return subprocess.run(list(command), env=env, cwd=repo_root(), check=False).returncode


__all__ = ["RECIPE", "launch_command", "repo_root", "run_training", "shell_line"]
