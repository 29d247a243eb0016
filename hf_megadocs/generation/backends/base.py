"""The one interface every generation backend implements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from hf_megadocs.records import GenerationRequest, RawOutput


@runtime_checkable
class GenerationBackend(Protocol):
    """Turns generation requests into raw outputs, one output per request, in order.

    Backends never touch the store, never clean outputs and never drop a request: a
    request that fails comes back with ``finish_reason="error"`` and the error text, so
    the caller can count it and retry it on the next run.
    """

    name: str
    """Short backend name recorded with every generation ("vllm", "openai", ...)."""

    generator: str
    """Model id or path of the generator, as recorded in the store key."""

    generator_revision: str
    """Commit hash (hub models) or content hash (local checkpoints) of the generator."""

    def generate(self, requests: Sequence[GenerationRequest]) -> list[RawOutput]:
        """Generate one sample per request, honouring each request's sampling and seed."""
        ...

    def count_tokens(self, text: str) -> int:
        """Number of generator tokens in ``text`` (used to enforce the context limit)."""
        ...

    @property
    def max_context_tokens(self) -> int:
        """The generator's context length in tokens (prompt + completion)."""
        ...

    def close(self) -> None:
        """Release engines, servers or sessions. Safe to call twice."""
        ...
