"""Command lines from dataclass config trees: help from field docstrings, familiar spellings.

Every ``hf-megadocs`` subcommand parses its config dataclass here, with ``jsonargparse``:
each field is a flag spelled like the field (``--max_docs``), a nested config gives
``--section.field`` flags (``--backend.generator``), ``--config FILE.yaml`` (or a bundled
config's name, :mod:`hf_megadocs.configs`) reads any subset of the tree, and ``--help`` shows the docstring under each field with its type
and default. Errors from a config's ``__post_init__`` come back as one line saying what
to fix, with exit status 2.

The spellings users bring from ``HfArgumentParser`` and ``accelerate launch`` work too
(:func:`canonical_argv` rewrites them before jsonargparse parses, from the parser's own
options and type hints):

- dashes or underscores in a flag name, at any depth and in ``--flag=value`` form:
  ``--source.max-docs 8`` is ``--source.max_docs 8`` (values are never rewritten);
- a bool flag alone means true (``--dry-run``); ``--no_`` or ``--no-`` before the whole
  flag means false (``--no_dry_run``, nested ``--no-backend.enforce-eager``, the placement
  of jsonargparse's own ``ActionYesNo``); ``--flag true|false`` still works;
- a list or tuple flag takes space-separated values up to the next flag
  (``--configs stitched_g2 real``) or one YAML/JSON list (``--configs '[stitched_g2, real]'``).

jsonargparse was chosen over transformers' ``HfArgumentParser`` (no nested dataclasses),
``tyro`` (no YAML config files) and ``draccus`` (less used): it keeps ``--section.field``
overrides and YAML configs, and reads field docstrings for the help.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import json
import re
import sys
import types
import typing
from collections.abc import Sequence
from typing import Any, TypeVar

from hf_megadocs.configs import with_bundled_configs

T = TypeVar("T")

SPELLINGS = (
    "Flags take dashes or underscores (--source.max-docs 8 = --source.max_docs 8). A bool "
    "flag alone means true (--dry-run); --no_FLAG or --no-FLAG means false (--no_dry_run, "
    "--no-backend.enforce-eager). A list flag takes space-separated values (--configs a b) "
    "or a YAML list (--configs '[a, b]')."
)
"""The help epilog: the spellings :func:`canonical_argv` accepts besides the canonical ones."""


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
    return lambda text: yaml.load(text, Loader=Loader)  # a SafeLoader subclass: safe


def dataclass_parser(cls: type, *, prog: str, description: str | None = None) -> Any:
    """A ``jsonargparse.ArgumentParser`` whose flags are the fields of ``cls``."""
    import yaml
    from jsonargparse import ArgumentParser, set_loader, set_parsing_settings

    set_parsing_settings(docstring_parse_attribute_docstrings=True)
    set_loader("yaml", _yaml_loader(), exceptions=(yaml.YAMLError,))
    parser = ArgumentParser(
        prog=prog,
        description=description,
        epilog=SPELLINGS,
        exit_on_error=False,
        default_env=False,
    )
    parser.add_argument(
        "--config",
        action="config",
        help="YAML file with any of the fields below, or a bundled config's name (tiny_cpu, ...)",
    )
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
    ``--help`` prints and exits 0 as usual. The spellings of :func:`canonical_argv`
    (dashes, bare and ``--no_`` booleans, space-separated lists) are accepted.

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
    args = with_bundled_configs(canonical_argv(parser, args))
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
    r'Parser key "(?P<key>[^"]+)":\s*Expected a (?P<type>.+?)\. Got value: (?P<value>.*)', re.DOTALL
)
_UNION_ERROR = re.compile(
    r'Parser key "(?P<key>[^"]+)":.*?Subtypes: \[(?P<type>[^\n]*)\]\n.*Given value: (?P<value>.*)',
    re.DOTALL,
)


def _readable(message: str) -> str:
    """jsonargparse's 'Parser key "x": Expected a <class 'int'>. Got value: y' (or its
    Union variant) as one line naming the flag, the value and what is allowed."""
    match = _TYPE_ERROR.search(message) or _UNION_ERROR.search(message)
    if match is None:
        return message.strip()
    expected = re.sub(r"<class '([^']+)'>", r"\1", match["type"]).replace("typing.", "")
    expected = expected.replace("NoneType", "null").replace(", ", " or ")
    value = (match["value"].strip().splitlines() or [""])[0]
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


def canonical_argv(parser: Any, args: Sequence[str]) -> list[str]:
    """``args`` in the spelling jsonargparse parses, for the options of ``parser``.

    Rewrites only what names one of the parser's options: ``--source.max-docs`` →
    ``--source.max_docs`` (also ``--flag=value``); a bool flag with no value → ``--flag
    true``; ``--no_flag`` / ``--no-flag`` (nested: ``--no_section.field``) → ``--flag
    false``; space-separated values of a list or tuple flag → one JSON list (one value that
    already is a YAML list, or null, is kept). Anything else, values and unknown flags
    included, is passed on as it is, for jsonargparse to parse or reject.

    Raises:
        ConfigError: a ``--no_flag=value``.
    """
    options = _options(parser)
    out: list[str] = []
    i = 0
    while i < len(args):
        token = args[i]
        i += 1
        if token == "--":  # argparse's end of options: the rest are values
            out.extend(args[i - 1 :])
            break
        if not token.startswith("--"):
            out.append(token)
            continue
        name, equals, value = token.partition("=")
        key = _key(name)
        negated = _negated(key, options)
        if key not in options and negated is not None:
            if equals:
                raise ConfigError(f"{name} takes no value: write {negated} {value} instead.")
            out += [negated, "false"]
            continue
        if key not in options:
            out.append(token)
            continue
        flag, hint = options[key]
        if equals:
            out.append(f"{flag}={_list_value(hint, [value])}")
        elif _is_sequence(hint):
            start = i
            while i < len(args) and not _is_flag(args[i]):
                i += 1
            out += [flag, _list_value(hint, args[start:i])] if i > start else [flag]
        elif bool in _members(hint) and (i == len(args) or _is_flag(args[i])):
            out += [flag, "true"]
        else:
            out.append(flag)
    return out


def _options(parser: Any) -> dict[str, tuple[str, Any]]:
    """``{normalized flag: (flag, type hint or None)}`` for every ``--`` option of ``parser``
    (jsonargparse's ``--list+ ITEM``, which appends one item, gets no hint: no rewriting)."""
    options = {}
    for action in parser._actions:
        for flag in action.option_strings:
            if flag.startswith("--"):
                hint = None if flag.endswith("+") else getattr(action, "_typehint", None)
                options[_key(flag)] = (flag, hint)
    return options


def _key(flag: str) -> str:
    """``--source.max-docs`` → ``--source.max_docs``: the spelling-independent name."""
    return "--" + flag[2:].replace("-", "_")


def _negated(key: str, options: dict[str, tuple[str, Any]]) -> str | None:
    """The bool flag that ``key`` (``--no_section.field``) sets to false, if any."""
    if not key.startswith("--no_"):
        return None
    flag, hint = options.get("--" + key[len("--no_") :], ("", None))
    return flag if bool in _members(hint) else None


_NEGATIVE_NUMBER = re.compile(r"^-\.?\d")


def _is_flag(token: str) -> bool:
    """Whether ``token`` is an option rather than a value (``-1``, ``-0.5`` are values)."""
    return token.startswith("-") and len(token) > 1 and not _NEGATIVE_NUMBER.match(token)


def _members(hint: Any) -> tuple[Any, ...]:
    """The types a hint allows besides None (``bool | None`` → ``(bool,)``)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return tuple(arg for arg in typing.get_args(hint) if arg is not type(None))
    return () if hint is None else (hint,)


_SEQUENCES = (list, tuple, set, frozenset, collections.abc.Sequence)


def _is_sequence(hint: Any) -> bool:
    """Whether every non-None type ``hint`` allows is a list, tuple or set."""
    members = _members(hint)
    return bool(members) and all(
        member in _SEQUENCES or typing.get_origin(member) in _SEQUENCES for member in members
    )


def _list_value(hint: Any, values: Sequence[str]) -> str:
    """The one value to pass for ``values`` of a flag typed ``hint``: a JSON list of the
    words (jsonargparse converts each to the item type) unless ``hint`` is not a sequence
    or the single word already is a YAML list or null."""
    if not _is_sequence(hint):
        return values[0]
    if len(values) == 1:
        import yaml

        text = values[0].strip()
        try:
            loaded = text.startswith("[") or yaml.safe_load(text)
        except yaml.YAMLError:
            loaded = False
        if loaded is True or loaded is None or isinstance(loaded, list):
            return values[0]
    return json.dumps(list(values))


__all__ = ["SPELLINGS", "ConfigError", "canonical_argv", "dataclass_parser", "parse_dataclass"]
