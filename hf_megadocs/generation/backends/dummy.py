"""A deterministic in-process backend for fast unit tests of the store and orchestration.

It is not a model: it echoes a seeded word sample of the request's last user message.
Real generation is tested with the vllm, openai and transformers backends.
"""

from __future__ import annotations

import random
import time
from collections.abc import Collection, Sequence

from hf_megadocs.generation.failures import failed_output
from hf_megadocs.records import GenerationRequest, RawOutput


class DummyBackend:
    """Seeded echo backend; ``delay_s`` per request lets kill-and-resume tests interrupt it.

    ``fail_every`` (tests only) injects backend failures: every ``fail_every``-th request
    this instance is sent (counted across calls, from 1) comes back with
    ``finish_reason="error"``, as a request failing at a server would; 0 = never. These are
    transient failures (retried by the next run). ``reject`` (tests only): a request whose
    last message contains one of these strings is refused for good, as an engine refuses a
    prompt that cannot fit (a permanent failure, stored as a tombstone).
    """

    name = "dummy"

    def __init__(
        self,
        *,
        generator: str = "dummy-generator",
        context_tokens: int = 2048,
        delay_s: float = 0.0,
        fail_every: int = 0,
        reject: Collection[str] = (),
    ) -> None:
        if fail_every < 0:
            raise ValueError(f"fail_every must be >= 0 (0 = never fail), got {fail_every}.")
        self.generator = generator
        self.generator_revision = "0"
        self._context_tokens = context_tokens
        self._delay_s = delay_s
        self._fail_every = fail_every
        self._reject = tuple(reject)
        self._sent = 0
        self.calls: list[int] = []
        """Number of requests in each ``generate`` call (tests assert on it)."""

    @property
    def max_context_tokens(self) -> int:
        return self._context_tokens

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def generate(self, requests: Sequence[GenerationRequest]) -> list[RawOutput]:
        self.calls.append(len(requests))
        outputs = []
        for request in requests:
            if self._delay_s:
                time.sleep(self._delay_s)
            self._sent += 1
            refused = [r for r in self._reject if r in request.messages[-1]["content"]]
            if refused:
                message = f"dummy: the prompt contains {refused[0]!r}, which this engine refuses"
                outputs.append(failed_output(message, permanent=True))
                continue
            if self._fail_every and self._sent % self._fail_every == 0:
                message = f"dummy: injected failure (fail_every={self._fail_every})"
                outputs.append(failed_output(message, permanent=False))
                continue
            words = request.messages[-1]["content"].split()
            rng = random.Random(request.sample_seed)
            limit = request.sampling.max_new_tokens
            sample = [rng.choice(words) for _ in range(min(limit, max(1, len(words) // 2)))]
            finish = "length" if len(sample) >= limit else "stop"
            outputs.append(
                RawOutput(
                    text=" ".join(sample),
                    prompt_tokens=sum(len(m["content"].split()) for m in request.messages),
                    completion_tokens=len(sample),
                    finish_reason=finish,
                )
            )
        return outputs

    def close(self) -> None:
        pass
