"""Several engines on one node: ``--backend.data_parallel_size`` against one engine and raw vLLM.

One run, the same job for every contender: N Lee-corpus documents x the "wiki" prompt x G
samples, temperature 1, M new tokens, the embedded SmolLM2-135M-Instruct on vLLM.

- pipeline, 1 engine: ``hf_megadocs.generation.generate.generate`` (what ``hf-megadocs
  generate`` runs) into an empty store, one engine on every core;
- pipeline, K engines: the same with ``data_parallel_size=K``: K engine processes, each
  pinned to 1/K of the cores, each writing its own store file;
- raw vLLM: ``vllm.LLM.chat`` on the same requests (plain ``SamplingParams``, no seeds,
  no store), on an engine started with the arguments the pipeline gives its engine (every
  core).

Engine start is reported apart from generation. "gen tok/s" is completion tokens per second
of generation (for K engines: all their tokens over the slowest engine's generation time);
"end-to-end" is the whole call, engine start(s) and reading the source included. Prints a
Markdown table; run it on a quiet machine (it says how loaded the machine was).

    python benchmarks/bench_data_parallel.py --docs 48 --samples 2 --max-new-tokens 128
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def run_pipeline(args: argparse.Namespace, engines: int) -> dict:
    """One ``generate`` call with ``engines`` engines into a fresh store."""
    from hf_megadocs.generation.backends import BackendConfig
    from hf_megadocs.generation.generate import GenerationConfig, generate
    from hf_megadocs.generation.sources import SourceConfig
    from hf_megadocs.generation.splits import SplitConfig
    from hf_megadocs.records import SamplingConfig

    with tempfile.TemporaryDirectory(prefix="bench-dp-") as store:
        config = GenerationConfig(
            source=SourceConfig(source="embedded", max_docs=args.docs),
            split=SplitConfig(validation_fraction=0.0),
            sampling=SamplingConfig(
                temperature=1.0, top_p=1.0, max_new_tokens=args.max_new_tokens, seed=0
            ),
            backend=BackendConfig(backend="vllm", data_parallel_size=engines, dtype=args.dtype),
            num_samples=args.samples,
            store_dir=store,
            batch_size=args.batch_size,
        )
        started = time.perf_counter()
        summary = generate(config)
        total = time.perf_counter() - started
    cores = len(os.sched_getaffinity(0))
    return {
        "contender": f"pipeline, {engines} engine(s)",
        "layout": f"{engines} x {cores // engines} core(s)",
        "start_s": summary.startup_s,
        "gen_s": summary.wall_s,
        "tokens": summary.completion_tokens,
        "requests": summary.generated,
        "total_s": total,
    }


def run_raw(args: argparse.Namespace) -> dict:
    """Raw ``LLM.chat`` on the pipeline's requests, engine started as the pipeline does."""
    from bench_generation import build  # the sibling script (sys.path[0])
    from vllm import SamplingParams

    from hf_megadocs.generation.backends import BackendConfig, Workload
    from hf_megadocs.generation.backends.vllm_backend import VLLMBackend

    started = time.perf_counter()
    config = BackendConfig(backend="vllm", dtype=args.dtype)
    requests = build(args.docs, args.max_new_tokens, config, samples=args.samples)
    begin = time.perf_counter()
    backend = VLLMBackend(config, workload=Workload(requests=requests, batch_size=len(requests)))
    start_s = time.perf_counter() - begin
    try:
        params = SamplingParams(temperature=1.0, top_p=1.0, max_tokens=args.max_new_tokens)
        begin = time.perf_counter()
        results = backend.llm.chat(
            [list(r.messages) for r in requests], sampling_params=params, use_tqdm=False
        )
        gen_s = time.perf_counter() - begin
    finally:
        backend.close()
    return {
        "contender": "raw vLLM (LLM.chat)",
        "layout": f"1 x {len(os.sched_getaffinity(0))} core(s)",
        "start_s": start_s,
        "gen_s": gen_s,
        "tokens": sum(len(r.outputs[0].token_ids) for r in results),
        "requests": len(results),
        "total_s": time.perf_counter() - started,
    }


def engine_split(args: argparse.Namespace) -> list[int]:
    """How many of the job's documents each of the ``--engines`` engines owns: the split is
    by document hash, even over many documents and lumpy over a handful."""
    from hf_megadocs.generation.data_parallel import engine_shard
    from hf_megadocs.generation.sources import SourceConfig, load_source
    from hf_megadocs.generation.survey import shard_of

    docs = list(load_source(SourceConfig(source="embedded", max_docs=args.docs)))
    counts = []
    for engine in range(args.engines):
        index, shards = engine_shard(0, 1, engine, args.engines)
        counts.append(sum(shard_of(d.source_id, shards) == index for d in docs))
    return counts


def load_note() -> str:
    """The 1-minute load average and what other processes used, in one line."""
    import psutil

    load1, _, _ = os.getloadavg()
    processes = [p for p in psutil.process_iter() if p.pid != os.getpid()]
    for process in processes:  # the first reading only starts psutil's clock
        try:
            process.cpu_percent()
        except psutil.Error:
            pass
    time.sleep(1.0)
    used, busy = 0.0, 0
    for process in processes:
        try:
            share = process.cpu_percent()
        except psutil.Error:
            continue
        used, busy = used + share, busy + (share > 5)
    return (
        f"load average (1 min) {load1:.2f} on {os.cpu_count()} cores; other processes used "
        f"{used:.0f}% of a core in total over 1 s ({busy} of them above 5%)"
    )


def _printed(row: dict) -> dict:
    """Print ``row`` as a table line at once (a long run killed later keeps what it had)."""
    print(
        f"| {row['contender']} | {row['layout']} | {row['start_s']:.1f} | {row['gen_s']:.1f} "
        f"| {row['requests']} | {row['tokens']} | {row['tokens'] / row['gen_s']:.0f} "
        f"| {row['total_s']:.1f} | {row['tokens'] / row['total_s']:.0f} |",
        flush=True,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=48, help="48: a 27/21 split on 2 engines")
    parser.add_argument("--samples", type=int, default=2, help="G samples per document")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--engines", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--dtype", default="auto")
    args = parser.parse_args()

    from bench_generation import machine

    print(f"machine: {machine()}")
    print(f"before: {load_note()}")
    print(f"documents per engine (by source_id hash): {engine_split(args)}")
    print(
        f"job: {args.docs} docs x G={args.samples}, max_new_tokens={args.max_new_tokens}, "
        f"dtype={args.dtype}\n"
    )
    print("| contender | engines x cores | engine start (s) | generation (s) | requests "
          "| completion tokens | gen tok/s | end-to-end (s) | end-to-end tok/s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|", flush=True)
    rows = [
        _printed(run_pipeline(args, 1)),
        _printed(run_pipeline(args, args.engines)),
        _printed(run_raw(args)),
    ]
    print(f"after: {load_note()}")
    one, many, raw = rows
    print(
        f"\n{args.engines} engines / 1 engine, gen tok/s: "
        f"{(many['tokens'] / many['gen_s']) / (one['tokens'] / one['gen_s']):.2f}; "
        f"end-to-end: {(many['tokens'] / many['total_s']) / (one['tokens'] / one['total_s']):.2f}"
    )
    print(
        "pipeline (1 engine) / raw vLLM, gen tok/s: "
        f"{(one['tokens'] / one['gen_s']) / (raw['tokens'] / raw['gen_s']):.2f}"
    )


if __name__ == "__main__":
    main()
