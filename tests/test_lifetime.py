"""hf_megadocs.lifetime: a command's workers do not outlive it, even under kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from hf_megadocs.lifetime import GRACE_S, POLL_S

COMMAND = """
import subprocess, sys, time
from hf_megadocs.lifetime import guard_workers
guard_workers()
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
print(worker.pid, flush=True)
time.sleep(300)
"""

LAUNCHER = """
import os, subprocess, sys, time
child = (
    "import time; from hf_megadocs.lifetime import die_with_launcher; "
    "assert die_with_launcher(); time.sleep(300)"
)
worker = subprocess.Popen([sys.executable, "-c", child], env={**os.environ, "LOCAL_RANK": "0"})
print(worker.pid, flush=True)
time.sleep(300)
"""


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


def _start(code: str, settle: bool = True) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    worker = int(proc.stdout.readline())
    if settle:
        time.sleep(3 * POLL_S)  # the guardian notes descendants every POLL_S
    return proc, worker


@pytest.mark.parametrize("settle", [True, False], ids=["noted", "started_since_last_look"])
def test_workers_of_a_command_killed_with_sigkill_are_stopped(settle):
    proc, worker = _start(COMMAND, settle)
    try:
        assert psutil.pid_exists(worker)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert _gone_within(worker, POLL_S + GRACE_S + 3), "the worker outlived its command"
    finally:
        if psutil.pid_exists(worker):
            os.kill(worker, signal.SIGKILL)


def test_a_launched_process_dies_with_its_launcher():
    proc, worker = _start(LAUNCHER)
    try:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert _gone_within(worker, 5), "the launched process outlived its launcher"
    finally:
        if psutil.pid_exists(worker):
            os.kill(worker, signal.SIGKILL)


def test_a_process_nobody_launched_is_not_armed(monkeypatch):
    from hf_megadocs.lifetime import die_with_launcher

    for name in list(os.environ):
        if name == "LOCAL_RANK" or name.startswith("ACCELERATE_"):
            monkeypatch.delenv(name)
    assert die_with_launcher() is False  # `nohup python recipes/train.py &` survives its shell
