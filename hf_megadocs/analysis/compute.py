"""Training compute: the 6·N·D estimate of FLOPs and model FLOPs utilisation (MFU).

Attention FLOPs are left out (the usual 6·N·D convention), so figures compare runs of the
same context length fairly and slightly undercount long contexts.
"""

from __future__ import annotations


def training_flops(num_params: int, tokens: int) -> float:
    """FLOPs of training ``num_params`` parameters on ``tokens`` tokens: ``6 · N · D``."""
    return 6.0 * num_params * tokens


def mfu(num_params: int, tokens_per_s: float, peak_flops: float) -> float:
    """Model FLOPs utilisation: ``6 · N · tokens/s / peak_flops`` (attention FLOPs ignored)."""
    return training_flops(num_params, 1) * tokens_per_s / peak_flops


__all__ = ["mfu", "training_flops"]
