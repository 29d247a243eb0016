"""The Accelerator of a training run: CPU or GPU processes, exact accumulation, trackers.

On a machine without CUDA a multi-process launch runs on gloo (accelerate chooses its CPU
backend only when told); the gradient accumulation is sized so that micro-batch ×
processes × accumulation is exactly the global batch.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hf_megadocs.extras import require
from hf_megadocs.training.config import TrainConfig
from hf_megadocs.training.nodes import check_shared_folder

if TYPE_CHECKING:
    from accelerate import Accelerator

logger = logging.getLogger(__name__)


def _cpu_processes() -> bool:
    """Whether this is a multi-process launch on a machine without CUDA (use gloo on CPU).

    Accelerate picks its CPU backend for torchrun-style launches (``accelerate launch
    --multi_gpu``, ``torchrun``) only when told to use the CPU; we tell it when there is no
    GPU. ``accelerate launch --cpu --num_processes N`` starts N processes only through MPI
    (``--mpirun_hostfile``); without it one process runs, which we say loudly.
    """
    import torch

    world = int(os.environ.get("WORLD_SIZE") or os.environ.get("PMI_SIZE") or 1)
    use_cpu = os.environ.get("ACCELERATE_USE_CPU", "false").lower() in ("1", "true", "yes")
    if use_cpu and world == 1 and "MASTER_ADDR" in os.environ:
        logger.warning(
            "accelerate launch --cpu --num_processes N>1 without --mpirun_hostfile starts ONE "
            "process (accelerate's CPU multi-process launch needs MPI); training continues on one "
            "process with more gradient accumulation (same results). For N CPU processes use: "
            "accelerate launch --multi_gpu --num_processes N -m hf_megadocs.train ... (gloo is "
            "used when there is no GPU) or torchrun --nproc_per_node N -m hf_megadocs.train ..."
        )
    return world > 1 and not torch.cuda.is_available()


def make_accelerator(config: TrainConfig) -> Accelerator:
    """The Accelerator, with accumulation sized so the global batch is exact."""
    from accelerate import Accelerator, PartialState
    from accelerate.utils import ProjectConfiguration, set_seed

    log_with = None if config.log_with == "none" else config.log_with
    if log_with == "wandb":
        try:
            import wandb  # noqa: F401
        except ImportError as err:
            raise ImportError("log_with='wandb' needs wandb: pip install wandb") from err
    if log_with == "tensorboard":  # the default; accelerate would drop it with a debug message
        require(
            "tensorboard",
            "tensorboard",
            "Training with log_with='tensorboard' (the default)",
            otherwise="train without it: --log_with none",
        )
    cpu = _cpu_processes()
    world_size = PartialState(cpu=cpu).num_processes
    output_dir = Path(config.output_dir)
    accelerator = Accelerator(
        gradient_accumulation_steps=config.gradient_accumulation_steps(world_size),
        mixed_precision=config.mixed_precision,
        log_with=log_with,
        project_config=ProjectConfiguration(
            project_dir=str(output_dir), logging_dir=str(output_dir / "logs")
        ),
        step_scheduler_with_optimizer=False,  # we step it once per optimizer step ourselves
        dynamo_backend="inductor" if config.compile else None,
        cpu=cpu,
    )
    set_seed(config.seed)
    # Several processes (nodes) must share the run folder: rank 0 alone writes checkpoints.
    check_shared_folder(accelerator, output_dir)
    return accelerator


def flat_hparams(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Tracker hyperparameters: nested dicts flattened to ``a.b`` keys, values as scalars."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(flat_hparams(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return out


__all__ = ["flat_hparams", "make_accelerator"]
