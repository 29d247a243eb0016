"""Publishing cost: export + dataset card of a stitched_g32-sized corpus, vs plain datasets I/O.

Builds ``stitched_g32`` and ``simple_g32`` from the embedded Lee corpus (all 300
documents) with the dummy backend (a real store and real assembly; only the text of the
generations is synthetic echo, ``--max-new-tokens`` words each), then times:

- hf_megadocs ``push_to_hub(dry_run=True)``: Parquet shards + provenance + card +
  local validation: the whole folder that would be uploaded;
- a re-push of the same corpus into a second folder: every file must be byte-identical
  (that is why the Hub receives nothing new);
- the peers on the same ``DatasetDict``: ``Dataset.to_parquet`` of each split (what
  ``DatasetDict.push_to_hub`` writes per shard, minus the upload) and ``save_to_disk``.

Usage: ``python benchmarks/bench_publish.py [--max-new-tokens 128] [--tokenizer words]``.
Pass ``--tokenizer PATH`` to time token counting with a real tokenizer as well.
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import datasets  # noqa: E402

from hf_megadocs.corpora.load import load_corpus  # noqa: E402
from hf_megadocs.hub.export import push_to_hub  # noqa: E402


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--tokenizer", default="words")
    args = parser.parse_args()
    datasets.disable_progress_bars()
    work = Path(tempfile.mkdtemp(prefix="bench_publish_"))
    kwargs = {
        "backend": "dummy",
        "max_new_tokens": args.max_new_tokens,
        "long_doc_min_words": None,
        "store_dir": str(work / "store"),
        "cache_dir": str(work / "hf_cache"),
    }
    names = ["stitched_g32", "simple_g32"]
    started = time.perf_counter()
    built = {name: load_corpus(name, **kwargs) for name in names}
    build_s = time.perf_counter() - started
    rows = {n: sum(len(s) for s in d.values()) for n, d in built.items()}
    arrow_mb = sum(s.data.nbytes for d in built.values() for s in d.values()) / 1e6

    timings: list[tuple[str, float, float]] = []

    started = time.perf_counter()
    first = push_to_hub(
        "bench/lee",
        names,
        dry_run=True,
        local_dir=work / "push1",
        tokenizer=args.tokenizer,
        **kwargs,
    )
    timings.append(
        (
            "hf_megadocs push_to_hub(dry_run) [Parquet + card]",
            time.perf_counter() - started,
            _size_mb(first.local_dir),
        )
    )
    started = time.perf_counter()
    second = push_to_hub(
        "bench/lee",
        names,
        dry_run=True,
        local_dir=work / "push2",
        tokenizer=args.tokenizer,
        **kwargs,
    )
    timings.append(
        (
            "hf_megadocs re-push of the same corpus",
            time.perf_counter() - started,
            _size_mb(second.local_dir),
        )
    )
    identical = _digests(first.local_dir) == _digests(second.local_dir)

    started = time.perf_counter()
    for name, dataset_dict in built.items():
        for split, dataset in dataset_dict.items():
            dataset.to_parquet(str(work / "peer_parquet" / name / f"{split}.parquet"))
    timings.append(
        (
            "datasets Dataset.to_parquet (per split, no card)",
            time.perf_counter() - started,
            _size_mb(work / "peer_parquet"),
        )
    )
    started = time.perf_counter()
    for name, dataset_dict in built.items():
        dataset_dict.save_to_disk(str(work / "peer_disk" / name))
    timings.append(
        (
            "datasets DatasetDict.save_to_disk (Arrow)",
            time.perf_counter() - started,
            _size_mb(work / "peer_disk"),
        )
    )

    print(
        f"Corpus: {', '.join(f'{n} {rows[n]:,} rows' for n in names)}; "
        f"{arrow_mb:.1f} MB in Arrow; build (dummy backend, not timed below) {build_s:.1f} s; "
        f"token column: {args.tokenizer}\n"
    )
    print("| step | seconds | output MB | Arrow MB/s |")
    print("|---|---:|---:|---:|")
    for step, seconds, size in timings:
        print(f"| {step} | {seconds:.2f} | {size:.1f} | {arrow_mb / seconds:.1f} |")
    print(f"\nRe-push byte-identical ({len(_digests(first.local_dir))} files): {identical}")


if __name__ == "__main__":
    main()
