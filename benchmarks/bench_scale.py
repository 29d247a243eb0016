"""The paper's workload, scaled down and extrapolated: store → corpora → first training step.

Paper-shaped documents (``--doc-words`` words each, ≈1,300 tokens) × G = 32 with the
``dummy`` backend (it echoes about half the prompt: ≈700-token generations, so a stitched
megadoc is ≈24k tokens, the paper's size), at each
``--docs`` size. Every step runs in its own fresh process and is measured from outside
(wall time; peak RSS of the largest process of its tree from ``wait4``; and, sampled
every 50 ms, the largest private (``RssAnon``) and file-backed (``RssFile``: mapped
Arrow and packed files, reclaimable) parts of any process of the tree):

1. fill: plan ``stitched_g32`` and generate every missing rephrase into the store;
2. cold open: open the store (its persisted index);
3. build ``stitched_g32`` and ``simple_g32`` with ``load_dataset`` (store reads only);
4. ``accelerate launch recipes/train.py --max_steps 2``: load both corpora, tokenize,
   pack out of core, two optimizer steps of the ``tiny_cpu`` model;
5. side by side, the same tokenized ``stitched_g32`` units (the trainer's cache files)
   packed again as the trainer does (``pack(cache_dir=...)``, out of core) and by the old
   in-memory path (``pack()``), each in a fresh process. The in-memory packer is skipped
   where it would need more than ``--in-memory-limit-gib`` (≈9.7 B/token, measured), and
   the estimate is printed instead.

Then per step the growth exponent between the two largest sizes (time ∝ N^b; b ≤ 1 is
linear or better) and the extrapolation from the largest size to the paper's 164k source
documents (5.2M generations) with that exponent. The trainer's log splits step 4 into
tokenization, packing and the rest. Prints Markdown.

Usage: ``python benchmarks/bench_scale.py [--docs 1000 4000 16000] [--dir DIR]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

PAPER_DOCS = 164_000
G = 32

FILL = r"""
import json, sys, time
from hf_megadocs.corpora.config import config_from_knobs
from hf_megadocs.corpora.plan import prepare_corpus
start = time.perf_counter()
plan = prepare_corpus(config_from_knobs("stitched_g32", **json.loads(sys.argv[1])))
print(json.dumps({"seconds": time.perf_counter() - start, "counters": plan.counters}))
"""

OPEN = r"""
import json, sys, time
from hf_megadocs.generation.store import GenerationStore
start = time.perf_counter()
store = GenerationStore(sys.argv[1])
print(json.dumps({"seconds": time.perf_counter() - start, "records": len(store)}))
"""

BUILD = r"""
import json, sys, time
import datasets, hf_megadocs
start = time.perf_counter()
corpus = datasets.load_dataset("hf_megadocs", sys.argv[1], split="train", **json.loads(sys.argv[2]))
print(json.dumps({"seconds": time.perf_counter() - start, "rows": len(corpus)}))
"""

PACK = r"""
import json, sys, time
from pathlib import Path
import datasets
from hf_megadocs.training.data.packing import PackConfig, pack
files = sorted(str(f) for f in Path(sys.argv[1]).glob("cache-*.arrow")
               if "input_ids" in datasets.Dataset.from_file(str(f)).column_names)
units = datasets.concatenate_datasets([datasets.Dataset.from_file(f) for f in files])
start = time.perf_counter()
packed = pack(units, PackConfig(seq_len=256), cache_dir=None if sys.argv[2] == "-" else sys.argv[2])
print(json.dumps({"seconds": time.perf_counter() - start, "tokens": packed.stats.tokens}))
"""
IN_MEMORY_BYTES_PER_TOKEN = 9.7
"""Peak bytes per token of the in-memory packer (issue 12's measurement)."""
PACKERS = ("pack out of core (trainer)", "pack in memory (old path)")


def _tree(pid: int) -> list[int]:
    """``pid`` and all its descendants, from ``/proc``."""
    found = [pid]
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            for child in Path(f"/proc/{pid}/task/{task}/children").read_text().split():
                found += _tree(int(child))
    except OSError:
        pass
    return found


def _rss_kib(pid: int) -> tuple[int, int]:
    """(private, file-backed) resident KiB of ``pid`` (``RssAnon``, ``RssFile``)."""
    fields = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("RssAnon:", "RssFile:")):
                fields[line.split(":")[0]] = int(line.split()[1])
    except OSError:
        pass
    return fields.get("RssAnon", 0), fields.get("RssFile", 0)


