"""The installed package, used as a user who ran ``pip install hf_megadocs`` would.

Run by ``make wheel-smoke`` with the venv that holds only the wheel and its core
dependencies (no extras, no checkout on the path), from a folder outside the checkout:

1. ``import hf_megadocs`` resolves to that venv's site-packages, not to a source tree;
2. ``load_dataset("hf_megadocs", "simple_g2", ...)`` builds a corpus with the dummy backend
   from a local text file;
3. training runs a few steps through the installed entry points, ``hf-megadocs train`` and
   ``accelerate launch -m hf_megadocs.train``, with a bundled config named, not a path.

Exits non-zero at the first failure, saying which step failed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path.cwd()
BIN = Path(sys.executable).parent
# Real prose for the corpus without the [embedded] extra: the standard library's docstrings.
MODULES = (
    "argparse", "asyncio", "collections", "csv", "dataclasses", "decimal", "email", "fractions",
    "functools", "heapq", "http", "itertools", "json", "logging", "pathlib", "pickle", "random",
    "re", "shutil", "sqlite3", "statistics", "string", "subprocess", "tarfile", "textwrap",
    "threading", "typing", "unittest", "urllib", "uuid", "zipfile", "zlib",
)  # fmt: skip


def step(name: str) -> float:
    print(f"== {name}", flush=True)
    return time.monotonic()


def corpus_file() -> Path:
    """A JSON Lines corpus: every paragraph of 200+ characters of those modules' docstrings
    and of their public functions' docstrings (a few hundred documents)."""
    import importlib
    import inspect

    paragraphs = []
    for name in MODULES:
        module = importlib.import_module(name)
        docs = [module.__doc__ or ""]
        docs += [inspect.getdoc(member) or "" for _, member in inspect.getmembers(module)]
        for doc in docs:
            paragraphs += [" ".join(p.split()) for p in doc.split("\n\n")]
    unique = sorted({p for p in paragraphs if len(p) >= 200})
    path = HERE / "docs.jsonl"
    path.write_text("".join(json.dumps({"text": p}) + "\n" for p in unique), encoding="utf-8")
    print(f"{len(unique)} documents in {path}")
    return path


def check_installed() -> None:
    import hf_megadocs

    location = Path(hf_megadocs.__file__).resolve()
    if "site-packages" not in location.parts:
        sys.exit(f"hf_megadocs was imported from {location}, not from the installed wheel.")
    for optional in ("gensim", "gguf", "matplotlib", "scipy", "evaluate", "tensorboard"):
        if optional in sys.modules:
            sys.exit(f"import hf_megadocs imported {optional}, an optional extra.")
    print(f"hf_megadocs from {location.parent}")


def check_builder(source: Path) -> None:
    import datasets

    corpus = datasets.load_dataset(
        "hf_megadocs",
        "simple_g2",
        source=str(source),
        backend="dummy",
        max_new_tokens=32,
        validation_fraction=0.25,
        store_dir=str(HERE / "store"),
    )
    sizes = {split: len(rows) for split, rows in corpus.items()}
    if not sizes.get("train"):
        sys.exit(f"load_dataset gave no training rows: {sizes}")
    print(f"simple_g2 rows per split: {sizes}")


def train_flags(source: Path, output_dir: Path) -> list[str]:
    kwargs = {"source": str(source), "backend": "dummy", "max_new_tokens": 32,
              "validation_fraction": 0.25, "store_dir": str(HERE / "store")}  # fmt: skip
    return [
        "--config", "tiny_cpu", "--data.corpus_kwargs", json.dumps(kwargs),
        "--model.train_tokenizer_vocab", "512", "--model.hidden_size", "32",
        "--model.intermediate_size", "64", "--model.num_attention_heads", "2",
        "--data.seq_len", "64", "--max_steps", "3", "--eval.max_docs", "4",
        "--eval.long_context_docs", "2", "--data.validation_docs", "8", "--eval_every", "0", "--save_every", "0",
        "--log_with", "none", "--output_dir", str(output_dir),
    ]  # fmt: skip


def check_training(source: Path) -> None:
    commands = {
        "hf-megadocs train": [str(BIN / "hf-megadocs"), "train"],
        "accelerate launch -m hf_megadocs.train": [
            str(BIN / "accelerate"), "launch", "--num_processes", "1", "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "hf_megadocs.train",
        ],
    }  # fmt: skip
    for name, command in commands.items():
        output_dir = HERE / "runs" / name.split()[0]
        done = subprocess.run([*command, *train_flags(source, output_dir)], check=False)
        if done.returncode != 0:
            sys.exit(f"{name} exited {done.returncode}.")
        summary = json.loads((output_dir / "summary.json").read_text())
        print(f"{name}: {summary['steps']} steps, iid_loss {summary['iid_loss']:.3f}")


def main() -> None:
    started = step("import hf_megadocs from the installed wheel")
    check_installed()
    source = corpus_file()
    step("load_dataset('hf_megadocs', 'simple_g2') with the dummy backend")
    check_builder(source)
    step("training through the installed entry points")
    check_training(source)
    print(f"wheel smoke test passed in {time.monotonic() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
