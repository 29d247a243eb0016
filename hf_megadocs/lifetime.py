"""Workers die with the command that started them.

A job's workers (vLLM's EngineCore and its workers, ``accelerate launch`` and the trainers
it starts) are separate processes. Killed with ``kill -9``, the command cannot stop them
itself, and they go on: holding gigabytes that the next vLLM engine's KV-cache sizing sees,
or training into a run folder a resumed run also writes. Two mechanisms close that gap:

- :func:`guard_workers`, called by every ``hf-megadocs`` command: a small guardian process,
  forked before any worker exists, notes the command's descendants twice a second; when
  the command dies, however it dies, the guardian terminates them (SIGTERM, then SIGKILL
  after a grace period) and exits. Workers started since the last look are found too: the
  command's orphans, reparented to the same reaper as the guardian, in the command's
  process group, started after it. SIGTERM to the command becomes a normal exit, so its
  own ``finally`` blocks shut engines down first.
- :func:`die_with_launcher`, called by the trainer: when a launcher (``accelerate
  launch``, ``torchrun``) started it, the kernel sends it SIGTERM when that launcher dies
  (Linux ``PR_SET_PDEATHSIG``).

Hand-written: neither the standard library, accelerate nor vLLM offers it for a parent
killed with SIGKILL (vLLM's own parent checks take over a minute here).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)

POLL_S = 0.5
"""How often the guardian notes the command's descendants."""
GRACE_S = 5.0
"""How long workers get to exit after SIGTERM before SIGKILL."""

_PR_SET_PDEATHSIG = 1
_guardian_pid: int | None = None


def guard_workers() -> int | None:
    """Fork the guardian of this process's future workers; its pid (None where unsupported).

    Call once, early, before threads and workers exist. Idempotent.
    """
    global _guardian_pid
    if _guardian_pid is not None or not hasattr(os, "fork"):
        return _guardian_pid
    import psutil

    parent = os.getpid()
    # Taken here, not in the guardian: the command may die before the guardian looks.
    started, group = psutil.Process(parent).create_time(), os.getpgid(0)
    pid = os.fork()
    if pid == 0:  # the guardian: never returns into the caller's code
        code = 0
        try:
            _guard(parent, started, group)
        except BaseException:  # noqa: BLE001 - a guardian must exit, never run the job twice
            code = 1
        finally:
            os._exit(code)
    _guardian_pid = pid
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    return pid


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # A normal exit runs ``finally`` blocks: engines close, locks go, workers are joined.
    raise SystemExit(128 + signum)


def _guard(parent: int, started: float, group: int) -> None:
    import psutil

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the job; we clean up after
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)  # keep stderr: the guardian's one report goes there
    me = os.getpid()
    noted: list[psutil.Process] = []
    while os.getppid() == parent:
        try:
            noted = [p for p in psutil.Process(parent).children(recursive=True) if p.pid != me]
        except psutil.Error:
            break
        time.sleep(POLL_S)
    alive = {p.pid: p for p in noted + _orphans(me, started, group) if p.is_running()}
    alive = list(alive.values())
    if not alive:
        return
    for process in alive:
        try:
            process.terminate()
        except psutil.Error:
            pass
    _, left = psutil.wait_procs(alive, timeout=GRACE_S)
    for process in left:
        try:
            process.kill()
        except psutil.Error:
            pass
    print(
        f"hf-megadocs: pid {parent} exited; stopped {len(alive)} of its worker process(es) "
        f"({len(left)} needed SIGKILL)",
        file=sys.stderr,
        flush=True,
    )


def _orphans(me: int, started: float, group: int) -> list:
    """The dead command's children, reparented like the guardian, and their descendants."""
    import psutil

    reaper, found = os.getppid(), []
    for process in psutil.process_iter(["ppid", "create_time"]):
        try:
            if (
                process.pid != me
                and process.info["ppid"] == reaper
                and process.info["create_time"] >= started
                and os.getpgid(process.pid) == group
            ):
                found += [process, *process.children(recursive=True)]
        except (psutil.Error, OSError):
            continue
    return found


def die_with_launcher() -> bool:
    """Ask the kernel for SIGTERM when this process's launcher dies; True if armed.

    Armed only when a launcher started this process (``LOCAL_RANK`` set by torchrun or
    ``ACCELERATE_*`` by ``accelerate launch``), so ``nohup python recipes/train.py &`` keeps
    running after its shell exits, as a person running it that way expects.
    """
    launched = "LOCAL_RANK" in os.environ or any(k.startswith("ACCELERATE_") for k in os.environ)
    if not launched:
        return False
    launcher = os.getppid()
    if launcher == 1:  # already orphaned: the launcher died before we could ask
        raise SystemExit(128 + signal.SIGTERM)
    return die_with_parent(launcher)


def parent_death_signal() -> Callable[[], None] | None:
    """A ``subprocess.Popen`` ``preexec_fn`` asking the kernel for SIGTERM to the child when
    its parent dies (Linux; None elsewhere).

    Armed between fork and exec, so a child whose parent dies while it is still importing
    dies at once (no handler yet: SIGTERM's default). ``prctl`` is looked up here, before
    the fork: the child only makes the one call.
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def arm() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)

    return arm


def die_with_parent(parent: int) -> bool:
    """SIGTERM (a normal exit) for this process when ``parent`` dies; True if armed (Linux).

    ``parent``: the pid that started this process, read before anything else ran, so a
    parent that died in between is noticed (this process then exits at once).
    """
    if not sys.platform.startswith("linux"):
        return False
    if os.getppid() != parent:  # already orphaned: the parent died before we could ask
        raise SystemExit(128 + signal.SIGTERM)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    if os.getppid() != parent:  # the parent died before the request took effect
        raise SystemExit(128 + signal.SIGTERM)
    return True


__all__ = [
    "GRACE_S",
    "POLL_S",
    "die_with_launcher",
    "die_with_parent",
    "guard_workers",
    "parent_death_signal",
]
