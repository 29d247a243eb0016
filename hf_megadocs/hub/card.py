"""Dataset cards for published corpora: metadata, rendered body, local validation.

The card is a pure function of the exported corpus and the generation store's records, so
re-rendering the same corpus gives byte-identical bytes (no "generated at <now>").
Rendering uses the package's ``hub/templates/README.template.md`` (Jinja2) and huggingface_hub's
``DatasetCardData``; the ``configs:`` and ``dataset_info:`` blocks are written by the
same ``datasets`` helpers that ``Dataset.push_to_hub`` uses, so plain
``load_dataset(repo, config)`` reads them.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
from huggingface_hub import DatasetCard, DatasetCardData

from hf_megadocs.corpora.names import parse_config_name

logger = logging.getLogger(__name__)

CARD_DIR = Path(__file__).resolve().parent / "templates"
"""Where the card template and citations live (package data, so a wheel install renders)."""
TEMPLATE_PATH = CARD_DIR / "README.template.md"
CITATIONS_PATH = CARD_DIR / "citations.bib"

DROPPING_FLAGS = frozenset({"empty", "refusal", "failed"})
"""Flags whose outputs assembly does not use (``Generation.usable`` is False for them)."""

SIZE_CATEGORIES: tuple[tuple[int, str], ...] = (
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
    (1_000_000_000, "100M<n<1B"),
)
"""Upper bounds and the Hub's ``size_categories`` labels (larger corpora get ``n>1B``)."""

METHOD_DESCRIPTIONS: dict[str, str] = {
    "real": (
        "The real source documents, unchanged, one per row. The baseline every other "
        "configuration is measured against."
    ),
    "simple": (
        "Simple rephrasing (Kim, Kotha et al., 2026). Each real document is rewritten G times "
        "by the generator; every rewrite, plus one copy of the real document, becomes its own "
        "row, and the rows are shuffled globally (seeded), so related texts are rarely "
        "adjacent. It holds the same texts as the matching `stitched` configuration, as "
        "separate documents instead of one megadoc."
    ),
    "simple_no_real": (
        "Ablation of simple rephrasing without the copy of the real document: only the G "
        "rewrites of each document, each its own row, shuffled globally (seeded)."
    ),
    "stitched": (
        "Stitched megadocs (Kim, Kotha et al., 2026). The G rewrites of a document and then "
        "the real document are joined into one long row, real text last, so the model reads "
        "several paraphrases of the same content in one context before the original."
    ),
    "stitched_real_first": (
        "Ablation of stitched megadocs with the real document placed first, before its G rewrites."
    ),
    "stitched_no_real": (
        "Ablation of stitched megadocs that joins only the G rewrites; the real document is "
        "not part of the synthetic row."
    ),
    "latent": (
        "Latent-thought megadocs (Kim, Kotha et al., 2026). The real document is cut at G "
        "points; for each cut the generator writes a short rationale from the text around "
        "it, and the rationale is inserted just before the continuation. The real text is "
        "kept whole and in order, interleaved with generated reasoning about it."
    ),
    "reformat": (
        "Reformatting (SynPro, 2026). Each generation restates the document as a short list "
        "of topic/content entries, presenting the same facts in a structured form."
    ),
    "qa": (
        "Question-answer style (Kang et al., 2025). Each generation turns the document into "
        "questions and their answers grounded in the text."
    ),
    "textbook": (
        "Textbook style (Kang et al., 2025). Each generation explains the document's content "
        "the way a textbook section would. The study found this style helps at a lower "
        "share of the training mix than plain rephrases."
    ),
    "rephrase": "Faithful rephrasing (SynPro, 2026): each generation restates the document "
    "in clean prose without boilerplate, adding nothing; one row per generation.",
}
"""What each method is, in the project's own words (keys are the config name stems)."""


@dataclass(frozen=True, kw_only=True)
class SplitSummary:
    """Counts for one split of one exported configuration."""

    name: str
    """Split name ("train", "validation", ...)."""
    rows: int
    """Rows in the split."""
    source_docs: int
    """Distinct ``source_id`` values."""
    generations: int
    """Sum of ``row_generations`` over the rows."""
    characters: int
    """Total characters of ``text``."""
    tokens: int
    """Total tokens of ``text`` (unit named by :attr:`CardContext.token_unit`)."""
    num_bytes: int
    """In-memory Arrow size of the split."""
    files: tuple[str, ...]
    """Parquet files of the split, relative to the repository root."""
    download_bytes: int
    """Total size of those Parquet files."""


@dataclass(frozen=True, kw_only=True)
class PromptText:
    """A prompt template exactly as it was sent to the generator."""

    id: str
    """Prompt id, e.g. ``"rephrase_wiki"``."""
    hash: str
    """Content hash of the template (the ``prompt_hash`` column)."""
    system: str
    """System message template ("" when none)."""
    user: str
    """User message template."""


