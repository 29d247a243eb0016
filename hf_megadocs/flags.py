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
import re
import sys
from collections.abc import Sequence
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A command line that does not describe a valid config (the message says the fix)."""


def _yaml_loader() -> Any:
    """PyYAML's safe loader with YAML 1.2 booleans: only true/false, so ``mixed_precision:
    no`` stays the string "no" (YAML 1.1 would read no/off/yes/on as booleans)."""
    import re

    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:bool",
        re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
        list("tTfF"),
    )
    return lambda text: yaml.load(text, Loader=Loader)  # noqa: S506 (a SafeLoader subclass)


def dataclass_parser(cls: type, *, prog: str, description: str | None = None) -> Any:
    """A ``jsonargparse.ArgumentParser`` whose flags are the fields of ``cls``."""
    import yaml
    from jsonargparse import ArgumentParser, set_loader, set_parsing_settings

    set_parsing_settings(docstring_parse_attribute_docstrings=True)
    set_loader("yaml", _yaml_loader(), exceptions=(yaml.YAMLError,))
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
    positional: str | None = None,
) -> T:
    """Parse ``argv`` into an instance of the dataclass ``cls``.

    ``defaults``: flat ``{"section.field": value}`` defaults applied before ``argv``
    (a preset, say). ``positional``: a field that the leading non-flag arguments fill
    (a list field takes them all, e.g. ``report runs/*``; any other takes one).
    ``--help`` prints and exits 0 as usual.

    Raises:
        ConfigError: an unknown flag, a value of the wrong type, or a value the config's
            ``__post_init__`` rejects.
    """
    from jsonargparse import ArgumentError

    parser = dataclass_parser(cls, prog=prog, description=description)
    if defaults:
        parser.set_defaults(defaults)
    args = list(sys.argv[1:] if argv is None else argv)
    if positional is not None:
        args = _positional_as_flag(cls, positional, args)
    try:
        namespace = parser.parse_args(args)
        built = parser.instantiate(namespace)
    except ArgumentError as error:
        raise ConfigError(_readable(str(error))) from None
    except ValueError as error:  # __post_init__ of the config or of a nested one
        raise ConfigError(str(error)) from None
    values = {f.name: getattr(built, f.name) for f in dataclasses.fields(cls) if f.init}
    try:
        return cls(**values)
    except ValueError as error:
        raise ConfigError(str(error)) from None


_TYPE_ERROR = re.compile(
    r'Parser key "(?P<key>[^"]+)":\s*Expected a (?P<type>.+?)\. Got value: (?P<value>.*)', re.S
)
_UNION_ERROR = re.compile(
    r'Parser key "(?P<key>[^"]+)":.*?Subtypes: \[(?P<type>[^\]]*)\].*Given value: (?P<value>.*)',
    re.S,
)


def _readable(message: str) -> str:
    """jsonargparse's 'Parser key "x": Expected a <class 'int'>. Got value: y' (or its
    Union variant) as one line naming the flag, the value and what is allowed."""
    match = _TYPE_ERROR.search(message) or _UNION_ERROR.search(message)
    if match is None:
        return message.strip()
    expected = re.sub(r"<class '([^']+)'>", r"\1", match["type"]).replace("typing.", "")
    expected = expected.replace("NoneType", "null").replace(", ", " or ")
    value = match["value"].strip().splitlines()[0]
    return f"--{match['key']}={value!r} is not allowed: expected {expected}."


def _positional_as_flag(cls: type, name: str, args: list[str]) -> list[str]:
    """``["a", "b", "--x", "1"]`` → ``["--name", '["a", "b"]', "--x", "1"]`` (or one value)."""
    import json
    import typing

    leading = 0
    while leading < len(args) and not args[leading].startswith("-"):
        leading += 1
    if not leading:
        return args
    hint = typing.get_type_hints(cls)[name]
    if typing.get_origin(hint) is list:
        value = json.dumps(args[:leading])
    elif leading == 1:
        value = args[0]
    else:
        raise ConfigError(f"expected one {name.upper()} before the flags, got {args[:leading]}.")
    return [f"--{name}", value, *args[leading:]]


__all__ = ["ConfigError", "dataclass_parser", "parse_dataclass"]
