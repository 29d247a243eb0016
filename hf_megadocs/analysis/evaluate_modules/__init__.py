"""`evaluate` modules shipped with hf_megadocs, loadable offline with ``evaluate.load(path)``.

``megadocs_loss`` (token-weighted loss and loss by position) and ``data_efficiency``
(multipliers under a fitted real-only data law). Each lives in its own folder, as
``evaluate`` expects (``<name>/<name>.py``).
"""

from __future__ import annotations

from pathlib import Path

MODULES: tuple[str, ...] = ("megadocs_loss", "data_efficiency")
"""Names of the shipped modules."""


def module_path(name: str) -> str:
    """Folder of the shipped module ``name``, for ``evaluate.load(module_path(name))``."""
    if name not in MODULES:
        raise ValueError(f"unknown evaluate module {name!r}; the shipped ones are {list(MODULES)}.")
    return str(Path(__file__).resolve().parent / name)
