"""``hf-megadocs generate``: fill the generation store for a source corpus and print a summary.

Flags are the fields of :class:`~hf_megadocs.generation.fill.GenerationConfig` (``--num_samples``,
``--source.source``, ``--backend.generator``, ...; ``--help`` lists them all). Also runnable
as ``python -m hf_megadocs.generation.cli``. vLLM may start worker processes with spawn, so
this module does its work only under ``main()``, never at import time.
"""

from __future__ import annotations

import logging
import sys

from hf_megadocs.flags import ConfigError, parse_dataclass

DESCRIPTION = (
    "Generate the missing rephrases of a source corpus into the generation store: "
    "documents x prompt x G samples, minus the validation split, minus what the store "
    "already holds. Shards (--num_shards/--shard_index, or RANK/WORLD_SIZE, or a Slurm "
    "array) split the work with no coordinator."
)


def main(argv: list[str] | None = None) -> int:
    """Run ``hf-megadocs generate``; returns the exit status (2 for a bad configuration)."""
    from hf_megadocs.disk_full import DiskFullError
    from hf_megadocs.generation.data_parallel import EngineFailedError
    from hf_megadocs.generation.generate import GenerationConfig, generate
    from hf_megadocs.locks import LockHeldError

    try:
        config = parse_dataclass(
            GenerationConfig, argv, prog="hf-megadocs generate", description=DESCRIPTION
        )
        summary = generate(config)
    except (ConfigError, ValueError, LockHeldError, ConnectionError, DiskFullError) as error:
        # Expected failures (bad config or input, a generator not found, shard busy, server
        # down, disk full): the message says the fix, so no traceback.
        print(f"hf-megadocs generate: error: {error}", file=sys.stderr)
        return 2
    except EngineFailedError as error:  # the other engines finished: show what they did
        print(error.summary.as_table())
        print(f"hf-megadocs generate: error: {error}", file=sys.stderr)
        return 1
    estimate = getattr(summary, "estimate", None)
    if estimate is not None:  # --estimate_only: the estimate is the result
        print(estimate.as_text())
        return 0
    print(summary.as_table())
    return 1 if summary.errors else 0


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    sys.exit(main())
