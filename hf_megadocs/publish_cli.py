"""Command-line parsing for ``hf-megadocs push`` (the command itself is ``publish.main``).

Every builder knob is a flag: extra ``--name value`` pairs are typed by the builder
config's field annotations, so ``--max_docs 6 --store_dir DIR`` reach ``load_corpus`` as
``max_docs=6, store_dir="DIR"`` and the push reuses what is already built.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Sequence
from typing import Any

import datasets
import yaml


def build_parser() -> argparse.ArgumentParser:
    """The ``hf-megadocs push`` options; builder keyword arguments are extra ``--name value``."""
    parser = argparse.ArgumentParser(
        prog="hf-megadocs push",
        description="Export corpora to Parquet + a dataset card and upload them to the Hub. "
        "Any other --name value pair is passed to the builder (e.g. --max_docs 6 "
        "--store_dir DIR), so the push reuses what is already generated. Put REPO_ID first.",
        epilog="builder options: " + " ".join(f"--{name}" for name in sorted(_builder_fields())),
        allow_abbrev=False,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("repo_id", help="dataset repository, e.g. my-org/lee-megadocs")
    parser.add_argument(
        "--configs", required=True, help="comma-separated configs, e.g. stitched_g32,simple_g32"
    )
    parser.add_argument("--private", action="store_true", help="create the repository private")
    parser.add_argument(
        "--dry-run", action="store_true", help="only write the folder that would be uploaded"
    )
    parser.add_argument("--local-dir", default=None, help="folder to export into (kept)")
    parser.add_argument(
        "--max-shard-size", default="500MB", help="largest Parquet shard (bytes, or 500MB / 1GB)"
    )
    parser.add_argument(
        "--tokenizer", default=None, help="tokenizer that counts the card's tokens ('words' = none)"
    )
    parser.add_argument(
        "--build", action="store_true", help="build configs missing from the cache (may generate)"
    )
    parser.add_argument("--license", default=None, help="Hub license id of the source corpus")
    parser.add_argument("--endpoint", default=None, help="Hub URL (default: HF_ENDPOINT)")
    return parser


def builder_kwargs_from(extra: Sequence[str]) -> dict[str, Any]:
    """``["--max_docs", "6", "--seed=1"]`` -> ``{"max_docs": 6, "seed": 1}``.

    Names may use ``-`` or ``_``. Values are typed by the builder config's field types when
    the builder declares the name, else read as YAML scalars (``6`` -> int, ``true`` -> bool).
    """
    known = _builder_fields()
    kwargs: dict[str, Any] = {}
    items = list(extra)
    while items:
        flag = items.pop(0)
        if not flag.startswith("--") or len(flag) == 2:
            raise ValueError(
                f"Unexpected argument {flag!r}; builder options look like --name value."
            )
        name, _, value = flag[2:].partition("=")
        name = name.replace("-", "_")
        if not _:
            if not items or items[0].startswith("--"):
                raise ValueError(f"Builder option --{name} needs a value, e.g. --{name} VALUE.")
            value = items.pop(0)
        if known and name not in known:
            raise ValueError(
                f"Unknown option --{name}. Builder options: "
                + ", ".join(f"--{n}" for n in sorted(known))
            )
        kwargs[name] = _convert(value, known.get(name))
    return kwargs


def _builder_fields() -> dict[str, Any]:
    """Builder config field name -> type hint ({} when the builder cannot be imported)."""
    try:
        from hf_megadocs.builder import MegadocsConfig
    except ImportError:
        return {}
    base = {f.name for f in dataclasses.fields(datasets.BuilderConfig)}
    hints = typing.get_type_hints(MegadocsConfig)
    known = {
        f.name: hints.get(f.name) for f in dataclasses.fields(MegadocsConfig) if f.name not in base
    }
    return {**known, "cache_dir": str | None, "num_proc": int | None}


def _convert(value: str, hint: Any) -> Any:
    if value.lower() in ("none", "null"):
        return None
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    if str in (typing.get_args(hint) if union else (hint,)):
        return value  # a str field keeps "123" as text
    return yaml.safe_load(value)


__all__ = ["build_parser", "builder_kwargs_from"]
