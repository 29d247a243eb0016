"""Is a configured generator loadable here? Checked before any tokenizer or engine loads it.

transformers reports a missing local folder as a malformed Hub id and an uncached Hub id
under ``HF_HUB_OFFLINE=1`` as a connection failure, both as raw ``OSError`` tracebacks.
:func:`check_generator` says instead which folder is missing, or that the Hub model is not
cached while offline and how to get it, as a :class:`GeneratorNotFoundError`.
"""

from __future__ import annotations

import os
from pathlib import Path

_TRUE = {"1", "ON", "YES", "TRUE"}
_OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
_SETTING = "--backend.generator, or generator= in load_dataset"


class GeneratorNotFoundError(FileNotFoundError, ValueError):
    """The configured generator is neither an existing model folder nor a loadable Hub id."""

    def __str__(self) -> str:
        return str(self.args[0])


def offline_variable() -> str | None:
    """The environment variable that puts the Hub offline (``HF_HUB_OFFLINE``...), or None."""
    for name in _OFFLINE_VARIABLES:
        if os.environ.get(name, "").strip().upper() in _TRUE:
            return name
    from huggingface_hub import constants

    return "HF_HUB_OFFLINE" if constants.HF_HUB_OFFLINE else None


def cached_snapshot(repo_id: str, revision: str | None) -> Path | None:
    """The cached snapshot folder of Hub model ``repo_id`` (never downloads), or None.

    Raises ``ValueError`` (huggingface_hub's ``HFValidationError``) when ``repo_id`` is not a
    valid Hub id.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    try:
        return Path(snapshot_download(repo_id, revision=revision, local_files_only=True))
    except HFValidationError:
        raise
    except (OSError, ValueError):  # LocalEntryNotFoundError and kin: not cached
        return None


def _looks_like_path(generator: str) -> bool:
    """Written as a path: ``./x``, ``/x``, ``~/x``, ``C:\\x`` or with more than one ``/``."""
    return generator.startswith((".", "/", "~")) or "\\" in generator or generator.count("/") > 1


def _no_such_folder(generator: str, also: str = "") -> GeneratorNotFoundError:
    folder = Path(generator).expanduser().absolute()
    return GeneratorNotFoundError(
        f"generator {generator!r}: no such folder: {folder}{also}. Pass an existing model "
        f"folder (one with config.json) or a Hub model id ({_SETTING})."
    )


def check_generator(generator: str, revision: str | None = None) -> None:
    """Raise :class:`GeneratorNotFoundError` unless ``generator`` can be loaded here.

    A folder that exists passes; a value written as a path (``./x``, ``/x``, ``~/x``, not a
    valid Hub id) that does not exist is reported as "no such folder"; a Hub id passes
    when cached, or when the Hub is online (it will be downloaded). Offline, an uncached
    Hub id is refused with how to get it (``hf download``), and one whose first part is a
    local folder (``runs/model``) is also reported as a missing folder.
    """
    local = Path(generator).expanduser()
    if local.is_dir():
        return
    if local.exists():
        raise GeneratorNotFoundError(
            f"generator {generator!r}: {local.absolute()} is a file, not a model folder. Pass "
            f"the folder holding config.json and the weights, or a Hub model id ({_SETTING})."
        )
    if _looks_like_path(generator):
        raise _no_such_folder(generator)
    try:
        if cached_snapshot(generator, revision) is not None:
            return
    except ValueError:
        raise _no_such_folder(generator, " (and it is not a valid Hub model id)") from None
    offline = offline_variable()
    if offline is None:
        return  # transformers / vLLM download it
    if "/" in generator and Path(generator.split("/")[0]).expanduser().is_dir():
        raise _no_such_folder(generator, f", nor a cached Hub model ({offline}=1 is set)")
    from huggingface_hub import constants

    at = f" --revision {revision}" if revision else ""
    raise GeneratorNotFoundError(
        f"generator {generator!r} is not in the local Hugging Face cache "
        f"({constants.HF_HUB_CACHE}) and {offline}=1 is set, so it cannot be downloaded. "
        f"Download it first where there is network (`hf download {generator}{at}`, into this "
        f"HF_HOME's cache), or pass a local model folder ({_SETTING})."
    )


__all__ = ["GeneratorNotFoundError", "cached_snapshot", "check_generator", "offline_variable"]
