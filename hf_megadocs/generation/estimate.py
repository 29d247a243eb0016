"""What a generation will cost, said before it starts: requests, tokens, time, device-hours, disk.

Every generation entry point (``hf-megadocs generate``, corpus builds, ``study``, the demo)
logs a :class:`GenerationEstimate` once it knows which requests the store lacks and before
any engine generates:

* **requests** missing from the store (this shard's, distinct keys);
* **prompt tokens**, counted with the generator's tokenizer on up to
  :data:`~.survey.PROMPT_SAMPLES` distinct prompts per prompt template and scaled to all by
  their UTF-8 bytes (exact when there are no more prompts than that); bytes / 4 when the
  generator has no tokenizer, said as such;
* **output tokens**: the mean output length of the store's finished generations of the same
  generator, prompt and ``max_new_tokens`` (from the run records, :mod:`.store_runs`), else
  ``max_new_tokens`` per request, said to be an upper bound;
* **wall time and device-hours** at a generation rate (generated tokens per second) from,
  in order: the user (``expected_tokens_per_s``), the store's recorded runs of this
  generator on this hardware (:mod:`.hardware`), or a calibration batch
  (:mod:`.calibration`: a few requests really generated and stored, so nothing is paid
  twice); engine start-up time is added when recorded runs measured it;
* **disk**: store bytes per record (the measured size of stored records of the same
  requests when there are any, else a record's fixed part plus 4 bytes per output token).

Without a rate the estimate says so. A run (:func:`~.fill.fill_store` with an
:class:`Estimator`) measures its rate as it goes: once ``calibration_requests`` requests are
generated it logs the rate and mean output length measured so far and the time left they
imply, and its progress bar's ETA is the remaining requests at the run's average rate.
``hf-megadocs generate`` keeps the estimate made before a run in its run record.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from hf_megadocs.generation.cleaning import clean_output
from hf_megadocs.generation.estimate_figures import (
    GenerationEstimate,
    PromptEstimate,
    format_bytes,
    format_seconds,
)
from hf_megadocs.generation.hardware import current_hardware
from hf_megadocs.generation.store_index import ENTRY
from hf_megadocs.generation.store_lines import encode
from hf_megadocs.generation.store_runs import recorded_output_tokens, recorded_rate
from hf_megadocs.generation.survey import PromptShare, Survey
from hf_megadocs.records import GenerationRequest, RawOutput

if TYPE_CHECKING:
    from hf_megadocs.generation.backends import BackendConfig
    from hf_megadocs.generation.requests import GeneratorInfo
    from hf_megadocs.generation.store import GenerationStore

logger = logging.getLogger(__name__)

ASSUMED_BYTES_PER_TOKEN = 4.0
"""Output bytes per generated token when no stored record of the job can be measured (a
typical English BPE tokenizer's ratio)."""


def _record_size(
    share: PromptShare, store: GenerationStore, output_tokens: float
) -> tuple[float, str]:
    """Store bytes per record of ``share``'s requests, and how that was found."""
    held = store.locate(share.stored)["length"] if share.stored else []
    if len(held):
        return float(held.mean()) + ENTRY.itemsize, f"measured on {len(held)} stored records"
    first = share.first[0]
    empty = clean_output(RawOutput("", 0, 0, "stop"), first, "backend")
    fixed = len(encode(empty.to_json())) + ENTRY.itemsize
    return (
        fixed + output_tokens * ASSUMED_BYTES_PER_TOKEN,
        f"{fixed} B per record + {ASSUMED_BYTES_PER_TOKEN:g} B per output token, assumed",
    )


def _prompt_tokens(share: PromptShare, info: GeneratorInfo | None) -> tuple[int, bool]:
    """(prompt tokens of ``share``'s missing requests, whether a tokenizer counted them)."""
    if share.lacking == 0:
        return 0, True
    count = getattr(info, "count_tokens", None)
    bytes_per_request = share.prompt_bytes / share.lacking
    if count is None or not share.samples:
        return round(share.missing * bytes_per_request / 4), False
    sampled_bytes = sum(len(m["content"].encode("utf-8")) for s in share.samples for m in s)
    sampled_tokens = sum(count(m["content"]) for s in share.samples for m in s)
    per_byte = sampled_tokens / max(sampled_bytes, 1)
    return round(share.missing * bytes_per_request * per_byte), True


class Estimator:
    """Makes the estimate of a job's missing requests and logs it (see the module).

    ``expected_tokens_per_s``: the user's rate (first in precedence); ``backend``: the
    job's backend settings (recorded runs count only with the same backend, and the
    devices billed are its engines' GPUs); ``info``: the generator's identity and
    tokenizer; ``calibration_requests``: the size of a calibration batch, and the requests
    after which a run logs the rate it measured.
    """

    def __init__(
        self,
        info: GeneratorInfo | None,
        *,
        generator: str | None = None,
        generator_revision: str | None = None,
        expected_tokens_per_s: float | None = None,
        calibration_requests: int = 32,
        backend: BackendConfig | None = None,
        desc: str = "generate",
    ) -> None:
        if expected_tokens_per_s is not None and expected_tokens_per_s <= 0:
            raise ValueError(
                f"expected_tokens_per_s must be > 0 generated tokens per second, or None to "
                f"measure it, got {expected_tokens_per_s}."
            )
        self.info = info
        self.generator = generator or getattr(info, "generator", "") or "(unknown generator)"
        self.revision = generator_revision or getattr(info, "generator_revision", "") or ""
        self.user_rate = expected_tokens_per_s
        self.calibration_requests = calibration_requests
        self.backend_name = _backend_name(backend)
        self.hardware = current_hardware()
        if backend is not None and self.hardware.kind == "gpu":
            per_engine = backend.tensor_parallel_size * backend.data_parallel_size
            self.devices = min(self.hardware.devices, per_engine)
        else:
            self.devices = self.hardware.devices
        self.engines = backend.data_parallel_size if backend is not None else 1
        self.desc = desc
        self._last: GenerationEstimate | None = None
        self._measured_logged = False

    def estimate(
        self,
        shares: Iterable[PromptShare],
        store: GenerationStore,
        *,
        requests: int | None,
        calibrated: int = 0,
        rate_from: str | None = None,
        engine_running: bool = False,
    ) -> GenerationEstimate:
        """The estimate for the missing requests ``shares`` of a job of ``requests``; with
        ``engine_running`` (the job is handed a started engine) no engine start is added."""
        shares = [share for share in shares if share.missing]
        runs = store.runs()
        result = GenerationEstimate(
            generator=_label(self.generator, self.revision),
            hardware=self.hardware.label,
            devices=self.devices,
            device_kind=self.hardware.kind,
            requests=requests,
            calibrated=calibrated,
            engines=self.engines,
        )
        counted = True
        for share in shares:
            tokens, with_tokenizer = _prompt_tokens(share, self.info)
            counted &= with_tokenizer
            found = recorded_output_tokens(
                runs, self.generator, self.revision, share.prompt_hash, share.max_new_tokens
            )
            if found is None:
                per_request = float(share.max_new_tokens)
                how = "upper bound: max_new_tokens, none of its generations stored yet"
            else:
                per_request, generated = found
                how = f"mean of {generated:,} stored generations of this generator and prompt"
            size, size_from = _record_size(share, store, per_request)
            result.prompts.append(
                PromptEstimate(
                    share.prompt_id,
                    share.prompt_hash,
                    share.max_new_tokens,
                    share.missing,
                    tokens,
                    per_request,
                    how,
                    size,
                    size_from,
                )
            )
        samples = sum(len(s.samples) for s in shares)
        result.prompt_tokens_from = (
            f"counted with the generator's tokenizer on {samples:,} distinct prompt(s), "
            "scaled to all by bytes"
            if counted
            else "no tokenizer for this generator: UTF-8 bytes / 4, a rough guess"
        )
        self._rate(result, runs, rate_from, engine_running)
        self._last = result
        return result

    def _rate(
        self,
        result: GenerationEstimate,
        runs: list[dict[str, Any]],
        rate_from: str | None,
        engine_running: bool,
    ) -> None:
        recorded = recorded_rate(
            runs, self.generator, self.revision, self.hardware.label, self.backend_name
        )
        if recorded is not None and recorded.startup_s is not None and not engine_running:
            result.startup_s = recorded.startup_s
        if self.user_rate is not None:
            result.tokens_per_s, result.rate_from = self.user_rate, "given: expected_tokens_per_s"
        elif recorded is not None:
            result.tokens_per_s = recorded.tokens_per_s
            result.rate_from = rate_from or (
                f"{recorded.runs} recorded run(s) of this generator on this hardware, "
                f"{recorded.tokens:,} tokens"
            )
        else:
            result.rate_from = (
                "no expected_tokens_per_s and no recorded run of this generator on this "
                f"hardware; measured on the first {self.calibration_requests} requests"
            )

    @property
    def last(self) -> GenerationEstimate | None:
        """The latest estimate made (None before the first)."""
        return self._last

    def announce(
        self,
        shares: Iterable[PromptShare],
        store: GenerationStore,
        *,
        requests: int | None,
        engine_running: bool = False,
    ) -> GenerationEstimate:
        """Make the estimate of ``shares`` and log it."""
        estimate = self.estimate(shares, store, requests=requests, engine_running=engine_running)
        logger.info("%s: %s", self.desc, estimate.as_text())
        return estimate

    def before(self, surveyed: Survey, store: GenerationStore, backend: Any) -> Any:
        """Estimate and log what ``surveyed`` lacks; ``backend`` (running, or a factory)
        watched so that the rate is measured as it generates (:meth:`on_batch`). The fill
        calls it once it knows what is missing, before any engine starts."""
        running = hasattr(backend, "generate")
        self.announce(
            surveyed.prompts.values(), store, requests=surveyed.requests, engine_running=running
        )
        if running:
            return _Measured(backend, self)
        return lambda workload: _Measured(backend(workload), self)

    def on_batch(self, generated: int, completion_tokens: int, elapsed_s: float) -> None:
        """After each batch of a run: once ``calibration_requests`` are generated, log the
        rate and mean output length measured so far and the time left they imply (once)."""
        last = self._last
        if self._measured_logged or last is None or generated < self.calibration_requests:
            return
        self._measured_logged = True
        rate = completion_tokens / max(elapsed_s, 1e-9)
        mean = completion_tokens / generated
        left = max(last.missing - generated, 0) * mean
        planned = "" if last.tokens_per_s is None else f" (estimated {last.tokens_per_s:,.1f})"
        logger.info(
            "%s: measured on the first %d generations: %.1f generated tok/s%s, %.1f output "
            "tokens each: about %s left for ~%s output tokens",
            self.desc,
            generated,
            rate,
            planned,
            mean,
            format_seconds(left / rate) if rate > 0 else "?",
            f"{round(left):,}",
        )


class _Measured:
    """A backend whose generated requests, tokens and seconds are counted for
    :meth:`Estimator.on_batch`; everything else delegates."""

    def __init__(self, backend: Any, estimator: Estimator) -> None:
        self._backend = backend
        self._estimator = estimator
        self._generated = self._tokens = 0
        self._seconds = 0.0

    def generate(self, requests: Sequence[GenerationRequest]) -> list[RawOutput]:
        started = time.perf_counter()
        outputs = self._backend.generate(requests)
        self._seconds += time.perf_counter() - started
        done = [o for o in outputs if o.finish_reason != "error"]
        self._generated += len(done)
        self._tokens += sum(o.completion_tokens for o in done)
        if self._generated:
            self._estimator.on_batch(self._generated, self._tokens, self._seconds)
        return outputs

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)


def estimator_for(settings: Any, info: GeneratorInfo | None, desc: str) -> Estimator:
    """The :class:`Estimator` of a job's :class:`~hf_megadocs.generation.config.
    GenerationSettings` (its rate, calibration size and backend)."""
    return Estimator(
        info,
        expected_tokens_per_s=settings.expected_tokens_per_s,
        calibration_requests=settings.calibration_requests or settings.batch_size,
        backend=settings.backend,
        desc=desc,
    )


def _label(generator: str, revision: str) -> str:
    """``generator@<revision>``, a hash-like revision shortened ("sha256:ab12..." → "ab12...")."""
    if not revision:
        return generator
    return f"{generator}@{revision.rsplit(':', 1)[-1][:12]}"


def _backend_name(backend: BackendConfig | None) -> str | None:
    if backend is None:
        return None
    if backend.backend != "auto":
        return backend.backend
    import importlib.util

    return "vllm" if importlib.util.find_spec("vllm") is not None else "transformers"


__all__ = [
    "ASSUMED_BYTES_PER_TOKEN",
    "Estimator",
    "GenerationEstimate",
    "PromptEstimate",
    "estimator_for",
    "format_bytes",
    "format_seconds",
]
