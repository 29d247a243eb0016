"""Training throughput between log records, with eval and checkpoint time left out."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class Throughput:
    """Training tokens per second between log records, not counting paused stretches."""

    def __init__(self, tokens: int) -> None:
        self.since = time.perf_counter()
        self.tokens = tokens

    def rate(self, tokens: int) -> float:
        now = time.perf_counter()
        rate = (tokens - self.tokens) / max(now - self.since, 1e-9)
        self.since, self.tokens = now, tokens
        return rate

    @contextmanager
    def paused(self) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.since += time.perf_counter() - started


__all__ = ["Throughput"]
