"""Exact real/synthetic mixing: a stateful, rank-sharded batch sampler.

The first ``t`` global batches of ``B`` sequences hold exactly ``synthetic_before(t, B, m)
= round(t·m·B)`` synthetic sequences (cumulative rounding): every batch holds
``floor(m·B)`` or ``ceil(m·B)`` of them, within one sequence of ``m·B``, and the running
share is ``m`` to within one sequence over the whole run. Rounding each batch on its own
instead (58 of 64 at m = 0.9) would shift the share to 0.906 and read the real stream only
0.9375·E times.
Each stream is read as an endless sequence of *passes*; pass ``p`` of stream ``s`` is the
permutation ``default_rng([seed, s, p]).permutation(n_s)``, so both streams repeat as
needed and every pass is reshuffled. Global batch ``t`` is therefore a pure function of
``(t, config, stream lengths)``: it does not depend on the world size, and the sampler's
whole state is the next step. Rank ``r`` of ``W`` takes rows ``[r·B/W, (r+1)·B/W)`` of the
global batch, after the batch has been shuffled (seeded by step) so real and synthetic
rows are spread over ranks.

Run length follows the paper: ``total_steps = ceil(N_real · E / (B · (1 − m)))``, so the
real stream is read ``E`` times, up to one batch more (rounding per epoch first would read
it up to 1.4× the labelled passes on a small D: 5 sequences, B = 8, E = 4 gave 4 steps, 32
rows); ``MixingSampler.real_passes`` gives the figure, which the trainer prints and records.

Repacking per real epoch: the corpus is packed once (seeded unit shuffle) and each pass
reshuffles the packed *sequences*. The paper reshuffles documents and repacks; that
changes which documents share a row, not which tokens are seen.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any

import numpy as np

STATE_VERSION = 2
"""2: cumulative rounding of the synthetic count (1 rounded every batch alike)."""
_ORDER_BLOCK = 1024
"""Steps whose in-batch row orders are drawn together (a cache size, not a setting)."""

REAL, SYNTHETIC = 0, 1
"""Stream ids in the ``(stream, index)`` pairs the sampler yields."""


def _exact(x: float) -> Fraction:
    # 0.9 is 0.9000000000000000222 as a float; config values are short decimals.
    return Fraction(x).limit_denominator(10**9)


def synthetic_per_batch(global_batch_size: int, synthetic_share: float) -> int:
    """``round(m·B)``, halves rounded up: the nearest whole synthetic count per batch, used
    to check that a share and a batch size leave room for both streams."""
    return math.floor(_exact(synthetic_share) * global_batch_size + Fraction(1, 2))


def synthetic_before(step: int, global_batch_size: int, synthetic_share: float) -> int:
    """Synthetic sequences in global batches ``[0, step)``: ``round(step·m·B)``, exact."""
    return math.floor(_exact(synthetic_share) * global_batch_size * step + Fraction(1, 2))


def total_steps(
    real_sequences: int, global_batch_size: int, real_epochs: float, synthetic_share: float
) -> int:
    """Optimizer steps of a run, as in the megadocs paper.

    ``ceil( real_sequences · E / (B · (1 − m)) )``: the steps that read the real stream
    ``E`` times while it fills ``1 − m`` of every batch, rounded up once, so ``E`` means
    ``E`` passes at any D (computed exactly: ``m`` and ``E`` are read as short decimals, so
    0.9 is 9/10 and no float error adds a step).
    """
    if real_sequences < 1:
        raise ValueError(f"total_steps real_sequences must be >= 1, got {real_sequences}.")
    if global_batch_size < 1:
        raise ValueError(f"total_steps global_batch_size must be >= 1, got {global_batch_size}.")
    if not real_epochs > 0:
        raise ValueError(f"total_steps real_epochs must be > 0, got {real_epochs}.")
    if not 0 <= synthetic_share < 1:
        raise ValueError(f"total_steps synthetic_share must be in [0, 1), got {synthetic_share}.")
    real_rows = real_sequences * _exact(real_epochs)
    return math.ceil(real_rows / (global_batch_size * (1 - _exact(synthetic_share))))


@dataclass(kw_only=True)
class MixConfig:
    """How real and synthetic sequences are mixed into global batches."""

    synthetic_share: float = 0.0
    """m: share of synthetic sequences, in [0, 1) (paper: 0.75 simple, 0.9 megadocs). The
    first t batches hold exactly round(t·m·B) synthetic sequences; each batch floor(m·B) or
    ceil(m·B)."""
    real_epochs: float = 1.0
    """E: passes over the real stream that set the run length (> 0; may be fractional)."""
    global_batch_size: int
    """B: sequences per optimizer step over all ranks and accumulation micro-steps."""
    seed: int = 0
    """Seed of the per-pass permutations and the in-batch row shuffle."""

    def __post_init__(self) -> None:
        m, B = self.synthetic_share, self.global_batch_size
        if not isinstance(m, (int, float)) or not 0 <= m < 1:
            raise ValueError(
                f"MixConfig.synthetic_share must be in [0, 1), got {m!r}; 0 trains on real data "
                "only, the paper's megadoc setting is 0.9."
            )
        if not isinstance(self.real_epochs, (int, float)) or not self.real_epochs > 0:
            raise ValueError(
                f"MixConfig.real_epochs must be > 0, got {self.real_epochs!r}; e.g. real_epochs=1."
            )
        if not isinstance(B, int) or B < 1:
            raise ValueError(f"MixConfig.global_batch_size must be an int >= 1, got {B!r}.")
        k = synthetic_per_batch(B, m)
        if m > 0 and k == 0:
            raise ValueError(
                f"MixConfig.synthetic_share={m} with global_batch_size={B} rounds to 0 synthetic "
                f"sequences per batch; raise global_batch_size to at least {math.ceil(0.5 / m)} "
                "or set synthetic_share=0."
            )
        if k == B:
            raise ValueError(
                f"MixConfig.synthetic_share={m} with global_batch_size={B} rounds to {k} synthetic "
                f"of {B} sequences, leaving no real sequence; raise global_batch_size to at "
                f"least {math.ceil(0.5 / (1 - m))} or lower synthetic_share."
            )

    @property
    def synthetic_per_batch(self) -> Fraction:
        """m·B: synthetic sequences per global batch on average (each batch: floor or ceil)."""
        return _exact(self.synthetic_share) * self.global_batch_size


class MixingSampler:
    """Yields, per optimizer step, this rank's ``[(stream, index), ...]``.

    Stream 0 is real, 1 synthetic; indices are rows of the packed streams.

    Iterate it directly and pass each list to ``MixedBatchCollator`` (do not wrap it with
    ``accelerator.prepare``: it shards itself, and DataLoader prefetching would move the
    cursor ahead of training). The step counter advances as each batch is handed out, so
    a checkpoint taken after training on a batch resumes with the next one. Register it
    with ``accelerator.register_for_checkpointing(sampler)``. ``batch_at(step)`` gives
    any step's rows without moving the cursor.
    """

    def __init__(
        self,
        real_len: int,
        synthetic_len: int,
        config: MixConfig,
        *,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        B = config.global_batch_size
        if real_len < 1:
            raise ValueError(f"MixingSampler real_len must be >= 1 sequence, got {real_len}.")
        if config.synthetic_share > 0 and synthetic_len < 1:
            raise ValueError(
                f"MixingSampler: synthetic_share={config.synthetic_share} needs synthetic "
                f"sequences, but synthetic_len={synthetic_len}; pass the synthetic corpus or set "
                "synthetic_share=0."
            )
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"MixingSampler rank={rank} must be in [0, world_size={world_size}).")
        if B % world_size:
            raise ValueError(
                f"MixConfig.global_batch_size={B} is not divisible by world_size={world_size}; "
                f"use a multiple of {world_size} so every rank gets the same number of rows."
            )
        self.real_len = int(real_len)
        self.synthetic_len = int(synthetic_len)
        self.config = config
        self.rank = rank
        self.world_size = world_size
        self.total_steps = total_steps(real_len, B, config.real_epochs, config.synthetic_share)
        self.step = 0
        """Next global step to hand out."""
        self._perm_cache: dict[tuple[int, int], np.ndarray] = {}
        self._order_cache: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return self.total_steps

    @property
    def per_rank_batch_size(self) -> int:
        return self.config.global_batch_size // self.world_size

    def _perm(self, stream: int, pass_index: int) -> np.ndarray:
        key = (stream, pass_index)
        if key not in self._perm_cache:
            if len(self._perm_cache) > 4:  # a step touches at most 2 passes per stream
                self._perm_cache.clear()
            n = self.real_len if stream == REAL else self.synthetic_len
            rng = np.random.default_rng([self.config.seed, stream, pass_index])
            self._perm_cache[key] = rng.permutation(n)
        return self._perm_cache[key]

    def _row_order(self, step: int) -> np.ndarray:
        """Seeded in-batch row shuffle of ``step``; drawn for blocks of steps at once."""
        block, offset = divmod(step, _ORDER_BLOCK)
        if self._order_cache is None or self._order_cache[0] != block:
            B = self.config.global_batch_size
            rng = np.random.default_rng([self.config.seed, 2, block])
            rows = np.broadcast_to(np.arange(B), (_ORDER_BLOCK, B))
            self._order_cache = (block, rng.permuted(rows, axis=1))
        return self._order_cache[1][offset]

    def _read(self, stream: int, start: int, count: int) -> np.ndarray:
        """Indices at positions [start, start+count) of the stream's endless pass sequence."""
        n = self.real_len if stream == REAL else self.synthetic_len
        first, last = start // n, (start + count - 1) // n
        if first == last:  # the common case: the slice lies inside one pass
            offset = start - first * n
            return self._perm(stream, first)[offset : offset + count]
        pos = np.arange(start, start + count, dtype=np.int64)
        out = np.empty(count, dtype=np.int64)
        passes = pos // n
        for p in range(first, last + 1):
            sel = passes == p
            out[sel] = self._perm(stream, p)[pos[sel] - p * n]
        return out

    def global_batch(self, step: int) -> list[tuple[int, int]]:
        """All ``B`` ``(stream, index)`` pairs of global step ``step`` (any rank, any order)."""
        if not 0 <= step < self.total_steps:
            raise IndexError(f"step {step} out of range [0, {self.total_steps}).")
        B = self.config.global_batch_size
        before = self._synthetic_before(step)
        k = self._synthetic_before(step + 1) - before
        real = self._read(REAL, step * B - before, B - k)
        syn = self._read(SYNTHETIC, before, k) if k else np.zeros(0, dtype=np.int64)
        order = self._row_order(step)
        streams = (order >= B - k).astype(np.int64)  # rows B-k.. of the unshuffled batch
        index = np.concatenate([real, syn])[order]
        return list(zip(streams.tolist(), index.tolist()))

    def _synthetic_before(self, step: int) -> int:
        return synthetic_before(step, self.config.global_batch_size, self.config.synthetic_share)

    @property
    def real_passes(self) -> float:
        """Passes over the real stream the whole run reads (the paper's E, see module doc)."""
        real_rows = self.total_steps * self.config.global_batch_size
        return (real_rows - self._synthetic_before(self.total_steps)) / self.real_len

    def batch_at(self, step: int) -> list[tuple[int, int]]:
        """This rank's rows of global step ``step`` (pure: does not move the cursor)."""
        b = self.per_rank_batch_size
        return self.global_batch(step)[self.rank * b : (self.rank + 1) * b]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        while self.step < self.total_steps:
            step = self.step
            self.step += 1
            yield self.batch_at(step)

    def _identity(self) -> dict[str, Any]:
        return {
            "world_size": self.world_size,
            "synthetic_share": self.config.synthetic_share,
            "global_batch_size": self.config.global_batch_size,
            "seed": self.config.seed,
            "real_len": self.real_len,
            "synthetic_len": self.synthetic_len,
        }

    def state_dict(self) -> dict[str, Any]:
        """``{"version": 2, "step": ..., <settings that must match on resume>}``."""
        return {"version": STATE_VERSION, "step": self.step, **self._identity()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the cursor; refuse if any setting that shapes the batches changed.

        ``real_epochs`` may change (it only moves the end of the run)."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(
                f"MixingSampler state has version {state.get('version')!r}; this code reads "
                f"version {STATE_VERSION}. Resume with the hf_megadocs version that wrote it."
            )
        for name, now in self._identity().items():
            saved = state.get(name)
            if saved != now:
                raise ValueError(
                    f"cannot resume the mixing sampler: {name} was {saved!r} in the checkpoint "
                    f"and is {now!r} now. Resume with {name}={saved!r}, or start a new run "
                    "(a changed value would change which sequences each step sees)."
                )
        step = int(state["step"])
        if not 0 <= step <= self.total_steps:
            raise ValueError(f"MixingSampler state step={step} outside [0, {self.total_steps}].")
        self.step = step

    def describe(self) -> dict[str, Any]:
        """Derived numbers to print before training (steps, per-batch composition)."""
        synthetic = float(self.config.synthetic_per_batch)
        return {
            **asdict(self.config),
            "total_steps": self.total_steps,
            "synthetic_per_batch": synthetic,
            "real_per_batch": self.config.global_batch_size - synthetic,
            "per_rank_batch_size": self.per_rank_batch_size,
            "real_passes": self.real_passes,
        }
