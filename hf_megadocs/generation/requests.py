"""Turn documents × prompt × sample index into generation requests that fit the context.

The object passed as ``backend`` only needs the generator's identity and tokenizer
(:class:`GeneratorInfo`): a running backend qualifies, and so does
:func:`hf_megadocs.generation.backends.generator_info`, which reads just the tokenizer and
model config so that request keys can be computed, and the store consulted, without
starting an engine.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from hf_megadocs.generation.prompts import CHAT_TEMPLATE_MARGIN_TOKENS, PromptTemplate
from hf_megadocs.records import GenerationRequest, SamplingConfig, SourceDoc

logger = logging.getLogger(__name__)

ContextPolicy = Literal["truncate", "chunk", "skip"]
CONTEXT_POLICIES: tuple[str, ...] = ("truncate", "chunk", "skip")
_BREAK = re.compile(r"\s+")


class GeneratorInfo(Protocol):
    """What request building needs to know about the generator (no engine required)."""

    generator: str
    generator_revision: str

    def count_tokens(self, text: str) -> int: ...

    @property
    def max_context_tokens(self) -> int: ...


@dataclass
class RequestBatch:
    """The requests built for a set of documents, and what happened to over-long documents."""

    requests: list[GenerationRequest] = field(default_factory=list)
    docs: int = 0
    """Documents seen."""
    truncated: int = 0
    """Documents cut to fit the context ("truncate" policy)."""
    chunked: int = 0
    """Documents split into several parts ("chunk" policy)."""
    chunks: int = 0
    """Parts produced from chunked documents."""
    skipped: Counter = field(default_factory=Counter)
    """Documents dropped by reason ("too_long")."""

    def tally(self, counters: Counter) -> None:
        """Add this batch's counts to ``counters`` (``skipped:<reason>`` per reason)."""
        counters.update(
            requests=len(self.requests),
            docs=self.docs,
            truncated=self.truncated,
            chunked=self.chunked,
            chunks=self.chunks,
        )
        counters.update({f"skipped:{reason}": n for reason, n in self.skipped.items()})

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view of the counters."""
        return {
            "requests": len(self.requests),
            "docs": self.docs,
            "truncated": self.truncated,
            "chunked": self.chunked,
            "chunks": self.chunks,
            "skipped": dict(self.skipped),
        }


def make_request(
    doc_source_id: str,
    prompt: PromptTemplate,
    fields: dict[str, str],
    *,
    sample_index: int,
    backend: GeneratorInfo,
    sampling: SamplingConfig,
    input_part: str = "",
    lora: str | None = None,
) -> GenerationRequest:
    """One request with ``prompt`` rendered from ``fields`` (e.g. prefix/suffix rationales)."""
    if sample_index < 0:
        raise ValueError(f"sample_index must be >= 0, got {sample_index}.")
    return GenerationRequest(
        source_id=doc_source_id,
        prompt_id=prompt.prompt_id,
        prompt_hash=prompt.content_hash,
        generator=backend.generator,
        generator_revision=backend.generator_revision,
        sampling=sampling,
        sample_index=sample_index,
        messages=prompt.render(**fields),
        input_part=input_part,
        lora=lora,
    )


def _fits(text: str, budget: int, count_tokens) -> bool:
    # A token covers at least one UTF-8 byte (byte-level BPE, SentencePiece byte fallback),
    # so short texts are known to fit without running the tokenizer.
    if len(text.encode("utf-8")) + 1 <= budget:
        return True
    return count_tokens(text) <= budget


def _prefix_within(text: str, budget: int, count_tokens) -> int:
    """Length in characters of the longest whitespace-aligned prefix of ``text`` within
    ``budget`` tokens (binary search over break points; the tokenizer decides)."""
    breaks = [m.start() for m in _BREAK.finditer(text)] + [len(text)]
    best = _last_fitting(breaks, lambda end: count_tokens(text[:end]) <= budget, default=0)
    if best == 0:  # one unbroken run longer than the budget: cut by characters
        best = _last_fitting(
            range(1, len(text) + 1), lambda end: count_tokens(text[:end]) <= budget, default=0
        )
    return best


def _last_fitting(candidates: Sequence[int], fits: Any, *, default: int) -> int:
    """The last candidate for which ``fits`` holds, by binary search (``fits`` is monotone)."""
    lo, hi, best = 0, len(candidates) - 1, default
    while lo <= hi:
        mid = (lo + hi) // 2
        if fits(candidates[mid]):
            best, lo = candidates[mid], mid + 1
        else:
            hi = mid - 1
    return best


def fit_tokens(text: str, budget: int, count_tokens, keep: Literal["head", "tail"]) -> str:
    """The longest whitespace-aligned head (or tail) of ``text`` within ``budget`` tokens."""
    if _fits(text, budget, count_tokens):
        return text
    if keep == "head":
        return text[: _prefix_within(text, budget, count_tokens)]
    starts = [m.end() for m in _BREAK.finditer(text)][::-1]  # word starts, shortest tail first
    start = _last_fitting(
        starts, lambda begin: count_tokens(text[begin:]) <= budget, default=len(text)
    )
    return text[start:]


def _chunks(text: str, budget: int, count_tokens) -> list[str]:
    parts = []
    rest = text
    while rest.strip():
        if _fits(rest, budget, count_tokens):
            parts.append(rest)
            break
        end = max(1, _prefix_within(rest, budget, count_tokens))
        parts.append(rest[:end])
        rest = rest[end:].lstrip()
    return parts


def document_budget(
    prompt: PromptTemplate, backend: GeneratorInfo, sampling: SamplingConfig
) -> int:
    """Tokens left for the document once the prompt, completion and chat template are counted."""
    empty = {name: "" for name in prompt.fields}
    template_tokens = sum(backend.count_tokens(m["content"]) for m in prompt.render(**empty))
    budget = (
        backend.max_context_tokens
        - sampling.max_new_tokens
        - template_tokens
        - CHAT_TEMPLATE_MARGIN_TOKENS
    )
    if budget < 1:
        raise ValueError(
            f"The generator's context ({backend.max_context_tokens} tokens) leaves no room for a "
            f"document after max_new_tokens={sampling.max_new_tokens}, the prompt "
            f"({template_tokens} tokens) and the chat-template margin "
            f"({CHAT_TEMPLATE_MARGIN_TOKENS}); lower max_new_tokens (--max-new-tokens)."
        )
    return budget


def build_requests(
    docs: Iterable[SourceDoc],
    prompt: PromptTemplate,
    *,
    num_samples: int,
    backend: GeneratorInfo,
    sampling: SamplingConfig,
    lora: str | None = None,
    context_policy: ContextPolicy = "truncate",
) -> RequestBatch:
    """One request per (document part, sample index in ``range(num_samples)``).

    A document too long for ``prompt`` + ``max_new_tokens`` within the generator's context is
    cut to the token budget (``input_part="truncated:<tokens kept>"``), split into parts
    (``input_part="chunk:<i>/<n>"``, ``i`` from 0) or dropped, per ``context_policy``;
    each case is counted in the returned :class:`RequestBatch`.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}; it is G, samples per doc.")
    if context_policy not in CONTEXT_POLICIES:
        raise ValueError(
            f"context_policy must be one of {CONTEXT_POLICIES}, got {context_policy!r}."
        )
    if prompt.fields != {"document"}:
        raise ValueError(
            f"build_requests fills only {{document}}, but prompt {prompt.prompt_id!r} expects "
            f"{sorted(prompt.fields)}; build such requests with make_request(...)."
        )
    budget = document_budget(prompt, backend, sampling)
    batch = RequestBatch()
    for doc in docs:
        batch.docs += 1
        parts: list[tuple[str, str]]
        if _fits(doc.text, budget, backend.count_tokens):
            parts = [("", doc.text)]
        elif context_policy == "skip":
            batch.skipped["too_long"] += 1
            logger.debug("Skipping %s: longer than %d tokens", doc.source_id, budget)
            continue
        elif context_policy == "truncate":
            kept = doc.text[: _prefix_within(doc.text, budget, backend.count_tokens)]
            parts = [(f"truncated:{backend.count_tokens(kept)}", kept)]
            batch.truncated += 1
        else:
            pieces = _chunks(doc.text, budget, backend.count_tokens)
            parts = [(f"chunk:{i}/{len(pieces)}", piece) for i, piece in enumerate(pieces)]
            batch.chunked += 1
            batch.chunks += len(pieces)
        for input_part, text in parts:
            first = make_request(
                doc.source_id,
                prompt,
                {"document": text},
                sample_index=0,
                backend=backend,
                sampling=sampling,
                input_part=input_part,
                lora=lora,
            )
            batch.requests.append(first)
            # The G samples share one rendered message tuple: G copies of a long document
            # would multiply memory by G for large corpora.
            batch.requests.extend(first.for_sample(i) for i in range(1, num_samples))
    return batch


__all__ = [
    "CONTEXT_POLICIES",
    "GeneratorInfo",
    "RequestBatch",
    "build_requests",
    "document_budget",
    "fit_tokens",
    "make_request",
]