def _measured(command: list[str], env: dict[str, str], log: Path) -> dict[str, float]:
    """Run ``command``: its wall time; the peak RSS of its largest process (GiB, from
    ``wait4``) and, sampled every 50 ms, the largest private and file-backed parts; and
    its last JSON line on stdout."""
    peak = [0, 0]
    done = threading.Event()
    started = time.perf_counter()
    with log.open("w") as out:
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=out, text=True, env=env)

        def watch() -> None:
            while not done.is_set():
                for pid in _tree(child.pid):
                    anon, mapped = _rss_kib(pid)
                    peak[0], peak[1] = max(peak[0], anon), max(peak[1], mapped)
                time.sleep(0.05)

        threading.Thread(target=watch, daemon=True).start()
        stdout = child.stdout.read() if child.stdout else ""
        done.set()
        _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"{' '.join(command[:4])} … failed ({child.returncode}); see {log}")
    result = {
        "wall_s": time.perf_counter() - started,
        "peak_gib": usage.ru_maxrss / 2**20,
        "anon_gib": peak[0] / 2**20,
        "file_gib": peak[1] / 2**20,
    }
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if lines:
        result.update(json.loads(lines[-1]))
    return result


def _source(path: Path, docs: int, words_per_doc: int) -> None:
    """``docs`` documents of ``words_per_doc`` words drawn from the embedded news corpus."""
    from hf_megadocs.generation.sources import SourceConfig, load_source

    news = load_source(SourceConfig(source="embedded", on_bad_input="skip"))
    vocabulary = sorted({w for doc in news for w in doc.text.split()})
    rng = random.Random(0)
    with path.open("w") as handle:
        for i in range(docs):
            words = rng.choices(vocabulary, k=words_per_doc)
            handle.write(json.dumps({"id": f"doc-{i}", "text": " ".join(words)}) + "\n")


