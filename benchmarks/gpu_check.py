"""The GPU check: what can be measured on one lent H100/H200 in under 10 minutes, in one file.

Nothing is fetched on the GPU machine (vLLM's CUDA wheel is too large to carry), so this
measures what runs with the image's PyTorch plus a few carried wheels (``gpu_check.sh``):

- ``train_eager`` / ``train_compile``: ``hf_megadocs.training.train`` itself on the
  ``paper_300m`` config (the paper's 300M Llama, Llama 3's 128k vocabulary, seq 4096,
  global batch 64, micro-batch 8, bf16), eager and with ``--compile true``. tokens/s is read
  from the run's per-step ``metrics.jsonl`` after the warm-up steps
  (``bench_training.loop_tokens_per_s``: setup, eval and checkpoints not counted), and MFU
  from it: 6·N·tokens/s with N the parameters that multiply (all but the input embedding),
  and the same plus attention's 12·layers·hidden·seq FLOPs per token (PaLM's count), over
  the device's dense bf16 peak. A micro-batch that runs out of GPU memory is halved (the
  global batch stays 64) and the halving is recorded.
- ``generate``: ``transformers`` ``generate`` throughput (greedy, every row forced to
  ``new_tokens`` tokens) of a randomly initialised Llama of SmolLM2-135M's shape, at a few
  batch sizes; the weights do not change the speed.
- ``data``: the data path on generated text: ``tokenize_corpus`` with the Llama 3 tokenizer,
  then packing and collation into every training batch (``bench_packing.ours_pack_collate``).

The training corpus is generated text (seeded pseudo-words), so no dataset is needed.
Each part runs in its own process (a fresh accelerate state, an out-of-memory error kept
to one part) under a share of ``--budget-s``; the results file is rewritten after each
part, so a part cut off still leaves the others' figures.

    python benchmarks/gpu_check.py --out DIR           # full, one CUDA GPU (see gpu_check.sh)
    python benchmarks/gpu_check.py --smoke --out DIR   # tiny sizes on CPU, seconds (CI)

Writes ``DIR/gpu_check.json`` and ``DIR/gpu_check.md``; exits 1 when a part failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PARTS = ("data", "train_eager", "generate", "train_compile")
"""In running order: the compiled run is last, as the one most likely to run long."""
PEAK_BF16_TFLOPS = {"H100 PCIe": 756.0, "H100": 989.4, "H200": 989.4, "A100": 312.0}
"""Dense bf16 peaks from the vendor's data sheets (SXM parts unless named), first match wins."""
SMOLLM2_135M = dict(
    vocab_size=49152,
    hidden_size=576,
    intermediate_size=1536,
    num_hidden_layers=30,
    num_attention_heads=9,
    num_key_value_heads=3,
    max_position_embeddings=2048,
    tie_word_embeddings=True,
)
"""The generation model's shape (SmolLM2-135M's config), randomly initialised."""


@dataclass(frozen=True)
class Sizes:
    """Everything the two modes size differently."""

    train_documents: int
    data_documents: int
    words_per_document: tuple[int, int]
    model_flags: tuple[str, ...]
    """Flags over the paper_300m config (empty: its own model)."""
    seq_len: int
    global_batch_size: int
    micro_batch_size: int
    warmup: int
    steps: int
    generation_model: dict[str, Any]
    generation_batches: tuple[int, ...]
    prompt_tokens: int
    new_tokens: int
    part_timeout_s: dict[str, float] = field(default_factory=dict)


FULL = Sizes(
    train_documents=400,
    data_documents=4000,
    words_per_document=(200, 2500),
    model_flags=(),
    seq_len=4096,
    global_batch_size=64,
    micro_batch_size=8,
    warmup=2,
    steps=6,
    generation_model=SMOLLM2_135M,
    generation_batches=(1, 16, 64),
    prompt_tokens=128,
    new_tokens=128,
    part_timeout_s={"data": 90, "train_eager": 150, "generate": 90, "train_compile": 270},
)
SMOKE = Sizes(
    train_documents=40,
    data_documents=40,
    words_per_document=(20, 80),
    model_flags=(
        "--model.hidden_size",
        "32",
        "--model.intermediate_size",
        "64",
        "--model.num_hidden_layers",
        "2",
        "--model.num_attention_heads",
        "2",
    ),
    seq_len=64,
    global_batch_size=4,
    micro_batch_size=2,
    warmup=1,
    steps=1,
    generation_model=dict(
        vocab_size=512,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=128,
    ),
    generation_batches=(1, 2),
    prompt_tokens=8,
    new_tokens=4,
    part_timeout_s={"data": 120, "train_eager": 180, "generate": 120, "train_compile": 0},
)


