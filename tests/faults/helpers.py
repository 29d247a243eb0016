"""What the fault tests share: the tiny training run, process waits, the CLI paths."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "train.py"
HF_MEGADOCS = str(Path(sys.executable).parent / "hf-megadocs")
ENV = {
    **os.environ,
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "OMP_NUM_THREADS": "1",
}


def wait_for(condition: Callable[[], object], timeout_s: float, what: str) -> object:
    """Poll ``condition`` until it is truthy; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    """The processes still running (zombies count as gone)."""
    out = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                out.append(process)
        except psutil.NoSuchProcess:
            pass
    return out


def lock_holder_pid(path: Path) -> int | None:
    """The pid written in lock file ``path`` (None while free or not yet written)."""
    try:
        return int(json.loads(path.read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None


def tiny_train_flags(real: Path, output_dir: Path, *extra: str) -> list[str]:
    """A real-only tiny run of the recipe (a Llama of hidden 32 on the Lee corpus)."""
    return [
        "--preset", "tiny_cpu", "--data.real_path", str(real), "--data.synthetic_corpus", "null",
        "--mix.synthetic_share", "0", "--data.seq_len", "64", "--model.hidden_size", "32",
        "--model.intermediate_size", "64", "--model.num_attention_heads", "2",
        "--mix.global_batch_size", "4", "--micro_batch_size", "2", "--eval.max_docs", "8",
        "--eval.long_context_docs", "4", "--eval_every", "0", "--log_with", "none",
        "--output_dir", str(output_dir), *extra,
    ]  # fmt: skip


def lee_text_file(folder: Path) -> Path:
    """The Lee background corpus as a text file (one document per line)."""
    from gensim.test.utils import datapath

    lines = Path(datapath("lee_background.cor")).read_text(encoding="latin-1").splitlines()
    path = folder / "real.txt"
    path.write_text("\n".join(line.strip() for line in lines if line.strip()) + "\n")
    return path
