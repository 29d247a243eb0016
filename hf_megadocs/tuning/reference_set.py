"""The reference task that turns θ into θ′ for the influence reward.

SynPro trains θ′ on an instruction set (FLAN) with the loss on the answers only. Here a
reference set is either

- **prompt/answer** records (a .jsonl/.json/.parquet file or folder with ``prompt`` and
  ``answer`` columns): the loss counts the answer tokens (and the end-of-text after each
  answer), never the prompt's; examples are packed whole into rows of the checkpoint's
  sequence length (an example longer than a row is dropped and counted); or
- **plain text** (a ``text`` column, or any source :class:`SourceConfig` reads): the
  documents are joined with end-of-text and cut into rows, loss on every token.

No instruction set ships offline with this project's dependencies, so there is no default:
influence needs the user's set (:data:`REFERENCE_HELP` says how to give one). The built-in
``analogies`` set (word-analogy questions shipped in gensim's wheel, turned into
prompt/answer pairs) exists so CPU checks and the benchmark run offline; it is a narrow
task, not a stand-in for FLAN. The embedded corpora are refused: they are what the embedded
runs evaluate on (Lee news validation, pydoc long-context).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hf_megadocs.generation.source_files import file_records, source_files, unencodable
from hf_megadocs.generation.sources import EMBEDDED_SOURCES, SourceConfig, SourceStats, load_source

logger = logging.getLogger(__name__)

ANALOGIES = "analogies"
"""The built-in prompt/answer set: gensim's word-analogy questions (offline, for CPU checks)."""
IGNORE = -100
"""Label of a token the loss skips (a prompt token or padding)."""
OVERLAP_WORDS = 13
"""A reference item sharing a run of this many words with an evaluation document is dropped
(the n-gram length of common decontamination checks)."""

REFERENCE_HELP = (
    "give the influence reward a reference task with --influence.reference.source PATH: a "
    ".jsonl, .json or .parquet file (or a folder of them) with 'prompt' and 'answer' columns, "
    'one example per record, e.g. {"prompt": "Question: ...\\nAnswer:", "answer": " ..."} '
    "(an instruction set such as FLAN, as SynPro uses; loss on the answers only; other column "
    "names via --influence.reference.prompt_column/answer_column). A file with only a 'text' "
    "column also works (loss on every token). It must not overlap what the run evaluates "
    f"on. For a quick CPU check only, --influence.reference.source {ANALOGIES} uses the "
    "word-analogy questions shipped in gensim (a narrow task, not a FLAN substitute)."
)
"""How to give a reference set: the tail of every error about a missing or unusable one."""

Kind = Literal["prompt_answer", "text"]


@dataclass(kw_only=True)
class ReferenceConfig:
    """Where θ′'s reference task comes from."""

    source: str | None = None
    """A .jsonl/.json/.parquet file or folder (prompt/answer or text records), a Hugging
    Face dataset with a text column, or "analogies" (built in, for CPU checks); None = not
    given (the influence reward then refuses to start and says how to give one)."""
    prompt_column: str = "prompt"
    answer_column: str = "answer"
    text_column: str = "text"
    """Read when the records have no prompt/answer columns: plain text, loss on every token."""
    max_examples: int | None = None
    """Read at most this many examples (documents for plain text); None = all."""
    on_bad_input: Literal["error", "warn", "skip"] = "warn"
    """A bad record (no prompt or answer, not a string, empty): raise, or drop it (counted)."""

    def __post_init__(self) -> None:
        if self.source is not None and not self.source.strip():
            raise ValueError(f"InfluenceConfig.reference.source is empty; {REFERENCE_HELP}")
        if self.max_examples is not None and self.max_examples < 1:
            raise ValueError(
                f"InfluenceConfig.reference.max_examples must be >= 1 or None, got "
                f"{self.max_examples}."
            )


@dataclass(frozen=True)
class ReferenceExample:
    """One item of the reference task; ``prompt`` is empty for a plain-text document."""

    prompt: str
    answer: str

    @property
    def text(self) -> str:
        return self.prompt + self.answer


@dataclass
class ReferenceSet:
    """The examples θ′ trains on, their kind, and what reading them dropped (by reason)."""

    kind: Kind
    examples: list[ReferenceExample]
    counts: Counter = field(default_factory=Counter)


