"""Training throughput: the hf_megadocs Accelerate loop vs a plain ``transformers.Trainer``.

Same model (a fresh Llama, by default ~29M parameters with SmolLM2's 49k vocabulary:
hidden 256, FFN 1024, 4 layers, 4 heads, untied), same data (the Lee news corpus
tokenized and packed once into ``--seq-len`` rows by ``hf_megadocs.training.data.packing``), same batch
(``--batch-size`` sequences per optimizer step, one process, no accumulation), same AdamW
settings, fp32 on CPU (``--bf16`` on a GPU). Each side runs ``--warmup`` steps that are
not timed, then ``--steps`` timed steps; the two runs alternate ``--rounds`` times so
background load hits both alike. tokens/s counts the positions of the batches
(``batch × seq_len`` per step). MFU = ``6·N·tokens/s / peak`` is printed when
``--peak-tflops`` is given (e.g. 989 for an H100's dense bf16).

Our side runs ``hf_megadocs.training.train`` itself (data build, sampler, per-stream and
per-role loss, metrics.jsonl); its tokens/s is read from the per-step ``metrics.jsonl``
records of the timed steps, so setup, end-of-run eval and checkpoint are not counted.

Usage: ``python benchmarks/bench_training.py [--steps 20] [--warmup 3] [--rounds 2]``
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--steps", type=int, default=20, help="timed optimizer steps per run")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps before timing")
    p.add_argument("--rounds", type=int, default=2, help="alternating runs per side")
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--ffn", type=int, default=1024)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--bf16", action="store_true", help="bf16 mixed precision (GPU)")
    p.add_argument("--peak-tflops", type=float, default=None, help="device peak for MFU")
    p.add_argument(
        "--loss",
        choices=("chunked", "plain"),
        default="chunked",
        help="our loss path; 'plain' builds the full logits, as the Trainer side does",
    )
    return p.parse_args(argv)


def _corpus_file(workdir: Path) -> Path:
    from gensim.test.utils import datapath

    lines = Path(datapath("lee_background.cor")).read_text(encoding="latin-1").splitlines()
    path = workdir / "lee.txt"
    path.write_text("\n".join(line for line in lines if line.strip()) + "\n")
    return path


def _config(args: argparse.Namespace, corpus: Path, output_dir: Path):
    from hf_megadocs.training.presets import load_config

    return load_config(
        None,
        [
            "--data.real_path",
            str(corpus),
            "--data.synthetic_corpus",
            "null",
            "--mix.synthetic_share",
            "0",
            "--data.seq_len",
            str(args.seq_len),
            "--loss.implementation",
            args.loss,
            "--data.validation_docs",
            "8",
            "--model.hidden_size",
            str(args.hidden),
            "--model.intermediate_size",
            str(args.ffn),
            "--model.num_hidden_layers",
            str(args.layers),
            "--model.num_attention_heads",
            str(args.heads),
            "--model.max_position_embeddings",
            str(max(args.seq_len, 512)),
            "--mix.global_batch_size",
            str(args.batch_size),
            "--micro_batch_size",
            str(args.batch_size),
            "--mix.real_epochs",
            "8",
            "--optim.lr",
            "1e-3",
            "--optim.weight_decay",
            "0.1",
            "--max_steps",
            str(args.warmup + args.steps),
            "--eval_every",
            "0",
            "--save_every",
            "0",
            "--eval.max_docs",
            "1",
            "--eval.long_context_docs",
            "0",
            "--log_with",
            "none",
            "--mixed_precision",
            "bf16" if args.bf16 else "no",
            "--output_dir",
            str(output_dir),
        ],
    )


def run_ours(args: argparse.Namespace, corpus: Path, output_dir: Path) -> float:
    """tokens/s of hf_megadocs.training.train over the timed steps."""
    from hf_megadocs.training.loop import train

    train(_config(args, corpus, output_dir))
    return loop_tokens_per_s(output_dir, args.warmup)


def loop_tokens_per_s(output_dir: Path, warmup: int) -> float:
    """tokens/s of a finished ``hf_megadocs.training.train`` run over its steps after
    ``warmup``, read from ``metrics.jsonl`` (setup, eval and checkpoints not counted)."""
    lines = (output_dir / "metrics.jsonl").read_text().splitlines()
    records = [r for r in map(json.loads, lines) if r["kind"] == "train"]
    timed = [(p, c) for p, c in zip(records, records[1:]) if c["step"] > warmup]
    if not timed:
        raise ValueError(f"{output_dir}/metrics.jsonl has no train record after step {warmup}")
    return sum(c["tokens"] - p["tokens"] for p, c in timed) / sum(_step_seconds(records, warmup))


def _step_seconds(records: list[dict], warmup: int) -> list[float]:
    """Wall seconds of each timed step, from consecutive per-step records."""
    train_records = [r for r in records if r["kind"] == "train"]
    out = []
    for prev, cur in zip(train_records, train_records[1:]):
        if cur["step"] > warmup:
            out.append((cur["tokens"] - prev["tokens"]) / cur["tokens_per_s"])
    return out


def run_trainer(args: argparse.Namespace, corpus: Path, output_dir: Path) -> tuple[float, int]:
    """tokens/s of a plain transformers.Trainer on the same packed rows; also returns N params."""
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from hf_megadocs.training.data.packing import PackConfig, pack
    from hf_megadocs.training.data.streams import load_stream
    from hf_megadocs.training.data.tokenize import tokenize_corpus
    from hf_megadocs.training.model import build_model, load_tokenizer

    config = _config(args, corpus, output_dir)
    torch.manual_seed(config.seed)
    tokenizer = load_tokenizer(config.model)
    model = build_model(config.model, tokenizer, config.data.seq_len)
    train_split = load_stream(None, str(corpus), {}, "corpus")["train"]
    packed = pack(
        tokenize_corpus(train_split, tokenizer), PackConfig(seq_len=args.seq_len, seed=config.seed)
    )

    class Rows(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(packed)

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            ids = torch.from_numpy(packed.input_ids[i].astype("int64"))
            return {"input_ids": ids, "labels": ids}

    class StepTimes(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []

        def on_step_end(self, *_, **__) -> None:
            self.times.append(time.perf_counter())

    timer = StepTimes()
    training_args = TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=1,
        max_steps=args.warmup + args.steps,
        learning_rate=1e-3,
        weight_decay=0.1,
        adam_beta1=0.9,
        adam_beta2=0.95,
        adam_epsilon=1e-8,
        max_grad_norm=1.0,
        lr_scheduler_type="cosine",
        warmup_steps=1,
        bf16=args.bf16,
        logging_strategy="no",
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        dataloader_num_workers=0,
        use_cpu=not torch.cuda.is_available(),
        seed=config.seed,
        disable_tqdm=True,
    )
    Trainer(model=model, args=training_args, train_dataset=Rows(), callbacks=[timer]).train()
    elapsed = timer.times[-1] - timer.times[args.warmup - 1]
    return args.steps * args.batch_size * args.seq_len / elapsed, sum(
        p.numel() for p in model.parameters()
    )


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    if args.warmup < 1 or args.steps < 2:
        sys.exit("--warmup must be >= 1 and --steps >= 2")
    import torch

    from hf_megadocs.analysis.compute import mfu

    ours, theirs = [], []
    n_params = 0
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        corpus = _corpus_file(work)
        for r in range(args.rounds):
            ours.append(run_ours(args, corpus, work / f"ours_{r}"))
            tok_s, n_params = run_trainer(args, corpus, work / f"trainer_{r}")
            theirs.append(tok_s)
    device = (
        torch.cuda.get_device_name()
        if torch.cuda.is_available()
        else f"CPU ({os.cpu_count()} cores)"
    )
    print(
        f"\nTraining throughput, {device}, {torch.get_num_threads()} torch threads, "
        f"{n_params / 1e6:.1f}M params, batch {args.batch_size}×{args.seq_len}, "
        f"{'bf16' if args.bf16 else 'fp32'}, {args.steps} timed steps after {args.warmup} warm-up, "
        f"{args.rounds} alternating rounds\n"
    )
    header = "| trainer | tokens/s (best) | tokens/s (mean) | vs Trainer |"
    if args.peak_tflops:
        header += " MFU |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    best_theirs = max(theirs)
    for name, values in (("hf_megadocs loop (Accelerate)", ours), ("transformers.Trainer", theirs)):
        row = (
            f"| {name} | {max(values):,.0f} | {sum(values) / len(values):,.0f} | "
            f"{max(values) / best_theirs:.2f}× |"
        )
        if args.peak_tflops:
            row += f" {mfu(n_params, max(values), args.peak_tflops * 1e12):.1%} |"
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