@dataclass(frozen=True, kw_only=True)
class GeneratorInfo:
    """One generator/backend/sampling combination that produced text in the corpus."""

    generator: str
    revision: str
    backend: str
    temperature: float
    top_p: float
    max_new_tokens: int
    seed: int


@dataclass(frozen=True, kw_only=True)
class ConfigSummary:
    """One exported configuration: its name, method, features and per-split counts."""

    name: str
    """Config name, e.g. ``"stitched_g32"``."""
    features: datasets.Features
    """Columns and types of every split."""
    splits: tuple[SplitSummary, ...]
    """Per-split counts and files, in export order."""

    @property
    def method(self) -> str:
        """The config name without its ``_g{G}`` suffix."""
        return split_config_name(self.name)[0]

    @property
    def num_generations(self) -> int | None:
        """G of the config (None for ``real``)."""
        return split_config_name(self.name)[1]


@dataclass(kw_only=True)
class CardContext:
    """Everything the card says, gathered before rendering (no I/O during rendering)."""

    repo_id: str
    """Target repository, e.g. ``"org/lee-megadocs"``."""
    configs: list[ConfigSummary]
    """Exported configurations, in the order given by the user."""
    source_name: str
    """Human-readable name of the source corpus."""
    source_description: str = ""
    """One line about the source corpus."""
    source_datasets: list[str] = field(default_factory=list)
    """Hub ids of the source datasets (empty for local or embedded sources)."""
    license: str = "other"
    """Hub license id inherited from the source ("other" needs :attr:`license_note`)."""
    license_note: str = ""
    """Where the source's license comes from, or why it is "other"/"unknown"."""
    prompts: list[PromptText] = field(default_factory=list)
    """Prompt templates used by any exported config, verbatim from the store."""
    generators: list[GeneratorInfo] = field(default_factory=list)
    """Generator, backend and sampling settings that produced the synthetic text."""
    adapters: list[dict[str, Any]] = field(default_factory=list)
    """Tuned LoRA adapters behind ``<base>+lora:<hash>`` generators (their ``tuning.json``)."""
    filtered: dict[str, int] = field(default_factory=dict)
    """Generated outputs flagged or dropped, by reason."""
    store_stats: dict[str, Any] = field(default_factory=dict)
    """Scalar totals from the generation store (generations, tokens, ...)."""
    generation_runs: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    """(name, record) of each generation run that produced stored generations."""
    assembly_counters: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per config, the builder's counters (documents read and dropped by reason, generations
    used and unusable) from the store's run record."""
    builder_kwargs: dict[str, Any] = field(default_factory=dict)
    """Builder keyword arguments used to build every config (JSON-serialisable)."""
    language: list[str] = field(default_factory=list)
    """Language codes of the text (left out of the metadata when unknown)."""
    token_unit: str = "words"
    """Header of the size column: ``"tokens"`` (a tokenizer was found) or ``"words"``."""
    token_note: str = ""
    """How tokens were counted, shown under the table."""
    train_command: str = ""
    """Shell command that trains on the corpus with the project's recipe."""
    tool_version: str = ""
    """hf_megadocs version that built the corpus."""
    tags: list[str] = field(default_factory=lambda: ["synthetic", "megadocs", "hf_megadocs"])
    """Hub tags."""


def split_config_name(name: str) -> tuple[str, int | None]:
    """``"stitched_g32"`` -> ``("stitched", 32)``; ``"real"`` -> ``("real", None)``."""
    parsed = parse_config_name(name)
    return parsed.method, (parsed.num_generations or None)


def size_category(num_rows: int) -> str:
    """The Hub ``size_categories`` label for ``num_rows`` examples."""
    for bound, label in SIZE_CATEGORIES:
        if num_rows < bound:
            return label
    return "n>1B"


def build_card_data(context: CardContext) -> DatasetCardData:
    """YAML metadata: configs with data_files, dataset_info, license, tags, sizes."""
    largest = max((sum(s.rows for s in c.splits) for c in context.configs), default=0)
    card_data = DatasetCardData(
        license=context.license,
        language=list(context.language) or None,
        pretty_name=_pretty_name(context.repo_id),
        size_categories=[size_category(largest)],
        source_datasets=context.source_datasets or None,
        task_categories=["text-generation"],
        tags=list(context.tags),
        ignore_metadata_errors=False,
    )
    configs = datasets.utils.metadata.MetadataConfigs(
        {
            config.name: {
                "data_files": [
                    {"split": split.name, "path": f"{config.name}/{split.name}-*"}
                    for split in config.splits
                ]
            }
            for config in context.configs
        }
    )
    configs.to_dataset_card_data(card_data)
    infos = datasets.info.DatasetInfosDict()
    for config in context.configs:
        splits = datasets.SplitDict()
        for split in config.splits:
            splits.add(
                datasets.SplitInfo(
                    name=split.name, num_bytes=split.num_bytes, num_examples=split.rows
                )
            )
        infos[config.name] = datasets.DatasetInfo(
            config_name=config.name,
            features=config.features,
            splits=splits,
            download_size=sum(s.download_bytes for s in config.splits),
            dataset_size=sum(s.num_bytes for s in config.splits),
        )
    infos.to_dataset_card_data(card_data)
    return card_data


