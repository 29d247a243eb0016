"""``hf-megadocs generate``: fill the generation store for a source corpus and print a summary.

Also runnable as ``python -m hf_megadocs.generate_cli``. vLLM starts its workers with
spawn, so this module does its work only under ``main()``, never at import time.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING

from hf_megadocs.backends import BackendConfig
from hf_megadocs.prompts import PROMPT_IDS
from hf_megadocs.records import SamplingConfig
from hf_megadocs.requests import CONTEXT_POLICIES
from hf_megadocs.sources import SourceConfig

if TYPE_CHECKING:
    from hf_megadocs.generate import GenerationConfig


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``hf-megadocs generate``."""
    parser = argparse.ArgumentParser(
        prog="hf-megadocs generate",
        description="Generate the missing rephrases of a source corpus into the generation store.",
    )
    src = parser.add_argument_group("source")
    src.add_argument(
        "--source",
        default="embedded",
        help="embedded | embedded-long | .jsonl/.json/.parquet file or dir | HF dataset",
    )
    src.add_argument("--text-column", default="text")
    src.add_argument("--id-column", default=None, help="id column (default: hash of the text)")
    src.add_argument("--split", default="train", help="dataset split (HF datasets)")
    src.add_argument("--dataset-config", default=None, help="dataset configuration (HF datasets)")
    src.add_argument("--max-docs", type=int, default=None)
    src.add_argument("--on-bad-input", choices=("error", "warn", "skip"), default="warn")
    src.add_argument(
        "--validation-fraction",
        type=float,
        default=0.05,
        help="share of docs held out (never generated from); 0.05 = the builder's default",
    )
    src.add_argument("--split-seed", type=int, default=0)

    gen = parser.add_argument_group("generation")
    gen.add_argument(
        "--prompt", default="wiki", choices=[p for p in PROMPT_IDS if p != "rationale"]
    )
    gen.add_argument("--prompt-template-file", default=None, help="replace the prompt's wording")
    gen.add_argument("--num-samples", type=int, default=4, help="G, generations per document")
    gen.add_argument("--max-new-tokens", type=int, default=1024)
    gen.add_argument("--temperature", type=float, default=1.0)
    gen.add_argument("--top-p", type=float, default=1.0)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--context-policy", choices=CONTEXT_POLICIES, default="truncate")

    eng = parser.add_argument_group("backend")
    eng.add_argument(
        "--backend", choices=("auto", "vllm", "openai", "transformers", "dummy"), default="auto"
    )
    eng.add_argument(
        "--generator", default=None, help="model id or path (default: embedded SmolLM2)"
    )
    eng.add_argument("--revision", default=None, help="hub revision of --generator")
    eng.add_argument(
        "--base-url", default=None, help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1"
    )
    eng.add_argument("--dtype", default="auto")
    eng.add_argument("--max-model-len", type=int, default=None)
    eng.add_argument("--gpu-memory-utilization", type=float, default=None)
    eng.add_argument(
        "--kv-cache-memory-gb",
        type=float,
        default=None,
        help="explicit vLLM KV-cache size (overrides the memory share for it)",
    )
    eng.add_argument("--tensor-parallel-size", type=int, default=1)
    eng.add_argument("--data-parallel-size", type=int, default=1)
    eng.add_argument("--enforce-eager", action="store_true")
    eng.add_argument("--lora-path", default=None)
    eng.add_argument("--max-concurrency", type=int, default=16, help="openai backend")
    eng.add_argument("--device", default=None, help="transformers backend device")
    # Test hook: per-request delay of the dummy backend (lets tests kill a run mid-way).
    eng.add_argument("--dummy-delay-s", type=float, default=0.0, help=argparse.SUPPRESS)

    out = parser.add_argument_group("store and sharding")
    out.add_argument("--store-dir", default="~/.cache/hf_megadocs/store")
    out.add_argument("--num-shards", type=int, default=None)
    out.add_argument("--shard-index", type=int, default=None)
    out.add_argument(
        "--batch-size", type=int, default=256, help="requests per backend call and per store flush"
    )
    return parser


def config_from_args(args: argparse.Namespace) -> GenerationConfig:
    """The :class:`~hf_megadocs.generate.GenerationConfig` the parsed flags describe."""
    from hf_megadocs.generate import GenerationConfig

    return GenerationConfig(
        source=SourceConfig(
            source=args.source,
            text_column=args.text_column,
            id_column=args.id_column,
            split=args.split,
            dataset_config=args.dataset_config,
            max_docs=args.max_docs,
            on_bad_input=args.on_bad_input,
        ),
        prompt_id=args.prompt,
        prompt_template_file=args.prompt_template_file,
        num_samples=args.num_samples,
        sampling=SamplingConfig(
            temperature=args.temperature,
            top_p=args.top_p,
            max_new_tokens=args.max_new_tokens,
            seed=args.seed,
        ),
        backend=BackendConfig(
            backend=args.backend,
            generator=args.generator,
            revision=args.revision,
            base_url=args.base_url,
            dtype=args.dtype,
            max_model_len=args.max_model_len,
            gpu_memory_utilization=args.gpu_memory_utilization,
            kv_cache_memory_gb=args.kv_cache_memory_gb,
            tensor_parallel_size=args.tensor_parallel_size,
            data_parallel_size=args.data_parallel_size,
            enforce_eager=args.enforce_eager,
            lora_path=args.lora_path,
            max_concurrency=args.max_concurrency,
            device=args.device,
        ),
        store_dir=args.store_dir,
        num_shards=args.num_shards,
        shard_index=args.shard_index,
        batch_size=args.batch_size,
        context_policy=args.context_policy,
        validation_fraction=args.validation_fraction,
        split_seed=args.split_seed,
    )


def main(argv: list[str] | None = None) -> int:
    """Run ``hf-megadocs generate``; returns the exit status (2 for a bad configuration)."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    from hf_megadocs.generate import generate

    backend = None
    if args.backend == "dummy":
        from hf_megadocs.backends.dummy import DummyBackend

        backend = DummyBackend(
            generator=args.generator or "dummy-generator", delay_s=args.dummy_delay_s
        )
    try:
        summary = generate(config_from_args(args), backend=backend)
    except ValueError as error:  # configuration and input mistakes: the message says the fix
        print(f"hf-megadocs generate: error: {error}", file=sys.stderr)
        return 2
    print(summary.as_table())
    return 1 if summary.errors else 0


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    sys.exit(main())
