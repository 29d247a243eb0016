"""hf_megadocs: data-efficient pre-training with synthetic megadocs on the Hugging Face stack.

``import hf_megadocs`` registers the corpus builder with ``datasets``, so
``datasets.load_dataset("hf_megadocs", "stitched_g32", **knobs)`` works;
:func:`load_corpus` does the same without the registration.
"""

import warnings

from hf_megadocs.corpus import load_corpus
from hf_megadocs.publish import PushResult, push_to_hub
from hf_megadocs.registration import RegistrationError, register

__version__ = "0.1.0"

try:
    register()
except RegistrationError as _error:  # the rest of the package works without it
    warnings.warn(str(_error), RuntimeWarning, stacklevel=2)

__all__ = ["PushResult", "RegistrationError", "load_corpus", "push_to_hub", "register"]
