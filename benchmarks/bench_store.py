"""How fast the generation store writes, indexes and reads ~100k generations.

Usage::

    python benchmarks/bench_store.py [--num-records 100000] [--text-chars 3000] [--dir DIR]

Writes the records in batches of 256 (flush + fsync per batch, as a generation run does),
then opens the store cold from its persisted index (what every corpus build pays), looks
up every key one by one and in one vectorised call, reads back 10k random generations, and
opens it once more after deleting the index (the rebuild from the JSONL). Prints a Markdown
table with the memory the open store holds.
"""

from __future__ import annotations

import argparse
import platform
import random
import shutil
import tempfile
import time
import tracemalloc
from pathlib import Path

from hf_megadocs.generation.store import GenerationStore
from hf_megadocs.records import Generation


def _generation(i: int, text: str) -> Generation:
    return Generation(
        key=f"{random.Random(i).getrandbits(128):032x}",
        source_id=f"doc-{i // 32}",
        prompt_id="wiki",
        prompt_hash="0123456789abcdef",
        generator="bench",
        generator_revision="0",
        sampling={"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 1024, "seed": 0},
        sample_index=i % 32,
        input_part="",
        text=text,
        raw_text=text,
        prompt_tokens=1300,
        completion_tokens=700,
        finish_reason="stop",
        flags=(),
        backend="bench",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-records", type=int, default=100_000)
    parser.add_argument("--text-chars", type=int, default=3000, help="≈700 tokens of English")
    parser.add_argument("--dir", default=None, help="store location (default: a temp dir)")
    args = parser.parse_args()
    root = Path(args.dir or tempfile.mkdtemp(prefix="bench_store_"))
    words = "the river valley council report measured record season coast".split()
    rng = random.Random(0)
    text = " ".join(rng.choice(words) for _ in range(args.text_chars // 6))[: args.text_chars]
    try:
        store = GenerationStore(root)
        started = time.perf_counter()
        with store.writer() as writer:
            for start in range(0, args.num_records, 256):
                stop = min(start + 256, args.num_records)
                writer.append([_generation(i, text) for i in range(start, stop)])
        write_s = time.perf_counter() - started
        size_mb = sum(p.stat().st_size for p in root.rglob("*.jsonl")) / 1e6

        del store
        index_mb = sum(p.stat().st_size for p in (root / "index").glob("*.idx")) / 1e6
        tracemalloc.start()
        started = time.perf_counter()
        cold = GenerationStore(root)
        index_s = time.perf_counter() - started
        held_mb = tracemalloc.get_traced_memory()[0] / 1e6
        tracemalloc.stop()
        keys = list(cold.keys())
        started = time.perf_counter()
        hits = sum(key in cold for key in keys)
        contains_s = time.perf_counter() - started
        started = time.perf_counter()
        vector_hits = int(cold.contains(keys).sum())
        vector_s = time.perf_counter() - started
        sample = random.Random(1).sample(keys, min(10_000, len(keys)))
        started = time.perf_counter()
        found = cold.get_many(sample)
        read_s = time.perf_counter() - started
        for path in (root / "index").glob("*.idx"):
            path.unlink()
        started = time.perf_counter()
        rebuilt = GenerationStore(root)
        rebuild_s = time.perf_counter() - started
        assert hits == vector_hits == len(keys) == args.num_records and len(found) == len(sample)
        assert rebuilt.keys() == set(keys)
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)

    n = args.num_records
    print(
        f"Machine: {platform.machine()}, {platform.python_implementation()} "
        f"{platform.python_version()}; {n} records, {size_mb:.0f} MB of JSONL, "
        f"{index_mb:.1f} MB of index; the open store holds {held_mb:.1f} MB "
        f"({held_mb * 1e6 / n:.0f} B/record, Python allocations)\n"
    )
    print("| step | seconds | rate |")
    print("|---|---|---|")
    print(f"| write (256/batch, fsync) | {write_s:.2f} | {n / write_s:,.0f} records/s |")
    print(f"| cold open (persisted index) | {index_s:.2f} | {n / index_s:,.0f} records/s |")
    print(f"| `key in store` for every key | {contains_s:.3f} | {n / contains_s:,.0f} lookups/s |")
    print(f"| `store.contains(keys)`, one call | {vector_s:.3f} | {n / vector_s:,.0f} lookups/s |")
    print(
        f"| cold open, index deleted (rebuild) | {rebuild_s:.2f} | {n / rebuild_s:,.0f} records/s |"
    )
    rate = len(sample) / read_s
    print(f"| get_many, {len(sample)} random keys | {read_s:.2f} | {rate:,.0f} records/s |")


if __name__ == "__main__":
    main()