def _one_size(docs: int, root: Path, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    root.mkdir(parents=True)
    _source(root / "source.jsonl", docs, args.doc_words)
    knobs = {
        "source": str(root / "source.jsonl"),
        "id_column": "id",
        "backend": "dummy",
        "max_new_tokens": args.max_new_tokens,
        "store_dir": str(root / "store"),
        "batch_size": 4096,
    }
    env = {**os.environ, "HF_HOME": str(root / "hf"), "HF_HUB_OFFLINE": "1"}
    load = {**knobs, "cache_dir": str(root / "hf" / "datasets")}
    py = sys.executable
    steps: dict[str, dict[str, float]] = {}
    steps["fill"] = _measured([py, "-c", FILL, json.dumps(knobs)], env, root / "fill.log")
    steps["cold open"] = _measured([py, "-c", OPEN, str(root / "store")], env, root / "open.log")
    for name in ("stitched_g32", "simple_g32"):
        steps[f"build {name}"] = _measured(
            [py, "-c", BUILD, name, json.dumps(load)], env, root / f"build_{name}.log"
        )
    if args.skip_training:
        return steps
    accelerate = str(Path(py).with_name("accelerate"))
    train = [accelerate, "launch", "--num_processes", "1", "recipes/train.py"]
    train += ["--config", "recipes/configs/tiny_cpu.yaml", "--data.synthetic_corpus"]
    train += ["stitched_g32", "--data.corpus_kwargs", json.dumps(knobs), "--max_steps", "2"]
    train += ["--output_dir", str(root / "run"), "--eval_every", "0", "--log_with", "none"]
    train += ["--eval.max_docs", "16", "--eval.long_context_docs", "2"]
    steps["tokenize + pack + 2 steps"] = _measured(train, env, root / "train.log")
    steps["tokenize + pack + 2 steps"].update(_phases(root / "train.log"))
    tokens, corpus = _trainer_packing(root / "train.log", "stitched_g32")
    for name, target in zip(PACKERS, (str(root / "packed_again"), "-"), strict=True):
        if target == "-" and tokens * IN_MEMORY_BYTES_PER_TOKEN > args.in_memory_limit_gib * 2**30:
            steps[name] = {"skipped_gib": tokens * IN_MEMORY_BYTES_PER_TOKEN / 2**30}
            continue
        steps[name] = _measured([py, "-c", PACK, str(corpus), target], env, root / "pack.log")
    return steps


def _growth(sizes: list[int], values: list[float]) -> float:
    """The exponent b of value ∝ size^b between the two largest sizes."""
    (n1, v1), (n2, v2) = sorted(zip(sizes, values, strict=True))[-2:]
    return float(np.log(max(v2, 1e-6) / max(v1, 1e-6)) / np.log(n2 / n1))


def _trainer_packing(log: Path, corpus: str) -> tuple[int, Path]:
    """Tokens the trainer packed from ``corpus``, and that corpus's cache folder (where its
    tokenized units are), from the trainer's log."""
    pattern = r"packed \d+ units \(\d+ docs, (\d+) tokens\).* in (\S+)/hf_megadocs_packed"
    for line in log.read_text(errors="replace").splitlines():
        found = re.search(pattern, line)
        if found and f"/{corpus}-" in found.group(2):
            return int(found.group(1)), Path(found.group(2))
    raise SystemExit(f"the trainer's log {log} does not say where it packed {corpus}")


def _phases(log: Path) -> dict[str, float]:
    """Seconds of tokenization and packing, from the trainer's log timestamps."""
    stamps: dict[str, list[float]] = {"tokenize": [], "packed": []}
    for line in log.read_text(errors="replace").splitlines():
        for name, needle in (("tokenize", "tokenize_corpus:"), ("packed", "data.packing: packed")):
            if needle in line:
                when = time.strptime(line[:19], "%Y-%m-%d %H:%M:%S")
                stamps[name].append(time.mktime(when) + float("0." + line[20:23]))
    if not stamps["tokenize"] or not stamps["packed"]:
        return {}
    return {
        "tokenize_s": stamps["packed"][0] - stamps["tokenize"][0],
        "pack_s": stamps["packed"][-1] - stamps["packed"][0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, nargs="+", default=[1000, 4000, 16000])
    parser.add_argument("--doc-words", type=int, default=800, help="≈1,300 SmolLM2 tokens")
    parser.add_argument("--max-new-tokens", type=int, default=700)
    parser.add_argument("--dir", default=None, help="work folder (default: a temp dir)")
    parser.add_argument("--in-memory-limit-gib", type=float, default=12.0)
    parser.add_argument(
        "--skip-training", action="store_true", help="steps 1-3 only (store and builds)"
    )
    args = parser.parse_args()
    work = Path(args.dir or tempfile.mkdtemp(prefix="bench_scale_"))
    results = {}
    try:
        for docs in args.docs:
            results[docs] = _one_size(docs, work / f"docs_{docs}", args)
            print(f"{docs} docs: {json.dumps(results[docs])}", file=sys.stderr, flush=True)
            for kept in ("fill.log", "train.log"):
                if (work / f"docs_{docs}" / kept).exists():
                    shutil.copy(work / f"docs_{docs}" / kept, work / f"{docs}_{kept}")
            shutil.rmtree(work / f"docs_{docs}")  # the next size needs the disk
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)
    _report(results, args)


def _report(results: dict[int, dict[str, dict[str, float]]], args: argparse.Namespace) -> None:
    sizes = sorted(results)
    steps = list(results[sizes[0]])
    print(
        f"Machine: {platform.machine()}, {os.cpu_count()} cores; dummy backend; documents of "
        f"{args.doc_words} words, G = {G}, ≤ {args.max_new_tokens} new tokens\n"
    )
    header = " | ".join(f"{n:,} docs ({n * G:,} gen.)" for n in sizes)
    print(f"| step | {header} | growth b (t ∝ N^b) | at {PAPER_DOCS:,} docs (extrapolated) |")
    print("|---|" + "---|" * len(sizes) + "---|---|")
    for step in steps:
        if any("skipped_gib" in results[n][step] for n in sizes):
            cells = " | ".join(
                f"not run (needs ≈{results[n][step]['skipped_gib']:.1f} GiB)"
                if "skipped_gib" in results[n][step]
                else f"{results[n][step]['wall_s']:,.1f} s, {results[n][step]['peak_gib']:.2f} GiB"
                for n in sizes
            )
            print(f"| {step} | {cells} | — | — |")
            continue
        walls = [results[n][step]["wall_s"] for n in sizes]
        peaks = [results[n][step]["peak_gib"] for n in sizes]
        cells = " | ".join(f"{w:,.1f} s, {p:.2f} GiB" for w, p in zip(walls, peaks, strict=True))
        if len(sizes) > 1:
            b, pb = _growth(sizes, walls), _growth(sizes, peaks)
            scale = PAPER_DOCS / sizes[-1]
            at = f"{walls[-1] * scale**b / 60:,.1f} min, {peaks[-1] * scale ** max(pb, 0):.2f} GiB"
            growth = f"{b:.2f} (RSS {pb:+.2f})"
        else:
            at, growth = "—", "—"
        print(f"| {step} | {cells} | {growth} | {at} |")
    print()
    for n in sizes:
        parts = ", ".join(
            f"{step} {results[n][step]['anon_gib']:.2f} / {results[n][step]['file_gib']:.2f}"
            for step in steps
            if "anon_gib" in results[n][step]
        )
        print(f"- largest private / file-backed RSS (GiB) at {n:,} docs: {parts}")
    for n in sizes:
        train = results[n].get("tokenize + pack + 2 steps", {})
        if "tokenize_s" in train:
            print(
                f"- training step at {n:,} docs: tokenization {train['tokenize_s']:,.1f} s, "
                f"packing {train['pack_s']:,.1f} s (from the trainer's log)"
            )
    for n in sizes:
        timed = [
            (name, results[n][name]) for name in PACKERS if "seconds" in results[n].get(name, {})
        ]
        if timed:
            parts = ", ".join(f"{name} {found['seconds']:.1f} s" for name, found in timed)
            tokens = timed[0][1]["tokens"]
            print(f"- packing the trainer's {tokens:,} stitched tokens at {n:,} docs: {parts}")
    for n, found in ((n, results[n]["cold open"]) for n in sizes):
        per_million = found["seconds"] / max(1, found["records"]) * 1e6
        print(
            f"- cold open at {n:,} docs: {found['records']:,} records in {found['seconds']:.2f} s "
            f"inside the process ({per_million:.2f} s per million records)"
        )


if __name__ == "__main__":
    main()
