"""Gather what a dataset card says about a corpus: source, license, prompts, generators.

Everything comes from the exported corpus's lineage columns (``generator``, ``prompt_id``,
``prompt_hash``, ``source_id``) and from the generation store the builder used (verbatim
prompt templates, per-generation sampling settings and cleaning flags, run records), so the
card states what was actually done, not what the current defaults are.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.compute as pc
from huggingface_hub import DatasetCard
from tqdm.auto import tqdm

from hf_megadocs.adapters import adapter_provenance, lora_label
from hf_megadocs.corpora.config import config_from_knobs, knob_changes_output
from hf_megadocs.corpora.load import LOAD_ARGUMENTS
from hf_megadocs.generation.failures import describe_reasons, is_tombstone
from hf_megadocs.hub.card import CardContext, ConfigSummary, GeneratorInfo, PromptText
from hf_megadocs.training.launch import launch_command, shell_line

logger = logging.getLogger(__name__)

SOURCE_FACTS: dict[str, tuple[str, str, str, str]] = {
    "embedded": (
        "Lee Background Corpus",
        "300 English news articles, as shipped in gensim's wheel "
        "(gensim/test/test_data/lee_background.cor); a `validation_long` split, when present, "
        "holds long reference documents from CPython's bundled `pydoc_data.topics` (Python "
        "documentation, PSF License 2.0)",
        "other",
        "The articles are redistributed inside gensim, which is licensed LGPL-2.1-only; the "
        "corpus itself carries no separate license statement, so check its terms before "
        "commercial use",
    ),
    "embedded-long": (
        "CPython pydoc topics",
        "long reference documents from CPython's bundled pydoc_data.topics",
        "other",
        "Python documentation, distributed with CPython under the Python Software Foundation "
        "License Version 2",
    ),
}
"""Card facts for the bundled sources: (name, description, Hub license id, license note)."""


def shown_in_card(knob: str) -> bool:
    """Whether a builder knob goes into the card: it changes the rows and is not a local path."""
    return knob not in LOAD_ARGUMENTS and knob != "store_dir" and knob_changes_output(knob)


def collect_provenance(
    context: CardContext,
    corpora: Mapping[str, datasets.DatasetDict],
    builder_kwargs: Mapping[str, Any],
    *,
    tokenizer: str | None = None,
    license: str | None = None,
    license_note: str | None = None,
) -> CardContext:
    """Fill ``context`` from the corpora's lineage columns and the generation store."""
    from hf_megadocs import __version__

    source = str(builder_kwargs.get("source", "embedded"))
    _fill_source(context, source)
    if license is not None:
        context.license = license
        context.license_note = license_note or ""
    context.tool_version = __version__
    context.builder_kwargs = {
        k: v for k, v in sorted(builder_kwargs.items()) if shown_in_card(k) and not _looks_secret(k)
    }
    generators = sorted(
        {g for dd in corpora.values() for ds in dd.values() for g in _unique(ds, "generator") if g}
    )
    prompt_refs = sorted(
        {ref for dd in corpora.values() for ds in dd.values() for ref in _prompt_refs(ds)}
    )
    store = _open_store(builder_kwargs)
    context.prompts = _prompt_texts(prompt_refs, store)
    if store is not None:
        _fill_from_store(context, store, corpora)
        try:
            context.assembly_counters = assembly_counters(store, list(corpora), builder_kwargs)
        except (TypeError, ValueError) as err:  # corpora not built by this builder's knobs
            logger.info("no builder counters for the card: %s", err)
    count, unit, note = _token_counter(tokenizer, generators)
    context.token_unit, context.token_note = unit, note
    context.configs = [
        ConfigSummary(
            name=config.name,
            features=config.features,
            splits=tuple(
                replace(split, tokens=count(corpora[config.name][split.name]))
                for split in config.splits
            ),
        )
        for config in context.configs
    ]
    context.train_command = train_command(context.repo_id, [c.name for c in context.configs])
    return context