def documents(count: int, words: tuple[int, int], seed: int = 0) -> list[str]:
    """``count`` documents of seeded pseudo-words (their speed is what matters, not text)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    syllables = [a + b for a in "bdfgklmnprstvz" for b in ("a", "e", "i", "o", "u", "ai", "ou")]
    vocabulary = ["".join(rng.choice(syllables, size=rng.integers(1, 4))) for _ in range(3000)]
    out = []
    for _ in range(count):
        n = int(rng.integers(words[0], words[1] + 1))
        picked = rng.choice(vocabulary, size=n)
        out.append(". ".join(" ".join(picked[i : i + 12]) for i in range(0, n, 12)) + ".")
    return out


# ---------------------------------------------------------------------------- parts


def _device() -> tuple[Any, str]:
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda"), torch.cuda.get_device_name()
    return torch.device("cpu"), f"CPU ({os.cpu_count()} cores)"


def peak_tflops(device_name: str) -> float | None:
    """The dense bf16 peak of ``device_name`` (None when unknown, e.g. a CPU)."""
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in device_name), None)


def part_train(sizes: Sizes, work: Path, *, compile: bool, micro: int, peak: float | None) -> dict:
    """One run of the real trainer on the paper_300m config; tokens/s, MFU, memory."""
    import torch
    from bench_training import loop_tokens_per_s  # benchmarks/ is on sys.path

    from hf_megadocs.analysis.compute import mfu
    from hf_megadocs.training.loop import train
    from hf_megadocs.training.presets import load_config

    corpus = work / "train.jsonl"
    if not corpus.exists():
        rows = documents(sizes.train_documents, sizes.words_per_document, seed=1)
        corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in rows))
    output_dir = work / f"run_{'compile' if compile else 'eager'}_{micro}"
    device, _ = _device()
    flags = [
        *sizes.model_flags,
        "--data.real_path",
        str(corpus),
        "--data.synthetic_corpus",
        "null",
        "--mix.synthetic_share",
        "0",
        "--data.seq_len",
        str(sizes.seq_len),
        "--data.validation_docs",
        "8",
        "--eval.max_docs",
        "2",
        "--eval.long_context_docs",
        "0",
        "--mix.global_batch_size",
        str(sizes.global_batch_size),
        "--micro_batch_size",
        str(micro),
        "--max_steps",
        str(sizes.warmup + sizes.steps),
        "--log_every",
        "1",
        "--eval_every",
        "0",
        "--save_every",
        "0",
        "--log_with",
        "none",
        "--mixed_precision",
        "bf16" if device.type == "cuda" else "no",
        "--compile",
        "true" if compile else "false",
        "--output_dir",
        str(output_dir),
    ]
    config = load_config("paper_300m", flags)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    summary = train(config)
    wall = time.perf_counter() - started
    tokens_per_s = loop_tokens_per_s(output_dir, sizes.warmup)
    first = json.loads((output_dir / "metrics.jsonl").read_text().splitlines()[0])
    model = config.model
    vocab = model.vocab_size or summary["vocab_size"]
    # The input embedding is a lookup, not a matrix product; a tied one is also the head.
    multiplying = summary["num_params"] - (
        0 if model.tie_word_embeddings else vocab * model.hidden_size
    )
    attention = 12 * model.num_hidden_layers * model.hidden_size * sizes.seq_len
    result = {
        "compile": compile,
        "tokens_per_s": tokens_per_s,
        "step_s": sizes.global_batch_size * sizes.seq_len / tokens_per_s,
        "first_step_s": first["tokens"] / first["tokens_per_s"],
        "wall_s": wall,
        "num_params": summary["num_params"],
        "multiplying_params": multiplying,
        "vocab_size": vocab,
        "seq_len": sizes.seq_len,
        "global_batch_size": sizes.global_batch_size,
        "micro_batch_size": micro,
        "gradient_accumulation_steps": summary["gradient_accumulation_steps"],
        "precision": config.mixed_precision,
        "timed_steps": sizes.steps,
        "warmup_steps": sizes.warmup,
        "final_loss": summary["iid_loss"],
    }
    if peak:
        result["peak_tflops"] = peak
        result["mfu"] = mfu(multiplying, tokens_per_s, peak * 1e12)
        result["mfu_with_attention"] = (6 * multiplying + attention) * tokens_per_s / (peak * 1e12)
    if device.type == "cuda":
        result["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return result


def part_generate(sizes: Sizes) -> dict:
    """Greedy ``generate`` tokens/s of a random SmolLM2-135M-shaped Llama per batch size."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    device, _ = _device()
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    config = LlamaConfig(**sizes.generation_model, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    model = LlamaForCausalLM(config).to(device=device, dtype=dtype).eval()
    rows = []
    for batch in sizes.generation_batches:
        ids = torch.randint(3, config.vocab_size, (batch, sizes.prompt_tokens), device=device)
        kwargs = dict(do_sample=False, pad_token_id=0, attention_mask=torch.ones_like(ids))
        with torch.inference_mode():
            model.generate(ids, max_new_tokens=2, min_new_tokens=2, **kwargs)  # warm-up
            _sync(device)
            started = time.perf_counter()
            out = model.generate(
                ids, max_new_tokens=sizes.new_tokens, min_new_tokens=sizes.new_tokens, **kwargs
            )
            _sync(device)
            seconds = time.perf_counter() - started
        new = (out.shape[1] - ids.shape[1]) * batch
        rows.append(
            {"batch": batch, "new_tokens": new, "seconds": seconds, "tokens_per_s": new / seconds}
        )
    params = sum(p.numel() for p in model.parameters())
    return {
        "model": "random Llama, SmolLM2-135M's shape" if sizes is FULL else "random tiny Llama",
        "num_params": params,
        "dtype": str(dtype).removeprefix("torch."),
        "prompt_tokens": sizes.prompt_tokens,
        "attn_implementation": model.config._attn_implementation,
        "batches": rows,
    }


def part_data(sizes: Sizes) -> dict:
    """Tokenize, then pack and collate every batch, on generated text; tokens/s of each."""
    from bench_packing import ours_pack_collate  # benchmarks/ is on sys.path
    from datasets import Dataset

    from hf_megadocs.training.data.tokenize import tokenize_corpus
    from hf_megadocs.training.model import load_tokenizer
    from hf_megadocs.training.presets import load_config

    tokenizer = load_tokenizer(load_config("paper_300m").model)
    texts = documents(sizes.data_documents, sizes.words_per_document, seed=2)
    dataset = Dataset.from_dict({"text": texts})
    started = time.perf_counter()
    tokenized = tokenize_corpus(dataset, tokenizer)
    tokenize_s = time.perf_counter() - started
    tokens = int(sum(tokenized["num_tokens"]))
    started = time.perf_counter()
    packed, collated, pad = ours_pack_collate(tokenized, sizes.seq_len, sizes.global_batch_size)
    pack_s = time.perf_counter() - started
    return {
        "documents": len(texts),
        "characters": sum(map(len, texts)),
        "tokens": tokens,
        "tokenizer": "llama3 (paper_300m's)",
        "tokenize_s": tokenize_s,
        "tokenize_tokens_per_s": tokens / tokenize_s,
        "sequences": len(packed),
        "collated_tokens": collated,
        "padding_tokens": pad,
        "pack_collate_s": pack_s,
        "pack_collate_tokens_per_s": tokens / pack_s,
        "seq_len": sizes.seq_len,
        "batch_size": sizes.global_batch_size,
    }


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def run_part(name: str, sizes: Sizes, work: Path, micro: int) -> dict:
    """Part ``name`` in this process; errors come back as ``{"error": ...}``."""
    try:
        if name == "data":
            return part_data(sizes)
        if name == "generate":
            return part_generate(sizes)
        _, device_name = _device()
        return part_train(
            sizes, work, compile=name == "train_compile", micro=micro, peak=peak_tflops(device_name)
        )
    except Exception as error:  # noqa: BLE001 - one part's failure is a result to record
        import torch

        oom = isinstance(error, torch.OutOfMemoryError)
        return {
            "error": f"{type(error).__name__}: {error}"[:2000],
            "out_of_memory": oom,
            "traceback": traceback.format_exc()[-4000:],
        }


# ---------------------------------------------------------------------------- driver


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, required=True, help="folder for gpu_check.json/.md")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, on CPU, in seconds")
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {PARTS}")
    p.add_argument("--budget-s", type=float, default=540, help="wall budget of all parts")
    p.add_argument("--in-process", action="store_true", help="run parts in this process")
    p.add_argument("--micro-batch-size", type=int, default=None, help="first micro-batch tried")
    p.add_argument("--part", help=argparse.SUPPRESS)  # one part, in a child process
    p.add_argument("--part-json", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    unknown = set(args.parts.split(",")) - set(PARTS)
    if unknown:
        p.error(f"--parts: unknown {sorted(unknown)}; choose from {', '.join(PARTS)}")
    return args


def _child(args: argparse.Namespace, name: str, work: Path, micro: int, timeout: float) -> dict:
    """Part ``name`` in a child process (fresh accelerate state; memory freed on exit)."""
    result_path = work / f"{name}_{micro}.json"
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--out",
        str(args.out),
        "--part",
        name,
        "--part-json",
        str(result_path),
        "--workdir",
        str(work),
        "--micro-batch-size",
        str(micro),
        *(["--smoke"] if args.smoke else []),
    ]
    try:
        done = subprocess.run(command, check=False, timeout=timeout, capture_output=True, text=True)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s", "out_of_memory": False}
    if result_path.is_file():
        return json.loads(result_path.read_text())
    return {"error": f"exit {done.returncode}: {done.stderr[-2000:]}", "out_of_memory": False}


