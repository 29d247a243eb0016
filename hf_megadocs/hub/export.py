"""Publish built corpora to the Hugging Face Hub: Parquet shards, a dataset card, upload.

``push_to_hub("org/lee-megadocs", ["stitched_g8", "simple_g8"], max_docs=6)`` loads each
config through the builder (reusing the generation store and Arrow cache), writes
``<config>/<split>-0000i-of-0000n.parquet`` plus a ``README.md`` whose ``configs:`` block
lets anyone ``load_dataset("org/lee-megadocs", "stitched_g8")`` with plain ``datasets``,
then uploads the folder with ``HfApi.upload_folder`` (resumable and multi-commit with
hf_xet). Parquet bytes and card text are deterministic, so re-pushing an unchanged corpus
uploads nothing. The token comes from ``huggingface_hub.get_token()`` (``hf auth login`` or
``HF_TOKEN``) and is only ever handed to ``HfApi``: never logged, never written.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import pyarrow.compute as pc
from datasets.arrow_writer import get_writer_batch_size_from_data_size
from datasets.utils.py_utils import convert_file_size_to_int
from huggingface_hub import HfApi, constants, get_token
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, OfflineModeIsEnabled
from huggingface_hub.utils import validate_repo_id

from hf_megadocs.corpora.load import LOAD_ARGUMENTS
from hf_megadocs.corpora.names import parse_config_name
from hf_megadocs.hub.card import (
    CardContext,
    ConfigSummary,
    SplitSummary,
    render_card,
    validate_card,
)
from hf_megadocs.hub.provenance import arrow_column, collect_provenance

logger = logging.getLogger(__name__)

CARD_FILENAME = "README.md"
"""``load_corpus`` options that are not builder config knobs (where and how, not what)."""


class PublishError(RuntimeError):
    """A push that cannot go on; the message says what to fix. Local files are kept."""


@dataclass(frozen=True, kw_only=True)
class PushResult:
    """What a push wrote and, unless it was a dry run, what it uploaded."""

    repo_id: str
    """Target dataset repository."""
    local_dir: Path
    """The exported folder (exactly what is or would be uploaded)."""
    configs: tuple[str, ...]
    """Exported config names."""
    files: tuple[str, ...]
    """Files of the folder, relative to it (README.md and the Parquet shards)."""
    rows: dict[str, dict[str, int]]
    """Rows per config and split."""
    dry_run: bool
    """True when nothing was sent to the Hub."""
    commit_url: str | None = None
    """URL of the last commit (None for a dry run)."""
    endpoint: str | None = None
    """The Hub URL pushed to (None for a dry run)."""


def push_to_hub(
    repo_id: str,
    configs: str | Sequence[str],
    *,
    private: bool = False,
    dry_run: bool = False,
    local_dir: str | Path | None = None,
    token: str | None = None,
    endpoint: str | None = None,
    max_shard_size: int | str = "500MB",
    tokenizer: str | None = None,
    license: str | None = None,
    build: bool = False,
    corpora: Mapping[str, datasets.DatasetDict] | None = None,
    **builder_kwargs: Any,
) -> PushResult:
    """Export ``configs`` to Parquet + dataset card in ``local_dir`` and upload them.

    Args:
        repo_id: Dataset repository, ``"name"`` or ``"namespace/name"``.
        configs: Config names (a list or a comma-separated string), e.g. ``"stitched_g32"``.
        private: Create the repository private (only when it does not exist yet).
        dry_run: Write the folder and stop; no token or network needed.
        local_dir: Where to write the folder; default ``<hf_megadocs cache>/publish/<repo>``.
            It is kept after the push (and after a failed one: rerun to resume).
        token: Hub token; default ``huggingface_hub.get_token()`` (login or ``HF_TOKEN``).
        endpoint: Hub URL; default ``HF_ENDPOINT`` or https://huggingface.co.
        max_shard_size: Largest Parquet shard, e.g. ``"500MB"`` (sized for streaming).
        tokenizer: Tokenizer (name or local path) that counts the card's tokens; default the
            generator when it is a local checkpoint, else whitespace words.
        license: Hub license id of the source; default inherited from the source (the
            embedded corpora are "other", with a note saying why).
        build: Build configs whose Arrow cache is missing (may generate); default: error.
        corpora: Already-built ``DatasetDict`` per config; skips the builder (tests, notebooks).
        **builder_kwargs: Passed to ``hf_megadocs.load_corpus`` for every config.
    """
    validate_repo_id_or_raise(repo_id)
    names = parse_configs(configs)
    folder = Path(local_dir) if local_dir is not None else default_local_dir(repo_id)
    resolved_token: str | None = None
    if not dry_run:
        # Fail on a missing token or offline mode before any expensive build.
        resolved_token = token or get_token()
        if not resolved_token:
            raise PublishError(
                f"No Hugging Face token found for pushing to {repo_id!r}. Run `hf auth login` "
                "or set the HF_TOKEN environment variable (or use --dry-run to only write the "
                "folder)."
            )
        if constants.is_offline_mode():
            raise PublishError(
                "HF_HUB_OFFLINE is set, so huggingface_hub refuses every request. Unset "
                "HF_HUB_OFFLINE to push, or use --dry-run to only write the folder."
            )
    built = (
        dict(corpora) if corpora is not None else load_corpora(names, builder_kwargs, build=build)
    )
    missing = [name for name in names if name not in built]
    if missing:
        raise PublishError(f"Configs {missing} were requested but not provided in corpora=.")
    summaries = export_parquet({n: built[n] for n in names}, folder, max_shard_size=max_shard_size)
    context = CardContext(repo_id=repo_id, configs=summaries, source_name="")
    collect_provenance(
        context, {n: built[n] for n in names}, builder_kwargs, tokenizer=tokenizer, license=license
    )
    card_path = folder / CARD_FILENAME
    render_card(context).save(card_path)
    validate_card(card_path)
    files = tuple(sorted(str(p.relative_to(folder)) for p in _export_files(folder, names)))
    rows = {c.name: {s.name: s.rows for s in c.splits} for c in summaries}
    logger.info("wrote %d files for %d configs to %s", len(files), len(names), folder)
    if dry_run:
        return PushResult(
            repo_id=repo_id, local_dir=folder, configs=names, files=files, rows=rows, dry_run=True
        )
    commit_url = upload_folder(
        repo_id, folder, names, private=private, token=resolved_token, endpoint=endpoint
    )
    return PushResult(
        repo_id=repo_id,
        local_dir=folder,
        configs=names,
        files=files,
        rows=rows,
        dry_run=False,
        commit_url=commit_url,
        endpoint=endpoint or constants.ENDPOINT,
    )


def validate_repo_id_or_raise(repo_id: str) -> None:
    """Check ``repo_id`` with huggingface_hub's rules; raise ``ValueError`` saying the fix."""
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise ValueError(
            f"repo_id {repo_id!r} is not a valid Hub repository id: {err} Use 'name' or "
            "'namespace/name' with letters, digits, '-', '_' and '.', e.g. 'my-org/lee-megadocs'."
        ) from None
    if not repo_id:
        raise ValueError("repo_id is empty; pass e.g. 'my-org/lee-megadocs'.")