def train_command(repo_id: str, config_names: Sequence[str]) -> str:
    """Shell lines that fetch a published config and train on it with the project's recipe.

    The trainer (``hf_megadocs.train``) reads local datasets through ``--data.synthetic_path``
    and ``--data.real_path`` (``save_to_disk`` folders), so the corpus is saved locally first.
    It trains a BPE tokenizer on the real training split (as the main job does), so the
    command needs only the installed wheel, not the embedded generator's package.
    """
    synthetic = next((n for n in config_names if n != "real"), None)
    fetch = [n for n in (synthetic, "real" if "real" in config_names else None) if n]
    lines = [
        "# pip install hf_megadocs (the trainer); the data needs only `datasets`",
        'python -c "from datasets import load_dataset; '
        + "; ".join(f"load_dataset('{repo_id}', '{n}').save_to_disk('data/{n}')" for n in fetch)
        + '"',
    ]
    flags = (
        ["--data.synthetic_path", f"data/{synthetic}"]
        if synthetic
        else ["--data.synthetic_corpus", "null", "--mix.synthetic_share", "0"]
    )
    if "real" in config_names:
        flags += ["--data.real_path", "data/real"]
    flags += ["--model.train_tokenizer_vocab", "2048"]
    command = launch_command(["--config", "tiny_cpu", *flags], portable=True)
    lines.append(shell_line(command))
    return "\n".join(lines)


def _prompt_refs(dataset: datasets.Dataset) -> list[tuple[str, str]]:
    """Distinct (prompt_id, prompt_hash) pairs of the rows that used a prompt."""
    if not {"prompt_id", "prompt_hash"} <= set(dataset.column_names):
        return []
    pairs = dataset.with_format("arrow")[:].select(["prompt_id", "prompt_hash"])
    unique = pairs.group_by(["prompt_id", "prompt_hash"]).aggregate([])
    return [(r["prompt_id"], r["prompt_hash"]) for r in unique.to_pylist() if r["prompt_id"]]


def _looks_secret(name: str) -> bool:
    return name in ("token", "api_key", "password") or name.endswith(("_token", "_key", "_secret"))


def assembly_counters(
    store: Any, names: Sequence[str], builder_kwargs: Mapping[str, Any]
) -> dict[str, dict[str, Any]]:
    """Per config, the builder's counters (documents read, dropped by reason, generations
    used, unusable, …) from the latest store run built with exactly these knobs."""
    knobs = {k: v for k, v in builder_kwargs.items() if k not in LOAD_ARGUMENTS}
    found: dict[str, dict[str, Any]] = {}
    runs = store.runs()
    for name in names:
        expected = _normalise(config_from_knobs(name, **knobs).row_settings())
        for run in reversed(runs):
            config = run.get("config", {})
            if config.get("config_name") != name:
                continue
            if _normalise({k: config.get(k) for k in expected}) == expected:
                found[name] = dict(run.get("summary", {}).get("corpus", {}))
                break
    return found


def _normalise(payload: Mapping[str, Any]) -> Any:
    return json.loads(json.dumps(payload, sort_keys=True, default=str))


def _fill_source(context: CardContext, source: str) -> None:
    if source in SOURCE_FACTS:
        name, description, license_id, note = SOURCE_FACTS[source]
        context.source_name, context.source_description = name, description
        context.license, context.license_note = license_id, note
        context.language = ["en"]
        return
    context.source_name = Path(source).name if Path(source).expanduser().exists() else source
    if Path(source).expanduser().exists():
        context.source_description = "local files"
        context.license = "unknown"
        context.license_note = (
            "Local source files: pass license= (--license) to state their license"
        )
        return
    context.source_datasets = [source]
    context.source_description = f"the Hugging Face dataset `{source}`"
    context.license, context.license_note = _hub_license(source)


