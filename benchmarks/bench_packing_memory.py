"""Private memory of packing a corpus far larger than the packer's chunk: the trainer's
out-of-core path (``pack(cache_dir=...)``: rows written to ``.npy`` files in 1M-token
chunks) against packing into memory (``pack()``), side by side on the same dataset.

The dataset is ``--rows`` units of ``--length`` tokens (in 1,000-token documents), saved to
disk in 64 MB Arrow shards, as a tokenized corpus sits in the ``datasets`` cache. Each
packer runs in its own fresh process; a thread samples ``RssAnon`` (private memory: what
an out-of-memory kill counts; mapped files are not in it) every 2 ms.

Usage: ``python benchmarks/bench_packing_memory.py [--rows 10000] [--length 4000]``.
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile

import numpy as np

MEASURE = r"""
import json, sys, threading, time
from datasets import load_from_disk
from hf_megadocs.training.data.packing import PackConfig, pack

def anonymous_kib():
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
start = time.perf_counter()
cache = sys.argv[2] if sys.argv[2] != "-" else None
packed = pack(units, PackConfig(seq_len=2048, attention="document"), cache_dir=cache)
seconds = time.perf_counter() - start
done.set()
print(json.dumps({"growth_mib": (max(peak[0], anonymous_kib()) - base) / 1024,
                  "seconds": seconds, "tokens": packed.stats.packed_tokens}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--length", type=int, default=4_000)
    args = parser.parse_args()
    from datasets import Dataset

    def units():
        for i in range(args.rows):
            yield {
                "input_ids": np.arange(i, i + args.length, dtype=np.int32) % 50_000,
                "roles": np.zeros(args.length, dtype=np.int8),
                "doc_starts": np.arange(0, args.length, 1_000, dtype=np.int64),
                "num_tokens": args.length,
            }

    with tempfile.TemporaryDirectory() as tmp:
        data = Dataset.from_generator(units, cache_dir=f"{tmp}/cache")
        data.save_to_disk(f"{tmp}/units", max_shard_size="64MB")
        results = {}
        for name, cache in (("out of core (trainer)", f"{tmp}/packed"), ("in memory", "-")):
            done = subprocess.run(
                [sys.executable, "-c", MEASURE, f"{tmp}/units", cache],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            results[name] = json.loads(done.stdout.strip().splitlines()[-1])
    tokens = args.rows * args.length
    print(f"{tokens / 1e6:.0f}M tokens, document attention, seq_len 2048\n")
    print("| packer | private memory growth (MiB) | seconds |")
    print("|---|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {r['growth_mib']:.1f} | {r['seconds']:.2f} |")
    ratio = results["in memory"]["growth_mib"] / max(
        results["out of core (trainer)"]["growth_mib"], 1e-9
    )
    print(f"\nin memory / out of core: {ratio:.1f}x the private memory")


if __name__ == "__main__":
    main()