def parse_configs(configs: str | Sequence[str]) -> tuple[str, ...]:
    """Config names from a list or a comma-separated string, order kept, no duplicates."""
    items = configs.split(",") if isinstance(configs, str) else list(configs)
    names = tuple(name.strip() for name in items if name.strip())
    if not names:
        raise ValueError(
            f"configs is empty ({configs!r}); pass at least one, e.g. 'stitched_g32,simple_g32'."
        )
    for name in names:
        parse_config_name(name)  # raises ValueError quoting the config-name grammar
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"configs lists {duplicates} more than once; name each config once.")
    return names


def default_local_dir(repo_id: str) -> Path:
    """``<hf_megadocs cache>/publish/<namespace>--<name>``: kept between pushes to resume."""
    from hf_megadocs.generation.embedded import cache_root

    return cache_root() / "publish" / repo_id.replace("/", "--")


def load_corpora(
    names: Sequence[str], builder_kwargs: Mapping[str, Any], *, build: bool = False
) -> dict[str, datasets.DatasetDict]:
    """Each config's ``DatasetDict`` from the builder's Arrow cache (built first if ``build``).

    Without ``build``, a config whose cache does not exist for these builder arguments is an
    error: a push never starts a generation job by surprise.
    """
    from hf_megadocs.corpora.builder import MegadocsBuilder
    from hf_megadocs.corpora.load import load_corpus
    from hf_megadocs.corpora.registration import builder_module_hash

    load_options = {k: v for k, v in builder_kwargs.items() if k in LOAD_ARGUMENTS}
    knobs = {k: v for k, v in builder_kwargs.items() if k not in LOAD_ARGUMENTS}
    if not build:
        never_built = []
        for name in names:
            builder = MegadocsBuilder(
                cache_dir=load_options.get("cache_dir"),
                dataset_name="hf_megadocs",
                config_name=name,
                hash=builder_module_hash(),
                **knobs,
            )
            if not (Path(builder.cache_dir) / datasets.config.DATASET_INFO_FILENAME).is_file():
                never_built.append(name)
        if never_built:
            shown = json.dumps(dict(sorted(builder_kwargs.items())), default=str)
            raise PublishError(
                f"Config(s) {never_built} were never built with these builder arguments "
                f"({shown}). Build them first with hf_megadocs.load_corpus(name, ...) / "
                "load_dataset('hf_megadocs', name, ...) using the same arguments, or pass "
                "--build true (build=True) to build them now."
            )
    corpora = {}
    for name in names:
        logger.info("loading config %s from the builder", name)
        loaded = load_corpus(name, **load_options, **knobs)
        if not isinstance(loaded, datasets.DatasetDict):
            raise PublishError(
                f"Config {name!r} did not load as a DatasetDict ({type(loaded).__name__})."
            )
        corpora[name] = loaded
    return corpora


