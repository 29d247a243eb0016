"""The one place that builds the command starting a training run.

Every job that trains (the main job, sweeps, the study runner, SynPro's rounds) and every
text that tells a person how to train (the dataset card) gets its ``accelerate launch -m
hf_megadocs.train ...`` command from :func:`launch_command`, so flags, process counts and
the entry point are spelled one way. The entry point is the installed module, so a wheel
install trains without a checkout.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Sequence

TRAIN_MODULE = "hf_megadocs.train"
"""The training entry point, an installed module (``accelerate launch -m``)."""


def launch_command(
    train_args: Sequence[str],
    *,
    num_processes: int = 1,
    launcher: Sequence[str] | None = None,
    recipe: str | None = None,
    portable: bool = False,
) -> list[str]:
    """``accelerate launch [...] -m hf_megadocs.train <train_args>`` as an argument list.

    Args:
        train_args: training flags (``--config``, ``--section.field V``, ...).
        num_processes: processes per run; more than one adds ``--multi_gpu`` (gloo on CPU).
        launcher: a custom prefix replacing ``accelerate launch ...`` (``srun torchrun ...``).
        recipe: a training script to run instead of the installed module (a copy of
            ``recipes/train.py`` a user edited, say).
        portable: spell the command for a person's shell (``accelerate launch``) instead of
            this interpreter's absolute path.
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
    # accelerate and torchrun both spell "run this module" as -m.
    entry = [recipe] if recipe else ["-m", TRAIN_MODULE]
    return [*launcher, *entry, *train_args]


def shell_line(command: Sequence[str]) -> str:
    """The command as one shell line."""
    return shlex.join(command)


def run_training(command: Sequence[str]) -> int:
    """Run a launch command, offline unless told otherwise; its exit code."""
    env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    return subprocess.run(list(command), env=env, check=False).returncode


__all__ = ["TRAIN_MODULE", "launch_command", "run_training", "shell_line"]
