"""Corpora read from the generation store alone, for ``streaming=True``: nothing is generated.

``load_dataset("hf_megadocs", name, streaming=True)`` streams a corpus only once the store
holds every generation its train split needs (:func:`stored_corpus` checks the store's
index, reading no record); otherwise it raises :class:`CorpusNotGeneratedError` naming the
``hf-megadocs generate`` command (:func:`generate_command`) that fills the store. Rows are
then assembled from the store as they are read, so the first row comes without a pass over
the generations; streaming writes nothing, so an interrupted stream leaves no state behind.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from typing import Any

from hf_megadocs.corpora.config import MegadocsConfig
from hf_megadocs.corpora.plan import READ_CHUNK, CorpusPlan, plan_corpus
from hf_megadocs.generation.config import GenerationSettings
from hf_megadocs.generation.store import GenerationStore, resolve_store_dir
from hf_megadocs.settings import flat_settings

BUILDER_ONLY_METHODS = ("latent",)
"""Methods whose requests only the corpus builder makes (latent rationales need each
document's split points), so ``hf-megadocs generate`` cannot fill their store."""


class CorpusNotGeneratedError(RuntimeError):
    """``streaming=True`` on a corpus whose generations are not all in the store."""


def _flag_value(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return json.dumps(value)  # null / true / false, as jsonargparse reads them
    return str(value)


def generate_command(config: MegadocsConfig) -> str | None:
    """The ``hf-megadocs generate`` command that stores the generations ``config``'s corpus
    needs (its generation settings that differ from the defaults, as flags), or None when
    only the builder can make them (:data:`BUILDER_ONLY_METHODS`) or none are needed."""
    if config.method == "real" or config.method in BUILDER_ONLY_METHODS:
        return None
    settings = {f.name: getattr(config, f.name) for f in dataclasses.fields(GenerationSettings)}
    defaults = flat_settings(GenerationSettings())
    flags = [f"--prompt_id {config.prompt_id}", f"--num_samples {config.num_generations}"]
    for key, value in flat_settings(GenerationSettings(**settings)).items():
        if value != defaults[key]:
            flags.append(f"--{key} {shlex.quote(_flag_value(value))}")
    return " ".join(["hf-megadocs generate", *flags])


def count_missing(plan: CorpusPlan, store: GenerationStore) -> tuple[int, int]:
    """(needed, missing): the generations ``plan``'s train split needs, and how many of
    them ``store`` lacks (looked up in its index; no record is read)."""
    needed = missing = 0
    per_chunk = max(1, READ_CHUNK // max(plan.num_generations, 1))
    for start in range(0, len(plan.train), per_chunk):
        keys = [key for doc_plan in plan.train[start : start + per_chunk] for key in doc_plan.keys]
        if keys:
            needed += len(keys)
            missing += int((~store.contains(keys)).sum())
    return needed, missing


def _refusal(config: MegadocsConfig, lacking: str) -> str:
    name = config.name
    head = (
        f"hf_megadocs {name!r}: {lacking}, and streaming=True never generates: it reads a "
        "complete store. "
    )
    load = f"load_dataset('hf_megadocs', {name!r}, ...) without streaming=True"
    command = generate_command(config)
    if command is None:
        return head + (
            f"Only the corpus builder makes the requests of {config.method!r} corpora: run "
            f"{load} once (it generates what is missing), then stream."
        )
    return head + (
        f"Fill the store first with `hf-megadocs generate` (same source, generator and "
        f"sampling settings):\n    {command}\nor run {load}, which generates what is missing."
    )


def stored_corpus(config: MegadocsConfig, *, require_generations: bool = True) -> CorpusPlan:
    """Plan ``config``'s corpus for reading from the store as it is: nothing is generated
    and nothing is written to the store.

    Raises:
        CorpusNotGeneratedError: ``require_generations`` and the store lacks some generation
            the train split needs (the message names the command that fills it). Without
            ``require_generations`` (streaming only the validation splits) it is not checked.
    """
    check = require_generations and config.method != "real"
    store_dir = resolve_store_dir(config.store_dir)
    store = GenerationStore(store_dir) if check else None
    if store is not None and not len(store):
        # Refused before planning: the request keys need the generator's tokenizer, and the
        # embedded generator's is converted on first use (a minute on an empty cache).
        raise CorpusNotGeneratedError(_refusal(config, f"the store {store_dir} is empty"))
    planned = plan_corpus(config)
    plan = planned.plan
    plan.counters = dict(planned.counters)
    if store is None:
        return plan
    needed, missing = count_missing(plan, store)
    if missing:
        lacking = (
            f"{missing} of the {needed} generations this corpus needs are not in the store "
            f"{store_dir}"
        )
        raise CorpusNotGeneratedError(_refusal(config, lacking))
    plan.counters["generations_needed"] = needed
    return plan


__all__ = [
    "BUILDER_ONLY_METHODS",
    "CorpusNotGeneratedError",
    "count_missing",
    "generate_command",
    "stored_corpus",
]
