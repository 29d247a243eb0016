"""The trainer's packing path holds a bounded amount of memory, however large the corpus."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

MEASURE = r"""
import json, sys, threading, time
from datasets import load_from_disk
from hf_megadocs.training.data.packing import PackConfig, pack

def anonymous_kib():  # private memory: what an out-of-memory kill counts, not mapped files
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1])

units = load_from_disk(sys.argv[1])
peak, done = [0], threading.Event()
def watch():
    while not done.is_set():
        peak[0] = max(peak[0], anonymous_kib())
        time.sleep(0.002)
base = anonymous_kib()
threading.Thread(target=watch, daemon=True).start()
packed = pack(units, PackConfig(seq_len=2048, attention="document"), cache_dir=sys.argv[2])
done.set()
print(json.dumps({"base_kib": base, "peak_kib": max(peak[0], anonymous_kib()),
                  "tokens": packed.stats.packed_tokens, "rows": len(packed)}))
"""


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
        [sys.executable, "-c", MEASURE, str(tmp_path / "units"), str(tmp_path / "packed")],
        capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["tokens"] == rows * length - (rows * length) % 2048
    growth_mib = (result["peak_kib"] - result["base_kib"]) / 1024
    # Held in memory, the packed ids, roles and positions alone would be 360 MB.
    assert growth_mib < 100, result
    (entry,) = (tmp_path / "packed").iterdir()
    assert (entry / "input_ids.npy").stat().st_size >= 4 * result["tokens"]
