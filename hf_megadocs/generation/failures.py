"""Backend failures, sorted once: permanent ones are stored as tombstones, transient ones retried.

Every backend reports a request it could not serve as a :class:`~hf_megadocs.records.RawOutput`
with ``finish_reason="error"`` and the error text. Whether that failure can change on a
later run is decided here, from what the backend saw:

* **permanent** (the same request fails the same way every time): vLLM refused the request
  when validating it (:func:`permanent_exception`: e.g. ``VLLMValidationError: This model's
  maximum context length is 512 tokens. However, your prompt contains at least 513 input
  tokens ...``), an OpenAI-compatible server answered 400, 413 or 422
  (:func:`permanent_http_status`: e.g. a 400 saying the maximum context length is
  exceeded), the transformers backend found the prompt and ``max_new_tokens`` over the
  context, the dummy backend was told to refuse the prompt (tests);
* **transient** (anything else): timeouts, 429, 5xx and connection resets after the
  backend's own retries, a LoRA adapter the engine does not serve (a setup to fix, not a
  property of the request), an aborted sequence.

A permanent failure is written to the store once, as a *tombstone* (:func:`tombstone`): an
ordinary checksummed record under the request's key, flagged :data:`FAILED_FLAG`, with
``finish_reason="error"``, no text and the backend's message as ``raw_text``. The store
counts it (``stats()["tombstones"]``), fills do not send it again unless asked
(``retry_failed=True``; a generation that then succeeds replaces it), and corpora leave it
out (``Generation.usable`` is False), counting it as ``generations_unusable:failed``.
A transient failure is not stored: the next run retries it, as before.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable

from hf_megadocs.records import Generation, RawOutput

FAILED_FLAG = "failed"
"""The flag of a tombstone: the backend rejected the request for a reason that will not change."""

PERMANENT_HTTP_STATUSES = frozenset({400, 413, 422})
"""Answers of an OpenAI-compatible server that judge the request itself (too long, bad
parameters); 401/403/404 (credentials, model or adapter not served), 408, 409, 429 and 5xx
depend on the server and are transient."""

REASON_CHARS = 500
"""A tombstone keeps at most this many characters of the backend's message."""


def permanent_http_status(status: int) -> bool:
    """Whether an OpenAI-compatible server's HTTP ``status`` rejects the request for good."""
    return status in PERMANENT_HTTP_STATUSES


def permanent_exception(error: BaseException) -> bool:
    """Whether an exception an engine raised for one request (alone in its call) rejects it
    for good: the validation errors vLLM raises for a request (``ValueError``,
    ``VLLMClientError`` such as ``VLLMValidationError``: a prompt over ``max_model_len``), but
    not a LoRA adapter or model it cannot find (``VLLMNotFoundError``: a setup to fix) nor an
    engine that broke (``RuntimeError``, OS errors)."""
    names = {cls.__name__ for cls in type(error).__mro__}
    if "VLLMNotFoundError" in names:
        return False
    return isinstance(error, ValueError) or "VLLMClientError" in names


def failed_output(message: str, *, permanent: bool) -> RawOutput:
    """The output of a request the backend could not serve (``permanent``: see the module)."""
    return RawOutput(
        text=message,
        prompt_tokens=0,
        completion_tokens=0,
        finish_reason="error",
        permanent=permanent,
    )


def is_permanent(raw: RawOutput) -> bool:
    """Whether ``raw`` is a failure that will not change (stored as a tombstone)."""
    return raw.finish_reason == "error" and raw.permanent


def tombstone(generation: Generation) -> Generation:
    """The tombstone of a permanently failed request, from the record cleaning made of its
    output (key fields of the request, ``finish_reason="error"``): flagged
    :data:`FAILED_FLAG`, no tokens, the reason cut to :data:`REASON_CHARS`."""
    return dataclasses.replace(
        generation,
        text="",
        raw_text=generation.raw_text[:REASON_CHARS] or "(the backend gave no reason)",
        prompt_tokens=0,
        completion_tokens=0,
        flags=(FAILED_FLAG,),
    )


def is_tombstone(generation: Generation) -> bool:
    """Whether a stored record is a tombstone (its ``raw_text`` is the reason)."""
    return FAILED_FLAG in generation.flags


def describe_reasons(reasons: Counter, limit: int = 3) -> str:
    """``N: "reason" (k), ...``: the most common tombstone reasons, for logs and cards
    (one line; ``|`` escaped so it fits a Markdown table cell)."""
    total = sum(reasons.values())
    shown = [
        f'"{reason[:160]}" ({count:,})'.replace("|", "\\|").replace("\n", " ")
        for reason, count in reasons.most_common(limit)
    ]
    more = f"; {len(reasons) - limit} other reason(s)" if len(reasons) > limit else ""
    return f"{total:,}: " + "; ".join(shown) + more if total else "0"


def tombstone_reasons(generations: Iterable[Generation]) -> Counter:
    """How many tombstones among ``generations`` have each reason."""
    return Counter(g.raw_text for g in generations if is_tombstone(g))


__all__ = [
    "FAILED_FLAG",
    "PERMANENT_HTTP_STATUSES",
    "describe_reasons",
    "failed_output",
    "is_permanent",
    "is_tombstone",
    "permanent_exception",
    "permanent_http_status",
    "tombstone",
    "tombstone_reasons",
]
