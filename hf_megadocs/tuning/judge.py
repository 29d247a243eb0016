"""An LLM judge behind any OpenAI-compatible endpoint: faithfulness, structure, quality.

For users with a GPU judge (``vllm serve <judge model>``): the offline rewards stand in
for SynPro's NLI faithfulness and its document-quality rater with an embedded encoder and
heuristics; these send the judgement to a real model instead, through the project's
``openai`` backend (concurrency, retries and backoff included). The prompts are this
project's own wording.

- ``judge_faithfulness``: rephrase: 1 if the judge answers that the rewrite keeps the
  source's content and adds nothing, else 0; reformat: the share of entries it labels
  faithful (SynPro's per-entry labels: faithful / unfaithful topic / unfaithful content).
- ``judge_structure`` (rephrase): 1 if the judge answers that the rewrite keeps the
  source's block structure (paragraph breaks, lists, code blocks, tables, and none added),
  else 0: SynPro's binary structure judge; :mod:`hf_megadocs.tuning.structure` is the
  offline stand-in.
- ``judge_quality``: the judge's 1–10 quality score of the output minus the source's
  (the source scored once per document), divided by 9.

An answer the judge did not give in the asked form is None (TRL leaves it out of the sum)
and counted in :attr:`EndpointJudge.unparsed`.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from hf_megadocs.records import GenerationRequest, SamplingConfig

REPHRASE_PROMPT = (
    "You check rewrites for faithfulness. Below are a SOURCE text and a REWRITE of it.\n"
    "Answer YES if the rewrite keeps the source's information and states nothing that the "
    "source does not support; answer NO otherwise. Reply with the single word YES or NO.\n\n"
    "SOURCE:\n{source}\n\nREWRITE:\n{output}"
)
ENTRIES_PROMPT = (
    "You check notes taken from a SOURCE text. Each numbered entry has a topic and content.\n"
    "Label every entry: 'faithful' if the source supports both, 'unfaithful topic' if the "
    "topic is not in the source, 'unfaithful content' if the content states something the "
    "source does not support. Reply with one line per entry, as '<number>: <label>'.\n\n"
    "SOURCE:\n{source}\n\nENTRIES:\n{entries}"
)
STRUCTURE_PROMPT = (
    "You compare the layout of a REWRITE with the layout of its SOURCE; the wording may "
    "differ freely. Answer YES if the rewrite keeps the source's blocks: its paragraph "
    "breaks, each list as a list with its items, each code block as a code block, each "
    "table as a table, and adds no list, table or code block the source does not have. "
    "Dropped boilerplate (menus, ads, footers) does not count against it. Answer NO "
    "otherwise. Reply with the single word YES or NO.\n\n"
    "SOURCE:\n{source}\n\nREWRITE:\n{output}"
)
QUALITY_PROMPT = (
    "Rate the TEXT below as a document to train a language model on: informative, "
    "coherent, well written, free of boilerplate and spam. Reply with one integer from "
    "1 (worst) to 10 (best).\n\nTEXT:\n{text}"
)
_YES_NO = re.compile(r"\b(YES|NO)\b", re.IGNORECASE)
_LABEL = re.compile(r"^\W*(\d+)\W+(faithful|unfaithful topic|unfaithful content)\b", re.I | re.M)
_SCORE = re.compile(r"\b(10|[1-9])\b")


@dataclass(kw_only=True)
class JudgeConfig:
    """The judge endpoint (off while ``base_url`` is unset)."""

    base_url: str | None = None
    """An OpenAI-compatible ``/v1`` URL, e.g. ``http://127.0.0.1:8000/v1`` of ``vllm serve``."""
    model: str | None = None
    """The served model id; None = the first the server lists."""
    api_key_env: str = "OPENAI_API_KEY"
    max_concurrency: int = 16
    max_new_tokens: int = 64
    max_source_chars: int = 7000
    """Sources and outputs are cut to this many characters in the judge's prompt."""

    @property
    def enabled(self) -> bool:
        return self.base_url is not None


