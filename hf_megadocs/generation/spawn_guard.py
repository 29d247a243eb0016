"""Fail clearly when a spawned worker re-runs a user's script top level.

With the ``spawn`` start method every child process imports the parent's main script
again (as ``__mp_main__``). A script that builds a corpus at top level, with no ``if
__name__ == "__main__":`` guard, then builds it again inside vLLM's engine worker: seen
here, that child waits forever on the dataset cache lock its parent holds, or dies with
Python's "bootstrapping phase" error and only "Engine core initialization failed" reaches
the user. :func:`refuse_unguarded_spawn` turns that into one message with the fix.
"""

from __future__ import annotations

import multiprocessing
import sys


def reimported_by_spawn() -> bool:
    """Whether this code runs while a spawned child is importing the parent's main script.

    ``_inheriting`` is what CPython's own ``multiprocessing.spawn`` check reads: it is set
    exactly while a new child prepares itself, i.e. while it re-runs the main module (as
    ``__mp_main__``, which ``runpy`` installs in ``sys.modules`` for that run).
    """
    return "__mp_main__" in sys.modules and bool(
        getattr(multiprocessing.current_process(), "_inheriting", False)
    )


def refuse_unguarded_spawn(what: str = "builds a corpus") -> None:
    """Raise the fix when called from a spawned child re-running a script's top level."""
    if not reimported_by_spawn():
        return
    script = next(
        (
            frame.f_globals.get("__file__")
            for frame in _frames()
            if frame.f_globals.get("__name__") == "__mp_main__" and frame.f_globals.get("__file__")
        ),
        "your script",
    )
    raise RuntimeError(
        f"{script} {what} at import time, and a worker process started with spawn (vLLM's "
        "engine, or a process pool) is importing the script again. Put the work under a "
        'guard:\n\n    if __name__ == "__main__":\n        corpus = load_dataset(...)\n\n'
        "(with one GPU or on CPU hf_megadocs keeps vLLM's engine in-process, so this only "
        "happens with tensor parallelism or VLLM_ENABLE_V1_MULTIPROCESSING=1)."
    )


def _frames():
    frame = sys._getframe(1)
    while frame is not None:
        yield frame
        frame = frame.f_back


__all__ = ["refuse_unguarded_spawn", "reimported_by_spawn"]
