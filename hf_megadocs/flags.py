"""Command lines from dataclass config trees: one spelling, help from field docstrings.

Every ``hf-megadocs`` subcommand parses its config dataclass here, with ``jsonargparse``:
each field is a flag spelled like the field (``--max_docs``), a nested config gives
``--section.field`` flags (``--backend.generator``), ``--config FILE.yaml`` reads any
subset of the tree, and ``--help`` shows the docstring under each field with its type
and default. Errors from a config's ``__post_init__`` come back as one line saying what
to fix, with exit status 2.

jsonargparse was chosen over transformers' ``HfArgumentParser`` (no nested dataclasses),
``tyro`` (no YAML config files) and ``draccus`` (less used): it keeps ``--section.field``
overrides and YAML configs, and reads field docstrings for the help.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A command line that does not describe a valid config (the message says the fix)."""


def dataclass_parser(cls: type, *, prog: str, description: str | None = None) -> Any:
    """A ``jsonargparse.ArgumentParser`` whose flags are the fields of ``cls``."""
    from jsonargparse import ArgumentParser, set_parsing_settings

    set_parsing_settings(docstring_parse_attribute_docstrings=True)
    parser = ArgumentParser(
        prog=prog,
        description=description,
        exit_on_error=False,
        default_env=False,
    )
    parser.add_argument("--config", action="config", help="YAML file with any of the fields below")
    parser.add_class_arguments(cls, nested_key=None, fail_untyped=True, sub_configs=True)
    return parser


def parse_dataclass(
    cls: type[T],
    argv: Sequence[str] | None,
    *,
    prog: str,
    description: str | None = None,
    defaults: dict[str, Any] | None = None,
) -> T:
    """Parse ``argv`` into an instance of the dataclass ``cls``.

    ``defaults``: flat ``{"section.field": value}`` defaults applied before ``argv``
    (a preset, say). ``--help`` prints and exits 0 as usual.

    Raises:
        ConfigError: an unknown flag, a value of the wrong type, or a value the config's
            ``__post_init__`` rejects.
    """
    from jsonargparse import ArgumentError

    parser = dataclass_parser(cls, prog=prog, description=description)
    if defaults:
        parser.set_defaults(defaults)
    try:
        namespace = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
        built = parser.instantiate(namespace)
    except ArgumentError as error:
        raise ConfigError(str(error).strip()) from None
    except ValueError as error:  # __post_init__ of the config or of a nested one
        raise ConfigError(str(error)) from None
    values = {f.name: getattr(built, f.name) for f in dataclasses.fields(cls) if f.init}
    try:
        return cls(**values)
    except ValueError as error:
        raise ConfigError(str(error)) from None


__all__ = ["ConfigError", "dataclass_parser", "parse_dataclass"]
