"""Size a vLLM engine from the job it will run, never from a share of memory.

On CPU, vLLM reads ``gpu_memory_utilization`` as a share of the memory it sees on the
NUMA node *when the engine starts*, and that figure moves: on these machines it was
9.5 GiB right after boot and 22 GiB an hour later, so a share that works later fails on a
fresh machine. Here the engine gets what the job needs instead:

- ``max_model_len``: the longest prompt the job sends plus ``max_new_tokens``, rounded up
  to :data:`CONTEXT_ROUNDING` and capped at the model's own maximum;
- the KV cache (CPU only): that length × the sequences the job runs at once, in bytes,
  between a floor (vLLM needs one full-length sequence) and a cap;
- CPU threads: every core this process may use when the engine is the only heavy process
  here, one fewer per other local training process otherwise.

Everything here is a pure function of the job and of numbers read from the machine, so it
is tested without starting an engine. vLLM itself is never imported.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hf_megadocs.generation.prompts import CHAT_TEMPLATE_MARGIN_TOKENS
from hf_megadocs.records import GenerationRequest

GiB = 1 << 30
CONTEXT_ROUNDING = 256
"""``max_model_len`` is rounded up to a multiple of this (stable sizes across reruns)."""
VLLM_CPU_MAX_NUM_SEQS = 256
"""vLLM-CPU's default cap on sequences scheduled at once (``LLM`` class, 0.32)."""
UNKNOWN_JOB_CONCURRENCY = 16
"""Sequences an engine started with no job is sized for (full-length prompts)."""
KV_CACHE_FLOOR_BYTES = 64 << 20
"""Smallest KV cache given to an engine (a few full-length sequences at least)."""
KV_CACHE_CAP_BYTES = 1 * GiB
"""Largest KV cache chosen automatically on CPU; past a few dozen sequences a CPU engine
is compute-bound, so more cache only takes memory from everything else."""
KV_CACHE_AVAILABLE_SHARE = 0.5
"""The automatic KV cache never takes more than this share of the node's available memory."""


@dataclass(frozen=True, slots=True)
class Workload:
    """What a backend is about to be asked to generate (it sizes the engine)."""

    requests: Sequence[GenerationRequest]
    """The requests still missing from the store, or (with ``num_requests``) those of them
    with the longest prompts and completion budgets."""
    batch_size: int
    """Requests handed to the backend per call (the most it runs at once)."""
    num_requests: int | None = None
    """How many requests the job holds, when ``requests`` are only its longest ones."""


@dataclass(frozen=True, slots=True)
class JobShape:
    """The sizes that matter to an engine: longest prompt, completion length, concurrency."""

    max_prompt_tokens: int
    """Longest prompt in tokens, chat-template margin included."""
    max_new_tokens: int
    """Largest completion budget of any request."""
    concurrent_sequences: int
    """Sequences the engine may run at once for this job."""


@dataclass(frozen=True, slots=True)
class NodeMemory:
    """Memory of the NUMA node vLLM-CPU allocates on, as vLLM computes it."""

    total_bytes: int
    available_bytes: int
    source: str
    """Where the figures came from (a meminfo path, or "psutil")."""


@dataclass(frozen=True, slots=True)
class EngineSize:
    """The engine settings chosen for a job, and why (for the one log line)."""

    max_model_len: int
    kv_cache_bytes: int | None
    """None on CUDA: vLLM's own ``gpu_memory_utilization`` sizes the cache there."""
    reason: str


def longest_prompt_tokens(
    requests: Sequence[GenerationRequest], count_tokens: Callable[[str], int]
) -> int:
    """Tokens of the longest prompt among ``requests``, plus the chat-template margin that
    request building reserves (``CHAT_TEMPLATE_MARGIN_TOKENS``).

    Exact, yet it tokenizes only a handful of prompts: a token covers at least one UTF-8
    byte (byte-level BPE and byte-fallback tokenizers), so once the prompts are visited
    longest-in-bytes first, none whose byte length is below the best token count so far
    can beat it. The G samples of one document share one message tuple and count once.
    """
    distinct = {id(r.messages): r.messages for r in requests}.values()
    by_bytes = sorted(
        (("\n".join(m["content"] for m in messages)) for messages in distinct),
        key=lambda text: len(text.encode("utf-8")),
        reverse=True,
    )
    best = 0
    for text in by_bytes:
        if len(text.encode("utf-8")) + 1 <= best:
            break
        best = max(best, count_tokens(text))
    return best + CHAT_TEMPLATE_MARGIN_TOKENS


