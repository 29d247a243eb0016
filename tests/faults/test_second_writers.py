"""Fault: a second writer on what one writer owns (a run folder, a store shard).

Before hf_megadocs.locks, two trainers on one output_dir both wrote metrics and
checkpoints, the same `generate` shard started twice did all the work twice (32 store
duplicates), and two builds of one corpus on one store both generated everything.
"""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from hf_megadocs.generation.backends.dummy import DummyBackend
from hf_megadocs.generation.fill import fill_store, shard_lock
from hf_megadocs.generation.prompts import get_prompt
from hf_megadocs.generation.requests import build_requests
from hf_megadocs.generation.store import GenerationStore
from hf_megadocs.records import SamplingConfig
from tests.faults.helpers import (
    ENV,
    HF_MEGADOCS,
    RECIPE,
    ROOT,
    lee_text_file,
    lock_holder_pid,
    tiny_train_flags,
    wait_for,
)


@pytest.mark.slow
def test_a_second_trainer_on_one_run_folder_is_refused(tmp_path):
    out = tmp_path / "run"
    flags = tiny_train_flags(lee_text_file(tmp_path), out, "--mix.real_epochs", "1000")
    first = subprocess.Popen(
        [sys.executable, str(RECIPE), *flags],
        env=ENV,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: lock_holder_pid(out / "run.lock") == first.pid, 120, "the run lock")
        second = subprocess.run(
            [sys.executable, str(RECIPE), *flags, "--resume_from_checkpoint", "latest"],
            env=ENV,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert second.returncode == 2, second.stderr[-3000:]
        assert f"run folder {out} is in use by pid {first.pid} on " in second.stderr
        assert "Traceback" not in second.stderr
        assert first.poll() is None  # the first one trains on, undisturbed
    finally:
        first.kill()
        first.wait()


def test_the_same_generate_shard_started_twice_is_refused(tmp_path):
    store_dir = tmp_path / "store"
    # 40 requests of 0.25 s: the first still holds the shard while the second starts, under
    # load too (at 0.05 s it sometimes finished first).
    args = [HF_MEGADOCS, "generate", "--backend.backend", "dummy", "--backend.dummy_delay_s",
            "0.25", "--source.max_docs", "20", "--num_samples", "2", "--batch_size", "4",
            "--split.validation_fraction", "0", "--store_dir", str(store_dir)]  # fmt: skip
    first = subprocess.Popen(args, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    lock = store_dir / "generations" / "shard-0-of-1.lock"
    try:
        wait_for(lambda: lock_holder_pid(lock) == first.pid, 60, "the first shard's lock")
        second = subprocess.run(args, env=ENV, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2, second.stderr[-3000:]
        assert f"is in use by pid {first.pid} on " in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        assert first.wait(timeout=120) == 0
    store = GenerationStore(store_dir)
    assert len(store) == 40 and store.duplicates == 0  # every generation paid for once


def test_two_builds_on_one_store_wait_for_each_other_and_generate_once(tmp_path, sample_docs):
    store_dir = tmp_path / "store"
    requests = build_requests(
        sample_docs, get_prompt("wiki"), num_samples=2, backend=DummyBackend(),
        sampling=SamplingConfig(max_new_tokens=8),
    ).requests  # fmt: skip
    backends = [DummyBackend(delay_s=0.1), DummyBackend(delay_s=0.1)]
    summaries: list = [None, None]

    def build(i: int) -> None:  # each build opens the store itself, like its own cache would
        summaries[i] = fill_store(requests, backends[i], GenerationStore(store_dir), batch_size=2)

    first = threading.Thread(target=build, args=(0,))
    first.start()
    wait_for(lambda: lock_holder_pid(shard_lock(GenerationStore(store_dir), 0, 1).path), 30, "")
    second = threading.Thread(target=build, args=(1,))
    second.start()
    first.join(60)
    second.join(60)
    assert summaries[0].generated == len(requests)
    assert summaries[1].generated == 0 and summaries[1].cached == len(requests)
    assert backends[1].calls == []  # the second build sent nothing to its backend
    assert GenerationStore(store_dir).duplicates == 0