def refuse_evaluated_source(config: ReferenceConfig, evaluated_paths: Iterable[str | None]) -> None:
    """Raise when ``config`` names a source the run evaluates on (or none at all)."""
    if config.source is None:
        raise ValueError(f"the influence reward has no reference set; {REFERENCE_HELP}")
    if config.source in EMBEDDED_SOURCES:
        raise ValueError(
            f"InfluenceConfig.reference.source={config.source!r} is an embedded corpus that "
            "the embedded runs evaluate on (Lee news validation, pydoc long-context loss): a "
            "reference set there steers generators toward the reported evaluation domain. "
            + REFERENCE_HELP[0].upper()
            + REFERENCE_HELP[1:]
        )
    mine = Path(config.source).expanduser()
    for path in evaluated_paths:
        if path and mine.exists() and Path(path).expanduser().resolve() == mine.resolve():
            raise ValueError(
                f"InfluenceConfig.reference.source={config.source!r} is the run's own data "
                f"({path}), which it evaluates on; {REFERENCE_HELP}"
            )


def load_reference(config: ReferenceConfig) -> ReferenceSet:
    """The reference examples ``config`` names (prompt/answer when the records have both
    columns, else plain text), bad records dropped and counted."""
    if config.source is None:
        raise ValueError(f"the influence reward has no reference set; {REFERENCE_HELP}")
    if config.source == ANALOGIES:
        examples = list(_limit(analogy_examples(), config.max_examples))
        return ReferenceSet("prompt_answer", examples, Counter(read=len(examples)))
    files = source_files(config.source)
    if files is not None and _has_prompt_answer(files, config):
        return _prompt_answer_set(files, config)
    stats = SourceStats()
    source = SourceConfig(
        source=config.source,
        text_column=config.text_column,
        max_docs=config.max_examples,
        on_bad_input=config.on_bad_input,
    )
    try:
        docs = [ReferenceExample("", doc.text) for doc in load_source(source, stats)]
    except ValueError as error:
        raise ValueError(f"{error} ({REFERENCE_HELP})") from None
    counts = Counter(read=stats.read, **{f"dropped:{k}": v for k, v in stats.skipped.items()})
    return ReferenceSet("text", docs, counts)


def _limit(items: Iterator[ReferenceExample], limit: int | None) -> Iterator[ReferenceExample]:
    for index, item in enumerate(items):
        if limit is not None and index >= limit:
            return
        yield item


def _has_prompt_answer(files: list[Path], config: ReferenceConfig) -> bool:
    """Whether the first file's schema (Parquet) or first readable record has both the
    prompt and the answer column."""
    wanted = {config.prompt_column, config.answer_column}
    if files[0].suffix == ".parquet":
        import pyarrow.parquet as pq

        return wanted <= set(pq.ParquetFile(files[0]).schema_arrow.names)
    for _, record in file_records(files[:1], []):
        if isinstance(record, dict):
            return wanted <= set(record)
    return False


def _prompt_answer_set(files: list[Path], config: ReferenceConfig) -> ReferenceSet:
    counts: Counter = Counter()
    examples: list[ReferenceExample] = []
    columns = [config.prompt_column, config.answer_column]
    for where, record in file_records(files, columns):
        counts["read"] += 1
        problem = record.reason if not isinstance(record, dict) else _problem(record, columns)
        if problem:
            counts[f"dropped:{problem}"] += 1
            if config.on_bad_input == "error":
                raise ValueError(
                    f"bad reference record at {where} ({problem}); fix it, or set "
                    "--influence.reference.on_bad_input warn to drop such records (counted)."
                )
            if config.on_bad_input == "warn" and counts[f"dropped:{problem}"] <= 5:
                logger.warning("influence reference: dropping %s (%s)", where, problem)
            continue
        assert isinstance(record, dict)
        examples.append(ReferenceExample(record[columns[0]], record[columns[1]]))
        if config.max_examples is not None and len(examples) >= config.max_examples:
            break
    return ReferenceSet("prompt_answer", examples, counts)


def _problem(record: dict[str, Any], columns: list[str]) -> str | None:
    for column in columns:
        value = record.get(column)
        if value is None:
            return f"missing_{column}"
        if not isinstance(value, str):
            return f"non_string_{column}"
        if not value.strip():
            return f"empty_{column}"
        if unencodable(value):
            return "bad_encoding"
    return None


