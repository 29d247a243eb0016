"""The trainer's packing path holds a bounded amount of memory, however large the corpus."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import rss_file_kib

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


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux madvise")
def test_packing_scattered_short_units_keeps_the_mapped_file_mostly_unresident(
    tmp_path, monkeypatch
):
    """Each shuffled unit is read at its own place, and each read can map a large folio
    around it, so counting only the bytes read once let a whole tokenized file become
    resident."""
    import threading

    import pyarrow as pa
    from datasets import Dataset, load_from_disk

    from hf_megadocs import mapped_pages
    from hf_megadocs.training.data.packing import PackConfig, pack

    units, length = 10_000, 4_000  # 40M tokens: a 200 MB Arrow file of 20 KB units
    offsets = pa.array(np.arange(0, (units + 1) * length, length, dtype=np.int32))
    doc_offsets = pa.array(np.arange(units + 1, dtype=np.int32))
    table = pa.table({
        "input_ids": pa.ListArray.from_arrays(
            offsets, pa.array(np.arange(units * length, dtype=np.int32) % 50_000)),
        "roles": pa.ListArray.from_arrays(offsets, pa.array(np.zeros(units * length, np.int8))),
        "doc_starts": pa.ListArray.from_arrays(doc_offsets, pa.array(np.zeros(units, np.int32))),
        "num_tokens": pa.array(np.full(units, length, dtype=np.int32)),
    })  # fmt: skip
    Dataset(table).save_to_disk(str(tmp_path / "units"))  # written: its pages are cached
    data = load_from_disk(str(tmp_path / "units"))
    monkeypatch.setattr(mapped_pages, "RELEASE_EVERY_BYTES", 32 << 20)
    base, peak, done = rss_file_kib(), [0], threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_file_kib() - base)
            time.sleep(0.001)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        packed = pack(data, PackConfig(seq_len=2048, attention="document"),
                      cache_dir=tmp_path / "packed")  # fmt: skip
    finally:
        done.set()
        watcher.join()
    assert packed.stats.units == units
    # The 32 MiB budget, spent by one chunk's places; without them counted this reached
    # nearly the whole 200 MB file.
    assert peak[0] < 100 << 10, f"file-backed RSS grew {peak[0] >> 10} MiB while packing"
