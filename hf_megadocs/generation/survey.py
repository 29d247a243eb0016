"""What a job's requests need from the store, read window by window in bounded memory.

A job hands its requests over as one sequence or as a function that builds them window by
window (:data:`RequestSource`), so the requests of a paper-scale corpus (millions, each
with its rendered prompt) never exist in memory at once. :func:`survey` counts them against
the store (this shard's, duplicates, already stored) keeping 16 bytes per key, and keeps a
few of the missing ones to size the engine by and, per prompt, what the pre-run estimate
needs (:class:`PromptShare`); :func:`missing_batches` builds them again and hands out,
batch by batch, those still missing.
"""

from __future__ import annotations

import hashlib
import itertools
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from hf_megadocs.generation.backends.sizing import Workload
from hf_megadocs.generation.store_index import key_bytes
from hf_megadocs.records import GenerationRequest, SourceDoc

if TYPE_CHECKING:
    from hf_megadocs.generation.store import GenerationStore

REQUEST_WINDOW = 16_384
"""Requests of a plain sequence looked at per window."""
SHAPE_SAMPLES = 64
"""Missing requests with the longest prompts (in bytes) kept to size the engine by. Their
token counts decide ``max_model_len``; a prompt that is shorter in bytes than all of them
and yet longer in tokens would need a tokenizer far denser on it than on the rest (and
``max_model_len`` is rounded up by 256 tokens besides)."""

RequestSource = Sequence[GenerationRequest] | Callable[[], Iterable[Sequence[GenerationRequest]]]
"""A job's requests: one sequence, or a function that builds them anew, window by window,
every time it is called (it is called once to survey and, when something is missing, once
more to generate)."""


DOC_WINDOW = 512
"""Documents whose requests :class:`DocumentRequests` builds at once."""
PROMPT_SAMPLES = 256
"""Distinct missing prompts per :class:`PromptShare` kept for counting their tokens."""
FIRST_MISSING = 256
"""Missing requests per :class:`PromptShare` kept, in request order, for a calibration
batch (the first ones the fill would generate anyway)."""


@dataclass
class PromptShare:
    """The missing requests of one prompt template and completion budget (the estimate's
    unit: their output lengths and rates are recorded per prompt)."""

    prompt_id: str
    prompt_hash: str
    max_new_tokens: int
    lacking: int = 0
    """Missing requests seen (a key requested twice counted twice)."""
    prompt_bytes: int = 0
    """UTF-8 bytes of the rendered messages of those requests."""
    keys: np.ndarray = field(default_factory=lambda: np.empty(0, dtype="S16"))
    """Their distinct key digests (once the survey is done)."""
    parts: list[np.ndarray] = field(default_factory=list, repr=False)
    """Digests added since the last :meth:`finish`."""
    samples: list[tuple[dict[str, str], ...]] = field(default_factory=list)
    """The first :data:`PROMPT_SAMPLES` distinct rendered prompts."""
    first: list[GenerationRequest] = field(default_factory=list)
    """The first :data:`FIRST_MISSING` missing requests."""
    stored: list[str] = field(default_factory=list)
    """Keys of up to :data:`FIRST_MISSING` requests of this prompt the store already holds
    (their records' size is what the missing ones will take)."""

    @property
    def missing(self) -> int:
        return len(self.keys)

    def add(self, requests: list[GenerationRequest], digests: np.ndarray) -> None:
        """Count missing ``requests`` (of this prompt) whose key digests are ``digests``."""
        self.lacking += len(requests)
        self.parts.append(digests)
        sizes: dict[int, int] = {}
        for request in requests:
            size = sizes.get(id(request.messages))
            if size is None:  # the G samples of a document share one messages tuple
                size = sizes[id(request.messages)] = _message_bytes(request.messages)
                if len(self.samples) < PROMPT_SAMPLES:
                    self.samples.append(request.messages)
            self.prompt_bytes += size
        self.first += requests[: FIRST_MISSING - len(self.first)]

    def finish(self) -> None:
        """Fold the digests added so far into :attr:`keys` (distinct, sorted)."""
        if self.parts:
            self.keys = np.unique(np.concatenate([self.keys, *self.parts]))
            self.parts = []


