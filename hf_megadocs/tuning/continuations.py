"""One continued pre-training run from a checkpoint, launched like any training run.

Both arms of a round use it: the rounds' continuation on real data plus the union of
round corpora (:mod:`~hf_megadocs.tuning.rounds`), and the repetition-only control arm on
organic data alone (:mod:`~hf_megadocs.tuning.control_arm`). The settings start from the
checkpoint's own run (``config.json``), so model, tokenizer, evaluation documents and batch
are the checkpoint's; only what the caller changes differs between the arms.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def continue_pretraining(
    run_info: dict[str, Any],
    checkpoint: Path,
    output_dir: Path,
    config_path: Path,
    *,
    changes: dict[str, dict[str, Any]],
    max_steps: int | None,
    num_processes: int = 1,
    train_flags: list[str] | None = None,
) -> dict[str, Any]:
    """``recipes/train.py --continue_from checkpoint`` with the checkpoint's run settings
    (``run_info``) updated section by section by ``changes`` (``{"data": {...}, "mix":
    {...}, "optim": {...}}``), through accelerate; returns what the run reached.

    A killed run resumes its own steps when called again (``resume_from_checkpoint``
    latest); a finished one is not trained again.
    """
    import yaml

    from hf_megadocs.training.config import TrainConfig
    from hf_megadocs.training.launch import launch_command, run_training, shell_line

    settings = json.loads(json.dumps(run_info))
    for section, values in changes.items():
        settings[section].update(values)
    settings["model"].update(tokenizer=run_info["tokenizer"], train_tokenizer_vocab=None)
    settings.update(
        output_dir=str(output_dir),
        continue_from=str(checkpoint),
        resume_from_checkpoint="latest",  # a killed continuation resumes its own steps
        max_steps=max_steps,
        preset=None,
    )
    train_config = TrainConfig.from_dict(settings)  # validated here, before any launch
    config_path.write_text(yaml.safe_dump(train_config.to_dict(), sort_keys=False))
    command = launch_command(
        ["--config", str(config_path), *(train_flags or [])], num_processes=num_processes
    )
    logger.info("continuing pre-training: %s", shell_line(command))
    code = run_training(command)
    if code != 0:
        raise RuntimeError(
            f"the continuation exited with {code}: {shell_line(command)}; fix the cause and "
            "run hf-megadocs rounds again (it resumes from the last checkpoint)."
        )
    return reached(output_dir, shell_line(command))


def reached(output_dir: Path, command: str | None = None) -> dict[str, Any]:
    """A finished run's step, losses, unique real tokens and plan, from ``summary.json``."""
    from hf_megadocs.training.optim import warmup_steps

    summary = json.loads((output_dir / "summary.json").read_text())
    return {
        "output_dir": str(output_dir),
        "command": command,
        "steps": summary["steps"],
        "iid_loss": summary.get("iid_loss"),
        "selection_loss": summary.get("selection_loss"),
        "long_context_loss": summary.get("long_context_loss"),
        "real_tokens": summary.get("real_tokens"),
        "total_steps": summary.get("total_steps"),
        "wall_s": summary.get("wall_s"),
        "warmup_steps": warmup_steps(
            summary.get("total_steps") or 0, summary["optim"]["warmup_fraction"]
        ),
    }


__all__ = ["continue_pretraining", "reached"]
