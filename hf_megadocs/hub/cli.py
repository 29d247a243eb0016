"""``hf-megadocs push``: export corpora to Parquet + a dataset card and upload them.

Flags are the fields of :class:`PushConfig` (``--help`` lists them with their defaults);
the corpora are read from the builder's cache with the same ``corpus_kwargs`` they were
built with, so a push reuses what is already generated.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from typing import Any

from hf_megadocs.flags import ConfigError, parse_dataclass

logger = logging.getLogger(__name__)


@dataclass(kw_only=True)
class PushConfig:
    """What to publish, where, and how the corpora were built."""

    repo_id: str
    """Dataset repository, e.g. my-org/lee-megadocs (also the first argument)."""
    configs: list[str]
    """Corpus configs to publish, e.g. '[stitched_g32, simple_g32, real]'."""
    corpus_kwargs: dict[str, Any] = field(default_factory=dict)
    """Builder knobs the corpora were built with, e.g. '{max_docs: 80, store_dir: DIR}'
    (``cache_dir`` and ``num_proc`` too): the same as for ``load_dataset``."""
    dry_run: bool = False
    """Only write the folder that would be uploaded (``--local_dir``)."""
    local_dir: str | None = None
    """Folder to export into, kept between pushes; None = ``<hf_megadocs cache>/publish/``."""
    private: bool = False
    """Create the repository private."""
    max_shard_size: str = "500MB"
    """Largest Parquet shard (bytes, or 500MB / 1GB)."""
    tokenizer: str | None = None
    """Tokenizer that counts the card's tokens ("words" = whitespace words); None = the
    generator's."""
    build: bool = False
    """Build configs missing from the cache (may start generation)."""
    license: str | None = None
    """Hub license id of the source corpus (the card says "unknown" otherwise for local files)."""
    endpoint: str | None = None
    """Hub URL; None = ``HF_ENDPOINT`` or the public Hub."""


def main(argv: list[str] | None = None) -> int:
    """Run ``hf-megadocs push``; exit 2 for a bad command line, 1 for a failed upload."""
    from hf_megadocs.hub.export import PublishError, push_to_hub

    try:
        config = parse_dataclass(
            PushConfig,
            argv,
            prog="hf-megadocs push",
            description="Export corpora to Parquet + a dataset card and upload them to the Hub "
            "(hf-megadocs push REPO_ID --configs '[stitched_g2, real]' ...).",
            positional="repo_id",
        )
        result = push_to_hub(
            config.repo_id,
            config.configs,
            private=config.private,
            dry_run=config.dry_run,
            local_dir=config.local_dir,
            endpoint=config.endpoint,
            max_shard_size=config.max_shard_size,
            tokenizer=config.tokenizer,
            license=config.license,
            build=config.build,
            **config.corpus_kwargs,
        )
    except (ConfigError, ValueError, PublishError) as err:
        print(f"hf-megadocs push: error: {err}", file=sys.stderr)
        return 1 if isinstance(err, PublishError) else 2
    print(
        ("Dry run: the folder that would be uploaded is " if result.dry_run else "Pushed: ")
        + (str(result.local_dir) if result.dry_run else str(result.commit_url))
    )
    print(json.dumps({"local_dir": str(result.local_dir), "rows": result.rows}, indent=2))
    return 0


__all__ = ["PushConfig", "main"]
