"""Corpus config names: ``real`` and ``<method>_g<G>`` for any G >= 1.

The name says which assembly method builds the corpus and how many generations each source
document gets. Names are canonical (``stitched_g8``, never ``stitched_g08``) because they
name cache directories and Hub configs.
"""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass
from typing import Literal

Method = Literal[
    "real",
    "simple",
    "simple_no_real",
    "stitched",
    "stitched_real_first",
    "stitched_no_real",
    "latent",
    "reformat",
    "qa",
    "textbook",
]

METHODS: tuple[str, ...] = typing.get_args(Method)
"""Every method, in the order configs are listed."""

GENERATED_METHODS: tuple[str, ...] = METHODS[1:]
"""Methods that need generations, hence a ``_g<G>`` suffix."""

METHOD_PROMPT: dict[str, str] = {
    "simple": "wiki",
    "simple_no_real": "wiki",
    "stitched": "wiki",
    "stitched_real_first": "wiki",
    "stitched_no_real": "wiki",
    "latent": "rationale",
    "reformat": "reformat",
    "qa": "qa",
    "textbook": "textbook",
}
"""The prompt id each generated method sends. simple and all stitched variants share
``wiki``, so they share generations (same requests, same store keys)."""

ONE_ROW_PER_DOC: tuple[str, ...] = ("stitched", "stitched_real_first", "stitched_no_real", "latent")
"""Methods that assemble each document and its G generations into one row (megadocs);
the others make one row per generation (and ``simple`` one more for the real document)."""

SHUFFLED: tuple[str, ...] = ("simple", "simple_no_real")
"""Methods whose rows are shuffled globally (seeded), so related texts are rarely adjacent."""

COMMON_G: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
"""G values listed in ``BUILDER_CONFIGS``; any other G >= 1 works too."""

GRAMMAR = (
    "'real', or '<method>_g<G>' with <method> one of "
    + ", ".join(GENERATED_METHODS)
    + " and <G> an integer >= 1 without leading zeros (e.g. 'stitched_g32', 'latent_g4')"
)
"""The config-name grammar, quoted in every error about a bad name."""

_NAME = re.compile(r"(?P<method>[a-z_]+?)_g(?P<g>[0-9]+)")


@dataclass(frozen=True, slots=True)
class ConfigName:
    """A parsed config name."""

    method: Method
    """The assembly method (the name's stem)."""
    num_generations: int
    """G: generations per source document (0 for ``real``)."""

    @property
    def name(self) -> str:
        """The canonical config name."""
        return format_config_name(self.method, self.num_generations)

    @property
    def prompt_id(self) -> str | None:
        """The prompt the method's generations use; None for ``real``."""
        return METHOD_PROMPT.get(self.method)


def format_config_name(method: str, num_generations: int) -> str:
    """``"real"`` or ``f"{method}_g{num_generations}"``; validates both parts."""
    if method == "real":
        if num_generations:
            raise ValueError(
                f"method 'real' takes no G, got num_generations={num_generations}; use 'real'."
            )
        return "real"
    if method not in GENERATED_METHODS:
        raise ValueError(f"Unknown method {method!r}; config names are {GRAMMAR}.")
    if num_generations < 1:
        raise ValueError(
            f"G must be >= 1 for method {method!r}, got {num_generations}; config names are "
            f"{GRAMMAR}."
        )
    return f"{method}_g{num_generations}"


def parse_config_name(name: str) -> ConfigName:
    """Parse ``name``; raises ``ValueError`` quoting the grammar when it does not fit."""
    if not isinstance(name, str):
        raise ValueError(f"Config name must be a string, got {name!r}; config names are {GRAMMAR}.")
    if name == "real":
        return ConfigName(method="real", num_generations=0)
    match = _NAME.fullmatch(name)
    if match is None or match["method"] not in GENERATED_METHODS:
        hint = ""
        if name in GENERATED_METHODS:
            hint = f" Add the number of generations, e.g. '{name}_g8'."
        raise ValueError(f"Unknown config name {name!r}: config names are {GRAMMAR}.{hint}")
    digits = match["g"]
    g = int(digits)
    if g < 1:
        raise ValueError(
            f"Config name {name!r} has G={g}; G must be >= 1 (e.g. '{match['method']}_g1')."
        )
    if digits != str(g):
        raise ValueError(
            f"Config name {name!r} has a zero-padded G; write '{match['method']}_g{g}'."
        )
    return ConfigName(method=match["method"], num_generations=g)  # type: ignore[arg-type]


def common_config_names() -> list[str]:
    """``real`` plus every method at every G in :data:`COMMON_G` (the listed configs)."""
    return ["real"] + [format_config_name(m, g) for m in GENERATED_METHODS for g in COMMON_G]


__all__ = [
    "COMMON_G",
    "GENERATED_METHODS",
    "GRAMMAR",
    "METHODS",
    "METHOD_PROMPT",
    "ConfigName",
    "Method",
    "common_config_names",
    "format_config_name",
    "parse_config_name",
]