def _message_bytes(messages: tuple[dict[str, str], ...]) -> int:
    return sum(len(m["content"].encode("utf-8")) for m in messages)


class DocumentRequests:
    """A job's requests, built :data:`DOC_WINDOW` documents at a time on every call (a
    :data:`RequestSource`): ``build(docs, counters)`` returns the requests of ``docs`` and
    counts what it did (documents truncated, skipped, …) into ``counters``. The counters
    kept are those of the first pass; later passes build the same requests again."""

    def __init__(
        self,
        docs: Sequence[SourceDoc],
        build: Callable[[Sequence[SourceDoc], Counter], Sequence[GenerationRequest]],
    ) -> None:
        self.docs = docs
        self.build = build
        self.counters: Counter = Counter()
        self.passes = 0

    def __call__(self) -> Iterator[Sequence[GenerationRequest]]:
        for _, requests in self.by_window():
            yield requests

    def by_window(self) -> Iterator[tuple[Sequence[SourceDoc], Sequence[GenerationRequest]]]:
        """(documents, their requests) per window, in document order."""
        counters = self.counters if self.passes == 0 else Counter()
        self.passes += 1
        for start in range(0, len(self.docs), DOC_WINDOW):
            docs = self.docs[start : start + DOC_WINDOW]
            yield docs, self.build(docs, counters)