def export_parquet(
    corpora: Mapping[str, datasets.DatasetDict],
    folder: Path,
    *,
    max_shard_size: int | str = "500MB",
) -> list[ConfigSummary]:
    """Write ``<config>/<split>-0000i-of-0000n.parquet`` for every config and split.

    Row groups follow ``datasets``' rule (at most ~100 MB uncompressed), computed from the
    data alone, so the same corpus always gives the same bytes. Stale shards of an exported
    config (e.g. from a push with more shards) are removed; nothing else is touched.
    """
    limit = convert_file_size_to_int(max_shard_size)
    folder.mkdir(parents=True, exist_ok=True)
    summaries = []
    for name, dataset_dict in corpora.items():
        if not isinstance(dataset_dict, datasets.DatasetDict) or not dataset_dict:
            raise PublishError(
                f"Config {name!r} must be a non-empty datasets.DatasetDict, got "
                f"{type(dataset_dict).__name__}."
            )
        config_dir = folder / name
        config_dir.mkdir(exist_ok=True)
        written: set[Path] = set()
        splits = []
        for split, dataset in dataset_dict.items():
            # Arrow size of the rows this split selects (an indices mapping may pick a subset).
            num_bytes = dataset.data.nbytes * len(dataset) // max(dataset.data.num_rows, 1)
            num_shards = max(1, min(len(dataset), math.ceil(num_bytes / limit)))
            row_group_rows = get_writer_batch_size_from_data_size(len(dataset), num_bytes)
            files = []
            for index in range(num_shards):
                path = config_dir / f"{split}-{index:05d}-of-{num_shards:05d}.parquet"
                shard = dataset.shard(num_shards=num_shards, index=index, contiguous=True)
                partial = path.with_name(
                    path.name + ".partial"
                )  # a crash never leaves half a shard
                shard.to_parquet(str(partial), batch_size=max(1, row_group_rows))
                os.replace(partial, path)
                written.add(path)
                files.append(path)
            splits.append(_split_summary(name, split, dataset, files, folder, num_bytes))
        for stale in sorted(set(config_dir.glob("*.parquet")) - written):
            logger.info("removing stale shard %s", stale)
            stale.unlink()
        features = next(iter(dataset_dict.values())).features
        summaries.append(ConfigSummary(name=name, features=features, splits=tuple(splits)))
    return summaries


