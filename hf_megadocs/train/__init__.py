"""The Accelerate trainer: config tree and presets, optimizer, data, evaluation, loop.

``train(load_config("recipes/configs/tiny_cpu.yaml"))`` runs a training job;
``accelerate launch recipes/train.py --config ...`` is the command-line entry point.
"""

from hf_megadocs.train.config import (
    DataConfig,
    EvalConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
    load_config,
)
from hf_megadocs.train.loop import train
from hf_megadocs.train.presets import PRESETS, get_preset

__all__ = [
    "PRESETS",
    "DataConfig",
    "EvalConfig",
    "ModelConfig",
    "OptimConfig",
    "TrainConfig",
    "get_preset",
    "load_config",
    "train",
]