def shard_of(source_id: str, num_shards: int) -> int:
    """The shard that owns every request of document ``source_id``.

    By document, not by request key: a shard picks its documents before building any
    request (a key needs the rendered prompt), and all of a document's parts land together.
    """
    digest = hashlib.blake2b(source_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % num_shards


def request_windows(requests: RequestSource) -> Iterator[Sequence[GenerationRequest]]:
    """``requests`` window by window."""
    if callable(requests):
        yield from requests()
        return
    for start in range(0, len(requests), REQUEST_WINDOW):
        yield requests[start : start + REQUEST_WINDOW]


def _own(window: Sequence[GenerationRequest], shard_index: int, num_shards: int) -> list:
    if num_shards == 1:
        return list(window)
    return [r for r in window if shard_of(r.source_id, num_shards) == shard_index]


@dataclass
class Survey:
    """This shard's requests counted against the store."""

    requests: int = 0
    """Distinct requests of this shard."""
    cached: int = 0
    """Of those, already in the store."""
    other_shards: int = 0
    duplicate_requests: int = 0
    """Requests with the key of an earlier one."""
    shape_requests: list[GenerationRequest] = field(default_factory=list)
    """Missing requests with the longest prompts and the largest completion budget."""
    missing_keys: np.ndarray = field(default_factory=lambda: np.empty(0, dtype="S16"))
    """The distinct missing keys as 16-byte digests (unions across jobs are exact)."""
    tombstoned: int = 0
    """Distinct requests whose key holds a tombstone (rejected for good by an earlier run):
    in ``cached``, unless the store is retrying failed requests (then in ``missing``)."""
    prompts: dict[tuple[str, int], PromptShare] = field(default_factory=dict)
    """The missing requests by (prompt hash, max_new_tokens), for the pre-run estimate."""

    @property
    def missing(self) -> int:
        return len(self.missing_keys)

    def workload(self, batch_size: int) -> Workload:
        """What the engine will be asked to generate, for sizing it."""
        return Workload(
            requests=self.shape_requests, batch_size=batch_size, num_requests=self.missing
        )


def survey(
    requests: RequestSource,
    store: GenerationStore,
    shard_index: int = 0,
    num_shards: int = 1,
) -> Survey:
    """Count this shard's ``requests`` against ``store`` in one pass of bounded memory."""
    result = Survey()
    seen: list[np.ndarray] = []
    lacking_keys: list[np.ndarray] = []
    tombstoned: list[np.ndarray] = []
    for window in request_windows(requests):
        mine = _own(window, shard_index, num_shards)
        result.other_shards += len(window) - len(mine)
        if not mine:
            continue
        keys = [r.key for r in mine]
        digests = key_bytes(keys)
        held = store.contains(keys)
        seen.append(digests)
        lacking_keys.append(digests[~held])
        tombstoned.append(digests[store.tombstoned(digests)])
        lacking = [r for r, h in zip(mine, held.tolist(), strict=True) if not h]
        result.shape_requests = _shape_requests(result.shape_requests + lacking)
        _by_prompt(result.prompts, lacking, digests[~held])
        _stored_samples(result.prompts, [r for r, h in zip(mine, held.tolist(), strict=True) if h])
    if seen:
        every = np.concatenate(seen)
        result.requests = len(np.unique(every))
        result.duplicate_requests = len(every) - result.requests
        result.missing_keys = np.unique(np.concatenate(lacking_keys))
        result.cached = result.requests - len(result.missing_keys)
        result.tombstoned = len(np.unique(np.concatenate(tombstoned)))
    for share in result.prompts.values():
        share.finish()
    return result


def _by_prompt(
    shares: dict[tuple[str, int], PromptShare],
    lacking: list[GenerationRequest],
    digests: np.ndarray,
) -> None:
    groups: dict[tuple[str, int], list[int]] = {}
    for row, request in enumerate(lacking):
        groups.setdefault((request.prompt_hash, request.sampling.max_new_tokens), []).append(row)
    for group, rows in groups.items():
        share = shares.get(group)
        if share is None:
            first = lacking[rows[0]]
            share = shares[group] = PromptShare(first.prompt_id, *group)
        share.add([lacking[row] for row in rows], digests[rows])


def _stored_samples(
    shares: dict[tuple[str, int], PromptShare], held: list[GenerationRequest]
) -> None:
    for request in held:
        group = (request.prompt_hash, request.sampling.max_new_tokens)
        share = shares.get(group)
        if share is None:
            share = shares[group] = PromptShare(request.prompt_id, *group)
        if len(share.stored) < FIRST_MISSING:
            share.stored.append(request.key)


def _shape_requests(requests: list[GenerationRequest]) -> list[GenerationRequest]:
    """The :data:`SHAPE_SAMPLES` requests with the longest distinct prompts, and the one
    with the largest ``max_new_tokens``."""
    if not requests:
        return []
    distinct = list({id(r.messages): r for r in requests}.values())
    distinct.sort(key=lambda r: sum(len(m["content"].encode()) for m in r.messages), reverse=True)
    kept = distinct[:SHAPE_SAMPLES]
    widest = max(requests, key=lambda r: r.sampling.max_new_tokens)
    if all(r is not widest for r in kept):
        kept.append(widest)
    return kept


def missing_batches(
    requests: RequestSource,
    store: GenerationStore,
    batch_size: int,
    shard_index: int = 0,
    num_shards: int = 1,
) -> Iterator[list[GenerationRequest]]:
    """This shard's requests that ``store`` lacks, in request order, ``batch_size`` at a
    time. Looked up window by window as the batches are consumed, so a request whose key an
    earlier batch already wrote is not handed out again."""
    pending: dict[str, GenerationRequest] = {}
    for window in request_windows(requests):
        mine: dict[str, GenerationRequest] = {}
        for request in _own(window, shard_index, num_shards):
            if request.key not in pending:
                mine.setdefault(request.key, request)
        keys = list(mine)
        for key, held in zip(keys, store.contains(keys).tolist(), strict=True):
            if not held:
                pending[key] = mine[key]
        while len(pending) >= batch_size:
            yield [pending.pop(key) for key in list(itertools.islice(pending, batch_size))]
    if pending:
        yield list(pending.values())


__all__ = [
    "DOC_WINDOW",
    "FIRST_MISSING",
    "PROMPT_SAMPLES",
    "REQUEST_WINDOW",
    "DocumentRequests",
    "PromptShare",
    "RequestSource",
    "Survey",
    "missing_batches",
    "request_windows",
    "shard_of",
    "survey",
]
