"""The trainer's packing path holds a bounded amount of memory, however large the corpus."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[3]


def measure_script() -> str:
    """The benchmark's measuring script (one copy for the benchmark and this test)."""
    spec = importlib.util.spec_from_file_location(
        "bench_packing_memory", ROOT / "benchmarks" / "bench_packing_memory.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.MEASURE


@pytest.mark.slow
def test_packing_a_corpus_far_larger_than_its_buffer_stays_in_bounded_memory(tmp_path):
    from datasets import Dataset

    rows, length = 10_000, 4_000  # 40M tokens: 160 MB of ids alone, 40x the packing chunk

    def units():
        for i in range(rows):
            yield {
                "input_ids": np.arange(i, i + length, dtype=np.int32) % 50_000,
                "roles": np.zeros(length, dtype=np.int8),
                "doc_starts": np.arange(0, length, 1_000, dtype=np.int64),
                "num_tokens": length,
            }

    data = Dataset.from_generator(units, cache_dir=str(tmp_path / "cache"))
    data.save_to_disk(str(tmp_path / "units"), max_shard_size="64MB")
    done = subprocess.run(
        [sys.executable, "-c", measure_script(), str(tmp_path / "units"), str(tmp_path / "packed")],
        capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["tokens"] == rows * length - (rows * length) % 2048
    growth_mib = result["growth_mib"]
    # Held in memory, the packed ids, roles and positions alone would be 360 MB.
    assert growth_mib < 100, result
    (entry,) = (tmp_path / "packed").iterdir()
    assert (entry / "input_ids.npy").stat().st_size >= 4 * result["tokens"]