def job_shape(workload: Workload, count_tokens: Callable[[str], int]) -> JobShape:
    """The :class:`JobShape` of ``workload`` (its prompts counted with ``count_tokens``)."""
    if not workload.requests:
        raise ValueError("job_shape needs at least one request; an empty job starts no engine.")
    return JobShape(
        max_prompt_tokens=longest_prompt_tokens(workload.requests, count_tokens),
        max_new_tokens=max(r.sampling.max_new_tokens for r in workload.requests),
        concurrent_sequences=min(
            workload.num_requests or len(workload.requests),
            workload.batch_size,
            VLLM_CPU_MAX_NUM_SEQS,
        ),
    )


def context_length(shape: JobShape, model_max_len: int) -> int:
    """``max_model_len`` for ``shape``: prompt + completion, rounded up, capped at the model's."""
    needed = shape.max_prompt_tokens + shape.max_new_tokens
    rounded = math.ceil(needed / CONTEXT_ROUNDING) * CONTEXT_ROUNDING
    return min(rounded, model_max_len)


def kv_bytes_per_token(model_config: dict, dtype: str) -> int:
    """Bytes of K and V cached per token for a decoder ``config.json`` and engine dtype.

    2 (K and V) × layers × KV heads × head size × bytes per element; ``dtype="auto"``
    takes the checkpoint's own dtype (bfloat16 when it does not say).
    """
    layers = int(model_config["num_hidden_layers"])
    heads = int(model_config["num_attention_heads"])
    kv_heads = int(model_config.get("num_key_value_heads") or heads)
    head_dim = int(model_config.get("head_dim") or model_config["hidden_size"] // heads)
    if dtype == "auto":
        dtype = str(model_config.get("torch_dtype") or model_config.get("dtype") or "bfloat16")
    element = 4 if dtype in ("float32", "float", "torch.float32") else 2
    return 2 * layers * kv_heads * head_dim * element


def read_model_config(model: str) -> dict | None:
    """A local checkpoint's ``config.json`` (None for a Hub id not on disk)."""
    path = Path(model).expanduser() / "config.json"
    if not path.is_file():
        return None
    config = json.loads(path.read_text())
    return config.get("text_config", config)  # multimodal wrappers keep the decoder inside


def cpu_kv_cache_bytes(
    shape: JobShape, max_model_len: int, bytes_per_token: int, memory: NodeMemory
) -> tuple[int, str]:
    """KV-cache bytes for a CPU engine, and the reason in words.

    The job's need (``max_model_len`` × concurrent sequences) is clamped to
    [:data:`KV_CACHE_FLOOR_BYTES` or two full-length sequences, :data:`KV_CACHE_CAP_BYTES`]
    and to :data:`KV_CACHE_AVAILABLE_SHARE` of the node's available memory.

    Raises:
        ValueError: even the floor does not fit in the node's available memory; the
            message says what was needed, what was seen and which setting to change.
    """
    need = max_model_len * shape.concurrent_sequences * bytes_per_token
    floor = max(KV_CACHE_FLOOR_BYTES, 2 * max_model_len * bytes_per_token)
    room = int(memory.available_bytes * KV_CACHE_AVAILABLE_SHARE)
    if floor > room:
        raise ValueError(
            f"vLLM-CPU cannot get a KV cache here: {floor / GiB:.2f} GiB is the least the job "
            f"needs (2 sequences of max_model_len={max_model_len} at {bytes_per_token} B/token) "
            f"but only {memory.available_bytes / GiB:.2f} GiB is available on the NUMA node "
            f"({memory.source}). Lower max_new_tokens or cap max_model_len "
            "(--max_model_len), set kv_cache_memory_gb explicitly, or free memory."
        )
    chosen = min(max(need, floor), KV_CACHE_CAP_BYTES, room)
    reason = (
        f"{shape.concurrent_sequences} sequences × {max_model_len} tokens × "
        f"{bytes_per_token} B = {need / GiB:.2f} GiB needed, clamped to "
        f"[{floor / GiB:.2f}, min({KV_CACHE_CAP_BYTES / GiB:.0f}, "
        f"{KV_CACHE_AVAILABLE_SHARE:.0%} of {memory.available_bytes / GiB:.1f} GiB available "
        f"on the node)]"
    )
    return chosen, reason


def node_memory(node: int = 0) -> NodeMemory:
    """The node's total and available memory, computed the way vLLM-CPU 0.32 does it.

    ``/sys/devices/system/node/node<N>/meminfo``: available = MemFree + Active(file) +
    Inactive(file) + SReclaimable, clamped to the cgroup limit; psutil where there is no
    per-node file.
    """
    path = Path(f"/sys/devices/system/node/node{node}/meminfo")
    if path.is_file():
        values = {}
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 4:
                values[parts[2].rstrip(":")] = int(parts[3]) * 1024
        total = values["MemTotal"]
        available = sum(
            values.get(k, 0) for k in ("MemFree", "Active(file)", "Inactive(file)", "SReclaimable")
        )
        limit = _cgroup_limit()
        if limit is not None:
            total, available = min(total, limit), min(available, limit)
        return NodeMemory(total_bytes=total, available_bytes=available, source=str(path))
    import psutil

    vm = psutil.virtual_memory()
    return NodeMemory(total_bytes=vm.total, available_bytes=vm.available, source="psutil")


def _cgroup_limit() -> int | None:
    path = Path("/sys/fs/cgroup/memory.max")
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return None if text == "max" else int(text)


def cpu_engine_threads(requested: int | None) -> tuple[int, str]:
    """Threads a CPU engine computes on, and why.

    ``requested`` wins. Otherwise every core this process may run on, minus one per other
    training process on this machine (``LOCAL_WORLD_SIZE``: a trainer building its corpus
    on rank 0 leaves the other ranks a core each).
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    if requested is not None:
        return requested, f"cpu_threads={requested} as configured ({cores} cores here)"
    others = max(int(os.environ.get("LOCAL_WORLD_SIZE", "1")) - 1, 0)
    if others:
        threads = max(cores - others, 1)
        return (
            threads,
            f"{cores} cores minus 1 for each of {others} other local trainer process(es)",
        )
    return cores, f"all {cores} cores (the engine is the only heavy process here)"


def size_engine(
    shape: JobShape,
    *,
    model_max_len: int,
    bytes_per_token: int,
    on_cpu: bool,
    memory: NodeMemory | None = None,
) -> EngineSize:
    """The engine size for ``shape``: ``max_model_len`` always, KV bytes on CPU only."""
    length = context_length(shape, model_max_len)
    why = (
        f"max_model_len={length} (longest prompt {shape.max_prompt_tokens} + max_new_tokens "
        f"{shape.max_new_tokens}, rounded up to {CONTEXT_ROUNDING}, model max {model_max_len})"
    )
    if not on_cpu:
        return EngineSize(length, None, why + "; KV cache: vLLM's gpu_memory_utilization")
    kv, kv_why = cpu_kv_cache_bytes(shape, length, bytes_per_token, memory or node_memory())
    return EngineSize(length, kv, f"{why}; KV cache {kv / GiB:.2f} GiB ({kv_why})")


__all__ = [
    "EngineSize",
    "JobShape",
    "NodeMemory",
    "Workload",
    "context_length",
    "cpu_engine_threads",
    "cpu_kv_cache_bytes",
    "job_shape",
    "kv_bytes_per_token",
    "longest_prompt_tokens",
    "node_memory",
    "read_model_config",
    "size_engine",
]
