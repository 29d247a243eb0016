"""Content hashes of peft adapter folders: what generation keys and provenance record.

A LoRA adapter is named by its path in requests, but the path alone would let a retrained
adapter saved to the same folder reuse the old adapter's generations; the key carries this
hash of the adapter's files instead.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")
"""The files of a peft adapter that determine its outputs (whichever exist)."""


def adapter_hash(path: str | os.PathLike[str]) -> str:
    """16 hex digits of sha256 over the adapter's config and weights.

    Raises:
        ValueError: ``path`` holds no peft adapter (no ``adapter_config.json``).
    """
    folder = Path(path)
    files = [folder / name for name in ADAPTER_FILES if (folder / name).is_file()]
    if not (folder / "adapter_config.json").is_file():
        raise ValueError(
            f"lora_path={str(path)!r} holds no peft adapter (no adapter_config.json); pass the "
            "folder that PeftModel.save_pretrained or hf-megadocs tune-generator wrote."
        )
    stamps = tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    return _hash_files(stamps)


def lora_label(generator: str, lora_hash: str | None) -> str:
    """The generator as rows and cards name it: ``<base>+lora:<adapter hash>`` with an
    adapter (the hash, not the path, names what generated the text)."""
    return f"{generator}+lora:{lora_hash}" if lora_hash else generator


def adapter_provenance(lora_hash: str, path: str) -> dict[str, Any]:
    """What a dataset card says of a tuned adapter: from its ``tuning.json`` (written beside
    the adapter by ``hf-megadocs tune-generator``) when it is still there, else its hash."""
    manifest_path = Path(path).parent / "tuning.json"
    if not manifest_path.is_file():
        return {"adapter_hash": lora_hash, "tuning": None}
    manifest = json.loads(manifest_path.read_text())
    evaluation = manifest.get("evaluation", {})
    return {
        "adapter_hash": lora_hash,
        "tuning": {
            "operation": manifest.get("operation"),
            "base_generator": manifest.get("base_generator"),
            "rewards_and_weights": manifest.get("rewards"),
            "grpo_steps": manifest.get("steps"),
            "influence_checkpoint_step": manifest.get("influence_checkpoint_step"),
            "held_out_mean_rewards": {k: v.get("rewards") for k, v in evaluation.items()},
            "versions": manifest.get("versions"),
        },
    }


@lru_cache(maxsize=64)
def _hash_files(stamps: tuple[tuple[str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for name, _, _ in stamps:
        digest.update(Path(name).name.encode())
        with open(name, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


__all__ = ["ADAPTER_FILES", "adapter_hash", "adapter_provenance", "lora_label"]