class EndpointJudge:
    """Sends judge prompts through the ``openai`` backend; greedy, one answer each."""

    def __init__(self, config: JudgeConfig) -> None:
        from hf_megadocs.generation.backends import BackendConfig, make_backend

        if config.base_url is None:
            raise ValueError("JudgeConfig.base_url is unset: name the judge's endpoint.")
        self.config = config
        self.backend = make_backend(
            BackendConfig(
                backend="openai",
                base_url=config.base_url,
                generator=config.model,
                api_key_env=config.api_key_env,
                max_concurrency=config.max_concurrency,
            )
        )
        self.unparsed: Counter = Counter()
        self._source_quality: dict[str, float | None] = {}

    def ask(self, prompts: Sequence[str]) -> list[str]:
        """The judge's answers, in order ("" for a request that failed)."""
        sampling = SamplingConfig(temperature=0.0, max_new_tokens=self.config.max_new_tokens)
        requests = [
            GenerationRequest(
                source_id=hashlib.blake2b(p.encode(), digest_size=8).hexdigest(),
                prompt_id="judge", prompt_hash="", generator=self.backend.generator,
                generator_revision="", sampling=sampling, sample_index=0,
                messages=({"role": "user", "content": p},),
            )  # fmt: skip
            for p in prompts
        ]
        outputs = self.backend.generate(requests)
        return [o.text if o.finish_reason != "error" else "" for o in outputs]

    def _cut(self, text: str) -> str:
        return text[: self.config.max_source_chars]

    def rephrase_faithfulness(self, outputs: list[str], sources: list[str]) -> list[float | None]:
        """1 per rewrite the judge calls faithful, 0 per one it does not (or empty)."""
        return self._yes_no_per_pair(REPHRASE_PROMPT, "faithfulness", outputs, sources)

    def rephrase_structure(self, outputs: list[str], sources: list[str]) -> list[float | None]:
        """1 per rewrite the judge says keeps the source's block structure, else 0."""
        return self._yes_no_per_pair(STRUCTURE_PROMPT, "structure", outputs, sources)

    def _yes_no_per_pair(
        self, template: str, what: str, outputs: list[str], sources: list[str]
    ) -> list[float | None]:
        asked = [i for i, out in enumerate(outputs) if out]  # an empty output scores 0 unasked
        answers = self.ask([
            template.format(source=self._cut(sources[i]), output=self._cut(outputs[i]))
            for i in asked
        ])  # fmt: skip
        scores: list[float | None] = [0.0] * len(outputs)
        for i, answer in zip(asked, answers, strict=True):
            scores[i] = self._yes_no(answer, what)
        return scores

    def _yes_no(self, answer: str, what: str) -> float | None:
        match = _YES_NO.search(answer)
        if match is None:
            self.unparsed[what] += 1
            return None
        return float(match[1].upper() == "YES")

    def entry_faithfulness(
        self, entries: list[list[tuple[str, str]] | None], sources: list[str]
    ) -> list[float | None]:
        """Per output, the share of its entries labelled faithful (0 when none parsed)."""
        asked = [i for i, e in enumerate(entries) if e]
        answers = self.ask([
            ENTRIES_PROMPT.format(
                source=self._cut(sources[i]),
                entries="\n".join(
                    f"{n}. Topic: {t}\n   Content: {c}" for n, (t, c) in enumerate(entries[i], 1)
                ),
            )
            for i in asked
        ])  # fmt: skip
        scores: list[float | None] = [0.0] * len(entries)
        for i, answer in zip(asked, answers, strict=True):
            labels = {int(n): label.lower() for n, label in _LABEL.findall(answer)}
            wanted = range(1, len(entries[i]) + 1)  # type: ignore[arg-type]
            if not all(n in labels for n in wanted):
                self.unparsed["entries"] += 1
                scores[i] = None
                continue
            scores[i] = sum(labels[n] == "faithful" for n in wanted) / len(wanted)
        return scores

    def quality_delta(self, outputs: list[str], sources: list[str]) -> list[float | None]:
        keys = [hashlib.blake2b(s.encode(), digest_size=16).hexdigest() for s in sources]
        known = self._source_quality
        missing = {k: s for k, s in zip(keys, sources, strict=True) if k not in known}
        for key, score in zip(missing, self._scores(list(missing.values())), strict=True):
            self._source_quality[key] = score
        deltas: list[float | None] = []
        for key, score in zip(keys, self._scores(outputs), strict=True):
            source = self._source_quality[key]
            deltas.append(None if score is None or source is None else (score - source) / 9)
        return deltas

    def _scores(self, texts: list[str]) -> list[float | None]:
        answers = self.ask([QUALITY_PROMPT.format(text=self._cut(t)) for t in texts])
        scores: list[float | None] = []
        for answer in answers:
            match = _SCORE.search(answer)
            if match is None:
                self.unparsed["quality"] += 1
            scores.append(float(match[1]) if match else None)
        return scores

    def close(self) -> None:
        self.backend.close()


__all__ = [
    "ENTRIES_PROMPT",
    "QUALITY_PROMPT",
    "REPHRASE_PROMPT",
    "STRUCTURE_PROMPT",
    "EndpointJudge",
    "JudgeConfig",
]
