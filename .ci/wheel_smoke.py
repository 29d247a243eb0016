"""The installed package, used as a user who ran ``pip install hf_megadocs`` would.

Run by ``make wheel-smoke`` with the venv that holds only the wheel and its core
dependencies (no extras, no checkout on the path), from a folder outside the checkout:

1. ``import hf_megadocs`` resolves to that venv's site-packages, not to a source tree;
2. ``load_dataset("hf_megadocs", "simple_g2" | "real", ...)`` builds corpora with the dummy
   backend from a local JSON Lines file, saved with ``save_to_disk`` as a user saves a
   published corpus;
3. training runs a few steps through the installed entry points: ``hf-megadocs train`` and
   the dataset card's own command (``accelerate launch -m hf_megadocs.train --config
   tiny_cpu ...``), with a bundled config named, not a path.

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
    """Build ``simple_g2`` and ``real`` and save them as a published corpus is fetched."""
    import datasets

    knobs = {"source": str(source), "backend": "dummy", "max_new_tokens": 32,
             "validation_fraction": 0.25, "store_dir": str(HERE / "store")}  # fmt: skip
    for name in ("simple_g2", "real"):
        corpus = datasets.load_dataset("hf_megadocs", name, **knobs)
        sizes = {split: len(rows) for split, rows in corpus.items()}
        if not sizes.get("train") or not sizes.get("validation"):
            sys.exit(f"load_dataset('hf_megadocs', {name!r}) gave {sizes}")
        corpus.save_to_disk(str(HERE / "data" / name))
        print(f"{name} rows per split: {sizes}")


TINY = [
    "--model.hidden_size", "32", "--model.intermediate_size", "64",
    "--model.num_attention_heads", "2", "--data.seq_len", "64", "--max_steps", "3",
    "--eval.max_docs", "4", "--eval.long_context_docs", "2", "--data.validation_docs", "8",
    "--eval_every", "0", "--save_every", "0", "--log_with", "none",
]  # fmt: skip
"""A model small enough for a smoke test (and no tracker: tensorboard is an extra)."""


def check_training() -> None:
    """``hf-megadocs train``, and the dataset card's own command (``accelerate launch -m``)."""
    import shlex

    from hf_megadocs.hub.provenance import train_command

    card_line = train_command("someone/corpus", ["simple_g2", "real"]).splitlines()[-1]
    card = shlex.split(card_line)
    card[0] = str(BIN / card[0])  # this venv's accelerate
    commands = {
        "hf-megadocs train": [
            str(BIN / "hf-megadocs"), "train", "--config", "tiny_cpu",
            "--data.synthetic_path", "data/simple_g2", "--data.real_path", "data/real",
            "--model.train_tokenizer_vocab", "512",
        ],
        f"the card's command ({card_line})": card,
    }  # fmt: skip
    for i, (name, command) in enumerate(commands.items()):
        output_dir = HERE / "runs" / str(i)
        flags = [*TINY, "--output_dir", str(output_dir)]
        done = subprocess.run([*command, *flags], cwd=HERE, check=False)
        if done.returncode != 0:
            sys.exit(f"{name} exited {done.returncode}.")
        summary = json.loads((output_dir / "summary.json").read_text())
        print(f"{name}: {summary['steps']} steps, iid_loss {summary['iid_loss']:.3f}")


def main() -> None:
    started = step("import hf_megadocs from the installed wheel")
    check_installed()
    source = corpus_file()
    step("load_dataset('hf_megadocs', ...) with the dummy backend, saved to disk")
    check_builder(source)
    step("training through the installed entry points")
    check_training()
    print(f"wheel smoke test passed in {time.monotonic() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