def _hub_license(repo_id: str) -> tuple[str, str]:
    """The source dataset's own card license, or "unknown" when its card cannot be read."""
    try:
        card = DatasetCard.load(repo_id)
    except Exception as err:  # network, offline mode, missing card: all mean "unknown"
        logger.warning("could not read the license of %s (%s); the card says unknown", repo_id, err)
        return "unknown", f"The license of `{repo_id}` could not be read; pass --license"
    license_id = card.data.license
    if isinstance(license_id, list):
        license_id = license_id[0] if license_id else None
    if not license_id:
        return "unknown", f"`{repo_id}` states no license"
    return str(license_id), f"Inherited from the source dataset `{repo_id}`"


def arrow_column(dataset: datasets.Dataset, name: str) -> pa.ChunkedArray:
    """Column ``name`` as Arrow (indices mapping applied), without per-row Python decoding."""
    return dataset.with_format("arrow")[name]


def _unique(dataset: datasets.Dataset, name: str) -> list[Any]:
    if name not in dataset.column_names:
        return []
    return pc.unique(arrow_column(dataset, name)).to_pylist()


def count_words(dataset: datasets.Dataset) -> int:
    """Whitespace-separated words of ``text`` (``str.split()`` semantics), in Arrow."""
    return int(pc.sum(pc.count_substring_regex(arrow_column(dataset, "text"), r"\S+")).as_py() or 0)


def _token_counter(
    tokenizer: str | None, generators: Sequence[str]
) -> tuple[Callable[[datasets.Dataset], int], str, str]:
    """(count function, column header, note): the generator's tokenizer when it is local."""
    path = tokenizer
    if path is None:
        from hf_megadocs.generation.embedded import EMBEDDED_GENERATOR_NAME, embedded_generator_path

        for generator in generators:
            if generator == EMBEDDED_GENERATOR_NAME:
                path = embedded_generator_path()
                break
            if Path(generator).expanduser().is_dir():
                path = generator
                break
    if path is None or path == "words":
        return (
            count_words,
            "words",
            "Sizes are in whitespace-separated words (no local tokenizer was given; pass "
            "tokenizer= / --tokenizer to count tokens).",
        )
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    label = Path(path).name if Path(path).expanduser().exists() else path

    def count(ds: datasets.Dataset) -> int:
        total = 0
        for batch in ds.select_columns(["text"]).iter(batch_size=256):
            encoded = tok(batch["text"], add_special_tokens=False)["input_ids"]
            total += sum(len(ids) for ids in encoded)
        return total

    return (
        count,
        "tokens",
        f"Tokens are counted with the `{label}` tokenizer, without special tokens.",
    )


def _open_store(builder_kwargs: Mapping[str, Any]) -> Any | None:
    """The generation store the builder used, or None when there is none on disk."""
    from hf_megadocs.generation.store import GenerationStore, resolve_store_dir

    store_dir = resolve_store_dir(builder_kwargs.get("store_dir"))
    if not store_dir.is_dir():
        return None
    return GenerationStore(store_dir)


def _prompt_texts(refs: Sequence[tuple[str, str]], store: Any | None) -> list[PromptText]:
    """The verbatim templates behind (prompt_id, prompt_hash) pairs: store first, then built-ins."""
    recorded = {p["content_hash"]: p for p in store.prompts()} if store is not None else {}
    texts = []
    for prompt_id, prompt_hash in refs:
        record = recorded.get(prompt_hash)
        if record is None:
            from hf_megadocs.generation.prompts import get_prompt

            try:
                template = get_prompt(prompt_id)
            except (KeyError, ValueError, FileNotFoundError):
                template = None
            if template is None or template.content_hash != prompt_hash:
                logger.warning(
                    "prompt %s (hash %s) is in neither the store nor the built-ins; the card "
                    "lists it without its text",
                    prompt_id,
                    prompt_hash,
                )
                texts.append(
                    PromptText(id=prompt_id, hash=prompt_hash, system="", user="(text not found)")
                )
                continue
            record = template.as_record()
        texts.append(
            PromptText(
                id=prompt_id,
                hash=prompt_hash,
                system=record.get("system") or "",
                user=record["user"],
            )
        )
    return texts


