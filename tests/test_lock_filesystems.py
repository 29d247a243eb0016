"""hf_megadocs.locks on file systems without working locks (NFS ``nolock``, Lustre without
``-o flock``): a clear LockNotSupportedError, while a busy lock stays a LockHeldError."""

from __future__ import annotations

import errno
import fcntl
import os
import pickle

import pytest

from hf_megadocs import locks
from hf_megadocs.locks import ExclusiveLock, LockHeldError, LockNotSupportedError

UNSUPPORTED = ("ENOLCK", "ENOSYS", "EOPNOTSUPP", "ENOTSUP", "EINVAL")


def _flock_failing_with(code: int, *, blocking_too: bool = True):
    """A stand-in for ``fcntl.flock`` that fails with ``code`` (non-blocking calls only
    unless ``blocking_too``) and otherwise locks for real."""
    real = fcntl.flock

    def flock(fd: int, operation: int) -> None:
        if blocking_too or operation & fcntl.LOCK_NB:
            raise OSError(code, os.strerror(code))
        real(fd, operation)

    return flock


@pytest.mark.parametrize("name", UNSUPPORTED)
def test_a_file_system_without_locks_gets_a_clear_error(name, monkeypatch, tmp_path):
    code = getattr(errno, name)
    monkeypatch.setattr(locks.fcntl, "flock", _flock_failing_with(code))
    path = tmp_path / "run.lock"
    lock = ExclusiveLock(path, "run folder runs/x")
    with pytest.raises(LockNotSupportedError) as caught:
        lock.acquire()
    error = caught.value
    assert isinstance(error, OSError) and not isinstance(error, LockHeldError)
    assert error.errno == code and error.filename == str(path)
    message = str(error)
    assert message.startswith(f"Cannot lock {path} (run folder runs/x)")
    assert errno.errorcode[code] in message and "does not support POSIX/flock locks" in message
    assert "node-local" in message and "HF_MEGADOCS_CACHE" in message
    assert "NFS without 'nolock'" in message and "Lustre with '-o flock'" in message
    assert isinstance(error.__cause__, OSError) and error.__cause__.errno == code
    assert not lock.held


def test_waiting_on_a_file_system_without_locks_fails_the_same_way(monkeypatch, tmp_path):
    monkeypatch.setattr(locks.fcntl, "flock", _flock_failing_with(errno.ENOLCK))
    with pytest.raises(LockNotSupportedError, match="ENOLCK"):
        ExclusiveLock(tmp_path / "shard.lock", "shard 0").acquire(wait=True)


@pytest.mark.parametrize("name", ["EWOULDBLOCK", "EAGAIN", "EACCES"])
def test_a_busy_lock_is_still_a_held_lock(name, monkeypatch, tmp_path):
    monkeypatch.setattr(
        locks.fcntl, "flock", _flock_failing_with(getattr(errno, name), blocking_too=False)
    )
    lock = ExclusiveLock(tmp_path / "run.lock", "test folder")
    with pytest.raises(LockHeldError, match="test folder is in use by"):
        lock.acquire()
    assert not lock.held
    # wait=True takes the blocking path, which the stand-in leaves to the real flock.
    assert lock.acquire(wait=True).held and lock.waited
    lock.release()


def test_the_error_survives_a_process_boundary(tmp_path):
    error = LockNotSupportedError.refused(
        tmp_path / "x.lock", "a store", OSError(errno.ENOLCK, "No locks available")
    )
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is LockNotSupportedError
    assert (copy.errno, copy.filename, str(copy)) == (error.errno, error.filename, str(error))


def test_the_cli_prints_it_as_one_line(monkeypatch, capsys, tmp_path):
    from hf_megadocs import cli
    from hf_megadocs.analysis import report

    monkeypatch.setattr(locks.fcntl, "flock", _flock_failing_with(errno.ENOLCK))
    monkeypatch.setattr(
        report, "main", lambda argv: ExclusiveLock(tmp_path / "r.lock", "a report").acquire()
    )
    assert cli.main(["report"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("hf-megadocs report: error: Cannot lock ")
