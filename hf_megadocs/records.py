"""The typed records that pipeline steps pass to each other.

Every step of hf_megadocs exchanges one of these slotted dataclasses, never loose
dicts: a source document, a generation request, a backend's raw output and the
stored generation (the request plus its output and cleaning flags).
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from hf_megadocs.adapters import adapter_hash

FinishReason = Literal["stop", "length", "error"]
"""Why a generation ended: a stop token, the token limit, or a backend error."""

Role = Literal["real", "rephrase", "rationale", "reformat", "qa", "textbook", "separator"]
"""What a segment of an assembled row is; used for per-role loss and lineage."""


def stable_hash(payload: Any, length: int = 16) -> str:
    """A short, stable hex digest of a JSON-serialisable payload (sorted keys)."""
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:length]


@dataclass(frozen=True, slots=True)
class SourceDoc:
    """One real document from a source corpus."""

    source_id: str
    """Stable id: the source's id column when given, else a hash of the text."""
    text: str
    """The document text, exactly as read (never stripped or normalised)."""


@dataclass(frozen=True, kw_only=True)
class SamplingConfig:
    """Sampling parameters; part of every generation's store key."""

    temperature: float = 1.0
    """Softmax temperature (the megadocs paper uses 1.0)."""
    top_p: float = 1.0
    """Nucleus sampling mass."""
    max_new_tokens: int = 1024
    """Upper bound on generated tokens per sample (the paper uses 1,024)."""
    seed: int = 0
    """Base seed; each sample's seed is derived from it and the sample's key."""

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"SamplingConfig.temperature must be >= 0, got {self.temperature}.")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"SamplingConfig.top_p must be in (0, 1], got {self.top_p}.")
        if self.max_new_tokens < 1:
            raise ValueError(
                f"SamplingConfig.max_new_tokens must be >= 1, got {self.max_new_tokens}."
            )

    def key(self) -> dict[str, Any]:
        """The fields that change outputs, as a plain dict for hashing and storage."""
        return {f.name: getattr(self, f.name) for f in fields(self)}  # asdict deep-copies


@dataclass(frozen=True, slots=True, kw_only=True)
class GenerationRequest:
    """One sample to generate: (document input × prompt × generator × sampling × index)."""

    source_id: str
    prompt_id: str
    prompt_hash: str
    """Content hash of the prompt template (changes when the wording changes)."""
    generator: str
    """Model id or path of the generator."""
    generator_revision: str
    """Commit hash or content hash of the generator weights/config."""
    sampling: SamplingConfig
    sample_index: int
    """0-based index among the samples of the same input; sample i never depends on G."""
    messages: tuple[dict[str, str], ...]
    """The rendered chat messages sent to the generator."""
    input_part: str = ""
    """Which part of the document this request covers ("" = whole document; latent
    thoughts use e.g. "split:equal_tokens:3/8"). Part of the key."""
    lora: str | None = None
    """Optional path of a peft LoRA adapter used for this request. Part of the key."""
    input_hash: str = field(init=False, repr=False, compare=False)
    """Digest of ``messages`` (part of the key); :meth:`for_sample` reuses it."""
    key: str = field(init=False, repr=False, compare=False)
    """The store key: a digest of everything that determines the output. Computed once
    here: hashing the rendered prompt on every access cost minutes per large build."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_hash", stable_hash(list(self.messages)))
        self._set_key()

    def for_sample(self, sample_index: int) -> GenerationRequest:
        """This request with another sample index. The prompt's digest is reused: the G
        samples of one long document hash it once, not G times."""
        if sample_index < 0:
            raise ValueError(f"sample_index must be >= 0, got {sample_index}.")
        other = copy.copy(self)
        object.__setattr__(other, "sample_index", sample_index)
        other._set_key()
        return other

    def _set_key(self) -> None:
        key = stable_hash(
            {
                "source_id": self.source_id,
                "prompt_id": self.prompt_id,
                "prompt_hash": self.prompt_hash,
                "generator": self.generator,
                "generator_revision": self.generator_revision,
                "sampling": self.sampling.key(),
                "sample_index": self.sample_index,
                "input_part": self.input_part,
                "input_hash": self.input_hash,
                "lora": self.lora,
                # the adapter's content, not only its path (absent without one: the keys
                # of every generation without an adapter stay as they were)
                **({"lora_hash": adapter_hash(self.lora)} if self.lora is not None else {}),
            },
            length=32,
        )
        object.__setattr__(self, "key", key)  # frozen: set once, at construction

    @property
    def sample_seed(self) -> int:
        """A reproducible per-sample seed: same sample, same seed, whatever G or batch."""
        return int(stable_hash({"base": self.sampling.seed, "key": self.key}, 8), 16) & 0x7FFFFFFF


@dataclass(frozen=True, slots=True)
class RawOutput:
    """What a backend returns for one request, before cleaning."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason
    permanent: bool = False
    """For ``finish_reason="error"``: the request fails the same way on every run (the
    prompt cannot fit, the engine refuses its parameters), so it is stored once as a
    tombstone (:mod:`hf_megadocs.generation.failures`) instead of being retried."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Generation:
    """A stored generation: the request's key fields, the cleaned output and its flags."""

    key: str
    source_id: str
    prompt_id: str
    prompt_hash: str
    generator: str
    generator_revision: str
    sampling: dict[str, Any]
    sample_index: int
    input_part: str
    text: str
    """Cleaned output text."""
    raw_text: str
    """Output text exactly as the backend returned it."""
    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason
    flags: tuple[str, ...] = field(default_factory=tuple)
    """Cleaning flags: "empty", "truncated", "refusal", "preamble_stripped"; "failed" marks a
    tombstone (:mod:`hf_megadocs.generation.failures`)."""
    backend: str = ""
    lora: str | None = None
    lora_hash: str | None = None
    """Content hash of the LoRA adapter (:func:`~hf_megadocs.adapters.adapter_hash`)."""

    @property
    def usable(self) -> bool:
        """False for outputs that assembly must not use (empty, refusal, or a tombstone:
        ``failed``, the backend rejected the request for good)."""
        return not ({"empty", "refusal", "failed"} & set(self.flags))

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (one store line).

        The raw text is stored once: when the cleaned text lies inside it (cleaning strips
        whitespace, preambles and wrappers), only what surrounds it is kept, as
        ``raw_affixes``.
        """
        record = asdict(self)
        record["flags"] = list(self.flags)
        start = self.raw_text.find(self.text) if self.text else -1
        if start >= 0:
            del record["raw_text"]
            affixes = [self.raw_text[:start], self.raw_text[start + len(self.text) :]]
            if any(affixes):
                record["raw_affixes"] = affixes
        return record

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> Generation:
        """Inverse of :meth:`to_json` (also reads records that spell ``raw_text`` out)."""
        record = dict(record)
        record["flags"] = tuple(record.get("flags", ()))
        if "raw_text" not in record:
            prefix, suffix = record.pop("raw_affixes", ("", ""))
            record["raw_text"] = prefix + record["text"] + suffix
        return cls(**record)


@dataclass(frozen=True, slots=True)
class Segment:
    """A span of an assembled row's text, with its role (character offsets, end exclusive)."""

    role: Role
    start: int
    end: int
    generation_key: str | None = None
    """Store key of the generation that produced this span; None for real text."""
