"""Exclusive advisory locks that name their holder and vanish when it dies.

One writer per run folder and per store shard: the trainer holds ``<output_dir>/run.lock``
for its whole life, a store writer holds ``generations/shard-<i>-of-<n>.lock``. The locks
are ``flock`` locks, so the operating system releases them when the holder exits or is
killed (no stale-lock clean-up, no timeouts to guess). The lock file keeps the holder's
pid, host, start time and command line, so a refused second writer can say who is in the
way. The file itself is never deleted: deleting a lock file lets two processes lock two
different files of the same name.

Hand-written because neither the standard library nor the Hugging Face stack offers one
that reports its holder (``filelock``, which datasets uses, does not).
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Self

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LockHolder:
    """Who holds a lock: written into the lock file by the process that took it."""

    pid: int
    host: str
    started_utc: str
    command: str

    @classmethod
    def this_process(cls) -> LockHolder:
        return cls(
            pid=os.getpid(),
            host=socket.gethostname(),
            started_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            command=" ".join(sys.argv)[:500],
        )

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, since {self.started_utc} ({self.command})"


class LockHeldError(RuntimeError):
    """Another live process holds the lock; ``holder`` says which (None if unreadable)."""

    def __init__(self, message: str, holder: LockHolder | None) -> None:
        super().__init__(message)
        self.holder = holder


class LockNotSupportedError(OSError):
    """The file system refused the lock itself (not another holder): e.g. ``ENOLCK`` on NFS
    mounted with ``nolock``, ``ENOSYS``/``EOPNOTSUPP`` on Lustre without ``-o flock``.

    ``errno`` is the refusal's, ``filename`` the lock file; ``str()`` is the whole message.
    """

    @classmethod
    def refused(cls, path: Path, what: str, error: OSError) -> LockNotSupportedError:
        """The error for ``error``, raised by ``flock`` on lock file ``path`` of ``what``."""
        code = errno.errorcode.get(error.errno or 0, str(error.errno))
        message = (
            f"Cannot lock {path} ({what}): the file system refused flock with {code} "
            f"({os.strerror(error.errno or 0)}), so it does not support POSIX/flock locks, "
            "which hf_megadocs needs to keep writers apart. Put that folder on a node-local "
            "disk (for the hf_megadocs cache, point HF_MEGADOCS_CACHE there; for a store or "
            "run folder, choose a path there), or mount the file system with lock support "
            "(NFS without 'nolock'; Lustre with '-o flock')."
        )
        return cls(error.errno, message, str(path))

    def __str__(self) -> str:
        return str(self.strerror)


_HELD = frozenset({errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES})
"""Errnos meaning "another process holds it" (EACCES: POSIX record locks, which some
file systems use to emulate flock, may report a held lock with it)."""


def _flock(fd: int, operation: int, path: Path, what: str) -> None:
    """``fcntl.flock``, turning a refusal by the file system into LockNotSupportedError.

    Raises:
        BlockingIOError: another process holds the lock (non-blocking ``operation`` only).
        LockNotSupportedError: the file system does not support the lock.
    """
    try:
        fcntl.flock(fd, operation)
    except OSError as error:
        if error.errno in _HELD:
            raise BlockingIOError(error.errno, os.strerror(error.errno)) from None
        raise LockNotSupportedError.refused(path, what, error) from error


def read_holder(path: Path) -> LockHolder | None:
    """The holder recorded in lock file ``path``; None when absent or not yet written."""
    try:
        return LockHolder(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


class ExclusiveLock:
    """An exclusive lock on ``path`` for ``what`` (used in messages), held until released.

    ``with ExclusiveLock(path, "run folder runs/x"):`` refuses at once when another process
    holds it; ``acquire(wait=True)`` waits for it instead, logging the holder once.
    """

    def __init__(self, path: str | os.PathLike[str], what: str, *, fix: str = "") -> None:
        self.path = Path(path)
        self.what = what
        self.fix = fix
        self._fd: int | None = None
        self.waited = False
        """Whether the last :meth:`acquire` had to wait for another holder."""

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, *, wait: bool = False) -> Self:
        """Take the lock; raises :class:`LockHeldError` when busy unless ``wait``, and
        :class:`LockNotSupportedError` when the file system cannot lock files."""
        if self._fd is not None:
            return self
        self.waited = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                _flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, self.path, self.what)
            except BlockingIOError:
                holder = read_holder(self.path)
                who = holder.describe() if holder else "a process that has not said who it is"
                if not wait:
                    raise LockHeldError(
                        f"{self.what} is in use by {who}: {self.path} is locked. "
                        f"{self.fix or 'Wait for it to finish or stop it, then run again.'}",
                        holder,
                    ) from None
                logger.warning("%s is in use by %s; waiting for it to finish", self.what, who)
                self.waited = True
                started = time.perf_counter()
                _flock(fd, fcntl.LOCK_EX, self.path, self.what)
                logger.info("%s is free after %.1f s", self.what, time.perf_counter() - started)
            record = json.dumps(asdict(LockHolder.this_process())).encode("utf-8")
            os.ftruncate(fd, 0)
            os.pwrite(fd, record, 0)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def release(self) -> None:
        """Give the lock up (closing the descriptor releases it). Safe to call twice."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)  # an empty file means "free", for people reading it
        finally:
            os.close(fd)

    def __enter__(self) -> Self:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()


__all__ = [
    "ExclusiveLock",
    "LockHeldError",
    "LockHolder",
    "LockNotSupportedError",
    "read_holder",
]
