"""The run's Accelerator (hf_megadocs.training.accelerator)."""

from __future__ import annotations

from hf_megadocs.training.accelerator import make_accelerator
from hf_megadocs.training.presets import load_config


def test_accumulation_makes_the_global_batch_exact(tmp_path):
    config = load_config(
        overrides=[
            "--preset",
            "tiny_cpu",
            "--mix.global_batch_size",
            "8",
            "--micro_batch_size",
            "2",
            "--log_with",
            "none",
            "--output_dir",
            str(tmp_path),
        ]
    )
    accelerator = make_accelerator(config)
    try:
        assert accelerator.num_processes == 1
        assert accelerator.gradient_accumulation_steps == 4  # 2 × 1 process × 4 = 8
    finally:
        accelerator.end_training()