def _fill_from_store(
    context: CardContext, store: Any, corpora: Mapping[str, datasets.DatasetDict]
) -> None:
    """Generator/sampling table, filtered counts and runs for the generations in ``corpora``."""
    source_ids, prompt_hashes, generators_used = set(), set(), set()
    for dataset_dict in corpora.values():
        for dataset in dataset_dict.values():
            source_ids.update(_unique(dataset, "source_id"))
            prompt_hashes.update(h for h in _unique(dataset, "prompt_hash") if h)
            generators_used.update(_unique(dataset, "generator"))
    if not prompt_hashes:
        return
    max_g = max((c.num_generations or 0 for c in context.configs), default=0)
    generators: set[GeneratorInfo] = set()
    adapters: dict[str, str] = {}  # adapter hash -> the folder it was read from
    flagged: Counter = Counter()
    totals: Counter = Counter()
    rejected: Counter = Counter()  # tombstones by reason: requests the backend refused for good
    for g in tqdm(store.iter_generations(), total=len(store), desc="card: store", unit="rec"):
        if not (
            g.source_id in source_ids
            and g.prompt_hash in prompt_hashes
            and lora_label(g.generator, g.lora_hash) in generators_used
            and g.sample_index < max_g
        ):
            continue
        if g.lora_hash and g.lora:
            adapters.setdefault(g.lora_hash, g.lora)
        generators.add(
            GeneratorInfo(
                generator=lora_label(g.generator, g.lora_hash),
                revision=g.generator_revision,
                backend=g.backend or "unknown",
                temperature=g.sampling.get("temperature", float("nan")),
                top_p=g.sampling.get("top_p", float("nan")),
                max_new_tokens=g.sampling.get("max_new_tokens", 0),
                seed=g.sampling.get("seed", 0),
            )
        )
        flagged.update(g.flags)
        rejected.update([g.raw_text] if is_tombstone(g) else [])
        totals.update(
            records=1,
            prompt=g.prompt_tokens,
            completion=g.completion_tokens,
            unusable=not (g.usable or is_tombstone(g)),
        )
    context.generators = sorted(generators, key=lambda info: repr(info))
    context.adapters = [adapter_provenance(h, path) for h, path in sorted(adapters.items())]
    context.filtered = dict(flagged)
    health = store.stats()
    context.store_stats = {
        "store lines skipped (duplicate / torn / corrupt)": (
            f"{health['duplicates']:,} / {health['torn_lines']:,} / {health['corrupt_lines']:,}"
        ),
        "generations behind these configs (incl. flagged)": f"{totals['records']:,}",
        "prompt tokens": f"{totals['prompt']:,}",
        "completion tokens": f"{totals['completion']:,}",
        "unusable (empty or refusal)": f"{totals['unusable']:,}",
        "rejected for good by the backend (tombstones, not retried)": describe_reasons(rejected),
    }
    context.generation_runs = [
        (str(run.get("created_utc", index)), _without_local_paths(run))
        for index, run in enumerate(store.runs())
        if _run_generated(run) and run.get("config", {}).get("prompt_hash") in prompt_hashes
    ]


def _without_local_paths(run: Mapping[str, Any]) -> dict[str, Any]:
    """A run record minus the machine's store path (it says nothing about the data)."""
    config = {k: v for k, v in run.get("config", {}).items() if k != "store_dir"}
    return {**run, "config": config}


def _run_generated(run: Mapping[str, Any]) -> bool:
    """Whether a run added generations; runs that only found the store full are left out,
    so re-building a corpus does not change its card."""
    generated = run.get("summary", {}).get("generated")
    return not isinstance(generated, int) or generated > 0
