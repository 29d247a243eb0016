"""The prompts a generator is tuned on: one chat prompt per source document.

TRL 1.16 does not truncate prompts, so the document is cut here, the way the generation
request builder cuts it: to ``max_source_chars`` characters, then to the tokens left in
``max_prompt_tokens`` once the template is counted (whitespace-aligned, counted).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hf_megadocs.generation.prompts import CHAT_TEMPLATE_MARGIN_TOKENS, PromptTemplate
from hf_megadocs.generation.requests import fit_tokens
from hf_megadocs.generation.sources import SourceStats, load_source
from hf_megadocs.generation.splits import split_unit
from hf_megadocs.records import SourceDoc
from hf_megadocs.tuning.config import TuneConfig


@dataclass
class TuningPrompts:
    """Train and held-out evaluation rows (``prompt``, ``source``, ``source_id``)."""

    train: list[dict[str, Any]]
    evaluation: list[dict[str, Any]]
    counters: Counter = field(default_factory=Counter)


def tuning_prompts(config: TuneConfig, prompt: PromptTemplate, tokenizer: Any) -> TuningPrompts:
    """The rows of ``config.source``'s documents for ``prompt``; the ``eval_docs`` with the
    lowest id hash are held out. Raises when too few documents are usable."""
    stats = SourceStats()
    docs = list(load_source(config.source, stats))
    counters: Counter = Counter(source_read=stats.read)
    counters.update({f"source_dropped:{k}": v for k, v in stats.skipped.items()})

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    empty = {name: "" for name in prompt.fields}
    template = sum(count(m["content"]) for m in prompt.render(**empty))
    budget = config.max_prompt_tokens - template - CHAT_TEMPLATE_MARGIN_TOKENS
    if budget < 16:
        raise ValueError(
            f"max_prompt_tokens={config.max_prompt_tokens} leaves {budget} tokens for the "
            f"document once prompt {prompt.prompt_id!r} is counted; raise max_prompt_tokens."
        )
    rows = []
    for doc in sorted(docs, key=lambda d: split_unit(d.source_id, seed=17)):
        text = _cut(doc, config.max_source_chars, budget, count)
        counters["truncated"] += text != doc.text
        rows.append(
            {
                "prompt": list(prompt.render(document=text)),
                "source": text,
                "source_id": doc.source_id,
            }
        )
    evaluation, train = rows[: config.eval_docs], rows[config.eval_docs :]
    if not train:
        raise ValueError(
            f"the source {config.source.source!r} gave {len(rows)} usable documents, all held "
            f"out by eval_docs={config.eval_docs}; add documents or lower eval_docs."
        )
    counters.update(train=len(train), evaluation=len(evaluation))
    return TuningPrompts(train, evaluation, counters)


def _cut(doc: SourceDoc, max_chars: int, budget: int, count: Any) -> str:
    text = doc.text[:max_chars]
    return fit_tokens(text, budget, count, keep="head")


__all__ = ["TuningPrompts", "tuning_prompts"]
