"""hf_megadocs: data-efficient pre-training with synthetic megadocs on the Hugging Face stack.

``import hf_megadocs`` registers the corpus builder with ``datasets``, so
``datasets.load_dataset("hf_megadocs", "stitched_g32", **knobs)`` works; it imports
``datasets`` but not torch, transformers, accelerate or vLLM, which load only when a
function needs them. The stages are subpackages, each importing only from those above it
in this list: :mod:`~hf_megadocs.generation`, :mod:`~hf_megadocs.corpora`,
:mod:`~hf_megadocs.training`, :mod:`~hf_megadocs.hub`, :mod:`~hf_megadocs.analysis`,
:mod:`~hf_megadocs.jobs` (see ARCHITECTURE.md).
"""

import importlib
import warnings
from typing import Any

from hf_megadocs.corpora.registration import RegistrationError, register

__version__ = "0.1.0"

_EXPORTS = {
    "load_corpus": "hf_megadocs.corpora.load",
    "shared_backend": "hf_megadocs.corpora.load",
    "push_to_hub": "hf_megadocs.hub.export",
    "PushResult": "hf_megadocs.hub.export",
}
"""Public names served on first use (PEP 562), so the package import stays light."""

try:
    register()
except RegistrationError as _error:  # the rest of the package works without it
    warnings.warn(str(_error), RuntimeWarning, stacklevel=2)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'hf_megadocs' has no attribute {name!r}")


__all__ = [*_EXPORTS, "RegistrationError", "register"]
