"""``MegadocsConfig``: one corpus, named by its config name, built from shared settings.

The method and G come from the name (``stitched_g32``); everything else is the
:class:`~hf_megadocs.generation.config.GenerationSettings` that ``hf-megadocs generate`` uses
too (source, split, sampling, backend, store), plus the few settings of assembly itself.

``load_dataset("hf_megadocs", name, **knobs)`` passes flat knobs (``max_docs=80``,
``generator=...``, ``max_new_tokens=...``): :func:`config_from_knobs` puts each in its one
home, by the field names of the nested configs (:data:`FLAT_RENAMES` lists the four that are
renamed to stay unambiguous), so no setting is declared twice.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
from datasets.fingerprint import Hasher

from hf_megadocs.corpora import assembly
from hf_megadocs.corpora.names import METHOD_PROMPT, parse_config_name
from hf_megadocs.generation.config import GenerationSettings
from hf_megadocs.generation.sources import EMBEDDED_SOURCES
from hf_megadocs.generation.store import resolve_store_dir
from hf_megadocs.settings import changes_output, output_settings

SECTIONS: tuple[str, ...] = ("source", "split", "sampling", "backend")
"""The nested configs whose fields are also flat knobs."""
FLAT_RENAMES: dict[str, str] = {
    "source.split": "source_split",
    "source.dataset_config": "source_config",
    "split.seed": "split_seed",
    "backend.revision": "generator_revision",
}
"""Nested fields whose flat knob has another name (the plain one would be ambiguous)."""
REAL_DEPENDS_ON: tuple[str, ...] = ("source.", "split.", "long_doc_min_words")
"""The only settings the ``real`` corpus depends on (it sends nothing to a generator)."""


@dataclass(kw_only=True)
class MegadocsConfig(datasets.BuilderConfig, GenerationSettings):
    """One corpus: method and G from ``name``; generation settings plus assembly settings."""

    long_doc_min_words: int | None = 1000
    """Documents with at least this many words form ``validation_long`` (for the embedded
    source: CPython's pydoc topics); None = no long-document split."""
    separator: str = "\n\n"
    """Text between the parts of a stitched megadoc (a ``separator`` segment → EOS)."""
    latent_split_rule: str = "equal_tokens"
    """Latent split points: "equal_tokens" (whitespace tokens) or "sentences"."""
    latent_open: str = "<thought>"
    """Text before each inserted rationale."""
    latent_close: str = "</thought>"
    """Text after each inserted rationale."""

    def __post_init__(self) -> None:
        datasets.BuilderConfig.__post_init__(self)
        GenerationSettings.__post_init__(self)
        self._parsed = parse_config_name(self.name)
        checks = [
            (
                "long_doc_min_words",
                self.long_doc_min_words is None or self.long_doc_min_words >= 1,
                "None or an int >= 1",
            ),
            (
                "separator",
                isinstance(self.separator, str) and bool(self.separator),
                "a non-empty string (it marks document boundaries)",
            ),
            (
                "latent_split_rule",
                self.latent_split_rule in assembly.LATENT_SPLIT_RULES,
                " or ".join(repr(r) for r in assembly.LATENT_SPLIT_RULES),
            ),
            (
                "context_policy",
                self.context_policy in ("truncate", "skip"),
                "'truncate' or 'skip' (corpora need one request per sample; "
                "'chunk' is for hf-megadocs generate)",
            ),
        ]
        for knob, ok, allowed in checks:
            if not ok:
                raise ValueError(
                    f"hf_megadocs config {self.name!r}: {knob}={getattr(self, knob)!r} is not "
                    f"allowed; use {allowed}."
                )

    @property
    def method(self) -> str:
        """The assembly method (the name's stem)."""
        return self._parsed.method

    @property
    def num_generations(self) -> int:
        """G, from the name (0 for ``real``)."""
        return self._parsed.num_generations

    @property
    def prompt_id(self) -> str:
        """The prompt id the method's generations use ("" for ``real``)."""
        return METHOD_PROMPT.get(self.method, "")

    def row_settings(self) -> dict[str, Any]:
        """The settings that change this corpus's rows, flattened (``source.max_docs``, ...)."""
        return {
            k: v for k, v in output_settings(self).items() if k.split(".")[0] not in _BASE_FIELDS
        }

    def fingerprint(self) -> str:
        """A digest of everything that changes this corpus's rows (the cache ``config_id``)."""
        payload = self.row_settings()
        if self.method == "real":
            payload = {k: v for k, v in payload.items() if k.startswith(REAL_DEPENDS_ON)}
        else:
            from hf_megadocs.generation.prompts import get_prompt

            payload["store_dir"] = str(resolve_store_dir(self.store_dir).resolve())
            payload["prompt_hash"] = get_prompt(
                self.prompt_id, self.prompt_template_file
            ).content_hash
        payload["source_files"] = _local_source_signature(self.source.source)
        payload["name"] = self.name
        return Hasher.hash(payload)[:16]


_BASE_FIELDS = frozenset(f.name for f in dataclasses.fields(datasets.BuilderConfig))


def _knob_homes() -> dict[str, tuple[str | None, dataclasses.Field]]:
    """Flat knob name → (section or None, field), checked to give each knob one home."""
    homes: dict[str, tuple[str | None, dataclasses.Field]] = {}
    hints = typing.get_type_hints(MegadocsConfig)
    for field in dataclasses.fields(MegadocsConfig):
        if field.name in _BASE_FIELDS or field.name in SECTIONS:
            continue
        homes[field.name] = (None, field)
    for section in SECTIONS:
        for field in dataclasses.fields(hints[section]):
            name = FLAT_RENAMES.get(f"{section}.{field.name}", field.name)
            if name in homes and name != section:
                raise RuntimeError(f"builder knob {name!r} has two homes")  # a code bug
            homes[name] = (section, field)
    return homes


KNOB_HOMES = _knob_homes()
"""Every flat builder knob and where it lives."""


def knob_changes_output(name: str) -> bool:
    """Whether the flat knob ``name`` can change a corpus's rows (unknown names: True)."""
    home = KNOB_HOMES.get(name)
    return home is None or changes_output(home[1])


def config_from_knobs(name: str, **knobs: Any) -> MegadocsConfig:
    """``MegadocsConfig`` for config ``name`` from flat knobs (or whole nested configs).

    Raises:
        ValueError: an unknown knob (the message lists them all) or a value a config
            rejects (the message names the knob).
    """
    unknown = sorted(set(knobs) - set(KNOB_HOMES) - set(SECTIONS) - {"version", "description"})
    if unknown:
        raise ValueError(
            f"Unknown hf_megadocs config knob(s) {unknown}; the knobs are {sorted(KNOB_HOMES)}."
        )
    hints = typing.get_type_hints(MegadocsConfig)
    top: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    for knob, value in knobs.items():
        if knob in SECTIONS and isinstance(value, hints[knob]):
            top[knob] = value  # a whole nested config
            continue
        section, field = KNOB_HOMES.get(knob, (None, None))
        if section is None:
            top[knob] = value
        else:
            nested[section][field.name] = value
    knob_of = {(section, field.name): knob for knob, (section, field) in KNOB_HOMES.items()}
    for section, values in nested.items():
        config = top.get(section) or hints[section]()
        for field_name, value in values.items():  # one at a time, so an error names its knob
            knob = knob_of[(section, field_name)]
            try:
                config = dataclasses.replace(config, **{field_name: value})
            except (TypeError, ValueError) as error:
                raise ValueError(
                    f"hf_megadocs config {name!r}: {knob}={value!r} is not allowed: {error} "
                    f"(load_dataset('hf_megadocs', {name!r}, {knob}=...))"
                ) from None
        top[section] = config
    return MegadocsConfig(name=name, **top)


def _local_source_signature(source: str) -> list[tuple[str, int, int]]:
    """(path, size, mtime_ns) of a local source's files, so edited files rebuild the corpus."""
    if source in EMBEDDED_SOURCES:
        return []
    path = Path(source).expanduser()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files if p.is_file()]


__all__ = [
    "FLAT_RENAMES",
    "KNOB_HOMES",
    "MegadocsConfig",
    "config_from_knobs",
    "knob_changes_output",
]
