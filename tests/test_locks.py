"""hf_megadocs.locks: one holder at a time, named to whoever is refused, freed by death."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from hf_megadocs.locks import ExclusiveLock, LockHeldError, read_holder

HOLD = """
import sys, time
from hf_megadocs.locks import ExclusiveLock
lock = ExclusiveLock(sys.argv[1], "test folder").acquire()
print("held", flush=True)
time.sleep(120)
"""


def _holder_process(path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_holder_is_refused_with_the_first_ones_pid_and_host(tmp_path):
    path = tmp_path / "run.lock"
    holder = _holder_process(path)
    try:
        with pytest.raises(
            LockHeldError, match=rf"test folder is in use by pid {holder.pid} on "
        ) as err:
            ExclusiveLock(path, "test folder").acquire()
        assert err.value.holder is not None and err.value.holder.pid == holder.pid
    finally:
        holder.kill()
        holder.wait()


def test_the_os_frees_the_lock_of_a_killed_holder(tmp_path):
    path = tmp_path / "run.lock"
    holder = _holder_process(path)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with ExclusiveLock(path, "test folder") as lock:
        assert lock.held and not lock.waited
        assert read_holder(path).pid == os.getpid()
    assert read_holder(path) is None  # released: the file says "free"
    assert path.exists()  # never deleted, so two processes cannot lock two files


def test_wait_blocks_until_the_holder_releases(tmp_path):
    path = tmp_path / "shard.lock"
    first = ExclusiveLock(path, "shard").acquire()
    got: list[float] = []

    def second() -> None:
        lock = ExclusiveLock(path, "shard").acquire(wait=True)
        got.append(time.monotonic())
        assert lock.waited
        lock.release()

    thread = threading.Thread(target=second)
    thread.start()
    time.sleep(0.5)
    assert got == [] and thread.is_alive()
    released = time.monotonic()
    first.release()
    thread.join(timeout=10)
    assert got and got[0] >= released
