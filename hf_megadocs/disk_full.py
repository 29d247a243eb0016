"""A full disk (ENOSPC) or an exceeded quota (EDQUOT) while writing: one clear error.

Every writer that can hit a full disk (the generation store, a corpus build, a training
checkpoint) wraps its writes in :func:`disk_full_errors`, which turns the low-level error
(``OSError: [Errno 28]``, safetensors' ``StorageFull``, torch's ``unexpected pos``) into a
:class:`DiskFullError` naming the folder being written, what is kept, and how to resume.
The command-line entry points print it as one line, without a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import shutil
from collections.abc import Iterator
from pathlib import Path

DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})
"""``errno`` values of a full disk and of an exceeded quota."""
_MESSAGES = ("No space left on device", "Disk quota exceeded", "StorageFull", "QuotaExceeded")
"""The same errors in the text of libraries that do not raise ``OSError`` (safetensors)."""
_TORCH_SAVE_FAILURES = ("unexpected pos", "file write failed")
"""How ``torch.save`` reports a write that failed part-way (a full disk, in practice)."""


class DiskFullError(OSError):
    """The disk (or quota) filled up while writing ``path``; the message says the fix."""

    def __init__(self, message: str, path: str, code: int) -> None:
        super().__init__(message)
        self.errno = code
        self.path = path

    def __str__(self) -> str:
        return str(self.args[0])


def is_disk_full(error: BaseException, *, torch_save: bool = False) -> bool:
    """Whether ``error`` (or an error it was raised from) says the disk or quota is full.

    ``torch_save``: also count torch's write-failure ``RuntimeError`` ("unexpected pos
    ... vs ...", "file write failed"), which on a save means the bytes did not fit.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in DISK_FULL_ERRNOS:
            return True
        text = str(current)
        if any(marker in text for marker in _MESSAGES):
            return True
        if torch_save and isinstance(current, RuntimeError):
            if any(marker in text for marker in _TORCH_SAVE_FAILURES):
                return True
        suppressed = current.__suppress_context__  # ``raise ... from None``: not a cause
        current = current.__cause__ or (None if suppressed else current.__context__)
    return False


def _free_space(path: Path) -> str:
    """Free bytes on the file system holding ``path`` (its nearest existing folder)."""
    for folder in (path, *path.parents):
        if folder.exists():
            try:
                free = shutil.disk_usage(folder).free
            except OSError:
                return "free space unknown"
            return f"{free / 2**20:,.1f} MiB free"
    return "free space unknown"


def disk_full_error(error: BaseException, path: str | Path, *, what: str, kept: str,
                    resume: str) -> DiskFullError:  # fmt: skip
    """The :class:`DiskFullError` for ``error`` raised while writing ``what`` (a phrase that
    names the folder, e.g. "the generation store /data/store") on the disk of ``path``.

    ``kept`` says what survived (a sentence); ``resume`` says how to go on once space is
    freed (a clause after "then").
    """
    path = Path(path).expanduser()
    code = getattr(error, "errno", None)
    full = "over its quota" if code == getattr(errno, "EDQUOT", None) else "full"
    file = getattr(error, "filename", None)
    detail = f" (at {file})" if file else ""
    message = (
        f"the disk is {full} ({_free_space(path)}) while writing {what}{detail}. "
        f"{kept} Free some space (or write elsewhere), then {resume}."
    )
    return DiskFullError(message, str(path), code if code in DISK_FULL_ERRNOS else errno.ENOSPC)


@contextlib.contextmanager
def disk_full_errors(path: str | Path, *, what: str, kept: str, resume: str,
                     torch_save: bool = False) -> Iterator[None]:  # fmt: skip
    """Raise a :class:`DiskFullError` (see :func:`disk_full_error`) for a full disk inside.

    Any other error passes through unchanged, and so does a :class:`DiskFullError` raised
    by an inner writer (it already names its own path).
    """
    try:
        yield
    except DiskFullError:
        raise
    except Exception as error:
        if not is_disk_full(error, torch_save=torch_save):
            raise
        raise disk_full_error(error, path, what=what, kept=kept, resume=resume) from error


_STORE_KEPT = "Nothing already stored is lost: every generation written before it is kept."
_RESUME = "rerun the same command: it resumes after the generations already stored"


def store_disk_full_errors(store_dir: str | Path) -> contextlib.AbstractContextManager[None]:
    """:func:`disk_full_errors` for filling the generation store at ``store_dir``."""
    what = f"the generation store {Path(store_dir).expanduser()}"
    return disk_full_errors(store_dir, what=what, kept=_STORE_KEPT, resume=_RESUME)


def build_disk_full_errors(
    corpus: str, store: str | Path, cache_dir: str | Path | None
) -> contextlib.AbstractContextManager[None]:
    """:func:`disk_full_errors` for building corpus ``corpus`` (``load_corpus`` or
    ``load_dataset``): it fills the generation store at ``store``, then writes the datasets
    cache (``cache_dir``; None = the default one)."""
    import datasets

    cache = Path(cache_dir or datasets.config.HF_DATASETS_CACHE).expanduser()
    what = f"corpus {corpus!r} (into the generation store {store} and the datasets cache {cache})"
    kept = f"{_STORE_KEPT} A half-built corpus is never kept in the datasets cache."
    return disk_full_errors(store, what=what, kept=kept, resume=_RESUME)


__all__ = [
    "DISK_FULL_ERRNOS",
    "DiskFullError",
    "build_disk_full_errors",
    "disk_full_error",
    "disk_full_errors",
    "is_disk_full",
    "store_disk_full_errors",
]