def analogy_examples() -> Iterator[ReferenceExample]:
    """gensim's word-analogy questions (``questions-words.txt``, 14 sections of "a b c d"
    lines) as prompt/answer pairs: the prompt names the relation and three words, the
    answer is the fourth."""
    from hf_megadocs.extras import require_spec

    spec = require_spec("gensim", "embedded", "The built-in 'analogies' reference set")
    paths = [
        Path(location) / "test" / "test_data" / "questions-words.txt"
        for location in spec.submodule_search_locations or []
    ]
    path = next((p for p in paths if p.is_file()), None)
    if path is None:
        raise FileNotFoundError(
            f"questions-words.txt is missing from the installed gensim ({spec.origin}); "
            f"reinstall gensim, or {REFERENCE_HELP}"
        )
    section = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith(":"):
            section = line[1:].strip().replace("gram", "grammar ").replace("-", " ")
            section = re.sub(r"grammar \d+ ", "", section)
            continue
        words = line.split()
        if len(words) == 4:
            a, b, c, d = words
            prompt = f"Word analogy ({section}). {a} is to {b} as {c} is to"
            yield ReferenceExample(prompt, f" {d}.")


# ---------------------------------------------------------------- disjointness


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.casefold())


def _grams(words: list[str], n: int) -> Iterator[int]:
    for i in range(len(words) - n + 1):
        yield hash(" ".join(words[i : i + n]))


def _key(text: str) -> str:
    return hashlib.blake2b(text.strip().encode("utf-8"), digest_size=16).hexdigest()


def drop_evaluation_overlap(
    reference: ReferenceSet, evaluation_texts: Iterable[str], n: int = OVERLAP_WORDS
) -> ReferenceSet:
    """``reference`` without the items an evaluation document holds: the same text, or a run
    of ``n`` words in common (items shorter than ``n`` words are checked for identity only).
    The dropped are counted under ``in_evaluation``."""
    keys: set[str] = set()
    grams: set[int] = set()
    for text in evaluation_texts:
        keys.add(_key(text))
        grams.update(_grams(_words(text), n))
    kept = []
    for example in reference.examples:
        texts = [example.text, example.answer] + ([example.prompt] if example.prompt else [])
        if any(_key(t) in keys for t in texts) or any(
            g in grams for g in _grams(_words(example.text), n)
        ):
            continue
        kept.append(example)
    counts = Counter(reference.counts)
    counts["in_evaluation"] = len(reference.examples) - len(kept)
    return ReferenceSet(reference.kind, kept, counts)


# ---------------------------------------------------------------- token rows


Row = tuple[list[int], list[int]]
"""A training row of θ′: input ids and labels (``IGNORE`` where the loss skips a token)."""


def reference_rows(
    kind: Kind, examples: list[Row], length: int, eos: int, counts: Counter | None = None
) -> list[Row]:
    """Training rows of at most ``length`` tokens from tokenized examples ``(prompt_ids,
    answer_ids)``: prompt/answer examples packed whole (labels ``IGNORE`` on prompts; one
    longer than ``length`` is dropped and counted under ``too_long``), plain texts joined
    with ``eos`` and cut into ``length``-token blocks (the tail shorter than a block is
    dropped, unless it is all there is)."""
    counts = Counter() if counts is None else counts
    if kind == "text":
        stream = [t for prompt, answer in examples for t in prompt + answer + [eos]]
        width = min(length, max(2, len(stream)))
        blocks = [stream[i : i + width] for i in range(0, len(stream) - width + 1, width)]
        return [(block, list(block)) for block in blocks]
    rows: list[Row] = []
    ids: list[int] = []
    labels: list[int] = []
    for prompt, answer in examples:
        item = prompt + answer + [eos]
        if len(item) > length:
            counts["too_long"] += 1
            continue
        if len(ids) + len(item) > length:
            rows.append((ids, labels))
            ids, labels = [], []
        ids = ids + item
        labels = labels + [IGNORE] * len(prompt) + answer + [eos]
    if ids:
        rows.append((ids, labels))
    return rows


def collate(rows: list[Row], pad_id: int) -> dict[str, Any]:
    """``input_ids``, ``attention_mask`` and ``labels`` tensors of ``rows``, right-padded to
    the longest (padding: attention 0, label ``IGNORE``)."""
    import torch

    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (ids, row_labels) in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        labels[i, : len(ids)] = torch.tensor(row_labels)
        mask[i, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


__all__ = [
    "ANALOGIES",
    "IGNORE",
    "REFERENCE_HELP",
    "ReferenceConfig",
    "ReferenceExample",
    "ReferenceSet",
    "analogy_examples",
    "collate",
    "drop_evaluation_overlap",
    "load_reference",
    "reference_rows",
    "refuse_evaluated_source",
]