def _split_summary(
    config: str, split: str, dataset: datasets.Dataset, files: list[Path], folder: Path, nbytes: int
) -> SplitSummary:
    columns = set(dataset.column_names)
    if not {"text", "source_id"} <= columns:
        raise PublishError(
            f"Config {config!r} split {split!r} lacks the 'text'/'source_id' columns "
            f"(has {sorted(columns)}); export corpora built by hf_megadocs."
        )
    generations = (
        pc.sum(arrow_column(dataset, "row_generations")).as_py()
        if "row_generations" in columns
        else 0
    )
    return SplitSummary(
        name=split,
        rows=len(dataset),
        source_docs=pc.count_distinct(arrow_column(dataset, "source_id")).as_py(),
        generations=int(generations or 0),
        characters=int(pc.sum(pc.utf8_length(arrow_column(dataset, "text"))).as_py() or 0),
        tokens=0,
        num_bytes=nbytes,
        files=tuple(str(f.relative_to(folder)) for f in files),
        download_bytes=sum(f.stat().st_size for f in files),
    )


def _export_files(folder: Path, names: Sequence[str]) -> list[Path]:
    files = [folder / CARD_FILENAME]
    for name in names:
        files += sorted((folder / name).glob("*.parquet"))
    return files


def upload_folder(
    repo_id: str,
    folder: Path,
    names: Sequence[str],
    *,
    private: bool,
    token: str,
    endpoint: str | None = None,
) -> str:
    """Create the dataset repo if needed and upload the exported files; returns the commit URL.

    Only README.md and the exported configs' shards are sent; remote shards of those
    configs that the new export no longer has are deleted in the same commit. Unchanged
    files are skipped by huggingface_hub, and an interrupted upload resumes on rerun.
    """
    api = HfApi(endpoint=endpoint, token=token)
    where = endpoint or constants.ENDPOINT
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        info = api.upload_folder(
            repo_id=repo_id,
            repo_type="dataset",
            folder_path=folder,
            allow_patterns=[CARD_FILENAME] + [f"{name}/*.parquet" for name in names],
            delete_patterns=[f"{name}/*.parquet" for name in names],
            commit_message=f"hf_megadocs: publish {', '.join(names)}",
        )
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else "?"
        hint = {
            401: "the token is invalid or expired: run `hf auth login` again",
            403: f"the token cannot write to {repo_id!r}: use a write token or your namespace",
        }.get(status, "check the repository id and your permissions, then rerun")
        raise PublishError(
            f"The Hub at {where} refused the push to {repo_id!r} (HTTP {status}): {hint}. "
            f"The exported folder {folder} is intact; rerunning the same command resumes."
        ) from err
    except (OfflineModeIsEnabled, OSError, *_transport_errors()) as err:
        raise PublishError(
            f"Could not reach the Hub at {where} to push {repo_id!r}: "
            f"{type(err).__name__}: {err}. Check your network (or HF_ENDPOINT) and rerun: "
            f"the exported folder {folder} is intact and already-uploaded files are skipped."
        ) from err
    logger.info("pushed %s to %s", ", ".join(names), info.commit_url)
    return str(info.commit_url)


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Connection-level errors of huggingface_hub's HTTP client (httpx2 in 2.x, else httpx)."""
    errors: list[type[BaseException]] = []
    for module in ("httpx2", "httpx"):
        try:
            errors.append(importlib.import_module(module).TransportError)
        except ImportError:
            continue
    return tuple(errors)


# --- command line ----------------------------------------------------------------------


__all__ = ["PublishError", "PushResult", "export_parquet", "push_to_hub", "upload_folder"]
