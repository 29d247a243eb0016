"""Optional dependencies, installed through the package's extras, imported only when needed.

The core install builds corpora and trains; a few features need more:

- ``embedded`` (gensim, gguf): the bundled news corpus and the embedded generator;
- ``analysis`` (matplotlib, scipy, evaluate): report figures, fits, the ``evaluate`` metrics;
- ``tensorboard`` (tensorboard): the trainer's ``log_with="tensorboard"``.

Each use site calls :func:`require` at the point of use, so ``import hf_megadocs`` and the
builder and trainer never import these packages; when one is missing the user gets a
:class:`MissingExtraError` naming the ``pip install`` line that fixes it.
"""

from __future__ import annotations

import importlib
import importlib.util
from importlib.machinery import ModuleSpec
from types import ModuleType

EXTRAS: dict[str, tuple[str, ...]] = {
    "embedded": ("gensim", "gguf"),
    "analysis": ("matplotlib", "scipy", "evaluate"),
    "tensorboard": ("tensorboard",),
}
"""Extra name → the top-level packages it installs (kept equal to ``setup.cfg``)."""


class MissingExtraError(ImportError):
    """An optional package is not installed; the message names the extra that installs it."""

    def __init__(self, module: str, extra: str, purpose: str, *, otherwise: str = "") -> None:
        super().__init__(
            f"{purpose} needs {module.split('.')[0]}, which is not installed. "
            f"Install it with: pip install 'hf_megadocs[{extra}]'"
            + (f", or {otherwise}." if otherwise else ""),
            name=module,
        )
        self.extra = extra
        self.purpose = purpose


def _check_extra(module: str, extra: str) -> None:
    top = module.split(".")[0]
    if top not in EXTRAS.get(extra, ()):
        raise ValueError(f"{top!r} is not in the {extra!r} extra {EXTRAS.get(extra)}.")


def require(module: str, extra: str, purpose: str, *, otherwise: str = "") -> ModuleType:
    """Import and return ``module``, an optional dependency installed by ``extra``.

    ``purpose`` says what needs it, as the subject of a sentence ("Report figures");
    ``otherwise``, if given, is the way to do without it ("pass --log_with none").

    Raises:
        MissingExtraError: ``module`` (or its own top-level package) is not installed. Other
            import failures (a broken install) propagate unchanged.
    """
    _check_extra(module, extra)
    try:
        return importlib.import_module(module)
    except ImportError as error:
        # Only "not installed" is ours to explain; an ImportError raised inside an installed
        # package (a missing dependency of its own) is left to speak for itself.
        if error.name is None or module.split(".")[0] != error.name.split(".")[0]:
            raise
        raise MissingExtraError(module, extra, purpose, otherwise=otherwise) from error


def require_spec(module: str, extra: str, purpose: str) -> ModuleSpec:
    """The import spec of ``module`` without importing it (for data files in its wheel).

    Raises:
        MissingExtraError: ``module`` is not installed.
    """
    _check_extra(module, extra)
    spec = importlib.util.find_spec(module)
    if spec is None:
        raise MissingExtraError(module, extra, purpose)
    return spec


__all__ = ["EXTRAS", "MissingExtraError", "require", "require_spec"]