def environment() -> dict[str, Any]:
    """The device and the versions the figures were taken with."""
    import torch
    import transformers

    _, device_name = _device()
    return {
        "device": device_name,
        "host": platform.node(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "torch_threads": torch.get_num_threads(),
    }


def write_results(out: Path, result: dict[str, Any]) -> None:
    """``gpu_check.json`` and a Markdown summary ``gpu_check.md`` (rewritten atomically)."""
    out.mkdir(parents=True, exist_ok=True)
    for name, text in (
        ("gpu_check.json", json.dumps(result, indent=2)),
        ("gpu_check.md", markdown(result)),
    ):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text + "\n")
        os.replace(tmp, out / name)


def markdown(result: dict[str, Any]) -> str:
    """The figures as Markdown tables."""
    env, parts = result["environment"], result["parts"]
    lines = [
        f"# GPU check ({'smoke' if result['smoke'] else 'full'}), {result['started']}",
        "",
        (
            f"{env['device']}; torch {env['torch']} (CUDA {env['cuda']}), transformers "
            f"{env['transformers']}, Python {env['python']}."
        ),
        "",
    ]
    train = [(n, parts[n]) for n in ("train_eager", "train_compile") if n in parts]
    if train:
        lines += [
            (
                "| trainer (paper_300m) | tokens/s | step s | first step s | MFU (6N) | "
                "MFU (+attention) | micro × accumulation | peak GiB |"
            ),
            "|---" * 8 + "|",
        ]
        for name, r in train:
            if "error" in r or "skipped" in r:
                lines.append(f"| {name} | {r.get('error') or r.get('skipped')} |||||||")
                continue
            lines.append(
                f"| {name} | {r['tokens_per_s']:,.0f} | {r['step_s']:.2f} | {r['first_step_s']:.1f}"
                f" | {_pct(r.get('mfu'))} | {_pct(r.get('mfu_with_attention'))} | "
                f"{r['micro_batch_size']} × {r['gradient_accumulation_steps']} | "
                f"{r.get('peak_memory_gib', float('nan')):.1f} |"
            )
        lines.append("")
    gen = parts.get("generate", {})
    if "batches" in gen:
        lines += [
            f"Generation: {gen['model']}, {gen['dtype']}, prompt {gen['prompt_tokens']} tokens.",
            "",
            "| batch | new tokens | s | tokens/s |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {b['batch']} | {b['new_tokens']} | {b['seconds']:.2f} | {b['tokens_per_s']:,.0f} |"
            for b in gen["batches"]
        ]
        lines.append("")
    data = parts.get("data", {})
    if "tokens" in data:
        lines += [
            (
                f"Data path: {data['tokens']:,} tokens ({data['documents']} documents): "
                f"tokenize {data['tokenize_tokens_per_s']:,.0f} tokens/s, pack + collate "
                f"{data['pack_collate_tokens_per_s']:,.0f} tokens/s "
                f"({data['sequences']} × {data['seq_len']} rows)."
            ),
            "",
        ]
    failed = {
        n: r.get("error") or r.get("skipped")
        for n, r in parts.items()
        if "error" in r or "skipped" in r
    }
    lines += [f"- {n}: {why}" for n, why in failed.items()]
    return "\n".join(lines)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    sizes = SMOKE if args.smoke else FULL
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:  # bench_training, bench_packing
        sys.path.insert(0, here)
    if args.part:  # a child: one part, its result to --part-json
        micro = args.micro_batch_size or sizes.micro_batch_size
        result = run_part(args.part, sizes, args.workdir, micro)
        args.part_json.write_text(json.dumps(result, indent=2))
        return 0
    device, _ = _device()
    if not args.smoke and device.type != "cuda":
        sys.exit("no CUDA GPU here: the full check is for one H100/H200; use --smoke on a CPU")
    started, deadline = time.perf_counter(), time.perf_counter() + args.budget_s
    result: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "smoke": args.smoke,
        "command": " ".join([sys.executable, __file__, *(sys.argv[1:] if argv is None else argv)]),
        "environment": environment(),
        "sizes": asdict(sizes),
        "parts": {},
    }
    micro = args.micro_batch_size or sizes.micro_batch_size
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        os.environ.setdefault("HF_DATASETS_CACHE", str(Path(tmp) / "datasets"))
        for name in [p for p in PARTS if p in args.parts.split(",")]:
            timeout = min(sizes.part_timeout_s.get(name, 60), deadline - time.perf_counter())
            if sizes.part_timeout_s.get(name) == 0:
                result["parts"][name] = {"skipped": "not run in smoke mode (inductor on CPU)"}
            elif timeout < 20:
                result["parts"][name] = {"skipped": f"budget spent ({args.budget_s:.0f} s)"}
            else:
                result["parts"][name] = _run_with_halving(args, name, Path(tmp), micro, deadline)
                if name == "train_eager" and "micro_batch_size" in result["parts"][name]:
                    micro = result["parts"][name]["micro_batch_size"]  # what fitted
            result["wall_s"] = time.perf_counter() - started
            write_results(args.out, result)
    print((args.out / "gpu_check.md").read_text())
    return 1 if any("error" in r for r in result["parts"].values()) else 0


def _run_with_halving(
    args: argparse.Namespace, name: str, work: Path, micro: int, deadline: float
) -> dict:
    """Run a part; a training part out of GPU memory is retried at half the micro-batch."""
    sizes = SMOKE if args.smoke else FULL
    halved: list[int] = []
    while True:
        timeout = min(sizes.part_timeout_s[name], deadline - time.perf_counter())
        if timeout < 20:
            result = {"error": f"budget spent ({args.budget_s:.0f} s)", "out_of_memory": False}
            break
        if args.in_process:
            result = run_part(name, sizes, work, micro)
        else:
            result = _child(args, name, work, micro, timeout)
        if not (result.get("out_of_memory") and name.startswith("train") and micro > 1):
            break
        halved.append(micro)
        micro //= 2
    if halved:
        result["out_of_memory_at_micro_batch"] = halved
    return result


if __name__ == "__main__":
    sys.exit(main())
