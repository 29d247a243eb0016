"""Which config fields change what is produced: one mark, read by everyone who asks.

A setting either changes the output (which documents are read, what is sent to the
generator, how rows are assembled) or only how the work is done (batch sizes, engine
memory and threads, retries). Fields of the second kind are declared with
:func:`process_setting`; the corpus fingerprint (its ``datasets`` cache id), the dataset
card and the store's run records all read that mark through :func:`output_settings`
instead of keeping lists of their own.
"""

from __future__ import annotations

import dataclasses
from dataclasses import MISSING, Field
from typing import Any

_KEY = "changes_output"


def process_setting(default: Any = MISSING, *, default_factory: Any = MISSING) -> Any:
    """A dataclass field that changes how work is done, never what it produces."""
    return dataclasses.field(
        default=default, default_factory=default_factory, metadata={_KEY: False}
    )


def changes_output(field: Field) -> bool:
    """Whether ``field`` can change the output (every field unless marked otherwise)."""
    return field.metadata.get(_KEY, True)


def flat_settings(config: Any, *, outputs_only: bool = False, prefix: str = "") -> dict[str, Any]:
    """``{"section.field": value}`` for a tree of dataclasses (nested ones flattened).

    ``outputs_only`` leaves out the fields marked with :func:`process_setting` (and whole
    sections marked so).
    """
    out: dict[str, Any] = {}
    for field in dataclasses.fields(config):
        if not field.init or (outputs_only and not changes_output(field)):
            continue
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            out.update(
                flat_settings(value, outputs_only=outputs_only, prefix=f"{prefix}{field.name}.")
            )
        else:
            out[prefix + field.name] = value
    return out


def output_settings(config: Any) -> dict[str, Any]:
    """The settings of ``config`` that change its output, flattened (see :func:`flat_settings`)."""
    return flat_settings(config, outputs_only=True)


__all__ = ["changes_output", "flat_settings", "output_settings", "process_setting"]
