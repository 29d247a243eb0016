"""The Accelerate trainer: config tree and presets, optimizer, data, evaluation, loop.

:mod:`~.config` (the ``TrainConfig`` tree), :mod:`~.presets` (the papers' tuned settings as
functions), :mod:`~.optim`, :mod:`~.data` (tokenize, pack, mix, collate), :mod:`~.model`,
:mod:`~.evaluation`, :mod:`~.checkpoint` and :mod:`~.loop`. Entry point:
``train(load_config("tiny_cpu"))``, or ``hf-megadocs train --config ...`` (``accelerate
launch -m hf_megadocs.train ...``) from the command line. Uses :mod:`hf_megadocs.corpora`.
"""

from typing import Any

from hf_megadocs.training.config import (
    DataConfig,
    EvalConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
)
from hf_megadocs.training.presets import PRESETS, get_preset, load_config


def train(config: TrainConfig) -> dict[str, Any]:
    """Run a training job (:func:`hf_megadocs.training.loop.train`; imports torch only now)."""
    from hf_megadocs.training.loop import train as run

    return run(config)


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