def render_card(context: CardContext, template_path: str | Path | None = None) -> DatasetCard:
    """Render the dataset card for ``context`` from the Jinja2 template."""
    try:
        import jinja2
    except ImportError as err:  # pragma: no cover - jinja2 comes with transformers/torch
        raise ImportError("Rendering dataset cards needs jinja2: pip install jinja2") from err
    path = Path(template_path) if template_path is not None else TEMPLATE_PATH
    if not path.is_file():
        raise FileNotFoundError(
            f"Dataset card template not found at {path}. Pass template_path=, or reinstall "
            "hf_megadocs (the template is package data: hf_megadocs/hub/templates/)."
        )
    env = jinja2.Environment(
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
    )
    template = env.from_string(path.read_text(encoding="utf-8"))
    methods = []
    for config in context.configs:
        if config.method not in {m["name"] for m in methods}:
            description = METHOD_DESCRIPTIONS.get(config.method)
            if description is None:
                logger.warning("no description for method %r; the card says so", config.method)
                description = "No description is available for this method."
            methods.append({"name": config.method, "description": description})
    body = template.render(
        card_data=build_card_data(context).to_yaml(),
        pretty_name=_pretty_name(context.repo_id),
        repo_id=context.repo_id,
        tool_version=context.tool_version,
        configs=context.configs,
        methods=methods,
        source={"name": context.source_name, "description": context.source_description},
        license=context.license,
        license_note=context.license_note,
        builder_kwargs=context.builder_kwargs
        and json.dumps(context.builder_kwargs, indent=2, sort_keys=True, default=str),
        generators=context.generators,
        adapters=context.adapters,
        store_stats=sorted(context.store_stats.items()),
        filtered=sorted(context.filtered.items()),
        dropping_flags=DROPPING_FLAGS,
        counter_names=sorted({k for c in context.assembly_counters.values() for k in c}),
        assembly_counters=context.assembly_counters,
        prompts=context.prompts,
        token_unit=context.token_unit,
        token_note=context.token_note,
        train_command=context.train_command,
        generation_runs=[
            {"name": name, "json": json.dumps(record, indent=2, sort_keys=True, default=str)}
            for name, record in context.generation_runs
        ],
        citations=_citations(),
    )
    return DatasetCard(body)


def validate_card(card_path: str | Path) -> DatasetCard:
    """Parse a written card back and check its metadata against the files beside it.

    The Hub's own validator needs network; this checks what it checks that matters for
    loading: the YAML parses strictly, every config has data files that exist and a
    ``dataset_info`` entry, sizes use the Hub's labels, and the task category is set.
    Raises ``ValueError`` naming the problem.
    """
    card_path = Path(card_path)
    card = DatasetCard.load(card_path, ignore_metadata_errors=False)
    data = card.data
    problems: list[str] = []
    configs = datasets.utils.metadata.MetadataConfigs.from_dataset_card_data(data)
    infos = datasets.info.DatasetInfosDict.from_dataset_card_data(data)
    if not configs:
        problems.append("no `configs:` block")
    for name, config in configs.items():
        if name not in infos:
            problems.append(f"config {name!r} has no dataset_info entry")
        for entry in config.get("data_files", []):
            matches = sorted(card_path.parent.glob(entry["path"]))
            if not matches:
                problems.append(
                    f"config {name!r} split {entry['split']!r}: no file {entry['path']}"
                )
            elif name in infos and infos[name].splits and entry["split"] in infos[name].splits:
                import pyarrow.parquet as pq

                rows = sum(pq.ParquetFile(m).metadata.num_rows for m in matches)
                expected = infos[name].splits[entry["split"]].num_examples
                if rows != expected:
                    problems.append(
                        f"config {name!r} split {entry['split']!r}: files hold {rows} rows, "
                        f"dataset_info says {expected}"
                    )
    allowed_sizes = {label for _, label in SIZE_CATEGORIES} | {"n>1B"}
    for label in data.size_categories or []:
        if label not in allowed_sizes:
            problems.append(f"size_categories {label!r} is not one of {sorted(allowed_sizes)}")
    if not data.license:
        problems.append("no license")
    if data.task_categories != ["text-generation"]:
        problems.append(
            f"task_categories is {data.task_categories!r}, expected ['text-generation']"
        )
    if problems:
        raise ValueError(f"Dataset card {card_path} is invalid: " + "; ".join(problems))
    return card


def _citations() -> str:
    """The BibTeX entries of ``citations.bib`` without its leading comment lines."""
    if not CITATIONS_PATH.is_file():
        return ""
    lines = CITATIONS_PATH.read_text(encoding="utf-8").splitlines()
    return "\n".join(line for line in lines if not line.startswith("%")).strip()


def _pretty_name(repo_id: str) -> str:
    return repo_id.split("/")[-1]
