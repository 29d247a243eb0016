"""Training compute (hf_megadocs.analysis.compute)."""

from __future__ import annotations

import pytest

from hf_megadocs.analysis.compute import mfu, training_flops


def test_six_n_d_and_mfu():
    assert training_flops(300_000_000, 1_000) == 6 * 300e6 * 1e3
    # 300M params at 100k tok/s on a 989 TFLOP/s (bf16 dense) accelerator:
    assert mfu(300_000_000, 100_000, 989e12) == pytest.approx(0.182, abs=1e-3)
